"""OpenAI's Conversations API (``/v1/conversations``): its wire format.

A conversation is a Jan thread whose id is ``conv_<ULID>`` (so it shows in the web page like any other), its items
are the thread's messages: each one read as a chat turn by the Responses store's own reading
(:func:`~jan.server.dialects.responses_store.from_thread_message`), then said as the items it stands for
(:func:`message_items`): a user, system or tool turn is one item, an assistant turn its reasoning, its text and its
calls, in that order. Items sent (``items``, or a response's input and output) are the Responses API's, made chat
turns by its own :func:`~jan.server.dialects.responses.input_messages`; each turn's message keeps, in
``metadata.item_ids``, the ids and kinds of the items it was made of (:func:`kept_turns`: a custom tool's call, a
developer message, a document's ``input_file``), so every item is listed as it was sent, under the one id it has
wherever it is listed; an item that is no turn (a web search call, an MCP listing or approval) is kept as sent in a
message the model never reads, and an ``mcp_call`` is kept so too, read as its call and result
(:func:`~jan.server.dialects.responses_store.kept_item_turns`). A message with no kept id (one of Jan's own) has ids made from its message's id, the same on every read.
Nothing here knows HTTP.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Union

from pydantic import ConfigDict, Field, model_validator

from jan.server.dialects.responses import (InputItem, MessageItem, _call_item, _custom_call_item,
                                           _message_item, _reasoning_item, _Wire, custom_input)
from jan.server.dialects.responses_store import ITEM_PREFIXES, KeptTurn, _data_url, to_thread_message
from jan.server.schemas import Metadata
from jan.services import types as typed
from jan.services.errors import RequestError
from jan.services.thread_turns import ImageLinkRef, part_field
from jan.services.untrusted import UntrustedTextPart
from jan.store.errors import InvalidArgumentError
from jan.store.files import extract_images

__all__ = ["MAX_ITEMS", "ConversationCreate", "ConversationItems", "ConversationUpdate", "ItemRef",
           "check_items", "check_storable", "conversation_object", "kept_turns", "message_items",
           "valid_conversation_id", "valid_item_id"]

#: OpenAI's: "You may add up to 20 items at a time" (a create's ``items`` too).
MAX_ITEMS = 20

_CONVERSATION_ID = re.compile(r"^conv_[A-Za-z0-9]{1,64}$")
_ITEM_ID = re.compile(r"^[a-z]{1,8}_[A-Za-z0-9_-]{1,120}$")


def valid_conversation_id(value: str) -> bool:
    """Whether ``value`` can be a conversation's id (``conv_`` then letters and digits: no id reaches outside the
    data folder)."""
    return bool(_CONVERSATION_ID.fullmatch(value))  # (match's "$" takes a line end after it: "conv_x\n")


def valid_item_id(value: str) -> bool:
    """Whether ``value`` can be an item's id (:func:`message_items` makes them)."""
    return bool(_ITEM_ID.fullmatch(value))


class _Items(_Wire):
    # A field the body does not declare is a 400, as the Responses API's own (a typo is never dropped).
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _at_most(cls, data: Any) -> Any:
        # (said before each item is read: 10,000 items are refused by their count, not read)
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list) and len(items) > MAX_ITEMS:
            raise ValueError(f"items: at most {MAX_ITEMS} items may be added at a time, got {len(items)}")
        return data


class ConversationCreate(_Items):
    """The body of ``POST /v1/conversations``."""

    items: Union[list[InputItem], None] = None
    metadata: Metadata | None = None
    safety_identifier: str | None = None  # OpenAI's abuse-tracking hint: accepted, no local meaning


class ConversationItems(_Items):
    """The body of ``POST /v1/conversations/{id}/items``."""

    items: list[InputItem] = Field(min_length=1)


