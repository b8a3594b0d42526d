"""Per-choice output parsing: generated text pieces in, content / reasoning / tool-call deltas out.

This is the one place where a model's raw output is read. :func:`output_parser` builds the
parser for one choice of a request from its chat plan (:mod:`jan.templates.formats`): the
format's thinking markers split ``reasoning`` off first, then the format's tool-call parser
reads the rest. :class:`AnswerStops` matches a client's stop strings on a parsed choice's answer text alone;
:class:`ReasoningTokens` counts which of a choice's generated tokens went to its thinking.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from jan.services.prefill_output import PrefilledOutput
from jan.services.types import ChatDelta, ChatRequest
from jan.templates.formats import ChatPlan, OutputDelta
from jan.templates.formats import OutputParser as FormatParser

__all__ = ["AnswerStops", "FormatOutput", "OutputParser", "ReasoningTokens", "output_parser"]


class OutputParser(Protocol):
    """Reads one choice's output. ``feed`` and ``finish`` return deltas with ``choice`` 0 (the
    caller sets the index) and no ``finish_reason`` (the caller decides it)."""

    def feed(self, text: str) -> list[ChatDelta]: ...

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        """End of output; ``finish_reason`` ``"length"`` means it was cut off mid-way."""

    @property
    def made_tool_calls(self) -> bool: ...

    @property
    def plain(self) -> bool:
        """Whether all of the output is content, verbatim (no thinking, tool calls or framing read out of it)."""

    @property
    def thinks(self) -> bool:
        """Whether the output can hold thinking at all (else it has no reasoning tokens to count)."""

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        """Where thinking lies in ``text``, the whole output as generated (the pieces fed, joined): ``(start, end)``
        character ranges, its markers included."""


class FormatOutput:
    """A :class:`jan.templates.formats.OutputParser` speaking :class:`ChatDelta`.

    Output cut off by the token limit inside a call's markup never shows that markup as content: the
    unfinished region is dropped (calls already begun keep what was streamed). (A client's stop string never
    cuts a parsed output: it is matched on the answer's text, :class:`AnswerStops`.)
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

    @property
    def plain(self) -> bool:
        return self._parser.plain

    @property
    def thinks(self) -> bool:
        return self._parser.thinks

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        return self._parser.reasoning_spans(text)


def _delta(d: OutputDelta) -> ChatDelta:
    return ChatDelta(content=d.content, reasoning=d.reasoning, tool_calls=d.tool_calls)


def output_parser(request: ChatRequest, plan: ChatPlan, prompt: str) -> OutputParser:
    """The parser for one choice of ``request`` rendered to ``prompt`` with ``plan``. A continued reply's is read
    from the prefill's start (:class:`PrefilledOutput`), so a call the prefill opened comes back as a call; an
    output all of which is verbatim content gains nothing from that and is read from the output's start."""
    parser = FormatOutput(plan.parser(prompt))
    prefix = plan.output_prefix(prompt)
    if not prefix or parser.plain:
        return parser
    return PrefilledOutput(parser, FormatOutput(plan.parser(prompt)), prefix)


class AnswerStops:
    """A client's stop strings matched on one parsed choice's answer text: its content deltas, never its thinking
    or a tool call's markup and arguments (where a ``"\\n\\n"``, ``"}"`` or ``"Observation:"`` would cut a call, or
    end a reply before it answered). The engine is not given them for such a choice; the chat service runs the
    parser's deltas through :meth:`feed` and cancels the choice's generation once :attr:`matched` is set.

    The rule, as the engine's on raw text: content that may be the start of a stop string is held back until it
    is known not to be one (its run of content goes on otherwise, or ends); a stop string matches within one run
    of content (thinking or a call between two pieces of content parts them, as the markup does in the output),
    the earliest one first; the content ends just before it, and nothing of the choice after it is told (a
    call or thinking the same piece of output held after it included). Held-back content is released at a normal
    end (:meth:`finish`).
    """

    def __init__(self, stops: Iterable[str]):
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""  # content that may begin a stop string: told once it is known not to
        self.matched: str | None = None
        # the matched stop string with the content after it in the same delta (dropped): where it lies in the output
        self.dropped = ""
        self.made_tool_calls = False  # calls told before any match (ones after it never are)

    def __bool__(self) -> bool:
        return bool(self._stops)

    def feed(self, deltas: Iterable[ChatDelta]) -> list[ChatDelta]:
        """A parser's deltas (in order) as the client may see them: the content held back or cut at a stop string."""
        out: list[ChatDelta] = []
        for delta in deltas:
            if self.matched is not None:
                break
            if delta.reasoning and self._held:  # thinking after content ends its run: what was held is content
                out.append(ChatDelta(content=self._release()))
            content = self._match(delta.content) if delta.content else ""
            if self.matched is not None:
                if content or delta.reasoning:  # (a delta's thinking comes before its content)
                    out.append(replace(delta, content=content, tool_calls=()))
                break
            if delta.tool_calls:  # so does a call: the held text goes before it
                content += self._release()
                self.made_tool_calls = True
            if content or delta.reasoning or delta.tool_calls:
                out.append(replace(delta, content=content))
        return out

    def finish(self) -> list[ChatDelta]:
        """A normal end (no stop string matched): the content still held back."""
        rest = self._release() if self.matched is None else ""
        return [ChatDelta(content=rest)] if rest else []

    def _release(self) -> str:
        held, self._held = self._held, ""
        return held

    def _match(self, piece: str) -> str:
        """The content to tell now of ``piece`` (after what was held); sets :attr:`matched` on a stop string."""
        text = self._held + piece
        found = [(at, i) for i, stop in enumerate(self._stops) if (at := text.find(stop)) >= 0]
        if found:
            at, i = min(found)  # the earliest, and of two at one place the one the client listed first
            self._held, self.matched, self.dropped = "", self._stops[i], text[at:]
            return text[:at]
        keep = len(text)
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                keep = len(text) - size
                break
        self._held = text[keep:]
        return text[:keep]


class ReasoningTokens:
    """Which of one choice's generated tokens are reasoning tokens (OpenAI's ``reasoning_tokens``): fed each engine
    chunk's text and token ids (:meth:`add`), counted once the choice ends (:meth:`count`).

    The rule: the thinking is where the output parser finds it in the whole output as generated
    (:meth:`OutputParser.reasoning_spans`): each thinking block with its markup (``<think>``, ``</think>`` and the
    whitespace after it, unless that parts answer text before the block from the answer after it; a block the
    prompt opened starts at the output's start, one never closed runs to its end;
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
        whose own text does, each token's place found from its bytes. A byte that is no UTF-8 (a lone byte token) is
        the one U+FFFD the text shows for it, not that character's three bytes: counted as three, every token after
        it was placed two characters late (an answer's first token counted as thinking)."""
        pieces = [self._piece(token) for token in ids]
        if "\ufffd" in text:  # read as the engine shows them: one U+FFFD for each run of bytes that are no UTF-8
            raw = b"".join(pieces)

            def chars(n: int) -> int:  # (an unfinished character at the end is no character yet)
                return len(codecs.getincrementaldecoder("utf-8")("replace").decode(raw[:n]))
        else:
            raw = text.encode("utf-8")

            def chars(n: int) -> int:
                return len(raw[:n].decode("utf-8", "ignore"))
        count, at = 0, 0
        for piece in pieces:
            first = chars(at)
            last = max(first + 1, chars(at + len(piece)))
            if _overlap(spans, start + min(first, len(text) - 1), start + min(last, len(text))):
                count += 1
            at += len(piece)
        return count


def _overlap(spans: list[tuple[int, int]], start: int, end: int) -> int:
    """How many characters of ``[start, end)`` lie in ``spans``."""
    return sum(max(0, min(end, b) - max(start, a)) for a, b in spans)
