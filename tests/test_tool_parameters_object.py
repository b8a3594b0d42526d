"""A tool's ``parameters`` must describe an object: a call's arguments are a JSON object in every dialect (OpenAI and
Anthropic refuse other schemas) and every tool-call parser reads an object back. A schema of another type
(``{"type": "array"}``, ``"string"``, an ``enum`` of numbers) made the forced call's grammar write ``[2]`` or ``1``
as the arguments; the parser took no call from it, so the client got the raw ``<tool_call>{"name": "f",
"arguments": [2]`` markup as content next to a call with empty arguments -- a 200, silently wrong. Now every
grammar builder and route refuses it with a 400 naming the field, and a ``type`` list that allows an object
(``["object", "null"]``) is held to the object."""

from __future__ import annotations

import httpx
import openai
import pytest
from dialect_helpers import openai_client, tool_model

from jan.templates import tool_call_grammar
from jan.templates.formats.grammars import call_grammar, parameters_problem
from jan.templates.grammar import GrammarError
from server_helpers import start_server

pytestmark = pytest.mark.timeout(600)

NO_OBJECT = [{"type": "array", "items": {"type": "integer"}}, {"type": "string"}, {"type": ["array", "null"]},
             {"enum": [1, 2]}, {"const": None}]
AN_OBJECT = [None, {}, {"type": "object"}, {"type": ["object", "null"]}, {"properties": {"a": {"type": "string"}}},
             {"anyOf": [{"type": "object"}]}, {"enum": [{"a": 1}]}]


def _tools(parameters) -> list[dict]:
    fn = {"name": "f"} if parameters is None else {"name": "f", "parameters": parameters}
    return [{"type": "function", "function": fn}]


@pytest.mark.parametrize("parameters", NO_OBJECT, ids=str)
def test_every_call_grammar_refuses_parameters_that_allow_no_object(parameters):
    assert "must be the JSON schema of an object" in parameters_problem(parameters)
    for fmt in ("hermes", "llama3", "mistral-json", "qwen3-coder", "glm", "harmony"):
        with pytest.raises(GrammarError, match="must be the JSON schema of an object") as caught:
            call_grammar(fmt, _tools(parameters), "required")
        assert caught.value.param == "tools[0].function.parameters" and caught.value.code == "invalid_schema"
    with pytest.raises(GrammarError, match="must be the JSON schema of an object"):
        tool_call_grammar(_tools(parameters), "required")


@pytest.mark.parametrize("parameters", AN_OBJECT, ids=str)
def test_parameters_that_allow_an_object_still_make_a_grammar(parameters):
    assert parameters_problem(parameters) is None
    assert call_grammar("hermes", _tools(parameters), "required")


def test_a_type_list_with_object_is_held_to_the_object(llama):
    grammar = call_grammar("hermes", _tools({"type": ["object", "null"]}), "required", parallel=False)
    assert llama.accepts(grammar, '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>')
    assert not llama.accepts(grammar, '<tool_call>\n{"name": "f", "arguments": null}\n</tool_call>')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tool-params-object")
    srv = start_server(tmp, [tool_model(tmp)])
    yield srv
    srv.__exit__(None, None, None)


def test_every_dialect_refuses_a_tool_whose_parameters_allow_no_object(server):
    array = {"type": "array", "items": {"type": "integer"}}
    client = openai_client(server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tool-model", messages=[{"role": "user", "content": "x"}],
                                       tools=_tools(array), tool_choice="required", max_tokens=30)
    assert caught.value.body["param"] == "tools[0].function.parameters"
    assert caught.value.body["code"] == "invalid_schema"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tool-model", input="x", max_output_tokens=30,
                                tools=[{"type": "function", "name": "f", "parameters": array, "strict": False}])
    assert caught.value.body["param"] == "tools[0].parameters"
    answer = httpx.post(server.base_url + "/api/chat", timeout=120, json={
        "model": "tool-model", "stream": False, "messages": [{"role": "user", "content": "x"}],
        "tools": _tools(array)})
    assert answer.status_code == 400 and "must be the JSON schema of an object" in answer.json()["error"]
    answer = httpx.post(server.base_url + "/v1/messages", timeout=120, json={
        "model": "tool-model", "max_tokens": 30, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": array}]})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"


def test_an_object_or_null_schema_calls_with_an_object(server):
    reply = openai_client(server).chat.completions.create(
        model="tool-model", messages=[{"role": "user", "content": "x"}], tool_choice="required", max_tokens=40,
        tools=_tools({"type": ["object", "null"], "properties": {}, "additionalProperties": False}),
        parallel_tool_calls=False)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.arguments.replace(" ", "").replace("\n", "") == "{}"
    assert "<tool_call>" not in (reply.choices[0].message.content or "")
