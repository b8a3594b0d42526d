"""``/api/embed``'s ``input`` and ``dimensions`` read as Ollama reads them, through the official ``ollama`` client:

* ``input: ""`` is no input, as in Ollama's EmbedHandler (a string is embedded only when it is not empty): the
  request loads the model and answers ``{"model", "embeddings": []}``, as ``input: []`` or no ``input`` does. jan
  embedded the empty string and answered one vector. An empty string inside a list is still embedded (Ollama's too);
* ``dimensions: 0`` is Go's zero value, which Ollama reads as "not given": the whole vector, not a 400. A negative
  value stays a 400 naming the field.

And ``dimensions`` on both dialects, one cut made by the embedding service: OpenAI's ``/v1/embeddings`` refused any
value but the model's size (384), and ``/api/embed`` cut in its route. Now both answer each vector's first N
components normalized again (numerically: the whole vector's prefix over its norm), the same on both, in base64
too; a bad value is a 400 naming ``dimensions`` in the dialect's shape. More than the model's size is OpenAI's 400
and Ollama's whole vector (its EmbedHandler cuts only below the model's size).

A real server with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import ollama
import pytest

from api_helpers import running

MINILM = "all-MiniLM-L6-v2-f32"


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path):
    with running(tmp_path_factory.mktemp("embed-input") / "data", minilm_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


@pytest.mark.parametrize("body", [{"input": ""}, {"input": []}, {}])
def test_no_input_loads_the_model_and_answers_no_vectors(server, body):
    answer = httpx.post(server.base_url + "/api/embed", json={"model": MINILM, **body}, timeout=120)
    assert answer.status_code == 200 and answer.json() == {"model": MINILM, "embeddings": []}, answer.text


def test_an_empty_string_in_a_list_is_embedded(client):
    assert client.embed(model=MINILM, input="").embeddings == []
    listed = client.embed(model=MINILM, input=["", "The sky is blue"])
    assert [len(v) for v in listed.embeddings] == [384, 384]
    # the legacy route's empty prompt loads the model as well, with an empty vector (Ollama's)
    assert client.embeddings(model=MINILM, prompt="").embedding == []


def test_zero_dimensions_is_the_whole_vector(server, client):
    whole = client.embed(model=MINILM, input="The sky is blue").embeddings[0]
    answer = httpx.post(server.base_url + "/api/embed", json={"model": MINILM, "input": "The sky is blue",
                                                             "dimensions": 0}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["embeddings"][0] == pytest.approx(whole, abs=1e-6)
    assert len(client.embed(model=MINILM, input="The sky is blue", dimensions=8).embeddings[0]) == 8
    refused = httpx.post(server.base_url + "/api/embed", json={"model": MINILM, "input": "x", "dimensions": -1},
                         timeout=120)
    assert refused.status_code == 400 and list(refused.json()) == ["error"], refused.text
    assert refused.json()["error"].startswith("dimensions: ")


TEXTS = ["The sky is blue", "Grass is green"]


def _post(server, path, body):
    return httpx.post(server.base_url + path, json={"model": MINILM, **body}, timeout=120)


@pytest.fixture(scope="module")
def whole(server):
    answer = _post(server, "/v1/embeddings", {"input": TEXTS})
    assert answer.status_code == 200, answer.text
    return np.array([d["embedding"] for d in answer.json()["data"]]), answer.json()["usage"]


@pytest.mark.parametrize("n", [1, 8, 64, 383])
def test_dimensions_are_the_first_n_components_normalized_again_on_both_dialects(server, whole, n):
    full, usage = whole
    expected = full[:, :n] / np.linalg.norm(full[:, :n], axis=1, keepdims=True)
    openai_answer = _post(server, "/v1/embeddings", {"input": TEXTS, "dimensions": n})
    assert openai_answer.status_code == 200, openai_answer.text
    cut = np.array([d["embedding"] for d in openai_answer.json()["data"]])
    assert cut.shape == (2, n) and np.allclose(cut, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    assert openai_answer.json()["usage"] == usage  # the same tokens were embedded
    ollama_answer = _post(server, "/api/embed", {"input": TEXTS, "dimensions": n})
    assert ollama_answer.status_code == 200, ollama_answer.text
    assert np.allclose(ollama_answer.json()["embeddings"], cut, atol=1e-6)
    encoded = _post(server, "/v1/embeddings", {"input": TEXTS, "dimensions": n, "encoding_format": "base64"})
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded.json()["data"]]
    assert [len(v) for v in decoded] == [n, n] and np.allclose(decoded, cut, atol=1e-6)


def test_the_models_own_size_is_the_plain_vector(server, whole):
    full, _ = whole
    for path, key in (("/v1/embeddings", None), ("/api/embed", "embeddings")):
        answer = _post(server, path, {"input": TEXTS, "dimensions": 384})
        assert answer.status_code == 200, answer.text
        got = answer.json()[key] if key else [d["embedding"] for d in answer.json()["data"]]
        assert np.allclose(got, full, atol=1e-6), path
    # Ollama answers the whole vector for more than the model's size too (and for 0, its "not given")
    for n in (385, 100_000):
        answer = _post(server, "/api/embed", {"input": TEXTS, "dimensions": n})
        assert answer.status_code == 200 and np.allclose(answer.json()["embeddings"], full, atol=1e-6), answer.text


@pytest.mark.parametrize("value", [0, -1, 385, "12", True, 1.5, [8], 2**40])
def test_openai_refuses_bad_dimensions_naming_them(server, value):
    answer = _post(server, "/v1/embeddings", {"input": "x", "dimensions": value})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]  # OpenAI's shape
    assert error["type"] == "invalid_request_error" and error["param"] == "dimensions", error
    assert "dimensions" in error["message"], error


@pytest.mark.parametrize("value", [-1, "12", True, 1.5, [8], 2**40])
def test_ollama_refuses_bad_dimensions_naming_them(server, value):
    answer = _post(server, "/api/embed", {"input": "x", "dimensions": value})
    assert answer.status_code == 400 and list(answer.json()) == ["error"], answer.text  # Ollama's shape
    assert answer.json()["error"].startswith("dimensions"), answer.text
