"""A continued reply's output read from the start of its prefill: the client's text is the start of what is parsed.

A prefill may open what only its whole output makes whole: a tool call (``<tool_call>\\n{"name": "get_weather",
"arguments": {"city": "`` with the call forced), markup of a call or an answer frame. Read alone, the continuation
(``Paris"}}\\n</tool_call>``) is no call, just text; read after the prefill it finishes the call. So the parser is
fed the prefill first (the part of it read from the parser's start state: :meth:`ChatPlan.output_prefix`), and
what that part says beyond text goes out before the output's own deltas: the call the prefill opened, with its
name and the arguments the prefill wrote, which the output's deltas then continue. The prefill's own answer text is
never told again: the client wrote it (Anthropic's API, and jan before this, return only the continuation). That
includes text the parser held back at the prefill's end (a trailing ``<tool`` or space that might have begun a call
marker): when the output goes on as text, that held tail comes out first, and is dropped then. So does the thinking
held back at the end of a prefill inside a thought: the part of its end marker it stopped in (``…</thi``, the only
part of an open thought the parser reads first: :meth:`ChatFormat.grammar_prefix`), which the output either
finishes (``nk>``: the thought ends, as in the same text written whole) or turns into thinking text.
"""

from __future__ import annotations

from dataclasses import replace

from jan.services.types import ChatDelta

__all__ = ["PrefilledOutput"]

# Ends the prefill for the probe that learns which of its text the parser holds back: a character no marker of any
# format begins with, and no whitespace (which parsers hold back themselves), so it makes the parser let the held
# text go as content (or, inside a call's arguments, it is argument text, and nothing was held).
_PROBE_END = "\ue000"


class PrefilledOutput:
    """An output parser (:class:`jan.services.output.OutputParser`) that read ``prefix`` before the output.

    ``parser`` reads the prefix and then the output; ``probe``, a fresh parser of the same choice, reads the prefix
    alone once, with :data:`_PROBE_END` after it, to learn which of the prefix's answer text ``parser`` still holds
    back, answer text or thinking (that text is dropped when it comes out)."""

    def __init__(self, parser, probe, prefix: str):
        self._parser = parser
        self._prefix = prefix
        told = parser.feed(prefix)
        # what the prefix said that is not its text: the call(s) it opened, told with the output's first deltas
        self._pending = [ChatDelta(tool_calls=d.tool_calls) for d in told if d.tool_calls]
        probed = probe.feed(prefix + _PROBE_END)
        self._held = _held(told, probed, "content")
        self._held_reasoning = _held(told, probed, "reasoning")

    @property
    def made_tool_calls(self) -> bool:
        return self._parser.made_tool_calls

    @property
    def plain(self) -> bool:
        return self._parser.plain

    @property
    def thinks(self) -> bool:
        return self._parser.thinks

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        # found in the prefix and the generated text together, as the parser read them (the prefix may hold the
        # end marker, or the start of the one the output finishes), then placed in the generated text alone (the
        # reasoning tokens counted are generated ones: the prefix is no part of them)
        n = len(self._prefix)
        spans = self._parser.reasoning_spans(self._prefix + text)
        return [(max(a - n, 0), b - n) for a, b in spans if b > n]

    def feed(self, text: str) -> list[ChatDelta]:
        return self._told(self._parser.feed(text))

    def finish(self, finish_reason: str | None) -> list[ChatDelta]:
        return self._told(self._parser.finish(finish_reason))

    def _told(self, deltas: list[ChatDelta]) -> list[ChatDelta]:
        """``deltas`` after the prefix's pending calls, less the prefix's held-back text where it comes out."""
        pending, self._pending = self._pending, []
        out = []
        for delta in deltas:
            if self._held_reasoning:
                delta = self._unheld_reasoning(delta)
            if self._held:
                delta = self._unheld(delta)
            if delta.content or delta.reasoning or delta.tool_calls:
                out.append(delta)
        return pending + out

    def _unheld(self, delta: ChatDelta) -> ChatDelta:
        """``delta`` without the start of its content that is the prefix's held-back text. Held text comes out
        before anything else the output says; thinking or a call first means it was markup after all (or trimmed
        whitespace), and content that does not go on with it is the output's own: either way nothing more is held."""
        if delta.reasoning:
            self._held = ""
            return delta
        same = 0
        for mine, theirs in zip(delta.content, self._held):
            if mine != theirs:
                break
            same += 1
        if same < len(delta.content) or same == len(self._held) or delta.tool_calls:
            self._held = ""
        else:
            self._held = self._held[same:]
        return replace(delta, content=delta.content[same:])

    def _unheld_reasoning(self, delta: ChatDelta) -> ChatDelta:
        """``delta`` without the start of its thinking that is the prefix's held-back thinking (a part of the
        marker that ends a thought): answer text or a call first means the output finished that marker."""
        if delta.content or delta.tool_calls:
            self._held_reasoning = ""
            return delta
        same = _common(delta.reasoning, self._held_reasoning)
        self._held_reasoning = "" if same < len(delta.reasoning) else self._held_reasoning[same:]
        return replace(delta, reasoning=delta.reasoning[same:])


def _held(told: list[ChatDelta], probed: list[ChatDelta], field: str) -> str:
    """The text of ``field`` the parser held back at the prefix's end: what the probe, whose end let it go, told
    of it beyond what the parser did."""
    shown = "".join(getattr(d, field) for d in told)
    let_go = "".join(getattr(d, field) for d in probed)
    return let_go[len(shown):].removesuffix(_PROBE_END) if let_go.startswith(shown) else ""


def _common(text: str, held: str) -> int:
    """How many characters ``text`` and ``held`` begin with alike."""
    same = 0
    for mine, theirs in zip(text, held):
        if mine != theirs:
            break
        same += 1
    return same
