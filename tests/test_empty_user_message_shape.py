"""An empty user message (``"content": ""``) is listed back in one shape per API, the official one: a conversation's
item as one empty ``input_text`` (as OpenAI's Conversations API, and as a response's input items already were), where
it was ``"content": []`` — the same message sent as ``[{"type": "input_text", "text": ""}]`` listed the other way. A
thread message keeps the Assistants API's empty text part."""

from __future__ import annotations

import aiohttp
import pytest

from api_helpers import running

EMPTY_TEXT = [{"type": "input_text", "text": ""}]


async def _json(session, method, url, body=None):
    async with session.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("content", ["", EMPTY_TEXT], ids=["string", "part"])
async def test_a_conversations_empty_user_message_is_one_empty_input_text(server, content):
    base = server.base_url
    async with aiohttp.ClientSession() as s:
        status, conv = await _json(s, "POST", f"{base}/v1/conversations",
                                   {"items": [{"type": "message", "role": "user", "content": content}]})
        assert status == 200, conv
        status, added = await _json(s, "POST", f"{base}/v1/conversations/{conv['id']}/items",
                                    {"items": [{"type": "message", "role": "user", "content": content}]})
        assert status == 200, added
        assert [item["content"] for item in added["data"]] == [EMPTY_TEXT]
        status, items = await _json(s, "GET", f"{base}/v1/conversations/{conv['id']}/items?order=asc")
        assert [item["content"] for item in items["data"]] == [EMPTY_TEXT, EMPTY_TEXT]
        # the same message through the Assistants API: its empty text part
        status, messages = await _json(s, "GET", f"{base}/v1/threads/{conv['id']}/messages?order=asc")
        assert [m["content"] for m in messages["data"]] == [[{"type": "text", "text": {"value": "",
                                                                                       "annotations": []}}]] * 2


async def test_a_threads_empty_user_message_is_its_empty_text_part(server):
    base = server.base_url
    async with aiohttp.ClientSession() as s:
        status, thread = await _json(s, "POST", f"{base}/v1/threads", {"messages": [{"role": "user", "content": ""}]})
        assert status == 200, thread
        await _json(s, "POST", f"{base}/v1/threads/{thread['id']}/messages", {"role": "user", "content": ""})
        status, messages = await _json(s, "GET", f"{base}/v1/threads/{thread['id']}/messages")
        assert [m["content"] for m in messages["data"]] == [[{"type": "text", "text": {"value": "",
                                                                                       "annotations": []}}]] * 2


@pytest.mark.timeout(300)
async def test_a_responses_empty_input_is_listed_as_sent_and_in_its_conversation(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:
        base = srv.base_url
        async with aiohttp.ClientSession() as s:
            status, conv = await _json(s, "POST", f"{base}/v1/conversations", {})
            for content in ("", EMPTY_TEXT):
                status, response = await _json(s, "POST", f"{base}/v1/responses", {
                    "model": "stories260K", "max_output_tokens": 2, "conversation": conv["id"],
                    "input": [{"role": "user", "content": content}]})
                assert status == 200, response
                status, items = await _json(s, "GET", f"{base}/v1/responses/{response['id']}/input_items")
                assert [item["content"] for item in items["data"] if item.get("role") == "user"][0] == EMPTY_TEXT
            status, items = await _json(s, "GET", f"{base}/v1/conversations/{conv['id']}/items?order=asc")
            assert [item["content"] for item in items["data"] if item.get("role") == "user"] == [EMPTY_TEXT] * 2
