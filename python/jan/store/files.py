"""Images of a thread's messages: ``threads/<thread_id>/files/<file_id>``, referenced, never inlined.

A message may arrive with OpenAI's ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
parts. Storing those as they are would put megabytes of base64 into ``messages.jsonl`` (read
in full on every turn), so the store writes each image once as a file beside the messages and
keeps Jan's reference part instead::

    {"type": "image_file", "image_file": {"file_id": "img-<sha256[:32]>.png", "mime_type": "image/png"}}

File ids are content hashes: the same picture sent twice is one file, and writing it again is
a no-op. Writes are atomic; files go with the thread when it is deleted. Only images jan can
decode are accepted (PNG, JPEG, WebP, GIF: recognised by their magic bytes, which is all the
store checks — decoding is the engine's business).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jan.core.fs import atomic_write_bytes
from jan.image_types import sniff_image

from .errors import InvalidArgumentError, NotFoundError

FILES_DIR = "files"
MAX_FILE_BYTES = 20 * 1024 * 1024  # one image, as the engine's media limit

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_MIME_OF = {ext: mime for mime, ext in _EXTENSIONS.items()}
_FILE_ID = re.compile(r"^img-[0-9a-f]{32}\.(png|jpg|webp|gif)$")


def file_id_of(data: bytes, mime_type: str) -> str:
    """The content-addressed id of an image file (``img-<hash>.<ext>``)."""
    return f"img-{hashlib.sha256(data).hexdigest()[:32]}.{_EXTENSIONS[mime_type]}"


def check_file_id(file_id: Any, param: str | None = None) -> str:
    """``file_id`` if it names a thread file (no path can be built from anything else); ``param``: the request
    field that carried it, named by the error."""
    if not isinstance(file_id, str) or not _FILE_ID.match(file_id):
        raise InvalidArgumentError(f"invalid file id {file_id!r} (expected img-<32 hex digits>.<png|jpg|webp|gif>)",
                                   param=param, code="invalid_id")
    return file_id


def image_file_part(file_id: str, mime_type: str) -> dict[str, Any]:
    """Jan's reference part for a stored image."""
    return {"type": "image_file", "image_file": {"file_id": file_id, "mime_type": mime_type}}


def extract_images(content: Any) -> tuple[Any, dict[str, bytes]]:
    """``(content, files)``: ``image_url`` parts holding base64 ``data:`` URLs replaced by
    ``image_file`` parts, and the decoded files by id (to be written with :func:`write_files`).

    Other content is returned unchanged (validated later by the message store). Raises
    :class:`InvalidArgumentError` for invalid base64, an image format jan cannot decode, a
    file over :data:`MAX_FILE_BYTES`, or an ``image_file`` part with a malformed id.
    """
    if not isinstance(content, (list, tuple)):
        return content, {}
    files: dict[str, bytes] = {}
    out: list[Any] = []
    for i, part in enumerate(content):
        if isinstance(part, Mapping) and part.get("type") == "image_file":
            ref = part.get("image_file")
            if not isinstance(ref, Mapping):
                raise InvalidArgumentError(f"content[{i}].image_file must be an object with a file_id",
                                           param=f"content[{i}].image_file")
            check_file_id(ref.get("file_id"), f"content[{i}].image_file.file_id")
        if not (isinstance(part, Mapping) and part.get("type") == "image_url"):
            out.append(part)
            continue
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else None
        if not isinstance(url, str):
            raise InvalidArgumentError(f"content[{i}].image_url.url must be a string", param=f"content[{i}].image_url.url")
        head, sep, payload = url.partition(",")
        if not (sep and head.startswith("data:") and head.endswith(";base64")):
            out.append(part)  # a link, not the image itself: kept as it is
            continue
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"content[{i}].image_url.url: the data URL is not valid base64",
                                       param=f"content[{i}].image_url.url", code="unsupported_format") from None
        if len(data) > MAX_FILE_BYTES:
            raise InvalidArgumentError(f"content[{i}].image_url.url: {len(data)} bytes; at most "
                                       f"{MAX_FILE_BYTES} are stored", param=f"content[{i}].image_url.url",
                                       code="too_large")
        mime = sniff_image(data)
        if mime is None:
            raise InvalidArgumentError(f"content[{i}].image_url.url: unsupported image format "
                                       "(expected PNG, JPEG, WebP or GIF)", param=f"content[{i}].image_url.url",
                                       code="unsupported_format")
        file_id = file_id_of(data, mime)
        files[file_id] = data
        out.append(image_file_part(file_id, mime))
    return out, files


def check_references(content: Any, files: Mapping[str, bytes], thread_dir: Path | None) -> None:
    """Every ``image_file`` part of ``content`` (as :func:`extract_images` returns it) names an image that is
    in the thread (``thread_dir``; ``None``: a thread not made yet, which has none) or comes with the message
    (``files``). A message naming one that is not would make every later run of its thread fail, so it is
    refused when written: :class:`InvalidArgumentError` (``code`` ``file_not_found``, ``param`` the part)."""
    if not isinstance(content, (list, tuple)):
        return
    for i, part in enumerate(content):
        if not (isinstance(part, Mapping) and part.get("type") == "image_file"):
            continue
        file_id = part["image_file"]["file_id"]  # (checked by extract_images)
        if file_id in files or (thread_dir is not None and (thread_dir / FILES_DIR / file_id).is_file()):
            continue
        raise InvalidArgumentError(f"content[{i}].image_file.file_id: there is no image {file_id!r} in this thread "
                                   "(an image_file part names an image saved with one of the thread's messages; "
                                   "send a new image as an image_url data URL)",
                                   param=f"content[{i}].image_file.file_id", code="file_not_found")


def write_files(thread_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write images into ``<thread_dir>/files`` atomically; ones already there are left alone."""
    if not files:
        return
    directory = thread_dir / FILES_DIR
    directory.mkdir(exist_ok=True)
    for file_id, data in files.items():
        path = directory / check_file_id(file_id)
        if not path.is_file():
            atomic_write_bytes(path, data)


def read_file(thread_dir: Path, file_id: str) -> tuple[bytes, str]:
    """``(bytes, mime_type)`` of a thread's image; :class:`NotFoundError` if it is not there."""
    path = thread_dir / FILES_DIR / check_file_id(file_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError("file", file_id) from None
    return data, _MIME_OF[file_id.rsplit(".", 1)[1]]
