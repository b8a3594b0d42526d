"""Has a file changed since it was read? One ``stat`` per file answers it, without reading the file.

A stamp is ``(st_dev, st_ino, st_mtime_ns, st_size)``, or ``None`` for a path that is missing. The data
folder replaces files atomically (a new inode), so a rewrite changes the stamp even within one mtime tick;
adding or removing a file in a folder changes the folder's mtime. Every cache of what a file holds (a model's
header, its abilities, mcp.json) is kept under its stamp: path, mtime and size alone took a model file replaced by
another of the same size within one tick of the file system's clock for the one read before.

Its own module, outside :mod:`jan.store`: the engine's header cache (a library user's ``jan.Model``) uses it, and
importing the store package loads ~100 modules.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

FileStamp = tuple[int, int, int, int]
#: ``(real path, stamp)``: what a cache of a file's contents is kept under (:func:`file_version`)
FileVersion = tuple[str, FileStamp]

__all__ = ["MTIME_TICK_NS", "FileStamp", "FileVersion", "SmallFileWatch", "file_version", "stamp", "stamps"]

#: The coarsest tick of a file system's clock jan allows for (FAT's mtime counts 2 s; ext3's, HFS+'s and many network
#: file systems' 1 s): a write made this long after a file's mtime gives it another mtime.
MTIME_TICK_NS = 2_000_000_000
#: The largest file :class:`SmallFileWatch` hashes (a config); a larger one is watched by its stamp alone.
SMALL_FILE_BYTES = 1 << 20


def _stamp_of(st: os.stat_result) -> FileStamp:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def stamp(path: str | os.PathLike[str]) -> FileStamp | None:
    """The stamp of ``path`` (a file or folder, symlinks followed), ``None`` when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return _stamp_of(st)


def stamps(paths: Iterable[str | os.PathLike[str]]) -> tuple[FileStamp | None, ...]:
    """:func:`stamp` of each path, in order."""
    return tuple(stamp(p) for p in paths)


def file_version(path: str | os.PathLike[str]) -> FileVersion:
    """The version of the file at ``path``: its real path (what the cached reader opens) and its stamp, the key of
    every cache of what it holds. Raises ``OSError`` when it cannot be stat'ed (``ValueError`` for a path holding a
    NUL), as ``os.stat`` does."""
    return os.path.realpath(path), _stamp_of(os.stat(path))


@dataclass(frozen=True)
class _Look:
    stamp: FileStamp | None
    digest: bytes | None  # of the bytes, None for a file that is missing, unreadable or not small
    settled: bool  # taken a tick after its mtime: a write since gives the file another stamp


class SmallFileWatch:
    """Whether a small file (a config read whole) changed since it was last read, an edit in place included.

    A stamp misses a write that keeps the inode (an editor saving in place), the size and the mtime: one within the
    tick of the file system's clock the file was last written in. While the last look at the file was within
    :data:`MTIME_TICK_NS` of its mtime (or before it: a clock set back), a look also compares a hash of its bytes;
    once a look is a tick past the mtime, every later write shows in the stamp, and the stamp alone answers. Not
    thread-safe: one owner looks."""

    def __init__(self) -> None:
        self._last: _Look | None = None

    def changed(self, path: str | os.PathLike[str]) -> _Look | None:
        """None when ``path`` holds what it held at the last :meth:`seen`; else the look to hand :meth:`seen` once
        its contents are read (blocking: a ``stat``, and while unsettled a read of at most
        :data:`SMALL_FILE_BYTES`). The bytes are hashed before the caller reads them: a write between the two
        makes the next look read the file again, never miss it."""
        start = time.time_ns()  # (before the stat: a write after it is a tick past a settled mtime)
        now = stamp(path)
        last = self._last
        if last is not None and now == last.stamp and (last.settled or now is None):
            return None
        settled = now is not None and start - now[2] >= MTIME_TICK_NS
        digest = _digest(path) if now is not None else None
        if last is not None and now == last.stamp and digest == last.digest:
            self._last = replace(last, settled=settled)
            return None
        return _Look(now, digest, settled)

    def seen(self, look: _Look) -> None:
        """The file as :meth:`changed` looked at it is read: later looks compare with it."""
        self._last = look


def _digest(path: str | os.PathLike[str]) -> bytes | None:
    from jan.local_files import read_regular_file  # (its errors: a pipe in the file's place is never waited on)

    try:
        data = read_regular_file(path, max_bytes=SMALL_FILE_BYTES)
    except (OSError, ValueError):
        return None
    return hashlib.blake2b(data, digest_size=16).digest()
