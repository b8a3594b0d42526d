"""``/v1/files``: OpenAI's Files API, over the data folder's ``files/`` (:mod:`jan.store.uploads`).

``POST /v1/files`` takes ``multipart/form-data`` (what the SDKs' ``client.files.create`` sends): a ``file``
part, a ``purpose`` (OpenAI's: ``assistants``, ``vision``, ``user_data``, ``batch``, ``fine-tune``, ``evals``)
and optionally ``expires_after[anchor]=created_at`` with ``expires_after[seconds]`` (3600 to 2592000). The file
streams to disk as it arrives, hashed as it goes, never whole in memory; past ``max_upload_bytes`` (a server
setting, 512 MiB by default) it is a 413. ``GET /v1/files`` lists them (``purpose``, ``limit`` 1-10000,
``order``, ``after``: OpenAI's cursor paging), ``GET /v1/files/{file_id}`` and ``DELETE`` are OpenAI's, and
``GET /v1/files/{file_id}/content`` sends the bytes back (as a download: ``Content-Disposition: attachment``).

Anthropic's SDK (``client.beta.files``, told by its ``anthropic-version`` header) shares the paths and gets
Anthropic's Files API: an upload without ``purpose`` (its files are for messages: ``user_data``), with
``expires_in_seconds``; its ``FileMetadata``, list pages (``limit`` 1-1000, 20 by default; ``page``, ``after_id``,
``before_id``; or ``ids``; ``scope_id``: no upload here has a scope), ``file_deleted``, and its errors
(``routes/anthropic.py``). Its ``document`` and ``image`` blocks name a file by its id (``source: {"type": "file",
"file_id"}``).

Images and documents among the files are what jan reads: an ``image_file`` part naming a ``file-...`` id in a
thread message is copied into the thread's own images when the message is written (:func:`upload_data_url`, used
by ``threads.fetch_linked_images``), and a Responses ``input_image`` with a ``file_id`` is read the same way
(:func:`upload_image`); a PDF or text file named by a chat ``file`` part, a Responses ``input_file`` or an
Anthropic ``document``'s ``file`` source is read as text (:mod:`jan.server.document_inputs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.multipart import BodyPartReader, MultipartReader

from jan.errors import MediaError
from jan.server.dialects import anthropic as anthropic_wire
from jan.image_types import MAX_PIXELS, b64encode_text, load_image, sniff_image
from jan.server.errors import APIError, json_error
from jan.server.body_read import FORM_OVERHEAD_BYTES, BodyLimit, body_limit, upload_too_large
from jan.server.forms import check_plain as _plain, next_part as _next, open_form, read_chunk as _read
from jan.server.forms import part_filename, read_field as _field
from jan.server.jsonio import json_response, json_response_built
from jan.server.keys import CONFIG
from jan.server.route_state import UPLOADS
from jan.server.routes.docs import JSON, RESPONSE_SCHEMAS, RESPONSES
from jan.server.validation import query_choice, query_int
from jan.services.media_workers import on_media_worker
from jan.store.aio import write_through
from jan.store.errors import InvalidArgumentError, NotFoundError
from jan.store.files import MAX_FILE_BYTES
from jan.store.uploads import PUBLIC_FIELDS, PURPOSES, STORED_PURPOSES, TYPED_FIELDS, UploadStore, UploadTooLargeError, UploadWriter

log = logging.getLogger("jan.server")

routes = web.RouteTableDef()

# (UPLOADS, the data folder's uploaded files: jan.server.route_state, which sets the store up and sweeps it at start;
# this module loads on first use)

#: Bytes asked of the form per read, and gathered before a worker thread hashes and writes them (one write in
#: flight while the next bytes are read).
READ_BYTES = 256 * 1024
WRITE_BYTES = 4 * 1024 * 1024
#: Bytes of an upload too large still read (and dropped) so that the client can read its 413 on a connection that
#: stays open; past them the connection is closed instead.
DRAIN_BYTES = 1024 * 1024
EXPIRY_SECONDS = (3600, 2_592_000)  # OpenAI's bounds of expires_after[seconds]
DEFAULT_LIMIT, MAX_LIMIT = 10_000, 10_000  # OpenAI's list limit
#: About how many JSON values one file of a list holds (its id, name, size, purpose, times...): what sizes a page
#: for :func:`json_response_built`.
FILE_VALUES = 12
_FIELDS = ("purpose", "expires_after[anchor]", "expires_after[seconds]")
# Anthropic's upload: the file and how long it is kept (no purpose: what Anthropic stores is for messages)
_ANTHROPIC_FIELDS = ("purpose", "expires_in_seconds")
#: The purpose of an upload from Anthropic's SDK: a file read in a message.
ANTHROPIC_PURPOSE = "user_data"

RESPONSE_SCHEMAS["FileObject"] = {
    "type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "status"],
    "properties": {"id": {"type": "string"}, "object": {"const": "file"}, "bytes": {"type": "integer", "minimum": 0},
                   "created_at": {"type": "integer"}, "filename": {"type": "string"},
                   "purpose": {"enum": list(STORED_PURPOSES)}, "status": {"const": "processed"},
                   "expires_at": {"type": ["integer", "null"]}, "status_details": {"type": ["string", "null"]}}}
# (The upload's multipart form is described in its docstring: the spec's requestBody is JSON on every jan route.)
RESPONSES[("POST", "/v1/files")] = {"200": ("The stored file", {JSON: "FileObject"})}
RESPONSES[("GET", "/v1/files/{file_id}")] = {"200": ("The file", {JSON: "FileObject"})}
RESPONSES[("GET", "/v1/files")] = {"200": ("The files", {JSON: "List"})}
RESPONSES[("GET", "/v1/files/{file_id}/content")] = {"200": ("The file's bytes", {"application/octet-stream": None})}


def uploads(request: web.Request) -> UploadStore:
    return request.app[UPLOADS]


# -- upload ------------------------------------------------------------------------------------------
async def _form(request: web.Request) -> MultipartReader:
    return await open_form(request, "'file' and 'purpose'")


async def _stream(part: BodyPartReader, writer: UploadWriter) -> None:
    """The part's bytes into ``writer``, in order, off the event loop (:class:`UploadTooLargeError` past its limit)."""
    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await _read(part, READ_BYTES):
            yield chunk

    await write_through(chunks(), writer.write, WRITE_BYTES)


