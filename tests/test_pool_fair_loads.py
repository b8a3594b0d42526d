"""Loads waiting for room are served first come, first served (Ollama's scheduler is the reference).

The fault this covers: with ``--max-loaded-models 1``, a load of model B waited for model A to go idle, but every
request for A that came meanwhile was handed A at once — a steady stream of them kept A busy, and B waited until
its 503. Now the model a waiting load will unload finishes what it has and takes no request that came after that
load: those queue behind it and load A again in their turn. Requests that came before it keep their place.

A model is held busy deterministically by a hand-out (``claim=True``) whose request the test submits when it
wants the model to go idle: the claim's grace is stretched so that it cannot lapse on a slow machine.
"""

from __future__ import annotations

import threading

import httpx
import pytest

import jan
from jan.engine import registry
from jan.errors import ModelNotFoundError
from jan.server.keys import MANAGER

from server_helpers import start_server
from test_pool_busy_eviction import _completion, _in_thread, _joined

PROMPT = "Once upon a time"
GENEROUS_S = 300  # bounds for joins and waits: a busy 2-core machine, never a pacing


@pytest.fixture(autouse=True)
def claims_hold(monkeypatch):
    """A hand-out holds its model until the test submits its request (never lapses during a test)."""
    monkeypatch.setattr(registry, "CLAIM_GRACE_S", 10 * GENEROUS_S)


def _wait_until(pool: jan.ModelPool, predicate) -> None:
    """Wait on the pool's own condition (notified when a model is marked to go, leaves or joins)."""
    with pool._changed:
        assert pool._changed.wait_for(predicate, GENEROUS_S), "the pool never got there"


def _unloading(pool: jan.ModelPool, model_id: str) -> bool:
    return pool.status().get(model_id, {}).get("unloading", False)


def _short(model: jan.Model, n: int = 4) -> jan.Completion:
    done = model.generate(PROMPT, max_tokens=n, temperature=0, ignore_eos=True)
    assert done.finish_reason == "length" and done.usage.completion_tokens == n
    return done


def test_a_request_that_comes_after_a_waiting_load_queues_behind_it(stories_path, tiny_random_path):
    with jan.ModelPool(max_loaded=1, n_ctx=1024, n_threads=1) as pool:
        a = pool.load("a", stories_path, claim=True)  # a request on its way to A: A is held
        order: list[str] = []

        def load_b():
            b = pool.load("b", tiny_random_path, claim=True)
            order.append("b")
            return _short(b)

        b_thread = _in_thread(load_b)
        _wait_until(pool, lambda: _unloading(pool, "a"))  # B is in line; A goes once its requests end

        # a later request is not handed A (before the fix it was, and kept A busy while B waited)
        with pytest.raises(ModelNotFoundError, match="being unloaded"):
            pool.get("a", claim=True)
        assert pool.get("a") is a  # a look is no hand-out
        assert pool.loaded() == ["a"]

        def load_a_again():
            again = pool.load("a", stories_path, claim=True)  # waits behind B, then loads A again
            order.append("a")
            return again, _short(again)

        a_thread = _in_thread(load_a_again)
        # the request A was held for runs whole: nothing is cut off to make room
        held = a.generate(PROMPT, max_tokens=64, temperature=0, ignore_eos=True)
        assert held.finish_reason == "length" and held.usage.completion_tokens == 64

        _joined(*b_thread)
        again, _ = _joined(*a_thread)
        assert order == ["b", "a"]
        assert again is not a and pool.loaded() == ["a"]


def test_a_steady_stream_of_requests_does_not_starve_a_waiting_load(stories_path, tiny_random_path):
    """One client asks A again and again; a load of B that came meanwhile is served before A's later requests."""
    rounds = 5
    with jan.ModelPool(max_loaded=1, n_ctx=1024, n_threads=1) as pool:
        pool.load("a", stories_path)
        order: list[str] = []
        first_held, go = threading.Event(), threading.Event()

        def steady_a():
            for i in range(rounds):
                model = pool.load("a", stories_path, claim=True)
                order.append(f"a{i}")
                if i == 0:
                    first_held.set()
                    assert go.wait(GENEROUS_S)
                _short(model)

        def load_b():
            b = pool.load("b", tiny_random_path, claim=True)
            order.append("b")
            _short(b)

        a_thread = _in_thread(steady_a)
        assert first_held.wait(GENEROUS_S)
        b_thread = _in_thread(load_b)
        _wait_until(pool, lambda: _unloading(pool, "a"))
        go.set()
        _joined(*a_thread)
        _joined(*b_thread)
        # before the fix: a0..a4, then b (or B's 503 after room_timeout with a longer stream)
        assert order == ["a0", "b"] + [f"a{i}" for i in range(1, rounds)]


