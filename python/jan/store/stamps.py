"""Has a file changed since it was read? One ``stat`` per file answers it, without reading the file.

A stamp is ``(st_dev, st_ino, st_mtime_ns, st_size)``, or ``None`` for a path that is missing. The data
folder replaces files atomically (a new inode), so a rewrite changes the stamp even within one mtime tick;
adding or removing a file in a folder changes the folder's mtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

FileStamp = tuple[int, int, int, int]

__all__ = ["FileStamp", "stamp", "stamps"]


def stamp(path: str | os.PathLike[str]) -> FileStamp | None:
    """The stamp of ``path`` (a file or folder, symlinks followed), ``None`` when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def stamps(paths: Iterable[str | os.PathLike[str]]) -> tuple[FileStamp | None, ...]:
    """:func:`stamp` of each path, in order."""
    return tuple(stamp(p) for p in paths)
