"""``reasoning_format: "none"``: thinking stays in the content as the model wrote it, and nothing else changes.

llama-server's ``none`` only moves the thinking: tool calls are still read out of the answer (never out of the
thinking) and the answer is still framed as the format frames it (gpt-oss's final message). So the output is cut
into regions where thinking lies (:meth:`ChatFormat.reasoning_spans`, markup included) and the rest: a thinking
region's text goes to the content verbatim, the rest goes through the format's own parsing as with ``auto``.

:class:`RawThinking` does that over a growing text. A region is handed out once it is decided: the text that may
yet turn out to open a thinking block (a partial start marker, a Harmony header without its ``<|message|>`` yet)
waits for the next piece, so a streamed output is cut exactly like the whole one.
"""

from __future__ import annotations

from typing import Any

from .harmony import CHANNEL, HARMONY_MARKERS, MESSAGE, START
from .text import partial_suffix

__all__ = ["RawThinking"]


def _undecided(fmt: Any, text: str, outside_from: int) -> int:
    """Where the part of ``text`` that may still open a thinking block starts (``len(text)``: none).
    ``outside_from``: where the text outside thinking that ends ``text`` begins."""
    n = len(text)
    if fmt.reasoning is not None:
        return n - partial_suffix(text[outside_from:], (fmt.reasoning.start,))
    # Harmony: a message is thinking or not by its header (from its <|start|> or <|channel|>), known once
    # <|message|> ends the header: a header begun after the last <|message|> is undecided from its start
    after = max(outside_from, text.rfind(MESSAGE, outside_from) + 1)
    heads = [i for i in (text.find(START, after), text.find(CHANNEL, after)) if i >= 0]
    if heads:
        return min(heads)
    return n - partial_suffix(text[outside_from:], HARMONY_MARKERS)


class RawThinking:
    """Cuts a growing output into ``("thinking" | "rest", text)`` pieces, in the output's order.

    ``open_at_start``: the prompt opened a thinking block, so the output starts inside it; the marker the prompt
    swallowed is given back at the start of the first thinking piece (raw text shows it, as llama-server does)."""

    def __init__(self, fmt: Any, *, open_at_start: bool = False):
        self._fmt = fmt
        self._open = open_at_start and fmt.reasoning is not None
        self._prefix = fmt.reasoning.start if self._open else ""
        self._text = ""
        self._given = 0  # how much of the text has been handed out

    def feed(self, piece: str) -> list[tuple[str, str]]:
        self._text += piece
        return self._step(False)

    def finish(self, *, truncated: bool = False) -> list[tuple[str, str]]:
        """End of output. ``truncated``: the undecided tail (a partial start marker) stays unsaid, as the
        thinking splitter leaves it with ``auto``; :meth:`held_rest` says what it is."""
        out = self._step(not truncated)
        if self._prefix:  # nothing was written at all: the raw output is the swallowed marker alone
            out.append(("thinking", self._prefix))
            self._prefix = ""
        return out

    def held_rest(self) -> str:
        """The undecided tail, when a normal end would hand it out as text outside thinking (else "")."""
        text = self._text
        if self._given >= len(text):
            return ""
        spans = self._fmt.reasoning_spans(text, self._open)
        if any(b > self._given for _, b in spans):
            return ""
        return text[self._given:]

    def _step(self, final: bool) -> list[tuple[str, str]]:
        text, n = self._text, len(self._text)
        spans = self._fmt.reasoning_spans(text, self._open)
        outside_from = spans[-1][1] if spans else 0
        if final:
            limit = n
        elif spans and spans[-1][1] == n:
            # a block still open, unless it ends in a partial marker that interrupts it (Apertus's call opener; a
            # Harmony message ended by the next one's <|start|> without its <|end|>: that header is not thinking)
            interrupt = self._fmt.reasoning.interrupt if self._fmt.reasoning is not None else (START,)
            limit = n - partial_suffix(text[spans[-1][0]:], interrupt) if interrupt else n
        else:
            limit = _undecided(self._fmt, text, outside_from)
        out: list[tuple[str, str]] = []
        pos = self._given
        for a, b in spans + [(limit, limit)]:
            if b <= pos:
                continue
            if a > pos:  # the rest before this span (or before the undecided tail)
                out.append(("rest", text[pos:min(a, limit)]))
                pos = min(a, limit)
            if pos >= limit:
                break
            end = min(b, limit)
            if end > pos:
                out.append(("thinking", self._prefix + text[pos:end]))
                self._prefix = ""
                pos = end
        self._given = max(pos, self._given)
        return [(kind, piece) for kind, piece in out if piece]
