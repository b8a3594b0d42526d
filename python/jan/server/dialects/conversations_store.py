"""Conversations (OpenAI's Conversations API) kept as Jan threads, through the Responses store.

A conversation is a thread with a ``conv_`` id (:data:`~jan.server.dialects.responses_store.CONVERSATION_PREFIX`),
its metadata the thread's, its items the thread's messages (:func:`~jan.server.dialects.conversations.message_items`).
Items are added and removed under the thread's lock in the Responses store, the one a response made in the
conversation holds to add its turns, so no two writes interleave; the routes also refuse a write while a response is
being made in the conversation (:mod:`jan.server.dialects.conversation_locks`), so none lands in its middle. Nothing here knows HTTP: an unknown conversation or
item is a :class:`jan.core.NotFoundError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jan.core import NotFoundError
from jan.errors import not_found_message
from jan.server.dialects.conversations import ItemRef, alone_items, conversation_object, message_items
# (MANY_MESSAGES: a conversation of more messages has its items made, its history read, in a worker thread)
from jan.services.kept_items import MANY_MESSAGES, heavy_history
from jan.services.thread_turns import link_refs, stored_calls, thread_history
from jan.server.dialects.responses_store import (CONVERSATION_PREFIX, CONVERSATION_TITLE, KeptTurn, ResponsesStore,
                                                 _reid, _title, from_thread_message, is_conversation_thread, kept_item,
                                                 kept_item_turns, thread_parts, to_thread_message)
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

    async def create(self, messages: list[ChatMessage | KeptTurn], metadata: dict[str, Any] | None) -> dict[str, Any]:
        """A new conversation holding ``messages`` (written with the thread, all or none): its object."""
        used: set[str] = set()  # (an id sent twice is given anew: items are told apart by id)
        messages = [_reid(m, used, {}) if isinstance(m, KeptTurn) else m for m in messages]
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

    async def _read(self, conversation_id: str, *, images: bool = True,
                    ) -> list[tuple[dict[str, Any], list[ChatMessage], list[tuple[dict[str, Any], ItemRef]]]]:
        """Each of the thread's messages with its chat turns and its items; ``images``: read its image files (an
        item's image part is its data), or not (ids and kinds alone)."""
        try:
            messages = await self._threads.list_messages(conversation_id, order="asc")
        except NotFoundError:
            raise _missing(conversation_id) from None
        # (the images a message links to are listed by their URL, as the Responses API lists one: nothing fetched,
        # so read with or without the files, a message's items are the same)
        files: dict[str, Any] = {**link_refs(messages), **(await self.store.images(conversation_id, messages)
                                                            if images else {})}

        def read() -> list[tuple[dict[str, Any], list[ChatMessage], list[tuple[dict[str, Any], ItemRef]]]]:
            return [(message, *_items_of(message, files)) for message in messages
                    if isinstance(message.get("id"), str)]

        # (a long conversation's items, its images as data URLs, take a while to make: not on the event loop)
        return await asyncio.to_thread(read) if len(messages) > MANY_MESSAGES or files else read()

    async def _items(self, conversation_id: str, images: bool = True) -> list[tuple[dict[str, Any], ItemRef]]:
        return [pair for _, _, items in await self._read(conversation_id, images=images) for pair in items]

    async def items(self, conversation_id: str, *, images: bool = True) -> list[dict[str, Any]]:
        """The conversation's items, oldest first; ``images``: with their images' data (else no image file is
        read, and an image part of a message is left out)."""
        await self.thread(conversation_id)
        return [item for item, _ in await self._items(conversation_id, images)]

    async def history(self, conversation_id: str) -> tuple[list[ChatMessage], list[str]]:
        """What a response made in the conversation reads before its input: its chat turns, and the ids of its
        items (the response's ``input_items`` list them first). :class:`NotFoundError` for no conversation."""
        await self.thread(conversation_id)
        # (the items' ids need no image read: the turns read the thread's files, its attached documents too)
        read = await self._read(conversation_id, images=False)
        messages = [message for message, _, _ in read]
        files = await self.store.files(conversation_id, messages)

        def turns_of() -> list[ChatMessage]:
            # (one pass over all, a run's reading too: the thinking before an MCP call is a message of its own,
            # read as the call's: jan.services.thread_turns.thread_history)
            return thread_history(messages, files)
        # (an MCP result's images kept with its call are decoded in the read, and a long conversation's turns are
        # many: not on the event loop)
        history = await asyncio.to_thread(turns_of) if heavy_history(messages) else turns_of()
        return history, [item["id"] for _, _, items in read for item, _ in items]

    async def item_ids(self, conversation_id: str) -> set[str]:
        """The ids the conversation's items have (no image read)."""
        return {item["id"] for _, _, items in await self._read(conversation_id, images=False) for item, _ in items}

    async def item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        await self.thread(conversation_id)
        for item, _ in await self._items(conversation_id):
            if item["id"] == item_id:
                return item
        raise NotFoundError(not_found_message("item", item_id, f"conversation {conversation_id!r}"),
                            resource="item", id=item_id)

    async def add(self, conversation_id: str, messages: list[ChatMessage | KeptTurn]) -> list[dict[str, Any]]:
        """Append ``messages`` (all or none); the items they made, in order (an id an item of the conversation
        has already is given anew)."""
        await self.thread(conversation_id)
        try:
            written, _ = await self.store.append(conversation_id, messages, taken=self.item_ids)
        except NotFoundError:
            raise _missing(conversation_id) from None
        files = {**link_refs(written), **await self.store.images(conversation_id, written)}
        return [item for message in written for item, _ in _items_of(message, files)[1]]

    async def delete_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        """Remove one item: its message, or, of an assistant turn of several items, that part of it (its
        reasoning, its text, one of its calls). The conversation's object."""
        thread = await self.thread(conversation_id)
        missing_item = NotFoundError(not_found_message("item", item_id, f"conversation {conversation_id!r}"),
                                     resource="item", id=item_id)
        async with self.store.locked(conversation_id):
            ref = next((r for item, r in await self._items(conversation_id) if item["id"] == item_id), None)
            if ref is None:
                raise missing_item
            try:
                message = await self._threads.get_message(conversation_id, ref.message_id)
                rest = _without(message, ref)
                turn = from_thread_message(rest) if rest is not None else None
                if rest is None or turn is None or not (turn.content or turn.tool_calls or turn.reasoning):
                    with contextlib.suppress(NotFoundError):  # (gone meanwhile: what was asked is done)
                        await self._threads.delete_message(conversation_id, ref.message_id)
                else:
                    await self._threads.update_message(conversation_id, ref.message_id,
                                                       {"content": rest["content"], "metadata": rest["metadata"]})
            except NotFoundError:
                # the conversation (deleted by a request that holds no lock of its items) or the item's message
                # (deleted through the threads API) went since it was read: said of the conversation or of the
                # item, never as the store's "thread"/"message" a client of conversations never named
                await self.thread(conversation_id)
                raise missing_item from None
        return conversation_object(thread)


