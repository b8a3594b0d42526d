"""`jan chat` never sends a conversation with unanswered tool calls (the servers refuse those, as upstream), and never
puts to the user a call whose arguments the token limit cut."""

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


# -- a call --max-tokens cut off is neither asked about nor run -------------------------------------------------------
class _CutGeneration:
    """A turn the token limit ended inside the second of its calls (the first one's arguments are whole)."""

    finish_reason = None

    def __init__(self, calls: list[dict]):
        self._calls = calls
        self.tool_calls: list[dict] = []

    def __iter__(self):
        self.tool_calls, self.finish_reason = self._calls, "length"
        return iter(())

    def cancel(self):
        pass


def test_a_call_the_token_limit_cut_is_not_put_to_the_user(capsys):
    from jan.cli.chat import ChatSession

    whole = {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    cut = {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Ly'}}
    turns = [[whole, cut], [cut]]
    asked, ran = [], []

    class Backend:
        model_id = "m"

        def chat(self, messages, options, **_):
            return _CutGeneration(turns.pop(0) if turns else [])

    class Tools:
        specs = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

        def call(self, name, arguments):
            ran.append(arguments)
            return "sunny", False, 1

    session = ChatSession(None, Backend(), options={"max_tokens": 8}, system=None, autosave=False, load_kwargs={})
    session.tools, session.confirm = Tools(), lambda prompt: asked.append(prompt) or "y"
    session.ask("Weather?")
    assert ran == ['{"city": "Paris"}'] and len(asked) == 1  # only the whole call was asked about and ran
    # (a note: stderr, stdout being no terminal)
    assert capsys.readouterr().err.count("[tool call get_weather cut off by the token limit]") == 2
    # the next turn held only the cut call: it ends the chat's turn as a cut-off answer, with no call in it
    assert session.messages[-1] == {"role": "assistant", "content": ""} and session.meta[-1]["finish_reason"] == "length"
    check_tool_pairs(_typed(answered(session.messages)))
