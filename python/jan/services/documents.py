"""Documents (PDFs, text files) as the text a model reads: the one reader behind every dialect's file input.

OpenAI chat's ``file`` parts, the Responses API's ``input_file`` and Anthropic's ``document`` blocks all become
:class:`jan.services.types.DocumentPart` (their bytes, media type, title); the chat service turns each into a
:class:`~jan.services.types.TextPart` before the prompt is made (:func:`read_documents`, in a worker thread: a
PDF of hundreds of pages takes seconds to parse, which must not stall the event loop). A local text model
cannot see pages, so a document is its text layer:

* a PDF (``application/pdf``, or bytes that start ``%PDF-``) through ``pypdf``, imported only when one arrives
  (a server that never sees a PDF never loads it);
* a text file (``text/*``, Markdown, JSON, CSV, XML, YAML, source code; or a type not given, or not one jan
  knows, whose bytes are UTF-8 without NUL bytes) decoded as UTF-8.

What the model reads is the title (a file name), the context (Anthropic's), then the text. Anything else is a
:class:`jan.DocumentError` (400) naming the message and part: an encrypted PDF, a damaged one, one with no text
layer (likely scanned), a binary type jan does not read, more than :data:`MAX_DOCUMENT_BYTES` or (a PDF) more
than :data:`MAX_DOCUMENT_PAGES` pages.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import replace

from jan.errors import DocumentError
from jan.services.types import ChatMessage, ChatRequest, DocumentPart, Part, TextPart

__all__ = ["MAX_DOCUMENT_BYTES", "MAX_DOCUMENT_PAGES", "SUPPORTED_KINDS", "document_text", "has_documents", "is_pdf", "read_documents",
           "read_messages"]

#: The most bytes one document may have (Anthropic's whole-request limit, 32 MB; a PDF beyond it would not fit
#: a local model's context as text anyway).
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
#: The most pages of a PDF that are read. Parsing runs in a worker thread that cannot be stopped, and the default
#: executor's few threads serve every request's tokenizing too: a bound on the pages bounds how long one document
#: can hold one (pypdf bounds each stream's decompressed size itself). A thousand pages of text is far more than
#: any local model's context.
MAX_DOCUMENT_PAGES = 1000
#: What jan reads, in words (errors name them).
SUPPORTED_KINDS = "PDF (with a text layer) and text files (plain text, Markdown, JSON, CSV, XML, YAML, source code)"

_PDF_TYPES = ("application/pdf", "application/x-pdf")
#: Non-``text/*`` media types that are text.
_TEXT_TYPES = frozenset({
    "application/json", "application/x-ndjson", "application/jsonl", "application/ld+json", "application/xml",
    "application/yaml", "application/x-yaml", "application/toml", "application/x-toml", "application/javascript",
    "application/x-javascript", "application/typescript", "application/x-typescript", "application/x-sh",
    "application/x-shellscript", "application/x-python", "application/x-python-code", "application/sql",
    "application/csv", "application/x-tex", "application/x-latex", "application/graphql", "application/x-httpd-php",
    "application/xhtml+xml", "application/rtf"})
#: Types whose bytes are never text jan reads (told apart from "unknown", which is sniffed).
_BINARY_PREFIXES = ("image/", "audio/", "video/", "font/")

log = logging.getLogger("jan.services")


def is_pdf(data: bytes, media_type: str = "") -> bool:
    """Whether a document is a PDF: said so (``application/pdf``), or its bytes start with ``%PDF-`` (a PDF
    header may follow a little junk, as PDF readers allow: within its first 1024 bytes)."""
    return _base_type(media_type) in _PDF_TYPES or b"%PDF-" in data[:1024]


def _base_type(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _is_text_type(media_type: str) -> bool:
    kind = _base_type(media_type)
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml", "+yaml"))


def _refused(why: str, reason: str) -> DocumentError:
    return DocumentError(why, reason=reason)


def _pdf_text(data: bytes) -> str:
    """The text layer of a PDF, page by page (blank line between pages). Raises :class:`DocumentError`."""
    # Imported here: pypdf (and what it imports) stays out of a server's memory until a PDF arrives.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # A PDF locked only against editing (an owner password) opens with the empty user password, as every
            # viewer opens it; one that needs a password to be read cannot be read here.
            try:
                opened = reader.decrypt("")
            except DependencyError as exc:  # an AES PDF without the `cryptography` package
                raise _refused(f"the PDF is encrypted with a cipher this server cannot open ({exc}); send it "
                               "unencrypted", "encrypted") from None
            if not opened:
                raise _refused("the PDF is encrypted (it needs a password to be read); send it unencrypted",
                               "encrypted")
        if len(reader.pages) > MAX_DOCUMENT_PAGES:
            raise _refused(f"the PDF has {len(reader.pages)} pages; at most {MAX_DOCUMENT_PAGES} are read (send the "
                           "part the question is about)", "too_large")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise _refused("the PDF is encrypted (it needs a password to be read); send it unencrypted",
                       "encrypted") from None
    except Exception as exc:  # noqa: BLE001
        # pypdf raises its own errors (PdfReadError...) for most damage, but a malformed object deep in a file can
        # surface as any Python error (KeyError, RecursionError...): each is the file's, not the server's
        log.debug("unreadable PDF: %r", exc)
        raise _refused(f"the PDF is damaged and cannot be read ({type(exc).__name__}: {exc})"[:300],
                       "damaged") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise _refused(f"the PDF has no text layer ({len(pages)} page{'s' if len(pages) != 1 else ''}, no text "
                       "on any): it is likely scanned images of pages, which jan does not read (run OCR on it, or "
                       "send the pages as images to a vision model)", "no_text")
    return text


def _utf8(data: bytes, *, nul: bool = False) -> str | None:
    """``data`` as text when it is UTF-8 (a BOM dropped); without ``nul``, only when it has no NUL bytes either
    (which no text file has: how bytes of no given type are told to be text)."""
    if not nul and b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def document_text(part: DocumentPart) -> str:
    """The text the model reads for ``part``: its title and context (each on a line, where given), a blank line,
    then its text (a PDF's text layer, a text file's text). Blocking (a PDF is parsed): call it off the event loop.

    Raises :class:`jan.DocumentError` with ``reason`` ``too_large``, ``encrypted``, ``damaged``, ``no_text`` or
    ``unsupported_format`` (a binary type jan does not read, or a text type whose bytes are not UTF-8); its
    message says why, without a field (the caller names it)."""
    data, media_type = bytes(part.data), part.media_type
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _refused(f"the document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are read", "too_large")
    if is_pdf(data, media_type):
        text = _pdf_text(data)
    else:
        text = _utf8(data, nul=_is_text_type(media_type))
        kind = _base_type(media_type)
        if text is None:
            if _is_text_type(media_type):
                why = f"the document is sent as {kind} but its bytes are not UTF-8 text; send it as UTF-8"
            else:
                said = f"of type {kind}" if kind and kind != "application/octet-stream" else "a binary file"
                why = f"the document is {said}, which jan does not read; it reads {SUPPORTED_KINDS}"
                if kind.startswith("image/"):
                    why += " (send an image as an image part, to a vision model)"
            raise _refused(why, "unsupported_format")
        if kind.startswith(_BINARY_PREFIXES):  # (UTF-8 bytes said to be an image: the client's mistake)
            raise _refused(f"the document is sent as {kind}, which jan does not read as a document; it reads "
                           f"{SUPPORTED_KINDS}", "unsupported_format")
    head = "\n".join(x for x in (part.title, part.context) if x)
    return f"{head}\n\n{text}" if head else text


def has_documents(messages: Sequence[ChatMessage]) -> bool:
    """Whether any message holds a :class:`DocumentPart`."""
    return any(isinstance(p, DocumentPart) for m in messages for p in m.content)


def read_messages(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """``messages`` with each :class:`DocumentPart` as the :class:`TextPart` of its text (:func:`document_text`);
    others as they are. Blocking. A document that cannot be read is a :class:`jan.DocumentError` naming it as
    ``messages[i].content[j]`` (``message_index`` ``i``, ``part_index`` ``j``: the part's place, one for one)."""
    out: list[ChatMessage] = []
    for i, message in enumerate(messages):
        if not any(isinstance(p, DocumentPart) for p in message.content):
            out.append(message)
            continue
        parts: list[Part] = []
        for j, part in enumerate(message.content):
            if not isinstance(part, DocumentPart):
                parts.append(part)
                continue
            try:
                parts.append(TextPart(document_text(part)))
            except DocumentError as exc:
                where = f"messages[{i}].content[{j}]"
                raise DocumentError(f"{where}: {exc}", reason=exc.reason, param="messages", message_index=i,
                                    part_index=j) from None
        out.append(replace(message, content=tuple(parts)))
    return tuple(out)


async def read_documents(request: ChatRequest) -> ChatRequest:
    """``request`` with its documents read as text (:func:`read_messages`, in a worker thread); the request
    itself when it has none (no thread started). Raises :class:`jan.DocumentError` naming the message and part."""
    if not has_documents(request.messages):
        return request
    messages = await asyncio.to_thread(read_messages, request.messages)
    return replace(request, messages=messages)
