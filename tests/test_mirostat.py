"""Mirostat sampling (llama.cpp's ``mirostat``/``mirostat_v2`` samplers in place of top-k/top-p/min-p/typical-p):
in the engine, on OpenAI's routes (llama-server's field names) and in Ollama's ``options`` (which accepted and
ignored them before). On stories260K: real weights, so the sampler changes the story."""

from __future__ import annotations

import httpx
import pytest

from server_helpers import start_server

STORY = "Once upon a time"
SAMPLED = {"max_tokens": 30, "temperature": 0.8, "seed": 7}
MIROSTAT = {"mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.1}


def test_mirostat_samples_reproducibly_and_otherwise(stories):
    plain = stories.generate(STORY, **SAMPLED).text
    v2 = stories.generate(STORY, **SAMPLED, **MIROSTAT).text
    assert v2 == stories.generate(STORY, **SAMPLED, **MIROSTAT).text  # seeded: the same again
    assert v2 != plain  # the sampler took over the draw
    assert stories.generate(STORY, **SAMPLED, mirostat=1).text  # version 1 too
    # greedy stays greedy
    assert stories.generate(STORY, max_tokens=10, temperature=0, mirostat=2).text == \
        stories.generate(STORY, max_tokens=10, temperature=0).text
    for bad in ({"mirostat": 3}, {"mirostat": 2, "mirostat_eta": 0.0}, {"mirostat": 1, "mirostat_tau": -1.0}):
        with pytest.raises(ValueError):
            stories.generate(STORY, max_tokens=2, **bad)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("mirostat"), [stories_path])
    yield srv
    srv.stop()


def test_mirostat_on_the_openai_and_ollama_routes(server, stories):
    expected = stories.generate(STORY, **SAMPLED, **MIROSTAT).text
    r = httpx.post(server.base_url + "/v1/completions", timeout=120,
                   json={"model": "stories260K", "prompt": STORY, **SAMPLED, **MIROSTAT})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == expected
    options = {"num_predict": 30, "temperature": 0.8, "seed": 7, **MIROSTAT}
    r = httpx.post(server.base_url + "/api/generate", timeout=120,
                   json={"model": "stories260K", "prompt": STORY, "raw": True, "stream": False, "options": options})
    assert r.status_code == 200 and r.json()["response"] == expected
    r = httpx.post(server.base_url + "/v1/completions", timeout=120,
                   json={"model": "stories260K", "prompt": STORY, "mirostat": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "mirostat"
    r = httpx.post(server.base_url + "/api/generate", timeout=120,
                   json={"model": "stories260K", "prompt": STORY, "options": {"mirostat_eta": 0}})
    assert r.status_code == 400 and "mirostat_eta" in r.json()["error"]
