"""Each dialect names a bad field in the path form of the API its clients were written for: OpenAI's (Chat
Completions, Responses) ``messages[2].content[1].text``, Anthropic's ``messages.2.content.1.text`` (what its API
answers: ``messages.0.content.1.text.text: Input should be a valid string``), whoever raised the error: a body's
validation or the service behind the dialect. Ollama's and llama-server's own servers name no nested field: jan's
(OpenAI's) form is kept there."""

from __future__ import annotations

import pytest
from cut_off_helpers import post
from server_helpers import start_server

from jan.server.errors import in_path_style, path_text


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("paths"), [stories_path])
    yield srv
    srv.stop()


def _message(data) -> str:
    error = data["error"]
    return error if isinstance(error, str) else error["message"]


# the same fault in every dialect: the second content block of the third message has no text
_BLOCKS = [{"type": "text", "text": "a"}, {"type": "text"}]
_TURNS = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": _BLOCKS}]


@pytest.mark.parametrize("path, body, said", [
    ("/v1/chat/completions", {"messages": _TURNS}, "messages[2].content[1].text: Field required"),
    ("/v1/responses", {"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_text"}]}]}, "input[1].content[1].text: Field required"),
    ("/v1/messages", {"max_tokens": 2, "messages": _TURNS}, "messages.2.content.1.text: Field required"),
    ("/v1/messages/count_tokens", {"messages": _TURNS}, "messages.2.content.1.text: Field required"),
    ("/api/chat", {"stream": False, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
                   "tool_calls": [{"function": {"name": "f", "arguments": {}}}, {"function": {}}]}]},
     "messages[1].tool_calls[1].function.name: Field required"),
    ("/completion", {"prompt": "hi", "n_predict": 2, "logit_bias": [[1, 2], [3]]}, "logit_bias[1]: "),
])
def test_a_bad_field_deep_in_a_list_is_named_in_the_dialects_path_form(server, path, body, said):
    status, data = post(server, path, {"model": "stories260K", **body})
    assert status == 400, data
    assert _message(data).startswith(said), data
    if path in ("/v1/chat/completions", "/v1/responses"):  # (OpenAI's param: the same path, its own form)
        assert data["error"]["param"] == said.split(":")[0], data


_TOOL = {"name": "t", "input_schema": {"type": "object"}}


_TWICE = {"tools": [_TOOL, _TOOL]}


@pytest.mark.parametrize("path, extra, body, said", [
    # the chat service's RequestError (check_unique_tool_names), not pydantic's
    ("/v1/messages", {"max_tokens": 2}, _TWICE, "tools.1: the tool name 't' is given twice"),
    ("/v1/messages/count_tokens", {}, _TWICE, "tools.1: the tool name 't' is given twice"),
    # a tool's schema the service cannot compile, renamed by the dialect to its field
    ("/v1/messages", {"max_tokens": 2},
     {"tools": [{"name": "t", "input_schema": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}}]},
     "tools.0.input_schema.properties.a.$ref: $ref '#/x' does not resolve"),
])
def test_an_anthropic_error_the_service_raises_is_dotted_too(server, path, extra, body, said):
    status, data = post(server, path, {"model": "stories260K", **extra, "messages": [{"role": "user", "content": "hi"}],
                                       **body})
    assert status == 400 and data["type"] == "error", data
    assert data["error"]["message"].startswith(said), data
    # ... where OpenAI's route says the same in its own form
    tools = [{"type": "function", "function": {"name": "t"}}] * 2
    status, data = post(server, "/v1/chat/completions", {"model": "stories260K", "tools": tools,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and data["error"]["message"].startswith("tools[1]: the tool name 't' is given twice"), data
    assert data["error"]["param"] == "tools[1]", data


def test_an_anthropic_batch_names_its_request_dotted(server):
    status, data = post(server, "/v1/messages/batches", {"requests": [
        {"custom_id": "a", "params": {"model": "stories260K", "max_tokens": 2, "messages": []}},
        {"custom_id": "b c", "params": {"model": "stories260K", "max_tokens": 2, "messages": []}}]})
    assert status == 400 and data["error"]["message"].startswith("requests.1.custom_id: "), data


def test_the_path_forms():
    path = ("messages", 2, "content", 1, "text")
    assert path_text(path) == "messages[2].content[1].text"
    assert path_text(path, "dotted") == "messages.2.content.1.text"
    assert path_text(()) == "" and path_text(("model",), "dotted") == "model"
    said = ("messages[2]: the tool result for 'a[0]' answers no call (see messages[1].content[0]); logit_bias[5] "
            "of my-model[1] at /v1/x[0]")
    assert in_path_style(said, "brackets") == said
    # every path jan wrote, and no quoted value, name or URL
    assert in_path_style(said, "dotted") == ("messages.2: the tool result for 'a[0]' answers no call (see "
                                             "messages.1.content.0); logit_bias.5 of my-model[1] at /v1/x[0]")


def test_a_quoted_value_is_the_clients_and_keeps_its_brackets():
    # a value jan quotes is the client's text, whatever words it holds: only jan's own paths are rewritten
    said = ("model 'my model[0]' not found; tool \"it's x[1]\" at messages[2] (`a b[3]`); can't read items[4]")
    assert in_path_style(said, "dotted") == ("model 'my model[0]' not found; tool \"it's x[1]\" at messages.2 "
                                             "(`a b[3]`); can't read items.4")


def test_an_anthropic_404_names_the_model_as_sent(server):
    status, data = post(server, "/v1/messages", {"model": "my model[0]", "max_tokens": 2,
                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404 and data["type"] == "error", data
    assert "'my model[0]'" in data["error"]["message"], data
