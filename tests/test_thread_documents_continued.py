"""The documents attached to a thread's messages reach the model wherever the conversation goes on: a run of the
thread reads them, and so does ``jan chat --thread`` continuing it (against a server: ``?all=true`` shows each
attachment's ``document``, whose text the files route serves; locally: the data folder) — the same documents, in
the same turns. Attachments are taken on a message of any role (OpenAI takes them on an assistant's too) and read
into that turn."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Client, running
from test_threads_attachments import model_requests, rendered, run_of, upload

from jan.cli.conversation import LocalThreads, ServerThreads, history_of
from jan.cli.inference import _typed_parts
from jan.services.types import DocumentPart

MODEL = "stories260K"
NOTES = "Remember the blue kite on the hill.\n"
ANSWER = "The kite is on the hill, by the old oak.\n"
RULES = "Answer in one short sentence.\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("continued") / "data", stories_path) as server:
        yield server


def attached(file_id: str) -> list[dict[str, Any]]:
    return [{"file_id": file_id, "tools": [{"type": "file_search"}]}]


async def _thread(srv, api: Client) -> str:
    """A thread whose user, assistant and system turns each attach a document."""
    notes, answer, rules = (upload(srv, "notes.txt", NOTES.encode()), upload(srv, "answer.txt", ANSWER.encode()),
                            upload(srv, "rules.txt", RULES.encode()))
    thread = await api.ok("POST", "/v1/threads", {"messages": [
        {"role": "user", "content": "where is the kite?", "attachments": attached(notes)},
        {"role": "assistant", "content": "see my notes", "attachments": attached(answer)},
        {"role": "system", "content": "", "attachments": attached(rules)},
    ]})
    return thread["id"]


def _in_order(prompt: str, *texts: str) -> None:
    at = -1
    for text in texts:
        assert text in prompt[at + 1:], (text, prompt)
        at = prompt.index(text, at + 1)


async def test_attachments_on_assistant_and_system_messages_are_read_into_those_turns(srv):
    async with Client(srv.base_url) as api:
        tid = await _thread(srv, api)
        # the API echoes them as sent, on every role
        listed = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc"))["data"]
        assert [m["role"] for m in listed] == ["user", "assistant", "system"]
        assert all(m["attachments"][0].keys() == {"file_id", "tools"} for m in listed)
        added = await api.ok("POST", f"/v1/threads/{tid}/messages", {
            "role": "assistant", "content": "more", "attachments": attached(upload(srv, "more.txt", b"More text."))})
        assert added["attachments"][0]["file_id"].startswith("file-")
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "and now?"})

        _, prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {})
        # each document in its own turn, before that turn's text
        _in_order(prompt, f"notes.txt\n\n{NOTES}", "where is the kite?", f"answer.txt\n\n{ANSWER}", "see my notes",
                  f"rules.txt\n\n{RULES}", "more.txt\n\nMore text.", "more", "and now?")


async def test_all_true_shows_the_document_reference_the_openai_list_leaves_out(srv):
    async with Client(srv.base_url) as api:
        tid = await _thread(srv, api)
        for every in (False, True):
            listed = f"/v1/threads/{tid}/messages?order=asc" + ("&all=true" if every else "")
            [first, *_] = (await api.ok("GET", listed))["data"]
            one = await api.ok("GET", f"/v1/threads/{tid}/messages/{first['id']}" + ("?all=true" if every else ""))
            for message in (first, one):
                [attachment] = message["attachments"]
                if not every:
                    assert attachment.keys() == {"file_id", "tools"}
                    continue
                document = attachment["document"]
                assert document["filename"] == "notes.txt" and document["file_id"].startswith("doc-")
                status, _ = await api.call("GET", f"/v1/threads/{tid}/files/{document['file_id']}")
                assert status == 200


async def test_jan_chat_against_a_server_sends_the_documents_a_run_reads(srv):
    from jan.cli.client import ApiClient

    async with Client(srv.base_url) as api:
        tid = await _thread(srv, api)
        _, run_prompt = await run_of(srv, api, f"/v1/threads/{tid}/runs", {"additional_messages": [
            {"role": "user", "content": "and now?"}]})

    def continued() -> list[dict[str, Any]]:  # jan chat --thread's own steps (blocking HTTP: off the test's loop)
        threads = ServerThreads(ApiClient(srv.base_url))
        thread, stored = threads.load(tid)
        return history_of(stored, lambda file_id: threads.read_file(thread["id"], file_id))

    import asyncio

    history = await asyncio.to_thread(continued)
    assert [m["role"] for m in history][:4] == ["user", "assistant", "system", "user"]
    assert [p["type"] for p in history[0]["content"]] == ["file", "text"]
    # what `jan chat` sends the server for its next turn (the run's reply and the new question included)
    with model_requests(srv) as seen:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "temperature": 0,
                                                          "messages": history + [{"role": "user", "content": "next"}]})
    [request] = seen
    chat_prompt = rendered(srv, request)
    expected = (f"notes.txt\n\n{NOTES}", "where is the kite?", f"answer.txt\n\n{ANSWER}", "see my notes",
                f"rules.txt\n\n{RULES}", "and now?")
    _in_order(run_prompt, *expected)
    _in_order(chat_prompt, *expected, "next")


def test_jan_chat_in_the_data_folder_reads_the_documents_a_run_reads(tmp_path):
    """Local mode: the conversation ``jan chat --thread`` rebuilds holds, turn by turn, the very documents (text and
    title) the run service puts in a run's prompt of the same thread."""
    from jan.cli.local import LocalRuntime
    from jan.services.runs import history_messages, thread_files

    def attachment(name: str, text: str) -> list[dict[str, Any]]:
        return [{"file_id": f"file-{name}", "document": {"filename": f"{name}.txt", "text": text}}]

    runtime = LocalRuntime(tmp_path / "data")
    try:
        threads = LocalThreads(runtime)
        store = threads.store
        thread = runtime.call(store.create_thread({"title": "t", "messages": [
            {"role": "user", "content": "where is the kite?", "attachments": attachment("notes", NOTES)},
            {"role": "assistant", "content": "see my notes", "attachments": attachment("answer", ANSWER)},
            {"role": "system", "content": "", "attachments": attachment("rules", RULES)},
        ]}))
        _, stored = threads.load(thread["id"])
        history = history_of(stored, lambda file_id: threads.read_file(thread["id"], file_id))
        cli = [(m["role"], [p for p in _typed_parts(m["content"]) if isinstance(p, DocumentPart)]) for m in history]

        files = runtime.call(thread_files(store, thread["id"], stored))
        run = [(m.role, [p for p in m.content if isinstance(p, DocumentPart)]) for m in history_messages(stored, "", files)]
    finally:
        runtime.close()
    assert [(role, [(d.title, d.data) for d in docs]) for role, docs in cli] == [
        ("user", [("notes.txt", NOTES.encode())]), ("assistant", [("answer.txt", ANSWER.encode())]),
        ("system", [("rules.txt", RULES.encode())])]
    assert [(r, [(d.title, d.data, d.media_type) for d in docs]) for r, docs in cli] == \
        [(r, [(d.title, d.data, d.media_type) for d in docs]) for r, docs in run]


