"""``think`` on ``/api/generate`` with a prompt no chat template wraps (``raw: true``, or a ``suffix``: fill in the
middle) is checked as Ollama checks it on every generate: asked of a model that cannot think (the ``thinking``
capability ``/api/show`` lists), it is a 400 ``"<model>" does not support thinking``, streamed or not. jan only
checked it on the templated path, and a raw or fill-in-the-middle request with ``think: true`` ran as if it had
not asked. ``think: false`` (or none) asks nothing, and a model that can think takes it.

A real server: the real stories260K (no template, no thinking), a tiny fill-in-the-middle model (phi-3's vocabulary,
no thinking) and a tiny QwQ (its real template opens ``<think>``)."""

from __future__ import annotations

import httpx
import pytest

from dialect_helpers import reasoning_model
from server_helpers import start_server
from test_server_ollama import FIM, write_fim_model

STORIES = "stories260K"
QWQ = "qwq-tiny"
OPTIONS = {"num_predict": 2, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("generate-think")
    srv = start_server(tmp, [stories_path, write_fim_model(tmp / f"{FIM}.gguf"), reasoning_model(tmp)])
    yield srv
    srv.stop()


def _generate(server, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + "/api/generate", json={"prompt": "def f(", "options": OPTIONS, **body},
                      timeout=120)


def _show(server, model: str) -> list[str]:
    return httpx.post(server.base_url + "/api/show", json={"model": model}, timeout=60).json()["capabilities"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("think", [True, "high"])
@pytest.mark.parametrize(("model", "prompt"), [(STORIES, {"raw": True}), (FIM, {"raw": True}),
                                               (FIM, {"suffix": "return 1"})])
def test_think_asked_of_a_model_that_cannot_think_is_a_400(server, model, prompt, think, stream):
    assert "thinking" not in _show(server, model)
    answer = _generate(server, {"model": model, **prompt, "think": think, "stream": stream})
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": f'"{model}" does not support thinking'}


@pytest.mark.parametrize(("model", "prompt"), [(STORIES, {"raw": True}), (FIM, {"suffix": "return 1"})])
def test_think_false_asks_nothing(server, model, prompt):
    for think in (False, None):
        answer = _generate(server, {"model": model, **prompt, "think": think, "stream": False})
        assert answer.status_code == 200 and answer.json()["done"], answer.text


def test_a_model_that_can_think_takes_think_on_a_raw_prompt(server):
    assert "thinking" in _show(server, QWQ)
    answer = _generate(server, {"model": QWQ, "raw": True, "think": True, "stream": False})
    assert answer.status_code == 200 and answer.json()["done"], answer.text
