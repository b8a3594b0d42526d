"""OpenAI's Conversations API (``/v1/conversations``): its wire format.

A conversation is a Jan thread whose id is ``conv_<ULID>`` (so it shows in the web page like any other), its items
are the thread's messages: each one read as a chat turn by the Responses store's own reading
(:func:`~jan.server.dialects.responses_store.from_thread_message`), then said as the items it stands for
(:func:`message_items`): a user, system or tool turn is one item, an assistant turn its reasoning, its text and its
function calls, in that order. An item's id is made from its message's id, so it is the same on every read; the
items a response's output added keep the ids the response gave them (its answer's ``metadata.item_ids``). Items
sent (``items``) are the Responses API's input items, made chat turns by its own
:func:`~jan.server.dialects.responses.input_messages` and stored as a response's input is
(:func:`~jan.server.dialects.responses_store.to_thread_message`). Nothing here knows HTTP.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Union

from pydantic import ConfigDict, Field, model_validator

from jan.server.dialects.responses import (FunctionCallItem, FunctionCallOutputItem, InputFile, InputItem,
                                           MessageItem, ReasoningItem, _call_item, _message_item, _reasoning_item,
                                           _Wire)
from jan.server.dialects.responses_store import _data_url, to_thread_message
from jan.server.schemas import Metadata
from jan.services import types as typed
from jan.services.errors import RequestError
from jan.services.untrusted import UntrustedTextPart
from jan.store.errors import InvalidArgumentError
from jan.store.files import extract_images

__all__ = ["MAX_ITEMS", "ConversationCreate", "ConversationItems", "ConversationUpdate", "ItemRef",
           "check_items", "check_storable", "conversation_object", "message_items", "valid_conversation_id",
           "valid_item_id"]

#: OpenAI's: "You may add up to 20 items at a time" (a create's ``items`` too).
MAX_ITEMS = 20

_CONVERSATION_ID = re.compile(r"^conv_[A-Za-z0-9]{1,64}$")
_ITEM_ID = re.compile(r"^[a-z]{1,8}_[A-Za-z0-9_-]{1,120}$")


def valid_conversation_id(value: str) -> bool:
    """Whether ``value`` can be a conversation's id (``conv_`` then letters and digits: no id reaches outside the
    data folder)."""
    return bool(_CONVERSATION_ID.match(value))


def valid_item_id(value: str) -> bool:
    """Whether ``value`` can be an item's id (:func:`message_items` makes them)."""
    return bool(_ITEM_ID.match(value))


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


_KEPT = "message, function_call, function_call_output and reasoning"


def check_items(items: list[Any], field: str = "items") -> None:
    """Refuse (a 400 naming the field) what a conversation cannot keep as it was sent: an item of another kind
    (a custom tool's call, a web search, a reference), a document (its text is read when a response is made: send
    it in the input of a response made in the conversation), a reasoning item that is no assistant turn's (it is
    kept as the reasoning of the turn after it) or that has no text to keep."""
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, (MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem)):
            raise RequestError(f"{where}.type: a conversation keeps {_KEPT} items, not {item.type!r}",
                               param=f"{where}.type", code="invalid_value")
        parts = item.content if isinstance(item, MessageItem) else getattr(item, "output", None)
        for j, part in enumerate(parts if isinstance(parts, list) else ()):
            spoken = ("output_text", "input_text", "refusal")
            if isinstance(item, MessageItem) and item.role == "assistant" and part.type not in spoken:
                # (an assistant turn is kept as its text, its reasoning and its calls: what the model said)
                raise RequestError(f"{where}.content[{j}]: an assistant message holds text (output_text or refusal), "
                                   f"not {part.type}", param=f"{where}.content[{j}]", code="invalid_value")
            if isinstance(part, InputFile):
                key = "content" if isinstance(item, MessageItem) else "output"
                raise RequestError(f"{where}.{key}[{j}]: a document is read as text when a response is made; send it "
                                   "in the input of a response made in the conversation (conversation: its id), or "
                                   "send its text as input_text", param=f"{where}.{key}[{j}]", code="invalid_value")
        if isinstance(item, ReasoningItem):
            after = items[i + 1] if i + 1 < len(items) else None
            answer = isinstance(after, MessageItem) and after.role == "assistant"
            if not (answer or isinstance(after, FunctionCallItem)):
                raise RequestError(f"{where}: a reasoning item is kept as the reasoning of the assistant turn right "
                                   "after it (an assistant message or a function_call item)", param=where,
                                   code="invalid_value")
            if not any(p.text for p in (item.content or item.summary)):
                raise RequestError(f"{where}: a reasoning item needs its text (content or summary) to be kept",
                                   param=where, code="invalid_value")


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


def _input_content(turn: typed.ChatMessage) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in turn.content:
        if isinstance(part, (UntrustedTextPart, typed.TextPart)):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, typed.ImagePart):
            content.append({"type": "input_image", "image_url": _data_url(part), "file_id": None, "detail": "auto"})
    return content


def _kept_id(ids: Any, key: str, call_id: str | None = None) -> str | None:
    """The id ``metadata.item_ids`` keeps for an item
    (:func:`~jan.server.dialects.responses_store.output_item_ids`); ``None``: none (an item added
    through the Conversations API, or a thread written before they were kept)."""
    if not isinstance(ids, dict):
        return None
    value = ids.get(key)
    if call_id is not None:
        value = value.get(call_id) if isinstance(value, dict) else None
    return value if isinstance(value, str) and valid_item_id(value) else None


def message_items(message_id: str, turn: typed.ChatMessage, stopped: bool = False,
                  ids: Any = None) -> list[tuple[dict[str, Any], ItemRef]]:
    """The items a thread message stands for (``turn``: the message read as a chat turn), each with where it is
    kept; ``stopped``: the message is an answer cut off (its items ``incomplete``); ``ids``: the message's
    ``metadata.item_ids``, the ids of the response output items it keeps (others' are made from its id)."""
    tail, status = _tail(message_id), "incomplete" if stopped else "completed"
    if turn.role == "tool":
        content = _input_content(turn)
        only_text = all(p["type"] == "input_text" for p in content)
        output: Any = "".join(p["text"] for p in content) if only_text else content
        return [({"id": f"fco_{tail}", "type": "function_call_output", "call_id": turn.tool_call_id or "",
                  "output": output, "status": "completed"}, ItemRef(message_id, "function_call_output"))]
    if turn.role != "assistant":
        item = {"id": f"msg_{tail}", "type": "message", "role": turn.role, "status": "completed",
                "content": _input_content(turn)}
        return [(item, ItemRef(message_id, "message"))]
    out: list[tuple[dict[str, Any], ItemRef]] = []
    if turn.reasoning:
        out.append((_reasoning_item(_kept_id(ids, "reasoning") or f"rs_{tail}", turn.reasoning, "completed"),
                    ItemRef(message_id, "reasoning")))
    if turn.text or not (turn.tool_calls or turn.reasoning):
        out.append((_message_item(_kept_id(ids, "message") or f"msg_{tail}", turn.text, status),
                    ItemRef(message_id, "message")))
    for call in turn.tool_calls:
        item_id = _kept_id(ids, "calls", call.id) or f"fc_{tail}_{_call_tag(call.id)}"
        out.append((_call_item(item_id, call.id, call.name, call.arguments, status),
                    ItemRef(message_id, "function_call", call.id)))
    return out
