"""A request to generate text with an embedding-only model is the same 400 (``model_not_supported``) on every path
of every dialect, said before anything loads the model: its model.json says what it is. Queued work (a background
response, an assistant run) is refused when asked, as OpenAI refuses it, not accepted and failed later (a
background response was stored as ``failed``; one naming no model there at all, too). Ollama's load-only requests
(``/api/generate`` or ``/api/chat`` with nothing to answer) refuse it as Ollama does, and its unload still works;
embedding with it, and with a model that generates, still works."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import running
from extension_helpers import call as request, kept_unloaded

EMBED = "all-MiniLM-L6-v2-f32"
WAIT_S = 300
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("refusals") / "data", stories_path, minilm_path) as srv:
        yield srv


def call(server, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return request(server, method, path, body, timeout=WAIT_S)


@pytest.fixture
def unloaded(server):
    """The embedding model imported but not loaded: a refusal must not load it."""
    with kept_unloaded(server, EMBED, timeout=WAIT_S):
        yield


GENERATING = {
    "chat": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2}),
    "chat stream": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2, "stream": True}),
    "completions": ("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    "completions stream": ("/v1/completions", {"prompt": "hi", "max_tokens": 2, "stream": True}),
    "apply-template": ("/apply-template", {"messages": HI}),
    "anthropic": ("/v1/messages", {"messages": HI, "max_tokens": 2}),
    "anthropic stream": ("/v1/messages", {"messages": HI, "max_tokens": 2, "stream": True}),
    "anthropic count_tokens": ("/v1/messages/count_tokens", {"messages": HI}),
    "responses": ("/v1/responses", {"input": "hi", "max_output_tokens": 16}),
    "responses stream": ("/v1/responses", {"input": "hi", "max_output_tokens": 16, "stream": True}),
    "responses background": ("/v1/responses", {"input": "hi", "max_output_tokens": 16, "background": True}),
    "responses input_tokens": ("/v1/responses/input_tokens", {"input": "hi"}),
    "run": ("/v1/threads/runs", {"assistant_id": "jan", "thread": {"messages": HI}}),
    "ollama chat": ("/api/chat", {"messages": HI, "stream": False}),
    "ollama chat load": ("/api/chat", {"messages": []}),
    "ollama generate": ("/api/generate", {"prompt": "hi", "stream": False}),
    "ollama generate load": ("/api/generate", {}),
}


def _error(path: str, answer: Any) -> tuple[str | None, str]:
    if path.startswith("/api/"):
        return None, answer["error"]
    if path.startswith("/v1/messages") or isinstance(answer["error"]["code"], int):  # (llama-server's: a status)
        return answer["error"]["type"], answer["error"]["message"]
    return answer["error"]["code"], answer["error"]["message"]


@pytest.mark.parametrize("name", list(GENERATING))
def test_generating_with_an_embedding_model_is_refused_before_it_loads(server, unloaded, name):
    path, body = GENERATING[name]
    status, answer = call(server, "POST", path, {"model": EMBED, **body})
    assert status == 400, answer
    code, message = _error(path, answer)
    if path.startswith("/api/"):  # Ollama's words, which its clients match ("does not support"), then jan's reason
        word = path.removeprefix("/api/")
        assert message == f'"{EMBED}" does not support {word} (it is an embedding model; it cannot generate text)'
    else:
        assert f"model '{EMBED}' is an embedding model; it cannot generate text" == message, answer
    assert code in (None, "invalid_request_error", "model_not_supported"), answer


def test_a_background_response_for_no_such_model_is_refused_when_asked(server):
    status, answer = call(server, "POST", "/v1/responses", {"model": "no-such-model", "input": "hi",
                                                           "background": True})
    assert status == 404 and answer["error"]["code"] == "model_not_found", answer


def test_a_background_response_that_can_run_still_runs(server):
    status, answer = call(server, "POST", "/v1/responses", {"model": "stories260K", "input": "hi",
                                                           "background": True, "max_output_tokens": 16})
    assert status == 200 and answer["status"] in ("queued", "in_progress", "completed"), answer


def test_an_embedding_model_still_embeds_and_unloads(server, unloaded):
    status, answer = call(server, "POST", "/api/generate", {"model": EMBED, "keep_alive": 0})
    assert status == 200 and answer["done_reason"] == "unload", answer  # Ollama unloads any model so
    status, answer = call(server, "POST", "/v1/embeddings", {"model": EMBED, "input": "hi"})
    assert status == 200 and len(answer["data"][0]["embedding"]) == 384
    call(server, "POST", f"/v1/models/{EMBED}/stop")  # (unloaded again, as the fixture checks)


def test_a_generating_model_still_embeds(server):
    status, answer = call(server, "POST", "/api/embed", {"model": "stories260K", "input": ["a", "b"]})
    assert status == 200 and len(answer["embeddings"]) == 2
