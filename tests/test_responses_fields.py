"""OpenAI Responses request fields beyond the basics: each one does what OpenAI's does, is refused with a
400 in the Responses error shape, or (having no local meaning) is accepted and echoed as OpenAI echoes it.
Never accepted and silently dropped. Driven by the official openai client against a real server.
"""

from __future__ import annotations

import json
import math

import openai
import pytest

from dialect_helpers import (WEATHER_SCHEMA, collapse, has_reasoning_parser, http_body, named_events, openai_client,
                             reasoning_model, tool_model)
from jan.server.dialects import responses as rs
from jan.services.types import ChatDelta, TokenLogprob, TopLogprob
from server_helpers import http_post, raw_request, start_server

LOGPROBS = ["message.output_text.logprobs"]
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_SCHEMA},
         {"type": "function", "name": "get_time", "description": "The time in a time zone",
          "parameters": {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"],
                         "additionalProperties": False}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("responses_fields")
    srv = start_server(tmp, [stories_path, tool_model(tmp)], n_ctx=1024, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _raw(server, body: dict) -> tuple[int, dict | list]:
    status, payload = http_body(raw_request(server.base_url, http_post("/v1/responses", body)))
    if body.get("stream") and status == 200:
        return status, [data for _, data in named_events(payload)]
    return status, json.loads(payload)


# -- logprobs: include + top_logprobs --------------------------------------------------------------
def test_logprobs_are_the_chat_completions(client):
    response = client.responses.create(model="stories260K", input="Hello", max_output_tokens=12, temperature=0,
                                       include=LOGPROBS, top_logprobs=3)
    part = response.output[0].content[0]
    assert len(part.logprobs) == 12 and "".join(lp.token for lp in part.logprobs) == part.text
    assert all(len(lp.top_logprobs) == 3 for lp in part.logprobs)
    assert all(bytes(lp.bytes).decode() == lp.token for lp in part.logprobs)
    assert response.top_logprobs == 3
    chat = client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "Hello"}],
                                          max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    expected = chat.choices[0].logprobs.content
    assert [lp.token for lp in part.logprobs] == [lp.token for lp in expected]
    # (the same values up to float noise: the chat request reuses the prompt's KV cache, whose logits come from
    # another batch shape; 1e-4 was exceeded on an AMD EPYC host)
    assert all(math.isclose(a.logprob, b.logprob, abs_tol=1e-3) for a, b in zip(part.logprobs, expected))
    assert [[t.token for t in lp.top_logprobs] for lp in part.logprobs] == \
        [[t.token for t in lp.top_logprobs] for lp in expected]
    # stored with the response
    assert client.responses.retrieve(response.id).output[0].content[0].logprobs == part.logprobs


def test_top_logprobs_without_include_returns_none(client):
    # OpenAI's rule: logprobs come only when include asks for them; top_logprobs sets the alternatives
    response = client.responses.create(model="stories260K", input="Hello", max_output_tokens=5, temperature=0,
                                       top_logprobs=2)
    assert response.output[0].content[0].logprobs == [] and response.top_logprobs == 2
    plain = client.responses.create(model="stories260K", input="Hello", max_output_tokens=5, temperature=0,
                                    include=LOGPROBS)
    assert all(lp.top_logprobs == [] for lp in plain.output[0].content[0].logprobs)
    assert len(plain.output[0].content[0].logprobs) == 5 and plain.top_logprobs == 0


def test_streamed_logprobs_on_deltas_and_parts(client, server):
    body = {"model": "stories260K", "input": "Hello", "max_output_tokens": 10, "temperature": 0,
            "include": LOGPROBS, "top_logprobs": 2, "stream": True}
    status, events = _raw(server, body)
    assert status == 200
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    tokens = [lp for e in deltas for lp in e["logprobs"]]
    assert "".join(lp["token"] for lp in tokens) == "".join(e["delta"] for e in deltas)
    assert all(set(lp) == {"token", "logprob", "top_logprobs"} and len(lp["top_logprobs"]) == 2 for lp in tokens)
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    [part] = [e["part"] for e in events if e["type"] == "response.content_part.done"]
    assert part["logprobs"] == done["logprobs"] and len(done["logprobs"]) == 10
    assert [lp["token"] for lp in done["logprobs"]] == [lp["token"] for lp in tokens]
    assert [lp["logprob"] for lp in done["logprobs"]] == [lp["logprob"] for lp in tokens]
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == done["logprobs"]
    # the SDK reads the same stream
    sdk = list(client.responses.create(**{k: v for k, v in body.items() if k != "stream"}, stream=True))
    final = sdk[-1].response.output[0].content[0]
    assert [lp.token for lp in final.logprobs] == [lp["token"] for lp in tokens]


