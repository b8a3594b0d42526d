"""Documents (PDFs, text files) in every dialect that has them, read as text on one typed path
(:mod:`jan.services.documents`): OpenAI chat ``file`` parts, Responses ``input_file``, Anthropic ``document``
blocks; inline, by an upload's id (jan's Files API) or by URL (``--allow-media-from``). The PDFs are built here
by hand (one page, a Helvetica text object); the prompt is observed as the server renders it
(``/v1/apply-template``) or by its token count (``count_tokens``, ``/v1/responses/input_tokens``)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import anthropic
import openai
import pypdf
import pytest
from dialect_helpers import anthropic_client, openai_client
from api_helpers import running
from jan.errors import DocumentError
from jan.services.documents import document_text, read_messages
from jan.services.types import ChatMessage, DocumentPart, TextPart

SECRET = "The lighthouse cat is called Moss."  # (no quote: Helvetica's is a curly one)
MODEL = "stories260K"


# -- documents built here ----------------------------------------------------------------------------------
def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (Helvetica, one text object), with a correct xref."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    stream = ops.encode("latin-1")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
                b"/Contents 5 0 R >>"),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"]
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
        cases = [([{"role": "user", "content": [TEXT, document]}], "messages[0].content[1]"),
                 ([{"role": "user", "content": [TEXT]},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [document]}]}],
                  "messages[2].content[0].content[0]")]
        for messages, where in cases:
            with pytest.raises(anthropic.BadRequestError) as info:
                claude.messages.create(model=MODEL, max_tokens=1, tools=tools, messages=messages)
            body = info.value.body
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
            assert body["error"]["message"].startswith(f"{where}.{field}: ") and said in body["error"]["message"], body


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
