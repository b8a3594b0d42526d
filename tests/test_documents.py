"""Documents (PDFs, text files) in every dialect that has them, read as text on one typed path
(:mod:`jan.services.documents`): OpenAI chat ``file`` parts, Responses ``input_file``, Anthropic ``document``
blocks; inline, by an upload's id (jan's Files API) or by URL (``--allow-media-from``). The PDFs are built here
by hand (one page, a Helvetica text object); the prompt is observed as the server renders it
(``/v1/apply-template``) or by its token count (``count_tokens``, ``/v1/responses/input_tokens``)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import anthropic
import openai
import pypdf
import pytest
from dialect_helpers import anthropic_client, openai_client
from api_helpers import running
from jan.errors import DocumentError
from jan.services import documents
from jan.services.documents import ReadCancelled, document_text, read_documents, read_messages
from jan.services.types import ChatMessage, ChatRequest, DocumentPart, TextPart

SECRET = "The lighthouse cat is called Moss."  # (no quote: Helvetica's is a curly one)
MODEL = "stories260K"


# -- documents built here ----------------------------------------------------------------------------------
def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (Helvetica, one text object), with a correct xref."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    stream = ops.encode("latin-1")
    return pdf_of([b"<< /Type /Catalog /Pages 2 0 R >>",
                   b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                   (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
                    b"/Contents 5 0 R >>"),
                   b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                   b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"])


def flate(data: bytes, extra: bytes = b"") -> bytes:
    """A FlateDecode stream object of ``data`` (``extra``: more of its dictionary)."""
    packed = zlib.compress(data, 9)
    return b"<< %s/Length %d /Filter /FlateDecode >>\nstream\n" % (extra, len(packed)) + packed + b"\nendstream"


def shared_content_pdf(pages: int, spaces: int) -> bytes:
    """What an outside tester sent: ``pages`` pages whose ``/Contents`` are all ONE compressed content stream of
    ``spaces`` spaces then a line of text (some KB of file for MBs of content that each page parses anew)."""
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents 4 0 R >>")
    return pdf_of([b"<< /Type /Catalog /Pages 2 0 R >>",
                   b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                       b" ".join(b"%d 0 R" % (5 + i) for i in range(pages)), pages),
                   b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                   flate(b" " * spaces + b"BT /F1 12 Tf 72 720 Td (BOMBTEXT) Tj ET")] + [page] * pages)


def form_pdf(invocations: int, spaces: int) -> bytes:
    """One page whose content invokes one form XObject (``spaces`` spaces, then text) ``invocations`` times:
    pypdf parses the form anew at each."""
    return pdf_of([b"<< /Type /Catalog /Pages 2 0 R >>",
                   b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                   b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                   flate(b" " * spaces + b"BT /F1 12 Tf 72 720 Td (FORMTEXT) Tj ET",
                         b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "),
                   (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
                    b"/XObject << /X0 4 0 R >> >> /Contents 6 0 R >>"),
                   flate(b"/X0 Do " * invocations)])


def pages_pdf(count: int) -> bytes:
    """A PDF of ``count`` pages, each with its own text (``Page 1 of the book.``...)."""
    writer = pypdf.PdfWriter()
    for n in range(1, count + 1):
        writer.add_page(pypdf.PdfReader(io.BytesIO(make_pdf([f"Page {n} of the book."]))).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_of(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (numbered from 1, the first the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encrypted(pdf: bytes, user_password: str = "secret") -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, "owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned() -> bytes:
    """A PDF whose page has no text (what a scan without OCR is)."""
    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


PDF = make_pdf([SECRET, "It sleeps on the stairs."])
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
#: Documents that cannot be read: (bytes, media type, error code, words the message has).
BAD = {
    "encrypted": (encrypted(PDF), "application/pdf", "encrypted", "encrypted"),
    "damaged": (PDF[:180], "application/pdf", "damaged", "damaged"),
    "scanned": (scanned(), "application/pdf", "no_text", "scanned"),
    "binary": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)), "application/zip", "unsupported_format",
               "PDF"),
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- the reader -----------------------------------------------------------------------------------------------
def test_a_pdf_is_its_text_layer_after_its_title():
    assert document_text(DocumentPart(PDF, "application/pdf", "notes.pdf")) == \
        f"notes.pdf\n\n{SECRET}\nIt sleeps on the stairs."
    # told by its bytes when no type is given; title and context each on a line (Anthropic's)
    assert document_text(DocumentPart(PDF, "", "Notes", "From the keeper")).startswith(
        f"Notes\nFrom the keeper\n\n{SECRET}")
    # locked only against editing (an owner password): opened as every viewer opens it
    assert SECRET in document_text(DocumentPart(encrypted(PDF, user_password=""), "application/pdf"))


def test_text_files_are_read_as_utf8():
    for media_type in ("text/markdown", "application/json", "text/csv", "", "application/octet-stream"):
        assert document_text(DocumentPart("# Ünïcode\n".encode(), media_type)) == "# Ünïcode\n", media_type
    with pytest.raises(DocumentError) as info:
        document_text(DocumentPart("café".encode("latin-1"), "text/plain"))
    assert info.value.reason == "unsupported_format" and "UTF-8" in str(info.value)
    with pytest.raises(DocumentError) as info:
        document_text(DocumentPart(PNG, "image/png"))
    assert info.value.reason == "unsupported_format" and "image part" in str(info.value)


@pytest.mark.parametrize("data,media_type,code,said", BAD.values(), ids=BAD.keys())
def test_what_cannot_be_read_is_a_document_error_naming_the_part(data, media_type, code, said):
    messages = (ChatMessage("user", (TextPart("Read this"), DocumentPart(data, media_type, "x"))),)
    with pytest.raises(DocumentError) as info:
        read_messages(messages)
    error = info.value
    assert (error.reason, error.message_index, error.part_index) == (code, 0, 1)
    assert str(error).startswith("messages[0].content[1]: ") and said in str(error), str(error)


def test_too_large(monkeypatch):
    monkeypatch.setattr("jan.services.documents.MAX_DOCUMENT_BYTES", 100)
    with pytest.raises(DocumentError) as info:
        document_text(DocumentPart(b"x" * 101, "text/plain"))
    assert info.value.reason == "too_large"


def test_too_many_pages(monkeypatch):
    writer = pypdf.PdfWriter()
    for _ in range(4):
        writer.add_page(pypdf.PdfReader(io.BytesIO(PDF)).pages[0])
    out = io.BytesIO()
    writer.write(out)
    assert SECRET in document_text(DocumentPart(out.getvalue(), "application/pdf"))
    monkeypatch.setattr("jan.services.documents.MAX_DOCUMENT_PAGES", 3)
    with pytest.raises(DocumentError) as info:
        document_text(DocumentPart(out.getvalue(), "application/pdf"))
    assert info.value.reason == "too_large" and "4 pages" in str(info.value)


def test_a_pdf_of_many_pages_is_read_whole():
    text = document_text(DocumentPart(pages_pdf(30), "application/pdf"))
    assert text == "\n\n".join(f"Page {n} of the book." for n in range(1, 31))
    # content shared by pages, within the bounds: each page's text, as before
    assert document_text(DocumentPart(shared_content_pdf(3, 10_000), "application/pdf")) == \
        "BOMBTEXT\n\nBOMBTEXT\n\nBOMBTEXT"


def refused(data: bytes) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        document_text(DocumentPart(data, "application/pdf"))
    return info.value


def test_content_shared_by_pages_is_counted_for_each_page(monkeypatch):
    """The fault: one compressed stream of spaces that every page points to (pypdf parses it for each page)."""
    monkeypatch.setattr(documents, "MAX_CONTENT_BYTES", 500_000)
    parsed = []
    real = documents._page_text
    monkeypatch.setattr(documents, "_page_text", lambda page, reading: parsed.append(page) or real(page, reading))
    error = refused(shared_content_pdf(40, 100_000))  # 100 KB a page: the 5th page passes 500 KB
    assert error.reason == "too_large" and "by page 5" in str(error) and "pages share" in str(error), str(error)
    assert len(parsed) == 5  # (the 5th counted before pypdf parses it: refused there, never parsed)


def test_a_page_of_too_much_content_is_refused(monkeypatch):
    monkeypatch.setattr(documents, "MAX_PAGE_CONTENT_BYTES", 50_000)
    error = refused(shared_content_pdf(2, 100_000))
    assert error.reason == "too_large" and "page 1 " in str(error) and "content" in str(error), str(error)


def test_a_form_invoked_again_and_again_is_counted_at_each_invocation(monkeypatch):
    assert document_text(DocumentPart(form_pdf(2, 10_000), "application/pdf")) == "FORMTEXT\nFORMTEXT"
    monkeypatch.setattr(documents, "MAX_PAGE_CONTENT_BYTES", 250_000)
    error = refused(form_pdf(1000, 100_000))  # 100 KB, parsed at each of 1000 invocations
    assert error.reason == "too_large" and "form XObject /X0" in str(error), str(error)


@pytest.mark.skipif(not hasattr(pypdf, "apply_configuration"), reason="a pypdf without its Configuration")
def test_a_stream_decompressing_past_its_bound_is_refused_and_pypdf_limits_stay_jans(monkeypatch):
    monkeypatch.setattr(documents, "MAX_STREAM_BYTES", 50_000)
    error = refused(shared_content_pdf(1, 100_000))
    assert error.reason == "too_large" and "decompresses to over 50000 bytes" in str(error), str(error)
    # set for jan's reading only (a ContextVar, reset after it), not for the process
    assert pypdf.get_configuration().zlib_maximum_output_length == pypdf.Configuration().zlib_maximum_output_length


def test_too_much_text_is_refused(monkeypatch):
    monkeypatch.setattr(documents, "MAX_TEXT_CHARS", 50)
    error = refused(pages_pdf(10))
    assert error.reason == "too_large" and "characters" in str(error), str(error)


def test_a_document_past_its_deadline_is_refused(monkeypatch):
    with pytest.raises(DocumentError) as info:  # (a deadline already past: the first check between pages stops)
        document_text(DocumentPart(pages_pdf(3), "application/pdf"), deadline=time.monotonic() - 1)
    assert info.value.reason == "too_large" and "too long to read" in str(info.value), str(info.value)
    # a request's documents share one deadline; its refusal names the part, as every refusal does
    monkeypatch.setattr(documents, "MAX_READ_SECONDS", -1)
    with pytest.raises(DocumentError) as info:
        read_messages((ChatMessage("user", (TextPart("Read this"), DocumentPart(PDF, "application/pdf"))),))
    assert (info.value.reason, info.value.message_index, info.value.part_index) == ("too_large", 0, 1)


def test_reading_stops_at_the_next_page_when_its_request_is_cancelled(monkeypatch):
    """The client left (its task cancelled): the worker thread stops at the next page, not at the last one."""
    on_page_2, cancelled = threading.Event(), threading.Event()
    pages, outcome = [], []
    real_page, real_read = documents._page_text, documents.read_messages

    def page_text(page, reading):
        pages.append(reading.page)
        if reading.page == 2:  # hold the worker mid-document until its request is cancelled
            on_page_2.set()
            assert cancelled.wait(60)
        return real_page(page, reading)

    def read(*args, **kwargs):
        try:
            return real_read(*args, **kwargs)
        except BaseException as exc:
            outcome.append(exc)
            raise

    monkeypatch.setattr(documents, "_page_text", page_text)
    monkeypatch.setattr(documents, "read_messages", read)
    book = DocumentPart(pages_pdf(10), "application/pdf")
    request = ChatRequest(model=None, messages=(ChatMessage("user", (book,)),))

    async def cancel_it() -> None:
        task = asyncio.create_task(read_documents(request))
        assert await asyncio.to_thread(on_page_2.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled.set()  # the worker reads page 2 on, then checks before page 3

    asyncio.run(cancel_it())  # (which joins the executor's threads: the worker has ended)
    assert pages == [1, 2] and len(outcome) == 1 and isinstance(outcome[0], ReadCancelled), (pages, outcome)


def test_pypdf_is_not_loaded_at_server_start():
    code = ("import sys, jan.server.app, jan.services.documents, jan.server.document_inputs; "
            "sys.exit('pypdf' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- a server -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    (folder / "notes.pdf").write_bytes(PDF)
    (folder / "notes.md").write_text(f"# Notes\n\n{SECRET}\n")
    return folder


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path, media):
    with running(tmp_path_factory.mktemp("documents") / "data", stories_path, n_ctx=1024,
                 allow_media_from=[str(media)]) as server:
        yield server


@pytest.fixture(scope="module")
def oai(srv):
    return openai_client(srv, timeout=120)


@pytest.fixture(scope="module")
def claude(srv):
    return anthropic_client(srv, timeout=120)


@pytest.fixture(scope="module")
def uploads(oai):
    """Uploads of the Files API: the PDF, a text file, and what cannot be read."""
    ids = {"pdf": oai.files.create(file=("notes.pdf", PDF), purpose="user_data").id,
           "text": oai.files.create(file=("notes.txt", f"{SECRET}\n".encode()), purpose="user_data").id}
    for name, (data, _, _, _) in BAD.items():
        ids[name] = oai.files.create(file=(f"{name}.pdf" if name != "binary" else "x.zip", data),
                                     purpose="user_data").id
    return ids


def post(srv, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(srv.base_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def prompt(srv, content: list) -> str:
    status, body = post(srv, "/v1/apply-template", {"model": MODEL, "messages": [{"role": "user", "content": content}]})
    assert status == 200, body
    return body["prompt"]


ASK = {"type": "text", "text": "What is the cat called?"}


# -- OpenAI chat completions -----------------------------------------------------------------------------------
def test_openai_file_data_reaches_the_prompt(srv):
    for file_data in (f"data:application/pdf;base64,{b64(PDF)}", b64(PDF)):  # a data: URL, or bare base64
        text = prompt(srv, [ASK, {"type": "file", "file": {"file_data": file_data, "filename": "notes.pdf"}}])
        assert f"notes.pdf\n\n{SECRET}" in text and "What is the cat called?" in text, text
    markdown = f"data:text/markdown;base64,{b64(f'# Notes{chr(10)}{SECRET}'.encode())}"
    assert SECRET in prompt(srv, [{"type": "file", "file": {"file_data": markdown, "filename": "notes.md"}}])


def test_openai_file_id_reaches_the_prompt(srv, uploads):
    for kind in ("pdf", "text"):
        text = prompt(srv, [ASK, {"type": "file", "file": {"file_id": uploads[kind]}}])
        assert SECRET in text and ("notes.pdf" if kind == "pdf" else "notes.txt") in text, text


def test_openai_sdk_chat_completion_with_a_file_part(oai):
    """The official SDK's file part, answered; the document's tokens are in the usage."""
    file_part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}",
                                          "filename": "notes.pdf"}}
    with_file = oai.chat.completions.create(model=MODEL, max_tokens=2, messages=[
        {"role": "user", "content": [ASK, file_part]}])
    plain = oai.chat.completions.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": [ASK]}])
    assert with_file.usage.prompt_tokens > plain.usage.prompt_tokens + 10
    streamed = list(oai.chat.completions.create(model=MODEL, max_tokens=2, stream=True, messages=[
        {"role": "user", "content": [ASK, file_part]}]))
    assert streamed


@pytest.mark.parametrize("name", BAD)
def test_openai_unreadable_documents_are_400s_naming_the_field(oai, uploads, name):
    data, media_type, code, said = BAD[name]
    for file, field in (({"file_data": f"data:{media_type};base64,{b64(data)}", "filename": "x"}, "file_data"),
                        ({"file_id": uploads[name]}, "file_id")):
        with pytest.raises(openai.BadRequestError) as info:
            oai.chat.completions.create(model=MODEL, max_tokens=1, messages=[
                {"role": "user", "content": [ASK, {"type": "file", "file": file}]}])
        error = info.value.body
        assert (error["param"], error["code"]) == (f"messages[0].content[1].file.{field}", code), error
        assert error["message"].startswith(f"messages[0].content[1].file.{field}: ") and said in error["message"]


def test_openai_a_pdf_of_shared_content_is_a_400_naming_the_field(srv, monkeypatch):
    monkeypatch.setattr(documents, "MAX_CONTENT_BYTES", 500_000)  # (the server runs in this process)
    data = f"data:application/pdf;base64,{b64(shared_content_pdf(40, 100_000))}"
    status, body = post(srv, "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "messages": [
        {"role": "user", "content": [ASK, {"type": "file", "file": {"file_data": data, "filename": "x.pdf"}}]}]})
    error = body["error"]
    assert status == 400 and (error["param"], error["code"]) == ("messages[0].content[1].file.file_data",
                                                                 "too_large"), body
    assert "pages share" in error["message"], body


def test_openai_bad_file_inputs_are_400s_naming_the_field(srv):
    cases = [({"file_id": "file-nope"}, "messages[0].content[0].file.file_id", "file_not_found"),
             ({"file_data": "not base64!"}, "messages[0].content[0].file.file_data", "unsupported_format")]
    for file, param, code in cases:
        status, body = post(srv, "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "file", "file": file}]}]})
        assert status == 400 and (body["error"]["param"], body["error"]["code"]) == (param, code), body
    status, body = post(srv, "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "file", "file": {"filename": "x.pdf"}}]}]})
    assert status == 400 and body["error"]["param"].startswith("messages[0].content[0].file"), body


# -- the Responses API ------------------------------------------------------------------------------------------
def input_tokens(srv, content: list, **extra) -> int:
    status, body = post(srv, "/v1/responses/input_tokens", {
        "model": MODEL, "input": [{"role": "user", "content": content}], **extra})
    assert status == 200, body
    return body["input_tokens"]


QUESTION = {"type": "input_text", "text": "What is the cat called?"}


def test_responses_input_file_reaches_the_prompt(srv, uploads, media):
    plain = input_tokens(srv, [QUESTION])
    sources = [{"file_data": f"data:application/pdf;base64,{b64(PDF)}", "filename": "notes.pdf"},
               {"file_data": b64(PDF), "filename": "notes.pdf"},
               {"file_id": uploads["pdf"]},
               {"file_url": f"file://{media / 'notes.pdf'}"},
               {"file_url": str(media / "notes.md")}]
    for source in sources:
        assert input_tokens(srv, [QUESTION, {"type": "input_file", **source}]) > plain + 10, source


def test_responses_sdk_keeps_the_document_in_a_stored_conversation(oai, srv):
    first = oai.responses.create(model=MODEL, max_output_tokens=2, input=[{"role": "user", "content": [
        QUESTION, {"type": "input_file", "filename": "notes.pdf", "file_data": f"data:application/pdf;base64,{b64(PDF)}"}]}])
    plain = oai.responses.create(model=MODEL, max_output_tokens=2, input=[{"role": "user", "content": [QUESTION]}])
    assert first.usage.input_tokens > plain.usage.input_tokens + 10
    # the turn after it still reads the document's text (held as text, not dropped)
    after_doc = input_tokens(srv, [QUESTION], previous_response_id=first.id)
    after_plain = input_tokens(srv, [QUESTION], previous_response_id=plain.id)
    assert after_doc > after_plain + 10


@pytest.mark.parametrize("name", BAD)
def test_responses_unreadable_documents_are_400s_naming_the_field(srv, uploads, name):
    data, media_type, code, said = BAD[name]
    for source, field in (({"file_data": f"data:{media_type};base64,{b64(data)}"}, "file_data"),
                          ({"file_id": uploads[name]}, "file_id")):
        for path in ("/v1/responses", "/v1/responses/input_tokens"):
            status, body = post(srv, path, {"model": MODEL, "max_output_tokens": 1, "input": [
                {"role": "user", "content": [QUESTION, {"type": "input_file", **source}]}]})
            error = body["error"]
            assert status == 400 and (error["param"], error["code"]) == (f"input[0].content[1].{field}", code), body
            assert said in error["message"]


def test_responses_file_inputs_not_there_or_not_allowed(srv, tmp_path):
    cases = [({"file_id": "file-nope"}, "file_id", "file_not_found"),
             ({"file_url": "https://example.com/notes.pdf"}, "file_url", "not_allowed"),
             ({"file_url": str(tmp_path / "notes.pdf")}, "file_url", "not_allowed")]
    for source, field, code in cases:
        status, body = post(srv, "/v1/responses", {"model": MODEL, "input": [
            {"role": "user", "content": [{"type": "input_file", **source}]}]})
        assert status == 400, body
        assert (body["error"]["param"], body["error"]["code"]) == (f"input[0].content[0].{field}", code), body


# -- Anthropic Messages -------------------------------------------------------------------------------------
def count(claude, content: list) -> int:
    return claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}]).input_tokens


TEXT = {"type": "text", "text": "What is the cat called?"}


def test_anthropic_documents_reach_the_prompt(claude, uploads, media):
    plain = count(claude, [TEXT])
    sources = [{"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
               {"type": "base64", "media_type": "text/plain", "data": b64(SECRET.encode())},
               {"type": "text", "media_type": "text/plain", "data": SECRET},
               {"type": "content", "content": [{"type": "text", "text": SECRET}]},
               {"type": "file", "file_id": uploads["pdf"]},
               {"type": "url", "url": f"file://{media / 'notes.pdf'}"}]
    for source in sources:
        document = {"type": "document", "source": source, "title": "Notes", "context": "From the keeper"}
        assert count(claude, [document, TEXT]) > plain + 10, source


def test_anthropic_sdk_message_with_a_pdf_in_a_turn_and_in_a_tool_result(claude):
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}}
    message = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": [document, TEXT]}])
    plain = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": [TEXT]}])
    assert message.usage.input_tokens > plain.usage.input_tokens + 10
    tools = [{"name": "read", "description": "Read a file", "input_schema": {"type": "object", "properties": {}}}]
    answer = claude.messages.create(model=MODEL, max_tokens=2, tools=tools, messages=[
        {"role": "user", "content": [TEXT]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [document]}]}])
    assert answer.usage.input_tokens > plain.usage.input_tokens + 10


@pytest.mark.parametrize("name", BAD)
def test_anthropic_unreadable_documents_are_400s_in_its_shape(claude, uploads, name):
    data, media_type, _code, said = BAD[name]  # (Anthropic's error shape has no code)
    tools = [{"name": "read", "description": "Read a file", "input_schema": {"type": "object", "properties": {}}}]
    for source, field in (({"type": "base64", "media_type": media_type, "data": b64(data)}, "source.data"),
                          ({"type": "file", "file_id": uploads[name]}, "source.file_id")):
        document = {"type": "document", "source": source}
        cases = [([{"role": "user", "content": [TEXT, document]}], "messages.0.content.1"),
                 ([{"role": "user", "content": [TEXT]},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [document]}]}],
                  "messages.2.content.0.content.0")]
        for messages, where in cases:
            with pytest.raises(anthropic.BadRequestError) as info:
                claude.messages.create(model=MODEL, max_tokens=1, tools=tools, messages=messages)
            body = info.value.body
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
            assert body["error"]["message"].startswith(f"{where}.{field}: ") and said in body["error"]["message"], body


def test_anthropic_the_testers_pdf_is_refused_at_once(claude):
    """The outside tester's shape, at jan's own bounds: 40 pages of one stream of 20 MB of spaces (some 20 KB of
    file) counted once (a page's content over its bound) and refused before pypdf parses any."""
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                               "data": b64(shared_content_pdf(40, 20_000_000))}}
    with pytest.raises(anthropic.BadRequestError) as info:
        count(claude, [document, TEXT])
    message = info.value.body["error"]["message"]
    assert message.startswith("messages.0.content.0.source.data: ") and "page 1 " in message, message