class ConversationUpdate(_Wire):
    """The body of ``POST /v1/conversations/{id}``: the metadata that replaces the conversation's (null: none)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metadata: Metadata | None = None

    @model_validator(mode="before")
    @classmethod
    def _given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "metadata" not in data:  # (OpenAI's: required, null allowed)
            raise ValueError("metadata: required (an object of up to 16 string values, or null to clear it)")
        return data


def check_items(items: list[Any], field: str = "items") -> None:
    """Refuse (a 400 naming the field) what a conversation cannot keep as it was sent: an assistant message holding
    other than text (an assistant turn is kept as what the model said: its text, its reasoning, its calls). Every
    other item a response's input or output holds is kept (:func:`kept_turns`; a reference, as the item it names,
    read before)."""
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if isinstance(item, MessageItem) and item.role == "assistant" and isinstance(item.content, list):
            for j, part in enumerate(item.content):
                if part.type not in ("output_text", "input_text", "refusal"):
                    raise RequestError(f"{where}.content[{j}]: an assistant message holds text (output_text or "
                                       f"refusal), not {part.type}", param=f"{where}.content[{j}]",
                                       code="invalid_value")


def _turn_ids(turn: typed.ChatMessage, items: list[dict[str, Any]]) -> dict[str, Any]:
    """What a turn's thread message keeps of the items it was made of (``metadata.item_ids``): their ids, by kind
    (:func:`message_items` reads them), a developer message's role (the turn's is ``system``), which calls are a
    custom tool's and whether a tool's output is a custom tool's (the turn's are function calls and outputs)."""
    ids: dict[str, Any] = {}
    for item in items:
        kind, item_id = item.get("type"), item.get("id")
        if kind == "message":
            ids.setdefault("message", item_id)
            if item.get("role") == "developer":
                ids["role"] = "developer"
            content = item.get("content")
            if content and isinstance(content, list) and all(p.get("type") == "refusal" for p in content):
                ids["refusal"] = True  # (the turn keeps its text: said again as the refusal it was)
        elif kind == "reasoning":
            # several of one turn (its thinking in pieces) are listed as the one item of its joined thinking, where
            # the first was
            ids.setdefault("reasoning", item_id)
        elif kind in ("function_call", "custom_tool_call"):
            ids.setdefault("calls", {}).setdefault(item.get("call_id"), item_id)
            if kind == "custom_tool_call":
                ids.setdefault("custom", []).append(item.get("call_id"))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            ids["output"] = item_id
            if kind == "custom_tool_call_output":
                ids["output_type"] = kind
    return ids


def _turn_files(turn: typed.ChatMessage, items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The ``input_file`` parts of the item a user, system or tool turn was made of, and its ``input_image`` parts
    sent as an upload's ``file_id`` (the reference, not the image: that is kept as the turn's), by their index in its
    content (one part each, in order: a document's text is kept where its part was, :func:`kept_turns`)."""
    if turn.role == "assistant" or not items:
        return {}
    content = items[-1].get("content" if items[-1].get("type") == "message" else "output")
    files = {}
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if isinstance(part, dict) and part.get("type") == "input_file":
            files[j] = {k: v for k, v in part.items() if k in _FILE_FIELDS}
        elif isinstance(part, dict) and part.get("type") == "input_image" and isinstance(part.get("file_id"), str):
            files[j] = {k: v for k, v in part.items() if k in _IMAGE_FILE_FIELDS}
    return files


_FILE_FIELDS = ("type", "file_data", "file_id", "file_url", "filename", "detail")
#: what an image sent as an upload keeps of its part: the reference OpenAI lists it with (its bytes are the turn's)
_IMAGE_FILE_FIELDS = ("type", "file_id", "detail")


def kept_turns(items: list[dict[str, Any]], turns: list[typed.ChatMessage],
               sources: list[list[int]]) -> list[KeptTurn]:
    """What a conversation keeps of ``items`` (input items as a response's ``input_items`` lists them: each with its
    id, :func:`~jan.server.dialects.responses.input_items`): each of their chat ``turns`` (documents read as text)
    with the ids and kinds of the items it was made of (``sources``:
    :func:`~jan.server.dialects.responses.input_sources`), and each item that is in no turn (a web search call,
    reasoning no assistant turn follows) as it was sent, where it was, so every item listed is the item sent."""
    # (a reasoning item with no text the turn can keep, another server's encrypted_content alone, is kept as sent)
    sources = [[i for i in indices if turn.reasoning or items[i].get("type") != "reasoning"]
               for turn, indices in zip(turns, sources)]
    # an MCP call is kept as the item it is (listed in its own shape, read again as its call and result:
    # kept_item_turns), not as the two turns the model reads of it, which would list as a function call and output
    calls = [any(items[i].get("type") == "mcp_call" for i in indices) for indices in sources]
    # what the model wrote before the call (its message, its reasoning items) is kept as a turn of its own, as a
    # stored response keeps it, read again as the call's (jan.services.kept_items.history_turns): kept as items of
    # no turn, it was in no later prompt
    kept = [(turn, indices) if not call
            else (typed.ChatMessage("assistant", turn.content, reasoning=turn.reasoning),
                  [i for i in indices if items[i].get("type") != "mcp_call"])
            for turn, indices, call in zip(turns, sources, calls)]
    kept = [(turn, indices) for turn, indices in kept if indices]
    turns, sources = [turn for turn, _ in kept], [indices for _, indices in kept]
    in_turns = {i for indices in sources for i in indices}
    alone = [i for i in range(len(items)) if i not in in_turns]
    out: list[KeptTurn] = []
    for turn, indices in zip(turns, sources):
        while alone and indices and alone[0] < max(indices):
            out.append(KeptTurn(None, item=items[alone.pop(0)]))
        mine = [items[i] for i in indices]
        out.append(KeptTurn(turn, item_ids=_turn_ids(turn, mine) or None, files=_turn_files(turn, mine) or None))
    out += [KeptTurn(None, item=items[i]) for i in alone]
    return out


