"""A response format (or stop strings, or a schema too large) together with tools, in the three dialects.

The format is the answer's, never a call's: a forced call ignores it and ``auto`` lets the model call or answer in
the format; a raw GBNF ``grammar`` is the whole output's, so a forced call with one is refused (as llama-server refuses
a grammar with tools); a client's stop string never cuts a forced call; a schema whose repetition count llama.cpp cannot
parse is a 400 naming the client's field. A real server with a tiny random-weight model and Qwen3's real template
(Hermes ``<tool_call>``): the grammar decides the shape, enum-only arguments keep every output short.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from dialect_helpers import anthropic_client, openai_client
from jan.testing.gguf_models import write_qwen3_tool_model
from server_helpers import start_server

MODEL = "qwen3-tiny"
ASK = "Weather in Paris?"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
          "required": ["city"], "additionalProperties": False}
ANSWER = {"type": "object", "properties": {"sky": {"type": "string", "enum": ["clear"]}},
          "required": ["sky"], "additionalProperties": False}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
RESP_TOOLS = [{"type": "function", "name": "get_weather", "parameters": PARAMS}]
ANTH_TOOLS = [{"name": "get_weather", "input_schema": PARAMS}]
CHAT_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}
RESP_FORMAT = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER}}
ANTH_FORMAT = {"format": {"type": "json_schema", "schema": ANSWER}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("constraints-tools")
    srv = start_server(tmp, [write_qwen3_tool_model(tmp / f"{MODEL}.gguf")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


@pytest.fixture(scope="module")
def anth(server):
    return anthropic_client(server, timeout=300)


# Qwen3 thinks by default, and a grammar lets a thinking model think before the call or the answer it holds
# (test_format_after_thinking); these tests are about the call and the format, so thinking is off
NO_THINKING = "none"


def chat(oai, choice, **extra):
    """(tool call names, content, finish_reason) of a chat completion."""
    c = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}], tools=CHAT_TOOLS,
                                    tool_choice=choice, parallel_tool_calls=False, max_tokens=200, temperature=0,
                                    reasoning_effort=NO_THINKING, **extra).choices[0]
    return [t.function.name for t in c.message.tool_calls or ()], c.message.content, c.finish_reason


def responses(oai, choice, **extra):
    r = oai.responses.create(model=MODEL, input=ASK, tools=RESP_TOOLS, tool_choice=choice, parallel_tool_calls=False,
                             max_output_tokens=200, temperature=0, reasoning={"effort": NO_THINKING}, **extra)
    calls = [o.name for o in r.output if o.type == "function_call"]
    return calls, r.output_text, r.status


def messages(anth, choice, **extra):
    m = anth.messages.create(model=MODEL, max_tokens=200, tools=ANTH_TOOLS, tool_choice=choice,
                             messages=[{"role": "user", "content": ASK}], **extra)
    calls = sorted({b.name for b in m.content if b.type == "tool_use"})  # (Anthropic calls in parallel)
    return calls, "".join(b.text for b in m.content if b.type == "text"), m.stop_reason


def _call_or_answer(calls, text):
    """``auto`` with a format: a call, or an answer that is the format's JSON — never free text."""
    if calls:
        assert set(calls) == {"get_weather"}
    else:
        assert json.loads(text) == {"sky": "clear"}


# -- 1. a response format does not disable tools ------------------------------------------------
def test_forced_call_with_a_format_chat(oai):
    assert chat(oai, "required", response_format=CHAT_FORMAT)[::2] == (["get_weather"], "tool_calls")


def test_forced_call_with_a_format_responses(oai):
    calls, _, status = responses(oai, "required", text=RESP_FORMAT)
    assert calls == ["get_weather"] and status == "completed"


def test_forced_call_with_a_format_anthropic(anth):
    calls, _, stop = messages(anth, {"type": "any", "disable_parallel_tool_use": True}, extra_body={"output_config": ANTH_FORMAT})
    assert calls == ["get_weather"] and stop == "tool_use"


def test_auto_with_a_format_calls_or_answers_in_it(oai, anth):
    calls, text, _ = chat(oai, "auto", response_format=CHAT_FORMAT)
    _call_or_answer(calls, text)
    calls, text, _ = responses(oai, "auto", text=RESP_FORMAT)
    _call_or_answer(calls, text)
    calls, text, _ = messages(anth, {"type": "auto"}, extra_body={"output_config": ANTH_FORMAT})
    _call_or_answer(calls, text)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_raw_grammar_with_a_forced_call_is_refused(oai, choice, stream):
    # the client's GBNF is the whole output's: a forced call's grammar was dropped without a word and the answer was
    # whatever the GBNF spelled (``"sunny"``, finish "stop": no call at all); llama-server refuses a grammar with tools
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}], tools=CHAT_TOOLS,
                                    tool_choice=choice, max_tokens=20, stream=stream,
                                    extra_body={"grammar": 'root ::= "sunny"'})
    err = caught.value.body
    assert err["param"] == "grammar" and "tool_choice" in err["message"], err


