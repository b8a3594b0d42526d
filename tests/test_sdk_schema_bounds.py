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
