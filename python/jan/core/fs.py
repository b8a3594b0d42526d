"""The local :class:`~jan.core.interfaces.FileSystem` and atomic file writes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from jan.json_text import data_file_text, escape_lone_surrogates, loads_json
from jan.local_files import read_regular_file

from .exceptions import PathOutsideDataFolderError
from .interfaces.modules import _MISSING, FileSystem

__all__ = [
    "LocalFileSystem",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "fsync_dir",
    "LinkTargetError",
    "lock_key",
    "naming_errors",
    "write_target",
    "loads_json",
    "set_aside",
    "temp_prefix",
    "temp_writer_pid",
]

TEMP_SUFFIX = ".tmp"
_TEMP_PID = re.compile(r"\.p(\d+)\.[A-Za-z0-9_]+\.tmp$")


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file that will replace ``name``: hidden, and naming this process.

    With the writer's PID in the name, a start-up sweep can tell a temporary
    file a crash left behind (its process is gone) from one another live
    process is still writing (a multi-GB model copy). Use with ``suffix=TEMP_SUFFIX``.
    """
    return f".{name}.p{os.getpid()}."


def temp_writer_pid(filename: str) -> int | None:
    """The PID :func:`temp_prefix` put in a temporary file's name (None for other names)."""
    m = _TEMP_PID.search(filename)
    return int(m.group(1)) if m else None


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Persist a directory entry change (create/rename/unlink) on POSIX.

    Windows cannot open directories this way and commits renames with the
    file's metadata, so there it is a no-op; some filesystems refuse fsync on
    a directory, which is not worth failing a write for.
    """
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Give an ``OSError`` raised in the block without a file name (a ``write``, ``flush`` or ``fsync`` of an open
    file: "No space left on device" alone) ``path`` as its ``filename``. The server tells a disk's refusal by it
    (507 for a full disk, naming the folder) where a nameless one read as the code's own failure, a 500 that hid the
    cause (an extension's store call, jan.core.guarded); the CLI names the file too."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path)) from exc
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


class LinkTargetError(OSError):
    """A file to be written is a symbolic link whose target cannot take the write: it does not exist (a dangling
    link) or is no regular file (a folder, a device, a pipe). Its ``strerror`` says which, ``filename`` is the link.
    An ``OSError`` (``ENOENT``, ``EISDIR`` or ``EINVAL``), so every caller that tells a disk's refusal tells this."""


def write_target(path: str | os.PathLike[str]) -> Path:
    """The file a write of ``path`` must replace: ``path`` itself, or, for a symbolic link, the regular file it
    finally points at. A user who linked a file into the data folder (a model.json, mcp.json or settings.json kept
    in a dotfiles folder) keeps the link: replacing it with a file of its own name lost it, and the user's edits
    of the real file went nowhere from then on. :class:`LinkTargetError` for a dangling link or a link to what is no
    regular file (creating or clobbering it would be a guess); a link loop is the system's ``ELOOP``."""
    target = Path(path)
    if not os.path.islink(target):
        return target
    real = Path(os.path.realpath(target))
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise LinkTargetError(errno.ENOENT, f"it is a symbolic link to {real}, which does not exist (restore "
                                            "that file, or remove the link)", os.fspath(path)) from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "no regular file"
        raise LinkTargetError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                              f"it is a symbolic link to {real}, which is {kind}", os.fspath(path))
    return real


def lock_key(root: Path, path: Path) -> str:
    """The lock key of a file of the data folder at ``root`` (resolved): its path relative to the folder. A file
    that is a symbolic link is keyed by the file it points at, which is what a write replaces
    (:func:`jan.core.fs.write_target`): two names of one file (two links, or a link and the file) take one lock.
    Every writer of a data-folder file keys its lock so (the stores, extension settings)."""
    if os.path.islink(path):
        path = Path(os.path.realpath(path))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        # A collection reached through a symlink lives elsewhere; its absolute
        # path is just as stable a key.
        return path.as_posix()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, new_mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file whose bytes replace ``path`` when the block ends without an exception, durably.

    Writes a hidden temporary file in the same folder (``os.replace`` is only
    atomic within one filesystem), fsyncs it, renames it over the target and
    fsyncs the folder. On any failure (an exception, Ctrl-C in the block) the
    target keeps its previous content and the temporary file is removed. The
    result keeps the permissions of the file it replaces; a new file gets
    ``new_mode``, or mkstemp's 0600 (which suits private conversations).

    A symbolic link is written through (:func:`write_target`): the temporary file goes beside its final target,
    which it replaces, and the link stays.
    """
    target = write_target(path)
    # Hidden and suffixed so listings skip it if a crash leaves it behind.
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with naming_errors(target), os.fdopen(fd, "wb") as f:  # (named: the close flushes again)
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(target).st_mode & 0o7777  # a user's chosen permissions are kept
        except OSError:
            mode = new_mode
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, new_mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so readers never see a partial file, and durably (:func:`atomic_writer`)."""
    with atomic_writer(path, new_mode=new_mode) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8; parent folders are created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """:func:`atomic_write_text` of ``data`` as indented JSON (non-ASCII kept, trailing newline).

    Strict JSON: ``NaN``/``Infinity`` raise ``ValueError`` and nothing is written."""
    atomic_write_text(path, escape_lone_surrogates(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)) + "\n")