def check_storable(turns: list[tuple[typed.ChatMessage, str]]) -> None:
    """Refuse, before anything is written, a turn the thread store would refuse (an image it cannot decode or
    keep), naming the item's field (``turns``: each with its field, ``items[i].content``): the store's own refusal
    names the thread message's part, which no client sent."""
    for turn, field in turns:
        try:
            extract_images(to_thread_message(turn)["content"])
        except InvalidArgumentError as exc:
            # (an item's parts are its turn's, one for one: an assistant turn, whose reasoning would come first,
            # holds no images: check_items)
            part = re.match(r"content\[(\d+)\]", exc.param or "")
            where = f"{field}[{part[1]}].image_url" if part else field
            _, sep, why = str(exc).partition(": ")
            raise RequestError(f"{where}: {why if sep else exc}", param=where,
                               code=exc.code or "invalid_value") from None


def conversation_object(thread: dict[str, Any]) -> dict[str, Any]:
    """The ``conversation`` object of a conversation's thread: its metadata is the thread's."""
    created = thread.get("created_at")
    if not isinstance(created, int):
        created = int(thread.get("created") or 0) // 1000
    metadata = thread.get("metadata")
    return {"id": thread["id"], "object": "conversation", "created_at": created,
            "metadata": metadata if isinstance(metadata, dict) else {}}


class ItemRef:
    """Where an item of a conversation is kept: its message, its kind, and for a function call the call's id."""

    __slots__ = ("call_id", "kind", "message_id")

    def __init__(self, message_id: str, kind: str, call_id: str | None = None):
        self.message_id, self.kind, self.call_id = message_id, kind, call_id


def _tail(message_id: str) -> str:
    """What an item id carries of its message's id (``msg_<ULID>``: the ULID; another id: all of it)."""
    tail = message_id.removeprefix("msg_")
    return re.sub(r"[^A-Za-z0-9_-]", "-", tail)[:100]


def _call_tag(call_id: str) -> str:
    # (a call's id may be any text: a short digest of it names the call among its turn's, whatever the others)
    return hashlib.sha256(call_id.encode()).hexdigest()[:12]


def _input_content(turn: typed.ChatMessage, stored: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The content parts of a user, system or tool turn as input items say them; ``stored``: the thread message's
    part each of the turn's came from (:func:`~jan.server.dialects.responses_store.thread_parts`), where a
    document's text keeps the ``input_file`` it was sent as."""
    content: list[dict[str, Any]] = []
    for k, part in enumerate(turn.content):
        file = (stored[k] if stored and k < len(stored) else {}).get("file")
        if isinstance(part, UntrustedTextPart) and isinstance(file, dict) and file.get("type") == "input_file":
            content.append({key: value for key, value in file.items() if key in _FILE_FIELDS})
        elif isinstance(part, (UntrustedTextPart, typed.TextPart)):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImageLinkRef):  # a link kept as given: listed by its URL, as the Responses API does
            raw = stored[k] if stored and k < len(stored) else {}
            detail = part_field(raw, "image_url", "detail") if isinstance(raw, dict) else None
            content.append({"type": "input_image", "image_url": part.url, "file_id": None,
                            "detail": detail if isinstance(detail, str) else "auto"})
        elif isinstance(part, typed.ImagePart):
            # an upload's image lists its file_id as sent (as OpenAI's do) with the image itself, kept when the
            # upload is deleted
            ref = file if isinstance(file, dict) and file.get("type") == "input_image" else {}
            file_id, detail = ref.get("file_id"), ref.get("detail")
            content.append({"type": "input_image", "image_url": _data_url(part),
                            "file_id": file_id if isinstance(file_id, str) else None,
                            "detail": detail if isinstance(detail, str) else "auto"})
    return content


