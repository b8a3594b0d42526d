"""Documents (PDFs, text files) as the text a model reads: the one reader behind every dialect's file input.

OpenAI chat's ``file`` parts, the Responses API's ``input_file`` and Anthropic's ``document`` blocks all become
:class:`jan.services.types.DocumentPart` (their bytes, media type, title); the chat service turns each into a
:class:`~jan.services.untrusted.UntrustedTextPart` before the prompt is made (:func:`read_documents`, in a worker
thread: a PDF of hundreds of pages takes seconds to parse, which must not stall the event loop); a local model's
prompt tokenizes that text without special tokens (a document cannot forge turns). A local text model cannot see
pages, so a document is its text layer:

* a PDF (``application/pdf``, or bytes that start ``%PDF-``) through ``pypdf``, imported only when one arrives
  (a server that never sees a PDF never loads it);
* a text file (``text/*``, Markdown, JSON, CSV, XML, YAML, source code; or a type not given, or not one jan
  knows, whose bytes are UTF-8 without NUL bytes) decoded as UTF-8.

What the model reads is the title (a file name), the context (Anthropic's), then the text. Anything else is a
:class:`jan.DocumentError` (400) naming the message and part: an encrypted PDF, a damaged one, one with no text
layer (likely scanned), a binary type jan does not read, more than :data:`MAX_DOCUMENT_BYTES` or (a PDF) more
than :data:`MAX_DOCUMENT_PAGES` pages.

A PDF's bytes say little about the work of reading it: a 70 KB file can hold one compressed content stream of
70 MB of spaces that every page points to, and pypdf parses a page's content in Python, each page anew (minutes of
a core). So reading one is bounded by the work itself, each a ``too_large`` saying which bound and why:

* :data:`MAX_PAGE_CONTENT_BYTES` of decompressed content per page (its content streams, plus each form XObject
  its text invokes, counted at each invocation) and :data:`MAX_CONTENT_BYTES` over the whole document (a stream
  that pages share counted for each page: each page parses it again); every stream pypdf decompresses for the
  document stops at :data:`MAX_STREAM_BYTES`;
* :data:`MAX_TEXT_CHARS` characters of text;
* :data:`MAX_READ_SECONDS` for all of a request's documents, checked between pages and between a page's
  operators.

And it stops when nobody waits for it any more: :func:`read_documents` gives the worker a ``threading.Event`` it
sets when its task is cancelled (the client left, the server is stopping), which the worker checks at the same
points and leaves by :class:`ReadCancelled`: a worker thread cannot be killed, and one left reading would burn a
core (and hold the executor, and a server's exit) for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from jan.errors import DocumentError
from jan.services.types import ChatMessage, ChatRequest, DocumentPart, Part
from jan.services.untrusted import UntrustedTextPart

__all__ = ["MAX_CONTENT_BYTES", "MAX_DOCUMENT_BYTES", "MAX_DOCUMENT_PAGES", "MAX_PAGE_CONTENT_BYTES",
           "MAX_READ_SECONDS", "MAX_STREAM_BYTES", "MAX_TEXT_CHARS", "SUPPORTED_KINDS", "ReadCancelled",
           "document_text", "has_documents", "is_pdf", "read_document_text", "read_documents", "read_messages"]

#: The most bytes one document may have (Anthropic's whole-request limit, 32 MB; a PDF beyond it would not fit
#: a local model's context as text anyway).
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
#: The most pages of a PDF that are read. A thousand pages of text is far more than any local model's context.
MAX_DOCUMENT_PAGES = 1000
#: The most decompressed content one PDF page may have: its content streams, and each form XObject its text
#: invokes, each time it is invoked. pypdf parses content in Python (a few MB a second), so this bounds the time
#: one page takes between the checks below; a page of text is some KB (a dense one, tens).
MAX_PAGE_CONTENT_BYTES = 8 * 1024 * 1024
#: The most decompressed content over all of a PDF's pages, a stream counted for each page that has it (each page
#: parses it anew): what bounds the time a PDF of shared content takes (the whole text of a thousand-page book
#: is some MB).
MAX_CONTENT_BYTES = 64 * 1024 * 1024
#: The most bytes any one stream of a PDF decompresses to (content, form, font, CMap), where pypdf lets jan say
#: so (its ``Configuration``, pypdf 7): its own limit is 75 MB, held in memory, for each such stream.
MAX_STREAM_BYTES = 16 * 1024 * 1024
#: The most characters of text one PDF may give: more than any local model's context holds (a million tokens is
#: some 4 million characters).
MAX_TEXT_CHARS = 4_000_000
#: The most seconds all of one request's documents may take to read (checked between pages and between a page's
#: operators). Reading runs in a worker thread of the default executor, whose few threads serve every request's
#: tokenizing too: whatever shape a document has, it holds one for at most this long.
MAX_READ_SECONDS = 30.0
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


class ReadCancelled(Exception):
    """Reading documents stopped because nobody waits for their text any more (the request's task was cancelled:
    its client left, or the server is stopping)."""


class _Stop(BaseException):
    """A refusal (:class:`DocumentError`) or a :class:`ReadCancelled`, carried out of pypdf's text extraction.

    A ``BaseException`` because pypdf catches every ``Exception`` raised while it reads a form XObject's text (it
    logs it and reads on): raised from inside a form, an ``Exception`` would be swallowed and the page read on."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _amount(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


