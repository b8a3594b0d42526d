"""Several readers of one jan.Request, whatever the timing: result()/aresult() called at once all get the whole
Completion (as a future's result()), and each chunk a plain iteration takes goes to that reader only.

The engine's events come from a scripted native queue here, so the timing a loaded machine makes by chance (the whole
generation already queued when the readers start, one of them draining the end before the other wakes) is the test's
own, every run.
"""

from __future__ import annotations

import asyncio
import os
import threading
from types import SimpleNamespace

from jan.engine.request import Request


class _Native:
    """The native request's queue, with every event of a 5-token generation already in it."""

    def __init__(self, n: int = 5):
        self._events = [self._event([i], final=False) for i in range(n)] + [self._event([], final=True)]
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        os.write(self._write, b"x")  # readable: the events are in

    @staticmethod
    def _event(ids, *, final):
        return SimpleNamespace(final=final, logprobs=None, token_ids=ids, prompt_logprobs=None, text="".join(
            f"<{i}>" for i in ids), cached_tokens=0, finish_reason=SimpleNamespace(name="length"), usage=None,
            error=None, stop=None, id_slot=0, progress=None)  # (every field the engine's Event has)

    def drain(self, _logprobs):
        with self._lock:
            events, self._events = self._events, []
        return events

    def wait(self, _timeout, logprobs):
        return self.drain(logprobs)

    wait_final = wait

    def fileno(self):
        return self._read

    def cancel(self):
        pass

    def close(self):
        os.close(self._read)
        os.close(self._write)


def _request(native):
    model = SimpleNamespace(_room=SimpleNamespace(notify=lambda: None))
    return Request(native, model, pieces=lambda t: (str(t), b""), logprobs=False)


def test_two_aresults_at_once_both_get_the_whole_completion_when_one_drains_the_end_first():
    native = _Native()
    request = _request(native)

    async def twice():
        return await asyncio.wait_for(asyncio.gather(request.aresult(), request.aresult()), 30)

    try:
        first, second = asyncio.run(twice())
    finally:
        native.close()
    # the first drained every event before the second looked: both get the whole completion, as they do when the
    # events come one by one (the second got the first's whole result here, and only its share otherwise)
    assert first.token_ids == second.token_ids == [0, 1, 2, 3, 4]
    assert first.finish_reason == second.finish_reason == "length"
    assert asyncio.run(request.aresult()) is first


def test_two_threads_calling_result_at_once_both_get_the_whole_completion():
    native = _Native()
    request = _request(native)
    results: list = [None, None]
    start = threading.Barrier(2)

    def call(k):
        start.wait(30)
        results[k] = request.result()

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    native.close()
    assert not any(t.is_alive() for t in threads)
    assert results[0] is results[1] and results[0].token_ids == [0, 1, 2, 3, 4]
    assert request.result() is results[0]


def test_a_result_asked_again_after_it_returned_is_the_same_completion():
    native = _Native()
    request = _request(native)
    try:
        first = request.result()
        assert request.result() is first
        assert asyncio.run(request.aresult()) is first
    finally:
        native.close()


def test_result_after_an_iteration_took_some_chunks_holds_the_rest():
    native = _Native()
    request = _request(native)
    try:
        taken = [next(request), next(request)]
        assert [t for c in taken for t in c.token_ids] == [0, 1]
        assert request.result().token_ids == [2, 3, 4]
    finally:
        native.close()
