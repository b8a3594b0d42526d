"""Blobs: ``blobs/sha256-<hex>``, files pushed by digest (Ollama's ``POST /api/blobs/sha256:<hex>``).

A blob is written to a hidden temporary file in ``blobs/`` while its SHA-256 is
computed, and renamed into place only when the digest matches: a blob under
its real name is always whole and always what its name says. A temporary
file a crash leaves behind carries the writer's PID and is swept at the next
start (:func:`jan.store._trash.sweep_temp_files`). Models made from a blob
hard-link it into their folder (a copy across filesystems), so deleting a
model never touches the blob and a blob holds no model's only copy.

Every method here does file I/O: call them from a worker thread in asyncio code.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from jan.core.fs import fsync_dir

from .errors import InvalidArgumentError
from .hashed_file import HashedTempFile

__all__ = ["BLOBS_DIR_NAME", "BlobStore", "BlobWriter", "InvalidDigestError", "parse_digest"]

BLOBS_DIR_NAME = "blobs"
#: Seconds a blob no model uses is kept after it was pushed: the ``/api/create`` that uses it may be on its way.
PRUNE_GRACE_S = 600.0
# Ollama's digests: sha256, then ':' (or '-', as in its file names), then 64 hex digits.
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


class InvalidDigestError(InvalidArgumentError):
    """Not a ``sha256:<64 hex digits>`` digest."""

    def __init__(self, digest: object) -> None:
        super().__init__("invalid digest format")
        self.digest = digest


def parse_digest(digest: object) -> str:
    """The 64 lower-case hex digits of a ``sha256:<hex>`` (or ``sha256-<hex>``) digest;
    :class:`InvalidDigestError` for anything else."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidDigestError(digest)
    return match.group(1).lower()


class BlobStore:
    """The blobs of one data folder (``<root>/blobs``; made when the first blob is written)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = Path(root) / BLOBS_DIR_NAME

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it is there); raises on a malformed digest."""
        return self.folder / f"sha256-{parse_digest(digest)}"

    def find(self, digest: str) -> Path | None:
        """The blob's file, or ``None`` if it is not here."""
        path = self.path(digest)
        return path if path.is_file() else None

    def prune(self, referenced: set[Path], *, grace_s: float = PRUNE_GRACE_S) -> list[Path]:
        """Remove the blobs no model uses, as Ollama prunes unused layers: not hard-linked into a model's
        folder (one link left: a model copied across filesystems has its own copy), not a file a model
        names where it is (``referenced``, resolved paths: a projector, a LoRA adapter), and not pushed in the last
        ``grace_s`` seconds. Returns the removed paths."""
        removed: list[Path] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return removed
        for entry in entries:
            if not _DIGEST.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue  # (temporary files of uploads in progress are hidden and named otherwise)
            stat = entry.stat(follow_symlinks=False)
            path = Path(entry.path)
            if stat.st_nlink > 1 or now - stat.st_mtime < grace_s or path.resolve() in referenced:
                continue
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
        return removed

    def free_bytes(self) -> int:
        """Bytes free on the blobs' filesystem."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.folder).free

    def writer(self, digest: str) -> BlobWriter:
        """A :class:`BlobWriter` for the blob ``digest`` (a temporary file until committed)."""
        target = self.path(digest)
        self.folder.mkdir(parents=True, exist_ok=True)
        return BlobWriter(target, parse_digest(digest))


class BlobWriter(HashedTempFile):
    """Bytes written here are hashed as they go into a hidden temporary file next to the blob;
    :meth:`commit` renames it into place when the SHA-256 matches, :meth:`discard` removes it.
    Not thread-safe: one writer, one thread at a time (calls may come from different threads in turn)."""

    def __init__(self, target: Path, expected_hex: str) -> None:
        super().__init__(target.parent, target.name)
        self.target = target
        self.expected_hex = expected_hex

    def commit(self) -> bool:
        """Flush, fsync and rename into place when the content's digest is the expected one
        (``True``); otherwise discard the file (``False``)."""
        if self.hexdigest != self.expected_hex:
            self.discard()
            return False
        try:
            self.sync()
            # A concurrent upload of the same blob may have landed first: same bytes, replacing is harmless.
            os.replace(self.temp_path, self.target)
        except BaseException:
            self.discard()
            raise
        fsync_dir(self.target.parent)
        return True

    def discard(self) -> None:
        """Close and remove the temporary file (safe to call more than once)."""
        self.remove()
