"""Split thinking from the answer for formats that wrap it in a pair of markers.

``<think>…</think>`` (Qwen3, QwQ, DeepSeek R1/V3.1, GLM, Kimi-K2-Thinking,
Nemotron, SmolLM3, Granite), ``[THINK]…[/THINK]`` (Magistral/Ministral
reasoning), ``<|START_THINKING|>…<|END_THINKING|>`` (Command-R7B). When the
prompt already opened the block (QwQ, R1 distills, V3.1 with thinking on), the
output starts inside it.

:func:`split_reasoning` is a pure function of the text so far; the streaming
:class:`ReasoningSplitter` re-applies it and emits only what was added, so a
streamed output splits exactly like the whole one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .text import WS, hold, partial_suffix

__all__ = ["THOUGHT_NAMES", "ReasoningMarkers", "ReasoningSplitter", "joined_thoughts", "reasoning_spans",
           "split_reasoning"]

#: The names besides ``reasoning_content`` that chat templates read an earlier reply's thinking by (gpt-oss's and
#: LFM2.5's ``thinking``, vLLM's ``reasoning``, which Solar Open reads): a message sent back gets its thinking under
#: each (:meth:`~jan.templates.formats.plan.ChatPlan.messages`), where it has none of that name.
THOUGHT_NAMES = ("thinking", "reasoning")


@dataclass(frozen=True)
class ReasoningMarkers:
    """The markers of one reasoning format.

    ``strip`` is the pair of markers that wrap the answer (Granite's ``<response>`` / ``</response>``,
    Command-R7B's ``<|START_RESPONSE|>`` / ``<|END_RESPONSE|>``): dropped only where they wrap it, at its
    start and its end; the same text inside the answer ("put it in a <response> tag") is the answer's. Where an
    answer may open in several ways, all but the last are its openings (Solar Open's ``<|begin|>assistant<|content|>``
    and ``<|content|>``), the last its closing.
    """

    start: str
    end: str
    strip: tuple[str, ...] = ()
    # Markers that end a thinking block where they stand and stay in the text after it: Apertus's template writes
    # a call inside the thinking (<|inner_prefix|>...<|tools_prefix|>[...]), and the model stops after it
    interrupt: tuple[str, ...] = ()
    # The family's call openers: a closing answer wrapper right before a call ends the answer too (Apriel writes
    # "[END FINAL RESPONSE]" and then its <tool_calls>)
    calls: tuple[str, ...] = ()


def _block_end(text: str, pos: int, markers: ReasoningMarkers) -> tuple[int, int]:
    """Where the thinking block that runs from ``pos`` ends: ``(index, length of the end marker there)``, 0 for an
    interrupting marker (it stays in the text after the block); ``(-1, 0)``: not in ``text``."""
    j, n = text.find(markers.end, pos), len(markers.end)
    for marker in markers.interrupt:
        k = text.find(marker, pos)
        if k >= 0 and (j < 0 or k < j):
            j, n = k, 0
    return j, (n if j >= 0 else 0)


def split_reasoning(text: str, markers: ReasoningMarkers, *, open_at_start: bool, final: bool,
                    continues_thought: bool = False) -> tuple[str, str]:
    """``(reasoning, rest)`` of ``text``; ``rest`` is the answer (and any tool calls) outside thinking blocks.

    Reasoning blocks are stripped of surrounding whitespace and joined with a
    blank line; whitespace right after a closing marker is dropped (the block's markup), except after a block
    that follows answer text ending in a word: there it parts that text from the answer after the block, which
    was glued to it ("Let me check.<think>...</think>\n\nFound it" was "Let me check.Found it"). Unless
    ``final``, a trailing partial marker is held back (appears in neither part). ``continues_thought``: the block
    open at the start goes on from a thought the prompt ends in (a continued thinking-only turn), so the whitespace
    it starts with is the seam between that thought and its continuation ("Let me see" + " more"), kept.
    """
    blocks: list[str] = []
    rest: list[str] = []
    pos, inside, n = 0, open_at_start, len(text)
    cur: list[str] = []
    keep_lead = open_at_start and continues_thought  # (the first block only: the one the prompt opened)
    if open_at_start and not continues_thought:
        pos = _opened_again(text, markers.start, final)
        if pos < 0:
            return "", ""  # the start marker written again may be coming: nothing is decided yet
    while pos <= n:
        if inside:
            j, closer = _block_end(text, pos, markers)
            if j < 0:
                cur.append(hold(text[pos:], (markers.end, *markers.interrupt), final))
                break
            cur.append(text[pos:j])
            blocks.append("".join(cur).rstrip(WS) if keep_lead else "".join(cur).strip(WS))
            cur, keep_lead = [], False
            pos = j + closer
            if not _ends_in_words(rest):
                while pos < n and text[pos] in WS:
                    pos += 1
            inside = False
        else:
            i = text.find(markers.start, pos)
            if i < 0:
                rest.append(hold(text[pos:], (markers.start, *markers.strip), final))
                break
            rest.append(text[pos:i])
            pos = i + len(markers.start)
            inside = True
    if cur:
        # an open block: the end of its text may be whitespace before the closing marker
        blocks.append("".join(cur).rstrip(WS) if keep_lead else "".join(cur).strip(WS))
    reasoning = "\n\n".join(b for b in blocks if b)
    answer = "".join(rest)
    if markers.strip:
        answer = _unwrap(answer, markers.strip[:-1], markers.strip[-1], final, markers.calls)
    return reasoning, answer


def _opened_again(text: str, start: str, final: bool) -> int:
    """Where the thinking of a block the prompt opened begins in ``text``: past the start marker where the output
    writes it again first (after whitespace only), as models trained on templates that left it to them do (R1
    distills, QwQ: ``<think>\n`` in the prompt, and ``<think>\n`` again as the first tokens); it is the block's
    markup, not its thinking. -1 while the text so far is whitespace and part of that marker (unless ``final``)."""
    lead = len(text) - len(text.lstrip(WS))
    if text.startswith(start, lead):
        return lead + len(start)
    if not final and start.startswith(text[lead:]):
        return -1
    return 0


def _ends_in_words(rest: list[str]) -> bool:
    """Whether the answer so far (``rest``'s pieces) ends in other than whitespace: a thinking block there stands
    between two parts of the answer, and the whitespace after it is the answer's."""
    for piece in reversed(rest):
        if piece:
            return piece[-1] not in WS
    return False


def _unwrap(answer: str, openings: tuple[str, ...], closing: str, final: bool, calls: tuple[str, ...] = ()) -> str:
    """``answer`` without the markers that wrap it. An opening one (the first of ``openings`` it starts with)
    counts only at its start; the closing one only at its end, which is known once the output is over: until then a
    closing marker with nothing but whitespace after it is held back (text after it makes it the answer's own). The
    answer also ends at a closing marker that a call (one of ``calls``) follows; the call stays."""
    body = answer.lstrip(WS)
    opening = next((o for o in openings if body.startswith(o)), None)
    if opening is not None:
        # the whitespace the wrappers stand on their own lines with is theirs (Apriel's "[BEGIN FINAL RESPONSE]\n")
        answer = body[len(opening):].lstrip(WS)
    elif not final and body and any(o.startswith(body) for o in openings):
        return ""  # an opening marker may still be coming
    k = answer.find(closing) if calls else -1
    while k >= 0:
        after = answer[k + len(closing):]
        lead = after.lstrip(WS)
        if lead.startswith(calls):
            answer = answer[:k].rstrip(WS) + after
            break
        if not final and any(c.startswith(lead) for c in calls):
            return answer[:k].rstrip(WS)  # a call may be coming
        k = answer.find(closing, k + 1)
    end = answer.rstrip(WS)
    if end.endswith(closing):
        return end[: len(end) - len(closing)].rstrip(WS)
    if not final:
        # held back: a partial closing marker, and the whitespace before it (the closing marker's, if it comes)
        return answer[: len(answer) - partial_suffix(end, (closing,))].rstrip(WS) if end == answer else end
    return answer


def joined_thoughts(pieces: Iterable[str | None]) -> str:
    """Several pieces of one turn's thinking (an Anthropic turn's thinking blocks, a Responses turn's reasoning
    items or summary parts, a stored message's reasoning parts) as the one thinking a template is given: joined
    with a blank line, as :func:`split_reasoning` joins the blocks of one output. A piece's own whitespace at a
    seam gives way to that blank line, so the pieces jan streamed itself (a second block's text begins with the
    blank line that parts it from the first) join back to the whole output's thinking, never with two; a single
    piece stays as it is."""
    kept = [p for p in pieces if p and p.strip(WS)]
    if len(kept) <= 1:
        return kept[0] if kept else ""
    return "\n\n".join([kept[0].rstrip(WS), *(p.strip(WS) for p in kept[1:-1]), kept[-1].lstrip(WS)])


def reasoning_spans(text: str, markers: ReasoningMarkers, *, open_at_start: bool) -> list[tuple[int, int]]:
    """Where thinking lies in an output ``text``: ``(start, end)`` character ranges, one per thinking block,
    each from its opening marker through its closing marker (both included) and the whitespace after it where
    :func:`split_reasoning` drops it (the block's markup, not the answer's: all but after answer text that ends in
    a word). A block the prompt opened
    (``open_at_start``) starts at 0; one never closed runs to the end of ``text``. Blocks are found as
    :func:`split_reasoning` finds them (the spans' text, markers and whitespace aside, is its ``reasoning``)."""
    spans: list[tuple[int, int]] = []
    pos, n = 0, len(text)
    opened: int | None = 0 if open_at_start else None
    said = ""  # the last character of the answer before the block (split_reasoning's rule for what follows it)
    while True:
        if opened is not None:
            j, closer = _block_end(text, pos, markers)
            end = n if j < 0 else j + closer
            while end < n and text[end] in WS and not (said and said not in WS):
                end += 1
            if end > opened:
                spans.append((opened, end))
            if j < 0:
                return spans
            pos, opened = end, None
        else:
            i = text.find(markers.start, pos)
            if i < 0:
                return spans
            if i > pos:
                said = text[i - 1]
            opened, pos = i, i + len(markers.start)


class ReasoningSplitter:
    """Streaming :func:`split_reasoning`: ``feed(piece)`` -> ``(reasoning_added, rest_added)``."""

    def __init__(self, markers: ReasoningMarkers, *, open_at_start: bool = False, continues_thought: bool = False):
        self.markers = markers
        self.open_at_start = open_at_start
        self.continues_thought = continues_thought
        self._text = ""
        self._reasoning = ""
        self._rest = ""

    def _step(self, final: bool) -> tuple[str, str]:
        reasoning, rest = split_reasoning(self._text, self.markers, open_at_start=self.open_at_start, final=final,
                                          continues_thought=self.continues_thought)
        # Each split extends the previous one (see split_reasoning); guard anyway
        # so a surprise never duplicates text.
        r_add = reasoning[len(self._reasoning):] if reasoning.startswith(self._reasoning) else ""
        c_add = rest[len(self._rest):] if rest.startswith(self._rest) else ""
        self._reasoning += r_add
        self._rest += c_add
        return r_add, c_add

    def feed(self, piece: str) -> tuple[str, str]:
        self._text += piece
        return self._step(False)

    def finish(self, *, truncated: bool = False) -> tuple[str, str]:
        """End of output; ``truncated``: a partial marker held back stays unsaid (see :meth:`held_answer`)."""
        return self._step(not truncated)

    def held_answer(self) -> str:
        """The answer text held back now as a possible marker (a thinking block's start, an answer wrapper): what
        a normal end would add to the answer, "" when what it would add is thinking. An output cut off there
        hands it to the call parser when it is a call's markup (Mistral's ``NAME[`` holds a ``[`` that may
        begin ``[THINK]``): it ends the call's name, and the call parser's own cut rules then apply to it."""
        reasoning, rest = split_reasoning(self._text, self.markers, open_at_start=self.open_at_start, final=True,
                                          continues_thought=self.continues_thought)
        if reasoning != self._reasoning or not rest.startswith(self._rest):
            return ""
        return rest[len(self._rest):]
