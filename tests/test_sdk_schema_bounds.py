"""A pydantic model with bounded floats and a date, as agents declare structured outputs and tool arguments, comes
back valid through every SDK's own parsing: ``openai``'s ``chat.completions.parse`` (response_format and a
``pydantic_function_tool``), ``responses.parse``, ``anthropic``'s forced tool and ``ollama``'s ``format``.

The grammar used to ignore a number's ``minimum``/``maximum`` and to allow days no month has, so a tiny random model
(which writes whatever the grammar lets it) answered ``confidence: 80.5`` and the SDK's validation failed. Sampled
at temperature 1 over several seeds: each answer is a different walk through the grammar."""

from __future__ import annotations

import datetime
import json

import pytest
from pydantic import BaseModel, Field

from dialect_helpers import anthropic_client, openai_client, tool_model
from server_helpers import start_server

MODEL = "tool-model"
SEEDS = range(4)


class Reading(BaseModel):
    confidence: float = Field(ge=0, le=1)
    drift: float = Field(gt=-1, lt=0)
    day: datetime.date


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema-bounds")
    srv = start_server(tmp, [tool_model(tmp)])
    yield srv
    srv.stop()


SAMPLING = {"temperature": 1.0, "max_tokens": 400}


def test_openai_chat_parse(server):
    import openai

    client = openai_client(server, timeout=300)
    for seed in SEEDS:
        reply = client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "reading?"}],
                                              response_format=Reading, seed=seed, **SAMPLING)
        assert reply.choices[0].finish_reason == "stop"
        assert isinstance(reply.choices[0].message.parsed, Reading)
        tool = openai.pydantic_function_tool(Reading, name="record")
        reply = client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "reading?"}],
                                              tools=[tool], tool_choice="required", parallel_tool_calls=False,
                                              seed=seed, **SAMPLING)
        assert reply.choices[0].finish_reason == "tool_calls"
        assert isinstance(reply.choices[0].message.tool_calls[0].function.parsed_arguments, Reading)


def test_openai_responses_parse(server):
    client = openai_client(server, timeout=300)
    for seed in SEEDS:
        # (Responses takes no seed: each prompt differs instead)
        reply = client.responses.parse(model=MODEL, input=f"reading {seed}?", text_format=Reading, temperature=1.0,
                                       max_output_tokens=400)
        assert reply.status == "completed"
        assert isinstance(reply.output_parsed, Reading)


def test_anthropic_forced_tool(server):
    client = anthropic_client(server, timeout=300)
    tool = {"name": "record", "description": "a reading", "input_schema": Reading.model_json_schema()}
    for seed in SEEDS:
        reply = client.messages.create(model=MODEL, max_tokens=400,
                                       messages=[{"role": "user", "content": f"reading {seed}?"}],
                                       tools=[tool], tool_choice={"type": "tool", "name": "record",
                                                                  "disable_parallel_tool_use": True},
                                       extra_body={"temperature": 1.0})
        assert reply.stop_reason == "tool_use"
        Reading.model_validate(next(b for b in reply.content if b.type == "tool_use").input)


def test_ollama_format(server):
    import ollama

    client = ollama.Client(host=server.base_url, timeout=300)
    for seed in SEEDS:
        reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "reading?"}],
                            format=Reading.model_json_schema(),
                            options={"temperature": 1.0, "seed": seed, "num_predict": 400})
        assert reply.done_reason == "stop"
        Reading.model_validate(json.loads(reply.message.content))


# -- a schema with no finite value ---------------------------------------------------------------------------------
# Every value of a Node holds another Node: a model held to it wrote until its token limit and the call or answer
# never finished (a cut call, finish_reason length). Refused before anything is generated, as each SDK's 400 naming
# the place in the schema: the whole schema, or the sub-schema a property points at.
ENDLESS = {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}
NODE = {"type": "object", "properties": {"head": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}, "required": ["next"]}}}
ASK = [{"role": "user", "content": "reading?"}]


def _chat_tools(client):
    client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, tool_choice="required",
                                   tools=[{"type": "function", "function": {"name": "walk", "parameters": NODE}}])


def _chat_format(client):
    client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, response_format={
        "type": "json_schema", "json_schema": {"name": "walk", "schema": ENDLESS}})


def _responses_tools(client):
    client.responses.create(model=MODEL, input="reading?", max_output_tokens=16, tool_choice="required",
                            tools=[{"type": "function", "name": "walk", "parameters": NODE, "strict": False}])


def _responses_format(client):
    client.responses.create(model=MODEL, input="reading?", max_output_tokens=16,
                            text={"format": {"type": "json_schema", "name": "walk", "schema": ENDLESS}})


def _anthropic_tools(client):
    client.messages.create(model=MODEL, max_tokens=8, messages=ASK, tools=[{"name": "walk", "input_schema": NODE}],
                           tool_choice={"type": "tool", "name": "walk"})


def _anthropic_count(client):
    client.messages.count_tokens(model=MODEL, messages=ASK, tools=[{"name": "walk", "input_schema": NODE}])


def _responses_count(client):
    client.responses.input_tokens.count(model=MODEL, input="reading?",
                                        tools=[{"type": "function", "name": "walk", "parameters": NODE,
                                                "strict": False}])


def _ollama_format(client):
    client.chat(model=MODEL, messages=ASK, format=ENDLESS, options={"num_predict": 8})


ENDLESS_CALLS = {"chat tools": (_chat_tools, "openai", "tools[0].function.parameters.$defs.Node"),
                 "chat response_format": (_chat_format, "openai", "response_format.json_schema.schema"),
                 "responses tools": (_responses_tools, "openai", "tools[0].parameters.$defs.Node"),
                 "responses text.format": (_responses_format, "openai", "text.format.schema"),
                 "anthropic tools": (_anthropic_tools, "anthropic", "tools.0.input_schema.$defs.Node"),
                 # (counting builds no grammar, yet refuses what generating refuses)
                 "anthropic count_tokens": (_anthropic_count, "anthropic", "tools.0.input_schema.$defs.Node"),
                 "responses input_tokens": (_responses_count, "openai", "tools[0].parameters.$defs.Node"),
                 "ollama format": (_ollama_format, "ollama", "format")}


@pytest.mark.parametrize("call", list(ENDLESS_CALLS))
def test_a_schema_with_no_finite_value_is_the_sdks_400_naming_its_place(server, call):
    import anthropic
    import ollama
    import openai

    send, sdk, place = ENDLESS_CALLS[call]
    client = {"openai": lambda: openai_client(server, timeout=300),
              "anthropic": lambda: anthropic_client(server, timeout=300),
              "ollama": lambda: ollama.Client(host=server.base_url, timeout=300)}[sdk]()
    refusal = {"openai": openai.BadRequestError, "anthropic": anthropic.BadRequestError,
               "ollama": ollama.ResponseError}[sdk]
    with pytest.raises(refusal) as caught:
        send(client)
    assert caught.value.status_code == 400
    message = caught.value.error if sdk == "ollama" else caught.value.message
    assert f"{place}: the schema has no finite value" in message, message