def _anthropic(request: web.Request) -> bool:
    """Whether Anthropic's SDK asks (:func:`anthropic_wire.from_anthropic_sdk`): its shapes, not OpenAI's."""
    return anthropic_wire.from_anthropic_sdk(request.headers)


def _expiry(fields: dict[str, str]) -> int | None:
    """``expires_after[seconds]`` (counted from ``created_at``, the one anchor), or Anthropic's
    ``expires_in_seconds``; None for a file kept until deleted."""
    if "expires_in_seconds" in fields:
        low, high = anthropic_wire.FILE_EXPIRY_SECONDS
        seconds = fields["expires_in_seconds"]
        if not seconds.isdigit() or not low <= int(seconds) <= high:
            raise APIError(400, f"expires_in_seconds: must be a whole number of seconds from {low} to {high}, "
                                f"not {seconds!r}", param="expires_in_seconds", code="invalid_value")
        return int(seconds)
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise APIError(400, f"expires_after[anchor]: must be 'created_at', not {anchor!r}",
                       param="expires_after.anchor", code="invalid_value")
    low, high = EXPIRY_SECONDS
    if seconds is None or not seconds.isdigit() or not low <= int(seconds) <= high:
        raise APIError(400, f"expires_after[seconds]: must be a whole number of seconds from {low} to {high}, "
                            f"not {seconds!r}", param="expires_after.seconds", code="invalid_value")
    return int(seconds)


def _check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise APIError(400, f"purpose: must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose",
                       code="invalid_value")
    return purpose


