"""The batch service (jan.services.batches) on its own, with a runner the test controls: items run in order and
their results persist, a cancel stops the running item and ends the rest ``canceled``, a batch past its window
expires its items not run, and a stop followed by a start (a restart, or a crash: a torn results line, a batch
caught mid-cancel or mid-end) takes every unended batch to its end. No model: the runner answers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from jan.services.batch_types import (Batch, BatchItem, BatchStateError, ItemOutcome, ItemResult,
                                      RunnerUnavailableError)
from jan.services.batches import BatchService
from jan.store.batches import BatchStore
from jan.store.errors import NotFoundError

WAIT_S = 60.0


class Runner:
    """Answers ``{"n": k}`` with ``{"twice": 2k}``; ``{"fail": true}`` with a 400; ``{"hold": true}`` waits until
    :attr:`release` is set (the item the test cancels or stops)."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.release = asyncio.Event()
        self.cancelled: list[str] = []
        self.finalized: list[tuple[str, int]] = []

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        self.started.put_nowait(item.custom_id)
        if item.body.get("hold"):
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.append(item.custom_id)
                raise
        if item.body.get("fail"):
            return ItemOutcome(400, {"error": "bad"})
        return ItemOutcome(200, {"twice": 2 * item.body.get("n", 0)}, input_tokens=1, output_tokens=2)

    def failed(self, exc: BaseException) -> ItemOutcome:
        return ItemOutcome(500, {"error": str(exc)})

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        self.finalized.append((batch.id, len(results)))
        return {"finalized": len(results)}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


async def _service(folder, runner: Runner, clock: Clock | None = None) -> BatchService:
    service = BatchService(BatchStore(folder), **({"clock": clock} if clock else {}))
    service.register("test", "tb_", runner)
    await service.start()
    return service


async def _restarted(folder) -> tuple[BatchService, Runner]:
    """A new service on ``folder`` (as after a restart), with its runner, which answers every item at once."""
    runner = Runner()
    runner.release.set()
    return await _service(folder, runner), runner


async def _ended(service: BatchService, batch_id: str) -> Batch:
    """The batch once ended: asked every 20 ms for up to WAIT_S."""
    async def poll() -> Batch:
        while not (batch := await service.get(batch_id)).ended:
            await asyncio.sleep(0.02)
        return batch
    return await asyncio.wait_for(poll(), WAIT_S)


async def test_items_run_in_order_and_results_persist(tmp_path):
    runner = Runner()
    service = await _service(tmp_path, runner)
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"fail": True}), ("c", {"n": 3})])
        assert batch.id.startswith("tb_") and batch.status == "in_progress" and batch.counts.total == 3
        batch = await _ended(service, batch.id)
        assert batch.status == "completed"
        assert (batch.counts.succeeded, batch.counts.errored, batch.counts.processing) == (2, 1, 0)
        assert (batch.input_tokens, batch.output_tokens) == (2, 4)
        assert batch.extra["finalized"] == 3 and {"in_progress_at", "finalizing_at", "completed_at"} <= set(batch.times)
        results = await service.results(batch.id)
        assert [(r.custom_id, r.outcome, r.status_code, r.body) for r in results] == [
            ("a", "succeeded", 200, {"twice": 2}), ("b", "errored", 400, {"error": "bad"}),
            ("c", "succeeded", 200, {"twice": 6})]
    finally:
        await service.stop()
    # read back from disk by a new service: the same batch, ended
    again = await _service(tmp_path, Runner())
    try:
        assert (await again.get(batch.id)).status == "completed"
        assert [b.id for b in await again.list("test")] == [batch.id]
        await again.delete(batch.id)
        with pytest.raises(NotFoundError):
            await again.get(batch.id)
    finally:
        await again.stop()


