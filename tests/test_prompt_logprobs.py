"""Prompt tokens' log-probabilities: OpenAI's ``echo`` with ``logprobs`` on ``/v1/completions`` scores every
prompt token given the ones before it — what evaluation harnesses (lm-evaluation-harness's
``local-completions`` loglikelihood tasks) read — and ``jan.Model.stream(..., prompt_logprobs=True)`` does the
same in Python. On stories260K (real weights)."""

from __future__ import annotations

import json

import httpx
import pytest

import jan
from server_helpers import start_server

TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."


def test_each_prompt_token_is_scored_as_generating_it_after_its_prefix_would(stories):
    tokens = stories.tokenize(TEXT)
    done = stories.generate(tokens, max_tokens=2, temperature=0, prompt_logprobs=True, top_logprobs=3)
    scored = done.prompt_logprobs
    assert [lp.token_id for lp in scored] == tokens
    assert scored[0].logprob is None and scored[0].top == []
    for i in (1, 4, len(tokens) - 1):
        step = stories.generate(tokens[:i], max_tokens=1, temperature=0, logprobs=True, top_logprobs=20)
        alternatives = {t.token_id: t.logprob for t in step.logprobs[0].top}
        # one batch of the whole prompt against one of its prefix: the same maths in another order (1.06e-4 apart
        # seen on an AMD EPYC), as logprobs compared across KV reuse elsewhere
        assert scored[i].logprob == pytest.approx(alternatives[tokens[i]], abs=1e-3)
        assert [t.token_id for t in scored[i].top] == [t.token_id for t in step.logprobs[0].top[:3]]
    # the generated tokens still come with their own logprobs, after the prompt's
    assert len(done.logprobs) == 2


def test_a_long_prompt_is_scored_whole_and_a_cached_prefix_does_not_shorten_it(stories):
    tokens = stories.tokenize("Once upon a time " * 70)  # > 128: scored over several steps
    first = stories.generate(tokens, max_tokens=1, temperature=0, prompt_logprobs=True)
    again = stories.generate(tokens, max_tokens=1, temperature=0, prompt_logprobs=True)  # its prefix is cached now
    assert [lp.token_id for lp in first.prompt_logprobs] == tokens
    assert [lp.logprob for lp in again.prompt_logprobs] == [lp.logprob for lp in first.prompt_logprobs]
    plain = stories.generate(tokens, max_tokens=1, temperature=0)
    assert plain.prompt_logprobs is None and plain.text == first.text


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("prompt-logprobs"), [stories_path], n_ctx=512, n_parallel=2)
    yield srv
    srv.stop()


def test_echo_with_logprobs_scores_the_prompt_as_openai_does(server, stories):
    tokens = stories.tokenize(TEXT)
    body = {"model": "stories260K", "prompt": tokens, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}
    r = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(tokens) + 1 == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(isinstance(x, float) and x <= 0 for x in lp["token_logprobs"][1:])
    assert all(len(top) == 1 for top in lp["top_logprobs"][1:])
    assert lp["text_offset"] == sorted(lp["text_offset"])
    # what lm-evaluation-harness computes from it: the continuation's log-likelihood and whether greedy
    # decoding would have produced it
    ctxlen = 5
    continuation = lp["token_logprobs"][ctxlen:-1]
    expected = stories.generate(tokens, max_tokens=1, temperature=0, prompt_logprobs=True).prompt_logprobs[ctxlen:]
    assert continuation == pytest.approx([e.logprob for e in expected], abs=1e-4)
    greedy = [max(top, key=top.get) == tok for tok, top in zip(lp["tokens"][ctxlen:-1], lp["top_logprobs"][ctxlen:-1])]
    assert any(greedy)  # a real model continues its own story greedily at least somewhere


def test_echo_with_logprobs_streamed(server):
    body = {"model": "stories260K", "prompt": TEXT, "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 0,
            "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    first = chunks[0]["choices"][0]
    assert first["text"] == TEXT  # the echo comes first, whole, with its tokens' logprobs
    assert first["logprobs"]["token_logprobs"][0] is None and len(first["logprobs"]["tokens"]) > 10
    generated = [t for c in chunks[1:] for ch in c["choices"] for t in (ch["logprobs"] or {}).get("tokens", [])]
    assert len(generated) == 3


def test_echo_without_logprobs_and_logprobs_without_echo_are_unchanged(server):
    base = {"model": "stories260K", "prompt": TEXT, "max_tokens": 3, "temperature": 0}
    echoed = httpx.post(server.base_url + "/v1/completions", json={**base, "echo": True}, timeout=120).json()
    assert echoed["choices"][0]["text"].startswith(TEXT) and echoed["choices"][0]["logprobs"] is None
    scored = httpx.post(server.base_url + "/v1/completions", json={**base, "logprobs": 2}, timeout=120).json()
    assert len(scored["choices"][0]["logprobs"]["tokens"]) == 3


def test_prompt_logprobs_are_refused_for_a_media_prompt(vision_pair, test_image_path):
    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_threads=1) as model:
        prompt = model.media_prompt(model.media_marker + " what?", model.media_inputs([test_image_path]))
        with pytest.raises(ValueError, match="prompt_logprobs"):
            model.stream(prompt, max_tokens=1, prompt_logprobs=True)


def test_max_tokens_0_with_echo_scores_the_prompt_alone(server, stories):
    """OpenAI's legacy completions (HELM, older lm-evaluation-harness): ``max_tokens: 0`` with ``echo`` and
    ``logprobs`` is the prompt, scored, and nothing generated."""
    tokens = stories.tokenize(TEXT)
    body = {"model": "stories260K", "prompt": tokens, "max_tokens": 0, "temperature": 0, "echo": True, "logprobs": 2}
    r = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    choice = out["choices"][0]
    assert choice["text"] == stories.detokenize(tokens) and choice["finish_reason"] == "length"
    assert len(choice["logprobs"]["tokens"]) == len(tokens) and choice["logprobs"]["token_logprobs"][0] is None
    assert out["usage"]["completion_tokens"] == 0 and out["usage"]["prompt_tokens"] == len(tokens)
    with httpx.stream("POST", server.base_url + "/v1/completions", json={**body, "stream": True}, timeout=120) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    streamed = [t for c in chunks for ch in c["choices"] for t in (ch["logprobs"] or {}).get("tokens", [])]
    assert len(streamed) == len(tokens)
    # without echo: an empty completion; below 0 is still a 400 (-1 is llama-server's no cap: below it)
    plain = httpx.post(server.base_url + "/v1/completions", json={**body, "echo": False}, timeout=120).json()
    assert plain["choices"][0]["text"] == "" and plain["usage"]["completion_tokens"] == 0
    r = httpx.post(server.base_url + "/v1/completions", json={**body, "max_tokens": -2}, timeout=120)
    assert r.status_code == 400


def test_an_empty_prompt_is_echoed_with_its_tokens_scores(server):
    body = {"model": "stories260K", "prompt": "", "max_tokens": 2, "temperature": 0, "echo": True, "logprobs": 1}
    choice = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120).json()["choices"][0]
    lp = choice["logprobs"]
    # the prompt is the model's BOS alone: one prompt token (null), then the two generated ones
    assert lp["token_logprobs"][0] is None and len(lp["tokens"]) == 3