def _kept_id(ids: Any, key: str, call_id: str | None = None) -> str | None:
    """The id ``metadata.item_ids`` keeps for an item
    (:func:`~jan.server.dialects.responses_store.output_item_ids`, :func:`kept_turns`); ``None``: none (a thread
    written before they were kept, a message of Jan's own)."""
    if not isinstance(ids, dict):
        return None
    value = ids.get(key)
    if call_id is not None:
        value = value.get(call_id) if isinstance(value, dict) else None
    return value if isinstance(value, str) and valid_item_id(value) else None


def alone_items(message_id: str, item: dict[str, Any]) -> list[tuple[dict[str, Any], ItemRef]]:
    """The item a message keeps as it was sent (no turn of the chat: :class:`KeptTurn`'s ``item``), with where it
    is kept; its id, or one made from the message's where it has none that can be an item's."""
    item_id = item.get("id")
    if not (isinstance(item_id, str) and valid_item_id(item_id)):
        item_id = f"{ITEM_PREFIXES.get(item.get('type'), 'ws')}_{_tail(message_id)}"
    return [({**item, "id": item_id}, ItemRef(message_id, "item"))]


def message_items(message_id: str, turn: typed.ChatMessage, stopped: bool = False,
                  ids: Any = None, stored: list[dict[str, Any]] | None = None,
                  empty_text: bool = False) -> list[tuple[dict[str, Any], ItemRef]]:
    """The items a thread message stands for (``turn``: the message read as a chat turn), each with where it is
    kept; ``stopped``: the message is an answer cut off (its items ``incomplete``); ``ids``: the message's
    ``metadata.item_ids``, the ids (and kinds) of the items it keeps (:func:`kept_turns`, a response's output
    items); ``stored``: the stored part each of the turn's content parts came from (a document's ``input_file``).
    Items with no kept id have one made from the message's id, the same on every read. ``empty_text``: the message
    was sent as empty text (``"content": ""``), which the turn reads as no part at all: its item says it as
    OpenAI's does, one empty ``input_text`` (as a response's input items do), not ``content: []``."""
    tail, status = _tail(message_id), "incomplete" if stopped else "completed"
    ids = ids if isinstance(ids, dict) else {}
    if turn.role == "tool":
        content = _input_content(turn, stored)
        only_text = all(p["type"] == "input_text" for p in content)
        output: Any = "".join(p["text"] for p in content) if only_text else content
        item_id = _kept_id(ids, "output") or f"fco_{tail}"
        if ids.get("output_type") == "custom_tool_call_output":  # (OpenAI's has no status)
            item = {"id": item_id, "type": "custom_tool_call_output", "call_id": turn.tool_call_id or "",
                    "output": output}
        else:
            item = {"id": item_id, "type": "function_call_output", "call_id": turn.tool_call_id or "",
                    "output": output, "status": "completed"}
        return [(item, ItemRef(message_id, "function_call_output"))]
    if turn.role != "assistant":
        role = "developer" if turn.role == "system" and ids.get("role") == "developer" else turn.role
        content = _input_content(turn, stored)
        if not content and empty_text:
            content = [{"type": "input_text", "text": ""}]
        item = {"id": _kept_id(ids, "message") or f"msg_{tail}", "type": "message", "role": role,
                "status": "completed", "content": content}
        return [(item, ItemRef(message_id, "message"))]
    out: list[tuple[dict[str, Any], ItemRef]] = []
    if turn.reasoning:
        out.append((_reasoning_item(_kept_id(ids, "reasoning") or f"rs_{tail}", turn.reasoning, "completed"),
                    ItemRef(message_id, "reasoning")))
    if turn.text or not (turn.tool_calls or turn.reasoning):
        item = _message_item(_kept_id(ids, "message") or f"msg_{tail}", turn.text, status)
        if ids.get("refusal") is True and turn.text:
            item["content"] = [{"type": "refusal", "refusal": turn.text}]
        out.append((item, ItemRef(message_id, "message")))
    custom = ids.get("custom") if isinstance(ids.get("custom"), list) else ()
    seen = {item["id"] for item, _ in out}
    for call in turn.tool_calls:
        item_id = _kept_id(ids, "calls", call.id)
        if item_id is None or item_id in seen:  # (two calls of one id: each its own item id)
            item_id = f"fc_{tail}_{_call_tag(call.id)}"
            while item_id in seen:
                item_id += "x"
        seen.add(item_id)
        if call.id in custom:
            item = _custom_call_item(item_id, call.id, call.name, custom_input(call.arguments))
        else:
            item = _call_item(item_id, call.id, call.name, call.arguments, status)
        out.append((item, ItemRef(message_id, "function_call", call.id)))
    return out
