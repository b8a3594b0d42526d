"""A run whose thread goes while it runs, or which a stop of jan meets as it starts, still ends: its stream ends with a
terminal event and ``[DONE]``, its lease and its reply's are released, no reply is left ``pending``, and the thread's
folder does not come back. Every wait here is on an event (a leg's end, a gate), bounded generously."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest
from api_helpers import Client, parse_sse, running
from jan.server.keys import SERVICES
from jan.services import run_records
from jan.services.runs import RunRequest
from jan.services.types import SamplingOptions
from jan.store.leases import LEASE_DIR_NAME

pytestmark = pytest.mark.timeout(600)

WAIT_S = 120.0
TERMINAL = ("thread.run.completed", "thread.run.incomplete", "thread.run.cancelled", "thread.run.failed", "error")


@pytest.fixture
def server(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:
        yield srv


def _leases(data: Path) -> list[str]:
    live = data / LEASE_DIR_NAME
    # (the folder's guard, ``.guard``, is no lease: it stays)
    return sorted(p.name for p in live.glob("*.lock")) if live.is_dir() else []


async def _new_thread(api: Client) -> str:
    thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
    return thread["id"]


def _ended_whole(run) -> None:
    names = [name for name, _data in run.events]
    assert names[-1] == "done" and names[-2] in TERMINAL, names
    assert run.finished.is_set() and not run.active, run.status


def test_a_leg_stopped_before_its_task_ran_still_ends_the_run(server, tmp_path):
    """A cancel (a deleted thread, a stop of jan) that comes after a leg was launched but before its task ran a line:
    the leg hears it before its first turn, rather than be cancelled unstarted and never end the run."""
    runs = server.app[SERVICES].runs

    async def scenario():
        async with Client(server.base_url) as api:
            tid = await _new_thread(api)
            run = await runs.start(RunRequest(thread_id=tid, sampling=SamplingOptions(max_tokens=30)))
            leg = runs.launch(run)  # as the route launches it: not started yet
            runs._cancel_leg(run)  # what POST .../cancel and a deleted thread do to a leg
            await asyncio.wait([leg], timeout=WAIT_S)  # (the leg may end cancelled: a stop cancels its task)
            await asyncio.wait_for(run.finished.wait(), WAIT_S)
            _ended_whole(run)
            assert run.status == "cancelled", run.status

            # the leg's task itself cancelled before its first step (its handler cancelled): ended all the same
            run = await runs.start(RunRequest(thread_id=tid, sampling=SamplingOptions(max_tokens=30)))
            leg = runs.launch(run)
            leg.cancel()
            await asyncio.wait([leg], timeout=WAIT_S)
            await asyncio.wait_for(run.finished.wait(), WAIT_S)
            _ended_whole(run)
            assert run.status == "cancelled", run.status
            messages = (await api.ok("GET", f"/v1/threads/{tid}/messages?all=true"))["data"]
            assert not any(m.get("status") == "in_progress" for m in messages), messages

    server.call(scenario(), timeout=WAIT_S * 2)
    assert _leases(tmp_path / "data") == []


def test_a_thread_deleted_as_its_run_starts_ends_the_run(server, tmp_path):
    """The thread deleted while its leg is launched (each await of the leg racing the deletion): the run ends
    whichever store write finds the thread gone first, its leases released, its folder not written again."""
    runs = server.app[SERVICES].runs
    data = tmp_path / "data"

    async def scenario(tid: str) -> None:
        run = await runs.start(RunRequest(thread_id=tid, sampling=SamplingOptions(max_tokens=30)))
        leg = runs.launch(run)
        await runs.conversations().delete_thread(tid)
        await asyncio.wait([leg], timeout=WAIT_S)  # (the leg may end cancelled: a stop cancels its task)
        await asyncio.wait_for(run.finished.wait(), WAIT_S)
        _ended_whole(run)

    async def new_thread() -> str:
        async with Client(server.base_url) as api:
            return await _new_thread(api)

    for _ in range(3):
        tid = server.call(new_thread())
        server.call(scenario(tid), timeout=WAIT_S * 2)
        assert not (data / "threads" / tid).exists()
    assert _leases(data) == []


async def test_a_streamed_run_whose_thread_is_deleted_ends_its_stream(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = await _new_thread(api)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.base_url}/v1/threads/{tid}/runs", json={
                    "stream": True, "max_tokens": 1500, "ignore_eos": True},
                    timeout=aiohttp.ClientTimeout(total=WAIT_S)) as resp:
                seen = b""
                async for line in resp.content:
                    seen += line
                    if line.startswith(b"event: thread.message.delta"):
                        break
                await api.ok("DELETE", f"/v1/threads/{tid}")
                seen += await resp.content.read()  # the stream ends (bounded by the session's timeout)
        events = parse_sse(seen.decode())
        names = [name for name, _data in events]
        assert names[-1] == "done" and "thread.run.cancelled" in names, names[-5:]
    assert _leases(tmp_path / "data") == []


def test_a_record_whose_thread_vanishes_mid_write_releases_its_lease(tmp_path, monkeypatch):
    """The thread's folder removed between save_record's look at it and its write: no error, no lease left, and the
    folder is not made again around the record."""
    data = tmp_path / "data"
    thread = data / "threads" / "thread_1"
    (thread / "runs").mkdir(parents=True)
    real_write = run_records.atomic_write_bytes

    def vanishing(path, payload):
        shutil.rmtree(thread)
        real_write(path, payload)

    monkeypatch.setattr(run_records, "atomic_write_bytes", vanishing)
    record = {"id": "run_abc", "thread_id": "thread_1", "status": "in_progress"}
    run_records.save_record(data, record)
    assert _leases(data) == []
    assert not thread.exists()
    monkeypatch.setattr(run_records, "atomic_write_bytes", real_write)
    run_records.save_record(data, {**record, "status": "cancelled"})  # gone already: skipped
    assert _leases(data) == [] and not thread.exists()

    # a cancel asked of another process as the thread goes: not written around a folder made again either
    (thread / "runs").mkdir(parents=True)
    monkeypatch.setattr(run_records, "atomic_write_bytes", vanishing)
    run_records.ask_cancel(data, "thread_1", "run_abc")
    assert not thread.exists()


def test_a_run_starting_as_jan_stops_is_interrupted_with_its_reply_saved(server, tmp_path):
    """The shutdown path SIGTERM and SIGINT both take (on_shutdown: interrupt_all) meets a run past its checks but
    not yet claimed: the stop waits for it and ends it ``interrupted``, its reply ``stopped``, never ``pending``."""
    runs = server.app[SERVICES].runs
    gate, entered = asyncio.Event(), asyncio.Event()
    resolve = runs.models.resolve

    async def held_resolve(model_id):
        entered.set()
        await gate.wait()
        return await resolve(model_id)

    async def scenario() -> None:
        async with Client(server.base_url) as api:
            tid = await _new_thread(api)
        runs.models.resolve = held_resolve
        starting = asyncio.ensure_future(runs.start(RunRequest(thread_id=tid, sampling=SamplingOptions(max_tokens=30))))
        await asyncio.wait_for(entered.wait(), WAIT_S)
        stopping = asyncio.ensure_future(runs.interrupt_all(grace=WAIT_S, bound=WAIT_S * 2))
        await asyncio.sleep(0)  # interrupt_all ran up to its wait for the start
        assert runs._stopping
        gate.set()
        run = await asyncio.wait_for(starting, WAIT_S)
        leg = runs.launch(run)  # as the route launches it
        assert await asyncio.wait_for(stopping, WAIT_S * 3) == 1
        await asyncio.wait([leg], timeout=WAIT_S)  # (the leg may end cancelled: a stop cancels its task)
        await asyncio.wait_for(run.finished.wait(), WAIT_S)
        assert run.status == "interrupted" and run.finished.is_set(), run.status
        assert [name for name, _data in run.events][-2:] == ["error", "done"]
        message = await runs.conversations().get_message(tid, run.message["id"])
        assert message["status"] == "stopped", message

    server.call(scenario(), timeout=WAIT_S * 4)
    assert _leases(tmp_path / "data") == []
