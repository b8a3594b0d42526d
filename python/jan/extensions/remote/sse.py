"""A small incremental parser of server-sent events (the ``text/event-stream`` format).

OpenAI-compatible servers stream ``data: {json}`` events separated by blank
lines and end with ``data: [DONE]``; jan sends failures as ``event: error``.
The parser is fed raw bytes as they arrive (:meth:`SSEParser.feed_bytes`; lines
of any length, split anywhere, even inside a UTF-8 character) or one line at a
time (:meth:`SSEParser.feed`), and hands back the events completed so far.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]


@dataclass(frozen=True)
class SSEEvent:
    """One event: its ``event`` type (``"message"`` unless named) and its ``data`` (lines joined by ``\\n``)."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Turns lines of an event stream into :class:`SSEEvent` objects (per the WHATWG rules)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._buffer = b""

    def feed_bytes(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes from the stream; return the events completed by the whole lines among them."""
        self._buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        events: list[SSEEvent] = []
        for line in lines:
            events.extend(self.feed(line))
        return events

    def feed(self, line: bytes | str) -> list[SSEEvent]:
        """Add one line (with or without its line ending); return the events it completed (0 or 1)."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        line = line.rstrip("\r\n")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):  # a comment (keep-alive ping)
            return []
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        # "retry" and unknown fields are ignored
        return []

    def close(self) -> list[SSEEvent]:
        """The end of the stream: an event still being collected is dispatched (lenient about a missing blank line)."""
        events: list[SSEEvent] = []
        if self._buffer:
            events.extend(self.feed(self._buffer))
            self._buffer = b""
        return events + self._dispatch()

    def _dispatch(self) -> list[SSEEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SSEEvent(data="\n".join(self._data), event=self._event or "message", id=self._id)
        self._data = []
        self._event = ""
        return [event]
