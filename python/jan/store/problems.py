"""The record of damaged files the store found (left in place, or set aside by a write or an older jan), for the API
to report."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger("jan.store")

MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class Problem:
    """One damaged file: where it is (``path``, and ``moved_to`` if it was set aside), what was wrong, when."""

    path: str
    error: str
    time: float
    moved_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProblemLog:
    """Thread-safe, bounded list of :class:`Problem`.

    The same (path, error) is recorded once: listing a thread with one bad
    line on every request must not flood the log.
    """

    def __init__(self, maxlen: int = MAX_PROBLEMS) -> None:
        self._items: deque[Problem] = deque(maxlen=maxlen)
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def add(self, path: str, error: str, moved_to: str | None = None, *, once: bool = False) -> Problem | None:
        """Record and log a problem; returns it, or ``None`` if it was already known.

        A file moved aside is a new event each time (the same path can be damaged again), unless ``once``:
        a finding that every listing repeats (a file set aside by an earlier process) is recorded once."""
        key = (path, error)
        with self._lock:
            if key in self._seen and (moved_to is None or once):
                return None
            if len(self._items) == self._items.maxlen:
                old = self._items[0]
                self._seen.discard((old.path, old.error))
            problem = Problem(path=path, error=error, time=time.time(), moved_to=moved_to)
            self._items.append(problem)
            self._seen.add(key)
        if moved_to:
            logger.warning("data folder: %s: %s (moved aside to %s)", path, error, moved_to)
        else:
            logger.warning("data folder: %s: %s", path, error)
        return problem

    def has_any(self) -> bool:
        """Whether any problem is recorded (an unlocked peek, for a check on every read)."""
        return bool(self._seen)

    def repaired(self, path: str) -> None:
        """Forget what was reported of ``path`` in place (no copy set aside): it reads well now (the user repaired
        it), and a list that still called it damaged would send them looking for a fault that is gone."""
        if not self._seen:  # (an unlocked peek: the common case, no problem at all, costs no lock per read)
            return
        with self._lock:
            if not any(p.path == path and p.moved_to is None for p in self._items):
                return
            kept = [p for p in self._items if p.path != path or p.moved_to is not None]
            self._items.clear()
            self._items.extend(kept)
            self._seen = {(p.path, p.error) for p in kept}

    def moved(self, moved_to: str) -> bool:
        """Whether a problem recorded here already names ``moved_to`` (this process set that file aside)."""
        with self._lock:
            return any(p.moved_to == moved_to for p in self._items)

    def snapshot(self) -> list[Problem]:
        """A copy of the problems, oldest first."""
        with self._lock:
            return list(self._items)

    def forget_under(self, prefix: str) -> None:
        """Forget the problems of files under ``prefix`` (``models/<id>/``): that resource was deleted, and a list
        that still reported its damaged file would send the user looking for a file that is gone."""
        with self._lock:
            kept = [p for p in self._items if not p.path.startswith(prefix)]
            self._items.clear()
            self._items.extend(kept)
            self._seen = {(p.path, p.error) for p in kept}

    def clear(self) -> None:
        """Forget every recorded problem (e.g. after the user has seen them)."""
        with self._lock:
            self._items.clear()
            self._seen.clear()

    def __len__(self) -> int:
        return len(self._items)
