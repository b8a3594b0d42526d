"""A conversation the model's chat template refuses itself (its own ``raise_exception``: Gemma 2's "Conversation roles
must alternate user/assistant/...") is refused before anything loads the model, in every dialect,
with the dialect's own 400 and the template's own words, as the render after a load says it: loading
gigabytes (and perhaps evicting another model) to refuse a conversation is the fault these tests catch. A loaded
model refuses it in the same words, and a conversation the template takes still loads and answers.

stories260K is given Gemma 2's published template through its model.json (``settings.chat_template``), as a user
sets one, with one rule more: it refuses an empty message. (Gemma 2's own refusal of a conversation that opens with
the assistant's turn jan meets with an empty user turn first, test_anthropic_turns; this one refuses that turn too,
so jan cannot, and says what the template wants.)"""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import running
from conftest import require_model
from extension_helpers import call as request, kept_unloaded, loaded_model_ids

WAIT_S = 300
STORIES = "stories260K"
ALTERNATE = "Conversation roles must alternate"
#: the rule added to Gemma 2's template (an empty user turn before an opening assistant turn is refused too)
NO_EMPTY = ("{% for message in messages %}{% if not message['content'] %}"
            "{{ raise_exception('Empty messages are not supported') }}{% endif %}{% endfor %}")
#: what jan adds to the template's words: which turn broke its rule, in terms every dialect's client can find
USER_FIRST = "this model's chat template requires a user message first"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    template = require_model("..", "templates", "google-gemma-2-2b-it.jinja").read_text(encoding="utf-8")
    template = NO_EMPTY + template
    with running(tmp_path_factory.mktemp("template-before-load") / "data", stories_path) as srv:
        status, answer = request(srv, "PATCH", f"/v1/models/{STORIES}", {"settings": {"chat_template": template}},
                                 timeout=WAIT_S)
        assert status == 200, answer
        yield srv


def call(server, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return request(server, method, path, body, timeout=WAIT_S)


@pytest.fixture
def unloaded(server):
    with kept_unloaded(server, STORIES, timeout=WAIT_S):
        yield


ASSISTANT_FIRST = [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]
RESPONSES_ASSISTANT_FIRST = [{"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
                             {"role": "user", "content": "hi"}]

#: name -> (path, body without its model). Each refusal carries the template's words (ALTERNATE).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai chat": ("/v1/chat/completions", {"messages": ASSISTANT_FIRST, "max_tokens": 2}),
    "openai chat stream": ("/v1/chat/completions", {"messages": ASSISTANT_FIRST, "max_tokens": 2, "stream": True}),
    "openai chat tools": ("/v1/chat/completions", {"messages": ASSISTANT_FIRST, "max_tokens": 2, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]}),
    "apply-template": ("/apply-template", {"messages": ASSISTANT_FIRST}),
    "anthropic": ("/v1/messages", {"messages": ASSISTANT_FIRST, "max_tokens": 2}),
    "anthropic stream": ("/v1/messages", {"messages": ASSISTANT_FIRST, "max_tokens": 2, "stream": True}),
    "anthropic count_tokens": ("/v1/messages/count_tokens", {"messages": ASSISTANT_FIRST}),
    "responses": ("/v1/responses", {"input": RESPONSES_ASSISTANT_FIRST, "max_output_tokens": 16}),
    "responses stream": ("/v1/responses", {"input": RESPONSES_ASSISTANT_FIRST, "max_output_tokens": 16,
                                           "stream": True}),
    "responses input_tokens": ("/v1/responses/input_tokens", {"input": RESPONSES_ASSISTANT_FIRST}),
    "ollama chat": ("/api/chat", {"messages": ASSISTANT_FIRST, "stream": False}),
    "ollama chat stream": ("/api/chat", {"messages": ASSISTANT_FIRST}),
}


def _message(path: str, answer: Any) -> str:
    """The refusal's text in its dialect's shape."""
    if path.startswith("/api/"):
        assert set(answer) == {"error"}, answer  # Ollama's {"error": "..."}
        return answer["error"]
    if path.startswith("/v1/messages"):
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error", answer
        return answer["error"]["message"]
    return answer["error"]["message"]


@pytest.mark.parametrize("name", list(CASES))
def test_a_conversation_the_template_refuses_is_refused_before_the_model_loads(server, unloaded, name):
    path, body = CASES[name]
    status, answer = call(server, "POST", path, {"model": STORIES, **body})
    assert status == 400, answer
    assert ALTERNATE in _message(path, answer) and USER_FIRST in _message(path, answer), answer


def test_a_loaded_model_refuses_it_in_the_same_words_and_takes_what_the_template_takes(server):
    status, answer = call(server, "POST", "/v1/chat/completions", {
        "model": STORIES, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert status == 200, answer
    assert STORIES in loaded_model_ids(server)
    for name in ("openai chat", "anthropic", "responses", "ollama chat"):
        path, body = CASES[name]
        status, answer = call(server, "POST", path, {"model": STORIES, **body})
        assert status == 400 and ALTERNATE in _message(path, answer), (name, answer)
        assert USER_FIRST in _message(path, answer), (name, answer)
