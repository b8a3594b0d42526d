"""A forced tool call the token limit cuts after every one of its tokens is one answer, in every dialect, whole and
streamed: the call from its first token on (a forced call's output is its markup), its arguments only growing from
one limit to the next and what the whole call's begin with, never its markup as text; Chat Completions ``length``
(``tool_calls`` once it is whole), Anthropic's ``input`` what its streamed pieces add up to, the Responses API's
items the same streamed and whole. (The parser's side, every format at every character: test_cut_everywhere.py.)"""

from __future__ import annotations

import json

import pytest
from cut_off_helpers import post
from dialect_helpers import WEATHER_SCHEMA, named_events, tool_model
from server_helpers import http_post, raw_request, start_server

CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                 "parameters": WEATHER_SCHEMA}}]
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cut-wire")
    srv = start_server(tmp, [tool_model(tmp)])
    yield srv
    srv.stop()


def _chat(max_tokens: int) -> dict:
    return {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "tools": CHAT_TOOLS,
            "tool_choice": "required", "parallel_tool_calls": False, "messages": MESSAGES}


def _chat_stream(server, body: dict) -> tuple[str, list[tuple[str, str]], str | None]:
    raw = raw_request(server.base_url, http_post("/v1/chat/completions", {**body, "stream": True}))
    content, calls, finish = "", {}, None
    for block in raw.decode().split("\n\n"):
        line = block.strip().rpartition("data: ")[2]
        if not line.startswith("{"):
            continue
        for choice in json.loads(line)["choices"]:
            content += choice["delta"].get("content") or ""
            for call in choice["delta"].get("tool_calls") or ():
                slot = calls.setdefault(call["index"], ["", ""])
                slot[0] += call["function"].get("name") or ""
                slot[1] += call["function"].get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return content, [tuple(c) for _, c in sorted(calls.items())], finish


def test_a_forced_call_cut_after_every_token_is_one_answer_in_every_dialect(server):
    status, full = post(server, "/v1/chat/completions", _chat(200))
    assert status == 200, full
    assert full["choices"][0]["finish_reason"] == "tool_calls", full
    [whole_call] = full["choices"][0]["message"]["tool_calls"]
    full_args = whole_call["function"]["arguments"]
    n = full["usage"]["completion_tokens"]
    assert 5 < n < 200
    prev = ""
    for max_tokens in range(1, n + 1):  # (about a minute in all: one tiny model)
        status, whole = post(server, "/v1/chat/completions", _chat(max_tokens))
        assert status == 200, whole
        choice = whole["choices"][0]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
        where = (max_tokens, whole)
        assert _chat_stream(server, _chat(max_tokens)) == (choice["message"].get("content") or "", calls,
                                                          choice["finish_reason"]), where
        assert not choice["message"].get("content"), where
        assert [name for name, _ in calls] == ["get_weather"], where
        args = calls[0][1]
        assert args.startswith(prev) and full_args.startswith(args), (where, prev)
        prev = args
        # (at the whole answer's own count the limit may be told before its end of turn: either)
        assert choice["finish_reason"] == "length" or max_tokens == n, where

        anthropic = {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "messages": MESSAGES,
                     "tools": [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}],
                     "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}}
        status, message = post(server, "/v1/messages", anthropic)
        assert status == 200, message
        assert [(b["type"], b.get("name")) for b in message["content"]] == [("tool_use", "get_weather")], message
        events = named_events(raw_request(server.base_url, http_post("/v1/messages", {**anthropic, "stream": True})))
        pieces = "".join(d["delta"]["partial_json"] for name, d in events
                         if name == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert (json.loads(pieces) if pieces else {}) == message["content"][0]["input"], (max_tokens, pieces, message)

        resp = {"model": "tool-model", "max_output_tokens": max_tokens, "temperature": 0, "input": "Weather in Paris?",
                "tool_choice": "required", "parallel_tool_calls": False,
                "tools": [{"type": "function", **CHAT_TOOLS[0]["function"]}]}
        status, answer = post(server, "/v1/responses", resp)
        assert status == 200, answer
        assert [(o["type"], o.get("name"), o.get("arguments")) for o in answer["output"]] == \
            [("function_call", "get_weather", args)], (max_tokens, answer)
        events = named_events(raw_request(server.base_url, http_post("/v1/responses", {**resp, "stream": True})))
        items = [d["item"] for name, d in events if name == "response.output_item.done"]
        fold = lambda output: [(o["type"], o.get("name"), o.get("arguments"), o["status"]) for o in output]
        assert fold(items) == fold(answer["output"]), (max_tokens, items, answer)


# the review's example: the prefill stops short of the closing quote of the call's name, which this model's first
# token writes alone: cut there (one token), the name is whole at its quote
PREFILL = '<tool_call>\n{"name": "get_weather'


def test_a_call_a_prefill_named_is_the_call_at_every_cut_whole_and_streamed(server):
    """A reply continued from a prefill that wrote the call's name but for its closing quote (``auto``: the grammar
    follows the prefill's call): cut after any token, from the quote on, it is that call (its arguments as far as
    they got), never its markup as text, the same streamed as whole."""
    def body(max_tokens: int) -> dict:
        return {"model": "tool-model", "max_tokens": max_tokens, "temperature": 0, "tools": CHAT_TOOLS,
                "tool_choice": "auto", "parallel_tool_calls": False,
                "messages": [*MESSAGES, {"role": "assistant", "content": PREFILL}]}

    prev = ""
    for max_tokens in range(1, 13):
        status, whole = post(server, "/v1/chat/completions", body(max_tokens))
        assert status == 200, whole
        choice = whole["choices"][0]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
        where = (max_tokens, whole)
        assert [name for name, _ in calls] == ["get_weather"], where
        assert not choice["message"].get("content"), where
        assert _chat_stream(server, body(max_tokens)) == ("", calls, choice["finish_reason"]), where
        assert calls[0][1].startswith(prev), (where, prev)
        prev = calls[0][1]
