"""Images of a thread's messages: ``threads/<thread_id>/files/<file_id>``, referenced, never inlined.

A message may arrive with OpenAI's ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
parts. Storing those as they are would put megabytes of base64 into ``messages.jsonl`` (read
in full on every turn), so the store writes each image once as a file beside the messages and
keeps Jan's reference part instead::

    {"type": "image_file", "image_file": {"file_id": "img-<sha256[:32]>.png", "mime_type": "image/png"}}

File ids are content hashes: the same picture sent twice is one file, and writing it again is
a no-op. Writes are atomic; files go with the thread when it is deleted. Only images jan can
decode are accepted (PNG, JPEG, WebP, GIF, within the engine's pixel limit): each is decoded once
with Pillow when it is stored (:func:`jan.image_types.load_image`), so a damaged one is a 400 then,
not a failure of every later run of its thread.

Documents attached to a message (OpenAI's ``attachments``) are kept the same way, as the text the model reads
(``doc-<sha256[:32]>.txt``, UTF-8): the server reads an upload when the message is written and hands the store
``{"file_id", "tools", "document": {"filename", "text"}}``; the store writes the text as a file and keeps
``"document": {"filename", "file_id": "doc-..."}`` in the attachment (:func:`extract_documents`). So a thread
keeps what its messages attached (the upload may be deleted later) without holding megabytes of text in
``messages.jsonl``, which every turn reads whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jan.core.fs import atomic_write_bytes
from jan.errors import MediaError
from jan.image_types import MAX_PIXELS, data_url_media, load_image, sniff_image

from .errors import InvalidArgumentError, NotFoundError
from jan.local_files import read_regular_file

FILES_DIR = "files"
MAX_FILE_BYTES = 20 * 1024 * 1024  # one image, as the engine's media limit

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_MIME_OF = {**{ext: mime for mime, ext in _EXTENSIONS.items()}, "txt": "text/plain"}  # (txt: a document's text)
_FILE_ID = re.compile(r"^(img-[0-9a-f]{32}\.(png|jpg|webp|gif)|doc-[0-9a-f]{32}\.txt)\Z")


def file_id_of(data: bytes, mime_type: str) -> str:
    """The content-addressed id of an image file (``img-<hash>.<ext>``)."""
    return f"img-{hashlib.sha256(data).hexdigest()[:32]}.{_EXTENSIONS[mime_type]}"


def check_file_id(file_id: Any, param: str | None = None, *, kind: str | None = None) -> str:
    """``file_id`` if it names a thread file (no path can be built from anything else); ``param``: the request
    field that carried it, named by the error; ``kind``: ``"img"`` or ``"doc"``, the only kind it may name (an
    ``image_file`` part naming a document's text would send text as an image)."""
    if not isinstance(file_id, str) or not _FILE_ID.match(file_id) or (kind and not file_id.startswith(f"{kind}-")):
        expected = {"img": "img-<32 hex digits>.<png|jpg|webp|gif>", "doc": "doc-<32 hex digits>.txt"}
        said = expected.get(kind or "") or f"{expected['img']} or {expected['doc']}"
        raise InvalidArgumentError(f"invalid file id {file_id!r} (expected {said})", param=param, code="invalid_id")
    return file_id


def document_file_id(data: bytes) -> str:
    """The content-addressed id of a document's text kept in a thread (``doc-<hash>.txt``)."""
    return f"doc-{hashlib.sha256(data).hexdigest()[:32]}.txt"


def extract_documents(attachments: Any, files: Mapping[str, bytes],
                      thread_dir: Path | None) -> tuple[Any, dict[str, bytes]]:
    """``(attachments, new files)``: each attachment whose ``document`` holds its ``text`` (as the server read
    it from the upload) with the text replaced by the ``file_id`` of a thread file, and those files' bytes by
    id (to be written with :func:`write_files`, before the message).

    An attachment whose ``document`` already names a ``file_id`` must name one the thread has (``thread_dir``;
    ``None``: a thread not made yet) or that ``files`` brings: a message naming one that is not would make every
    later run of its thread fail, so it is refused now (:class:`InvalidArgumentError`, ``file_not_found``).
    Attachments without ``document`` are kept as they are (data only: nothing the model reads)."""
    if attachments is None:
        return None, {}
    if not isinstance(attachments, (list, tuple)):
        raise InvalidArgumentError("attachments must be a list of objects", param="attachments")
    found: dict[str, bytes] = {}
    out: list[Any] = []
    for j, attachment in enumerate(attachments):
        if not isinstance(attachment, Mapping):
            raise InvalidArgumentError(f"attachments[{j}] must be an object", param=f"attachments[{j}]")
        document = attachment.get("document")
        if document is None:
            out.append(dict(attachment))
            continue
        where = f"attachments[{j}].document"
        if not isinstance(document, Mapping):
            raise InvalidArgumentError(f"{where} must be an object", param=where)
        filename = document.get("filename")
        if filename is not None and not isinstance(filename, str):
            raise InvalidArgumentError(f"{where}.filename must be a string", param=f"{where}.filename")
        if isinstance(document.get("text"), str):
            data = document["text"].encode("utf-8")
            file_id = document_file_id(data)
            found[file_id] = data
        else:
            file_id = check_file_id(document.get("file_id"), f"{where}.file_id", kind="doc")
            if file_id not in files and file_id not in found and not (
                    thread_dir is not None and (thread_dir / FILES_DIR / file_id).is_file()):
                raise InvalidArgumentError(f"{where}.file_id: there is no document {file_id!r} in this thread",
                                           param=f"{where}.file_id", code="file_not_found")
        out.append({**attachment, "document": {"filename": filename, "file_id": file_id}})
    return out, found


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
            check_file_id(ref.get("file_id"), f"content[{i}].image_file.file_id", kind="img")
        if not (isinstance(part, Mapping) and part.get("type") == "image_url"):
            out.append(part)
            continue
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else None
        if not isinstance(url, str):
            raise InvalidArgumentError(f"content[{i}].image_url.url must be a string", param=f"content[{i}].image_url.url")
        if url[:5].lower() != "data:":
            out.append(part)  # a link, not the image itself: kept as it is
            continue
        try:
            # (read as every dialect reads one: a data: URL that is not base64 was kept as a "link", and a run
            # then left the image out without a word)
            data, _ = data_url_media(url, f"content[{i}].image_url.url")
        except MediaError as exc:
            raise InvalidArgumentError(str(exc), param=exc.param, code=exc.reason) from None
        if len(data) > MAX_FILE_BYTES:
            raise InvalidArgumentError(f"content[{i}].image_url.url: {len(data)} bytes; at most "
                                       f"{MAX_FILE_BYTES} are stored", param=f"content[{i}].image_url.url",
                                       code="too_large")
        mime = sniff_image(data)
        if mime is None:
            raise InvalidArgumentError(f"content[{i}].image_url.url: unsupported image format "
                                       "(expected PNG, JPEG, WebP or GIF)", param=f"content[{i}].image_url.url",
                                       code="unsupported_format")
        # Decoded once here, as a run will: an image whose magic bytes look right but that does not decode
        # (cut off, damaged) or is over the engine's pixel limit would otherwise be stored and make every later
        # run of the thread fail.
        try:
            load_image(data, MAX_PIXELS, f"content[{i}].image_url.url")
        except MediaError as exc:
            raise InvalidArgumentError(str(exc), param=f"content[{i}].image_url.url", code=exc.reason) from None
        file_id = file_id_of(data, mime)
        files[file_id] = data
        # (a Responses image sent as an upload keeps its reference, ``file``: listed again as sent, never read)
        kept = {"file": part["file"]} if isinstance(part.get("file"), Mapping) else {}
        out.append({**image_file_part(file_id, mime), **kept})
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
        data = read_regular_file(path)
    except FileNotFoundError:
        raise NotFoundError("file", file_id) from None
    return data, _MIME_OF[file_id.rsplit(".", 1)[1]]
