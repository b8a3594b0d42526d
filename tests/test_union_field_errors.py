"""A body field that takes several kinds of value (a union: embeddings' ``input`` is a string, an array of strings,
an array of token ids or an array of arrays of them) refused for a value of a kind none of them takes says what the
field accepts and what the value at fault is, in every dialect, through the one validation error mapping
(:func:`jan.server.errors.from_validation_error`).

Before, the 400 was pydantic's refusal by the union's first member: ``input: [1.5]`` was "input[0]: Input should be a
valid string", ``stop: [1]`` "stop[0]: Input should be a valid string", as if a string were all the field takes.
An alternative's own object field of the wrong type is still told as that alternative says it (its tag chose it:
tests/test_union_tag_errors.py).
"""

from __future__ import annotations

import pydantic
import pytest
from cut_off_helpers import post
from server_helpers import start_server

from jan.server.errors import from_validation_error, in_path_style

USER = [{"role": "user", "content": "hi"}]

#: name -> (route, body, the union field, words of what it accepts, what the message says of the value)
CASES: dict[str, tuple[str, dict, str, tuple[str, ...], str]] = {
    "embeddings input item": ("/v1/embeddings", {"input": [1.5]}, "input",
                              ("a string", "an array of integers", "an array of arrays of integers"),
                              "; input[0] is a number"),
    "embeddings input": ("/v1/embeddings", {"input": True}, "input", ("a string", "an array of integers"),
                         ", not a boolean"),
    "embeddings token ids": ("/v1/embeddings", {"input": [[1, "a"]]}, "input", ("an array of arrays of integers",),
                             "; input[0][1] is a string"),
    "completions prompt": ("/v1/completions", {"prompt": {"a": 1}}, "prompt",
                           ("a string", "an array of strings", "an array of integers"), ", not an object"),
    "completions prompt item": ("/v1/completions", {"prompt": [1.5]}, "prompt", ("an array of integers",),
                                "; prompt[0] is a number"),
    "chat stop": ("/v1/chat/completions", {"messages": USER, "stop": [1]}, "stop",
                  ("a string", "an array of strings"), "; stop[0] is a number"),
    "chat content": ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
                     ("a string", "an array of objects"), ", not a number"),
    "responses input": ("/v1/responses", {"input": 5}, "input", ("a string", "an array of objects"),
                        ", not a number"),
    "responses input item": ("/v1/responses", {"input": [5]}, "input", ("a string", "an array of objects"),
                             "; input[0] is a number"),
    "anthropic content": ("/v1/messages", {"max_tokens": 2, "messages": [{"role": "user", "content": 5}]},
                          "messages[0].content", ("a string", "an array of objects"), ", not a number"),
    "anthropic system": ("/v1/messages", {"max_tokens": 2, "messages": USER, "system": 5}, "system",
                         ("a string", "an array of objects"), ", not a number"),
    "anthropic count_tokens system": ("/v1/messages/count_tokens", {"messages": USER, "system": 5}, "system",
                                      ("a string", "an array of objects"), ", not a number"),
    "ollama embed input": ("/api/embed", {"input": [1.5]}, "input", ("a string", "an array of strings"),
                           "; input[0] is a number"),
    "llama-server tokenize content": ("/tokenize", {"content": 5}, "content", ("a string", "an array of"),
                                      ", not a number"),
    "llama-server completion prompt": ("/completion", {"prompt": [1.5]}, "prompt", ("a string", "an array of"),
                                       "; prompt[0] is a number"),
    "chat tool_choice": ("/v1/chat/completions", {"messages": USER, "tool_choice": 5}, "tool_choice",
                         ("'none', 'auto', 'required' or an object",), ", not a number"),
    "chat tool_choice string": ("/v1/chat/completions", {"messages": USER, "tool_choice": "force"}, "tool_choice",
                                ("'none', 'auto', 'required' or an object",), ', not "force"'),
    "responses tool_choice": ("/v1/responses", {"input": "hi", "tool_choice": 5}, "tool_choice",
                              ("'auto', 'none', 'required' or an object",), ", not a number"),
    "rerank documents": ("/v1/rerank", {"query": "q", "documents": [5]}, "documents[0]", ("a string", "an object"),
                         ", not a number"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("unions"), [stories_path])
    yield srv
    srv.stop()


def _dialect(route: str) -> str:
    if route.startswith("/v1/messages"):
        return "anthropic"
    return "ollama" if route.startswith("/api/") else "llama" if not route.startswith("/v1/") else "openai"


@pytest.mark.parametrize("case", list(CASES))
def test_a_union_field_says_what_it_accepts(server, case):
    route, body, field, accepts, of_value = CASES[case]
    status, data = post(server, route, {"model": "stories260K", **body})
    assert status == 400, data
    dialect = _dialect(route)
    error = data["error"]
    message = error if isinstance(error, str) else error["message"]
    said = in_path_style(field, "dotted") if dialect == "anthropic" else field
    value_said = in_path_style(of_value, "dotted") if dialect == "anthropic" else of_value
    assert message.startswith(f"{said}: Input should be "), message
    assert all(words in message for words in accepts), message
    assert message.endswith(value_said), message
    assert "valid string" not in message and "valid integer" not in message and "instance of" not in message, message
    if dialect == "openai" and not route.startswith("/v1/rerank"):
        # (the param is the value at fault: the union field itself, or the item the message names)
        at = of_value.removeprefix("; ").split(" is ")[0] if of_value.startswith("; ") else field
        assert error["param"] == at and error["code"] == "invalid_value", data


def test_an_alternatives_own_field_is_told_as_it_says_it():
    """The union of tool_choice objects: ``function`` of the wrong type is the function choice's own error."""
    from jan.server.schemas import ChatCompletionRequest

    body = {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": "f"}}
    with pytest.raises(pydantic.ValidationError) as caught:
        ChatCompletionRequest.model_validate(body)
    error = from_validation_error(caught.value, body, ChatCompletionRequest)
    assert error.param == "tool_choice.function", error.message
    # (in JSON's words: "a valid dictionary or instance of NamedFunction" named a class of jan's)
    assert error.message == "tool_choice.function: Input should be an object, not a string", error.message


@pytest.mark.parametrize("route, body, field", [
    ("/v1/chat/completions", {"messages": USER, "tools": [5]}, "tools[0]"),
    ("/v1/responses", {"input": "x", "tools": [5]}, "tools[0]"),
    ("/v1/messages", {"max_tokens": 2, "messages": USER, "tools": [5]}, "tools[0]"),
    ("/v1/chat/completions", {"messages": [5]}, "messages[0]"),
    ("/completion", {"prompt": "x", "logit_bias": 5}, "logit_bias"),
])
def test_an_object_field_sent_something_else_is_told_in_json_words(server, route, body, field):
    status, data = post(server, route, {"model": "stories260K", **body})
    assert status == 400, data
    message = data["error"]["message"]
    said = in_path_style(field, "dotted") if _dialect(route) == "anthropic" else field
    assert message.startswith(f"{said}: Input should be an object, not a"), message
    assert "instance of" not in message and "dictionary" not in message, message
