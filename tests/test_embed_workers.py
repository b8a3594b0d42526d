"""Embedding requests run on worker threads of their own (services/embeddings.py's EMBEDDING_WORKERS), not the event
loop's shared ones: an embedding request spends most of its time in its thread waiting for its turn of the model's
one embedding context, and a dozen of them took every shared worker (cpu count + 4), so a tokenize or a chat's
prompt, which needs one for a moment, waited behind all the embeddings. Here the shared workers are made two, four
embedding requests wait on a held turn, and a tokenize and a chat are still answered meanwhile. The turns are
recorded; no timing is measured."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx
import pytest

from api_helpers import running
from jan.engine.turns import Turns
from jan.server.keys import MANAGER

MINILM = "all-MiniLM-L6-v2-f32"
STORIES = "stories260K"
WAIT_S = 300  # a guard against a hung test on a busy machine, never a measure


class HeldTurns(Turns):
    """Turns whose first one is held until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()
        self.release = threading.Event()

    def __enter__(self):
        super().__enter__()
        if not self.first.is_set():
            self.first.set()
            assert self.release.wait(WAIT_S)
        return self


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path, stories_path):
    with running(tmp_path_factory.mktemp("embed-workers") / "data", minilm_path, stories_path) as srv:
        async def few_shared_workers():  # (two: a busy machine's handful, made few to need few requests)
            import asyncio

            asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        srv.call(few_shared_workers())
        yield srv


def test_embeddings_waiting_for_their_turn_leave_the_shared_workers_free(server, monkeypatch):
    base = server.base_url
    assert httpx.post(base + "/v1/embeddings", json={"model": MINILM, "input": "load it"},
                      timeout=WAIT_S).status_code == 200
    model = server.app[MANAGER].get_inference("llama.cpp").engine.get(MINILM)
    turns = HeldTurns()
    monkeypatch.setattr(model, "_embed_turns", turns)
    asks = [("/v1/embeddings", {"model": MINILM, "input": ["a", "b"]}),
            ("/api/embed", {"model": MINILM, "input": ["c"]})] * 2
    with concurrent.futures.ThreadPoolExecutor(len(asks)) as clients:
        answers = [clients.submit(httpx.post, base + path, json=body, timeout=WAIT_S) for path, body in asks]
        try:
            assert turns.first.wait(WAIT_S)
            assert turns.wait_for_waiting(len(asks) - 1, WAIT_S)  # every one in a thread: one embeds, three wait
            tokenized = httpx.post(base + "/tokenize", json={"model": STORIES, "content": "Once upon a time"},
                                   timeout=WAIT_S)
            assert tokenized.status_code == 200 and tokenized.json()["tokens"], tokenized.text
            chat = httpx.post(base + "/v1/chat/completions", timeout=WAIT_S,
                              json={"model": STORIES, "max_tokens": 4,
                                    "messages": [{"role": "user", "content": "Once upon a time"}]})
            assert chat.status_code == 200, chat.text
            assert not any(a.done() for a in answers)  # all answered while the embeddings still waited
        finally:
            turns.release.set()
        assert [a.result().status_code for a in answers] == [200] * len(asks)