def set_aside(path: str | os.PathLike[str], reason: str = "corrupt") -> Path | None:
    """Rename an unreadable file to ``<name>.<reason>-<n>`` so it is kept but no longer read.

    Returns the new path, or ``None`` if the file had vanished.
    """
    source = Path(path)
    n = 1
    while True:
        candidate = source.with_name(f"{source.name}.{reason}-{n}")
        if not candidate.exists():
            break
        n += 1
    try:
        os.replace(source, candidate)
    except FileNotFoundError:
        return None
    return candidate


class LocalFileSystem(FileSystem):
    """Files under a local folder; see :class:`~jan.core.interfaces.FileSystem`."""

    def __init__(self, root: str | os.PathLike[str]):
        self._root = Path(os.path.expanduser(os.fspath(root))).resolve()  # (Path.expanduser raises for ~nouser)
        self._locks: Any = None  # the folder's jan.core.locks.LockManager, made at the first lock

    def lock(self, path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[None]:
        """The data folder's lock of the file at ``path`` (relative), the one every writer of that file takes
        (:mod:`jan.core.locks`, keyed by :func:`lock_key` with its folder resolved, as the stores key theirs):
        another thread's or process's change of the file is excluded while it is held. ``LockTimeoutError`` after
        30 s; a read-only folder holds it in this process only."""
        from .locks import LOCK_DIR_NAME, LockManager

        if self._locks is None:
            self._locks = LockManager(self._root / LOCK_DIR_NAME)
        target = self.resolve(path)
        return self._locks.hold(lock_key(self._root, Path(os.path.realpath(target.parent)) / target.name))

    def __repr__(self) -> str:
        return f"LocalFileSystem({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path of ``path`` under the root.

        The check is on the path's text: absolute paths, drive letters and
        any ``..`` component are refused. Symlinks *inside* the data folder
        are followed on purpose (users link ``models/`` to another disk).
        """
        raw = os.fspath(path)
        if "\x00" in raw:
            raise PathOutsideDataFolderError(f"invalid path {raw!r}")
        p = Path(raw)
        if p.is_absolute() or p.drive or p.anchor:
            raise PathOutsideDataFolderError(f"path {raw!r} must be relative to the data folder")
        parts = [part for part in p.parts if part not in ("", ".")]
        if any(part == ".." for part in parts) or "\\" in raw:
            raise PathOutsideDataFolderError(f"path {raw!r} is outside the data folder")
        return self._root.joinpath(*parts)

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return self.resolve(path).exists()

    def read_text(self, path: str | os.PathLike[str]) -> str:
        # (a named pipe in a file's place is an error, not a read that waits forever)
        return data_file_text(read_regular_file(self.resolve(path)))

    def write_text(self, path: str | os.PathLike[str], text: str) -> None:
        atomic_write_text(self.resolve(path), text)

    def read_json(self, path: str | os.PathLike[str], default: Any = _MISSING) -> Any:
        try:
            text = self.read_text(path)
        except FileNotFoundError:
            if default is _MISSING:
                raise
            return default
        return loads_json(text)

    def write_json(self, path: str | os.PathLike[str], data: Any) -> None:
        atomic_write_json(self.resolve(path), data)

    def mkdir(self, path: str | os.PathLike[str]) -> Path:
        full = self.resolve(path)
        full.mkdir(parents=True, exist_ok=True)
        return full

    def listdir(self, path: str | os.PathLike[str] = ".") -> list[str]:
        try:
            return sorted(os.listdir(self.resolve(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, path: str | os.PathLike[str]) -> bool:
        full = self.resolve(path)
        if full == self._root:
            raise PathOutsideDataFolderError("refusing to remove the data folder itself")
        if full.is_symlink() or full.is_file():
            full.unlink()
            return True
        if full.is_dir():
            shutil.rmtree(full)
            return True
        return False
