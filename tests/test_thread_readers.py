"""One reading of a stored thread, whoever continues it: a run (the web page, the Assistants API, ``jan chat``:
``chat_messages``) and the Responses API (a conversation, ``previous_response_id``: ``history_turns``) read a thread's
messages through one conversion (:func:`jan.services.thread_turns.thread_history`).

Two disagreements it removed: a reply cut off in its thinking (a thread message with its thinking alone) was left
out of a run's prompt but read as an answer's turn by the Responses API (now a turn of its own everywhere, as the
Responses API and an input read it); and the items of one model turn added to a conversation in separate adds (its
reasoning, then its message; its message, then its calls) were read as two turns, where the same items added at once
(or sent in an input) are one."""

from __future__ import annotations

import types

import pytest

from jan.server.dialects import conversations, responses
from jan.server.dialects.responses_store import thread_entries
from jan.services.kept_items import history_turns
from jan.services.runs import history_messages, prompt_window
from jan.services.tool_loop import chat_messages

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}
AGAIN = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]}


def _reasoning(i: int) -> dict:
    return {"type": "reasoning", "id": f"rs_{i}", "summary": [],
            "content": [{"type": "reasoning_text", "text": f"think {i}"}]}


def _said(i: int) -> dict:
    return {"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": f"said {i}", "annotations": []}]}


def _call(i: int) -> dict:
    return {"type": "function_call", "id": f"fc_{i}", "call_id": f"call_{i}", "name": "weather",
            "arguments": f'{{"day": {i}}}'}


def _output(i: int) -> dict:
    return {"type": "function_call_output", "id": f"fco_{i}", "call_id": f"call_{i}", "output": f"sunny {i}"}


def _mcp(i: int) -> dict:
    return {"type": "mcp_call", "id": f"mcp_{i}", "server_label": "notes", "name": "list_notes", "arguments": "{}",
            "output": f"notes {i}", "error": None}


#: Items of answers whose turn may be split across adds, each between the user's turns.
SEQUENCES = {
    "reasoning, message": [_reasoning(1), _said(1)],
    "reasoning in pieces, message": [_reasoning(1), _reasoning(2), _said(1)],
    "message, call, output": [_said(1), _call(1), _output(1), _said(2)],
    "reasoning, call, output": [_reasoning(1), _call(1), _output(1), _said(2)],
    "message, reasoning, two calls": [_said(1), _reasoning(1), _call(1), _call(2), _output(1), _output(2)],
    "two calls": [_call(1), _call(2), _output(1), _output(2), _reasoning(3), _said(3)],
    "reasoning, message, mcp call": [_reasoning(1), _said(1), _mcp(1), _reasoning(2), _said(2)],
    "reasoning alone": [_said(1), _reasoning(2)],
}


def _kept(items: list[dict]) -> list:
    """What ``POST /v1/conversations/{id}/items`` keeps of ``items`` (the route's steps, with no file to read)."""
    body = conversations.ConversationItems.model_validate({"items": items})
    sourced = responses.sourced_turns(body.items, "items")
    return conversations.kept_turns(responses.input_items(body.items), [turn for turn, _, _ in sourced],
                                    [sources for _, _, sources in sourced])


def _plain(turns) -> list[tuple]:
    return [(t.role, t.text, [(c.id, c.name, c.arguments) for c in t.tool_calls], t.tool_call_id, t.reasoning)
            for t in turns]


def _as_plain(message: dict) -> tuple:
    calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or ()]
    return (message["role"], message.get("content") or "", calls, message.get("tool_call_id"),
            message.get("reasoning_content"))


async def _store(tmp_path):
    from jan.extensions.conversational.extension import ConversationalStoreExtension
    from jan.server.dialects.conversations_store import ConversationStore
    from jan.server.dialects.responses_store import ResponsesStore

    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    return threads, ConversationStore(ResponsesStore(tmp_path / "responses", lambda: threads))


@pytest.mark.parametrize("name", sorted(SEQUENCES))
async def test_items_added_apart_read_as_the_same_items_added_at_once(tmp_path, name):
    """An answer's items added to a conversation in two adds, at every point between them, read as the same items
    added at once (and as an input sending them reads them), by the Responses API and by a run continuing the
    conversation alike. Added apart, an answer's reasoning then its message were two turns (thinking alone, then the
    text), and its message then its calls two turns."""
    threads, store = await _store(tmp_path)
    items = [USER, *SEQUENCES[name], AGAIN]
    whole = (await store.create([], None))["id"]
    await store.add(whole, _kept(items))
    expected, _ = await store.history(whole)
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": items})
    assert _plain(expected) == _plain(responses.input_messages(body.input))
    # (a run's typed prompt is shaped for strict templates past the reading: renderable joins turns of one role)
    run = _plain(history_messages(prompt_window(await threads.list_messages(whole, order="asc")), ""))
    for cut in range(1, len(items)):
        conversation = (await store.create([], None))["id"]
        await store.add(conversation, _kept(items[:cut]))
        await store.add(conversation, _kept(items[cut:]))
        turns, _ = await store.history(conversation)
        assert _plain(turns) == _plain(expected), (name, cut)
        messages = await threads.list_messages(conversation, order="asc")
        assert [_as_plain(m) for m in chat_messages(prompt_window(messages), "")] == _plain(expected), (name, cut)
        assert _plain(history_messages(prompt_window(messages), "")) == run, (name, cut)


def _run_reply(*, thinking: str = "", text: str = "", status: str = "completed") -> dict:
    """A reply as a run saves it (its thinking a ``reasoning`` part before its text, values as the store keeps)."""
    content = [{"type": "reasoning", "text": {"value": thinking, "annotations": []}}] if thinking else []
    content += [{"type": "text", "text": {"value": text, "annotations": []}}] if text else []
    return {"role": "assistant", "status": status, "content": content, "metadata": {}}


def _run_user(text: str) -> dict:
    return {"role": "user", "status": "completed", "metadata": {},
            "content": [{"type": "text", "text": {"value": text, "annotations": []}}]}


@pytest.mark.parametrize("kept_in", ["reasoning part", "metadata"])
def test_a_reply_cut_off_in_its_thinking_is_a_turn_of_its_thinking_for_every_reader(kept_in):
    """A reply cut off while the model was thinking (stopped, or its token limit reached) keeps its thinking alone.
    The Responses API read it as an answer's turn of that thinking (as an input's reasoning item before a user
    message is, and as the chat completion dialects' thinking-only assistant turn is); a run of the same thread left
    it out, the two user turns then joined into one. Both read it as the turn it was now."""
    cut = _run_reply(thinking="It is about the weather", status="stopped") if kept_in == "reasoning part" else \
        {"role": "assistant", "status": "completed", "content": [],
         "metadata": {"reasoning_content": "It is about the weather"}}
    thread = [_run_user("Weather?"), cut, _run_user("Hello?"), _run_reply(text="Hi.")]
    want = [("user", "Weather?", [], None, None), ("assistant", "", [], None, "It is about the weather"),
            ("user", "Hello?", [], None, None), ("assistant", "Hi.", [], None, None)]
    assert _plain(history_turns(e for m in thread for e in thread_entries(m))) == want
    assert [_as_plain(m) for m in chat_messages(thread, "")] == want
    # in a run's window (counted as the turn it is) and its typed prompt
    assert prompt_window(thread) == thread
    assert _plain(history_messages(prompt_window(thread), "")) == want
