"""Whether a file starts as a GGUF does, from its 4-byte magic: one check for the engine's loads
(:mod:`jan.engine.gguf_file`) and the data folder's imports (:mod:`jan.store.models`), each of which
raises its own error (no dependencies, so the store can use it without loading the native engine)."""

from __future__ import annotations

import os
import stat

__all__ = ["GGUF_MAGIC", "has_gguf_magic", "not_a_regular_file", "read_magic"]

GGUF_MAGIC = b"GGUF"


def read_magic(path: str | os.PathLike[str]) -> bytes:
    """The first 4 bytes of the file at ``path`` (fewer for a shorter file); OSError when it cannot be read."""
    with open(path, "rb") as f:
        return f.read(4)


def has_gguf_magic(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with the GGUF magic; OSError when it cannot be read."""
    return read_magic(path) == GGUF_MAGIC


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path`` when something is there but no regular file (``"a directory"``, ``"a character device"``
    for ``/dev/null``, ``"a named pipe (FIFO)"``, ...), for an error that says so: "not found" would send its reader
    looking for a file that is there. None for a regular file (or a link to one), and for nothing at all."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "no regular file")