def test_anthropic_file_and_url_sources_not_there_or_not_allowed(claude):
    for source, said in (({"type": "file", "file_id": "file-nope"}, "no file"),
                         ({"type": "url", "url": "https://example.com/notes.pdf"}, "not under a URL prefix")):
        with pytest.raises(anthropic.BadRequestError) as info:
            count(claude, [{"type": "document", "source": source}])
        body = info.value.body
        assert body["error"]["type"] == "invalid_request_error" and said in body["error"]["message"], body


def test_an_anthropic_thread_keeps_the_document_text(srv):
    """A threaded turn holds its document as the text it was read as: the next turn reads it, not sent again."""
    beta = {"anthropic-beta": "message-threads-2026-08-12"}
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}}

    def create(content: list) -> str:
        status, body = post(srv, "/v1/messages", {"model": MODEL, "max_tokens": 2, "thread": {"type": "create"},
                                                  "messages": [{"role": "user", "content": content}]}, beta)
        assert status == 200, body
        return body["id"]

    def counted(previous: str) -> int:
        status, body = post(srv, "/v1/messages/count_tokens", {"model": MODEL, "thread": {
            "type": "continue", "previous_message_id": previous}, "messages": [
            {"role": "user", "content": "And the dog?"}]}, beta)
        assert status == 200, body
        return body["input_tokens"]

    assert counted(create([document, TEXT])) > counted(create([TEXT])) + 10
