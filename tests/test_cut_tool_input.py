"""A tool call the token limit cut off mid-arguments has one input in the dialects whose input is an object, not
text: Anthropic's ``tool_use.input`` (whole answer) equals what its streamed ``input_json_delta`` pieces add up
to, and Ollama's ``arguments`` is that object too — the arguments as far as they were written, closed (found by
outside testing: ``{}`` whole, ``{"city": "Zürich"}`` streamed, and the pieces joined were invalid JSON)."""

from __future__ import annotations

import json

import pytest
from cut_off_helpers import post
from dialect_helpers import WEATHER_SCHEMA, named_events, tool_model
from server_helpers import http_post, raw_request, start_server

TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cut-calls")
    srv = start_server(tmp, [tool_model(tmp)])
    yield srv
    srv.stop()


def _body(max_tokens: int) -> dict:
    return {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "tools": TOOLS,
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}


def test_a_cut_call_has_the_same_input_whole_and_streamed(server):
    seen_cut = 0
    for max_tokens in range(40, 66, 2):  # (this model writes its call markup in ~45 tokens)
        status, whole = post(server, "/v1/messages", _body(max_tokens))
        assert status == 200, whole
        uses = [b for b in whole["content"] if b["type"] == "tool_use"]
        raw = raw_request(server.base_url, http_post("/v1/messages", {**_body(max_tokens), "stream": True}))
        events = named_events(raw)
        pieces = "".join(d["delta"]["partial_json"] for n, d in events
                         if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        if not uses:
            assert not pieces
            continue
        streamed = json.loads(pieces) if pieces else {}  # the pieces add up to valid JSON
        assert streamed == uses[0]["input"], (max_tokens, pieces, uses[0]["input"])
        seen_cut += whole["stop_reason"] == "max_tokens"
    assert seen_cut, "some limit should cut the call"