def _items_of(message: dict[str, Any], files: dict[str, Any] | None,
              ) -> tuple[list[ChatMessage], list[tuple[dict[str, Any], ItemRef]]]:
    """A thread message's chat turns (:func:`~jan.server.dialects.responses_store.thread_turns`) and the items it
    stands for (none for a message that is no turn; the item it keeps as sent, for one that keeps one: an MCP
    call's turns are its call and result); ``files``: the thread's images by id."""
    item = kept_item(message)
    if item is not None:
        return kept_item_turns(item), alone_items(message["id"], item)
    turn = from_thread_message(message, files)
    if turn is None:
        return [], []
    metadata = message.get("metadata")
    stored = [raw for _, raw in thread_parts(message, files)]
    return [turn], message_items(message["id"], turn, stopped=message.get("status") == "stopped", stored=stored,
                               ids=metadata.get("item_ids") if isinstance(metadata, dict) else None,
                               empty_text=_sent_empty(message))


def _sent_empty(message: dict[str, Any]) -> bool:
    """Whether a thread message holds text parts only, every one empty (what ``"content": ""`` is stored as)."""
    content = message.get("content")
    parts = [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
    return bool(parts) and all(p.get("type") == "text" and not (
        p["text"].get("value") if isinstance(p.get("text"), dict) else p.get("text")) for p in parts)


def _without(message: dict[str, Any], ref: ItemRef) -> dict[str, Any] | None:
    """The assistant ``message`` without the item ``ref`` names (``None``: the item is the whole message)."""
    if message.get("role") != "assistant" or ref.kind == "item":
        return None
    content = [p for p in message.get("content") or () if isinstance(p, dict)]
    metadata = dict(message.get("metadata") or {})
    if ref.kind == "reasoning":
        content = [p for p in content if p.get("type") != "reasoning"]
        metadata.pop("reasoning_content", None)
    elif ref.kind == "message":
        content = [p for p in content if p.get("type") == "reasoning"]
    elif ref.kind == "function_call":
        calls = [c for c in stored_calls(metadata)
                 if not (isinstance(c, dict) and c.get("id") == ref.call_id)]
        if calls:
            metadata["tool_calls"] = calls
        else:
            metadata.pop("tool_calls", None)
    return {**message, "content": content, "metadata": metadata}
