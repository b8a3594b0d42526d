"""A tool call the token limit cut off mid-arguments has one input in the dialects whose input is an object, not
text: Anthropic's ``tool_use.input`` (whole answer) equals what its streamed ``input_json_delta`` pieces add up
to, and Ollama's ``arguments`` is that object too — the arguments as far as they were written, closed (found by
outside testing: ``{}`` whole, ``{"city": "Zürich"}`` streamed, and the pieces joined were invalid JSON). The text
dialects (Chat Completions, Responses) keep the arguments as written and say the answer was cut."""

from __future__ import annotations

import json

import pytest
from cut_off_helpers import post
from dialect_helpers import WEATHER_SCHEMA, named_events, tool_model
from extension_helpers import call
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


CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                 "parameters": WEATHER_SCHEMA}}]


def _chat_stream(server, body: dict) -> tuple[list[tuple[str, str]], str | None]:
    """The calls (name, arguments) a streamed chat completion's deltas add up to, and its finish_reason."""
    raw = raw_request(server.base_url, http_post("/v1/chat/completions", {**body, "stream": True}))
    calls: dict[int, list[str]] = {}
    finish = None
    for block in raw.decode().split("\n\n"):
        line = block.strip().rpartition("data: ")[2]
        if not line.startswith("{"):
            continue
        for choice in json.loads(line)["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                slot = calls.setdefault(call["index"], ["", ""])
                slot[0] += call["function"].get("name") or ""
                slot[1] += call["function"].get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return [tuple(c) for _, c in sorted(calls.items())], finish


def test_a_forced_call_cut_off_is_a_well_formed_cut_answer_in_chat_and_responses(server):
    """A forced call the token limit cut: Chat Completions ends ``length`` with the arguments as written (OpenAI's
    shape; the streamed fragments add up to them), the Responses API an ``incomplete`` response whose
    ``function_call`` item is ``incomplete`` (streamed and whole alike) -- never a 500 or an answer saying done."""
    seen_cut = 0
    for max_tokens in range(41, 66, 6):
        body = {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "tools": CHAT_TOOLS,
                "tool_choice": "required", "parallel_tool_calls": False,
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}
        status, whole = post(server, "/v1/chat/completions", body)
        assert status == 200, whole
        choice = whole["choices"][0]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
        assert _chat_stream(server, body) == (calls, choice["finish_reason"])
        cut = choice["finish_reason"] == "length"
        if not cut:
            assert choice["finish_reason"] == "tool_calls" and json.loads(calls[0][1])["city"] in ("Paris", "Lyon")
        seen_cut += bool(cut and calls)

        resp = {"model": "tool-model", "max_output_tokens": max_tokens, "temperature": 0, "input": "Weather in Paris?",
                "tool_choice": "required", "parallel_tool_calls": False,
                "tools": [{"type": "function", **CHAT_TOOLS[0]["function"]}]}
        status, whole = post(server, "/v1/responses", resp)
        assert status == 200, whole
        raw = raw_request(server.base_url, http_post("/v1/responses", {**resp, "stream": True}))
        events = named_events(raw)
        [(_, last)] = [(n, d) for n, d in events if n in ("response.completed", "response.incomplete", "response.failed")]
        items = [d["item"] for n, d in events if n == "response.output_item.done"]
        fold = lambda output: [(o["type"], o.get("name"), o.get("arguments"), o["status"]) for o in output]  # noqa: E731
        assert fold(items) == fold(whole["output"]) == fold(last["response"]["output"])
        assert last["response"]["status"] == whole["status"]
        if whole["status"] == "incomplete":
            assert whole["incomplete_details"] == {"reason": "max_output_tokens"}
            assert all(o["status"] == "incomplete" for o in whole["output"])
        else:
            assert whole["status"] == "completed" and [o["type"] for o in whole["output"]] == ["function_call"]
    assert seen_cut, "some limit should cut the call"


FORCED_CUTS = (1, 8, 20, 35)  # tokens: inside <tool_call>, inside "name", after it, before the arguments begin


def test_a_forced_call_cut_inside_its_markup_is_the_call_in_every_dialect(server):
    """A forced call the token limit cut before its arguments began (even before its name was written) is the call,
    with empty arguments -- OpenAI's cut call -- not a reply with neither the call nor the text: Chat Completions
    ``length``, Anthropic a ``tool_use`` with input ``{}`` and ``max_tokens``, the Responses API an ``incomplete``
    ``function_call``; Ollama (no tool_choice: a prefill opens the call) its call with ``{}``. Streamed as whole."""
    for max_tokens in FORCED_CUTS:
        chat = {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "tools": CHAT_TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}
        status, whole = post(server, "/v1/chat/completions", chat)
        assert status == 200, whole
        choice = whole["choices"][0]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
        assert [n for n, _ in calls] == ["get_weather"] and choice["finish_reason"] == "length", (max_tokens, whole)
        assert not choice["message"].get("content")
        assert _chat_stream(server, chat) == (calls, "length")

        status, whole = post(server, "/v1/messages", _body(max_tokens))
        assert status == 200, whole
        assert [(b["type"], b.get("name")) for b in whole["content"]] == [("tool_use", "get_weather")], whole
        assert whole["stop_reason"] == "max_tokens"
        events = named_events(raw_request(server.base_url, http_post("/v1/messages", {**_body(max_tokens),
                                                                                     "stream": True})))
        starts = [d["content_block"] for n, d in events if n == "content_block_start"]
        assert [(b["type"], b.get("name")) for b in starts] == [("tool_use", "get_weather")]
        pieces = "".join(d["delta"]["partial_json"] for n, d in events
                         if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert (json.loads(pieces) if pieces else {}) == whole["content"][0]["input"]

        resp = {"model": "tool-model", "max_output_tokens": max_tokens, "temperature": 0, "input": "Weather in Paris?",
                "tool_choice": "required", "tools": [{"type": "function", **CHAT_TOOLS[0]["function"]}]}
        status, whole = post(server, "/v1/responses", resp)
        assert status == 200, whole
        assert whole["status"] == "incomplete", whole
        assert [(o["type"], o.get("name"), o["status"]) for o in whole["output"]] == \
            [("function_call", "get_weather", "incomplete")]
        events = named_events(raw_request(server.base_url, http_post("/v1/responses", {**resp, "stream": True})))
        items = [d["item"] for n, d in events if n == "response.output_item.done"]
        assert [(o["type"], o.get("name"), o.get("arguments")) for o in items] == \
            [(o["type"], o.get("name"), o.get("arguments")) for o in whole["output"]]

    for num_predict in (1, 2):
        body = {"model": "tool-model", "stream": False, "tools": CHAT_TOOLS,
                "messages": [{"role": "user", "content": "Weather in Paris?"},
                             {"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", "arguments": '}],
                "options": {"num_predict": num_predict, "temperature": 0}}
        status, whole = post(server, "/api/chat", body)
        assert status == 200, whole
        assert [c["function"]["name"] for c in whole["message"]["tool_calls"]] == ["get_weather"], whole
        assert whole["done_reason"] == "length" and not whole["message"]["content"]
        status, raw = call(server, "POST", "/api/chat", {**body, "stream": True}, timeout=120)
        assert status == 200, raw
        lines = [json.loads(line) for line in raw.splitlines() if line]
        streamed = [c["function"] for o in lines for c in o["message"].get("tool_calls") or ()]
        assert [(c["name"], c["arguments"]) for c in streamed] == \
            [(c["function"]["name"], c["function"]["arguments"]) for c in whole["message"]["tool_calls"]]
