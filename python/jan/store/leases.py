"""Which ``pending`` messages a live process is still writing.

A reply being generated is saved as a ``pending`` message and finished later
(``ready``/``stopped``/``error``). If the process dies in between, nothing
would ever finish it. So the process that creates a pending message also
takes a *lease* on it: ``<data>/.live/<message_id>.lock``, held with an OS
file lock (flock/LockFileEx, through ``filelock``) until the message reaches
a final status. The OS drops the lock when the process dies, however it dies
(SIGKILL included), so any process sharing the folder can tell a live reply
(lease held) from an orphaned one (no lease, or a lease nobody holds) — and
never mistakes another live process's reply for an orphan, which a PID or a
heartbeat could.

A lease file nobody holds is removed by whoever finds it so (:meth:`Leases.is_live`, :meth:`Leases.sweep`): a
lease file is therefore opened and locked, and found free and removed, only under one more OS lock, the folder's
*guard* (``<data>/.live/.guard``, never removed). Without it a process sweeping at its start could find a lease
free (its taker had made the file but not locked it yet), let it go, and remove the file just after the taker locked
it: the taker then held a lock on a file no longer there, and every other process read its live reply (or batch, or
run) as an orphan, finished it as interrupted, or took it up and ran it a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from jan.background import report_failure

LEASE_DIR_NAME = ".live"
_SUFFIX = ".lock"
#: The guard's file (see the module's doc): not ``*.lock``, so no sweep takes it for a lease.
GUARD_NAME = ".guard"
#: Seconds a take waits for a lease another process holds (it ends a reply, or gives a batch up).
TAKE_WAIT = 5.0
#: Seconds anyone waits for the guard: each holder holds it for one open-and-lock (or probe-and-remove) of a file.
GUARD_WAIT = 30.0

# The leases this process holds, by lock file path: shared by every Leases object, so any
# DataFolder opened on the same folder in this process can finish (release) a reply.
_HELD: dict[str, filelock.BaseFileLock] = {}
_MUTEX = threading.Lock()

logger = logging.getLogger("jan.store")


class Leases:
    """Leases on message ids, under ``directory`` (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the folder's guard (see the module's doc) for the block: other threads and processes wait
        (``filelock.Timeout`` after :data:`GUARD_WAIT` s). A folder that cannot hold its file (read-only: nobody
        takes a lease there) is not guarded."""
        # a lock object of its own each time: flock excludes two open files of one process too, so threads of this
        # process wait on each other as other processes do
        guard = filelock.FileLock(str(self.directory / GUARD_NAME), thread_local=False)
        try:
            self.directory.mkdir(exist_ok=True)
            guard.acquire(timeout=GUARD_WAIT)
        except filelock.Timeout:
            raise
        except OSError:
            yield
            return
        try:
            yield
        finally:
            guard.release()

    def _lock_now(self, path: str) -> filelock.BaseFileLock | None:
        """The lease file ``path`` locked, made if need be, under the guard (so no sweep removes it between the
        two); ``None`` when another process holds it."""
        lock = filelock.FileLock(path, thread_local=False)
        with self._guard():
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                return None
        return lock

    def take(self, key: str) -> None:
        """Hold the lease on ``key`` (a validated id) until :meth:`release`; a no-op if held already. Waits up to
        :data:`TAKE_WAIT` s for another process holding it (``filelock.Timeout``)."""
        path = str(self._path(key))
        with _MUTEX:
            if path in _HELD:
                return
            self.directory.mkdir(exist_ok=True)
            # tried again and again rather than waited on: a wait on the file's lock, outside the guard, could end
            # holding a file a sweep removed meanwhile; inside it, it would stop every sweep and every take
            deadline = time.monotonic() + TAKE_WAIT
            pause = 0.005
            while (lock := self._lock_now(path)) is None:
                if time.monotonic() >= deadline:
                    raise filelock.Timeout(path)
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
            _HELD[path] = lock

    def try_take(self, key: str) -> bool:
        """Hold the lease on ``key`` if no other live process does (True, held now or already), without waiting;
        False when another process holds it."""
        path = str(self._path(key))
        with _MUTEX:
            if path in _HELD:
                return True
            self.directory.mkdir(exist_ok=True)
            lock = self._lock_now(path)
            if lock is None:
                return False
            _HELD[path] = lock
            return True

    def release(self, key: str) -> None:
        """Give the lease on ``key`` up (a no-op unless this process holds it)."""
        path = str(self._path(key))
        with _MUTEX:
            lock = _HELD.pop(path, None)
        if lock is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.unlink(path)  # first: a prober that opened it meanwhile finds it free, which is now true
        finally:
            lock.release()  # (this process's hold goes whatever the removal raised)

    def release_soon(self, key: str) -> "asyncio.Future[None] | None":
        """:meth:`release` in a worker thread of the running event loop (it unlinks a file: never on the loop),
        started at once and not waited for (a ``finally`` a cancel could cut short, a callback may start it);
        ``OSError`` ignored, any other failure logged as a warning naming the lease (nobody awaits the future: it
        was told only by asyncio's "exception was never retrieved", or not at all at a stop). The future it is done
        by (its callbacks run however it ended); ``None`` where it was done here (no loop, or the loop's workers shut
        down)."""
        what = f"releasing the lease on {key!r} in {self.directory}"

        def release() -> None:
            with contextlib.suppress(OSError):
                self.release(key)

        try:
            done = asyncio.get_running_loop().run_in_executor(None, release)
        except RuntimeError:  # (no running loop, or its executor shut down: nothing left to stall)
            try:
                release()
            except Exception as exc:  # noqa: BLE001 - said as the worker's failure is; the caller goes on
                logger.warning("%s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
            return None
        return report_failure(done, what, logger)

    def holds(self, key: str) -> bool:
        """Whether this process holds the lease on ``key``."""
        with _MUTEX:
            return str(self._path(key)) in _HELD

    def sweep(self) -> list[str]:
        """Remove the lease files nobody holds (left by dead processes); returns their keys (what a process that
        died was doing: its records are ended by whoever reads them, :meth:`jan.store.messages.MessageStore.end_orphans`)."""
        removed = []
        with contextlib.suppress(OSError):
            with os.scandir(self.directory) as entries:  # (closed when an error stops the sweep early)
                for entry in entries:
                    if entry.name.endswith(_SUFFIX) and not self.is_live(key := entry.name[: -len(_SUFFIX)]):
                        removed.append(key)
        return removed

    def is_live(self, key: str) -> bool:
        """Whether some process (this one included) holds the lease on ``key``."""
        if self.holds(key):
            return True
        path = self._path(key)
        if not path.exists():
            return False
        probe = filelock.FileLock(str(path), thread_local=False)
        try:
            # found free and removed under the guard: no taker opens and locks the file in between (it would hold a
            # lock on a file removed, and be read as gone by every process)
            with self._guard():
                try:
                    probe.acquire(timeout=0)
                except filelock.Timeout:
                    return True
                except OSError:
                    return False
                probe.release()
                with contextlib.suppress(OSError):
                    os.unlink(path)  # a dead process's lease: nobody will ever hold it again
        except filelock.Timeout:
            return True  # the guard, held past its bound: said live, never finished or taken up on a guess
        return False
