"""A tool call that an assistant prefill opens comes back as a tool call, in every dialect that continues a final
assistant message (Anthropic ``tool_use``, OpenAI chat ``tool_calls``, Ollama ``tool_calls``), streamed and not: its
arguments are the prefilled part and the continuation together, and the prefilled text is not told again as text.
A prefill of plain text is continued as text, as before. The tiny ChatML + Hermes tool model (``tool-model``)."""

from __future__ import annotations

import json

import pytest
from api_helpers import parse_sse
from dialect_helpers import WEATHER_SCHEMA, named_events, tool_model
from extension_helpers import call
from server_helpers import post, start_server

MODEL = "tool-model"
HI = {"role": "user", "content": "What is the weather in Paris?"}
START = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "'
TEXT_THEN_CALL = "Let me look that up.\n" + START
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                                "parameters": WEATHER_SCHEMA}}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "The weather in a city.", "input_schema": WEATHER_SCHEMA}
SEEDS = range(2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefill-tool-call")
    srv = start_server(tmp, [tool_model(tmp)], n_ctx=2048)  # (room for the tools' prompt)
    yield srv
    srv.stop()


def _args_ok(arguments) -> None:
    """The call's whole arguments: the prefilled ``{"city": "`` finished into one of the schema's cities."""
    value = json.loads(arguments) if isinstance(arguments, str) else arguments
    assert value in ({"city": "Paris"}, {"city": "Lyon"}), arguments


# -- OpenAI chat completions ---------------------------------------------------------------------------------------
def _openai(server, prefill: str, choice, seed: int, stream: bool) -> dict:
    """The reply folded: content, calls [(name, arguments)], finish_reason."""
    body = {"model": MODEL, "max_tokens": 48, "temperature": 1.0, "seed": seed, "stream": stream,
            "tools": [OPENAI_TOOL], "tool_choice": choice, "parallel_tool_calls": False, "messages": [HI, {"role": "assistant", "content": prefill}]}
    status, out = call(server, "POST", "/v1/chat/completions", body, timeout=120)
    assert status == 200, out
    if not stream:
        message, finish = out["choices"][0]["message"], out["choices"][0]["finish_reason"]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
        return {"content": message.get("content") or "", "calls": calls, "finish": finish}
    content, calls, finish = "", {}, None
    for _, data in parse_sse(out):
        if not isinstance(data, dict) or not data.get("choices"):
            continue
        choice_ = data["choices"][0]
        content += choice_["delta"].get("content") or ""
        for piece in choice_["delta"].get("tool_calls") or []:
            slot = calls.setdefault(piece["index"], ["", ""])
            slot[0] += piece.get("function", {}).get("name") or ""
            slot[1] += piece.get("function", {}).get("arguments") or ""
        finish = choice_.get("finish_reason") or finish
    return {"content": content, "calls": [tuple(c) for _, c in sorted(calls.items())], "finish": finish}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_a_forced_call_the_prefill_opened_is_a_tool_call(server, stream):
    for seed in SEEDS:
        got = _openai(server, START, "required", seed, stream)
        assert got["finish"] == "tool_calls" and len(got["calls"]) == 1, got
        name, arguments = got["calls"][0]
        assert name == "get_weather"
        _args_ok(arguments)
        assert not got["content"].strip(), got  # the call's text is the call, the prefill is not told again


@pytest.mark.parametrize("stream", [False, True])
def test_openai_text_then_a_call_in_the_prefill_is_the_call_without_the_text(server, stream):
    for seed in SEEDS:
        got = _openai(server, TEXT_THEN_CALL, "auto", seed, stream)
        assert got["finish"] == "tool_calls" and [n for n, _ in got["calls"]] == ["get_weather"], got
        _args_ok(got["calls"][0][1])
        assert "Let me look" not in got["content"], got


def test_openai_a_plain_text_prefill_is_continued_as_text(server):
    got = _openai(server, "The weather in", "auto", 0, False)
    greedy = {"model": MODEL, "max_tokens": 6, "temperature": 0, "tools": [OPENAI_TOOL],
              "messages": [HI, {"role": "assistant", "content": "The weather in"}]}
    status, out = call(server, "POST", "/v1/chat/completions", greedy, timeout=120)
    assert status == 200 and got["finish"] in ("stop", "length"), (got, out)
    # the continuation alone, as a completion of the same prompt writes it
    prompt = call(server, "POST", "/apply-template", {"model": MODEL, "messages": greedy["messages"],
                                                       "tools": [OPENAI_TOOL]})[1]["prompt"]
    raw = call(server, "POST", "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 6,
                                                   "temperature": 0}, timeout=120)[1]
    assert out["choices"][0]["message"]["content"] == raw["choices"][0]["text"]