async def _too_large(request: web.Request, limit: int) -> web.Response:
    """The 413. What is left of the body is read and dropped when it is short, so the client reads the answer on a
    connection that stays open; a longer rest (or one that stops coming, or passes the form's own bound) is not
    waited for: the connection ends with the answer."""
    response = json_error(upload_too_large(limit))
    left = DRAIN_BYTES
    try:
        while left > 0 and not request.content.at_eof():
            chunk = await request.content.read(min(left, READ_BYTES))
            if not chunk:
                break
            left -= len(chunk)
    except APIError:  # (the body's own bounds: jan.server.body_read)
        pass
    if not request.content.at_eof():
        response.force_close()
    return response


#: An upload's form: its file (up to the server's max_upload_bytes) and its small fields. A larger body, declared or
#: sent (chunked, or without Expect), is the 413 before more of it is read; the file's own limit is judged as it is
#: stored (UploadTooLargeError, below).
UPLOAD_BODY = BodyLimit(lambda config: config.max_upload_bytes + FORM_OVERHEAD_BYTES,
                        lambda config, size: upload_too_large(config.max_upload_bytes))


@routes.post("/v1/files")
@body_limit(UPLOAD_BODY)
async def upload_file(request: web.Request) -> web.Response:
    """Upload a file: multipart/form-data with ``file`` (its bytes and file name), ``purpose`` (assistants, vision,
    user_data, batch, fine-tune or evals) and optionally ``expires_after[anchor]=created_at`` with
    ``expires_after[seconds]``. Answers the file object (``file-...``); 413 past the server's max_upload_bytes."""
    limit = request.app[CONFIG].max_upload_bytes
    anthropic = _anthropic(request)
    known = _ANTHROPIC_FIELDS if anthropic else _FIELDS
    reader = await _form(request)  # (a declared length past UPLOAD_BODY was refused before: jan.server.body_read)
    store = uploads(request)
    fields: dict[str, str] = {}
    writer: UploadWriter | None = None
    filename = ""
    try:
        while (part := await _next(reader)) is not None:
            name = part.name or ""
            if name == "file":
                if writer is not None:
                    raise APIError(400, "file: given more than once (one file per upload)", param="file",
                                   code="invalid_value")
                _plain(part, "file")
                filename = part_filename(part, "file")
                writer = await asyncio.to_thread(store.writer, limit)
                await _stream(part, writer)
            elif name in known:
                if name in fields:
                    raise APIError(400, f"{name}: given more than once", param=name, code="invalid_value")
                fields[name] = await _field(part, name)
                if name == "purpose":
                    _check_purpose(fields[name])  # before a file that follows is stored for nothing
            else:
                raise APIError(400, f"Unrecognized request argument supplied: {name or '(a part without a name)'}",
                               param=name or None, code="unknown_parameter")
        if anthropic:
            fields.setdefault("purpose", ANTHROPIC_PURPOSE)
        if "purpose" not in fields:
            raise APIError(400, "purpose: required (assistants, vision, user_data, batch, fine-tune or evals)",
                           param="purpose", code="missing_required_parameter")
        if writer is None:
            raise APIError(400, "file: required (the file's bytes, as a part with a file name)", param="file",
                           code="missing_required_parameter")
        purpose, expiry = _check_purpose(fields["purpose"]), _expiry(fields)
        committing, writer = writer, None  # commit() removes the temporary file, whatever happens
        file = await asyncio.to_thread(store.commit, committing, filename=filename, purpose=purpose,
                                       expires_after=expiry, fields=TYPED_FIELDS if anthropic else PUBLIC_FIELDS)
    except UploadTooLargeError:
        return await _too_large(request, limit)
    finally:
        if writer is not None:
            await asyncio.to_thread(writer.discard)  # waits for a write still in flight
    log.info("files: stored %s (%d bytes, %s)", file["id"], file["bytes"], file["purpose"])
    return json_response(anthropic_wire.file_metadata(file) if anthropic else file)


