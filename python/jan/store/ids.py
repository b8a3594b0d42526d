"""Resource ids: validation of ids that arrive in requests, and generation of new ones.

Every id becomes a folder name, so validation is the first guard that keeps
requests inside the data folder (:meth:`jan.store.context.StoreContext.resource_dir`
is the second). The rule is deliberately an allow-list: separators, ``%``,
``\\``, NUL, leading dots and ``..`` simply cannot match, so no decoding step
can smuggle one in.

Generated ids are ``<prefix>_<ULID>``: 48 bits of milliseconds then 80 bits
of randomness in Crockford base32, so sorting ids sorts by creation time and
list order is stable even when timestamps tie.
"""

from __future__ import annotations

import os
import re
import threading
import time
import unicodedata
from typing import Any, Final

from .errors import InvalidIdError

ID_MAX_LENGTH: Final = 128
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# Names Windows maps to devices no matter the extension; a data folder may be
# synced to or opened from Windows, so refuse them everywhere.
_WINDOWS_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)

# An extension's settings live under its package name, which may be npm-style scoped.
_EXTENSION_SCOPE: Final = re.compile(r"@[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_id(value: Any, kind: str = "id", *, param: str | None = None) -> str:
    """Return ``value`` if it is a safe resource id, else raise :class:`InvalidIdError` (naming ``param``, the
    request field that carried it, where the caller knows it).

    Allowed: 1-128 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter
    or digit, without ``..``, not ending with ``.`` and not a Windows device name.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{kind} must be a string, not {type(value).__name__}", param=param)
    if not ID_PATTERN.fullmatch(value):
        raise InvalidIdError(
            f"invalid {kind} {value!r}: use 1-{ID_MAX_LENGTH} of A-Z a-z 0-9 . _ - starting with a letter or digit",
            param=param)
    if ".." in value or value.endswith("."):
        raise InvalidIdError(f"invalid {kind} {value!r}: '..' and a trailing '.' are not allowed", param=param)
    if value.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        raise InvalidIdError(f"invalid {kind} {value!r}: reserved device name", param=param)
    return value


def is_valid_id(value: Any) -> bool:
    """``True`` if :func:`validate_id` would accept ``value``."""
    try:
        validate_id(value)
    except InvalidIdError:
        return False
    return True


def validate_extension_name(value: Any) -> str:
    """Validate an extension name, ``name`` or npm-style ``@scope/name``.

    Each segment follows the id rule, so a scoped name maps to exactly two
    nested folders under ``settings/`` and nothing else.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"extension name must be a string, not {type(value).__name__}")
    if value.startswith("@"):
        scope, sep, name = value.partition("/")
        if not sep or not _EXTENSION_SCOPE.fullmatch(scope):
            raise InvalidIdError(f"invalid extension name {value!r}")
        validate_id(scope[1:], "extension scope")
        validate_id(name, "extension name")
    else:
        validate_id(value, "extension name")
    return value


def slugify_id(text: str, fallback: str = "model") -> str:
    """Turn free text (a file name, a model name) into a valid id.

    Accented Latin letters lose their accents (``Störy`` is ``Story``, not ``St-ry``: a file name in any
    European language keeps its words); other disallowed characters become ``-``; the result is trimmed to
    the length limit, with no separator left dangling at either end.
    """
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = slug.lstrip("._-")[:ID_MAX_LENGTH].rstrip("._-")
    if not slug or not is_valid_id(slug):
        slug = f"{fallback}-{slug}" if slug else fallback
        slug = slug[:ID_MAX_LENGTH].rstrip(".")
    return validate_id(slug)


_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RAND_BITS: Final = 80


