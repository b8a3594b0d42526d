"""Structured output that continues a prefill: the format constrains the whole reply, prefill and continuation
together (Anthropic's structured outputs with an assistant prefill; jan's response_format / Ollama's format where
the last assistant message is continued). A prefill that cannot start the format's JSON, or the call a tool_choice
forces, is a 400 in the dialect's shape before anything is generated."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import pytest
from api_helpers import parse_sse
from dialect_helpers import anthropic_client, reasoning_model
from extension_helpers import call
from server_helpers import start_server

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
HI = {"role": "user", "content": "Tell me about a girl."}
PREFILLS = ['{"', '{"name": "Li', '{"name": "Lily", "age": ']
BAD = "Sure! Here it is:"
SEEDS = range(3)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("prefill-format")
    srv = start_server(tmp, [stories_path, reasoning_model(tmp)], n_ctx=2048)  # (room for the tools' prompt)
    yield srv
    srv.stop()


def whole(prefill: str, text: str) -> dict:
    """The reply the client holds (its prefill, then the answer), as JSON of the schema."""
    value = json.loads(prefill + text)
    jsonschema.validate(value, SCHEMA)
    return value


# -- Anthropic: output_config.format with an assistant prefill -------------------------------------------------
def _anthropic_args(prefill: str, seed: int) -> dict:
    # (Anthropic's API takes no seed: each of the SEEDS draws is a fresh one, every one of which must hold)
    return {"model": "stories260K", "max_tokens": 64,
            "messages": [HI, {"role": "assistant", "content": prefill}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            "extra_body": {"temperature": 1.0}}


@pytest.mark.parametrize("prefill", PREFILLS)
def test_anthropic_prefill_and_answer_are_one_document_of_the_schema(server, prefill):
    client = anthropic_client(server)
    for seed in SEEDS:
        message = client.messages.create(**_anthropic_args(prefill, seed))
        assert message.stop_reason == "end_turn", message
        assert [b.type for b in message.content] == ["text"]
        whole(prefill, message.content[0].text)


@pytest.mark.parametrize("prefill", PREFILLS)
def test_anthropic_streamed_prefill_and_answer_are_one_document_of_the_schema(server, prefill):
    client = anthropic_client(server)
    for seed in SEEDS:
        with client.messages.stream(**_anthropic_args(prefill, seed)) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn"
        whole(prefill, text)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_prefill_that_cannot_start_the_format_is_invalid_request(server, stream):
    client = anthropic_client(server)
    args = _anthropic_args(BAD, 0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        if stream:
            with client.messages.stream(**args) as s:
                "".join(s.text_stream)
        else:
            client.messages.create(**args)
    err = caught.value
    assert err.status_code == 400
    body = err.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    message = body["error"]["message"]
    assert "prefill" in message and "output_config.format" in message and repr(BAD) in message, message
    assert "character 0 ('S')" in message


def test_anthropic_prefill_that_leaves_the_format_midway_is_named_where(server):
    status, out = call(server, "POST", "/v1/messages", {**_raw(_anthropic_args('{"name": 7', 0))})
    assert status == 400 and out["error"]["type"] == "invalid_request_error", out
    assert "character 9 ('7')" in out["error"]["message"], out


def _raw(args: dict) -> dict:
    """The SDK's keyword arguments as a request body."""
    body = {k: v for k, v in args.items() if k != "extra_body"}
    return {**body, **args.get("extra_body", {})}


def test_anthropic_prefill_without_a_format_is_free_text_as_before(server):
    out = anthropic_client(server).messages.create(model="stories260K", max_tokens=8, extra_body={"temperature": 0},
                                                   messages=[HI, {"role": "assistant", "content": BAD}])
    assert out.content and out.stop_reason in ("end_turn", "max_tokens")


# -- a forced tool call with a prefill ---------------------------------------------------------------------------
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                            "required": ["city"]}}


