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

import os
from collections.abc import Iterable

FileStamp = tuple[int, int, int, int]
#: ``(real path, stamp)``: what a cache of a file's contents is kept under (:func:`file_version`)
FileVersion = tuple[str, FileStamp]

__all__ = ["FileStamp", "FileVersion", "file_version", "stamp", "stamps"]


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
