"""``/api/embed``'s ``input`` and ``dimensions`` read as Ollama reads them, through the official ``ollama`` client:

* ``input: ""`` is no input, as in Ollama's EmbedHandler (a string is embedded only when it is not empty): the
  request loads the model and answers ``{"model", "embeddings": []}``, as ``input: []`` or no ``input`` does. jan
  embedded the empty string and answered one vector. An empty string inside a list is still embedded (Ollama's too);
* ``dimensions: 0`` is Go's zero value, which Ollama reads as "not given": the whole vector, not a 400. A negative
  value stays a 400 naming the field.

A real server with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import httpx
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
