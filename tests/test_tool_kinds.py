"""A tool kind jan does not run, in every OpenAI dialect: a 400 that names the field and says why.

Agents send more than functions: Codex CLI its freeform ``custom`` apply_patch tool (a grammar, raw text in and
out), ``web_search`` (accepted and not offered to the model: tests/test_agent_payloads.py) and ``local_shell`` when
enabled. jan's tools are functions called with JSON arguments (and, in the Responses API, custom tools:
tests/test_responses_custom_tools.py), so the others are refused — but saying
so (``tools[1].type: 'web_search' tools are not run by jan; ...``), as the Anthropic dialect says of Anthropic's own
tools, not pydantic's bare "Input should be 'function'", which reads as a malformed request. The same for the kinds
``tool_choice`` and ``allowed_tools`` may name.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from dialect_helpers import WEATHER_SCHEMA, anthropic_client, openai_client, tool_model
from server_helpers import start_server

FUNCTION = {"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_SCHEMA}
CHAT_FUNCTION = {"type": "function", "function": {k: v for k, v in FUNCTION.items() if k != "type"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
# what Codex CLI sends besides functions (its apply_patch as a lark grammar; the two built-in tools)
OTHER_KINDS = {
    "custom": {"type": "custom", "name": "apply_patch", "description": "Patch files",
               "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /.+/'}},
    "local_shell": {"type": "local_shell"},
    "file_search": {"type": "file_search", "vector_store_ids": ["vs_1"]},
}
#: the kinds the Responses API refuses (its custom tools are run: the model calls them with text; a web search is
#: accepted and not offered, tests/test_agent_payloads.py)
RESPONSES_OTHER_KINDS = [kind for kind in OTHER_KINDS if kind != "custom"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tool-kinds")
    srv = start_server(tmp, [tool_model(tmp)])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _refused(call) -> dict:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    return info.value.body


def _says_why(error: dict, param: str, kind: str) -> None:
    assert error["param"] == param, error
    assert error["message"].startswith(f"{param}: '{kind}' tools are not run by jan"), error
    assert "type 'function'" in error["message"], error  # what it does take


@pytest.mark.parametrize("kind", RESPONSES_OTHER_KINDS)
def test_responses_tools_of_another_kind(client, kind):
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[FUNCTION, OTHER_KINDS[kind]]))
    _says_why(error, "tools[1].type", kind)


@pytest.mark.parametrize("kind", RESPONSES_OTHER_KINDS)
def test_responses_tool_choice_of_another_kind(client, kind):
    choice = {"type": kind}
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[FUNCTION], tool_choice=choice))
    _says_why(error, "tool_choice.type", kind)
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}, choice]}
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[FUNCTION], tool_choice=allowed))
    _says_why(error, "tool_choice.tools[1].type", kind)
    assert "type 'custom'" in error["message"]  # the Responses API's other kind


def test_responses_tool_choice_of_the_wrong_kind(client):
    # a custom choice naming a function (or an allowed tool of the wrong kind) names no tool of the request
    custom = {"type": "custom", "name": "get_weather"}
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[FUNCTION], tool_choice=custom))
    assert error["param"] == "tool_choice" and "custom tool 'get_weather'" in error["message"], error
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [custom]}
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[FUNCTION], tool_choice=allowed))
    assert error["param"] == "tool_choice.tools[0].type", error


def test_chat_tools_and_tool_choice_of_another_kind(client):
    custom = {"type": "custom", "custom": {"name": "apply_patch", "description": "Patch files"}}
    error = _refused(lambda: client.chat.completions.create(model="tool-model", messages=ASK, max_tokens=5,
                                                            tools=[CHAT_FUNCTION, custom]))
    _says_why(error, "tools[1].type", "custom")
    named = {"type": "custom", "custom": {"name": "apply_patch"}}
    error = _refused(lambda: client.chat.completions.create(model="tool-model", messages=ASK, max_tokens=5,
                                                            tools=[CHAT_FUNCTION], tool_choice=named))
    _says_why(error, "tool_choice.type", "custom")
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [named]}}
    error = _refused(lambda: client.chat.completions.create(model="tool-model", messages=ASK, max_tokens=5,
                                                            tools=[CHAT_FUNCTION], tool_choice=allowed))
    _says_why(error, "tool_choice.allowed_tools.tools[0].type", "custom")


def test_a_kind_that_is_no_string_is_still_a_plain_type_error(client):
    error = _refused(lambda: client.responses.create(model="tool-model", input="hi", max_output_tokens=5,
                                                     tools=[{**FUNCTION, "type": 5}]))
    assert error["param"] == "tools[0].type" and "tools are not run" not in error["message"], error


def test_functions_still_work_in_both_dialects(client, server):
    # the refusal is of the other kinds only: a function tool is called as before, and Anthropic's words for
    # its own tools are unchanged
    # greedy, with room for the whole call: a sampled random-weight model's forced call could be cut by the limit
    # before its arguments began (then no function_call item), as test_tool_pairs gives it 200 tokens
    response = client.responses.create(model="tool-model", input="Weather in Paris?", max_output_tokens=200,
                                       temperature=0, parallel_tool_calls=False, tools=[FUNCTION],
                                       tool_choice={"type": "function", "name": "get_weather"})
    assert [item.type for item in response.output] == ["function_call"]
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client(server).messages.create(model="tool-model", max_tokens=5, messages=ASK,
                                                 tools=[{"type": "bash_20250124", "name": "bash"}])
    assert "one of Anthropic's own tools" in info.value.body["error"]["message"]
