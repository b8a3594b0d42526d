"""A big embedding request does not hold its model's embedding context from its first input to its last: it takes
turns of a few decodes, granted first come, first served, so a one-input request asked meanwhile is served after
one turn of the big one, not after all of it (a 6,000-input request made a one-line one wait 40 s, and every
embedding request behind it too). The order of turns is recorded; no timing is measured."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import jan
from jan.engine import model as model_module
from jan.engine.turns import Turns

WAIT_S = 300  # a guard against a hung test, never a measure


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model = jan.Model(minilm_path)
    yield model
    model.close()


class RecordedTurns(Turns):
    """Turns that note who had each, and hold the first one until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.granted: list[str] = []
        self.first = threading.Event()
        self.release = threading.Event()

    def __enter__(self):
        super().__enter__()
        self.granted.append(threading.current_thread().name)
        if len(self.granted) == 1:
            self.first.set()
            assert self.release.wait(WAIT_S)
        return self


def test_a_small_request_has_the_next_turn_of_a_big_one(minilm, monkeypatch):
    turns = RecordedTurns()
    monkeypatch.setattr(minilm, "_embed_turns", turns)
    big_inputs = [f"sentence {i} about rockets" for i in range(1000)]
    results: dict[str, np.ndarray] = {}
    big = threading.Thread(target=lambda: results.update(big=minilm.embed(big_inputs)), name="big")
    big.start()
    try:
        assert turns.first.wait(WAIT_S)  # the big request has its first turn (and keeps it for now)
        small = threading.Thread(target=lambda: results.update(small=minilm.embed("one line")), name="small")
        small.start()
        assert turns.wait_for_waiting(1, WAIT_S)  # the small one waits for a turn
    finally:
        turns.release.set()
    small.join(WAIT_S)
    big.join(WAIT_S)
    assert turns.granted[:2] == ["big", "small"], turns.granted[:5]
    assert turns.granted.count("big") > 2  # the big request was many turns
    # and the answers are what one call each gives
    assert results["big"].shape == (1000, 384)
    assert np.allclose(results["big"][[0, 999]], minilm.embed([big_inputs[0], big_inputs[999]]), atol=1e-3)
    assert np.allclose(results["small"], minilm.embed("one line"), atol=1e-3)


def test_turns_are_first_come_first_served():
    turns = Turns()
    order: list[int] = []
    entered = threading.Event()
    all_queued = threading.Event()  # set by the test once it has seen all three waiters queued

    def holder():
        with turns:
            entered.set()
            # (not `wait_for_waiting(3)` here: the holder could then give up its turn before the test's own
            # `wait_for_waiting(3)` looked, and the test would wait for a queue of three that had become two)
            assert all_queued.wait(WAIT_S)
            order.append(0)

    def waiter(n: int, queued_before: int):
        assert turns.wait_for_waiting(queued_before, WAIT_S)
        with turns:
            order.append(n)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert entered.wait(WAIT_S)
    for n in (1, 2, 3):  # each joins the queue after the ones before it
        t = threading.Thread(target=waiter, args=(n, n - 1))
        t.start()
        threads.append(t)
        assert turns.wait_for_waiting(n, WAIT_S)
    all_queued.set()
    for t in threads:
        t.join(WAIT_S)
    assert order == [0, 1, 2, 3]
    assert turns.waiting == 0


@pytest.mark.parametrize("pooling", [None, "none"])
def test_a_request_of_many_turns_equals_one_of_one(minilm, pooling):
    texts = [f"text {i} " * (1 + i % 20) for i in range(300)]
    chunks = list(model_module._embed_turn_chunks([minilm.tokenize(t) for t in texts], 512))
    assert len(chunks) > 1 and [t for c in chunks for t in c] == [minilm.tokenize(t) for t in texts]
    together = minilm.embed(texts, pooling=pooling)
    for i in (0, 150, 299):
        alone = minilm.embed(texts[i], pooling=pooling)[0]
        assert np.allclose(together[i], alone, atol=1e-3)  # (packed with others or alone: float noise only)


def test_a_bad_input_is_told_by_its_place_in_the_request(minilm):
    with pytest.raises(jan.ContextOverflowError, match=r"inputs\[700\] has \d+ tokens .* holds 512"):
        minilm.embed(["a"] * 700 + ["word " * 600])
    with pytest.raises(ValueError, match=r"inputs\[701\]: is empty"):
        minilm.embed([[101, 102]] * 701 + [[]])


@pytest.mark.parametrize("inputs, named", [("", "inputs[0]"), (["a", ""], "inputs[1]")])
def test_an_empty_string_is_refused_as_every_embedding_route_refuses_it(minilm, inputs, named):
    # jan.Model.embed("") answered a vector (of the [CLS] [SEP] the tokenizer adds alone), where /v1/embeddings and
    # llama-server's /embedding answer a 400: the library refuses it too, with the error a bad request raises
    with pytest.raises(jan.BadRequestError, match=r"empty string") as caught:
        minilm.embed(inputs)
    assert caught.value.param == named and caught.value.code == "invalid_value"
    with pytest.raises(jan.BadRequestError, match=r"inputs\[1\]: is empty") as caught:  # (no token ids: the same)
        minilm.embed([[101, 102], []])
    assert caught.value.param == "inputs[1]"