def test_a_raw_grammar_with_auto_or_none_is_the_whole_output(oai):
    for choice in ("auto", "none"):
        calls, text, finish = chat(oai, choice, extra_body={"grammar": 'root ::= "sunny"'})
        assert (calls, text, finish) == ([], "sunny", "stop")


def test_none_with_a_format_answers_in_it(oai):
    calls, text, finish = chat(oai, "none", response_format=CHAT_FORMAT)
    assert calls == [] and json.loads(text) == {"sky": "clear"} and finish == "stop"


# -- 2. a stop string never cuts a forced call, and no markup leaks ---------------------------------
def test_stop_does_not_cut_a_forced_call_chat(oai):
    calls, content, finish = chat(oai, "required", stop=["\n"])
    assert calls == ["get_weather"] and not content and finish == "tool_calls"


def test_stop_does_not_cut_a_forced_call_chat_streamed(oai):
    stream = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}], tools=CHAT_TOOLS,
                                         tool_choice="required", parallel_tool_calls=False, max_tokens=200,
                                         temperature=0, stop=["\n"], stream=True, reasoning_effort=NO_THINKING)
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    names = [t.function.name for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()
             if t.function and t.function.name]
    assert names == ["get_weather"] and "<tool_call>" not in content


def test_stop_does_not_cut_a_forced_call_anthropic(anth):
    calls, text, stop = messages(anth, {"type": "any", "disable_parallel_tool_use": True}, stop_sequences=["\n"])
    assert calls == ["get_weather"] and "<tool_call>" not in text and stop == "tool_use"


# -- 3. a schema too large for the grammar: 400 naming the client's field, before llama.cpp ----------
BIG_TOOL = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 5000}},
            "required": ["xs"]}
BIG_ANSWER = {"type": "object", "properties": {"s": {"type": "string", "minLength": 5000}}, "required": ["s"]}


def test_tool_schema_too_large_names_the_tool(oai, anth):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}], max_tokens=5,
                                    tools=[{"type": "function", "function": {"name": "f", "parameters": BIG_TOOL}}],
                                    tool_choice="required")
    err = caught.value.body
    assert err["param"] == "tools[0].function.parameters" and "repetition" in err["message"], err
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=MODEL, input=ASK, max_output_tokens=5, tool_choice="required",
                             tools=[{"type": "function", "name": "g", "parameters": PARAMS},
                                    {"type": "function", "name": "f", "parameters": BIG_TOOL}])
    err = caught.value.body
    assert err["param"] == "tools[1].parameters" and err["code"] == "schema_too_complex", err
    assert err["message"].startswith("tools[1].parameters.properties.xs.minItems:") and "repetition" in err["message"], err
    with pytest.raises(anthropic.BadRequestError) as caught:
        anth.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": ASK}],
                             tools=[{"name": "f", "input_schema": BIG_TOOL}], tool_choice={"type": "any"})
    assert "repetition" in str(caught.value)
    assert "tools.0.input_schema" in str(caught.value) and "function.parameters" not in str(caught.value)


def test_format_schema_too_large_names_the_format(oai, anth):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}], max_tokens=5,
                                    response_format={"type": "json_schema",
                                                     "json_schema": {"name": "a", "schema": BIG_ANSWER}})
    err = caught.value.body
    assert err["param"] == "response_format.json_schema.schema" and "repetition" in err["message"], err
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=MODEL, input=ASK, max_output_tokens=5,
                             text={"format": {"type": "json_schema", "name": "a", "schema": BIG_ANSWER}})
    err = caught.value.body
    assert err["param"] == "text.format.schema" and err["code"] == "schema_too_complex", err
    assert "repetition" in err["message"] and "response_format" not in err["message"], err
    with pytest.raises(anthropic.BadRequestError) as caught:
        anth.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": ASK}],
                             extra_body={"output_config": {"format": {"type": "json_schema", "schema": BIG_ANSWER}}})
    assert "repetition" in str(caught.value)
    assert "output_config.format.schema" in str(caught.value) and "response_format" not in str(caught.value)
