"""Per-choice output parsing: generated text pieces in, content / reasoning / tool-call deltas out.

This is the one place where a model's raw output is read. :func:`output_parser` builds the
parser for one choice of a request from its chat plan (:mod:`jan.templates.formats`): the
format's thinking markers split ``reasoning`` off first, then the format's tool-call parser
reads the rest. :class:`ReasoningTokens` counts which of a choice's generated tokens went to its thinking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from jan.services.types import ChatDelta, ChatRequest
from jan.templates.formats import ChatPlan, OutputDelta
from jan.templates.formats import OutputParser as FormatParser

__all__ = ["FormatOutput", "OutputParser", "ReasoningTokens", "output_parser"]


class OutputParser(Protocol):
    """Reads one choice's output. ``feed`` and ``finish`` return deltas with ``choice`` 0 (the
    caller sets the index) and no ``finish_reason`` (the caller decides it)."""

    def feed(self, text: str) -> list[ChatDelta]: ...

    def finish(self, finish_reason: str | None, *, cut: bool = False) -> list[ChatDelta]:
        """End of output; ``finish_reason`` ``"length"``, or ``cut`` (a client's stop string ended it), means it
        was cut off mid-way."""

    @property
    def made_tool_calls(self) -> bool: ...

    @property
    def thinks(self) -> bool:
        """Whether the output can hold thinking at all (else it has no reasoning tokens to count)."""

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        """Where thinking lies in ``text``, the whole output as generated (the pieces fed, joined): ``(start, end)``
        character ranges, its markers included."""


class FormatOutput:
    """A :class:`jan.templates.formats.OutputParser` speaking :class:`ChatDelta`.

    Output cut off by the token limit (or a client's stop string) inside a call's markup never shows that
    markup as content: the unfinished region is dropped (calls already begun keep what was streamed).
    """

    def __init__(self, parser: FormatParser):
        self._parser = parser

    @property
    def made_tool_calls(self) -> bool:
        return self._parser.made_tool_calls

    def feed(self, text: str) -> list[ChatDelta]:
        return [_delta(d) for d in self._parser.feed(text)] if text else []

    def finish(self, finish_reason: str | None, *, cut: bool = False) -> list[ChatDelta]:
        # a stop string is cut like the token limit: inside a call's markup it leaves no markup as content
        return [_delta(d) for d in self._parser.finish(truncated=cut or finish_reason == "length")]

    @property
    def thinks(self) -> bool:
        return self._parser.thinks

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        return self._parser.reasoning_spans(text)


def _delta(d: OutputDelta) -> ChatDelta:
    return ChatDelta(content=d.content, reasoning=d.reasoning, tool_calls=d.tool_calls)


def output_parser(request: ChatRequest, plan: ChatPlan, prompt: str) -> OutputParser:
    """The parser for one choice of ``request`` rendered to ``prompt`` with ``plan``."""
    return FormatOutput(plan.parser(prompt))


class ReasoningTokens:
    """Which of one choice's generated tokens are reasoning tokens (OpenAI's ``reasoning_tokens``): fed each engine
    chunk's text and token ids (:meth:`add`), counted once the choice ends (:meth:`count`).

    The rule: the thinking is where the output parser finds it in the whole output as generated
    (:meth:`OutputParser.reasoning_spans`): each thinking block with its markup (``<think>``, ``</think>`` and the
    whitespace after it; a block the prompt opened starts at the output's start, one never closed runs to its end;
    Harmony's ``analysis`` messages, headers included). A token is a reasoning token when any of its text lies in
    one; every other generated token is the answer's (content, tool calls). So reasoning first, then the answer,
    counts exactly: the tokens up to and including the closing marker (and the whitespace after it) are reasoning,
    the rest not; a reply cut off inside its thinking is all reasoning; interleaved thinking counts each block the
    same way. Tokens are placed by the chunk whose text shows them: a chunk with tokens but no text yet (the engine
    holds back what may begin a stop string, or an unfinished character) goes with the next chunk that shows
    text, and ones whose text is never shown (a matched stop string's) with the text before them. A chunk whose
    text is all thinking or all answer counts all its tokens so; only one of several tokens (a speculative step)
    that straddles a block's edge is split token by token, each token's text from ``piece`` (its bytes).
    Independent of how a parser holds back or splits its deltas, so a streamed choice counts as a whole one.
    """

    def __init__(self, piece: Callable[[int], bytes]):
        self._piece = piece
        self._text: list[str] = []
        self._at = 0
        # (start, end) of a chunk's text in the output, and its tokens; a chunk without text joins the next
        self._chunks: list[tuple[int, int, list[int]]] = []
        self._waiting: list[int] = []

    def add(self, text: str, token_ids: Sequence[int]) -> None:
        """One engine chunk of the choice, in order."""
        self._waiting += token_ids
        if text:
            self._chunks.append((self._at, self._at + len(text), self._waiting))
            self._waiting = []
            self._text.append(text)
            self._at += len(text)

    def count(self, parser: OutputParser) -> int:
        """The choice's reasoning tokens (after its last :meth:`add`), ``parser`` the one its output went through."""
        text = "".join(self._text)
        spans = parser.reasoning_spans(text) if text else []
        if not spans:
            return 0
        total = 0
        for start, end, ids in self._chunks:
            inside = _overlap(spans, start, end)
            if inside == end - start or (inside and len(ids) <= 1):
                total += len(ids)
            elif inside:
                total += self._straddling(spans, text[start:end], start, ids)
        if self._waiting and _overlap(spans, len(text) - 1, len(text)):
            total += len(self._waiting)
        return total

    def _straddling(self, spans: list[tuple[int, int]], text: str, start: int, ids: list[int]) -> int:
        """Of several tokens whose text ``text`` (at ``start`` in the output) lies partly in thinking: the ones
        whose own text does, each token's place found from its bytes."""
        raw = text.encode("utf-8")
        count, at = 0, 0
        for token in ids:
            size = len(self._piece(token))
            first = len(raw[:at].decode("utf-8", "ignore"))
            last = max(first + 1, len(raw[:at + size].decode("utf-8", "ignore")))
            if _overlap(spans, start + min(first, len(text) - 1), start + min(last, len(text))):
                count += 1
            at += size
        return count


def _overlap(spans: list[tuple[int, int]], start: int, end: int) -> int:
    """How many characters of ``[start, end)`` lie in ``spans``."""
    return sum(max(0, min(end, b) - max(start, a)) for a, b in spans)
