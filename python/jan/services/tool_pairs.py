"""Tool calls and tool results pair up: the one rule, worded by each dialect in its own terms.

Chat templates take for granted that every tool result answers a call the assistant made, and that every call is
answered: some raise on a stray result, others render a prompt that tells the model nonsense (a result for a call it
never made, a call left hanging). The upstream APIs refuse such conversations with a 400, and so does jan, before
anything is queued or stored: :func:`check_tool_pairs` walks the typed messages and raises a
:class:`ToolPairError` saying where (the typed message, the ids); each dialect maps it to its own field names and
words (its messages are not the typed request's one for one).

Two orders, as the APIs have them: ``"adjacent"`` (Chat Completions, Anthropic Messages): an assistant message's
calls are answered by the tool messages right after it, before any other message; ``"earlier"`` (Responses): a
result answers any unanswered call before it, and every call is answered somewhere after it. In both, a call may
not take the id of a call still unanswered (two in one assistant message, mostly): which of them a result answers
would be a guess, so the APIs refuse it as a duplicate id.

A result without a call id (Ollama's, which name a tool if anything) answers the earliest unanswered call, as
:mod:`jan.templates.chat` pairs them for templates that need ids; the dialects whose results always carry ids are
the ones that check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from jan.services.errors import RequestError
from jan.services.types import ChatMessage

__all__ = ["ToolPairError", "ToolPairOrder", "check_tool_pairs"]

ToolPairOrder = Literal["adjacent", "earlier"]


class ToolPairError(RequestError):
    """Tool calls and results that do not pair up, in the typed request's messages.

    ``kind``: ``"unanswered"``: the assistant message ``index`` made the calls ``ids``, which no result answers
    (``next_index``: the message that came where their results belong, in the ``"adjacent"`` order; None when the
    conversation ends there); ``"unexpected"``: the tool message ``index`` answers ``ids`` (its one id), a call
    that was not made (or not there, or answered already); ``"duplicate"``: the assistant message ``index`` makes
    a call (``call_index``: its place in the message's ``tool_calls``) whose id ``ids`` (one) a call not answered yet
    has already. The message and ``param`` name the typed messages, for a front end that has no words of its
    own."""

    def __init__(self, kind: Literal["unanswered", "unexpected", "duplicate"], index: int, ids: tuple[str, ...],
                 next_index: int | None = None, call_index: int | None = None):
        named = ", ".join(repr(cid) for cid in ids)
        if kind == "unanswered":
            message = f"messages[{index}]: no tool message answers the call(s) {named}"
        elif kind == "duplicate":
            message = f"messages[{index}]: the tool call id {named} is already the id of a call not answered yet"
        else:
            message = f"messages[{index}]: the tool result for {named} answers no tool call before it"
        codes = {"unanswered": "unanswered_tool_calls", "unexpected": "unexpected_tool_result",
                 "duplicate": "duplicate_tool_call_id"}
        super().__init__(message, param=f"messages[{index}]", code=codes[kind])
        self.kind = kind
        self.index = index
        self.ids = ids
        self.next_index = next_index
        self.call_index = call_index


def check_tool_pairs(messages: Sequence[ChatMessage], order: ToolPairOrder = "adjacent") -> None:
    """:class:`ToolPairError` for the first place in ``messages`` where a result answers no call, a call repeats
    the id of one not answered yet, or calls go unanswered (see the module docstring for ``order``); a conversation ending in unanswered calls is refused
    too (there is nothing to continue: a turn with calls is answered by their results)."""
    # calls not answered yet, in order: their id (unique among them: a repeat is refused) to the assistant message's
    # index. A dict, not a list searched for each call and result: 30,000 calls in one message, a 2 MB body, took
    # minutes to check, pair by pair.
    pending: dict[str, int] = {}

    def unanswered(next_index: int | None) -> ToolPairError:
        index = next(iter(pending.values()))
        return ToolPairError("unanswered", index, tuple(cid for cid, at in pending.items() if at == index), next_index)

    for i, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id is None:
                answered = next(iter(pending), None)
            else:
                answered = message.tool_call_id if message.tool_call_id in pending else None
            if answered is None:
                raise ToolPairError("unexpected", i, (message.tool_call_id or "",))
            del pending[answered]
            continue
        if pending and order == "adjacent":  # any other message ends the results of the calls before it
            raise unanswered(i)
        if message.role == "assistant":
            for k, call in enumerate(message.tool_calls):
                if call.id in pending:
                    raise ToolPairError("duplicate", i, (call.id,), call_index=k)
                pending[call.id] = i
    if pending:
        raise unanswered(None)
