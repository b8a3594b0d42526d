"""Every use of a pooled model holds it as busy for its whole duration — embeddings as generations.

The fault this covers: with ``--max-loaded-models 1``, chats to one model and embeddings to another got the chats
answered and the embeddings 503 (``model_unloaded``, or ``generation_cancelled`` mid-embedding): an embedding
model was not busy from its hand-out to its first decode (tokenizing, making the embedding context), and a claim
on it (a server's hand-out) held nothing, so every waiting load of the chat model unloaded it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import jan
from jan.engine.registry import ModelPoolBusyError
from jan.errors import ModelNotFoundError

from server_helpers import start_server

GENEROUS_S = 300  # bounds for waits and HTTP reads: a busy 2-core machine, never a pacing


def _wait_until(check, what: str) -> None:
    """Wait (bounded) for a state the other thread reaches; a failure names it."""
    deadline = time.monotonic() + GENEROUS_S
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def _gate_embedding(model: jan.Model) -> tuple[threading.Event, threading.Event]:
    """Stop ``model``'s embeddings after they began (inputs tokenized, before the embedding context is made and
    decodes): (``inside``: one is there, ``gate``: set to let it go on)."""
    inside, gate = threading.Event(), threading.Event()
    original = model._get_embedder

    def gated(pooling):
        inside.set()
        assert gate.wait(GENEROUS_S), "the test never opened the gate"
        return original(pooling)

    model._get_embedder = gated
    return inside, gate


def _unloading(pool: jan.ModelPool, model_id: str) -> bool:
    return pool.status().get(model_id, {}).get("unloading", False)


def test_a_running_embedding_is_never_unloaded_by_a_load_of_another_model(minilm_path, stories_path):
    with jan.ModelPool(max_loaded=1, n_threads=1) as pool:
        e = pool.load("e", minilm_path, embedding=True)
        inside, gate = _gate_embedding(e)
        with ThreadPoolExecutor(2) as run:
            embedding = run.submit(e.embed, ["a running embedding"] * 4)
            assert inside.wait(GENEROUS_S)
            loading = run.submit(pool.load, "s", stories_path)
            # the load waits for the embedding: the model goes once it ends, and takes no later request meanwhile
            _wait_until(lambda: _unloading(pool, "e"), "the load marks the embedding model to go")
            assert pool.loaded() == ["e"] and not loading.done()
            with pytest.raises(ModelNotFoundError, match="load that came first"):
                pool.get("e", claim=True)  # a later request queues behind the load: no starving it
            gate.set()
            vectors = embedding.result(GENEROUS_S)  # whole, not cancelled
            assert vectors.shape == (4, 384)
            assert loading.result(GENEROUS_S) is pool.get("s")
        assert pool.loaded() == ["s"]


def test_an_embedding_model_handed_out_is_held_until_its_embedding_is_in_and_done(minilm_path, stories_path):
    """A claim (a server's hand-out) holds an embedding model as it holds a generation model: until the request
    it was handed out for begins (then it is busy), or CLAIM_GRACE_S pass."""
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_threads=1) as pool:
        e = pool.load("e", minilm_path, claim=True, embedding=True)
        with pytest.raises(ModelPoolBusyError):
            pool.load("s", stories_path)
        assert e.embed("the claimed request").shape == (1, 384)
        pool.load("s", stories_path)
        assert pool.loaded() == ["s"]


def test_a_hold_is_a_running_request_for_loads_and_keep_alive(minilm_path, stories_path):
    """Work before a request (tokenizing, media) under ``Model.hold`` / ``ModelPool.using``: busy throughout."""
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_threads=1) as pool:
        with pool.using("s", stories_path) as s:
            assert s.busy
            with pytest.raises(ModelPoolBusyError):
                pool.load("e", minilm_path, embedding=True)
            pool.set_keep_alive("s", 0)
            assert pool.reap_idle() == [] and pool.loaded() == ["s"]
            assert not pool.unload_when_idle("s")
            with s.hold():  # nested: one use
                s.tokenize("Once upon a time")
        assert not s.busy
        assert pool.reap_idle() == ["s"]


def test_pool_embeddings_and_generations_from_threads_all_succeed(minilm_path, stories_path):
    """The library's own pattern, ``using`` per call, with one model loaded at a time: nothing fails."""
    with jan.ModelPool(max_loaded=1, n_threads=1) as pool:
        def embed(i):
            with pool.using("e", minilm_path, embedding=True) as e:
                return e.embed([f"sentence {i}"] * 3).shape

        def generate(i):
            with pool.using("s", stories_path) as s:
                return s.generate("Once", max_tokens=4, temperature=0).usage.completion_tokens

        with ThreadPoolExecutor(6) as run:
            jobs = [run.submit(embed if i % 2 else generate, i) for i in range(24)]
            results = [j.result(GENEROUS_S) for j in jobs]
        assert results == [(3, 384) if i % 2 else 4 for i in range(24)]


def test_server_with_one_model_loaded_answers_alternating_embeddings_and_chats(tmp_path, stories_path, minilm_path):
    server = start_server(tmp_path, [stories_path, minilm_path], max_loaded_models=1)
    try:
        base = server.base_url

        def chat(_):
            return httpx.post(f"{base}/v1/chat/completions", timeout=GENEROUS_S,
                              json={"model": "stories260K", "messages": [{"role": "user", "content": "Once"}],
                                    "max_tokens": 8})

        def embed(_):
            return httpx.post(f"{base}/v1/embeddings", timeout=GENEROUS_S,
                              json={"model": "all-MiniLM-L6-v2-f32", "input": ["hello world"] * 8})

        def ollama_embed(_):
            return httpx.post(f"{base}/api/embed", timeout=GENEROUS_S,
                              json={"model": "all-MiniLM-L6-v2-f32", "input": ["hello world"] * 8})

        kinds = [chat, embed, chat, ollama_embed]
        with ThreadPoolExecutor(8) as run:
            jobs = [run.submit(kinds[i % 4], i) for i in range(32)]
            answers = [j.result(GENEROUS_S) for j in jobs]
        bad = [(r.request.url.path, r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
        assert not bad
    finally:
        server.stop()
