"""A run's end is written whole, whatever arrives meanwhile (found by outside testing):

- a cancel that arrived as a run ended by itself cut the end short: the run ended in memory, ``in_progress`` on
  disk with its lease held, and the cancel waited its 30 s; after a restart the finished run read ``interrupted``;
- a thread deleted while its reply was being written left the reply's lease file behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from api_helpers import until
from cut_off_helpers import post, request
from server_helpers import start_server

from jan.services.runs import _whole


async def test_a_cancel_during_the_end_of_a_leg_waits_for_it_and_is_raised_after():
    steps: list[str] = []
    release = asyncio.Event()

    async def end() -> None:
        steps.append("status set")
        await release.wait()  # (the record being saved)
        steps.append("saved")

    async def leg() -> None:
        await _whole(end())

    task = asyncio.ensure_future(leg())
    await asyncio.wait_for(until_async(lambda: steps == ["status set"]), 60)
    task.cancel()  # the cancel arrives while the end is being written
    await asyncio.sleep(0)
    assert not task.done()  # the end is still being written: the leg waits for it
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    assert steps == ["status set", "saved"]  # written whole, then the cancel raised


async def until_async(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("ends"), [stories_path], n_ctx=4096)
    yield srv
    srv.stop()


def _leases(srv) -> list[str]:
    live = Path(srv.config.data_folder) / ".live"
    return sorted(p.name for p in live.glob("*.lock")) if live.is_dir() else []


def _busy(srv) -> bool:
    _, _, text = request(srv, "GET", "/metrics")
    return any(line.startswith("jan_slots_busy") and float(line.split()[-1]) > 0 for line in text.splitlines())


def test_a_thread_deleted_while_its_reply_is_written_leaves_no_lease(server):
    status, thread = post(server, "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
    assert status == 200, thread
    status, run = post(server, f"/v1/threads/{thread['id']}/runs", {
        "model": "stories260K", "background": True, "max_completion_tokens": 3000, "ignore_eos": True})
    assert status == 200, run
    until(lambda: any(n.startswith("msg_") for n in _leases(server)), "the reply is being written (its lease)")
    status, _, deleted = request(server, "DELETE", f"/v1/threads/{thread['id']}")
    assert status == 200 and deleted["deleted"], deleted
    until(lambda: not _busy(server), "the run's slot freed")
    until(lambda: not [n for n in _leases(server) if n.startswith("msg_")], "no reply lease left")