class SlowEndStore(BatchStore):
    """A store whose save of a batch's final status waits for :attr:`go` (a disk that takes its time)."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self.saving_end = threading.Event()
        self.go = threading.Event()

    def save(self, doc) -> None:
        if doc.get("status") == "completed":
            self.saving_end.set()
            assert self.go.wait(WAIT_S)
        super().save(doc)


async def test_a_batch_reads_ended_only_once_its_end_is_on_disk(tmp_path):
    """A client that saw a batch completed, then a stop of jan (which cancels the worker mid-save), must find it
    completed at the next start — not "finalizing", to be finalized again."""
    store = SlowEndStore(tmp_path)
    service = BatchService(store)
    service.register("test", "tb_", Runner())
    await service.start()
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1})])
        assert await asyncio.to_thread(store.saving_end.wait, WAIT_S)
        assert (await service.get(batch.id)).status == "finalizing"  # written is what it reads
        store.go.set()
        assert (await _ended(service, batch.id)).status == "completed"
    finally:
        store.go.set()
        await service.stop()
    again = await _service(tmp_path, Runner())
    try:
        assert (await again.get(batch.id)).status == "completed"
    finally:
        await again.stop()


async def test_cancel_stops_the_running_item_and_cancels_the_rest(tmp_path):
    runner = Runner()
    service = await _service(tmp_path, runner)
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"hold": True}), ("c", {"n": 3})])
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "b"  # b is running now
        with pytest.raises(BatchStateError):
            await service.delete(batch.id)  # still processing
        cancelling = await service.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        batch = await _ended(service, batch.id)
        assert batch.status == "cancelled" and "cancelled_at" in batch.times and "cancelling_at" in batch.times
        assert runner.cancelled == ["b"]
        assert [(r.custom_id, r.outcome) for r in await service.results(batch.id)] == [
            ("a", "succeeded"), ("b", "canceled"), ("c", "canceled")]
        assert (await service.cancel(batch.id)).status == "cancelled"  # cancelling again answers it as it is
    finally:
        await service.stop()


class HeldStore(BatchStore):
    """A store that holds one write until :attr:`go` is set: the last item's result (``"result"``: the item has
    answered, its result is being written) or the batch's final status (``"end"``: its end is being saved;
    ``"failed"``: its failure is)."""

    def __init__(self, folder, hold: str) -> None:
        super().__init__(folder)
        self.hold = hold
        self.held = threading.Event()
        self.go = threading.Event()

    def _wait(self) -> None:
        self.held.set()
        assert self.go.wait(WAIT_S)

    def append_results(self, batch_id, results) -> None:
        if self.hold == "result" and any(r.get("custom_id") == "last" for r in results):
            self._wait()
        super().append_results(batch_id, results)

    def save(self, doc) -> None:
        if (self.hold, doc.get("status")) in (("end", "completed"), ("failed", "failed")):
            self._wait()
        super().save(doc)


@pytest.mark.parametrize("hold", ["result", "end"])
async def test_a_cancel_after_the_last_item_answered_is_refused_as_one_a_moment_later(tmp_path, hold):
    """A cancel that comes once the last item has answered — its result or the batch's end still being written —
    has nothing left to stop: it waits for the end and is the 400 the same cancel a moment later is. It was a 200
    (the batch ``cancelling``, then ``cancelled`` with every item succeeded; or ``finalizing``, then ``completed``),
    and a 400 a moment later."""
    store = HeldStore(tmp_path, hold)
    service = BatchService(store)
    service.register("test", "tb_", Runner())
    await service.start()
    try:
        batch = await service.create("test", "/x", [("first", {"n": 1}), ("last", {"n": 2})])
        assert await asyncio.to_thread(store.held.wait, WAIT_S)
        cancel = asyncio.ensure_future(service.cancel(batch.id))
        for _ in range(5):
            await asyncio.sleep(0)  # (the cancel's first steps, while the write is held)
        store.go.set()
        with pytest.raises(BatchStateError, match="already completed"):
            await asyncio.wait_for(cancel, WAIT_S)
        ended = await _ended(service, batch.id)
        assert ended.status == "completed" and ended.counts.succeeded == 2, ended
        with pytest.raises(BatchStateError, match="already completed"):
            await service.cancel(batch.id)  # and a moment later the same
    finally:
        store.go.set()
        await service.stop()


async def test_cancel_of_a_queued_batch_and_of_an_ended_one(tmp_path):
    runner = Runner()
    service = await _service(tmp_path, runner)
    try:
        first = await service.create("test", "/x", [("a", {"hold": True})])
        queued = await service.create("test", "/x", [("q1", {"n": 1}), ("q2", {"n": 2})])
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
        cancelled = await service.cancel(queued.id)  # never started: ended at once
        assert cancelled.status == "cancelled" and cancelled.counts.canceled == 2
        runner.release.set()
        assert (await _ended(service, first.id)).status == "completed"
        with pytest.raises(BatchStateError):
            await service.cancel(first.id)
        assert runner.started.empty()  # the cancelled batch's items never ran
    finally:
        await service.stop()


class Unloadable(Runner):
    """A runner whose module could not be loaded while :attr:`broken` (as jan's deferred runners say it)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.tries = 0

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        if self.broken:
            self.tries += 1
            raise RunnerUnavailableError("its module could not be loaded")
        return await super().execute(batch, item)

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        if self.broken:
            raise RunnerUnavailableError("its module could not be loaded")
        return await super().finalize(batch, results)


async def test_a_runner_that_cannot_run_fails_its_batch_whole_and_the_next_one_runs(tmp_path):
    runner = Unloadable()
    service = await _service(tmp_path, runner)
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"n": 2}), ("c", {"n": 3})])
        batch = await _ended(service, batch.id)
        assert runner.tries == 1  # the batch failed at its first item, not item by item
        assert batch.status == "failed" and "failed_at" in batch.times
        assert "could not be loaded" in batch.extra["errors"]["data"][0]["message"]
        assert (batch.counts.errored, batch.counts.processing) == (3, 0)
        assert [(r.custom_id, r.outcome, r.status_code) for r in await service.results(batch.id)] == [
            ("a", "errored", 500), ("b", "errored", 500), ("c", "errored", 500)]
        assert "could not be loaded" in (await service.results(batch.id))[0].body["error"]
        runner.broken = False  # the worker went on: the next batch runs
        assert (await _ended(service, (await service.create("test", "/x", [("d", {"n": 4})])).id)).status \
            == "completed"
    finally:
        await service.stop()
    again = await _service(tmp_path, Runner())  # on disk: ended, nothing taken up again
    try:
        assert (await again.get(batch.id)).status == "failed" and not again._active
    finally:
        await again.stop()


async def test_a_failed_batch_reads_failed_only_once_its_end_is_on_disk(tmp_path):
    """As a completed one (above): it read failed while its save was still under way, and a stop then (or a reader of
    the disk: another process on the data folder) found it in progress."""
    store = HeldStore(tmp_path, "failed")
    service = BatchService(store)
    service.register("test", "tb_", Unloadable())
    await service.start()
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1})])
        assert await asyncio.to_thread(store.held.wait, WAIT_S)
        assert (await service.get(batch.id)).status == "in_progress"  # written is what it reads
        store.go.set()
        assert (await _ended(service, batch.id)).status == "failed"
        assert store.get(batch.id)["status"] == "failed"
    finally:
        store.go.set()
        await service.stop()


async def test_a_cancel_whose_end_fails_ends_the_batch_failed_not_cancelling(tmp_path):
    runner = Unloadable()
    runner.broken = False
    service = await _service(tmp_path, runner)
    try:
        first = await service.create("test", "/x", [("a", {"hold": True})])
        queued = await service.create("test", "/x", [("q1", {"n": 1})])
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
        runner.broken = True  # its finalize fails now
        ended = await service.cancel(queued.id)
        assert ended.status == "failed" and ended.counts.processing == 0 and ended.counts.canceled == 1
        runner.broken = False
        runner.release.set()
        assert (await _ended(service, first.id)).status == "completed"
    finally:
        await service.stop()


