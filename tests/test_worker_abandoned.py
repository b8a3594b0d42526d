"""``worker_pool.undone_if_abandoned``: a worker's call that starts something (engine requests submitted once a
request's images are encoded), its await cancelled (the client left). What the call still returns is undone; a call
still waiting for a worker is never run; one not cancelled is answered as ever."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jan.services.worker_pool import WorkerPool, undone_if_abandoned

WAIT_S = 60  # (bounds against a hang, never measures)


async def test_what_a_call_returns_after_its_await_was_cancelled_is_undone():
    pool, started, gate, undone = WorkerPool("t-abandon", 1), threading.Event(), threading.Event(), []
    undid = threading.Event()

    def submit() -> str:
        started.set()
        assert gate.wait(WAIT_S)
        return "requests"

    def undo(result: str) -> None:
        undone.append(result)
        undid.set()

    task = asyncio.ensure_future(undone_if_abandoned(pool.run, submit, undo=undo))
    assert await asyncio.to_thread(started.wait, WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    assert await asyncio.to_thread(undid.wait, WAIT_S)
    assert undone == ["requests"]


async def test_a_call_still_waiting_for_a_worker_is_never_run_and_one_answered_is_kept():
    pool, gate, ran, undone = WorkerPool("t-queued", 1), threading.Event(), [], []
    busy = asyncio.ensure_future(pool.run(gate.wait, WAIT_S))  # the one worker, taken
    queued = asyncio.ensure_future(undone_if_abandoned(pool.run, lambda: ran.append("queued"), undo=undone.append))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    gate.set()
    assert await busy
    assert await undone_if_abandoned(pool.run, lambda: "kept", undo=undone.append) == "kept"  # (after the queued)
    assert ran == [] and undone == []
