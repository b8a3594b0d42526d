"""Reading ``multipart/form-data`` bodies (what the OpenAI SDKs send to upload a file or a clip), the one way every
form route reads them: aiohttp's multipart reader, each failure of the form a 4xx naming what was wrong with it.

aiohttp parses the frames; what is added here is the refusals (a body of another type, a malformed frame, an
encoded part, an oversized field or file) in jan's error shape, so that no form route answers a 500 for a bad form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.multipart import BodyPartReader, MultipartReader

from jan.server.errors import APIError
from jan.server.body_read import file_too_large

#: The form's small fields are words, numbers and short texts (a transcription's ``prompt``).
MAX_FIELD_BYTES = 1024


async def open_form(request: web.Request, parts: str) -> MultipartReader:
    """The body as a multipart form: 415 for any other media type (a JSON body included), or a form without the
    boundary that frames its parts. ``parts``: the parts the route wants, for the message."""
    content_type = request.headers.get("Content-Type", "")
    if request.content_type != "multipart/form-data" or "boundary=" not in content_type.lower():
        got = f"'{content_type}'" if content_type else "no Content-Type"
        raise APIError(415, f"Upload a file as multipart/form-data with a boundary (got {got}), with the parts "
                            f"{parts}", code="unsupported_media_type")
    try:
        return await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise APIError(415, f"The multipart/form-data body cannot be read: {exc}",
                       code="unsupported_media_type") from None


def malformed(exc: ValueError) -> APIError:
    return APIError(400, f"The multipart/form-data body is malformed: {exc}", code="invalid_body")


async def next_part(reader: MultipartReader) -> BodyPartReader | None:
    """The form's next part (None at its end); a nested multipart part is a 400 (the SDKs send flat forms)."""
    try:
        part = await reader.next()
    except ValueError as exc:
        raise malformed(exc) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise APIError(400, "A part of the form is itself multipart; send each field as a plain part",
                       code="invalid_value")
    return part


def part_filename(part: BodyPartReader, name: str) -> str:
    """The file name a part sends (``""`` for none). Its header bytes that are not UTF-8 reach aiohttp's parser as lone
    surrogates (``surrogateescape``), which no file object can be written or answered with: a 400 naming the field,
    in the words of a body's lone surrogate, not the codec's error from the write (it was a 400 without a code)."""
    filename = part.filename or ""
    if not filename.isascii():
        try:
            filename.encode("utf-8")
        except UnicodeEncodeError:
            raise APIError(400, f"{name}: the file name is not UTF-8 text",
                           param=name, code="invalid_unicode") from None
    return filename


async def read_chunk(part: BodyPartReader, size: int) -> bytes:
    try:
        return await part.read_chunk(size)
    except ValueError as exc:  # (a bad frame: the writer's own ValueErrors are not read here)
        raise malformed(exc) from None


def check_plain(part: BodyPartReader, name: str) -> None:
    """A part whose bytes are sent as they are: a transfer or content encoding (deprecated in forms, RFC 7578) would
    have to be undone first, which is not done here."""
    for header in ("Content-Transfer-Encoding", "Content-Encoding"):
        value = part.headers.get(header, "").strip().lower()
        if value and value not in ("binary", "8bit", "7bit", "identity"):
            raise APIError(400, f"{name}: {header} '{value}' is not supported; send the part's bytes as they are",
                           param=name, code="invalid_value")


async def read_field(part: BodyPartReader, name: str, limit: int = MAX_FIELD_BYTES) -> str:
    """A text field's value (UTF-8, stripped); a 400 naming it past ``limit`` bytes or when it is not UTF-8."""
    check_plain(part, name)
    data = b""
    while chunk := await read_chunk(part, limit + 1):
        data += chunk
        if len(data) > limit:
            raise APIError(400, f"{name}: longer than {limit} bytes", param=name, code="invalid_value")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise APIError(400, f"{name}: not UTF-8 text", param=name, code="invalid_value") from None


@dataclass
class SmallForm:
    """A form read whole: ``fields`` by name (a name ending in ``[]`` may repeat: its values in order), and its one
    file part's ``filename`` and bytes."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str = ""
    data: bytes | None = None

    def one(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


async def read_small_form(request: web.Request, *, file: str, known: tuple[str, ...], max_file_bytes: int,
                          long_fields: dict[str, int] | None = None) -> SmallForm:
    """Read a form that carries one file small enough to hold in memory (an audio clip) and a few fields.

    ``file``: the file part's name; ``known``: the other parts' names (``name[]`` repeats, every other one is given
    once); ``long_fields``: byte limits above :data:`MAX_FIELD_BYTES` for some fields. Raises :class:`APIError`:
    415 for a body that is no form, 400 for an unknown, repeated or malformed part, 413 for a file past
    ``max_file_bytes``. The file is optional here: the route says when it is missing."""
    reader = await open_form(request, f"'{file}' and {', '.join(repr(k) for k in known)}")
    form = SmallForm()
    while (part := await next_part(reader)) is not None:
        name = part.name or ""
        if name == file:
            if form.data is not None:
                raise APIError(400, f"{file}: given more than once (one file per request)", param=file,
                               code="invalid_value")
            check_plain(part, file)
            form.filename = part_filename(part, file)
            data = bytearray()
            while chunk := await read_chunk(part, 256 * 1024):
                data += chunk
                if len(data) > max_file_bytes:
                    raise file_too_large(file, max_file_bytes)
            form.data = bytes(data)
        elif name in known:
            if name in form.fields and not name.endswith("[]"):
                raise APIError(400, f"{name}: given more than once", param=name, code="invalid_value")
            limit = (long_fields or {}).get(name, MAX_FIELD_BYTES)
            form.fields.setdefault(name, []).append(await read_field(part, name, limit))
        else:
            raise APIError(400, f"Unrecognized request argument supplied: {name or '(a part without a name)'}",
                           param=name or None, code="unknown_parameter")
    return form
