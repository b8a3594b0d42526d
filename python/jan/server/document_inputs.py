"""Documents a request body names rather than holds: an uploaded file's id, or a URL.

Every dialect has such document inputs: OpenAI chat's ``{"type": "file", "file": {"file_id"}}``, the Responses
API's ``input_file`` (``file_id`` or ``file_url``), Anthropic's ``document`` block (a ``file`` or ``url``
source). Before a route turns its body into a typed request, :func:`read_body_documents` reads each into the wire
part it is named by (the part's ``_file``: bytes, media type, file name), concurrently, so the dialect's
converter makes a :class:`jan.services.types.DocumentPart` of it as it does of inline bytes:

* a file id is an upload of jan's Files API (:mod:`jan.store.uploads`, read in a worker thread), at most
  :data:`jan.services.documents.MAX_DOCUMENT_BYTES`;
* a URL is fetched under the same policy as image URLs (``--allow-media-from``, :mod:`jan.server.media_fetch`):
  without it, any URL is refused (a ``data:`` URL is inline, not fetched).

Whatever cannot be read is a :class:`jan.DocumentError` (400) naming the field: no such file (``file_not_found``),
too large, a URL not allowed or not fetched. Reading the bytes as text happens later, on the typed path
(:mod:`jan.services.documents`).
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from jan.errors import DocumentError, MediaError
from jan.image_types import b64decode, parse_data_url
from jan.server.body_size import body_step
from jan.server.disconnect import while_client_waits
from jan.server.media_fetch import MediaFetcher, is_data_url, wire_type
from jan.services.documents import MAX_DOCUMENT_BYTES
from jan.store.errors import InvalidArgumentError, NotFoundError
from jan.store.uploads import UploadStore
from pydantic import BaseModel

__all__ = ["FileBytes", "data_url_bytes", "read_body_documents"]

#: A document read for a wire part: its bytes, media type ("" unknown) and file name (None unknown).
FileBytes = tuple[bytes, str, "str | None"]


def data_url_bytes(value: str, param: str, *, raw_base64: bool = False) -> tuple[bytes, str]:
    """``(bytes, media type)`` of a base64 ``data:`` URL (or, with ``raw_base64``, of bare base64 text, with an
    unknown type ``""``: what OpenAI's ``file_data`` may be). Raises :class:`DocumentError` naming ``param``."""
    if is_data_url(value):
        parsed = parse_data_url(value)  # (the data: URL reading images share: jan.image_types)
        if parsed is None:
            raise DocumentError(f"{param}: the data: URL must be base64-encoded (data:<type>;base64,...)",
                                reason="unsupported_format", param=param)
        media_type, data = parsed
    elif raw_base64:
        data, media_type = value, ""
    else:
        raise DocumentError(f"{param}: expected a base64 data: URL (data:<type>;base64,...)",
                            reason="unsupported_format", param=param)
    # a bound before decoding: base64 is 4 characters for 3 bytes
    if len(data) > (MAX_DOCUMENT_BYTES + 2) // 3 * 4 + 4:
        raise DocumentError(f"{param}: the document is over {MAX_DOCUMENT_BYTES} bytes", reason="too_large",
                            param=param)
    try:
        return b64decode(data), media_type  # (the decoding every dialect shares: jan.image_types)
    except (binascii.Error, ValueError):
        raise DocumentError(f"{param}: not valid base64", reason="unsupported_format", param=param) from None


async def _upload(uploads: UploadStore | None, file_id: str, param: str) -> FileBytes:
    if uploads is None:
        raise DocumentError(f"{param}: this server has no Files API; send the document inline", reason="not_allowed",
                            param=param)
    try:
        data, doc = await asyncio.to_thread(uploads.read_bytes, file_id, MAX_DOCUMENT_BYTES)
    except NotFoundError:
        raise DocumentError(f"{param}: there is no file {file_id!r} (upload one with POST /v1/files)",
                            reason="file_not_found", param=param) from None
    except InvalidArgumentError as exc:
        raise DocumentError(f"{param}: {exc}", reason=exc.code or "too_large", param=param) from None
    return data, str(doc.get("media_type") or ""), doc.get("filename") or None


async def _fetched(fetcher: MediaFetcher | None, url: str, param: str) -> FileBytes:
    if is_data_url(url):
        data, media_type = data_url_bytes(url, param)
        return data, media_type, None
    if fetcher is None or not fetcher.allowlist:
        raise DocumentError(f"{param}: this server fetches no URLs or files (start it with --allow-media-from); "
                            "send the document inline (base64) or as an uploaded file's id", reason="not_allowed",
                            param=param)
    try:
        data = await fetcher.fetch(url, param)
    except DocumentError:
        raise
    except MediaError as exc:  # said as a document's refusal (the same field, reason and words)
        raise DocumentError(str(exc), reason=exc.reason, param=param) from None
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or None
    return data, "", name


def _document_inputs(node: Any, where: str, found: list[tuple[BaseModel, Callable[[], Awaitable[FileBytes]]]],
                     uploads: UploadStore | None, fetcher: MediaFetcher | None) -> None:
    """Every document a validated wire body names by file id or URL: (the wire part, how to read it)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _document_inputs(item, f"{where}[{i}]", found, uploads, fetcher)
        return
    if not isinstance(node, BaseModel):
        return
    kind = wire_type(node)
    if kind == "file" and isinstance(getattr(node, "file", None), BaseModel):  # OpenAI chat
        file = node.file
        if file.file_data is None and file.file_id is not None:
            found.append((node, lambda f=file.file_id, p=f"{where}.file.file_id": _upload(uploads, f, p)))
        return
    if kind == "input_file":  # Responses
        if node.file_data is None and node.file_id is not None:
            found.append((node, lambda f=node.file_id, p=f"{where}.file_id": _upload(uploads, f, p)))
        elif node.file_data is None and node.file_url is not None:
            found.append((node, lambda u=node.file_url, p=f"{where}.file_url": _fetched(fetcher, u, p)))
        return
    if kind == "document":  # Anthropic
        source = getattr(node, "source", None)
        if getattr(source, "type", None) == "file":
            found.append((node, lambda f=source.file_id, p=f"{where}.source.file_id": _upload(uploads, f, p)))
        elif getattr(source, "type", None) == "url":
            found.append((node, lambda u=source.url, p=f"{where}.source.url": _fetched(fetcher, u, p)))
        return
    for name in type(node).model_fields:
        value = getattr(node, name, None)
        if isinstance(value, (list, BaseModel)):
            _document_inputs(value, f"{where}.{name}" if where else name, found, uploads, fetcher)


async def read_body_documents(body: BaseModel, uploads: UploadStore | None, fetcher: MediaFetcher | None) -> None:
    """Read, into each document input of ``body`` given by a file id or a URL, its bytes (the wire part's
    ``_file``: :data:`FileBytes`), concurrently. ``uploads``: the Files API's store (None: file ids are refused);
    ``fetcher``: the server's media fetcher (None or no allowlist: URLs are refused). Raises
    :class:`jan.DocumentError` naming the field (``messages[0].content[1].file.file_id``...)."""
    found: list[tuple[BaseModel, Callable[[], Awaitable[FileBytes]]]] = []
    await body_step(_document_inputs, body, "", found, uploads, fetcher)  # a walk over the whole body
    if not found:
        return
    # (cancelled, each fetch with it, when the request's client leaves: jan.server.disconnect)
    read = await while_client_waits(asyncio.gather(*(reader() for _, reader in found)))
    for (node, _), file in zip(found, read):
        node._file = file
