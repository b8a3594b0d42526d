"""``BatchService``: batches of requests run in the background, for OpenAI's Batch API and Anthropic's Message
Batches alike (types: :mod:`jan.services.batch_types`; disk: :mod:`jan.store.batches`).

One worker task runs every batch's items one at a time, oldest batch first: a batch is work nobody waits on, so
it never takes more than one of a model's slots, and live requests (which take the others, and queue ahead of
nothing a batch holds) are not stalled behind it. Each item goes through the dialect's
:class:`~jan.services.batch_types.BatchRunner`, which answers it with the very services the live endpoint uses.

Each ended item is appended to the batch's ``results.jsonl`` before the next starts, so a stop or a crash loses
at most the item that was running: at the next :meth:`BatchService.start` every batch not ended is taken up
again where it stopped (its counts read back from its results), a cancel or an end that was under way is
finished, and a batch whose window passed meanwhile expires.

Several jan processes may serve one data folder: each batch is run by one of them, the one holding its lease
(:class:`jan.store.leases.Leases`, ``<data>/.live/<batch_id>.lock``, an OS lock the process's end drops however it
ends), taken when it creates the batch or takes it up. A process starting leaves the batches another live process
runs to it (before, both ran every item, and the batch's results held each twice); it takes one up when that
process ends (it looks every :data:`ELSEWHERE_POLL_S` while it has nothing of its own to run).

Nothing stays ``in_progress`` for good: a batch that cannot go on (its dialect's runner cannot be loaded, its end
cannot be written) ends ``failed``, each item it had not run ``errored`` with why, and the worker goes on with the
next.

Cancelling stops the running item (its generation is cancelled) and ends every item not run as ``canceled``;
a batch whose ``expires_at`` passes ends its items not run as ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jan.background import report_failure
from jan.store._util import now_s
from jan.store.batches import BATCHES_DIR, REQUESTS, RESULTS, BatchStore
from jan.store.errors import CorruptFileError, NotFoundError
from jan.store.ids import new_ulid
from jan.store.leases import LEASE_DIR_NAME, Leases

from .batch_types import (
    ENDED,
    Batch,
    BatchCounts,
    BatchItem,
    BatchRunner,
    BatchStateError,
    ItemOutcome,
    ItemResult,
    RunnerUnavailableError,
)

__all__ = ["BatchService", "DEFAULT_WINDOW_S"]

log = logging.getLogger("jan.services")

#: The one completion window both APIs take: 24 hours.
DEFAULT_WINDOW_S = 24 * 3600

#: Seconds between looks at the batches another process sharing the data folder runs, while the worker has nothing
#: of its own to run: one whose process has ended is taken up.
ELSEWHERE_POLL_S = 5.0


class BatchService:
    """Create, read, cancel and delete batches; run them in the background between :meth:`start` and
    :meth:`stop`. ``clock`` gives epoch seconds (tests move time forward to expire a batch)."""

    def __init__(self, store: BatchStore, *, clock: Callable[[], int] = now_s) -> None:
        self.store = store
        self._clock = clock
        self._runners: dict[str, BatchRunner] = {}
        self._prefixes: dict[str, str] = {}
        # every batch not ended, by id: its document as on disk (the worker and cancel keep both in step)
        self._active: dict[str, dict[str, Any]] = {}
        self._queue: deque[str] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._running: str | None = None  # the batch the worker is in
        self._item: asyncio.Future | None = None  # the item it runs
        self._stopping = False
        self._leases = Leases(store.root / LEASE_DIR_NAME)
        # batches not ended that another live process runs (it holds their lease): taken up when it ends
        self._elsewhere: set[str] = set()
        #: The batches whose lease is being let go (its file removed in a worker thread, :meth:`_let_go`): a take of
        #: one waits for it (taken while it goes, this process would run the batch with no lease on disk).
        self._releasing: dict[str, asyncio.Future] = {}
        # batches whose every item has ended, their end (completed, expired) being saved, each with the event its
        # _let_go sets: a cancel then has nothing left to stop and waits to answer as a cancel of the ended batch
        self._closing: dict[str, asyncio.Event] = {}

    def register(self, dialect: str, id_prefix: str, runner: BatchRunner) -> None:
        """Let ``dialect``'s batches (ids ``<id_prefix><ULID>``) run through ``runner``."""
        self._runners[dialect] = runner
        self._prefixes[dialect] = id_prefix

    # -- lifetime ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Take up every batch a stop left unended, then start the worker."""
        self._stopping = False
        self._wake = asyncio.Event()
        await asyncio.to_thread(self.store.sweep)
        for doc in await asyncio.to_thread(self.store.list):
            if doc.get("status") in ENDED or doc.get("dialect") not in self._runners:
                continue
            if await asyncio.to_thread(self.store.is_newer, doc["id"]):
                # this jan could run its items but never save its progress or end (it does not rewrite a newer
                # jan's file): it ran every item again at each start and stayed in_progress, with a traceback
                log.warning("batches: %s was written by a newer version of jan; left for it to run", doc["id"])
                continue
            if await self._hold(doc["id"]):
                await self._take_up(doc)
            else:
                self._elsewhere.add(doc["id"])
                log.info("batches: %s is run by another jan process on this data folder (taken up if it ends)",
                         doc["id"])
        # (told as it fails, not first at the stop that awaits it: batches wait in_progress meanwhile)
        self._worker = report_failure(asyncio.create_task(self._work(), name="batches"), "batches: the worker", log)

    async def _hold(self, batch_id: str) -> bool:
        """Take the batch's lease for this process (True; held already, too), or False: another live process
        holds it, and runs the batch."""
        releasing = self._releasing.get(batch_id)
        if releasing is not None:
            await asyncio.shield(releasing)
        try:
            return await asyncio.to_thread(self._leases.try_take, batch_id)
        except OSError as exc:  # a data folder that cannot hold a lock file (read-only): nothing to exclude
            log.warning("batches: no lease on %s (%s): run here all the same", batch_id, exc)
            return True

    def _let_go(self, batch_id: str) -> None:
        """The batch is no longer run here (ended, deleted, or this process stops): its lease goes."""
        self._active.pop(batch_id, None)
        self._elsewhere.discard(batch_id)
        self._closed(batch_id)
        # (its file removed in a worker thread, not on the event loop a slow disk would stall)
        done = self._leases.release_soon(batch_id)
        if done is not None:
            self._releasing[batch_id] = done

            def released(_: asyncio.Future) -> None:
                if self._releasing.get(batch_id) is done:
                    del self._releasing[batch_id]
            done.add_done_callback(released)

    async def _take_up(self, doc: dict[str, Any]) -> None:
        """Run a batch not ended (its lease held) from where it stopped."""
        results = await asyncio.to_thread(self.store.results, doc["id"])
        doc["counts"] = _counts_of(results)  # the results are the truth: a crash may have beaten the save
        self._active[doc["id"]] = doc
        self._enqueue(doc["id"])
        log.info("batches: taking up %s (%s, %d of %d items ended)", doc["id"], doc["status"], len(results),
                 doc["total"])

    async def _adopt(self, batch_id: str) -> dict[str, Any] | None:
        """Take up a batch another process ran, its lease now held here: its document as taken up, or None (it
        ended or went meanwhile: nothing to run)."""
        self._elsewhere.discard(batch_id)
        try:
            doc = await asyncio.to_thread(self.store.get, batch_id)
        except NotFoundError:
            doc = None
        if doc is None or doc.get("status") in ENDED or doc.get("dialect") not in self._runners or \
                await asyncio.to_thread(self.store.is_newer, batch_id):
            self._let_go(batch_id)
            return None
        await self._take_up(doc)
        return doc

    async def _adopt_orphans(self) -> None:
        """Take up the batches whose process, another one on this data folder, has ended (their lease is free)."""
        for batch_id in sorted(self._elsewhere):
            if batch_id not in self._active and await self._hold(batch_id):
                await self._adopt(batch_id)

    def _note(self, doc: Mapping[str, Any]) -> None:
        """A batch read from disk: one not ended, not run here, is another process's (made by it since this one
        started): watched, to be taken up if that process ends."""
        batch_id = doc.get("id")
        if (isinstance(batch_id, str) and batch_id not in self._active and doc.get("status") not in ENDED
                and doc.get("dialect") in self._runners and batch_id not in self._elsewhere):
            self._elsewhere.add(batch_id)
            if self._wake is not None:
                self._wake.set()  # (the worker, idle, starts looking)

    async def stop(self) -> None:
        """Stop the worker and the item it runs (that item runs again at the next start); nothing ends."""
        self._stopping = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for batch_id in list(self._active):  # another process on the data folder may take them up now
            self._let_go(batch_id)
        self._queue.clear()
        if self._releasing:  # (gone on return: a start after this one takes them anew)
            await asyncio.gather(*self._releasing.values(), return_exceptions=True)

    # -- the API -----------------------------------------------------------------------------------------
    async def create(self, dialect: str, endpoint: str, items: Sequence[tuple[str, Mapping[str, Any]]], *,
                     metadata: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
                     window_s: int = DEFAULT_WINDOW_S, errors: Mapping[str, Any] | None = None) -> Batch:
        """A new batch of ``items`` (``(custom_id, body)``, checked by the front end), queued to run. With
        ``errors`` (the front end refused its input) it is made ``failed`` instead, with no item."""
        if dialect not in self._runners:
            raise KeyError(f"no batch runner for {dialect!r}")
        now = self._clock()
        doc: dict[str, Any] = {
            "id": f"{self._prefixes[dialect]}{new_ulid()}", "dialect": dialect, "endpoint": endpoint,
            "status": "failed" if errors is not None else "in_progress", "created_at": now,
            "expires_at": now + window_s, "total": 0 if errors is not None else len(items),
            "counts": _counts_of([]), "times": {"failed_at": now} if errors is not None else {"in_progress_at": now},
            "metadata": dict(metadata) if metadata is not None else None,
            "extra": {**(extra or {}), **({"errors": dict(errors)} if errors is not None else {})},
            "usage": dict.fromkeys(_USAGE_COUNTS, 0)}
        records = [] if errors is not None else [{"custom_id": c, "body": dict(b)} for c, b in items]
        if errors is None:
            await self._hold(doc["id"])  # (a new id: no other process holds it) before another can read it unheld
        try:
            await asyncio.to_thread(self.store.create, doc, records)
        except BaseException:
            self._let_go(doc["id"])
            raise
        if errors is None:
            self._active[doc["id"]] = doc
            self._enqueue(doc["id"])
        return _batch(doc)

    async def get(self, batch_id: str) -> Batch:
        """The batch; :class:`NotFoundError` when there is none."""
        doc = self._active.get(batch_id)
        if doc is None:
            doc = await asyncio.to_thread(self.store.get, batch_id)
            self._note(doc)
        return _batch(doc)

    async def list(self, dialect: str) -> list[Batch]:
        """``dialect``'s batches, oldest first (their ids sort by creation)."""
        docs = await asyncio.to_thread(self.store.list)
        for doc in docs:
            self._note(doc)
        return [_batch(self._active.get(doc["id"], doc)) for doc in docs if doc.get("dialect") == dialect]

    async def results(self, batch_id: str) -> list[ItemResult]:
        """The ended items' results, in item order: one per item (the last written, if one was written twice). Of
        an ended batch, every item's: one whose line of ``results.jsonl`` is damaged or gone (edited by hand, cut
        short) is errored, saying so, never left out (the results then said fewer requests than the batch had)."""
        batch = await self.get(batch_id)  # (NotFoundError for none)
        records = await asyncio.to_thread(self.store.results, batch_id)
        total = batch.counts.total
        ended = {r.index: r for r in map(ItemResult.from_record, records) if 0 <= r.index < total}
        if batch.ended and len(ended) < total:
            runner = self._runners.get(batch.dialect)
            try:
                items = await asyncio.to_thread(self.store.items, batch_id)
            except OSError:
                items = []
            for index in set(range(total)) - set(ended):
                why = CorruptFileError(f"{BATCHES_DIR}/{batch_id}/{RESULTS}",
                                       f"the result of request {index + 1} of the batch's {total} is damaged or gone "
                                       "(the file was edited or cut short since it was written)", None)
                outcome = runner.failed(why) if runner is not None else None
                ended[index] = ItemResult(index, _custom_id(items[index] if index < len(items) else None), "errored",
                                          outcome.status_code if outcome else None,
                                          dict(outcome.body) if outcome else None)
        return [ended[i] for i in sorted(ended)]

    async def cancel(self, batch_id: str) -> Batch:
        """Cancel a batch: ``cancelling`` now, its running item stopped, then ``cancelled`` with every item not run
        ``canceled``. One cancelled or being cancelled is answered as it is; :class:`BatchStateError` for one
        ended otherwise, and for one whose every item has ended, its end being saved: it is waited for, then
        answered as the same cancel a moment later is (before, it was a 200 with the batch still ``finalizing``
        or ``in_progress``, which then ended ``completed``, and a 400 a moment later)."""
        closing = self._closing.get(batch_id)
        if closing is not None:
            await closing.wait()  # (a save or two, and the dialect's finalize: the batch's end on disk)
            if self._stopping:
                raise BatchStateError(f"Cannot cancel batch {batch_id!r}: every request of it has ended; the "
                                      "server stopped while its end was saved, which the next start finishes.")
        doc = self._active.get(batch_id)
        if doc is None and not (await self.get(batch_id)).ended and batch_id in self._elsewhere:
            # run by another process on this data folder, or by one that has ended: then it is taken up here
            if not await self._hold(batch_id):
                raise BatchStateError(f"Cannot cancel batch {batch_id!r} here: another jan process serving this "
                                      "data folder is running it; cancel it through that server.")
            doc = await self._adopt(batch_id)
        if doc is None or doc["status"] in ENDED:  # (one whose end is being saved is ended already)
            batch = await self.get(batch_id)
            if batch.status == "cancelled":
                return batch
            raise BatchStateError(f"Cannot cancel batch {batch_id!r}: it is already {batch.status}.")
        if doc["status"] != "in_progress" or doc.get("end"):
            if doc.get("end") not in (None, "cancelled"):
                # taken up after a stop in the middle of its end, which it waits its turn to finish: nothing is left
                # to cancel (a 200 "finalizing" that then read completed, before)
                raise BatchStateError(f"Cannot cancel batch {batch_id!r}: it is already {doc['end']} (its end is "
                                      "being saved).")
            return _batch(doc)  # being cancelled: nothing left to stop
        doc["status"] = "cancelling"
        doc["times"]["cancelling_at"] = self._clock()
        await self._save(doc)
        if self._running == batch_id:
            if self._item is not None:
                self._item.cancel()  # the worker sees the status and ends the batch
        else:
            with contextlib.suppress(ValueError):
                self._queue.remove(batch_id)
            await self._end_or_fail(doc)
        return _batch(self._active.get(batch_id, doc))

    async def delete(self, batch_id: str) -> None:
        """Delete an ended batch and its results; :class:`BatchStateError` for one still running (cancel it
        first), :class:`NotFoundError` for none."""
        running = batch_id in self._active and self._active[batch_id]["status"] not in ENDED
        if not running and batch_id not in self._active and not (await self.get(batch_id)).ended:
            # not run here: another process on this data folder runs it while it holds its lease
            running = await asyncio.to_thread(self._leases.is_live, batch_id)
        if running:
            raise BatchStateError(f"Batch {batch_id!r} is still processing; cancel it before deleting it.")
        await asyncio.to_thread(self.store.delete, batch_id)
        self._elsewhere.discard(batch_id)

    # -- the worker --------------------------------------------------------------------------------------
    def _enqueue(self, batch_id: str) -> None:
        self._queue.append(batch_id)
        if self._wake is not None:
            self._wake.set()

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            while not self._queue:
                self._wake.clear()
                if not self._elsewhere:
                    await self._wake.wait()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), ELSEWHERE_POLL_S)
                if not self._queue:
                    await self._adopt_orphans()
            batch_id = self._queue.popleft()
            doc = self._active.get(batch_id)
            if doc is None:
                continue
            self._running = batch_id
            try:
                await self._end_or_fail(doc, self._run)
            finally:
                self._running = None

    async def _end_or_fail(self, doc: dict[str, Any], run: Callable[[dict[str, Any]], Any] | None = None) -> None:
        """``run`` the batch (or end it), or, when that fails, end it failed: never left running, whatever failed
        (the disk, the dialect's runner that cannot be loaded, its finalize)."""
        try:
            await (run or self._end)(doc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the batch's failure, not the worker's: it goes on with the next
            if isinstance(exc, NotFoundError) and not await asyncio.to_thread(self.store.exists, doc["id"]):
                # its folder was removed behind jan's back (by hand): nothing is left to run, to end or to fail,
                # and no traceback says more than this line
                log.warning("batches: %s was removed from the data folder while it ran; it stops", doc["id"])
                self._let_go(doc["id"])
                return
            log.exception("batches: %s failed", doc["id"])
            await self._fail(doc, exc)

    async def _run(self, doc: dict[str, Any]) -> None:
        """Run the batch's items not ended yet, one at a time, then end it."""
        batch_id = doc["id"]
        runner = self._runners[doc["dialect"]]
        if doc["status"] == "in_progress" and not doc.get("end"):
            items = await self._items(doc)
            done = {r.get("index") for r in await asyncio.to_thread(self.store.results, batch_id)}
            todo = [index for index in range(len(items)) if index not in done]
            for index in todo:
                record = items[index]
                if doc["status"] != "in_progress" or self._clock() >= doc["expires_at"]:
                    break
                if record is None:  # its line is damaged or lost on disk: it fails, in the dialect's error shape
                    outcome = runner.failed(_damaged(doc, index))
                    if index == todo[-1]:
                        self._close(doc)
                    await self._record(doc, BatchItem(index, "", {}), outcome)
                    continue
                item = BatchItem(index, str(record.get("custom_id", "")), record.get("body") or {})
                self._item = asyncio.ensure_future(runner.execute(_batch(doc), item))
                try:
                    outcome: ItemOutcome | None = await self._item
                except asyncio.CancelledError:
                    if self._stopping or not self._item.cancelled():
                        raise  # jan stops: the item runs again at the next start
                    outcome = None  # the batch was cancelled while the item ran
                except RunnerUnavailableError:
                    raise  # nothing of the dialect can run: the batch fails whole (_end_or_fail), not item by item
                except Exception as exc:  # noqa: BLE001 - the runner's own failure: that item's error
                    log.exception("batches: %s item %d failed", batch_id, index)
                    outcome = runner.failed(exc)
                finally:
                    self._item = None
                if index == todo[-1] and outcome is not None:
                    self._close(doc)  # its last item answered: from here, nothing is left to cancel
                await self._record(doc, item, outcome)
        await self._end(doc)

    def _close(self, doc: Mapping[str, Any]) -> None:
        """The batch ends otherwise than cancelled, whatever comes now (its last item answered, or its end begun):
        a cancel from here waits for that end and is refused as the same cancel a moment later is. Not one a
        cancel already reached (``cancelling``: it ends cancelled, as that cancel answered)."""
        if doc["status"] != "cancelling" and doc["id"] in self._active:
            self._closing.setdefault(doc["id"], asyncio.Event())

    def _closed(self, batch_id: str) -> None:
        """The cancels :meth:`_close` held wait no more."""
        closing = self._closing.pop(batch_id, None)
        if closing is not None:
            closing.set()

    async def _record(self, doc: dict[str, Any], item: BatchItem, outcome: ItemOutcome | None) -> None:
        if outcome is None:
            result = ItemResult(item.index, item.custom_id, "canceled")
        else:
            result = ItemResult(item.index, item.custom_id, "succeeded" if outcome.status_code == 200 else "errored",
                                outcome.status_code, dict(outcome.body), f"batch_req_{new_ulid()}")
            usage = doc["usage"]
            for name in _USAGE_COUNTS:  # (a batch an older jan began has only some of them)
                usage[name] = int(usage.get(name) or 0) + getattr(outcome, name)
        await asyncio.to_thread(self.store.append_results, doc["id"], [result.to_record()])
        doc["counts"][result.outcome] += 1
        await self._save(doc)

    async def _end(self, doc: dict[str, Any]) -> None:
        """End the batch: items not run are ``canceled`` (a cancel) or ``expired`` (its window passed; while it
        still had time, none is left), the dialect finalizes it, and it takes its last status. Done again from the
        start after a crash in the middle (``doc["end"]`` says how it ends)."""
        end = doc.get("end") or ("cancelled" if doc["status"] == "cancelling" else
                                 "expired" if self._clock() >= doc["expires_at"] else "completed")
        if end != "cancelled":
            self._close(doc)
        batch_id = doc["id"]
        results = await asyncio.to_thread(self.store.results, batch_id)
        done = {r.get("index") for r in results}
        items = await self._items(doc)
        left = [ItemResult(i, _custom_id(r), "canceled" if end == "cancelled" else "expired")
                for i, r in enumerate(items) if i not in done]
        if left and end == "completed":
            self._closed(batch_id)
            return  # (not reached: the worker ends a batch once every item ran)
        if left:
            await asyncio.to_thread(self.store.append_results, batch_id, [r.to_record() for r in left])
            for result in left:
                doc["counts"][result.outcome] += 1
        doc["end"] = end
        if end == "completed":
            doc["status"] = "finalizing"
            doc["times"]["finalizing_at"] = self._clock()
        await self._save(doc)
        ended = sorted((ItemResult.from_record(r) for r in await asyncio.to_thread(self.store.results, batch_id)),
                       key=lambda r: r.index)
        extra = await self._runners[doc["dialect"]].finalize(_batch(doc), ended)
        final = {**doc, "status": end, "extra": {**doc["extra"], **extra},
                 "times": {**doc["times"], f"{end}_at": self._clock()}}
        # on disk before anyone reads it ended: a client that saw it completed, then a stop of jan (which cancels
        # the worker in this save), found it "finalizing" at the next start, finalized again
        await self._save(final)
        doc.update(final)
        self._let_go(batch_id)
        log.info("batches: %s %s (%s)", batch_id, end, doc["counts"])

    async def _fail(self, doc: dict[str, Any], exc: BaseException) -> None:
        """End a batch that cannot go on ``failed``, why in OpenAI's ``errors``, and each item it had not ended
        ``errored`` with the dialect's error for ``exc`` (Anthropic's batches, which have no failed status, end with
        every request's result said; OpenAI's count them failed). What the disk refuses of this stays as it was."""
        batch_id = doc["id"]
        try:
            outcome = self._runners[doc["dialect"]].failed(exc)
            done = {r.get("index") for r in await asyncio.to_thread(self.store.results, batch_id)}
            items = await self._items(doc)
            left = [ItemResult(i, _custom_id(r), "errored", outcome.status_code, dict(outcome.body),
                               f"batch_req_{new_ulid()}") for i, r in enumerate(items) if i not in done]
            if left:
                await asyncio.to_thread(self.store.append_results, batch_id, [r.to_record() for r in left])
                doc["counts"]["errored"] += len(left)
        except Exception:  # noqa: BLE001 - the batch ends failed all the same
            log.warning("batches: could not end the items of %s not run", batch_id, exc_info=True)
        errors = {"object": "list", "data": [
            {"code": "server_error", "message": f"The batch could not be run: {exc}", "param": None, "line": None}]}
        final = {**doc, "status": "failed", "times": {**doc["times"], "failed_at": self._clock()},
                 "extra": {**doc["extra"], "errors": errors}}
        # on disk before anyone reads it failed (as _end's): a client that saw it failed found it in progress there
        with contextlib.suppress(Exception):
            await self._save(final)
        doc.update(final)
        self._let_go(doc["id"])

    async def _items(self, doc: dict[str, Any]) -> list[dict[str, Any] | None]:
        """The batch's items, ``total`` of them (the count it was made with, which OpenAI's ``request_counts.total``
        is): ``None`` for each whose line of ``requests.jsonl`` is damaged, or lost (the file cut short by hand,
        or by a disk), so that it fails with why, and the batch never ends "completed" with fewer items ended
        than it had. Lines past ``total`` (added by hand) are no items of it."""
        items = await asyncio.to_thread(self.store.items, doc["id"])
        total = doc["total"]
        if len(items) != total:
            log.warning("batches: %s's %s holds %d items of its %d; %s", doc["id"], REQUESTS, len(items), total,
                        "the lines lost fail" if len(items) < total else "the lines past them are left out")
        return [*items[:total], *[None] * (total - len(items))]

    async def _save(self, doc: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.store.save, doc)
        except NotFoundError:
            self._let_go(doc["id"])  # deleted from disk behind jan's back: nothing to keep running


def _custom_id(record: Mapping[str, Any] | None) -> str:
    return "" if record is None else str(record.get("custom_id", ""))


def _damaged(doc: Mapping[str, Any], index: int) -> CorruptFileError:
    """Why item ``index`` of the batch cannot run: its line of ``requests.jsonl`` is no request any more."""
    return CorruptFileError(f"{BATCHES_DIR}/{doc['id']}/{REQUESTS}",
                            f"line {index + 1} of the batch's {doc['total']} requests is damaged or gone (the file "
                            "was edited or cut short since the batch was made); this request was not run", None)


def _counts_of(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    ended = {r.get("index"): r.get("outcome") for r in results  # (an item once, if written twice)
             if isinstance(r.get("index"), int) and not isinstance(r.get("index"), bool)}  # (a hand edit's: no item's)
    for outcome in ended.values():
        counts[outcome if outcome in counts else "errored"] += 1
    return counts


#: The token counts a batch's record sums over its items (:class:`ItemOutcome`'s, :class:`Batch`'s fields).
_USAGE_COUNTS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def _batch(doc: Mapping[str, Any]) -> Batch:
    counts = doc.get("counts") or {}
    usage = doc.get("usage") or {}
    return Batch(id=doc["id"], dialect=doc["dialect"], endpoint=doc["endpoint"], status=doc["status"],
                 created_at=doc["created_at"], expires_at=doc["expires_at"],
                 counts=BatchCounts(doc["total"], **{k: int(counts.get(k, 0)) for k in
                                                     ("succeeded", "errored", "canceled", "expired")}),
                 times=dict(doc.get("times") or {}), metadata=doc.get("metadata"), extra=dict(doc.get("extra") or {}),
                 **{name: int(usage.get(name) or 0) for name in _USAGE_COUNTS})