def test_history_without_a_file_reader_is_the_text():
    stored = [{"role": "assistant", "content": [{"type": "text", "text": {"value": "hi", "annotations": []}}],
               "attachments": [{"file_id": "file-a", "document": {"filename": "a.txt", "file_id": "doc-a.txt"}}]}]
    assert history_of(stored) == [{"role": "assistant", "content": "hi"}]
    files = {"doc-a.txt": (b"Alpha.", "text/plain; charset=utf-8")}
    [message] = history_of(stored, files.__getitem__)
    assert message == {"role": "assistant", "content": [
        {"type": "file", "file": {"file_data": "data:text/plain;base64,QWxwaGEu", "filename": "a.txt"}},
        {"type": "text", "text": "hi"}]}


def test_history_sends_a_replys_thinking_as_its_reasoning_not_its_text():
    """As a run sends an earlier reply: its text, and its saved thinking as ``reasoning_content`` (the chat template
    keeps or drops it), never the thinking as part of what it said."""
    stored = [{"role": "user", "content": "hi"},
              {"role": "assistant", "content": [{"type": "reasoning", "text": {"value": "hmm", "annotations": []}},
                                                {"type": "text", "text": {"value": "hello", "annotations": []}}]},
              {"role": "system", "content": ""}]
    assert history_of(stored) == [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "hello", "reasoning_content": "hmm"}]


async def test_jan_chat_saves_and_resumes_a_tool_loop_through_a_server(srv):
    """``jan chat --tool`` against a server saves its tool results (Jan's ``tool`` role, as the data folder keeps
    them) and ``jan chat --thread`` resumes the loop as a run reads it: the calling turn with its calls, each result
    after it. (A tool message was a 400, and every later save of the conversation failed with it.)"""
    import asyncio

    from jan.cli.client import ApiClient
    from jan.services.tool_loop import chat_messages

    call = {"id": "call_1", "type": "function", "function": {"name": "current_time", "arguments": "{}"}}

    def chat_saves_and_resumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # blocking HTTP, as jan chat
        threads = ServerThreads(ApiClient(srv.base_url))
        tid = threads.create("tools", [], {"created_by": "jan chat"})
        threads.add(tid, "user", "what time is it?")
        threads.add(tid, "assistant", "", metadata={"tool_calls": [call]})
        threads.add(tid, "tool", "12:00", metadata={"tool_call_id": "call_1", "name": "current_time",
                                                    "duration_ms": 3, "approved_by": "user", "is_error": False})
        threads.add(tid, "assistant", "It is noon.")
        _, stored = threads.load(tid)
        return stored, history_of(stored)

    stored, history = await asyncio.to_thread(chat_saves_and_resumes)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert history == chat_messages(stored, "")
    assert history[1]["tool_calls"] == [call] and history[2] == {
        "role": "tool", "tool_call_id": "call_1", "name": "current_time", "content": "12:00"}
    async with Client(srv.base_url) as api:
        # OpenAI's plain listing leaves the tool result out, as it leaves run steps out
        listed = await api.ok("GET", f"/v1/threads/{stored[0]['thread_id']}/messages?order=asc")
        assert [m["role"] for m in listed["data"]] == ["user", "assistant", "assistant"]
        # the next turn goes to the model with the loop in it
        await api.ok("POST", "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "temperature": 0,
                                                      "messages": history + [{"role": "user", "content": "thanks"}]})
