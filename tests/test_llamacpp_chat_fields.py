"""llama-server 0.3.36's fields on its OpenAI chat route, as its clients read and send them (checked against its
binary on stories260K): each logprobs item's token ``id`` beside OpenAI's fields, and the documented request fields
it takes there (``return_tokens``, ``response_fields``, ``generation_prompt``, ``parse_tool_calls``, ``n_cmpl``),
which jan refused as unknown (400)."""

from __future__ import annotations

import pytest

from jan.engine.results import TokenLogprob, TopLogprob
from jan.server.openai_wire import _chat_logprobs
from server_helpers import ok, start_server

CHAT = {"model": "stories260K", "temperature": 0, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("chatfields"), [stories_path], n_parallel=2)
    yield srv
    srv.stop()


def test_chat_logprobs_tell_each_tokens_id(server):
    content = ok(server, "/v1/chat/completions", CHAT | {"logprobs": True, "top_logprobs": 2})[
        "choices"][0]["logprobs"]["content"]
    assert len(content) == 3, content
    for item in content:
        # OpenAI's fields stay; llama-server's id is the token's, its alternatives' theirs (greedy: the pick first)
        assert {"token", "logprob", "bytes", "top_logprobs", "id"} <= set(item), item
        assert item["top_logprobs"][0]["id"] == item["id"], item
        assert ok(server, "/detokenize", {"tokens": [item["id"]]})["content"] == item["token"], item
        assert all(isinstance(t["id"], int) for t in item["top_logprobs"]), item


def test_chat_logprobs_stream_the_ids_too(server):
    import httpx
    import json

    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=120,
                          json=CHAT | {"logprobs": True, "top_logprobs": 1, "stream": True})
    items = [item for line in response.text.split("\n") if line.startswith("data: {")
             for choice in json.loads(line[6:])["choices"] for item in (choice.get("logprobs") or {}).get("content") or ()]
    assert len(items) == 3 and all(isinstance(i["id"], int) for i in items), items


def test_a_token_without_a_known_id_has_none():
    # (a remote engine's tokens: -1, no id to tell)
    items = _chat_logprobs([TokenLogprob(-1, "a", [97], -0.5, [TopLogprob(-1, "a", [97], -0.5)]),
                            TokenLogprob(7, "b", [98], -0.1, [TopLogprob(7, "b", [98], -0.1)])], 1)
    assert "id" not in items[0] and "id" not in items[0]["top_logprobs"][0], items
    assert items[1]["id"] == 7 and items[1]["top_logprobs"][0]["id"] == 7, items
