"""The items a conversation keeps as they were (no turn of the chat: a Responses ``mcp_call``, a web search call, an
MCP listing or approval), and the turns the model reads of them: the one conversion every path takes (a stored
response continued with ``previous_response_id``, a conversation, the items sent back in an ``input``, a web-page
run continuing such a thread), so a follow-up's prompt is the same whichever way the client went on.

An ``mcp_call`` is read as the call the model made and the call's result (:func:`mcp_call_turns`). What the model
wrote before the call in the same turn (its thinking, its text) is that call turn's, as the model wrote them in one
turn and as the answer's own tool loop reads them (:mod:`jan.services.mcp_use`): an input reads the items before the
call so, and a stored response, which keeps them as a turn of their own (a thread message of its own, listed as its
``reasoning`` and ``message`` items), is read so too (:func:`history_turns`). Calls the model made in one turn
(parallel calls) are read as that one turn, then their results, where a store kept which they are, and a call's
images as images (:class:`KeptEntry`: what a thread message keeps beside its item). Nothing here knows HTTP or a
store: a thread message is a dict, as the conversation store keeps it.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from jan.services.encrypted_reasoning import reasoning_item_text
from jan.image_types import b64encode_text
from jan.services.types import ChatMessage, Part, TextPart, ToolCall
from jan.templates.formats.reasoning import joined_thoughts
from jan.services.untrusted import UntrustedTextPart

__all__ = ["MANY_MESSAGES", "off_loop_if_many", "KeptEntry", "calls_after", "continued", "heavy_history", "history_turns",
           "holds_result_images", "kept_entry", "kept_item", "kept_item_turns", "listed_names", "mcp_call_error_text",
           "mcp_call_turns", "result_content", "result_parts_of"]


@dataclass(frozen=True)
class KeptEntry:
    """A kept item (:func:`kept_item`) with what a store keeps beside it about the turn it was made in: ``joins``,
    an ``mcp_call`` made in the same model turn as the ``mcp_call`` kept right before it (parallel calls: one
    assistant turn with all its calls, then their results, as the model wrote them and the answer's own loop read
    them: :func:`jan.services.mcp_use._turn`); ``result``, the call's result as the model read it where it held
    images (:func:`result_parts_of`; ``()``: the item's ``output`` text); ``call_id``, the id the model's call had
    (templates such as Mistral's and Kimi K2's show it; the item's own id is jan's, ``None``: that one)."""

    item: dict[str, Any]
    joins: bool = False
    result: tuple[Part, ...] = ()
    call_id: str | None = None


#: Metadata keys of a thread message keeping an ``mcp_call`` (:func:`kept_entry`): the call joins the kept call
#: before it in one model turn; the result's parts with its images (:func:`result_content`); the model's call id.
JOINS_KEY, RESULT_KEY, CALL_ID_KEY = "joins_turn", "result_content", "call_id"


def result_content(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """A result's parts (text and images, :func:`jan.services.tool_images.result_parts`) as a thread message keeps
    content parts (each image a ``data:`` URL), for :func:`result_parts_of` to read again."""
    from jan.services.types import ImagePart

    return [{"type": "image_url", "image_url": {"url": f"data:{p.mime_type};base64,"
                                                       f"{b64encode_text(p.data)}"}}
            if isinstance(p, ImagePart) else {"type": "text", "text": getattr(p, "text", "")} for p in parts]


def result_parts_of(content: Any) -> tuple[Part, ...]:
    """:func:`result_content` read again: each text an untrusted tool text, each image a tool's image
    (:class:`~jan.services.tool_images.ToolImagePart`: a model with no projector reads its note); what does not read
    (a hand edit's) is left out."""
    from jan.image_types import b64decode, parse_data_url
    from jan.services.tool_images import ToolImagePart

    parts: list[Part] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(UntrustedTextPart(part["text"], source="tool"))
        elif part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
            url = part["image_url"].get("url")
            parsed = parse_data_url(url) if isinstance(url, str) else None
            if parsed is None:
                continue
            try:
                parts.append(ToolImagePart(b64decode(parsed[1]), parsed[0]))
            except (binascii.Error, ValueError):
                continue
    return tuple(parts)


#: A thread of more messages than this is read into turns (a conversation's items made, a run's prompt) in a worker
#: thread, as one holding images is (:func:`holds_result_images`).
MANY_MESSAGES = 500


T = TypeVar("T")


async def off_loop_if_many(count: int, work: Callable[[], T]) -> T:
    """``work()`` on a list of ``count`` messages or items (a walk, a sort, a page cut from it): in a worker thread
    past :data:`MANY_MESSAGES`, where it would hold the event loop, and every other request, in proportion to a
    long thread; on the loop otherwise, where the hop would cost more."""
    return await asyncio.to_thread(work) if count > MANY_MESSAGES else work()


def heavy_history(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether reading thread ``messages`` into turns is a worker thread's work, not the event loop's: many of them,
    or a kept MCP result's images among them (:func:`holds_result_images`)."""
    return len(messages) > MANY_MESSAGES or any(holds_result_images(m) for m in messages)


def holds_result_images(message: dict[str, Any]) -> bool:
    """Whether a thread message keeps an MCP call's result with its images (:data:`RESULT_KEY`): reading it
    (:func:`kept_entry`) decodes them, work for a worker thread, not the event loop."""
    metadata = message.get("metadata")
    return isinstance(metadata, dict) and bool(metadata.get(RESULT_KEY))


def kept_entry(message: dict[str, Any]) -> KeptEntry | None:
    """The item a thread message keeps (:func:`kept_item`) with what the message keeps beside it (:class:`KeptEntry`);
    ``None`` for none."""
    item = kept_item(message)
    if item is None:
        return None
    metadata = message["metadata"]
    call_id = metadata.get(CALL_ID_KEY)
    return KeptEntry(item, joins=metadata.get(JOINS_KEY) is True, result=result_parts_of(metadata.get(RESULT_KEY)),
                     call_id=call_id if isinstance(call_id, str) and call_id else None)


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
                   names: dict[str, dict[str, str]] | None = None,
                   result_parts: Sequence[Part] = ()) -> list[ChatMessage]:
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
    listed = (names or {}).get(label, {})
    name = listed.get(tool) or jan_name(label, tool)
    if tool not in listed and name in listed.values():
        # (a tool the listing does not have, whose plain name is a listed tool's: named apart, as the answer's
        # session names it, never read as a call of the other: jan.services.mcp_use.McpSession.name_of)
        from jan.services.mcp_use import _distinct

        name = _distinct(name, label, tool, set(listed.values()))
    call = ToolCall(call_id, name, arguments)
    # (the server's output, third-party text, as the answer's own loop read it, named by the call:
    # jan.services.mcp_use._turn; with its images where it held some, as that loop fed them)
    content = tuple(result_parts) if result_parts and output is not None and not error \
        else (UntrustedTextPart(result, source="tool"),)
    return [ChatMessage("assistant", before.content if before is not None else (), tool_calls=(call,),
                        reasoning=(before.reasoning if before is not None else None) or None),
            ChatMessage("tool", content, tool_call_id=call_id, name=call.name)]


def kept_item_turns(item: dict[str, Any], before: ChatMessage | None = None,
                    names: dict[str, dict[str, str]] | None = None,
                    result_parts: Sequence[Part] = (), call_id: str | None = None) -> list[ChatMessage]:
    """The turns the model reads of a kept item: an ``mcp_call``'s call (in ``before``, the turn it ends; ``names``,
    ``result_parts``: :func:`mcp_call_turns`; ``call_id``: the model's, else the item's id) and result; a reasoning
    item's thinking as an answer's turn of its own; none of any other (a web search call, an MCP listing or
    approval)."""
    if item.get("type") == "reasoning":
        # reasoning no turn took (the last item added to a conversation): the next input's user turn makes it an
        # answer's turn of its own, as an input with a user message after it reads it (responses._sourced_turns)
        thought = _kept_thought(item)
        return [ChatMessage("assistant", (), reasoning=thought)] if thought else []
    if item.get("type") != "mcp_call":
        return []
    try:
        return mcp_call_turns(item, call_id or (item["id"] if isinstance(item.get("id"), str) else "mcp_call"),
                              before, names, result_parts)
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


def history_turns(entries: Iterable[ChatMessage | dict[str, Any] | KeptEntry], *,
                  stray_results: bool = True) -> list[ChatMessage]:
    """A conversation's turns, in order, of ``entries``: a chat turn as it is, a kept item (a dict:
    :func:`kept_item`, or a :class:`KeptEntry`) as the turns the model reads of it (:func:`kept_item_turns`). The
    one set of rules across a thread's messages, whoever reads them (:func:`jan.services.thread_turns.thread_history`:
    a run's prompt, a Responses conversation's):

    * the assistant turn right before an ``mcp_call`` (:func:`continued`: what the model wrote before the call) is
      that call's turn, not a turn of its own, as an input sending those items back reads it
      (:func:`mcp_call_turns`); a call that joins the one before (:attr:`KeptEntry.joins`: parallel calls) is a
      call of that call's turn, its result after that turn's results;
    * one model turn kept as several messages (items added to a conversation in separate adds: its reasoning, then
      its message or calls) is one turn, as the same items sent at once are (an input's reading,
      :func:`jan.server.dialects.responses.input_messages`): thinking alone is the thinking of the assistant turn
      right after it, and calls with no text of their own are calls of the assistant turn right before them;
    * a thinking-only answer (a reply cut off in its thinking) is a turn of its own before anything else;
    * a turn with nothing in it (no text, part, call nor thinking: a reply cancelled before its first token) is none;
    * a tool result whose call is in no turn before it (its call deleted) is kept with ``stray_results`` (the
      Responses API then refuses the history, naming it: :mod:`jan.services.tool_pairs`, as OpenAI's does), else
      left out (a run goes on without it: a template would reject it)."""
    out: list[ChatMessage] = []
    names: dict[str, dict[str, str]] = {}  # (the calls' names as their servers' last listings offered them)
    calling: int | None = None  # (the index in ``out`` of the last kept call's turn, while only its results follow)
    called: set[str] = set()  # (the ids of the calls in ``out``: a result answers one of them)
    for entry in entries:
        if isinstance(entry, ChatMessage):
            if entry.role == "tool":
                if stray_results or entry.tool_call_id in called:
                    out.append(entry)
                calling = None
                continue
            if _empty(entry):
                continue
            calling = None
            # (again while it goes on: a message, then thinking, then calls, each added alone, are one turn)
            while entry.role == "assistant" and out and out[-1].role == "assistant" and (
                    _thought_only(out[-1]) or (entry.tool_calls and not entry.content)):
                last = out.pop()
                entry = ChatMessage("assistant", (*last.content, *entry.content),
                                    tool_calls=(*last.tool_calls, *entry.tool_calls),
                                    reasoning=joined_thoughts([last.reasoning, entry.reasoning]) or None)
            called.update(c.id for c in entry.tool_calls)
            out.append(entry)
            continue
        kept = entry if isinstance(entry, KeptEntry) else KeptEntry(entry)
        listed = listed_names(kept.item)
        if listed is not None:
            names[listed[0]] = listed[1]
        if kept.item.get("type") != "mcp_call":
            # (a reasoning item no turn took: an answer's turn of its own; a listing, a web search call: no turn, the
            # turn before goes on)
            alone_turns = kept_item_turns(kept.item)
            if alone_turns:
                last = out[-1] if out else None
                if last is not None and last.role == "assistant" and _thought_only(last):
                    # (thinking kept in pieces, each added alone: one turn's thinking)
                    alone_turns = [replace(alone_turns[0], reasoning=joined_thoughts(
                        [last.reasoning, alone_turns[0].reasoning]) or None)]
                    out.pop()
                out += alone_turns
                calling = None
            continue
        joins = kept.joins and calling is not None
        before = continued(out[-1]) if out and not joins else None
        turns = kept_item_turns(kept.item, before, names, kept.result, kept.call_id)
        if not turns:
            calling = None
            continue
        called.update(c.id for t in turns for c in t.tool_calls)
        if joins:
            assert calling is not None
            call, result = turns
            out[calling] = replace(out[calling], tool_calls=(*out[calling].tool_calls, *call.tool_calls))
            out.append(result)
            continue
        if before is not None:
            out.pop()
        calling = len(out)
        out += turns
    return out


def _thought_only(turn: ChatMessage) -> bool:
    """Whether an assistant turn is thinking alone (no text, part nor call)."""
    return bool(turn.reasoning) and not turn.tool_calls and not turn.content


def _empty(turn: ChatMessage) -> bool:
    """Whether a turn holds nothing a prompt reads: no call, no thinking, no part but empty text."""
    return not turn.tool_calls and not turn.reasoning and all(
        isinstance(p, TextPart) and not p.text for p in turn.content)


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
