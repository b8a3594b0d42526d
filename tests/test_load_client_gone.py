"""A request whose client leaves while its model's load waits for room gives back the pool's claim on that model.

The fault this covers (found by a busy-server probe, ``--max-loaded-models 1``): a request for model B, with model A
busy, waited for room; its client left. The load went on (another request may wait for the same load) and, once A
went idle, loaded B with a claim for the request that had gone: B was held as if that request were coming, for the
pool's claim grace (10 s). Every request for A that came meanwhile waited behind it — a 5-token chat answered in
10 s, then 10 s again for the next client that had left. Every dialect's generation and embedding reaches the model
through the llama.cpp extension's ``acquire``: the claim is given back there (its load's thread undone, as
``undone_if_abandoned`` undoes any work an abandoned await started), and so is one whose chat template refused it.

The claim's grace is stretched so that it cannot lapse on a slow machine: on the old code B stays held.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from jan.engine import registry
from jan.server.keys import MANAGER, SERVICES

from server_helpers import start_server

GENEROUS_S = 300  # bounds for joins and waits: a busy 2-core machine, never a pacing
TINY = "llama-2-tiny-random"


@pytest.fixture(autouse=True)
def claims_hold(monkeypatch):
    """A hand-out holds its model until its request is submitted (never lapses during a test)."""
    monkeypatch.setattr(registry, "CLAIM_GRACE_S", 10 * GENEROUS_S)


def test_a_load_whose_client_left_leaves_no_claim(tmp_path, stories_path, tiny_random_path):
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=2, n_ctx=256)
    try:
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        engine.unload(TINY)
        engine.max_loaded = 1  # the server's --max-loaded-models 1 (two -m would be refused at start with it)
        held = engine.get("stories260K", claim=True)  # a request on its way to it: no room for another model

        async def acquire_tiny() -> asyncio.Task:
            target = await server.app[SERVICES].models.resolve(TINY)
            return asyncio.ensure_future(target.engine.acquire(target.model))  # what every dialect's request does

        task = server.call(acquire_tiny())
        with engine._changed:
            assert engine._changed.wait_for(lambda: len(engine._waiting) == 1, GENEROUS_S), "the load never waited"

        async def client_leaves() -> None:  # (the server cancels a request's await when its client goes)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        server.call(client_leaves())
        done = held.generate("Once", max_tokens=2, temperature=0)  # the held request: the room frees
        assert done.usage.completion_tokens >= 1
        for thread in [t for t in threading.enumerate() if t.name == f"jan-load-{TINY}"]:
            thread.join(GENEROUS_S)  # the load ended (and what it claimed was given back) on its own thread
            assert not thread.is_alive()
        assert engine.loaded() == [TINY]
        # nobody is coming for it: a keep_alive 0 unloads it now (on the old code, not before the claim lapsed)
        assert engine.unload_when_idle(TINY) is True
        assert engine.loaded() == []
    finally:
        server.stop()


def test_a_claim_given_back_is_the_claimed_model_s_only(stories_path, tiny_random_path):
    """``release_claim`` gives back one claim on the model it names, of that very load: a claim taken on a model
    loaded again since (another load of the same id), or one not taken, is left alone."""
    import jan

    with jan.ModelPool(max_loaded=2, n_ctx=256, n_threads=1) as pool:
        first = pool.load("a", stories_path, claim=True)
        pool.get("a", claim=True)  # two requests on their way
        pool.release_claim("a", first)  # one of them will not come
        assert _held(pool, "a")  # the other still holds it
        pool.release_claim("a", first)
        pool.release_claim("a", first)  # (no claim left: nothing more)
        pool.release_claim("b", first)  # (not loaded: nothing)
        assert not _held(pool, "a")
        pool.unload("a")
        again = pool.load("a", stories_path, claim=True)
        pool.release_claim("a", first)  # the first load's claim: not this one's
        assert _held(pool, "a")
        pool.release_claim("a", again)
        assert not _held(pool, "a")


def _held(pool, model_id: str) -> bool:
    """Whether unloading ``model_id`` now would fail a request (one running, or one it was handed out for)."""
    with pool._lock:
        return pool._in_use(pool._models[model_id])
