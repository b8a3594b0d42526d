"""Conversations (OpenAI's Conversations API) kept as Jan threads, through the Responses store.

A conversation is a thread with a ``conv_`` id (:data:`~jan.server.dialects.responses_store.CONVERSATION_PREFIX`),
its metadata the thread's, its items the thread's messages (:func:`~jan.server.dialects.conversations.message_items`).
Items are added and removed under the thread's lock in the Responses store, the one a response made in the
conversation holds to add its turns, so nothing interleaves. Nothing here knows HTTP: an unknown conversation or
item is a :class:`jan.core.NotFoundError`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from jan.core import NotFoundError
from jan.errors import not_found_message
from jan.server.dialects.conversations import ItemRef, conversation_object, message_items
from jan.server.dialects.responses_store import (CONVERSATION_PREFIX, CONVERSATION_TITLE, ResponsesStore, _title,
                                                 from_thread_message, is_conversation_thread, to_thread_message)
from jan.services.types import ChatMessage
from jan.store.ids import new_id

__all__ = ["ConversationStore"]


def _missing(conversation_id: str) -> NotFoundError:
    return NotFoundError(not_found_message("conversation", conversation_id), resource="conversation",
                         id=conversation_id)


class ConversationStore:
    """The conversations of the Responses store's conversation store (its threads with ``conv_`` ids)."""

    def __init__(self, store: ResponsesStore):
        self.store = store

    @property
    def _threads(self):
        return self.store.conversations

    async def thread(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's thread; :class:`NotFoundError` for none."""
        if not is_conversation_thread(conversation_id):
            raise _missing(conversation_id)
        try:
            return await self._threads.get_thread(conversation_id)
        except NotFoundError:
            raise _missing(conversation_id) from None

    async def create(self, messages: list[ChatMessage], metadata: dict[str, Any] | None) -> dict[str, Any]:
        """A new conversation holding ``messages`` (written with the thread, all or none): its object."""
        thread = await self._threads.create_thread({
            "id": new_id(CONVERSATION_PREFIX.rstrip("_")), "title": _title(messages) or CONVERSATION_TITLE,
            # Jan's default assistant: the web page continues the conversation as any other thread
            "assistants": [{"assistant_id": "jan", "assistant_name": "Jan"}], "metadata": metadata or {},
            "messages": [to_thread_message(m) for m in messages]})
        return conversation_object(thread)

    async def get(self, conversation_id: str) -> dict[str, Any]:
        return conversation_object(await self.thread(conversation_id))

    async def update(self, conversation_id: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """Replace the conversation's metadata (OpenAI's: the whole of it)."""
        await self.thread(conversation_id)
        try:
            thread = await self._threads.update_thread(conversation_id, {"metadata": metadata or {}})
        except NotFoundError:
            raise _missing(conversation_id) from None
        return conversation_object(thread)

    async def delete(self, conversation_id: str) -> None:
        """Delete the conversation: its thread, with its messages."""
        await self.thread(conversation_id)
        try:
            await self._threads.delete_thread(conversation_id)
        except NotFoundError:
            raise _missing(conversation_id) from None

    async def _items(self, conversation_id: str) -> list[tuple[dict[str, Any], ItemRef]]:
        try:
            messages = await self._threads.list_messages(conversation_id, order="asc")
        except NotFoundError:
            raise _missing(conversation_id) from None
        turns = await self.store.turns(conversation_id, messages)
        out: list[tuple[dict[str, Any], ItemRef]] = []
        for message, turn in zip(messages, turns):
            if turn is not None and isinstance(message.get("id"), str):
                metadata = message.get("metadata")
                out += message_items(message["id"], turn, stopped=message.get("status") == "stopped",
                                     ids=metadata.get("item_ids") if isinstance(metadata, dict) else None)
        return out

    async def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's items, oldest first."""
        await self.thread(conversation_id)
        return [item for item, _ in await self._items(conversation_id)]

    async def item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        await self.thread(conversation_id)
        for item, _ in await self._items(conversation_id):
            if item["id"] == item_id:
                return item
        raise NotFoundError(not_found_message("item", item_id, f"conversation {conversation_id!r}"),
                            resource="item", id=item_id)

    async def add(self, conversation_id: str, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        """Append ``messages`` (all or none); the items they made, in order."""
        await self.thread(conversation_id)
        try:
            written = await self.store.append(conversation_id, messages)
        except NotFoundError:
            raise _missing(conversation_id) from None
        turns = await self.store.turns(conversation_id, written)
        return [item for message, turn in zip(written, turns) if turn is not None
                for item, _ in message_items(message["id"], turn)]

    async def delete_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        """Remove one item: its message, or, of an assistant turn of several items, that part of it (its
        reasoning, its text, one of its calls). The conversation's object."""
        thread = await self.thread(conversation_id)
        async with self.store.locked(conversation_id):
            ref = next((r for item, r in await self._items(conversation_id) if item["id"] == item_id), None)
            if ref is None:
                raise NotFoundError(not_found_message("item", item_id, f"conversation {conversation_id!r}"),
                                    resource="item", id=item_id)
            message = await self._threads.get_message(conversation_id, ref.message_id)
            rest = _without(message, ref)
            turn = from_thread_message(rest) if rest is not None else None
            if rest is None or turn is None or not (turn.content or turn.tool_calls or turn.reasoning):
                with contextlib.suppress(NotFoundError):  # (gone meanwhile: what was asked is done)
                    await self._threads.delete_message(conversation_id, ref.message_id)
            else:
                await self._threads.update_message(conversation_id, ref.message_id,
                                                   {"content": rest["content"], "metadata": rest["metadata"]})
        return conversation_object(thread)


def _without(message: dict[str, Any], ref: ItemRef) -> dict[str, Any] | None:
    """The assistant ``message`` without the item ``ref`` names (``None``: the item is the whole message)."""
    if message.get("role") != "assistant":
        return None
    content = [p for p in message.get("content") or () if isinstance(p, dict)]
    metadata = dict(message.get("metadata") or {})
    if ref.kind == "reasoning":
        content = [p for p in content if p.get("type") != "reasoning"]
        metadata.pop("reasoning_content", None)
    elif ref.kind == "message":
        content = [p for p in content if p.get("type") == "reasoning"]
    elif ref.kind == "function_call":
        calls = [c for c in metadata.get("tool_calls") or ()
                 if not (isinstance(c, dict) and c.get("id") == ref.call_id)]
        if calls:
            metadata["tool_calls"] = calls
        else:
            metadata.pop("tool_calls", None)
    return {**message, "content": content, "metadata": metadata}
