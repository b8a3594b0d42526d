"""A conversation whose thread file was edited by hand (or by another tool) into shapes jan never writes: a message's
image part that is no object, a kept reasoning or a tool call id that is no string. Each was a failure of every
read of the conversation (an AttributeError, a 500; or a 400 blaming the client for the file's field), its items
unlistable and no response able to continue it. The field is read as absent; the other items are listed as ever."""

from __future__ import annotations

import json
import types

import pytest

from jan.extensions.conversational.extension import ConversationalStoreExtension
from jan.server.dialects.conversations_store import ConversationStore
from jan.server.dialects.responses_store import KeptTurn, ResponsesStore
from jan.services.types import ChatMessage, TextPart

DAMAGES = {
    "image_file_a_string": {"content": [{"type": "text", "text": {"value": "yo", "annotations": []}},
                                        {"type": "image_file", "image_file": "x"}]},
    "image_url_a_string": {"content": [{"type": "text", "text": {"value": "yo", "annotations": []}},
                                       {"type": "image_url", "image_url": "x"}]},
    "reasoning_content_a_number": {"metadata": {"item_ids": {"message": "msg_b"}, "reasoning_content": 5}},
    "tool_call_id_a_number": {"role": "tool", "metadata": {"tool_call_id": 5}},
    "tool_calls_a_number": {"metadata": {"item_ids": {"message": "msg_b"}, "tool_calls": 5}},
    "tool_calls_true": {"metadata": {"item_ids": {"message": "msg_b"}, "tool_calls": True}},
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_a_hand_edited_message_leaves_its_conversation_readable(tmp_path, damage):
    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    store = ConversationStore(ResponsesStore(tmp_path / "responses", lambda: threads))
    conversation = (await store.create([KeptTurn(ChatMessage("user", (TextPart("hi"),)),
                                                 item_ids={"message": "msg_a"})], None))["id"]
    await store.add(conversation, [KeptTurn(ChatMessage("assistant", (TextPart("yo"),)),
                                            item_ids={"message": "msg_b"})])
    path = tmp_path / "threads" / conversation / "messages.jsonl"
    first, second = path.read_bytes().splitlines()
    path.write_bytes(first + b"\n" + json.dumps({**json.loads(second), **DAMAGES[damage]}).encode() + b"\n")

    items = await store.items(conversation)
    assert items[0]["id"] == "msg_a" and items[0]["content"][0]["text"] == "hi"
    turns, ids = await store.history(conversation)  # what a response made in it reads
    assert turns[0].text == "hi" and ids[0] == "msg_a"
    assert (await store.item(conversation, "msg_a"))["id"] == "msg_a"
    # and it goes on
    added = await store.add(conversation, [KeptTurn(ChatMessage("user", (TextPart("more"),)),
                                                    item_ids={"message": "msg_c"})])
    assert [item["id"] for item in added] == ["msg_c"]
    assert (await store.items(conversation))[-1]["id"] == "msg_c"