class _Reading:
    """The bounds a reading of documents works under, and what it has spent: a deadline (shared by a request's
    documents), a cancel flag, and (per PDF) the content bytes read, over the document and on the page being read.
    Its checks raise :class:`_Stop`."""

    def __init__(self, cancel: threading.Event | None, deadline: float | None) -> None:
        self.cancel = cancel
        self.deadline = time.monotonic() + MAX_READ_SECONDS if deadline is None else deadline
        self.page = 0  # the page being read (1-based), its content bytes, and the document's so far
        self.page_bytes = 0
        self.total_bytes = 0

    def check(self) -> None:
        """Stop when nobody waits any more, or the time is up."""
        if self.cancel is not None and self.cancel.is_set():
            raise _Stop(ReadCancelled("the request reading this document was cancelled"))
        if time.monotonic() > self.deadline:
            where = f" (stopped at page {self.page})" if self.page else ""
            raise _Stop(_refused(f"the documents took too long to read: over {MAX_READ_SECONDS:g} s for a request's "
                                 f"documents{where}; send fewer pages, or the part the question is about",
                                 "too_large"))

    def charge(self, n: int, what: str) -> None:
        """Count ``n`` decompressed content bytes (``what``: whose) against the page's and the document's bounds."""
        self.page_bytes += n
        self.total_bytes += n
        if self.page_bytes > MAX_PAGE_CONTENT_BYTES:
            raise _Stop(_refused(f"page {self.page} of the PDF has over {_amount(MAX_PAGE_CONTENT_BYTES)} of content "
                                 f"once decompressed ({what}); at most that much of a page is read", "too_large"))
        if self.total_bytes > MAX_CONTENT_BYTES:
            raise _Stop(_refused(f"the PDF's pages have over {_amount(MAX_CONTENT_BYTES)} of content once "
                                 f"decompressed (by page {self.page}, content that pages share counted for each: "
                                 "each page is read anew); at most that much of a document is read (send the part "
                                 "the question is about)", "too_large"))


def _limit_reached() -> type[Exception] | tuple[()]:
    """pypdf's error for a limit of its own reached (a stream decompressing past it...); none in a pypdf without."""
    from pypdf import errors

    return getattr(errors, "LimitReachedError", ())


def _stream_limits() -> contextlib.AbstractContextManager[Any]:
    """pypdf's per-stream decompression limits lowered to :data:`MAX_STREAM_BYTES` while jan reads a PDF.

    pypdf 7 keeps them in a ``ContextVar`` (its ``Configuration``): set here, they hold for this thread's context
    only, until the ``with`` ends, and nothing else in the process sees them. Its module globals
    (``pypdf.filters.ZLIB_MAX_OUTPUT_LENGTH``...), which older releases read, are process-wide: they are left
    alone (the content checks of :func:`_pdf_text` bound the work there, after a stream's 75 MB at most)."""
    try:
        from pypdf import Configuration, apply_configuration
    except ImportError:
        return contextlib.nullcontext()
    names = ("zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
             "brotli_maximum_output_length", "array_based_stream_maximum_output_length")
    known = {field.name for field in dataclasses.fields(Configuration)}
    return apply_configuration(**{name: MAX_STREAM_BYTES for name in names if name in known})


def _streams(obj: Any) -> list[Any]:
    """The streams of a page's ``/Contents`` (a stream, or an array of them)."""
    from pypdf.generic import StreamObject

    obj = obj.get_object() if obj is not None else None
    items = obj if isinstance(obj, list) else [obj]
    return [s for s in (x.get_object() if x is not None else None for x in items) if isinstance(s, StreamObject)]


