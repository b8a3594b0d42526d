"""A file of this computer named by a user (a model's weights, an image, an upload, a tool's read): what is there,
and opening it without ever blocking. No dependencies, so the CLI, the store and the engine share it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["MAX_DATA_FILE_BYTES", "FileTooLargeError", "expand_home", "folder_problem", "not_a_regular_file",
           "open_regular_file", "read_regular_file"]

#: The largest file of the data folder that is read whole (a settings.json, mcp.json, extensions.json, model.json,
#: thread.json, run record, messages.jsonl): what jan writes is kilobytes to a few megabytes; 64 MiB leaves room for
#: any hand-made one. A larger one (a GGUF copied over a model.json, a runaway log pasted into a settings file) is
#: refused unread, not read whole into memory (GBs, at every listing or start).
MAX_DATA_FILE_BYTES = 64 * 1024 * 1024


class FileTooLargeError(OSError):
    """A file larger than what is read whole (:func:`read_regular_file`): an ``OSError`` (``EFBIG``) whose
    ``strerror`` says its size and the bound, so every caller that reports an unreadable file tells this one too.
    (OSError's own signature, so that code re-raising ``type(exc)(errno, message, filename)`` keeps working.)"""

    size: int = 0
    limit: int = 0


def _too_large(path: str | os.PathLike[str], size: int, limit: int) -> FileTooLargeError:
    exc = FileTooLargeError(errno.EFBIG, f"it is {size} bytes, more than any such file jan writes ({limit} at most):"
                                         " left unread; move it away or repair it", os.fspath(path))
    exc.size, exc.limit = size, limit
    return exc


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell would: a ``~user`` of no such user (or a
    ``~`` without a known home) stays as written, where ``Path.expanduser`` raises ``RuntimeError`` (a traceback
    for a path the user typed, a tool provider lost for a setting)."""
    return Path(os.path.expanduser(os.fspath(path)))


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` (``~`` expanded) is no folder to read from, in words ("no such folder: /x", "/x is a regular
    file, not a folder"), or None for a folder (or a link to one). What a configured folder is checked with when it
    is configured, so that a typo is told then, not taken silently and found out at each use."""
    full = expand_home(path)
    try:
        mode = os.stat(full).st_mode
    except FileNotFoundError:
        return f"no such folder: {full}"
    except (OSError, ValueError) as exc:
        return f"{full}: {getattr(exc, 'strerror', None) or exc}"
    if stat.S_ISDIR(mode):
        return None
    return f"{full} is {'a regular file' if stat.S_ISREG(mode) else _kind(mode)}, not a folder"


def _kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "no regular file")


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path`` when something is there but no regular file (``"a directory"``, ``"a character device"``
    for ``/dev/null``, ``"a named pipe (FIFO)"``, ...), for an error that says so: "not found" would send its reader
    looking for a file that is there. None for a regular file (or a link to one), and for nothing at all."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


#: The most names of a folder :func:`meant_file` reads (a guess must not list a folder of millions).
NEAR_FILE_SCAN = 10_000


def meant_file(path: str | os.PathLike[str]) -> str | None:
    """The file beside where ``path`` was looked for (and not found) that it likely meant: the one whose name
    differs only in case, else the one likely typo of it (the rule model ids are guessed by,
    :func:`jan.near_names.closest_model_id`); None when there is none such, or the folder cannot be read. For
    every "no such file" of a path a user typed (``stories260k.gguf`` beside ``stories260K.gguf``)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    if not name:
        return None
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for _, entry in zip(range(NEAR_FILE_SCAN), entries)]
    except (OSError, ValueError):
        return None
    same = [n for n in names if n != name and n.casefold() == name.casefold()]
    if len(same) == 1:
        return os.path.join(folder, same[0])
    from jan.near_names import closest_model_id

    # (its rule reads a wanted name without its .gguf: so are the names it is matched against, then given back whole)
    stems = {n.removesuffix(".gguf"): n for n in names}
    meant = closest_model_id(name, list(stems)) if not same else None
    return os.path.join(folder, stems[meant]) if meant else None


def no_such_file(path: str | os.PathLike[str]) -> str:
    """``no such file: PATH``, with ``: did you mean 'NEAR'?`` where :func:`meant_file` finds the one meant."""
    meant = meant_file(path)
    return f"no such file: {os.fspath(path)}" + (f": did you mean {meant!r}?" if meant else "")


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file (or a link to one). Anything else is an
    OSError whose ``strerror`` says what it is ("it is a named pipe (FIFO), not a regular file"), and the open never
    blocks: a plain ``open()`` of a named pipe waits for a writer that may never come, holding the caller (a
    command, a worker thread) forever; a device (``/dev/zero``, a terminal) is no file's content either."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          f"it is {_kind(mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], max_bytes: int = MAX_DATA_FILE_BYTES) -> bytes:
    """The bytes of ``path`` (:func:`open_regular_file`): what every read of a data-folder file uses, so that a named
    pipe in a file's place is an error naming it, never a read that waits forever (holding a listing, a request, a
    start-up), and a file of more than ``max_bytes`` is :class:`FileTooLargeError`, never read whole."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise _too_large(path, size, max_bytes)
        # read what fstat said, one byte more telling growth (a read of the bound itself would take a buffer of
        # 64 MiB for every small file); a file that grows while it is read, at most one byte past the bound
        data = f.read(size + 1)
        if len(data) > size:
            data += f.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:
            raise _too_large(path, len(data), max_bytes)
        return data
