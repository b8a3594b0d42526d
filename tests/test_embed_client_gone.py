"""An embedding whose client went away stops before its next batch, on every embedding route (``/v1/embeddings``,
``/api/embed``): the route cancels the service's await, which sets the ``cancel`` event :meth:`jan.Model.embed` checks
at each turn of the embedding context. The worker thread outlived the cancelled await and embedded all of a
2,048-input request for no one, again for each retry of a client that timed out. The library's ``cancel`` is tested
alone too. The turns are recorded; no timing is measured."""

from __future__ import annotations

import asyncio
import queue
import threading

import aiohttp
import httpx
import numpy as np
import pytest

import jan
from api_helpers import running
from jan.engine.turns import Turns
from jan.errors import EmbeddingStoppedError
from jan.server.keys import MANAGER

MINILM = "all-MiniLM-L6-v2-f32"
WAIT_S = 300  # a guard against a hung test on a busy machine, never a measure
INPUTS = [f"sentence {i} about rockets and the sea" for i in range(1000)]  # many turns


class HeldTurns(Turns):
    """Turns that count those granted and hold the first one until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.granted = 0
        self.first = threading.Event()
        self.release = threading.Event()

    def __enter__(self):
        super().__enter__()
        self.granted += 1
        if self.granted == 1:
            self.first.set()
            assert self.release.wait(WAIT_S)
        return self


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model = jan.Model(minilm_path, n_threads=1)
    yield model
    model.close()


def test_a_cancel_set_meanwhile_stops_the_embedding_at_its_next_turn(minilm, monkeypatch):
    turns = HeldTurns()
    monkeypatch.setattr(minilm, "_embed_turns", turns)
    cancel, outcome = threading.Event(), queue.Queue()

    def run():
        try:
            outcome.put(minilm.embed(INPUTS, cancel=cancel))
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome.put(exc)
    worker = threading.Thread(target=run)
    worker.start()
    assert turns.first.wait(WAIT_S)
    cancel.set()
    turns.release.set()
    worker.join(WAIT_S)
    stopped = outcome.get(timeout=WAIT_S)
    assert isinstance(stopped, EmbeddingStoppedError), stopped
    assert turns.granted == 1  # set while it waited for its first turn: that turn embeds nothing, and none follows
    monkeypatch.undo()
    assert minilm.embed("still serves", cancel=threading.Event()).shape == (1, 384)


def test_cancel_is_an_event(minilm):
    with pytest.raises(TypeError, match="cancel"):
        minilm.embed("x", cancel=True)
    with pytest.raises(EmbeddingStoppedError):  # set before the call: no batch at all
        event = threading.Event()
        event.set()
        minilm.embed("x", cancel=event)


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path):
    with running(tmp_path_factory.mktemp("embed-gone") / "data", minilm_path) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/v1/embeddings", "/api/embed"])
def test_an_embedding_whose_client_went_away_stops(server, monkeypatch, path):
    assert httpx.post(server.base_url + path, json={"model": MINILM, "input": "load it"},
                      timeout=WAIT_S).status_code == 200
    model = server.app[MANAGER].get_inference("llama.cpp").engine.get(MINILM)
    turns, outcome, cancels = HeldTurns(), queue.Queue(), queue.Queue()
    monkeypatch.setattr(model, "_embed_turns", turns)
    real_embed = model.embed

    def recorded_embed(*args, **kwargs):
        cancels.put(kwargs["cancel"])
        try:
            result = real_embed(*args, **kwargs)
        except BaseException as exc:
            outcome.put(exc)
            raise
        outcome.put(result)
        return result
    monkeypatch.setattr(model, "embed", recorded_embed)

    async def ask_and_leave():
        async with aiohttp.ClientSession() as session:
            asking = asyncio.create_task(session.post(server.base_url + path, json={"model": MINILM, "input": INPUTS}))
            assert await asyncio.to_thread(turns.first.wait, WAIT_S)  # its first batch has the embedding context
            asking.cancel()  # the client goes away (its connection closes)
            with pytest.raises(asyncio.CancelledError):
                await asking
    asyncio.run(ask_and_leave())
    # the server notices (it polls the connection), cancels the await and sets the event; then the first turn goes on
    assert cancels.get(timeout=WAIT_S).wait(WAIT_S)
    turns.release.set()
    stopped = outcome.get(timeout=WAIT_S)
    assert isinstance(stopped, EmbeddingStoppedError), type(stopped)
    assert turns.granted == 1  # the turn it held embeds nothing, and none of the ~1000 inputs' other turns follows
    monkeypatch.undo()
    answer = httpx.post(server.base_url + path, json={"model": MINILM, "input": ["a", "b"]}, timeout=WAIT_S)
    assert answer.status_code == 200, answer.text
    vectors = answer.json()["data" if path == "/v1/embeddings" else "embeddings"]
    assert len(vectors) == 2 and np.isfinite(np.asarray(vectors[0]["embedding"] if isinstance(vectors[0], dict)
                                                                   else vectors[0])).all()
