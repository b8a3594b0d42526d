"""Crash-safe file replacement.

A file is either its old content or its new content, never a mix: the new
bytes go to a temporary file in the same directory (``os.replace`` is only
atomic within one filesystem), are flushed and fsynced, then renamed over
the target, and the directory is fsynced so the rename itself survives a
power cut. Readers therefore never need a lock to see a whole file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from jan.core.fs import TEMP_SUFFIX, atomic_write_bytes, fsync_dir, naming_errors, temp_prefix, write_target

__all__ = [
    "TEMP_SUFFIX",
    "atomic_copy",
    "atomic_write_bytes",
    "copy_to_temp",
    "fsync_dir",
    "link_to_temp",
    "symlink_to_temp",
]

def _temp_in(directory: Path, name: str) -> tuple[int, str]:
    # Hidden and suffixed so listings skip it if a crash leaves it behind.
    return tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=directory)


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


#: Bytes copied between two calls of a copy's ``progress`` (:func:`copy_to_temp`).
PROGRESS_CHUNK = 64 * 1024 * 1024


def copy_to_temp(src: str | os.PathLike[str], directory: str | os.PathLike[str], name: str,
                 progress: Callable[[int, int], None] | None = None) -> str:
    """Copy ``src`` to a fresh hidden temporary file in ``directory`` and fsync it; returns its path.

    Meant for multi-gigabyte model files: the caller later renames the temp
    file into place, so a crash mid-copy never leaves a truncated file under
    the real name (only a hidden ``.tmp`` file). ``progress(bytes_done, bytes_total)`` is called as the copy goes
    (each :data:`PROGRESS_CHUNK` bytes, and at its end); what it raises (a KeyboardInterrupt) ends the copy, and the
    temporary file goes.
    """
    fd, tmp = _temp_in(Path(directory), name)
    os.close(fd)
    try:
        with naming_errors(tmp):  # (copyfile's sendfile names no file when the disk fills)
            if progress is None:
                # copyfile uses the kernel's fast paths (copy_file_range/sendfile, clonefile).
                shutil.copyfile(src, tmp)
            else:
                _copy_in_chunks(src, tmp, progress)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _copy_in_chunks(src: str | os.PathLike[str], dst: str, progress: Callable[[int, int], None]) -> None:
    """``src``'s bytes into ``dst``, a chunk at a time, calling ``progress`` after each: the kernel's copy
    (copy_file_range) where it can, else read and write."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        total = os.fstat(source.fileno()).st_size
        done = 0
        fast = hasattr(os, "copy_file_range")
        progress(0, total)
        while True:
            copied = 0
            if fast:
                try:
                    copied = os.copy_file_range(source.fileno(), target.fileno(), PROGRESS_CHUNK)
                except OSError as e:  # (another filesystem on an older kernel, a filesystem without it: plain copy)
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise  # (a full disk, an I/O error: the copy fails as copyfile's would)
                    fast = False
            if not fast:
                chunk = source.read(PROGRESS_CHUNK)
                target.write(chunk)
                target.flush()
                copied = len(chunk)
            if not copied:
                break
            done += copied
            progress(done, max(total, done))


def link_to_temp(src: str | os.PathLike[str], directory: str | os.PathLike[str], name: str) -> str:
    """Hard-link ``src`` under a fresh hidden temporary name in ``directory``; returns its path.

    Raises ``OSError`` where hard links are impossible (another filesystem,
    FAT, too many links); callers fall back to :func:`copy_to_temp`.
    """
    fd, tmp = _temp_in(Path(directory), name)
    os.close(fd)
    os.unlink(tmp)  # only the unique name was wanted; link() will not overwrite
    os.link(src, tmp)
    return tmp


def symlink_to_temp(src: str | os.PathLike[str], directory: str | os.PathLike[str], name: str) -> str:
    """Create a symbolic link to ``src`` (absolute) under a fresh hidden temporary name in ``directory``.

    Raises ``OSError`` where symlinks are not permitted (Windows without the privilege).
    """
    fd, tmp = _temp_in(Path(directory), name)
    os.close(fd)
    os.unlink(tmp)
    os.symlink(os.path.abspath(src), tmp)
    return tmp


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` never exists half-written (a link at ``dst`` is written through, as
    :func:`jan.core.fs.atomic_writer` does)."""
    target = write_target(dst)
    tmp = copy_to_temp(src, target.parent, target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(target.parent)