# -- read, list, delete --------------------------------------------------------------------------------
def _list_query(request: web.Request) -> dict:
    query = request.query
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    order = query_choice(request, "order", "desc", ("asc", "desc"))
    return {"purpose": query.get("purpose") or None, "limit": limit, "order": order,
            "after": query.get("after") or None, "before": query.get("before") or None}


def _anthropic_list_query(request: web.Request) -> tuple[dict, dict[str, str]]:
    """Anthropic's list query as the store's arguments, and which query field gave each cursor (what an error about
    it names): ``page`` (a ``next_page``) or ``after_id``, and ``before_id``; newest first."""
    query = request.query
    limit = query_int(request, "limit", anthropic_wire.FILES_DEFAULT_LIMIT, 1, anthropic_wire.FILES_MAX_LIMIT)
    page, after = query.get("page") or None, query.get("after_id") or None
    if page is not None and after is not None:
        raise APIError(400, "page: give page or after_id, not both", param="page", code="invalid_value")
    if page is not None:
        if not page.startswith(anthropic_wire.PAGE_PREFIX):
            raise APIError(400, f"page: not a page cursor of this list (a next_page), {page!r}", param="page",
                           code="invalid_value")
        after = page[len(anthropic_wire.PAGE_PREFIX):]
    before = query.get("before_id") or None
    if after is not None and before is not None:
        raise APIError(400, "before_id: give after_id (or page) or before_id, not both", param="before_id",
                       code="invalid_value")
    names = {"after": "page" if page is not None else "after_id", "before": "before_id"}
    return {"limit": limit, "order": "desc", "after": after,
            "before": before, "fields": TYPED_FIELDS}, names


def _anthropic_ids(request: web.Request) -> set[str]:
    """Anthropic's ``ids`` filter (the SDK writes ``ids[]=a&ids[]=b``): at most 100, without paging."""
    ids = set(request.query.getall("ids[]", []) + request.query.getall("ids", []))
    if ids and any(name in request.query for name in ("page", "limit", "after_id", "before_id")):
        raise APIError(400, "ids: give ids or page and limit, not both", param="ids", code="invalid_value")
    if len(ids) > anthropic_wire.FILES_MAX_IDS:
        raise APIError(400, f"ids: at most {anthropic_wire.FILES_MAX_IDS}, got {len(ids)}", param="ids",
                       code="invalid_value")
    return ids


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    """List the uploaded files, newest first (``order``), only one ``purpose``'s when given; ``limit`` (1-10000,
    default 10000) and ``after`` (a file id) page them as OpenAI's cursors; ``problems``: damaged files set aside. Anthropic's SDK: its pages
    (:func:`_anthropic_list_query`)."""
    if not _anthropic(request):
        store = uploads(request)
        page = await asyncio.to_thread(store.list, **_list_query(request))
        # the damaged file.json files set aside (why a file is missing from the list), as GET /v1/threads tells its
        # own: `jan files list` warns of them from a server as from the data folder
        listed = {**page.to_dict(), "problems": [p.to_dict() for p in store.problems.snapshot()]}
        # (a page is up to 10,000 files: written off the event loop when long)
        return await json_response_built(lambda: listed, values=len(page.data) * FILE_VALUES)
    if request.query.get("scope_id"):  # no upload here belongs to a scope (an Anthropic session's): none is listed
        return json_response(anthropic_wire.file_page([], False))
    if ids := _anthropic_ids(request):  # the files of these ids (none that is not there), on one page
        listed = await asyncio.to_thread(uploads(request).list, fields=TYPED_FIELDS)
        return json_response(anthropic_wire.file_page([file for file in listed.data if file["id"] in ids], False))
    query, names = _anthropic_list_query(request)
    try:
        page = await asyncio.to_thread(uploads(request).list, **query)
    except InvalidArgumentError as exc:  # a cursor that names no file: said of the query field that sent it
        if exc.param not in names:
            raise
        name = names[exc.param]
        raise APIError(400, f"{name}: {request.query.get(name)!r} names no file of this list", param=name,
                       code=exc.code or "invalid_value") from None
    return json_response(anthropic_wire.file_page(page.data, page.has_more))