def test_a_request_that_came_before_the_waiting_load_keeps_its_place(stories_path, tiny_random_path):
    with jan.ModelPool(max_loaded=1, n_ctx=1024, n_threads=1) as pool:
        a = pool.load("a", stories_path)  # idle
        with pool.turn("a") as early:  # a request for A arrives (say, held up in a server's own lock)
            b_thread = _in_thread(lambda: pool.load("b", tiny_random_path))
            _wait_until(pool, lambda: _unloading(pool, "a"))
            # idle, but not unloaded: the request that came first is on its way to it
            assert pool.loaded() == ["a"]
            with pytest.raises(ModelNotFoundError):
                pool.get("a", claim=True)  # one that came after B's load waits behind it
            assert pool.get("a", claim=True, turn=early) is a
        _short(a)
        b = _joined(*b_thread)
        assert pool.loaded() == ["b"]
        _short(b)


def test_two_models_alternately_requested_with_one_slot_never_deadlock(stories_path, tiny_random_path):
    """Several clients, two models, room for one: every request is answered whole, none is lost or cut off."""
    paths = {"a": stories_path, "b": tiny_random_path}
    rounds = 3

    def client(first: str):
        answers = []
        for i in range(rounds):
            model_id = first if i % 2 == 0 else ("b" if first == "a" else "a")
            with pool.turn(model_id) as turn:
                model = pool.load(model_id, paths[model_id], claim=True, turn=turn)
            answers.append(_short(model))
        return answers

    with jan.ModelPool(max_loaded=1, n_ctx=1024, n_threads=1) as pool:
        clients = [_in_thread(lambda first=first: client(first)) for first in ("a", "b", "a", "b")]
        answered = [_joined(*c) for c in clients]
        assert [len(a) for a in answered] == [rounds] * 4
        assert len(pool.loaded()) == 1


def test_a_load_that_gives_up_lets_the_model_it_marked_serve_again(stories_path, tiny_random_path):
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_ctx=1024, n_threads=1) as pool:
        a = pool.load("a", stories_path, claim=True)
        with pytest.raises(registry.ModelPoolBusyError):
            pool.load("b", tiny_random_path)
        assert not _unloading(pool, "a")
        assert pool.get("a", claim=True) is a  # no load waits now: A takes requests again
        _short(a)
        _short(a)


def test_server_queues_a_request_for_the_model_on_its_way_out_behind_the_waiting_load(tmp_path, stories_path,
                                                                                      tiny_random_path):
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=1, n_ctx=1024)
    try:
        base = server.base_url
        _completion(base, "stories260K")  # A is loaded
        engine = server.app[MANAGER].get_inference("llama.cpp")
        pool = engine.engine
        held = pool.get("stories260K", claim=True)  # a request on its way to A holds it

        b_request = _in_thread(lambda: _completion(base, "llama-2-tiny-random"))
        _wait_until(pool, lambda: _unloading(pool, "stories260K"))
        a_request = _in_thread(lambda: _completion(base, "stories260K"))
        # the later request for A waits in line behind B's load: it takes a turn in the pool and is refused A
        _wait_until(pool, lambda: len(pool._waiting) == 2)
        assert pool.loaded() == ["stories260K"]

        _short(held)  # the held request runs whole; then A goes, B loads, and A is loaded again after it
        assert _joined(*b_request)["choices"][0]["finish_reason"] == "length"
        assert _joined(*a_request)["choices"][0]["finish_reason"] == "length"
        assert pool.loaded() == ["stories260K"] and pool.get("stories260K") is not held
        state = {m["id"]: m["state"] for m in httpx.get(f"{base}/v1/models", timeout=GENEROUS_S).json()["data"]}
        assert state["stories260K"] == "ready" and state["llama-2-tiny-random"] == "unloaded"
    finally:
        server.stop()

