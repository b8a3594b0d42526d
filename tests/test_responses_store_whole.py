"""A stored response's input turns join its conversation whole or not at all: when the thread store refuses one (an
image it cannot keep: cut off, too big), the turns written before it are taken out again and a thread made for the
response is deleted -- no empty "New response" conversation in the thread list, no half of a response that never
was in the conversation a later ``previous_response_id`` continues."""

from __future__ import annotations

import asyncio
import io
import types

import pytest

from jan.extensions.conversational.extension import ConversationalStoreExtension
from jan.server.dialects.responses_store import ResponsesStore
from jan.services.types import ChatMessage, ImagePart, TextPart
from jan.store import InvalidArgumentError


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _response(n: int) -> dict:
    return {"id": f"resp_{n:032x}", "model": "any", "status": "in_progress"}


def _turns(image: bytes) -> list[ChatMessage]:
    return [ChatMessage("user", (TextPart("first"),)),
            ChatMessage("user", (TextPart("look"), ImagePart(image, "image/png")))]


async def _scenario(tmp_path) -> None:
    conversations = ConversationalStoreExtension()
    await conversations.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    store = ResponsesStore(tmp_path / "responses", lambda: conversations)
    threads = {t["id"] for t in await conversations.list_threads()}

    # a new conversation: nothing is left of it
    with pytest.raises(InvalidArgumentError, match="cannot decode the image"):
        await store.begin(_response(1), [], _turns(_png()[:40]), None)
    assert {t["id"] for t in await conversations.list_threads()} == threads

    # a conversation continued: it keeps what it had, and nothing of the refused turns
    first = await store.begin(_response(2), [], [ChatMessage("user", (TextPart("hello"),))], None)
    kept = await conversations.list_messages(first.thread_id)
    with pytest.raises(InvalidArgumentError, match="cannot decode the image"):
        await store.begin(_response(3), [], _turns(_png()[:40]), first)
    assert await conversations.list_messages(first.thread_id) == kept

    # and the turns the store takes are written whole
    again = await store.begin(_response(4), [], _turns(_png()), first)
    assert again.thread_id == first.thread_id
    assert len(await conversations.list_messages(first.thread_id)) == len(kept) + 2


def test_refused_input_turns_leave_nothing_behind(tmp_path):
    asyncio.run(_scenario(tmp_path))
