"""A chat template that breaks in its own code (a type error, an undefined method) is said to be the model's.

Such a failure came back as a 400 with ``param: null`` and "chat template failed: TypeError ...", as if the request
were at fault. It now names the model (``param: "model"``, code ``chat_template_error``), which model's template
broke and how to give it a working one (``settings.chat_template``), as a model's damaged weights are named; a
conversation the template refuses with its own ``raise_exception`` is still the request's plain 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from api_helpers import running
from extension_helpers import call as request, kept_unloaded
from jan.templates import ChatTemplate, ChatTemplateRenderError, TemplateError

WAIT_S = 300
STORIES = "stories260K"
#: a template whose own code fails on every conversation (a string plus a number)
BROKEN = "{% for m in messages %}{{ m['content'] + 1 }}{% endfor %}"
HI = [{"role": "user", "content": "hi"}]

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai chat": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2}),
    "openai chat stream": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2, "stream": True}),
    "anthropic": ("/v1/messages", {"messages": HI, "max_tokens": 2}),
    "ollama chat": ("/api/chat", {"messages": HI, "stream": False}),
}


def test_a_template_breaking_in_its_own_code_is_a_chat_template_render_error():
    with pytest.raises(ChatTemplateRenderError, match="TypeError") as err:
        ChatTemplate(BROKEN).render(HI)
    assert err.value.param == "model" and err.value.code == "chat_template_error"
    named = err.value.naming("m1")
    assert type(named) is ChatTemplateRenderError and "'m1'" in str(named) and "settings.chat_template" in str(named)
    # the template's own refusal stays the request's
    with pytest.raises(TemplateError) as refused:
        ChatTemplate("{{ raise_exception('no thanks') }}").render(HI)
    assert type(refused.value) is TemplateError and refused.value.param is None


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("template-own-error") / "data", stories_path) as srv:
        status, answer = request(srv, "PATCH", f"/v1/models/{STORIES}", {"settings": {"chat_template": BROKEN}},
                                 timeout=WAIT_S)
        assert status == 200, answer
        yield srv


def _check(path: str, status: int, answer: Any) -> None:
    assert status == 400, answer
    if path.startswith("/api/"):
        assert set(answer) == {"error"}, answer  # Ollama's shape
        message = answer["error"]
    elif path.startswith("/v1/messages"):
        assert answer["type"] == "error", answer
        message = answer["error"]["message"]
    else:
        error = answer["error"]
        assert error["param"] == "model" and error["code"] == "chat_template_error", answer
        message = error["message"]
    assert f"model '{STORIES}'" in message and "TypeError" in message and "settings.chat_template" in message, answer


@pytest.mark.parametrize("name", list(CASES))
def test_the_models_broken_template_is_named_before_the_load(server, name):
    path, body = CASES[name]
    with kept_unloaded(server, STORIES, timeout=WAIT_S):
        status, answer = request(server, "POST", path, {"model": STORIES, **body}, timeout=WAIT_S)
    _check(path, status, answer)


def test_the_models_broken_template_is_named_once_loaded(server):
    # (a completion loads the model without the chat template)
    status, answer = request(server, "POST", "/v1/completions", {"model": STORIES, "prompt": "hi", "max_tokens": 1},
                             timeout=WAIT_S)
    assert status == 200, answer
    for name in ("openai chat", "anthropic", "ollama chat"):
        path, body = CASES[name]
        status, answer = request(server, "POST", path, {"model": STORIES, **body}, timeout=WAIT_S)
        _check(path, status, answer)
