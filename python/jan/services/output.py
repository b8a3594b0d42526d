"""Per-choice output parsing: generated text pieces in, content / reasoning / tool-call deltas out.

This is the one place where a model's raw output is read. :func:`output_parser` builds the
parser for one choice of a request from its chat plan (:mod:`jan.templates.formats`): the
format's thinking markers split ``reasoning`` off first, then the format's tool-call parser
reads the rest.
"""

from __future__ import annotations

from typing import Protocol

from jan.services.types import ChatDelta, ChatRequest
from jan.templates.formats import ChatPlan, OutputDelta
from jan.templates.formats import OutputParser as FormatParser

__all__ = ["FormatOutput", "OutputParser", "output_parser"]


class OutputParser(Protocol):
    """Reads one choice's output. ``feed`` and ``finish`` return deltas with ``choice`` 0 (the
    caller sets the index) and no ``finish_reason`` (the caller decides it)."""

    def feed(self, text: str) -> list[ChatDelta]: ...

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        """End of output; ``finish_reason`` ``"length"`` means it was cut off mid-way."""

    @property
    def made_tool_calls(self) -> bool: ...


class FormatOutput:
    """A :class:`jan.templates.formats.OutputParser` speaking :class:`ChatDelta`.

    Output cut off by the token limit inside a call's markup never shows that markup as
    content: the unfinished region is dropped (calls already begun keep what was streamed).
    """

    def __init__(self, parser: FormatParser):
        self._parser = parser

    @property
    def made_tool_calls(self) -> bool:
        return self._parser.made_tool_calls

    def feed(self, text: str) -> list[ChatDelta]:
        return [_delta(d) for d in self._parser.feed(text)] if text else []

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        return [_delta(d) for d in self._parser.finish(truncated=finish_reason == "length")]


def _delta(d: OutputDelta) -> ChatDelta:
    return ChatDelta(content=d.content, reasoning=d.reasoning, tool_calls=d.tool_calls)


def output_parser(request: ChatRequest, plan: ChatPlan, prompt: str) -> OutputParser:
    """The parser for one choice of ``request`` rendered to ``prompt`` with ``plan``."""
    return FormatOutput(plan.parser(prompt))
