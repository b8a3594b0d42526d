"""The items a conversation keeps as they were (no turn of the chat: a Responses ``mcp_call``, a web search call, an
MCP listing or approval), and the turns the model reads of them: the one conversion every path takes (a stored
response continued with ``previous_response_id``, a conversation, the items sent back in an ``input``, a web-page
run continuing such a thread), so a follow-up's prompt is the same whichever way the client went on.

An ``mcp_call`` is read as the call the model made and the call's result (:func:`mcp_call_turns`). What the model
wrote before the call in the same turn (its thinking, its text) is that call turn's, as the model wrote them in one
turn and as the answer's own tool loop reads them (:mod:`jan.services.mcp_use`): an input reads the items before the
call so, and a stored response, which keeps them as a turn of their own (a thread message of its own, listed as its
``reasoning`` and ``message`` items), is read so too (:func:`history_turns`). Nothing here knows HTTP or a store: a
thread message is a dict, as the conversation store keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from jan.services.encrypted_reasoning import reasoning_item_text
from jan.services.types import ChatMessage, ToolCall
from jan.services.untrusted import UntrustedTextPart

__all__ = ["calls_after", "continued", "history_turns", "kept_item", "kept_item_turns", "listed_names",
           "mcp_call_error_text", "mcp_call_turns"]


def kept_item(message: dict[str, Any]) -> dict[str, Any] | None:
    """The item a thread message keeps that is no turn of the chat (``metadata.item``); ``None`` for none."""
    metadata = message.get("metadata")
    item = metadata.get("item") if isinstance(metadata, dict) else None
    return item if isinstance(item, dict) and isinstance(item.get("type"), str) else None


def mcp_call_error_text(error: dict[str, Any]) -> str:
    """The text of an ``mcp_call`` item's typed error (any of OpenAI's three kinds), for the prompt."""
    if isinstance(error.get("message"), str):
        return error["message"]
    content = error.get("content")
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        if texts:
            return "\n".join(texts)
    return json.dumps(content if content is not None else error, ensure_ascii=False)


def listed_names(item: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """An ``mcp_list_tools`` item's server label and the names its tools are offered by (by MCP name: distinct, as
    :func:`jan.extensions.mcp.server.tool_names` makes them, where ``a.b`` and ``a_b`` or two non-ASCII names meet);
    ``None`` for another item or a listing that says none."""
    from jan.extensions.mcp.server import tool_names

    label, tools = item.get("server_label"), item.get("tools")
    if item.get("type") != "mcp_list_tools" or not isinstance(label, str) or not isinstance(tools, list):
        return None
    return label, tool_names(label, [t["name"] for t in tools
                                     if isinstance(t, dict) and isinstance(t.get("name"), str)])


def mcp_call_turns(item: dict[str, Any], call_id: str, before: ChatMessage | None = None,
                   names: dict[str, dict[str, str]] | None = None) -> list[ChatMessage]:
    """An earlier answer's ``mcp_call`` item (kept by a stored response or a conversation, or sent back in an input)
    as the turns the model read after making it: its call (``call_id``) in the turn ``before`` it began (what the
    model wrote before the call: :func:`continued`), and the call's result, so a later turn knows what ran and what
    it gave. ``names``: the names the server's tools were offered by, of the last listing before the call
    (:func:`listed_names`; else the plain ``<label>__<tool>``). ``ValueError`` for an item that does not say which
    tool of which server it called."""
    from jan.services.mcp_use import jan_name  # (mcp_use imports the tool loop, which reads kept items: here)

    label, tool = item.get("server_label"), item.get("name")
    if not isinstance(label, str) or not isinstance(tool, str):
        raise ValueError("an mcp_call item needs its server_label and name")
    arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else "{}"
    output, error = item.get("output"), item.get("error")
    if isinstance(error, dict):  # (OpenAI's typed error: mcp_tool_execution_error, mcp_protocol_error, ...)
        error = mcp_call_error_text(error)
    result = output if isinstance(output, str) else f"Error: {error}" if error else ""
    call = ToolCall(call_id, (names or {}).get(label, {}).get(tool) or jan_name(label, tool), arguments)
    return [ChatMessage("assistant", before.content if before is not None else (), tool_calls=(call,),
                        reasoning=(before.reasoning if before is not None else None) or None),
            # (the server's output, third-party text, as the answer's own loop read it: jan.services.mcp_use)
            ChatMessage("tool", (UntrustedTextPart(result, source="tool"),), tool_call_id=call_id)]


def kept_item_turns(item: dict[str, Any], before: ChatMessage | None = None,
                    names: dict[str, dict[str, str]] | None = None) -> list[ChatMessage]:
    """The turns the model reads of a kept item: an ``mcp_call``'s call (in ``before``, the turn it ends; ``names``:
    :func:`mcp_call_turns`) and result; a reasoning item's thinking as an answer's turn of its own; none of any other
    (a web search call, an MCP listing or approval)."""
    if item.get("type") == "reasoning":
        # reasoning no turn took (the last item added to a conversation): the next input's user turn makes it an
        # answer's turn of its own, as an input with a user message after it reads it (responses._sourced_turns)
        thought = _kept_thought(item)
        return [ChatMessage("assistant", (), reasoning=thought)] if thought else []
    if item.get("type") != "mcp_call":
        return []
    try:
        return mcp_call_turns(item, item["id"] if isinstance(item.get("id"), str) else "mcp_call", before, names)
    except ValueError:  # (a conversation keeps what it was sent: an item that names no tool is read as nothing)
        return []


def _kept_thought(item: dict[str, Any]) -> str | None:
    """The text of a kept reasoning item, read as an input's is (:func:`reasoning_item_text`): its content's parts,
    else its summary's, else what jan's ``encrypted_content`` carries (a client that sent it back without its text:
    read only from the parts, a conversation's last answer's thinking was lost on the next turn)."""
    parts = item.get("content") or item.get("summary")
    texts = [p.get("text") for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    encrypted = item.get("encrypted_content")
    try:
        return reasoning_item_text((t for t in texts if isinstance(t, str)),
                                   encrypted if isinstance(encrypted, str) else None)
    except ValueError:  # (checked when it was added: a kept one is read as it is, a damaged one as no thinking)
        return None


def continued(turn: ChatMessage | None) -> ChatMessage | None:
    """``turn`` where an MCP call after it ends it: an assistant turn with no call of its own (its thinking, its
    text: a stored response keeps what the model wrote before the call as a turn of its own, the call being an
    item); ``None`` for any other."""
    if turn is None or turn.role != "assistant" or turn.tool_calls or not (turn.content or turn.reasoning):
        return None
    return turn


def history_turns(entries: Iterable[ChatMessage | dict[str, Any]]) -> list[ChatMessage]:
    """A conversation's turns, in order, of ``entries``: a chat turn as it is, a kept item (a dict:
    :func:`kept_item`) as the turns the model reads of it (:func:`kept_item_turns`). The assistant turn right before
    an ``mcp_call`` (:func:`continued`: what the model wrote before the call) is that call's turn, not a turn of its
    own, as an input sending those items back reads it (:func:`mcp_call_turns`)."""
    out: list[ChatMessage] = []
    names: dict[str, dict[str, str]] = {}  # (the calls' names as their servers' last listings offered them)
    for entry in entries:
        if isinstance(entry, ChatMessage):
            out.append(entry)
            continue
        listed = listed_names(entry)
        if listed is not None:
            names[listed[0]] = listed[1]
        before = continued(out[-1]) if out and entry.get("type") == "mcp_call" else None
        turns = kept_item_turns(entry, before, names)
        if turns and before is not None:
            out.pop()
        out += turns
    return out


def calls_after(turns: Sequence[ChatMessage], calls: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """``turns``, then ``calls`` (a calling turn and its results: approved MCP calls run before the answer), the
    calling turn ending the assistant turn before it (:func:`continued`: the text and thinking the model wrote
    before the call, which it then asked approval for), as every later read of the call makes it
    (:func:`history_turns`)."""
    before = continued(turns[-1]) if turns and calls else None
    first = calls[0] if calls else None
    if before is None or first is None or first.role != "assistant" or first.content or first.reasoning:
        return (*turns, *calls)
    return (*turns[:-1], ChatMessage("assistant", before.content, tool_calls=first.tool_calls,
                                     reasoning=before.reasoning), *calls[1:])
