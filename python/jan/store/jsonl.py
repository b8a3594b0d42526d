"""Append-only JSON Lines files (one JSON object per line).

Writers must hold the file's lock (see :mod:`jan.store.locks`); readers need
none. An append is one ``write`` of complete lines followed by fsync, so the
only damage a killed process can leave is a partial *last* line with no
trailing newline. Readers ignore such a torn tail, and the next append cuts
it off before writing, so earlier lines are never lost and later lines never
get glued onto garbage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jan.core.fs import loads_json, naming_errors
from jan.json_text import data_file_text

from ._util import dumps_json
from .atomic import atomic_write_bytes, fsync_dir
from jan.local_files import MAX_DATA_FILE_BYTES, open_regular_file, read_regular_file

#: The largest JSONL log (a thread's messages.jsonl) that is read: it is read whole at each use, and it grows with
#: its thread (appended, never rewritten smaller), so its bound is a few documents' (:data:`MAX_DATA_FILE_BYTES`):
#: 256 MiB of text is a thread far longer than any model reads. A larger one is refused unread
#: (:class:`jan.local_files.FileTooLargeError`, naming it), not read into memory in its size at every request.
MAX_JSONL_BYTES = 4 * MAX_DATA_FILE_BYTES

_CHUNK = 64 * 1024


@dataclass
class JsonlContent:
    """What :func:`read_jsonl` found.

    ``records`` are the well-formed objects in file order; ``bad_lines`` are
    ``(line_number, error)`` for lines in the middle that did not parse (kept
    on disk, reported); ``torn_tail`` is true when the last line was
    incomplete and ignored.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    torn_tail: bool = False


def _parse_line(raw: bytes) -> dict[str, Any]:
    obj = loads_json(data_file_text(raw))
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_jsonl(data: bytes) -> JsonlContent:
    """Parse JSONL bytes; see :class:`JsonlContent`."""
    out = JsonlContent()
    # Split on b"\n" only: str.splitlines would also split on U+2028 and friends,
    # which ensure_ascii=False leaves unescaped inside strings.
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            out.records.append(_parse_line(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            out.bad_lines.append((number, str(exc)))
    if tail.strip():
        # A last line without its newline: whole if it parses (another tool may
        # omit the final newline), torn otherwise.
        try:
            out.records.append(_parse_line(tail))
        except (ValueError, UnicodeDecodeError):
            out.torn_tail = True
    return out


def read_jsonl(path: str | os.PathLike[str], max_bytes: int = MAX_JSONL_BYTES) -> JsonlContent:
    """Read a JSONL file of at most ``max_bytes`` (else :class:`jan.local_files.FileTooLargeError`); a missing file
    reads as empty."""
    try:
        data = read_regular_file(path, max_bytes)
    except FileNotFoundError:
        return JsonlContent()
    return parse_jsonl(data)


def encode_lines(records: Iterable[dict[str, Any]]) -> bytes:
    """Compact one-object-per-line encoding (JSON escapes newlines inside strings)."""
    return b"".join(dumps_json(r, indent=None) + b"\n" for r in records)


def _last_line_start(f: Any, size: int) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        chunk = f.read(pos - start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def repair_tail(path: str | os.PathLike[str]) -> tuple[str, int] | None:
    """Make the file end at a line boundary; the caller holds the lock.

    Returns ``None`` if nothing was needed, ``("newline", 0)`` if a complete
    last line only lacked its newline, or ``("truncated", n)`` when ``n``
    bytes of a torn line were cut off.
    """
    try:
        f = open_regular_file(path)
    except FileNotFoundError:
        return None
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        start = _last_line_start(f, size)
        f.seek(start)
        tail = f.read(size - start)
    try:
        _parse_line(tail)
    except (ValueError, UnicodeDecodeError):
        os.truncate(path, start)
        return ("truncated", size - start)
    with naming_errors(path), open(path, "ab") as out:
        out.write(b"\n")
        out.flush()
        os.fsync(out.fileno())
    return ("newline", 0)


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> tuple[str, int] | None:
    """Append records as lines in one write, then fsync; the caller holds the lock.

    Creates the file if needed (the directory must exist). Returns what
    :func:`repair_tail` did first, if anything.
    """
    payload = encode_lines(records)
    if not payload:
        return None
    repaired = repair_tail(path)
    created = not os.path.exists(path)
    # Unbuffered O_APPEND: the bytes go out in as few write() calls as the
    # kernel allows, always at the current end of file.
    with naming_errors(path), open(path, "ab", buffering=0) as f:
        end = f.seek(0, os.SEEK_END)
        try:
            view = memoryview(payload)
            while view:
                written = f.write(view)
                view = view[written:]
            os.fsync(f.fileno())
        except OSError:
            # A disk that filled part-way took some of the lines: cut them off again, so the file is what it was
            # (the caller answers that nothing was saved; a torn last line was read as an interrupted write)
            with contextlib.suppress(OSError):
                os.ftruncate(f.fileno(), end)
            raise
    if created:
        fsync_dir(Path(path).parent)
    return repaired


def last_line_of(raw: bytes, record_id: str) -> int | None:
    """Where the last line of ``raw`` (a JSONL file's bytes, whole lines) starts when it is the only line that holds
    ``record_id`` (the record's one version, the file's last): cutting the file there takes the record out with no
    new file, which a full disk still allows. None otherwise (a torn tail, the id on an earlier line too)."""
    if not raw.endswith(b"\n"):
        return None
    start = raw.rfind(b"\n", 0, len(raw) - 1) + 1
    try:
        last = _parse_line(raw[start:])
    except (ValueError, UnicodeDecodeError):
        return None
    if last.get("id") != record_id or record_id.encode() in raw[:start]:
        return None
    return start


def cut_jsonl(path: str | os.PathLike[str], size: int) -> None:
    """Cut the file to its first ``size`` bytes (a line boundary: :func:`last_line_of`), durably; the caller holds
    the lock."""
    with naming_errors(path), open(path, "r+b") as f:
        f.truncate(size)
        os.fsync(f.fileno())


def rewrite_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Atomically replace the whole file with ``records``; the caller holds the lock."""
    atomic_write_bytes(path, encode_lines(records))