def test_stream_logprobs_wait_for_the_text_they_belong_to():
    def token(text: str) -> TokenLogprob:
        return TokenLogprob(0, text, list(text.encode()), -0.5, [TopLogprob(0, text, list(text.encode()), -0.5)])

    stream = rs.ResponseStream(top_logprobs=1)
    events = []
    # "Hi" then " <" held back (it may start a stop string), released with "there"; a stop token makes no text
    for delta in [ChatDelta(content="Hi", logprobs=(token("Hi"),)), ChatDelta(logprobs=(token(" <"),)),
                  ChatDelta(content=" <there", logprobs=(token("there"),)), ChatDelta(logprobs=(token("</s>"),)),
                  ChatDelta(finish_reason="stop")]:
        events += stream.feed(delta)
    events += stream.finish()
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [[lp["token"] for lp in e["logprobs"]] for e in deltas] == [["Hi"], [" <", "there"]]
    assert [lp["token"] for lp in stream.output[0]["content"][0]["logprobs"]] == ["Hi", " <", "there"]


# -- tool_choice: allowed_tools ----------------------------------------------------------------------
def test_allowed_tools_narrows_the_tools(client):
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}
    response = client.responses.create(model="tool-model", input="Weather in Paris?", tools=TOOLS, tool_choice=choice,
                                       parallel_tool_calls=False, max_output_tokens=200, temperature=0)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_time"] and json.loads(calls[0].arguments)["tz"] in ("UTC", "CET")
    assert response.tool_choice.type == "allowed_tools" and response.tool_choice.mode == "required"
    assert [t.name for t in response.tools] == ["get_weather", "get_time"]  # the full list is echoed