@routes.get("/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    """Retrieve a file object (Anthropic's SDK: its file metadata)."""
    if _anthropic(request):
        file = await asyncio.to_thread(uploads(request).get, request.match_info["file_id"], fields=TYPED_FIELDS)
        return json_response(anthropic_wire.file_metadata(file))
    return json_response(await asyncio.to_thread(uploads(request).get, request.match_info["file_id"]))


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    """Delete a file: its bytes are gone, and so is its id (a thread image copied from it stays with the thread)."""
    deleted = await asyncio.to_thread(uploads(request).delete, request.match_info["file_id"])
    return json_response(anthropic_wire.file_deleted(deleted["id"]) if _anthropic(request) else deleted)


def _attachment(filename: str) -> str:
    """``Content-Disposition`` naming the download: an ASCII fallback and the exact name (RFC 6266, RFC 8187)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    """The file's bytes, as uploaded, with its media type (an image's own; else the one its name's extension
    gives, else application/octet-stream), as a download."""
    handle, doc = await asyncio.to_thread(uploads(request).open, request.match_info["file_id"])
    try:
        size = (await asyncio.to_thread(os.fstat, handle.fileno())).st_size
        # A download, never a page of this origin (which holds the API key in the web page): whatever a client
        # uploaded (HTML, SVG) is not rendered, sniffed or run.
        response = web.StreamResponse(headers={
            "Content-Disposition": _attachment(str(doc.get("filename") or "file")),
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-cache"})
        response.content_type = str(doc.get("media_type") or "application/octet-stream")
        response.content_length = size
        await response.prepare(request)
        if request.method != "HEAD":
            while chunk := await asyncio.to_thread(handle.read, READ_BYTES):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(handle.close)


# -- images for messages ------------------------------------------------------------------------------
async def upload_image(request: web.Request, file_id: str, param: str) -> tuple[bytes, str]:
    """``(bytes, media type)`` of the uploaded image ``file_id`` (what a message part names at ``param``): a 400
    naming ``param`` when there is no such file (``file_not_found``), it is over the size of one image
    (``too_large``), or it is no image jan can decode (``unsupported_format``)."""
    return await stored_image(uploads(request), file_id, param)


async def stored_image(store: UploadStore, file_id: str, param: str) -> tuple[bytes, str]:
    """:func:`upload_image` from ``store`` (work that runs outside a request: a batch's items)."""
    try:
        data, doc = await asyncio.to_thread(store.read_bytes, file_id, MAX_FILE_BYTES)
    except NotFoundError:
        raise APIError(400, f"{param}: there is no file {file_id!r} (upload one with POST /v1/files)", param=param,
                       code="file_not_found") from None
    except InvalidArgumentError as exc:
        raise APIError(400, f"{param}: {exc}", param=param, code=exc.code or "invalid_value") from None
    mime = sniff_image(data)
    if mime is None:
        raise APIError(400, f"{param}: file {file_id!r} ({doc.get('filename')}) is not a PNG, JPEG, WebP or GIF "
                            "image", param=param, code="unsupported_format")
    # Decoded now, as the model's turn will: an upload with an image's magic bytes that is cut off, damaged or over
    # the pixel limit is refused naming the field that named it, not (later) the data: URL jan made of it, a field
    # the client never sent. (On a media worker: up to 40 megapixels take a while.)
    try:
        await on_media_worker(load_image, data, MAX_PIXELS, f"{param}: file {file_id!r} ({doc.get('filename')})")
    except MediaError as exc:
        raise APIError(400, str(exc), param=param, code=exc.reason) from None
    return data, mime


async def upload_data_url(request: web.Request, file_id: str, param: str) -> str:
    """The uploaded image ``file_id`` as a ``data:`` URL (:func:`upload_image`), as a thread message takes it."""
    data, mime = await upload_image(request, file_id, param)
    encoded = await asyncio.to_thread(b64encode_text, data)  # up to 20 MB: off the loop, in pieces
    return f"data:{mime};base64,{encoded}"
