"""A stream's events kept for replay, its text deltas kept compactly.

A run's (:class:`jan.services.runs.Run`) and a background response's (:mod:`jan.server.dialects.responses_run`)
events are kept so that a listener can re-attach and read them again (``GET .../events?after=N``,
``GET /v1/responses/{id}?stream=true&starting_after=N``), and a finished run is remembered a while with them. Kept
as the events themselves, each token's delta was a dict of a few nested dicts and strings: some 380 bytes a token,
a long answer's many megabytes, times every run remembered.

:class:`EventLog` keeps a run of consecutive deltas of one item (one message part, one call's arguments) as one
string and the offsets where its pieces end (4 bytes a piece), and makes each delta again when it is read: the same
events, equal to the ones appended, one by one, at the same numbers. Which events are deltas, and how one is taken
apart and made again, is the caller's (``split`` and ``join``): an event ``split`` does not take (anything but a
plain text delta, a delta with logprobs) is kept as it is.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

E = TypeVar("E")

#: ``split(event)``: None for an event kept as it is; else ``(key, text, number)``: ``key`` all of the event but its
#: text (hashable; deltas of one key in a row are kept together) and ``number`` an int that counts up by one from
#: one delta to the next (a ``sequence_number``), or None. ``join(key, text, number)`` makes the event again.
Split = Callable[[E], "tuple[Hashable, str, int | None] | None"]
Join = Callable[[Hashable, str, "int | None"], E]

# About what a segment costs besides its events (its object, its key, its place in the lists; a run of deltas' chunk
# headers are counted with its pieces).
_SEGMENT_BYTES = 200
# Pieces of a run of deltas joined into one string at a time: a string per piece would cost ~50 bytes each again,
# one string grown by each piece would copy the whole text each time.
_FOLD = 256


class _Deltas:
    """Consecutive deltas of one key: their text as strings of many pieces each, and where each piece ends."""

    __slots__ = ("key", "first", "chunks", "pending", "ends")

    def __init__(self, key: Hashable, first: int | None) -> None:
        self.key, self.first = key, first
        #: every _FOLD pieces joined (chunk c holds pieces c * _FOLD up to the next), then the pieces since
        self.chunks: list[str] = []
        self.pending: list[str] = []
        #: where each piece ends in the whole text
        self.ends = array("I")  # (4 bytes: a run of deltas of 4 GiB of text is none jan makes)

    def accepts(self, key: Hashable, number: int | None) -> bool:
        if key != self.key:
            return False
        if self.first is None:
            return number is None
        return number == self.first + len(self.ends)

    def add(self, text: str) -> int:
        """Add a piece; returns about how many bytes more are kept for it (once folded)."""
        self.pending.append(text)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(text))
        if len(self.pending) >= _FOLD:
            self.chunks.append("".join(self.pending))
            self.pending = []
        # (a string stores 1 byte a character for ASCII, up to 4 for others; its header a chunk's, shared)
        return (len(text) if text.isascii() else 4 * len(text)) + self.ends.itemsize + 1

    def __len__(self) -> int:
        return len(self.ends)

    def piece(self, i: int) -> str:
        chunk = i // _FOLD
        if chunk >= len(self.chunks):  # (a live reader reads the newest pieces: no join of the text for them)
            return self.pending[i - chunk * _FOLD]
        base = self.ends[chunk * _FOLD - 1] if chunk else 0
        return self.chunks[chunk][(self.ends[i - 1] if i else 0) - base:self.ends[i] - base]

    def number(self, i: int) -> int | None:
        return None if self.first is None else self.first + i


class EventLog(Generic[E]):
    """An append-only sequence of events (``append``, ``len``, ``[i]``, iteration), text deltas kept compactly."""

    def __init__(self, split: Split, join: Join) -> None:
        self._split, self._join = split, join
        #: in order: an event kept as it is, or a run of deltas
        self._segments: list[object] = []
        #: the index of each segment's first event
        self._starts = array("Q")
        self._len = 0
        #: about how many bytes are kept (counted as they come: nbytes() is asked of every remembered run)
        self._bytes = 0

    def append(self, event: E) -> None:
        parts = self._split(event)
        # (made again at once and compared: an event that would not come back equal is kept as it is)
        if parts is not None and isinstance(parts[1], str) and self._join(*parts) == event:
            key, text, number = parts
            last = self._segments[-1] if self._segments else None
            if not (isinstance(last, _Deltas) and last.accepts(key, number)):
                last = _Deltas(key, number)
                self._open(last)
            self._bytes += last.add(text)
        else:
            self._open(_Plain(event))
            self._bytes += _approx_size(event)
        self._len += 1

    def _open(self, segment: object) -> None:
        self._segments.append(segment)
        self._starts.append(self._len)
        self._bytes += _SEGMENT_BYTES

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __getitem__(self, index: int) -> E:
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("event index out of range")
        # the last segment whose start is at or before index (the starts ascend)
        at = bisect_right(self._starts, index) - 1
        return self._event(self._segments[at], index - self._starts[at])

    def _event(self, segment: object, i: int) -> E:
        if isinstance(segment, _Plain):
            return segment.event
        assert isinstance(segment, _Deltas)
        return self._join(segment.key, segment.piece(i), segment.number(i))

    def __iter__(self) -> Iterator[E]:
        for segment in list(self._segments):
            if isinstance(segment, _Plain):
                yield segment.event
            else:
                assert isinstance(segment, _Deltas)
                for i in range(len(segment)):
                    yield self._event(segment, i)

    def since(self, start: int) -> list[E]:
        """The events from index ``start`` on."""
        return [self[i] for i in range(max(0, start), self._len)]

    def nbytes(self) -> int:
        """About how many bytes the kept events take (estimated as they were added, not measured)."""
        return self._bytes


class _Plain:
    __slots__ = ("event",)

    def __init__(self, event: object) -> None:
        self.event = event


def _approx_size(event: object, depth: int = 0) -> int:
    """A rough size of an event kept as it is (dicts, lists, tuples and strings counted; the rest a flat 64)."""
    if depth > 6:
        return 64
    if isinstance(event, str):
        return sys.getsizeof(event)
    if isinstance(event, dict):
        return sys.getsizeof(event) + sum(_approx_size(k, depth + 1) + _approx_size(v, depth + 1)
                                          for k, v in event.items())
    if isinstance(event, (list, tuple)):
        return sys.getsizeof(event) + sum(_approx_size(v, depth + 1) for v in event)
    return 64