def test_anthropic_prefill_that_cannot_start_the_forced_tool_call_is_invalid_request(server):
    status, out = call(server, "POST", "/v1/messages", {
        "model": "stories260K", "max_tokens": 32, "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [HI, {"role": "assistant", "content": BAD}]})
    assert status == 400 and out["error"]["type"] == "invalid_request_error", out
    assert "tool call tool_choice forces" in out["error"]["message"], out


def test_a_prefill_that_starts_the_forced_tool_call_is_continued_within_it(server):
    """The forced call's grammar reads the prefill (the start of a call in the template's syntax): the output
    finishes that call, so prefill and output are one call of the tool with arguments of its schema, told as a call."""
    start = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "'
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
    for seed in SEEDS:
        status, out = call(server, "POST", "/v1/chat/completions", {
            "model": "stories260K", "max_tokens": 48, "temperature": 1.0, "seed": seed, "tools": [tool],
            "tool_choice": "required", "messages": [HI, {"role": "assistant", "content": start}]})
        assert status == 200, out
        message = out["choices"][0]["message"]
        # the output is parsed from the prefill's start: the call comes back as a call, its arguments whole (the
        # prefilled part too), and the call's start is not told again as text (tests/test_prefill_tool_call.py)
        assert not (message.get("content") or "").strip(), message
        calls = message.get("tool_calls") or []
        assert calls and calls[0]["function"]["name"] == "get_weather", message
        jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER["input_schema"])


# -- OpenAI chat: response_format with a continued final assistant message ---------------------------------------
def _openai_body(prefill: str, seed: int, stream: bool = False) -> dict:
    return {"model": "stories260K", "max_tokens": 64, "temperature": 1.0, "seed": seed, "stream": stream,
            "messages": [HI, {"role": "assistant", "content": prefill}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "girl", "schema": SCHEMA}}}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_continues_the_prefill_within_the_response_format(server, stream):
    for prefill in PREFILLS:
        for seed in SEEDS:
            status, out = call(server, "POST", "/v1/chat/completions", _openai_body(prefill, seed, stream))
            assert status == 200, out
            if stream:
                text = "".join((d["choices"][0]["delta"].get("content") or "") for _, d in parse_sse(out)
                               if isinstance(d, dict) and d.get("choices"))
            else:
                text = out["choices"][0]["message"]["content"]
            whole(prefill, text)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_prefill_that_cannot_start_the_format_is_a_400(server, stream):
    status, out = call(server, "POST", "/v1/chat/completions", _openai_body(BAD, 0, stream))
    assert status == 400, out
    assert out["error"]["param"] == "messages" and out["error"]["code"] == "prefill_not_in_format", out
    assert "response_format" in out["error"]["message"] and "prefill" in out["error"]["message"]


def test_openai_chat_continue_final_message_takes_the_prefix_too(server):
    body = {**_openai_body('{"name": "', 0), "continue_final_message": True, "add_generation_prompt": False}
    status, out = call(server, "POST", "/v1/chat/completions", body)
    assert status == 200, out
    whole('{"name": "', out["choices"][0]["message"]["content"])


# -- Ollama: format with a continued final assistant message (a template that leaves the last turn open) --------
def _ollama_body(prefill: str, seed: int, stream: bool = False) -> dict:
    return {"model": "qwq-tiny", "stream": stream, "think": False, "format": SCHEMA,
            "messages": [HI, {"role": "assistant", "content": prefill}],
            "options": {"num_predict": 64, "temperature": 1.0, "seed": seed}}


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_chat_continues_the_prefill_within_the_format(server, stream):
    for prefill in PREFILLS:
        for seed in SEEDS:
            status, out = call(server, "POST", "/api/chat", _ollama_body(prefill, seed, stream))
            assert status == 200, out
            objs = [json.loads(line) for line in out.splitlines() if line] if stream else [out]
            assert objs[-1]["done_reason"] == "stop", objs[-1]
            whole(prefill, "".join(o["message"].get("content") or "" for o in objs))


def test_ollama_chat_prefill_that_cannot_start_the_format_is_its_400(server):
    status, out = call(server, "POST", "/api/chat", _ollama_body(BAD, 0))
    assert status == 400 and set(out) == {"error"}, out
    assert "format asks for" in out["error"] and "prefill" in out["error"], out


# -- a prefill on a thinking template: the grammar reads only the answer's part ----------------------------------
def test_a_prefill_that_closed_its_thought_is_read_from_its_answer(server):
    """QwQ: a prefill with a closed thought then the start of the answer; the format holds the answer, and the
    grammar reads the prefill's answer part only (after ``</think>``), so the continuation completes that JSON."""
    prefill = '<think>\nA girl.\n</think>\n\n{"name": "'
    for seed in SEEDS:
        status, out = call(server, "POST", "/v1/chat/completions", {
            **_openai_body(prefill, seed), "model": "qwq-tiny", "reasoning_effort": "high"})
        assert status == 200, out
        message = out["choices"][0]["message"]
        assert not message.get("reasoning_content"), message
        whole('{"name": "', message["content"])
