"""Per-file locks that exclude other threads and other processes; and :class:`KeyedLocks`, a lock per key in memory.

In :mod:`jan.core` so that every writer of a data-folder file takes the same lock for it: the stores
(:mod:`jan.store`, which re-exports this module as ``jan.store.locks``) and extension settings
(:class:`jan.core.settings.JsonSettingsStore`), keyed by :func:`jan.core.fs.lock_key`.

Each resource file (``threads/<id>/messages.jsonl``, ``models/<id>/model.json``,
...) is guarded by a lock keyed by its path relative to the data folder. The
key is hashed onto one of a fixed number of lock files under
``<data>/.locks/``; two unrelated files may share a lock file (harmless
contention), but one file always maps to the same lock.

Why not ``<file>.lock`` next to each file: lock files must never be deleted
while anyone may wait on them (a waiter would hold a lock on an unlinked
inode while a newcomer locks a fresh one), so per-file lock files would pile
up forever, and deleting a thread folder would delete its lock. A fixed set
of stripes in one hidden folder avoids both.

Inside a process each stripe is an ``RLock`` (so nested use on one thread is
fine) wrapping a ``filelock.FileLock`` (flock/LockFileEx) that excludes other
processes. Several keys are acquired in sorted stripe order, so code that
takes all the locks it needs in one :meth:`LockManager.hold` call cannot deadlock.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import filelock

from typing import Generic, TypeVar

from .exceptions import LockTimeoutError

_L = TypeVar("_L")

#: The data folder's folder of lock files.
LOCK_DIR_NAME = ".locks"
DEFAULT_STRIPES = 256
# A lock file cannot be made: the folder is read-only (a mount, or not ours) or the lock folder is not there.
_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT})


def _writable(lock_path: str) -> bool:
    """Whether this process could make files beside ``lock_path`` (or the folder that would hold it)."""
    folder = os.path.dirname(lock_path)
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return os.access(folder, os.W_OK)


DEFAULT_TIMEOUT = 30.0


class _Stripe:
    __slots__ = ("path", "rlock", "file_lock", "depth", "unlocked", "__weakref__")

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        # thread_local=False: the RLock already admits one thread at a time, and
        # nested acquisitions on that thread must count against the same lock.
        self.file_lock = filelock.FileLock(path, thread_local=False)
        self.depth = 0
        self.unlocked = False  # held without its file (a read-only folder)

    def acquire(self, deadline: float | None, timeout_error: type[Exception] = LockTimeoutError) -> None:
        remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.rlock.acquire(timeout=remaining):
            raise timeout_error(f"timed out waiting for lock {self.path} (held by another thread)")
        try:
            if self.depth == 0:
                remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    self.file_lock.acquire(timeout=remaining)
                except filelock.Timeout as exc:
                    raise timeout_error(f"timed out waiting for lock {self.path} (held by another process)") from exc
                except OSError as exc:
                    if exc.errno != errno.EROFS and not (exc.errno in _UNWRITABLE and not _writable(self.path)):
                        raise
                    # A read-only data folder has no room for a lock file. Nobody can write there either (not
                    # this process: its write fails on its own, with its own error), so what a lock guards
                    # against cannot happen: reading goes on under the in-process lock alone.
                    self.unlocked = True
            self.depth += 1
        except BaseException:
            self.rlock.release()
            raise

    def release(self) -> None:
        try:
            self.depth -= 1
            if self.depth == 0:
                if self.unlocked:
                    self.unlocked = False
                else:
                    self.file_lock.release()
        finally:
            self.rlock.release()


# One stripe object per lock file per process, shared by every DataFolder on
# the same folder: two in-process instances must exclude each other too, and
# flock would not (nor would it be reentrant) if each opened its own.
# Weak, as KeyedLocks: a stripe lives while a hold references it (holding it,
# or about to); one nobody holds is unlocked, and a fresh one excludes the same.
# A table of every stripe ever used kept each lock file's objects of every
# data folder the process ever opened (a deleted one's too) for its life.
_registry: weakref.WeakValueDictionary[str, _Stripe] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def _reset_after_fork() -> None:
    # Another thread of the parent may have held a stripe at fork time; its
    # RLock would stay locked forever in the child. Start clean.
    global _registry_lock
    _registry_lock = threading.Lock()
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _stripe(path: str) -> _Stripe:
    with _registry_lock:
        stripe = _registry.get(path)
        if stripe is None:
            stripe = _Stripe(path)  # (referenced here before the table holds it weakly)
            _registry[path] = stripe
        return stripe


class LockManager:
    """Hands out cross-thread, cross-process locks for keys (relative file paths).

    ``timeout`` is in seconds (``None`` waits forever); running out raises
    :attr:`timeout_error` (:class:`jan.core.exceptions.LockTimeoutError`; the data folder's stores raise their
    :class:`~jan.store.errors.LockTimeoutError`, a subclass).
    """

    timeout_error: type[Exception] = LockTimeoutError

    def __init__(self, lock_dir: str | os.PathLike[str], *, stripes: int = DEFAULT_STRIPES,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        if stripes < 1:
            raise ValueError("stripes must be >= 1")
        self.lock_dir = Path(lock_dir)
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only data folder: see _Stripe.acquire
        self.stripes = stripes
        self.timeout = timeout
        self._width = max(2, len(f"{stripes - 1:x}"))

    def stripe_index(self, key: str) -> int:
        """The stripe a key maps to (stable across processes and runs)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.stripes

    def lock_path(self, key: str) -> Path:
        """The lock file guarding ``key``."""
        return self.lock_dir / f"{self.stripe_index(key):0{self._width}x}.lock"

    @contextmanager
    def hold(self, *keys: str) -> Iterator[None]:
        """Hold the locks of all ``keys`` for the ``with`` block.

        Take every lock an operation needs in one call: nested ``hold`` calls
        for different keys could deadlock against another thread taking them
        in the opposite order.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        paths = sorted({str(self.lock_path(k)) for k in keys})
        with ExitStack() as stack:
            for path in paths:
                stripe = _stripe(path)
                stripe.acquire(deadline, self.timeout_error)
                stack.callback(stripe.release)
            yield


class KeyedLocks(Generic[_L]):
    """One in-process lock per key (a thread's appends, a model's loads, a claim lock file), kept only while somebody
    holds it or waits for it: ``locks(key)`` returns the lock every caller asking for ``key`` meanwhile gets too.

    Weak: a table keeping a lock for every key ever asked for grows by one per conversation, model id (a typo's
    too) or thread for the life of the server. A lock lives as long as a caller references it (holding it, waiting
    on it, or about to), and the table forgets it after that; a later caller gets a fresh one, which excludes
    nothing it should not, since nobody holds the old one any more.

    ``factory`` makes a lock (``asyncio.Lock`` by default; the lock must accept weak references, which
    ``threading.Lock`` does not). Lookup and creation happen under a thread lock, so two threads asking for a key
    at once never get two different locks (a check-then-set race would give each its own and exclude nothing).
    """

    def __init__(self, factory: Callable[[], _L] = asyncio.Lock) -> None:  # type: ignore[assignment]
        self._factory = factory
        self._locks: weakref.WeakValueDictionary[object, _L] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def __call__(self, key: object) -> _L:
        """The lock for ``key``: the one a caller holds or waits on now, else a new one."""
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                # referenced by ``lock`` before the table holds it weakly: set into the table directly, it could go
                # again before it is returned
                lock = self._factory()
                self._locks[key] = lock
            return lock

    def __len__(self) -> int:
        """How many keys have a lock in use (for tests and soak checks)."""
        return len(self._locks)

    def __contains__(self, key: object) -> bool:
        return key in self._locks


# -- locks held across awaits ------------------------------------------------------------------------------------
#: A lock file cannot be made: a read-only data folder (where nothing can be written either: nothing to exclude).
_UNLOCKABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def try_lock_file(path: Path) -> filelock.BaseFileLock | None | bool:
    """Take the OS lock on ``path`` without waiting: the held lock (release it), ``None`` when another holder has
    it (another process, or another open of it in this one), or ``True`` when the folder cannot hold a lock file
    (read-only: nothing to exclude, go on unlocked)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # thread_local=False: taken in a worker thread, released from the event loop's
        lock = filelock.FileLock(str(path), thread_local=False)
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None
    except OSError as exc:
        if exc.errno in _UNLOCKABLE:
            return True
        raise
    return lock