def _forms(page: Any, reading: _Reading) -> dict[str, list[Any]]:
    """The form XObjects the text of ``page`` can invoke (``/Name Do``), by name: those of its resources (its own
    and those it inherits) and of theirs, each once. A name may be a different form in different resources: each
    is listed (an invocation is counted as the largest)."""
    from pypdf.generic import DictionaryObject, StreamObject

    pending, node = [], page
    for _ in range(100):  # the page, then the page tree nodes it inherits resources from (pypdf's depth bound)
        if not isinstance(node, DictionaryObject):
            break
        if node.get("/Resources") is not None:
            pending.append(node["/Resources"])
        node = node["/Parent"].get_object() if node.get("/Parent") is not None else None
    found: dict[str, list[Any]] = {}
    seen: set[int] = set()
    while pending:
        reading.check()  # (a resource tree can be large: this walk stops as reading does)
        resources = pending.pop().get_object()
        if not isinstance(resources, DictionaryObject) or id(resources) in seen:
            continue
        seen.add(id(resources))
        xobjects = resources.get("/XObject")
        xobjects = xobjects.get_object() if xobjects is not None else None
        if not isinstance(xobjects, DictionaryObject):
            continue
        for name, ref in xobjects.items():
            xobject = ref.get_object() if ref is not None else None
            if not isinstance(xobject, StreamObject) or xobject.get("/Subtype") != "/Form" or id(xobject) in seen:
                continue
            seen.add(id(xobject))
            found.setdefault(str(name), []).append(xobject)
            if xobject.get("/Resources") is not None:
                pending.append(xobject["/Resources"])
    return found


#: The operators by which a content stream can give text: showing it (Tj, TJ, ' and "), or drawing a form XObject
#: that may (Do). Found anywhere (in a string, in inline image data...), the content is parsed: a conservative test.
_TEXT_OPERATOR = re.compile(rb"Tj|TJ|Do|['\"]")


def _page_text(page: Any, reading: _Reading) -> str:
    """The text of one page, its content counted (:meth:`_Reading.charge`) before pypdf parses it, and the reading
    checked at each of its operators (a form's too). Raises :class:`_Stop`."""
    limit_reached = _limit_reached()
    content = []
    try:
        for stream in _streams(page.get("/Contents")):
            # get_data() decompresses (bounded: _stream_limits) and keeps the result, which extract_text reuses
            content.append(stream.get_data())
            reading.charge(len(content[-1]), "its content streams")
    except limit_reached as exc:
        raise _Stop(_refused(f"a content stream of page {reading.page} of the PDF decompresses to over "
                             f"{_amount(MAX_STREAM_BYTES)} ({exc})", "too_large")) from None
    if not _TEXT_OPERATOR.search(b"".join(content)):
        # no operator that shows text or draws a form (a figure, a blank page): no text, and nothing to parse, as
        # pypdf itself skips such content (the visitor below would make it parse it)
        return ""
    forms: dict[str, list[Any]] | None = None

    def visit(operator: bytes, operands: Any, _cm: Any, _tm: Any) -> None:
        nonlocal forms
        reading.check()
        if operator == b"Do" and operands:
            # the form is parsed (again) at each invocation: counted before pypdf reads it, at each
            if forms is None:
                forms = _forms(page, reading)
            candidates = forms.get(str(operands[0]))
            if candidates:
                try:
                    size = max(len(form.get_data()) for form in candidates)
                except limit_reached as exc:
                    raise _Stop(_refused(f"a form XObject on page {reading.page} of the PDF decompresses to over "
                                         f"{_amount(MAX_STREAM_BYTES)} ({exc})", "too_large")) from None
                reading.charge(size, f"form XObject {operands[0]}")

    return page.extract_text(visitor_operand_before=visit) or ""


def _pdf_text(data: bytes, reading: _Reading) -> str:
    """The text layer of a PDF, page by page (blank line between pages), within the bounds of ``reading``.
    Raises :class:`DocumentError`, or :class:`ReadCancelled`."""
    # Imported here: pypdf (and what it imports) stays out of a server's memory until a PDF arrives.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    pages: list[str] = []
    try:
        with _stream_limits():
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                # A PDF locked only against editing (an owner password) opens with the empty user password, as
                # every viewer opens it; one that needs a password to be read cannot be read here.
                try:
                    opened = reader.decrypt("")
                except DependencyError as exc:  # an AES PDF without the `cryptography` package
                    raise _refused(f"the PDF is encrypted with a cipher this server cannot open ({exc}); send it "
                                   "unencrypted", "encrypted") from None
                if not opened:
                    raise _refused("the PDF is encrypted (it needs a password to be read); send it unencrypted",
                                   "encrypted")
            if len(reader.pages) > MAX_DOCUMENT_PAGES:
                raise _refused(f"the PDF has {len(reader.pages)} pages; at most {MAX_DOCUMENT_PAGES} are read (send "
                               "the part the question is about)", "too_large")
            chars = 0
            for number, page in enumerate(reader.pages, 1):
                reading.page, reading.page_bytes = number, 0
                reading.check()  # between pages: nobody waiting any more, or the time up, stops here
                pages.append(_page_text(page, reading))
                chars += len(pages[-1])
                if chars > MAX_TEXT_CHARS:
                    raise _refused(f"the PDF's text is over {MAX_TEXT_CHARS} characters (by page {number}), more "
                                   "than a model's context holds; send the part the question is about", "too_large")
            reading.check()  # (a form's check that pypdf swallowed on the last page, or the clock run out on it)
    except _Stop as stop:
        raise stop.error from None
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise _refused("the PDF is encrypted (it needs a password to be read); send it unencrypted",
                       "encrypted") from None
    except _limit_reached() as exc:  # one of pypdf's own bounds (a stream that decompresses past its limit...)
        raise _refused(f"part of the PDF is over a limit on what is read ({exc})"[:300], "too_large") from None
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


