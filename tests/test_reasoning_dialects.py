"""Turning thinking on in every dialect, on a model that thinks without a marker pair: gpt-oss (Harmony's analysis
channel; a tiny model with its real template). Ollama's ``think: true`` (and its levels) is a 400 "does not support
thinking" only for a model that cannot think: gpt-oss was refused, though it is the model Ollama's levels are for.
The other dialects' switches answer too, and a model without thinking keeps Ollama's 400."""

from __future__ import annotations

import httpx
import pytest

from jan.testing.gguf_models import write_harmony_model

from conftest import require_model
from dialect_helpers import anthropic_client, openai_client
from server_helpers import start_server

MODEL = "harmony-tiny"
ASK = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("reasoning-dialects")
    srv = start_server(tmp, [write_harmony_model(tmp / f"{MODEL}.gguf"), stories_path], n_ctx=1024, n_parallel=2)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=120)


@pytest.mark.parametrize("think", [True, "low", "high", "max"])
@pytest.mark.parametrize("stream", [False, True])
def test_ollama_think_on_gpt_oss_is_answered(server, think, stream):
    opts = {"num_predict": 4, "temperature": 0}
    chat = _post(server, "/api/chat", {"model": MODEL, "messages": ASK, "think": think, "stream": stream, "options": opts})
    assert chat.status_code == 200, chat.text
    generate = _post(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "think": think, "stream": stream,
                                                "options": opts})
    assert generate.status_code == 200, generate.text


def test_every_dialects_thinking_switch_is_answered_on_gpt_oss(server):
    oai = openai_client(server)
    for effort in ("low", "high", "none"):
        oai.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, reasoning_effort=effort)
        oai.responses.create(model=MODEL, input="Hi", max_output_tokens=16, reasoning={"effort": effort})
    # (Anthropic's least budget is 1024, below max_tokens: the thinking is capped, not the answer)
    for thinking, max_tokens in (({"type": "enabled", "budget_tokens": 1024}, 1025), ({"type": "disabled"}, 4)):
        anthropic_client(server).messages.create(model=MODEL, max_tokens=max_tokens, messages=ASK, thinking=thinking)


def test_a_model_that_cannot_think_keeps_ollamas_400(server, stories_path):
    name = stories_path.stem
    response = _post(server, "/api/chat", {"model": name, "messages": ASK, "think": True, "stream": False})
    assert response.status_code == 400 and "does not support thinking" in response.json()["error"]