def _release_attempt(attempt: asyncio.Future) -> None:
    """A lock file taken by an attempt whose waiter was cancelled: nobody holds it for real, let it go."""
    if attempt.cancelled() or attempt.exception() is not None:
        return
    held = attempt.result()
    if held is not None and held is not True:
        held.release()


async def hold_lock_file(path: Path, wait: float, busy: Callable[[Path], BaseException]
                         ) -> filelock.BaseFileLock | bool:
    """Hold the OS lock on ``path``, taken without blocking in a worker thread (a wait ties no thread up) and
    tried again until ``wait`` s have passed (then ``busy(path)`` is raised); returns it (release it at once when
    done, never after an await), or ``True`` for a folder that cannot hold a lock file."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        attempt = asyncio.ensure_future(asyncio.to_thread(try_lock_file, path))
        try:
            held = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(_release_attempt)  # the worker may still take it: let it go again then
            raise
        if held is not None:
            return held
        if time.monotonic() >= deadline:
            raise busy(path)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


class AsyncFileLocks:
    """Locks held across awaits that exclude this process's tasks and other processes sharing a folder, by key:
    for each key an asyncio lock (this process's tasks wait without a thread) and an OS file lock, on one of
    ``stripes`` lock files in ``lock_dir`` (:func:`hold_lock_file`: another process holds it, ``busy(path)`` after
    ``wait`` s).

    Their own folder, never the store's (:class:`LockManager`'s): the writes done while one is held take the store's
    per-file locks, and in one process a file lock held by a task would make those wait on it. Keys sharing a lock
    file share its asyncio lock too, so this process never waits on a file it holds itself. The lock files are
    never removed (see :class:`LockManager`)."""

    def __init__(self, lock_dir: str | os.PathLike[str], *, wait: float, busy: Callable[[Path], BaseException],
                 stripes: int = DEFAULT_STRIPES) -> None:
        self.lock_dir = Path(lock_dir)
        self.stripes = stripes
        self.wait = wait
        self._busy = busy
        self._locks: KeyedLocks[asyncio.Lock] = KeyedLocks()

    def path(self, key: str) -> Path:
        """The lock file of ``key`` (stable across processes and runs; two keys may share one)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return self.lock_dir / f"{int.from_bytes(digest, 'big') % self.stripes:02x}.lock"

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block (one key at a time: two held at once could deadlock)."""
        path = self.path(key)
        async with self._locks(str(path)):
            held = await hold_lock_file(path, self.wait, self._busy)
            try:
                yield
            finally:
                # released at once, never after an await a cancel could cut short: a lock file left held would
                # refuse the key in every process until this one ends (unlocking does not block)
                if held is not True:
                    held.release()
