"""One embedding request holds at most OpenAI's 2,048 inputs and 300,000 tokens in all (MAX_EMBEDDING_INPUTS,
MAX_EMBEDDING_TOKENS), refused with a 400 naming ``input`` in each dialect's own error shape: ``/v1/embeddings``
(texts and token-id lists), Ollama's ``/api/embed``, and the typed request every front end builds. There was no
cap: one request of 20,000 inputs held the model's one embedding context for 90 s, and a 16 MB body of text for
minutes, with nothing to tell a client how much is too much. The token cap counts what is embedded (after Ollama's
truncation) and refuses before anything is embedded; the model goes on serving.

A real server with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

import jan.services.embeddings as embeddings_service
from api_helpers import running
from jan.services.errors import RequestError
from jan.services.types import MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_TOKENS, EmbeddingRequest

MINILM = "all-MiniLM-L6-v2-f32"
TIMEOUT = 300  # a guard against a hung test on a busy machine, never a measure


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path):
    with running(tmp_path_factory.mktemp("embed-limits") / "data", minilm_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)


def _openai_refusal(server, body: dict) -> dict:
    answer = httpx.post(server.base_url + "/v1/embeddings", json={"model": MINILM, **body}, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "input", error
    return error


def _ollama_refusal(server, body: dict) -> str:
    answer = httpx.post(server.base_url + "/api/embed", json={"model": MINILM, **body}, timeout=TIMEOUT)
    assert answer.status_code == 400 and list(answer.json()) == ["error"], answer.text
    return answer.json()["error"]


def test_the_typed_request_holds_at_most_the_input_cap():
    assert len(EmbeddingRequest(model=None, inputs=("x",) * MAX_EMBEDDING_INPUTS).inputs) == MAX_EMBEDDING_INPUTS
    with pytest.raises(RequestError) as refused:
        EmbeddingRequest(model=None, inputs=("x",) * (MAX_EMBEDDING_INPUTS + 1))
    assert refused.value.param == "input" and f"at most {MAX_EMBEDDING_INPUTS} inputs" in str(refused.value)


@pytest.mark.parametrize("one", ["hi", [1037]], ids=["texts", "token-lists"])
def test_openai_refuses_more_inputs_than_the_cap(server, oai, one):
    error = _openai_refusal(server, {"input": [one] * (MAX_EMBEDDING_INPUTS + 1)})
    assert f"at most {MAX_EMBEDDING_INPUTS} inputs" in error["message"]
    assert len(oai.embeddings.create(model=MINILM, input=[one] * 3).data) == 3  # and still serves


def test_ollama_refuses_more_inputs_than_the_cap(server):
    error = _ollama_refusal(server, {"input": ["hi"] * (MAX_EMBEDDING_INPUTS + 1)})
    assert error.startswith("input: ") and f"at most {MAX_EMBEDDING_INPUTS} inputs" in error
    assert len(ollama.Client(host=server.base_url, timeout=TIMEOUT).embed(model=MINILM, input=["a", "b"])
               .embeddings) == 2


def test_openai_refuses_more_tokens_in_all_than_the_cap(server):
    per_input = 500  # within the 512-token context, so only the total is too much
    error = _openai_refusal(server, {"input": [[1037] * per_input] * (MAX_EMBEDDING_TOKENS // per_input + 1)})
    assert error["code"] == "max_tokens_per_request" and f"{MAX_EMBEDDING_TOKENS} tokens" in error["message"]


def test_the_token_cap_counts_what_is_embedded(server, oai, monkeypatch):
    # a small cap stands for the real one (embedding 300,000 tokens to show the edge would take minutes here)
    n = oai.embeddings.create(model=MINILM, input="the sky is blue").usage.prompt_tokens
    monkeypatch.setattr(embeddings_service, "MAX_EMBEDDING_TOKENS", 2 * n)
    assert len(oai.embeddings.create(model=MINILM, input=["the sky is blue"] * 2).data) == 2  # exactly the cap
    error = _openai_refusal(server, {"input": ["the sky is blue"] * 3})
    assert error["code"] == "max_tokens_per_request" and "the first 3 of 3" in error["message"]
    # Ollama truncates an over-long input to the 512-token context first: two of them are 1,024 tokens, not 4,000
    monkeypatch.setattr(embeddings_service, "MAX_EMBEDDING_TOKENS", 1024)
    long = "word " * 2000
    assert len(ollama.Client(host=server.base_url, timeout=TIMEOUT).embed(model=MINILM, input=[long, long])
               .embeddings) == 2
    assert "tokens in all" in _ollama_refusal(server, {"input": [long] * 3})
    # the legacy route's field is its own: prompt (it was named input, a field that body has not)
    monkeypatch.setattr(embeddings_service, "MAX_EMBEDDING_TOKENS", n - 1)
    answer = httpx.post(server.base_url + "/api/embeddings", json={"model": MINILM, "prompt": "the sky is blue"},
                        timeout=TIMEOUT)
    assert answer.status_code == 400 and answer.json()["error"].startswith("prompt: "), answer.text


LONG = "hello world " * 400  # (802 tokens; the embedding context holds 512)


@pytest.mark.parametrize("given, named", [(LONG, "input"), (["a", LONG], "input[1]"), (list(range(1000)), "input")])
def test_an_input_too_long_is_named_as_the_field_that_holds_it(server, given, named):
    """One text too long was "input[0] has 802 tokens" (the engine numbers what it was given), param "input" for an
    input in a list too: the message and param name the body's own field."""
    answer = httpx.post(server.base_url + "/v1/embeddings", json={"model": MINILM, "input": given}, timeout=TIMEOUT)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == named, error
    # (after OpenAI's opening, "This model's maximum context length is ...: ", jan's own words name the field)
    assert f"input tokens: {named} has " in error["message"], error
    said = _ollama_refusal(server, {"input": given if not isinstance(given[0], int) else "x " * 900,
                                    "truncate": False})
    assert f"input tokens: {named} has " in said, said


def test_a_services_caller_is_told_its_own_field():
    import threading

    from jan.errors import ContextOverflowError

    class Model:  # (what _tokens reads of a model)
        n_ctx_embed = 4

        def tokenize(self, text):
            return list(range(len(text)))

    request = EmbeddingRequest(model="m", inputs=("ab", "abcdef"))
    with pytest.raises(ContextOverflowError) as caught:
        embeddings_service._tokens(Model(), request, threading.Event(), {})
    assert caught.value.param == "inputs[1]" and str(caught.value).startswith("inputs[1] has 6 tokens"), caught.value


@pytest.mark.parametrize("field", ["input", "content"])
def test_the_input_cap_names_the_field_the_body_holds_its_inputs_in(server, field):
    """llama-server's /embedding takes its inputs in ``content`` too: more than the cap was "input: at most ..."
    of a body with no ``input``, in the route's early check and in the typed request alike."""
    answer = httpx.post(server.base_url + "/embedding",
                        json={"model": MINILM, field: ["hi"] * (MAX_EMBEDDING_INPUTS + 1)}, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    said = answer.json()["error"]["message"]
    assert said.startswith(f"{field}: at most {MAX_EMBEDDING_INPUTS} inputs"), said
    with pytest.raises(RequestError) as refused:
        EmbeddingRequest(model=None, inputs=("x",) * (MAX_EMBEDDING_INPUTS + 1), field=field)
    assert refused.value.param == field and str(refused.value).startswith(f"{field}: "), refused.value
