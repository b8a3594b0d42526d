"""Claiming a thread across every process sharing the data folder: the one mechanism under which an Assistants run
(:mod:`jan.services.runs`) and a Responses turn in a conversation (a conversation is a thread:
:mod:`jan.server.dialects.conversation_locks`) check that nothing else holds the thread and claim it.

Two parts, as a run's claim has always had:

* the *claim lock* (:meth:`ThreadClaims.lock`): an asyncio lock (this process's requests) and an OS lock on one
  of :data:`CLAIM_STRIPES` lock files under ``<data>/.locks/runs`` (every process), held only for the moment of a
  check and a claim, so two claimants — in one process or in several — never both pass the check;
* the *claim itself*, on disk before the lock goes, where every process reads it: a run's record (live and leased:
  :mod:`jan.services.run_records`), or a response turn's lease (:meth:`ThreadClaims.take_turn`:
  ``<data>/.live/turn.<thread_id>.lock``, an OS file lock held while the response is being made). The OS drops a
  lease with its process however it ends (SIGKILL too), so a dead holder never leaves a thread claimed
  (:mod:`jan.store.leases`).

A read-only data folder holds no lock file and no lease: nothing is claimed on disk there (nothing can be written
either), and a process's own in-memory holds are all that excludes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import re
import threading
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from jan.core.locks import KeyedLocks, hold_lock_file
from jan.store.errors import LockTimeoutError
from jan.store.leases import LEASE_DIR_NAME, Leases
from jan.store.context import LOCK_DIR_NAME

__all__ = ["CLAIM_LOCK_DIR", "CLAIM_STRIPES", "CLAIM_WAIT", "ThreadClaims", "claim_lock_path", "thread_claims"]

#: Lock files guarding the claim of a thread: a fixed set of stripes (as :mod:`jan.store.locks`, and for its
#: reasons: a lock file is never deleted while anyone may wait on it, and one per thread would pile up forever), in
#: their own folder so that a claim, held across awaits, never shares a file with the store's per-file locks, which
#: the claim's own writes take (in the same process they would wait on each other).
CLAIM_LOCK_DIR = Path(LOCK_DIR_NAME) / "runs"
CLAIM_STRIPES = 256

#: How long a claim waits for another process's claim of a thread (sharing its lock file) before ``busy``.
CLAIM_WAIT = 60.0

#: A response turn's lease key is this and the thread's id (``turn.conv_...``): never a message's or run's id.
_TURN = "turn."
#: The thread ids a turn's lease is named by: a file name of the lease folder's own, never a path (``/``, ``..``).
_TURN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
#: What a folder that cannot hold a file answers (read-only): nothing to claim on disk there.
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def claim_lock_path(data_folder: str | Path, thread_id: str) -> Path:
    """The lock file under which any process checks and claims ``thread_id`` (two threads may share one)."""
    digest = hashlib.blake2b(f"threads/{thread_id}".encode(), digest_size=8).digest()
    return Path(data_folder) / CLAIM_LOCK_DIR / f"{int.from_bytes(digest, 'big') % CLAIM_STRIPES:02x}.lock"


class ThreadClaims:
    """The claims of one data folder's threads (:func:`thread_claims` gives this process's one per folder)."""

    def __init__(self, data_folder: str | Path) -> None:
        self.data_folder = Path(data_folder)
        self._leases = Leases(self.data_folder / LEASE_DIR_NAME)
        #: One asyncio lock per claim lock file in use: this process never waits on a file it holds itself.
        self._locks: KeyedLocks[asyncio.Lock] = KeyedLocks()

    @contextlib.asynccontextmanager
    async def lock(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's claim lock for the block (check, then claim on disk, before it ends). The OS lock is
        taken without blocking in a worker thread, retried until :data:`CLAIM_WAIT` s (then ``LockTimeoutError``);
        on a read-only folder only the asyncio lock is held."""
        path = claim_lock_path(self.data_folder, thread_id)
        async with self._locks(str(path)):
            held = await hold_lock_file(path, CLAIM_WAIT, lambda busy: LockTimeoutError(
                f"timed out waiting for {busy} (another jan process sharing the data folder is claiming this thread)"))
            try:
                yield
            finally:
                # released at once, never after an await a cancel could cut short: a lock file left held would
                # refuse this thread in every process until this one ends (unlocking does not block)
                if held is not True:
                    held.release()

    def turn_held(self, thread_id: str) -> bool:
        """Whether a live process (this one included) is making a response turn in the thread (its lease is held).
        Blocking file work: call it in a worker thread."""
        if not _TURN_ID_RE.fullmatch(thread_id):
            return False  # (no turn is ever taken in a thread so named: see take_turn)
        try:
            return self._leases.is_live(_TURN + thread_id)
        except OSError:
            return False  # (nothing readable there: nobody holds it)

    def take_turn(self, thread_id: str) -> bool:
        """Claim the thread for a response turn (under :meth:`lock`, after checking that no run holds it): False
        when a live process (this one included) holds the turn already. A read-only folder records nothing (True).
        Blocking file work: call it in a worker thread. ``ValueError`` for an id that is no file name's part
        (a conversation's id, ``conv_`` and letters and digits, always is)."""
        if not _TURN_ID_RE.fullmatch(thread_id):
            raise ValueError(f"invalid thread id for a turn: {thread_id[:80]!r}")
        key = _TURN + thread_id
        try:
            # (try_take answers True for a lease this process holds already, and takes one no other live process
            # holds: one probe of the file, where asking is_live first probed it twice)
            if self._leases.holds(key):
                return False
            return self._leases.try_take(key)
        except OSError as exc:
            if exc.errno in _UNWRITABLE:
                return True
            raise

    def release_turn(self, thread_id: str) -> None:
        """Let the thread's turn go (a no-op unless this process holds it): unlinks and unlocks one small file.
        Blocking file work: call it in a worker thread."""
        if not _TURN_ID_RE.fullmatch(thread_id):
            return
        with contextlib.suppress(OSError):
            self._leases.release(_TURN + thread_id)


# Weak, as the locks it hands out: the claims of a folder live while a claim lock is held (or about to be) through
# them, and a fresh one then excludes the same (its asyncio locks matter only while held; its leases are the
# process's, jan.store.leases). A table of strong ones kept one for every data folder the process ever used.
_CLAIMS: weakref.WeakValueDictionary[str, ThreadClaims] = weakref.WeakValueDictionary()
_CLAIMS_MUTEX = threading.Lock()


def thread_claims(data_folder: str | Path) -> ThreadClaims:
    """This process's :class:`ThreadClaims` of ``data_folder``: one per folder, whatever asks (runs and responses
    share its asyncio locks, so neither waits on a claim lock file the other holds in this process)."""
    key = str(Path(data_folder).absolute())
    with _CLAIMS_MUTEX:
        claims = _CLAIMS.get(key)
        if claims is None:
            claims = ThreadClaims(data_folder)  # (referenced here before the table holds it weakly)
            _CLAIMS[key] = claims
        return claims
