"""Per-choice output parsing: generated text pieces in, content / reasoning / tool-call deltas out.

This is the one place where a model's raw output is read. :func:`output_parser` builds the
parser for one choice of a request; today it handles tool-call markup (every format
:class:`jan.templates.ToolCallStreamParser` knows). A reasoning parser goes here too: it
would split ``reasoning`` text off before the tool-call stage sees the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

from jan.services.types import ChatDelta, ChatRequest, ToolCallDelta
from jan.templates import ToolCallStreamParser

__all__ = ["OutputParser", "PlainOutput", "ToolCallOutput", "output_parser"]


class OutputParser(Protocol):
    """Reads one choice's output. ``feed`` and ``finish`` return deltas with ``choice`` 0 (the
    caller sets the index) and no ``finish_reason`` (the caller decides it)."""

    def feed(self, text: str) -> list[ChatDelta]: ...

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        """End of output; ``finish_reason`` ``"length"`` means it was cut off mid-way."""

    @property
    def made_tool_calls(self) -> bool: ...


class PlainOutput:
    """No tools: every piece is content."""

    made_tool_calls = False

    def feed(self, text: str) -> list[ChatDelta]:
        return [ChatDelta(content=text)] if text else []

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        return []


class ToolCallOutput:
    """Tool-call markup becomes ``tool_calls`` deltas; the rest is content.

    Output cut off by the token limit inside a call's markup never shows that markup as
    content: the unfinished region is dropped (calls already begun keep what was streamed).
    """

    def __init__(self, tools: Any):
        self._parser = ToolCallStreamParser(tools)

    @property
    def made_tool_calls(self) -> bool:
        return bool(self._parser.tool_calls)

    def feed(self, text: str) -> list[ChatDelta]:
        return [_delta(d) for d in self._parser.feed(text)]

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        return [_delta(d) for d in self._parser.finish(truncated=finish_reason == "length")]


def _delta(raw: dict[str, Any]) -> ChatDelta:
    calls = tuple(
        ToolCallDelta(index=c["index"], id=c.get("id"), name=(c.get("function") or {}).get("name"),
                      arguments=(c.get("function") or {}).get("arguments") or "")
        for c in raw.get("tool_calls") or ()
    )
    return ChatDelta(content=raw.get("content") or "", tool_calls=calls)


def output_parser(request: ChatRequest) -> OutputParser:
    """The parser for one choice of ``request`` (the place to add reasoning parsing)."""
    tools = request.active_tools
    if not tools:
        return PlainOutput()
    return ToolCallOutput([t.name for t in tools])
