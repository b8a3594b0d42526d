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
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import filelock

LEASE_DIR_NAME = ".live"
_SUFFIX = ".lock"

# The leases this process holds, by lock file path: shared by every Leases object, so any
# DataFolder opened on the same folder in this process can finish (release) a reply.
_HELD: dict[str, filelock.BaseFileLock] = {}
_MUTEX = threading.Lock()


class Leases:
    """Leases on message ids, under ``directory`` (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    def take(self, key: str) -> None:
        """Hold the lease on ``key`` (a validated id) until :meth:`release`; a no-op if held already."""
        path = str(self._path(key))
        with _MUTEX:
            if path in _HELD:
                return
            self.directory.mkdir(exist_ok=True)
            lock = filelock.FileLock(path, thread_local=False)
            lock.acquire(timeout=5)
            _HELD[path] = lock

    def try_take(self, key: str) -> bool:
        """Hold the lease on ``key`` if no other live process does (True, held now or already), without waiting;
        False when another process holds it."""
        path = str(self._path(key))
        with _MUTEX:
            if path in _HELD:
                return True
            self.directory.mkdir(exist_ok=True)
            lock = filelock.FileLock(path, thread_local=False)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
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
        with contextlib.suppress(OSError):
            os.unlink(path)  # first: a prober that opened it meanwhile finds it free, which is now true
        lock.release()

    def holds(self, key: str) -> bool:
        """Whether this process holds the lease on ``key``."""
        with _MUTEX:
            return str(self._path(key)) in _HELD

    def sweep(self) -> int:
        """Remove the lease files nobody holds (left by dead processes); returns how many."""
        removed = 0
        with contextlib.suppress(OSError):
            with os.scandir(self.directory) as entries:  # (closed when an error stops the sweep early)
                for entry in entries:
                    if entry.name.endswith(_SUFFIX) and not self.is_live(entry.name[: -len(_SUFFIX)]):
                        removed += 1
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
            probe.acquire(timeout=0)
        except filelock.Timeout:
            return True
        except OSError:
            return False
        probe.release()
        with contextlib.suppress(OSError):
            os.unlink(path)  # a dead process's lease: nobody will ever hold it again
        return False
