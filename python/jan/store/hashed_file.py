"""A hidden temporary file that hashes and counts the bytes written to it: the one way the store takes in a
stream of bytes it will keep (an upload of the Files API, an Ollama blob) without holding it in memory.

The file sits in the folder its bytes are renamed into at the end (a rename within one file system is atomic)
and carries :func:`jan.core.fs.temp_prefix` in its name, with the writer's PID, so the next start sweeps it when
a crash interrupts the write (:func:`jan.store._trash.sweep_temp_files`). What a finished file becomes (its
name, the checks before it is kept) is its owner's: :class:`jan.store.uploads.UploadWriter`,
:class:`jan.store.blobs.BlobWriter`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from jan.core.fs import TEMP_SUFFIX, naming_errors, temp_prefix

__all__ = ["HashedTempFile"]


class HashedTempFile:
    """``write`` appends to a hidden temporary file in ``folder`` (its name starts with ``name``'s temp prefix),
    updating the SHA-256 (:attr:`hexdigest`) and :attr:`size` in bytes; :meth:`sync` makes the bytes durable
    before the owner renames :attr:`temp_path` into place, :meth:`remove` closes and deletes the file.
    ``OSError`` from creating or writing the file propagates. Not thread-safe."""

    def __init__(self, folder: Path, name: str) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        fd, self.temp_path = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=folder)
        self._file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)  # hashlib lets go of the GIL for large buffers
        with naming_errors(self.temp_path):
            self._file.write(data)
        self.size += len(data)

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def sync(self) -> None:
        """Flush, fsync and close the file: its bytes are on disk before it is renamed into place."""
        with naming_errors(self.temp_path):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def remove(self) -> None:
        """Close and delete the temporary file (safe to call more than once, and after it was renamed)."""
        try:
            self._file.close()
        except (OSError, ValueError):
            pass
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass
