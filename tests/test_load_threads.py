"""A model load waiting for room runs on a thread of its own (services/worker_pool.py's ``on_own_thread``), not on
the event loop's shared workers: with ``--max-loaded-models`` reached and every loaded model busy, a load waits until
their requests end (up to the pool's ``room_timeout``, minutes), and each such load held a shared worker (cpu count
+ 4) all that time -- a few loads of different models took every one, and each request needing one for a moment (a
tokenize, a chat's prompt, a listing) waited behind them. Here the shared workers are made two, two loads of other
models wait on a held model, and a tokenize of the held model is answered meanwhile; then both loads go ahead."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import httpx
import pytest

from jan.engine import registry
from jan.server.keys import MANAGER

from server_helpers import start_server

GENEROUS_S = 300  # bounds for joins and waits: a busy 2-core machine, never a pacing


@pytest.fixture(autouse=True)
def claims_hold(monkeypatch):
    """A hand-out holds its model until the test submits its request (never lapses during a test)."""
    monkeypatch.setattr(registry, "CLAIM_GRACE_S", 10 * GENEROUS_S)


def _completion(base_url: str, model: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/completions", timeout=GENEROUS_S,
                      json={"model": model, "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})


def test_loads_waiting_for_room_leave_the_shared_workers_free(tmp_path, stories_path, tiny_random_path, gguf_copy):
    copy = gguf_copy.rename(gguf_copy.with_name("stories-copy.gguf"))
    server = start_server(tmp_path, [stories_path, tiny_random_path, copy], max_loaded_models=3, n_ctx=256)
    try:
        base = server.base_url
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        assert _completion(base, "stories260K").status_code == 200
        for other in set(engine.loaded()) - {"stories260K"}:  # (-m loads each at start)
            assert httpx.post(f"{base}/v1/models/{other}/stop", timeout=GENEROUS_S).status_code == 200
        assert engine.loaded() == ["stories260K"]
        engine.max_loaded = 1  # the server's --max-loaded-models 1 (three -m would be refused at start with it)

        async def few_shared_workers():  # (two: a busy machine's handful, made few to need few requests)
            asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        server.call(few_shared_workers())

        held = engine.get("stories260K", claim=True)  # a request on its way to it: it cannot be unloaded
        with concurrent.futures.ThreadPoolExecutor(2) as clients:
            loads = [clients.submit(_completion, base, m) for m in ("llama-2-tiny-random", "stories-copy")]
            with engine._changed:
                assert engine._changed.wait_for(lambda: len(engine._waiting) == 2 or any(f.done() for f in loads),
                                                GENEROUS_S)
            assert not any(f.done() for f in loads), [f.result().text for f in loads if f.done()]
            try:
                tokenized = httpx.post(f"{base}/tokenize", json={"model": "stories260K", "content": "Once upon"},
                                       timeout=GENEROUS_S)
                assert tokenized.status_code == 200 and tokenized.json()["tokens"], tokenized.text
                listed = httpx.get(f"{base}/v1/models", timeout=GENEROUS_S)
                assert listed.status_code == 200, listed.text
                assert not any(f.done() for f in loads)  # answered while both loads still waited
                assert [t.name for t in threading.enumerate() if t.name.startswith("jan-load-")]
            finally:
                done = held.generate("Once", max_tokens=2, temperature=0)  # the held request: the model goes idle
                assert done.usage.completion_tokens >= 1
            assert [f.result(GENEROUS_S).status_code for f in loads] == [200, 200]
    finally:
        server.stop()