def test_allowed_tools_naming_an_unknown_tool_is_a_400(client):
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "nope"}]}
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tool-model", input="Hi", tools=TOOLS, tool_choice=choice, max_output_tokens=4)
    assert err.value.body["param"] == "tool_choice.tools[0].name" and "nope" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError):  # jan's only tools are functions
        client.responses.create(model="tool-model", input="Hi", tools=TOOLS, max_output_tokens=4, tool_choice={
            "type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "deepwiki"}]})


# -- refused: prompt (conversation is served: tests/test_conversations.py) -----------------------------------
@pytest.mark.parametrize("field, value", [("prompt", {"id": "pmpt_123", "variables": {"city": "Paris"}})])
def test_what_jan_cannot_honour_is_a_400(client, server, field, value):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", input="Hi", max_output_tokens=4, **{field: value})
    body = err.value.body
    assert body["param"] == field and body["code"] == "unsupported_parameter" and "not supported" in body["message"]
    status, raw = _raw(server, {"model": "stories260K", "input": "Hi", field: value})
    assert status == 400 and raw["error"]["param"] == field and raw["error"]["type"] == "invalid_request_error"
    # null means not given, as for every optional field
    assert _raw(server, {"model": "stories260K", "input": "Hi", "max_output_tokens": 2, field: None})[0] == 200


def test_unknown_include_value_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", input="Hi", max_output_tokens=2, include=["message.logprobs"])
    assert err.value.body["param"].startswith("include")


# -- accepted and echoed ----------------------------------------------------------------------------------
def test_hints_without_local_meaning_are_echoed(client):
    kwargs = dict(model="stories260K", input="Hi", max_output_tokens=4, temperature=0)
    plain = client.responses.create(**kwargs)
    response = client.responses.create(
        **kwargs, user="u-1", safety_identifier="hash-1", prompt_cache_key="thread-1", prompt_cache_retention="24h",
        service_tier="flex", max_tool_calls=3, text={"verbosity": "low"}, reasoning={"summary": "auto"},
        include=["reasoning.encrypted_content", "web_search_call.action.sources"])
    assert response.output_text == plain.output_text  # none of them changes the answer
    for echoed in (response, client.responses.retrieve(response.id)):
        assert (echoed.user, echoed.safety_identifier, echoed.prompt_cache_key) == ("u-1", "hash-1", "thread-1")
        assert echoed.prompt_cache_retention == "24h" and echoed.max_tool_calls == 3
        assert echoed.service_tier == "default"  # the tier that served it: jan has one
        assert echoed.text.verbosity == "low" and echoed.text.format.type == "text"
        assert echoed.reasoning.summary == "auto" and echoed.conversation is None and echoed.prompt is None
    assert plain.text.verbosity == "medium" and plain.top_logprobs == 0 and plain.max_tool_calls is None
    assert plain.user is None and plain.reasoning.summary is None


def test_stream_options_are_accepted(client):
    events = list(client.responses.create(model="stories260K", input="Hi", max_output_tokens=3, temperature=0,
                                          stream=True, stream_options={"include_obfuscation": False}))
    assert events[-1].type == "response.incomplete" and events[-1].response.output_text
    assert not any("obfuscation" in e.model_dump(exclude_none=True) for e in events)


# -- reasoning.encrypted_content ------------------------------------------------------------------------
def test_encrypted_reasoning_goes_back_as_the_reasoning_text():
    value = rs.encrypted_reasoning("Let me think… 2+2=4")
    body = rs.ResponsesRequest.model_validate({"input": [
        {"role": "user", "content": "2+2?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": value},
        {"role": "assistant", "content": "4"}]})
    [_, answer] = rs.input_messages(body.input)
    assert answer.role == "assistant" and answer.reasoning == "Let me think… 2+2=4"
    # another server's encrypted reasoning cannot be read: the turn goes on without it
    other = rs.ResponsesRequest.model_validate({"input": [
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABo-openai-blob"},
        {"role": "assistant", "content": "4"}]})
    assert rs.input_messages(other.input)[0].reasoning is None
    damaged = rs.ResponsesRequest.model_validate({"input": [
        {"type": "reasoning", "summary": [], "encrypted_content": "jan-reasoning-v1:@@@"},
        {"role": "assistant", "content": "4"}]})
    with pytest.raises(ValueError, match="encrypted_content"):
        rs.input_messages(damaged.input)


@pytest.mark.skipif(not has_reasoning_parser(), reason="reasoning parsing (jan.templates.formats) is not in this build")
def test_encrypted_reasoning_on_a_reasoning_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("encrypted")
    srv = start_server(tmp, [reasoning_model(tmp)], n_ctx=1024, n_parallel=1)
    try:
        client = openai_client(srv)
        kwargs = dict(model="qwq-tiny", input="Hi", max_output_tokens=16, temperature=0, store=False,
                      reasoning={"effort": "low"}, include=["reasoning.encrypted_content"])
        response = client.responses.create(**kwargs)
        reasoning = response.output[0]
        assert reasoning.type == "reasoning"
        assert rs.reasoning_of_encrypted(reasoning.encrypted_content) == reasoning.content[0].text
        events = list(client.responses.create(**kwargs, stream=True))
        assert "response.reasoning_text.done" in collapse([e.type for e in events])
        done = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "reasoning"]
        assert done[0].encrypted_content == reasoning.encrypted_content
        # sent back without its text (as Codex does), the item is accepted
        again = client.responses.create(model="qwq-tiny", max_output_tokens=4, temperature=0, store=False, input=[
            {"role": "user", "content": "Hi"},
            {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": reasoning.encrypted_content},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}])
        assert again.status in ("completed", "incomplete")
        # without include, no encrypted_content
        plain = client.responses.create(**{**kwargs, "include": None})
        assert plain.output[0].encrypted_content is None
    finally:
        srv.stop()


# -- include on GET --------------------------------------------------------------------------------------
def test_include_on_retrieve_and_input_items_is_checked_as_on_create(client):
    # a create refuses an unknown include value (a 400 naming include); the GETs that take include[] in their
    # query refused nothing and ignored it, so a typo there went unnoticed
    response = client.responses.create(model="stories260K", input="Hi", max_output_tokens=2, temperature=0)
    known = ["message.output_text.logprobs", "reasoning.encrypted_content"]
    assert client.responses.retrieve(response.id, include=known).id == response.id
    assert client.responses.input_items.list(response.id, include=known).data
    for get in (lambda bad: client.responses.retrieve(response.id, include=bad),
                lambda bad: client.responses.input_items.list(response.id, include=bad)):
        with pytest.raises(openai.BadRequestError) as err:
            get(["message.output_text.logprobs", "message.output_text.logprob"])
        assert err.value.body["param"] == "include" and "include[1]" in err.value.body["message"]
