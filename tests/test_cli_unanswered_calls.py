"""`jan chat` never sends a conversation with unanswered tool calls (the servers refuse those, as upstream)."""

from __future__ import annotations

import pytest

from jan.cli.chat import STOPPED_CALL, answered
from jan.services.tool_pairs import check_tool_pairs
from jan.services.types import ChatMessage, ToolCall


def _call(cid: str, name: str = "notes__list_notes") -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}}


def _typed(messages: list[dict]) -> list[ChatMessage]:
    return [ChatMessage(m["role"], m.get("content") or "",
                        tool_calls=tuple(ToolCall(c["id"], c["function"]["name"], "{}") for c in m.get("tool_calls") or ()),
                        tool_call_id=m.get("tool_call_id")) for m in messages]


@pytest.mark.parametrize("history", [
    # saved while the second of two calls ran (SIGTERM mid-call), then the user went on
    [{"role": "user", "content": "notes?"},
     {"role": "assistant", "content": None, "tool_calls": [_call("a"), _call("b")]},
     {"role": "tool", "tool_call_id": "a", "content": "x.txt"},
     {"role": "user", "content": "and now?"}],
    # saved right after the calling turn: the chat ends in it
    [{"role": "user", "content": "notes?"}, {"role": "assistant", "content": None, "tool_calls": [_call("a")]}],
])
def test_unanswered_calls_are_sent_as_stopped(history):
    sent = answered(history)
    check_tool_pairs(_typed(sent))  # raises ToolPairError if any call is left unanswered
    stopped = [m for m in sent if m.get("content") == STOPPED_CALL]
    assert stopped and all(m["role"] == "tool" for m in stopped)
    assert [m for m in sent if m.get("content") != STOPPED_CALL] == history  # nothing else changes


def test_an_answered_chat_is_sent_as_it_is():
    history = [{"role": "user", "content": "notes?"},
               {"role": "assistant", "content": None, "tool_calls": [_call("a")]},
               {"role": "tool", "tool_call_id": "a", "content": "x.txt"},
               {"role": "assistant", "content": "You have x.txt."}]
    assert answered(history) == history