class _UlidClock:
    """The data folder's one clock, for ids and for ``created``/``updated`` stamps, so both keep creation order.

    ULIDs made in the same millisecond count up from the last (monotonic ULIDs), and a stamp (:meth:`stamp`) is
    strictly later than every stamp and every ULID made before it in this process. Lists sort by a stamp, ties
    by id, and an id that is no ULID (the default assistant ``jan``, an id a client chose) does not sort by time:
    with stamps that could repeat within a millisecond, an assistant made in the same millisecond as the default
    listed before it (``asst_…`` < ``jan``). A ULID's millisecond is above every stamp made before it, and every
    stamp made after it is above its millisecond, so a deleted item's id alone still places a cursor. Ahead of
    the wall clock only while more than one stamp or ULID a millisecond is asked for; the wall clock catches up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0
        self._last_stamp = -1

    def reset(self) -> None:
        # After fork the child must not continue the parent's sequence, or both
        # would hand out the same "next" id within one millisecond.
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0
        self._last_stamp = -1

    def next(self) -> int:
        with self._lock:
            ms = max(time.time_ns() // 1_000_000, self._last_stamp + 1)
            if ms <= self._last_ms:
                # Same millisecond, or the wall clock stepped back: keep counting
                # from the last id so order never goes backwards.
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand >= 1 << _RAND_BITS:
                    ms += 1
                    rand = int.from_bytes(os.urandom(10), "big") >> 1
            else:
                # Top bit clear leaves room to increment within the millisecond.
                rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms, self._last_rand = ms, rand
            return (ms << _RAND_BITS) | rand

    def read(self) -> int:
        """Milliseconds since the epoch, not before any stamp or ULID millisecond made so far; advances nothing (a
        reading, as an expiry check makes, must not push the clock ahead of the wall clock)."""
        with self._lock:
            return max(time.time_ns() // 1_000_000, self._last_stamp, self._last_ms)

    def stamp(self) -> int:
        """Milliseconds since the epoch, above every stamp and ULID millisecond this process made before."""
        with self._lock:
            ms = max(time.time_ns() // 1_000_000, self._last_stamp + 1, self._last_ms + 1)
            self._last_stamp = ms
            return ms


_clock = _UlidClock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_clock.reset)


def stamp_ms() -> int:
    """A ``created``/``updated`` stamp in milliseconds: later than every stamp and id made before it in this process
    (see :class:`_UlidClock`), so things made one after another list in that order."""
    return _clock.stamp()


def clock_ms() -> int:
    """The clock's time in milliseconds without taking a stamp: never before a stamp or id already made, so an
    id made after it carries this millisecond or a later one (see :class:`_UlidClock`)."""
    return _clock.read()


def new_ulid() -> str:
    """A 26-character, time-sortable, unique id (ULID in Crockford base32)."""
    value = _clock.next()
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_ULID_TAIL: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def ulid_millis(value: Any, prefix: str | None = None) -> int | None:
    """The creation time (ms) a generated id (``<prefix>_<ULID>``, ``file-<ULID>``) carries; None for an id that
    ends in no ULID (a name, an id a client chose), or, given ``prefix`` (``"msg_"``), one that starts with another
    prefix: an id of another kind of object (a bare ULID, as Jan's desktop app writes ids, is taken). Lets a list
    place a cursor whose item is gone: a client paging a list while it deletes what it read asks for the page after
    an id that no longer exists (an id of another kind is no item of the list that was deleted, and stays
    refused)."""
    if not isinstance(value, str):
        return None
    if prefix is not None and not value.startswith(prefix) and re.search(r"[_-]", value):
        return None
    tail = re.split(r"[_-]", value)[-1]
    if not _ULID_TAIL.fullmatch(tail):
        return None
    number = 0
    for char in tail:
        number = number * 32 + _CROCKFORD.index(char)
    return number >> _RAND_BITS


def new_id(prefix: str) -> str:
    """``<prefix>_<ULID>``; ``prefix`` itself must be a valid id."""
    validate_id(prefix, "id prefix")
    return f"{prefix}_{new_ulid()}"


def new_thread_id() -> str:
    """A new ``thread_<ULID>`` id."""
    return new_id("thread")


def new_message_id() -> str:
    """A new ``msg_<ULID>`` id."""
    return new_id("msg")


def new_assistant_id() -> str:
    """A new ``asst_<ULID>`` id."""
    return new_id("asst")