def document_text(part: DocumentPart, *, cancel: threading.Event | None = None,
                  deadline: float | None = None) -> str:
    """The text the model reads for ``part``: its title and context (each on a line, where given), a blank line,
    then its text (a PDF's text layer, a text file's text). Blocking (a PDF is parsed): call it off the event loop,
    or through :func:`read_document_text`.

    ``cancel``: set, reading stops (:class:`ReadCancelled`) at the next page or operator; ``deadline`` (a
    ``time.monotonic()`` value, by default :data:`MAX_READ_SECONDS` from now): past it, reading stops with a
    ``too_large``.

    Raises :class:`jan.DocumentError` with ``reason`` ``too_large`` (too many bytes or pages, too much content or
    text, too long to read), ``encrypted``, ``damaged``, ``no_text`` or ``unsupported_format`` (a binary type
    jan does not read, or a text type whose bytes are not UTF-8); its message says why, without a field (the
    caller names it)."""
    data, media_type = bytes(part.data), part.media_type
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _refused(f"the document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are read", "too_large")
    if is_pdf(data, media_type):
        text = _pdf_text(data, _Reading(cancel, deadline))
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


#: A conversation longer than this is searched for documents in a worker thread (:func:`read_documents`).
MANY_MESSAGES = 10_000


def has_documents(messages: Sequence[ChatMessage]) -> bool:
    """Whether any message holds a :class:`DocumentPart`."""
    return any(isinstance(p, DocumentPart) for m in messages for p in m.content)


def read_messages(messages: Sequence[ChatMessage], *,
                  cancel: threading.Event | None = None) -> tuple[ChatMessage, ...]:
    """``messages`` with each :class:`DocumentPart` as the :class:`~jan.services.untrusted.UntrustedTextPart` of its
    text (:func:`document_text`); others as they are. Blocking. A document that cannot be read is a :class:`jan.DocumentError` naming it as
    ``messages[i].content[j]`` (``message_index`` ``i``, ``part_index`` ``j``: the part's place, one for one).
    All the documents share one :data:`MAX_READ_SECONDS` (a request of many documents is bounded as one of one);
    ``cancel`` set stops the reading (:class:`ReadCancelled`)."""
    deadline = time.monotonic() + MAX_READ_SECONDS
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
                # third-party text: a local prompt tokenizes it without special tokens (jan.services.untrusted)
                parts.append(UntrustedTextPart(document_text(part, cancel=cancel, deadline=deadline)))
            except DocumentError as exc:
                where = f"messages[{i}].content[{j}]"
                raise DocumentError(f"{where}: {exc}", reason=exc.reason, param="messages", message_index=i,
                                    part_index=j) from None
        out.append(replace(message, content=tuple(parts)))
    return tuple(out)


async def _off_loop(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args, cancel=event)`` in a worker thread; when the awaiting task is cancelled (its client left, the
    server is stopping), ``event`` is set, so the worker stops at its next check rather than read on for nobody
    (a thread cannot be killed, and the executor's threads are joined at exit: one reading on would hold a core,
    and the server's exit, for minutes)."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(work, *args, cancel=cancel)
    finally:
        cancel.set()  # (done, it is read by nobody: set either way)


async def read_document_text(part: DocumentPart) -> str:
    """:func:`document_text` of ``part`` in a worker thread, which stops when the awaiting task is cancelled."""
    return await _off_loop(document_text, part)


async def read_message_documents(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """:func:`read_messages` in a worker thread, which stops when the awaiting task is cancelled (the turns a
    conversation keeps read as a prompt's are)."""
    return await _off_loop(read_messages, messages)


async def read_documents(request: ChatRequest) -> ChatRequest:
    """``request`` with its documents read as text (:func:`read_messages`, in a worker thread, which stops when
    the awaiting task is cancelled); the request itself when it has none (no thread started). Raises
    :class:`jan.DocumentError` naming the message and part."""
    # searching a huge conversation (hundreds of thousands of messages) takes a while: not on the event loop
    many = len(request.messages) > MANY_MESSAGES
    if not (await asyncio.to_thread(has_documents, request.messages) if many else has_documents(request.messages)):
        return request
    return replace(request, messages=await read_message_documents(request.messages))
