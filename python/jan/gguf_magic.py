"""Whether a file starts as a GGUF does, from its 4-byte magic: one check for the engine's loads
(:mod:`jan.engine.gguf_file`) and the data folder's imports (:mod:`jan.store.models`), each of which
raises its own error (no dependencies, so the store can use it without loading the native engine)."""

from __future__ import annotations

import os

__all__ = ["GGUF_MAGIC", "has_gguf_magic", "read_magic"]

GGUF_MAGIC = b"GGUF"


def read_magic(path: str | os.PathLike[str]) -> bytes:
    """The first 4 bytes of the file at ``path`` (fewer for a shorter file); OSError when it cannot be read."""
    with open(path, "rb") as f:
        return f.read(4)


def has_gguf_magic(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with the GGUF magic; OSError when it cannot be read."""
    return read_magic(path) == GGUF_MAGIC