# -- Anthropic messages --------------------------------------------------------------------------------------------
def _anthropic(server, prefill: str, choice: dict, stream: bool) -> dict:
    choice = {**choice, "disable_parallel_tool_use": True}  # (one call: a tiny model's second one runs to max_tokens)
    body = {"model": MODEL, "max_tokens": 48, "temperature": 1.0, "stream": stream, "tools": [ANTHROPIC_TOOL],
            "tool_choice": choice, "messages": [HI, {"role": "assistant", "content": prefill}]}
    response = post(server, "/v1/messages", body)
    assert response.status_code == 200, response.text
    if not stream:
        message = response.json()
        return {"blocks": [(b["type"], b.get("text") if b["type"] == "text" else (b["name"], b["input"]))
                           for b in message["content"]], "stop": message["stop_reason"]}
    blocks, stop = [], None
    for name, data in named_events(response.content):
        if name == "content_block_start":
            block = data["content_block"]
            blocks.append([block["type"], "" if block["type"] == "text" else (block["name"], "")])
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[-1][1] += delta["text"]
            elif delta["type"] == "input_json_delta":
                blocks[-1][1] = (blocks[-1][1][0], blocks[-1][1][1] + delta["partial_json"])
        elif name == "message_delta":
            stop = data["delta"].get("stop_reason") or stop
    return {"blocks": [(t, v if t == "text" else (v[0], json.loads(v[1]))) for t, v in blocks], "stop": stop}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_a_forced_call_the_prefill_opened_is_tool_use(server, stream):
    for _ in SEEDS:
        got = _anthropic(server, START, {"type": "tool", "name": "get_weather"}, stream)
        assert got["stop"] == "tool_use", got
        uses = [v for t, v in got["blocks"] if t == "tool_use"]
        assert len(uses) == 1 and uses[0][0] == "get_weather", got
        _args_ok(uses[0][1])
        assert not "".join(v for t, v in got["blocks"] if t == "text").strip(), got


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_text_then_a_call_in_the_prefill_is_tool_use_without_the_text(server, stream):
    got = _anthropic(server, TEXT_THEN_CALL, {"type": "auto"}, stream)
    assert got["stop"] == "tool_use", got
    uses = [v for t, v in got["blocks"] if t == "tool_use"]
    assert [u[0] for u in uses] == ["get_weather"], got
    _args_ok(uses[0][1])
    assert "Let me look" not in "".join(v for t, v in got["blocks"] if t == "text"), got


# -- Ollama /api/chat ----------------------------------------------------------------------------------------------
def _ollama(server, prefill: str, seed: int, stream: bool) -> dict:
    body = {"model": MODEL, "stream": stream, "tools": [OPENAI_TOOL],
            "messages": [HI, {"role": "assistant", "content": prefill}],
            "options": {"num_predict": 48, "temperature": 1.0, "seed": seed}}
    status, out = call(server, "POST", "/api/chat", body, timeout=120)
    assert status == 200, out
    objs = [json.loads(line) for line in out.splitlines() if line] if stream else [out]
    calls = [c["function"] for o in objs for c in o["message"].get("tool_calls") or []]
    return {"content": "".join(o["message"].get("content") or "" for o in objs), "calls": calls,
            "done_reason": objs[-1].get("done_reason")}


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_a_call_the_prefill_opened_is_a_tool_call(server, stream):
    """Ollama has no tool_choice: the call the prefill opened triggers the call grammar (``auto``), which reads
    the prefill and holds the continuation to the call. Nor a switch for parallel calls: a tiny model may begin
    another call after it (cut off by num_predict), so only the first call is the prefill's."""
    for prefill in (START, TEXT_THEN_CALL):
        for seed in SEEDS:
            got = _ollama(server, prefill, seed, stream)
            assert got["calls"] and got["calls"][0]["name"] == "get_weather", got
            _args_ok(got["calls"][0]["arguments"])  # (Ollama's arguments are an object)
            assert "Let me look" not in got["content"] and "<tool_call>" not in got["content"], got