async def test_a_batch_past_its_window_expires_its_items_not_run(tmp_path):
    runner, clock = Runner(), Clock()
    service = await _service(tmp_path, runner, clock)
    try:
        batch = await service.create("test", "/x", [("a", {"hold": True}), ("b", {"n": 2}), ("c", {"n": 3})],
                                     window_s=100)
        assert batch.expires_at == clock.now + 100
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
        clock.now += 101  # the window passes while a runs
        runner.release.set()
        batch = await _ended(service, batch.id)
        assert batch.status == "expired" and "expired_at" in batch.times
        assert [(r.custom_id, r.outcome) for r in await service.results(batch.id)] == [
            ("a", "succeeded"), ("b", "expired"), ("c", "expired")]
    finally:
        await service.stop()


async def test_a_stop_mid_item_resumes_at_the_next_start(tmp_path):
    runner = Runner()
    service = await _service(tmp_path, runner)
    batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"hold": True}), ("c", {"n": 3})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "b"
    await service.stop()  # b was running: stopped, not ended
    assert runner.cancelled == ["b"]
    store = BatchStore(tmp_path)
    assert store.get(batch.id)["status"] == "in_progress"
    assert [r["custom_id"] for r in store.results(batch.id)] == ["a"]
    # a crash tore a half-written results line: it is not a result, and b runs again
    with open(tmp_path / "batches" / batch.id / "results.jsonl", "ab") as f:
        f.write(b'{"index": 1, "custom_id": "b", "outc')
    service, second = await _restarted(tmp_path)
    try:
        batch = await _ended(service, batch.id)
        assert batch.status == "completed" and batch.counts.succeeded == 3
        assert [(r.custom_id, r.outcome) for r in await service.results(batch.id)] == [
            ("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
        assert second.started.qsize() == 2  # only b and c ran again
    finally:
        await service.stop()


@pytest.mark.parametrize("status, end", [("cancelling", "cancelled"), ("finalizing", "completed")])
async def test_a_crash_mid_cancel_or_mid_end_is_finished_at_start(tmp_path, status, end):
    runner = Runner()
    service = await _service(tmp_path, runner)
    batch = await service.create("test", "/x", [("a", {"hold": True})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
    await service.stop()
    store = BatchStore(tmp_path)
    doc = store.get(batch.id)
    doc["status"] = status
    if status == "finalizing":  # as a crash after the last item and before its end was written leaves it
        store.append_results(batch.id, [ItemResult(0, "a", "succeeded", 200, {}).to_record()])
        doc["end"] = "completed"
    store.save(doc)
    service = await _service(tmp_path, Runner())
    try:
        batch = await _ended(service, batch.id)
        assert batch.status == end and batch.extra["finalized"] == 1
    finally:
        await service.stop()


async def test_a_cancel_of_a_batch_taken_up_in_the_middle_of_its_end_is_refused(tmp_path):
    """Taken up ``finalizing`` (a stop after its last request, before its end was written), it waits its turn to be
    ended: a cancel then is the 400 a cancel of the completed batch is, not a 200 with it finalizing."""
    runner = Runner()
    service = await _service(tmp_path, runner)
    await service.create("test", "/x", [("first", {"hold": True})])
    batch = await service.create("test", "/x", [("a", {"n": 1})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "first"
    await service.stop()
    store = BatchStore(tmp_path)
    doc = store.get(batch.id)
    store.append_results(batch.id, [ItemResult(0, "a", "succeeded", 200, {}).to_record()])
    doc["status"], doc["end"] = "finalizing", "completed"
    store.save(doc)
    runner = Runner()
    service = await _service(tmp_path, runner)
    try:
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "first"  # the worker is held by the first
        with pytest.raises(BatchStateError, match="already completed"):
            await service.cancel(batch.id)
        runner.release.set()
        assert (await _ended(service, batch.id)).status == "completed"
    finally:
        runner.release.set()
        await service.stop()


async def test_a_damaged_batch_file_is_left_out_and_left_in_place(tmp_path):
    service = await _service(tmp_path, Runner())
    batch = await service.create("test", "/x", [("a", {"n": 1})])
    await _ended(service, batch.id)
    await service.stop()
    (tmp_path / "batches" / batch.id / "batch.json").write_text("{not json")
    service = await _service(tmp_path, Runner())
    try:
        assert await service.list("test") == []
        with pytest.raises(NotFoundError):
            await service.get(batch.id)
        assert (tmp_path / "batches" / batch.id / "batch.json").read_text() == "{not json"  # (reads move nothing)
    finally:
        await service.stop()


@pytest.mark.parametrize("field,value", [("counts", 5), ("counts", {"succeeded": None}), ("counts", {"errored": "1"}),
                                         ("usage", []), ("usage", {"input_tokens": "7"}), ("times", {"completed_at": "x"}),
                                         ("metadata", "x"), ("end", 5)])
async def test_a_batch_file_with_a_field_of_another_type_is_left_out_not_a_500(tmp_path, field, value):
    """A hand edit's ``"counts": 5`` (or a count that is no whole number, token usage, times) was a 500 on the list
    and the batch's GET, for every batch listed beside it: the batch is now left out as damaged, the others listed."""
    service = await _service(tmp_path, Runner())
    batch = await service.create("test", "/x", [("a", {"n": 1})])
    other = await service.create("test", "/x", [("b", {"n": 2})])
    await _ended(service, batch.id)
    await _ended(service, other.id)
    await service.stop()
    path = tmp_path / "batches" / batch.id / "batch.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    service = await _service(tmp_path, Runner())
    try:
        assert [b.id for b in await service.list("test")] == [other.id]
        with pytest.raises(NotFoundError):
            await service.get(batch.id)
    finally:
        await service.stop()


async def test_a_batch_of_a_newer_jan_is_left_for_it_not_run_again(tmp_path, caplog):
    """A batch not ended whose batch.json a newer jan wrote: this one cannot save its progress (it never rewrites a
    newer jan's file), so it ran every item again at each start, then failed to save its end (a traceback) and stayed
    in_progress. It is now left alone, said once, and read as it stands."""
    import logging

    caplog.set_level(logging.INFO, logger="jan.services")
    runner = Runner()
    service = await _service(tmp_path, runner)
    batch = await service.create("test", "/x", [("a", {"hold": True}), ("b", {"n": 2})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
    await service.stop()
    path = tmp_path / "batches" / batch.id / "batch.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_schema_version": 99}))
    service, again = await _restarted(tmp_path)
    try:
        later = await service.create("test", "/x", [("c", {"n": 3})])
        await _ended(service, later.id)  # the worker ran what was after it, and not it
        assert again.started.qsize() == 1 and again.started.get_nowait() == "c"
        assert (await service.get(batch.id)).status == "in_progress"
        assert f"{batch.id} was written by a newer version of jan; left for it to run" in caplog.text
        assert json.loads(path.read_text())["_schema_version"] == 99
    finally:
        await service.stop()


async def test_a_batch_removed_by_hand_while_it_runs_stops_with_one_line_and_the_next_runs(tmp_path, caplog):
    """Its folder gone mid-item: the item's result has nowhere to go. The worker says so in one warning (before, an
    error with the store's traceback, then a failure it could not save), makes nothing again, and runs the next."""
    import logging
    import shutil

    caplog.set_level(logging.INFO, logger="jan.services")
    runner = Runner()
    service = await _service(tmp_path, runner)
    try:
        gone = await service.create("test", "/x", [("a", {"hold": True}), ("b", {"n": 2})])
        after = await service.create("test", "/x", [("c", {"n": 3})])
        assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
        shutil.rmtree(tmp_path / "batches" / gone.id)
        runner.release.set()
        batch = await _ended(service, after.id)
        assert batch.status == "completed" and batch.counts.succeeded == 1
        assert not (tmp_path / "batches" / gone.id).exists()
        with pytest.raises(NotFoundError):
            await service.get(gone.id)
        told = [r for r in caplog.records if gone.id in r.getMessage() and r.levelno >= logging.WARNING]
        assert len(told) == 1 and told[0].exc_info is None and "removed" in told[0].getMessage(), told
    finally:
        await service.stop()


async def test_an_openai_batch_finalized_again_after_a_stop_keeps_one_output_file_and_one_error_file(tmp_path):
    """A stop (or a crash) after the output file was written and before the batch's end was saved finalizes it again
    at the next start: the files written the first time are the batch's (before, a second pair was written and the
    first stayed in the Files API, named by no batch)."""
    from jan.server.dialects.openai_batches import OUTPUT_PURPOSE, OpenAIBatchRunner
    from jan.services.batches import _batch
    from jan.store.uploads import UploadStore

    uploads = UploadStore(tmp_path)
    runner = OpenAIBatchRunner(None, uploads)  # (finalize reads no app)
    batch = _batch({"id": "batch_01ABC", "dialect": "openai", "endpoint": "/v1/chat/completions",
                    "status": "finalizing", "created_at": 1, "expires_at": 2, "total": 2, "extra": {}})
    results = [ItemResult(0, "a", "succeeded", 200, {"id": "x"}, "batch_req_a"),
               ItemResult(1, "b", "errored", 400, {"error": {"message": "bad"}}, "batch_req_b")]
    first = await runner.finalize(batch, results)
    again = await runner.finalize(batch, results)
    assert again == first and first["output_file_id"] and first["error_file_id"]
    assert sorted(f["id"] for f in uploads.list(purpose=OUTPUT_PURPOSE).data) == sorted(first.values())


async def test_requests_cut_or_edited_by_hand_fail_their_items_never_a_short_completed(tmp_path):
    """A batch's ``requests.jsonl`` edited by hand (a line made into something else) or cut short (mid-line, its
    last lines gone) while the batch was not ended: its run read the requests that parsed, ran them, and ended
    "completed" with fewer items ended than its total (a line gone said nowhere, and an item after a damaged line
    took its place). Each item keeps its place; each damaged or lost one ends errored, saying why, so the counts add
    up to the total the batch was made with (OpenAI's ``request_counts.total``)."""
    runner = Runner()
    service = await _service(tmp_path, runner)
    batch = await service.create("test", "/x", [("a", {"hold": True}), ("b", {"n": 2}), ("c", {"n": 3}),
                                                ("d", {"n": 4}), ("e", {"n": 5})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
    await service.stop()  # (a did not end: it runs again)
    requests = tmp_path / "batches" / batch.id / "requests.jsonl"
    lines = requests.read_bytes().split(b"\n")
    assert len(lines) == 6 and lines[-1] == b""
    # b edited into what is no request, d cut mid-line, e gone
    requests.write_bytes(b"\n".join([lines[0], b"{not json", lines[2], lines[3][: len(lines[3]) // 2]]))
    service, _ = await _restarted(tmp_path)
    try:
        batch = await _ended(service, batch.id)
        assert batch.status == "completed"
        assert batch.counts.total == 5
        assert (batch.counts.succeeded, batch.counts.errored) == (2, 3)
        results = await service.results(batch.id)
        assert [(r.index, r.custom_id, r.outcome) for r in results] == [
            (0, "a", "succeeded"), (1, "", "errored"), (2, "c", "succeeded"), (3, "", "errored"), (4, "", "errored")]
        assert results[2].body == {"twice": 6}  # c answered as c, in its own place
        for damaged in (results[1], results[3], results[4]):
            assert damaged.status_code == 500
            assert "requests.jsonl" in damaged.body["error"] and "damaged or gone" in damaged.body["error"]
        assert batch.extra["finalized"] == 5
    finally:
        await service.stop()


def test_a_damaged_request_line_is_an_error_line_in_each_dialect_with_no_traceback(caplog):
    """A damaged item's outcome in each dialect: a server error naming the file, in the dialect's error shape (the
    error file of OpenAI's batch, an errored result of Anthropic's), and no traceback in the log."""
    from jan.server.dialects.anthropic_batches import AnthropicBatchRunner
    from jan.server.dialects.openai_batches import OpenAIBatchRunner, output_line
    from jan.services.batches import _damaged

    exc = _damaged({"id": "batch_x", "total": 3}, 2)
    openai = OpenAIBatchRunner.__new__(OpenAIBatchRunner).failed(exc)
    assert openai.status_code == 500
    assert openai.body["error"]["code"] == "data_folder_damaged"
    assert "batches/batch_x/requests.jsonl" in openai.body["error"]["message"]
    line = output_line(ItemResult(2, "", "errored", openai.status_code, dict(openai.body), "batch_req_x"))
    assert line["response"]["status_code"] == 500 and line["response"]["body"]["error"]["code"] == "data_folder_damaged"
    anthropic = AnthropicBatchRunner.__new__(AnthropicBatchRunner).failed(exc)
    assert anthropic.body["type"] == "error" and "requests.jsonl" in anthropic.body["error"]["message"]
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("damage", ["not_json", "index_a_string", "index_none", "cut_short", "index_of_none"])
async def test_results_edited_or_cut_by_hand_still_say_every_request(tmp_path, damage):
    """An ended batch's ``results.jsonl`` edited by hand or cut short: its results left the request out (fewer
    results than the batch's total) or failed whole (an ``index`` that is no number was a 500). Each request still
    has its result: one whose line is damaged or gone is errored, saying so."""
    service = await _service(tmp_path, Runner())
    try:
        batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"n": 2}), ("c", {"n": 3})])
        await _ended(service, batch.id)
        path = tmp_path / "batches" / batch.id / "results.jsonl"
        lines = path.read_bytes().split(b"\n")
        assert len(lines) == 4
        record = json.loads(lines[1])
        lines[1] = {"not_json": b"{not json", "index_a_string": json.dumps({**record, "index": "x"}).encode(),
                    "index_none": json.dumps({**record, "index": None}).encode(),
                    "index_of_none": json.dumps({**record, "index": 7}).encode(), "cut_short": b""}[damage]
        path.write_bytes(b"\n".join(lines[:2]) if damage == "cut_short" else b"\n".join(lines))
        results = await service.results(batch.id)
        wanted = [(0, "a", "succeeded"), (1, "b", "errored"), (2, "c", "succeeded")]
        if damage == "cut_short":
            wanted = [(0, "a", "succeeded"), (1, "b", "errored"), (2, "c", "errored")]
        assert [(r.index, r.custom_id, r.outcome) for r in results] == wanted
        assert results[1].status_code == 500 and "results.jsonl" in results[1].body["error"]
        assert "damaged or gone" in results[1].body["error"]
    finally:
        await service.stop()


async def test_a_results_line_of_no_item_is_not_counted_when_a_batch_is_taken_up(tmp_path):
    """A batch taken up at start counts its ended items from its results: a line edited by hand whose ``index`` is
    no item's (a string) was counted too, and the batch ended with more items counted than it had."""
    runner = Runner()
    service = await _service(tmp_path, runner)
    batch = await service.create("test", "/x", [("a", {"n": 1}), ("b", {"hold": True})])
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "a"
    assert await asyncio.wait_for(runner.started.get(), WAIT_S) == "b"
    await service.stop()
    with open(tmp_path / "batches" / batch.id / "results.jsonl", "ab") as f:
        f.write(json.dumps({"index": "x", "custom_id": "z", "outcome": "succeeded"}).encode() + b"\n")
    service, _ = await _restarted(tmp_path)
    try:
        batch = await _ended(service, batch.id)
        assert batch.status == "completed"
        assert (batch.counts.total, batch.counts.succeeded, batch.counts.errored) == (2, 2, 0)
    finally:
        await service.stop()
