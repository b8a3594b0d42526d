"""Assistants message ``attachments`` with the real stories260K model: an uploaded PDF or text file attached to a
thread message (``POST /v1/threads``, ``POST /v1/threads/{id}/messages``, ``POST /v1/threads/runs``, a run's
``additional_messages``) is read when the message is written, kept in the thread as text, and read by every run
into that message as a document (its file name, then its text); what cannot be read is a 400 naming the field."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from api_helpers import Client, post_form, running
from cut_off_helpers import png_bytes
from jan.server.keys import SERVICES
from jan.services.chat import ChatService
from jan.services.types import ChatRequest
from run_helpers import run_to_end
from test_documents import make_pdf

MODEL = "stories260K"
BODY = {"model": MODEL, "max_tokens": 2, "temperature": 0}
PDF_TEXT = "The secret word is pumpkin."
NOTES = "Remember the blue kite on the hill.\n"
FILE_SEARCH = [{"type": "file_search"}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("attachments") / "data", stories_path) as server:
        yield server


def upload(srv, filename: str, content: bytes) -> str:
    status, body = post_form(srv.base_url, {"purpose": "assistants"}, filename=filename, content=content)
    assert status == 200, body
    return body["id"]


@pytest.fixture(scope="module")
def files(srv) -> dict[str, str]:
    """Uploads of the module: a one-page PDF, a text file, an image (no document)."""
    return {"pdf": upload(srv, "secret.pdf", make_pdf([PDF_TEXT])), "txt": upload(srv, "notes.txt", NOTES.encode()),
            "png": upload(srv, "red.png", png_bytes())}


@contextlib.contextmanager
def model_requests(srv):
    """The chat requests the runs send to the model, as the run service made them (the real model answers)."""
    chat: ChatService = srv.app[SERVICES].chat
    seen: list[ChatRequest] = []
    original = chat.stream

    def stream(request: ChatRequest):
        seen.append(request)
        return original(request)

    chat.stream = stream
    try:
        yield seen
    finally:
        chat.__dict__.pop("stream", None)


def rendered(srv, request: ChatRequest) -> str:
    """The prompt text ``request`` renders to (the server's own rendering, its documents read, on its loop)."""
    chat: ChatService = srv.app[SERVICES].chat
    return asyncio.run_coroutine_threadsafe(chat.render(request), srv._loop).result(120).text


def attached(*file_ids: str) -> list[dict[str, Any]]:
    return [{"file_id": f, "tools": FILE_SEARCH} for f in file_ids]


async def run_of(srv, api: Client, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A run to its end and the prompt its (one) model turn rendered."""
    with model_requests(srv) as seen:
        run = await run_to_end(api, path, {**BODY, **body})
    # answered: whole, or cut by the body's max_tokens (a tiny model rarely ends in 2 tokens)
    assert run["status"] == "completed" or run["incomplete_details"] == {"reason": "max_completion_tokens"}, run
    [request] = seen
    return run, rendered(srv, request)


def thread_files(srv, thread_id: str) -> list[str]:
    folder = srv.config.data_folder / "threads" / thread_id / "files"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- read into the prompt -------------------------------------------------------------------------------------------
async def test_an_attached_pdf_is_read_into_its_message_on_every_run(srv, files):
    async with Client(srv.base_url) as api:
        plain = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "read"}]}))["id"]
        without, prompt_without = await run_of(srv, api, f"/v1/threads/{plain}/runs", {})
        assert "pumpkin" not in prompt_without

        thread = await api.ok("POST", "/v1/threads", {"messages": [
            {"role": "user", "content": "read", "attachments": attached(files["pdf"])}]})
        [message] = (await api.ok("GET", f"/v1/threads/{thread['id']}/messages"))["data"]
        # the message as the client sent it (OpenAI's echo); the text is the thread's own file, not in messages.jsonl
        assert message["attachments"] == attached(files["pdf"])
        assert message["content"][0]["text"]["value"] == "read" and len(message["content"]) == 1
        [doc_file] = thread_files(srv, thread["id"])
        assert doc_file.startswith("doc-") and doc_file.endswith(".txt")
        assert PDF_TEXT in (srv.config.data_folder / "threads" / thread["id"] / "files" / doc_file).read_text()
        assert "pumpkin" not in (srv.config.data_folder / "threads" / thread["id"] / "messages.jsonl").read_text()

        run, prompt = await run_of(srv, api, f"/v1/threads/{thread['id']}/runs", {})
        # the document in its message: its file name, its text, then the question
        assert f"secret.pdf\n\n{PDF_TEXT}" in prompt and prompt.index(PDF_TEXT) < prompt.rindex("read")
        assert prompt.replace(f"secret.pdf\n\n{PDF_TEXT}", "").count("pumpkin") == 0
        # what the run used is that prompt (its tokens as the engine counts them: a BOS or not), the document's
        # text on top of the plain question's
        tokens = await api.ok("POST", "/v1/tokenize", {"model": MODEL, "content": prompt, "add_special": False,
                                                       "parse_special": True})
        assert run["usage"]["prompt_tokens"] in (len(tokens["tokens"]), len(tokens["tokens"]) + 1)
        text_tokens = await api.ok("POST", "/v1/tokenize", {"model": MODEL, "content": PDF_TEXT, "add_special": False})
        assert run["usage"]["prompt_tokens"] >= without["usage"]["prompt_tokens"] + len(text_tokens["tokens"])

        # a second run reads it again (the thread keeps it: no upload needed)
        _, again = await run_of(srv, api, f"/v1/threads/{thread['id']}/runs", {})
        assert f"secret.pdf\n\n{PDF_TEXT}" in again


async def test_attachments_on_each_creation_route(srv, files):
    async with Client(srv.base_url) as api:
        # POST /v1/threads/{id}/messages: a text file
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        message = await api.ok("POST", f"/v1/threads/{tid}/messages",
                               {"role": "user", "content": "what is on the hill?", "attachments": attached(files["txt"])})
        assert message["attachments"] == attached(files["txt"])
        _, prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {})
        assert f"notes.txt\n\n{NOTES}" in prompt

        # a run's additional_messages: two documents, in the order attached; tools left out are not made up
        run, prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {"additional_messages": [
            {"role": "user", "content": "and now?", "attachments": [{"file_id": files["pdf"]}, {"file_id": files["txt"]}]}]})
        assert prompt.index("secret.pdf") < prompt.index(PDF_TEXT) < prompt.rindex("notes.txt") < prompt.rindex("and now?")
        added = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc"))["data"][-2]
        assert added["content"][0]["text"]["value"] == "and now?"
        assert added["attachments"] == [{"file_id": files["pdf"]}, {"file_id": files["txt"]}]

        # POST /v1/threads/runs: the new thread's message, and code_interpreter kept as data
        tools = [{"type": "code_interpreter"}]
        run, prompt = await run_of(srv, api, "/v1/threads/runs", {"thread": {"messages": [
            {"role": "user", "content": "read", "attachments": [{"file_id": files["txt"], "tools": tools}]}]}})
        assert f"notes.txt\n\n{NOTES}" in prompt
        [first, _reply] = (await api.ok("GET", f"/v1/threads/{run['thread_id']}/messages?order=asc"))["data"]
        assert first["attachments"] == [{"file_id": files["txt"], "tools": tools}]


async def test_a_message_of_attachments_alone_is_a_turn(srv, files):
    async with Client(srv.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {"messages": [
            {"role": "user", "content": "", "attachments": attached(files["txt"])}]}))["id"]
        _, prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {})
        assert f"notes.txt\n\n{NOTES}" in prompt


async def test_the_thread_keeps_the_text_after_the_upload_is_deleted(srv):
    async with Client(srv.base_url) as api:
        file_id = upload(srv, "gone.txt", b"Kept after the upload is gone.")
        tid = (await api.ok("POST", "/v1/threads", {"messages": [
            {"role": "user", "content": "read", "attachments": attached(file_id)}]}))["id"]
        await api.ok("DELETE", f"/v1/files/{file_id}")
        assert (await api.call("GET", f"/v1/files/{file_id}"))[0] == 404
        _, prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {})
        assert "gone.txt\n\nKept after the upload is gone." in prompt
        # and a new message naming the deleted upload is refused
        status, body = await api.post(f"/v1/threads/{tid}/messages",
                                      {"role": "user", "content": "again", "attachments": attached(file_id)})
        assert status == 400 and body["error"]["param"] == "attachments[0].file_id"
        assert body["error"]["code"] == "file_not_found"


# -- refused ----------------------------------------------------------------------------------------------------------
def _routes(file_id: str, tid: str) -> list[tuple[str, dict[str, Any], str]]:
    """(path, body, the field it names) for each route that writes a message attaching ``file_id``."""
    message = {"role": "user", "content": "read", "attachments": attached(file_id)}
    return [
        ("/v1/threads", {"messages": [{"role": "user", "content": "hi"}, message]}, "messages[1].attachments[0].file_id"),
        (f"/v1/threads/{tid}/messages", message, "attachments[0].file_id"),
        ("/v1/threads/runs", {**BODY, "thread": {"messages": [message]}}, "thread.messages[0].attachments[0].file_id"),
        (f"/v1/threads/{tid}/runs", {**BODY, "additional_messages": [message]},
         "additional_messages[0].attachments[0].file_id"),
    ]


@pytest.mark.parametrize("which, code", [("missing", "file_not_found"), ("deleted", "file_not_found"),
                                         ("png", "unsupported_format")])
async def test_a_file_that_is_no_readable_upload_is_a_400_naming_it(srv, files, which, code):
    async with Client(srv.base_url) as api:
        if which == "missing":
            file_id = "file-nope"
        elif which == "deleted":
            file_id = upload(srv, "soon-gone.txt", b"soon gone")
            await api.ok("DELETE", f"/v1/files/{file_id}")
        else:
            file_id = files["png"]
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "hi"}]}))["id"]
        threads_before = {t["id"] for t in (await api.ok("GET", "/v1/threads?limit=100"))["data"]}
        for path, body, param in _routes(file_id, tid):
            status, answer = await api.post(path, body)
            assert status == 400, (path, answer)
            error = answer["error"]
            assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), (path, error)
            assert error["message"].startswith(param) and file_id in error["message"]
        # nothing written: no thread, no message, no run
        assert {t["id"] for t in (await api.ok("GET", "/v1/threads?limit=100"))["data"]} == threads_before
        assert len((await api.ok("GET", f"/v1/threads/{tid}/messages"))["data"]) == 1
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []


async def test_a_pdf_without_text_is_a_400_with_the_documents_code(srv):
    scanned = upload(srv, "scan.pdf", make_pdf([]))
    async with Client(srv.base_url) as api:
        status, body = await api.post("/v1/threads", {"messages": [
            {"role": "user", "content": "read", "attachments": attached(scanned)}]})
        assert status == 400, body
        assert (body["error"]["param"], body["error"]["code"]) == ("messages[0].attachments[0].file_id", "no_text")


@pytest.mark.parametrize("message, param, words", [
    ({"role": "user", "content": "x", "attachments": [{"file_id": "f", "tools": [{"type": "retrieval"}]}]},
     "messages[0].attachments[0].tools[0].type", "file_search"),
    ({"role": "user", "content": "x", "attachments": [{"tools": FILE_SEARCH}]}, "messages[0].attachments[0].file_id",
     "required"),
    ({"role": "user", "content": "x", "attachments": [{"file_id": "f", "document": {"text": "injected"}}]},
     "messages[0].attachments[0].document", "Unrecognized"),
    ({"role": "user", "content": [{"type": "text", "text": "read"},
                                  {"type": "file", "file": {"file_id": "TXT"}}]}, "messages[0].content[1]",
     "attachments"),
    ({"role": "user", "content": [{"type": "input_file", "file_id": "TXT"}]}, "messages[0].content[0]", "attachments"),
])
async def test_malformed_attachments_and_document_parts_are_400s(srv, files, message, param, words):
    message = json.loads(json.dumps(message).replace("TXT", files["txt"]))
    async with Client(srv.base_url) as api:
        status, body = await api.post("/v1/threads", {"messages": [message]})
        assert status == 400, body
        assert body["error"]["param"] == param and words in body["error"]["message"], body["error"]


async def test_a_document_part_on_a_message_says_to_attach_it(srv, files):
    async with Client(srv.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        status, body = await api.post(f"/v1/threads/{tid}/messages", {"role": "user", "content": [
            {"type": "file", "file": {"file_id": files["pdf"]}}]})
        assert status == 400 and body["error"]["param"] == "content[0]"
        assert '"attachments": [{"file_id"' in body["error"]["message"] and "image_file" in body["error"]["message"]


# -- the store ----------------------------------------------------------------------------------------------------
def test_the_store_keeps_a_documents_text_as_a_thread_file(tmp_path):
    from jan.store import DataFolder, InvalidArgumentError

    folder = DataFolder(tmp_path)
    sent = {"file_id": "file-a", "tools": FILE_SEARCH, "document": {"filename": "a.txt", "text": "Alpha text."}}
    thread = folder.threads.create(messages=[{"role": "user", "content": "one", "attachments": [sent]}])
    message = folder.messages.create(thread["id"], "user", "two", attachments=[dict(sent)])
    [first] = folder.messages.list(thread["id"]).data[:1]
    for stored in (first, message):
        [attachment] = stored["attachments"]
        assert attachment["file_id"] == "file-a" and attachment["tools"] == FILE_SEARCH
        document = attachment["document"]
        assert document["filename"] == "a.txt" and "text" not in document
        assert folder.messages.read_file(thread["id"], document["file_id"]) == (b"Alpha text.", "text/plain")
    assert first["attachments"][0]["document"] == message["attachments"][0]["document"]  # one file for one text
    assert "Alpha text." not in (tmp_path / "threads" / thread["id"] / "messages.jsonl").read_text()

    # a reference must name a document the thread has: a message naming one it lacks would fail every run
    missing = {"file_id": "file-b", "document": {"filename": "b.txt", "file_id": f"doc-{'0' * 32}.txt"}}
    with pytest.raises(InvalidArgumentError) as info:
        folder.messages.create(thread["id"], "user", "three", attachments=[missing])
    assert (info.value.param, info.value.code) == ("attachments[0].document.file_id", "file_not_found")
    with pytest.raises(InvalidArgumentError) as info:
        folder.threads.create(messages=[{"role": "user", "content": "x", "attachments": [missing]}])
    assert info.value.param == "messages[0].attachments[0].document.file_id"
    kept = {"file_id": "file-c", "document": message["attachments"][0]["document"]}
    assert folder.messages.create(thread["id"], "user", "four", attachments=[kept])["attachments"] == [kept]


def test_an_image_part_cannot_name_a_documents_text(tmp_path):
    from jan.store import DataFolder, InvalidArgumentError

    folder = DataFolder(tmp_path)
    sent = {"file_id": "file-a", "document": {"filename": "a.txt", "text": "Alpha text."}}
    thread = folder.threads.create(messages=[{"role": "user", "content": "one", "attachments": [sent]}])
    doc_id = folder.messages.list(thread["id"]).data[0]["attachments"][0]["document"]["file_id"]
    with pytest.raises(InvalidArgumentError) as info:
        folder.messages.create(thread["id"], "user", [{"type": "image_file", "image_file": {"file_id": doc_id}}])
    assert (info.value.param, info.value.code) == ("content[0].image_file.file_id", "invalid_id")
