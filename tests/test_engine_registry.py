"""Several models at once: load by id, LRU eviction, keep-alive, status."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import jan
import pytest
from jan.engine import registry
from jan.engine.params import MAX_SECONDS, check_seconds


def test_load_get_unload(stories_path, tiny_random_path):
    with jan.Engine(n_ctx=128, n_threads=1) as engine:
        a = engine.load("stories", stories_path)
        b = engine.load("random", tiny_random_path)
        assert engine.loaded() == ["stories", "random"]
        assert engine.get("stories") is a and engine.get("random") is b
        assert engine.load("stories", stories_path) is a  # already loaded
        assert a.generate("Once upon a time", max_tokens=5, temperature=0).text
        engine.unload("stories")
        assert engine.loaded() == ["random"]
        with pytest.raises(jan.ModelNotFoundError):
            engine.get("stories")
        with pytest.raises(RuntimeError, match="closed"):
            a.generate("Once")


def test_least_recently_used_is_evicted(stories_path, tiny_random_path):
    with jan.Engine(max_loaded=2, n_ctx=128, n_threads=1) as engine:
        engine.load("a", stories_path)
        engine.load("b", tiny_random_path)
        engine.get("a")  # now b is the least recently used
        engine.load("c", stories_path)
        assert engine.loaded() == ["a", "c"]


def _wait_unloaded(engine: jan.Engine, model_id: str, seconds: float = 60) -> None:
    """Wait (bounded, generously: a busy host) for the pool's reaper to unload ``model_id``."""
    deadline = time.monotonic() + seconds
    while engine.is_loaded(model_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.is_loaded(model_id)


def test_keep_alive_unloads_idle_models(stories_path, monkeypatch):
    # the pool's clock is the test's (it reads nothing but time.monotonic): each use restarts the keep-alive
    # clock whatever the host's speed (with real 0.1 s sleeps under a 0.3 s keep-alive, one stalled sleep on a
    # busy host unloaded the model between two uses). The reaper's interval is an hour: the test reaps
    now = [1000.0]
    monkeypatch.setattr(registry, "time", SimpleNamespace(monotonic=lambda: now[0]))
    with jan.Engine(keep_alive=30, reap_interval=3600, n_ctx=128, n_threads=1) as engine:
        engine.load("a", stories_path)
        for _ in range(8):  # 160 s in all, never 30 s without a use
            now[0] += 20
            engine.get("a")
            assert engine.reap_idle() == [] and engine.is_loaded("a")
        now[0] += 30
        assert engine.reap_idle() == ["a"] and not engine.is_loaded("a")


def test_keep_alive_0_waits_for_a_request_handed_the_model(stories_path):
    # Ollama's keep_alive 0 from one client while another's request was handed the model but had not submitted yet
    # (rendering its prompt): the model was closed under it (a 503); it is served, and the unload follows it
    with jan.Engine(reap_interval=0.05, n_ctx=128, n_threads=1) as engine:
        model = engine.load("a", stories_path, claim=True)  # handed out, nothing submitted yet
        assert engine.unload_when_idle("a") is False and engine.is_loaded("a")
        assert model.generate("Once", max_tokens=2, temperature=0).text
        _wait_unloaded(engine, "a")
        engine.load("b", stories_path)  # not handed out (no claim) and nothing running: unloaded at once
        assert engine.unload_when_idle("b") is True and not engine.is_loaded("b")


def test_a_request_rendered_and_submitted_under_its_hold_stands_for_no_other_claim(stories_path):
    # two requests handed the model (two claims); the first renders and submits under its hold, one use though it
    # begins a hold and a generation (counted as two, they stood for the second's claim as well, and a keep_alive 0
    # closed the model under the second before its submit: Ollama's 503 "closed (unloaded)" under concurrent
    # keep_alive 0 requests). The second's claim stands: the unload waits for it, and it is served
    with jan.Engine(reap_interval=0.05, n_ctx=128, n_threads=1) as engine:
        model = engine.load("a", stories_path, claim=True)
        assert engine.get("a", claim=True) is model  # the second request's hand-out
        with model.hold():
            assert model.generate("Once", max_tokens=2, temperature=0).text
            assert model.generate("Once", max_tokens=2, temperature=0, seed=1).text  # (n choices: one use too)
        assert engine.unload_when_idle("a") is False and engine.is_loaded("a")
        with model.hold():
            assert model.generate("Once", max_tokens=2, temperature=0).text
        _wait_unloaded(engine, "a")


def test_a_use_no_claim_was_made_for_ends_no_claim(stories_path):
    # a tokenize between requests holds the model (it is not unloaded under the work) without beginning a request:
    # the claim of a request handed the model before it stands, and Ollama's keep_alive 0 waits for that request
    with jan.Engine(reap_interval=0.05, n_ctx=128, n_threads=1) as engine:
        model = engine.load("a", stories_path, claim=True)
        with model.hold(begins=False):
            assert model.tokenize("Once")
        assert engine.unload_when_idle("a") is False and engine.is_loaded("a")  # the request's claim stands
        with model.hold():  # the handed-out request begins, and ends
            assert model.generate("Once", max_tokens=2, temperature=0).text
        _wait_unloaded(engine, "a")


def test_a_duration_past_the_longest_wait_is_forever(stories_path):
    # a client's keep_alive of 1e30 s: no thread can wait that long (OverflowError) and no date lies that far ahead
    # (a server's "expires at"), so every duration option takes it as forever, or as the longest wait where the
    # option must be finite; a duration up to the limit stays as given
    assert check_seconds("keep_alive", 1e30) == math.inf
    assert check_seconds("reap_interval", 10 ** 30, positive=True, finite=True) == MAX_SECONDS
    assert check_seconds("keep_alive", MAX_SECONDS) == MAX_SECONDS and check_seconds("keep_alive", 60) == 60
    with jan.Engine(keep_alive=1e30, room_timeout=1e30, reap_interval=1e30, n_ctx=128, n_threads=1) as engine:
        engine.load("a", stories_path)
        assert engine.status()["a"]["expires_in"] is None
        engine.set_keep_alive("a", 60)  # starts the reaper, whose interval is now a wait a thread can make
        assert 0 < engine.status()["a"]["expires_in"] <= 60
        engine.set_keep_alive("a", 1e30)
        assert engine.status()["a"]["expires_in"] is None and engine.reap_idle() == []


def test_keep_alive_never_unloads_a_busy_model(stories_path):
    with jan.Engine(keep_alive=0.2, reap_interval=0.05, n_ctx=16384, n_threads=1) as engine:
        model = engine.load("a", stories_path)
        running = model.stream("Once upon a time", max_tokens=100_000, ignore_eos=True)
        time.sleep(0.5)
        assert model.busy, "the generation should still be running"
        assert engine.is_loaded("a")
        running.cancel()


def test_a_model_keeps_its_own_keep_alive(stories_path, tiny_random_path):
    # reap_interval is an hour: reap_idle() is called by the test, never by the thread
    with jan.Engine(keep_alive=None, reap_interval=3600, n_ctx=128, n_threads=1) as engine:
        engine.load("a", stories_path)
        engine.load("b", tiny_random_path)
        assert engine.reap_idle() == []  # no limit anywhere: both stay
        engine.set_keep_alive("a", 0)  # unload as soon as idle
        assert engine.status()["a"]["expires_in"] == 0 and engine.status()["b"]["expires_in"] is None
        assert engine.reap_idle() == ["a"]
        assert engine.loaded() == ["b"]
        with pytest.raises(jan.ModelNotFoundError):
            engine.set_keep_alive("a", 10)
        with pytest.raises(ValueError):
            engine.set_keep_alive("b", -1)

    with jan.Engine(keep_alive=0, reap_interval=3600, n_ctx=128, n_threads=1) as engine:
        engine.load("a", stories_path)
        engine.load("b", tiny_random_path)
        engine.set_keep_alive("a", float("inf"))  # forever, whatever the engine's limit
        assert engine.reap_idle() == ["b"]
        assert engine.loaded() == ["a"] and engine.status()["a"]["expires_in"] is None
        engine.set_keep_alive("a", None)  # the engine's limit again
        assert engine.reap_idle() == ["a"]


def test_status_per_model(stories_path):
    # a context of thousands of tokens: the generation runs seconds, until cancelled (with 128 it ended at the
    # context in ~10 ms on a fast core, at times before the status was read)
    with jan.Engine(n_ctx=4096, n_threads=1, n_parallel=2) as engine:
        model = engine.load("a", stories_path)
        running = model.stream("Once upon a time", max_tokens=100_000, ignore_eos=True)
        next(running)
        status = engine.status()["a"]
        assert status["slots_busy"] == 1 and status["slots_total"] == 2
        assert status["memory_bytes"] > 0 and status["n_ctx"] == 4096
        running.cancel()


# The pool's key and the model's file are checked by name: a model loaded under None or "" was kept under that key
# while the Model took its file's name, and a path None was looked for as a file named 'None'.
@pytest.mark.parametrize("model_id, error", [(None, TypeError), (5, TypeError), ("", ValueError)])
def test_a_model_id_that_is_no_name_is_refused(stories_path, model_id, error):
    with jan.ModelPool() as pool:
        with pytest.raises(error, match="model_id"):
            pool.load(model_id, stories_path)
        assert pool.loaded() == []


@pytest.mark.parametrize("path", [None, 5])
def test_a_path_of_the_wrong_type_is_refused_by_the_pool(path):
    with jan.ModelPool() as pool, pytest.raises(TypeError, match="path: expected a file path"):
        pool.load("m", path)
