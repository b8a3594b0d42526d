"""Two ``jan`` servers on one data folder: each batch is run by one of them, never by both.

A server starting took up every batch not ended on disk, those another live server was running too: both ran every
item, the batch's ``results.jsonl`` held each twice (its results listed 2N answers for N requests) and its counts
lost some. Now the server running a batch holds its lease (an OS lock its end drops, however it ends); another
server leaves the batch to it — it refuses to cancel or delete it, naming why — and takes it up once that server
is gone, so every item still ends exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest
from api_helpers import Client, ServerProcess

pytestmark = pytest.mark.timeout(600)

#: Generous bound on any wait here: a busy 2-core machine.
BOUND = 300
N = 40


def _batch(tag: str) -> dict:
    return {"requests": [{"custom_id": f"{tag}{i}", "params": {
        "model": "stories260K", "max_tokens": 200, "messages": [{"role": "user", "content": "Once upon a time"}]}}
        for i in range(N)]}


async def _until(api: Client, batch_id: str, done, what: str) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while True:
        batch = await api.ok("GET", f"/v1/messages/batches/{batch_id}")
        if done(batch):
            return batch
        assert loop.time() < deadline, f"{what}: {batch}"
        await asyncio.sleep(0.1)


async def _first_item_ended(data, batch_id: str) -> None:
    """Until the batch's first item has ended (on disk: Anthropic's counts stay 0 until the whole batch ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    results = data / "batches" / batch_id / "results.jsonl"
    while not (results.exists() and results.read_bytes().count(b"\n") >= 1):
        assert loop.time() < deadline, "the first item"
        await asyncio.sleep(0.05)


async def _results(api: Client, batch_id: str) -> list[dict]:
    status, text = await api.get(f"/v1/messages/batches/{batch_id}/results")
    assert status == 200, text
    return [json.loads(line) for line in (text if isinstance(text, str) else json.dumps(text)).splitlines() if line]


async def test_a_batch_another_server_runs_is_left_to_it_and_taken_up_when_it_is_gone(tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path) as one:
        async with Client(one.base_url) as api_one:
            first = (await api_one.ok("POST", "/v1/messages/batches", _batch("a")))["id"]
            await _first_item_ended(data, first)
            os.kill(one.proc.pid, signal.SIGSTOP)  # alive (its leases held), running nothing meanwhile
            try:
                with ServerProcess(data, stories_path) as two:
                    async with Client(two.base_url) as api_two:
                        # the batch is the first server's: the second one neither runs, cancels nor deletes it
                        assert (await api_two.ok("GET", f"/v1/messages/batches/{first}"))["processing_status"] == \
                            "in_progress"
                        status, body = await api_two.post(f"/v1/messages/batches/{first}/cancel")
                        assert status == 400 and "another jan process" in body["error"]["message"], body
                        status, body = await api_two.delete(f"/v1/messages/batches/{first}")
                        assert status == 400 and "still processing" in body["error"]["message"], body

                        # the first server ends (SIGKILL: no stop of its own): the second takes the batch up
                        one.kill()
                        batch = await _until(api_two, first, lambda b: b["processing_status"] == "ended",
                                             "the batch taken up")
                        assert batch["request_counts"]["succeeded"] == N, batch
                        results = await _results(api_two, first)
                        assert sorted(r["custom_id"] for r in results) == sorted(f"a{i}" for i in range(N))
                        assert {r["result"]["type"] for r in results} == {"succeeded"}
            finally:
                one.kill()


async def test_a_batch_made_by_another_server_after_this_one_started_is_taken_up_when_it_is_gone(
        tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path) as one, ServerProcess(data, stories_path) as two:
        async with Client(one.base_url) as api_one, Client(two.base_url) as api_two:
            made = (await api_one.ok("POST", "/v1/messages/batches", _batch("b")))["id"]
            await _first_item_ended(data, made)
            os.kill(one.proc.pid, signal.SIGSTOP)
            # the second server sees it (a read); it is the first one's while that one lives
            status, body = await api_two.post(f"/v1/messages/batches/{made}/cancel")
            assert status == 400 and "another jan process" in body["error"]["message"], body
            one.kill()
            batch = await _until(api_two, made, lambda b: b["processing_status"] == "ended", "the batch taken up")
            assert batch["request_counts"]["succeeded"] == N, batch
            assert sorted(r["custom_id"] for r in await _results(api_two, made)) == sorted(f"b{i}" for i in range(N))
