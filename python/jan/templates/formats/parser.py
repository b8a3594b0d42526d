"""One output parser for every format: streamed pieces in, content/reasoning/tool-call deltas out.

:class:`OutputParser` chains two stages:

1. reasoning: a :class:`ReasoningSplitter` for marker-pair formats (with
   ``reasoning_format="none"``, :class:`RawThinking`: thinking stays in the
   content, verbatim, and the rest is parsed as with ``"auto"``);
2. tool calls: the format's parser over the text outside thinking.

Family parsers are pure functions ``parse(text, final, schemas) -> Snapshot``
re-applied to the whole output so far (cheap: they only search for markers);
:class:`SnapshotStream` turns consecutive snapshots into deltas. The Hermes /
Llama / Mistral family uses the incremental :class:`ToolCallStreamParser`.
Either way the streamed deltas add up to exactly the non-streamed result.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

from jan.json_text import fix_lone_surrogate_escapes

from ..tool_calls import ToolCallStreamParser, new_call_id, new_short_call_id
from .raw_thinking import RawThinking
from .reasoning import ReasoningSplitter
from .text import tool_schemas
from .types import CallDelta, OutputDelta, ParsedCall, ParsedOutput, Snapshot

__all__ = ["OutputParser", "SnapshotStream", "parse_output"]

SnapshotFn = Callable[[str, bool, Mapping[str, Mapping[str, Any]]], Snapshot]


class SnapshotStream:
    """Runs a snapshot parser over a growing text and reports what each piece added."""

    def __init__(self, fn: SnapshotFn, tools: Iterable[Any] | None, new_id: Callable[[], str]):
        self._fn = fn
        self._schemas = tool_schemas(tools)
        self._new_id = new_id
        self._text = ""
        self._last = Snapshot()
        self._ids: list[str] = []

    def feed(self, piece: str) -> list[OutputDelta]:
        self._text += piece
        return self._step(False)

    def finish(self, *, truncated: bool = False) -> list[OutputDelta]:
        """End of output. ``truncated`` (cut off by the token limit): what was held back as a
        possible marker stays unsaid, an unfinished call keeps what was streamed, and one cut off after its
        name, before any of its arguments, is a call with empty arguments (:attr:`Snapshot.named`)."""
        return self._step(not truncated, cut=truncated)

    def takes_cut(self, held: str) -> bool:
        """Whether ``held`` (text a stage before this one held back as a possible marker of its own when the
        output was cut off) goes on inside a call's markup here: it never shows as content (a cut output's
        parse is not final), so it only settles the call (its name ends there)."""
        return self._fn(self._text + held, False, self._schemas).content == self._fn(self._text, False, self._schemas).content

    def _step(self, final: bool, cut: bool = False) -> list[OutputDelta]:
        snap = self._fn(self._text, final, self._schemas)
        if cut and snap.named:
            snap.calls = [*snap.calls, (snap.named, "")]
        last = self._last
        reasoning = _grown(last.reasoning, snap.reasoning)
        content = _grown(last.content, snap.content)
        calls: list[CallDelta] = []
        for i, (name, args) in enumerate(snap.calls):
            if i < len(last.calls):
                added = _grown(last.calls[i][1], args)
                if added:
                    calls.append(CallDelta(i, arguments=added))
            else:
                self._ids.append(self._new_id())
                calls.append(CallDelta(i, id=self._ids[i], name=name, arguments=args))
        # keep what was already reported: a snapshot never takes text back
        kept: list[tuple[str, str]] = []
        for i, (name, args) in enumerate(snap.calls):
            if i < len(last.calls):
                old_name, old_args = last.calls[i]
                kept.append((old_name, old_args + _grown(old_args, args)))
            else:
                kept.append((name, args))
        kept += last.calls[len(snap.calls):]
        self._last = Snapshot(last.content + content, last.reasoning + reasoning, kept)
        if reasoning or content or calls:
            return [OutputDelta(content=content, reasoning=reasoning, tool_calls=tuple(calls))]
        return []


def _grown(old: str, new: str) -> str:
    return new[len(old):] if new.startswith(old) else ""


class _GenericTools:
    """Adapter: the Hermes/Llama/Mistral incremental parser, speaking OutputDelta."""

    def __init__(self, tools: Iterable[Any] | None, new_id: Callable[[], str]):
        self._p = ToolCallStreamParser(tools, id_factory=new_id)

    @staticmethod
    def _convert(deltas: list[dict[str, Any]]) -> list[OutputDelta]:
        out: list[OutputDelta] = []
        for d in deltas:
            if "content" in d:
                out.append(OutputDelta(content=d["content"]))
            for c in d.get("tool_calls", ()):
                fn = c.get("function", {})
                out.append(OutputDelta(tool_calls=(CallDelta(c["index"], c.get("id"), fn.get("name"), fn.get("arguments", "")),)))
        return out

    def feed(self, piece: str) -> list[OutputDelta]:
        return self._convert(self._p.feed(piece))

    def finish(self, *, truncated: bool = False) -> list[OutputDelta]:
        return self._convert(self._p.finish(truncated=truncated))

    def takes_cut(self, held: str) -> bool:
        """Whether ``held`` (see :meth:`SnapshotStream.takes_cut`) would go into an open call's markup here,
        which a cut drops (never shows as content)."""
        return self._p.in_call_markup


class OutputParser:
    """Streaming parser of one model output in a given :class:`~jan.templates.formats.ChatFormat`.

    ``feed(piece) -> list[OutputDelta]``; ``finish() -> list[OutputDelta]``
    once at the end; then ``result`` (a :class:`ParsedOutput`) holds the
    whole message. ``tools`` are OpenAI tool dicts (None or empty: no tool
    parsing, all non-thinking text is content). ``reasoning_format``:
    ``"auto"``/``"deepseek"`` split thinking into ``reasoning``; ``"none"``
    leaves it in the content verbatim; ``"deepseek-legacy"`` does both. ``open_at_start``: the prompt already
    opened the thinking block (see :meth:`ChatFormat.starts_in_reasoning`); ``continues_thought``: it ends inside a
    thought already begun (a continued thinking-only turn), so the reasoning's leading whitespace is the seam to
    that thought, kept (:func:`~jan.templates.formats.reasoning.split_reasoning`). ``forced``: the one function a grammar
    holds the answer to (a named ``tool_choice``, or ``required`` with one tool): the answer is that call's
    markup, so an output cut off inside it before its name is written is still that call (empty arguments),
    never its markup as text, as the output of OpenAI's forced call cut off by the token limit.
    """

    def __init__(
        self,
        fmt: Any,
        tools: Iterable[Any] | None = None,
        *,
        reasoning_format: str = "auto",
        open_at_start: bool = False,
        continues_thought: bool = False,
        id_factory: Callable[[], str] | None = None,
        forced: str | None = None,
    ):
        # a template that demands 9-alphanumeric ids would reject the client sending jan's id back, and one that reads
        # its model's own ids back (Solar Open's 10 lowercase) would show it ids it never writes
        shape = getattr(fmt, "call_ids", None)
        new_id = id_factory or ((lambda: new_short_call_id(shape)) if shape is not None else new_call_id)
        tools = list(tools or ())
        # "deepseek-legacy" (llama-server's): the thinking stays in the content, as with "none", and is also
        # split off into the reasoning, as with "auto" (a second parser of the same pieces, for that alone)
        legacy = reasoning_format == "deepseek-legacy" and fmt.thinks
        self._raw = reasoning_format == "none" or legacy
        self._shadow = OutputParser(fmt, None, open_at_start=open_at_start) if legacy else None
        self._fmt = fmt
        self._open_at_start = open_at_start
        self._forced = forced if tools else None
        self._new_id = new_id
        self._fed: list[str] = []  # the output as written (a forced call cut off: was its answer begun?)
        self._splitter = None
        # "none" moves only the thinking (into the content, verbatim): the answer is parsed as with "auto", so
        # the same output makes the same tool calls whichever way its thinking is shown
        self._raw_thinking = RawThinking(fmt, open_at_start=open_at_start) if self._raw and fmt.thinks else None
        if fmt.whole_output is not None:
            self._tools: Any = SnapshotStream(fmt.whole_output, tools, new_id)
        else:
            if fmt.reasoning is not None and not self._raw:
                self._splitter = ReasoningSplitter(fmt.reasoning, open_at_start=open_at_start,
                                                   continues_thought=continues_thought)
            if fmt.frames_answer and fmt.tool_calls is not None:
                self._tools = SnapshotStream(fmt.tool_calls, tools, new_id)  # no tools: no calls, but framing read
            elif not tools:
                self._tools = None
            elif fmt.tool_calls is None:
                self._tools = _GenericTools(tools, new_id)
            else:
                self._tools = SnapshotStream(fmt.tool_calls, tools, new_id)
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ParsedCall] = []
        self._surrogates = _SurrogateEscapes()
        self._finished = False

    def feed(self, piece: str) -> list[OutputDelta]:
        """Process the next piece of output text; return what it adds (possibly nothing)."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if self._forced is not None:
            self._fed.append(piece)
        if self._raw_thinking is not None:
            return self._record(self._shadowed(self._raw_stage(self._raw_thinking.feed(piece), False),
                                               lambda p: p.feed(piece)))
        return self._record(self._stage(piece, False))

    def finish(self, *, truncated: bool = False) -> list[OutputDelta]:
        """End of output: release anything held back. Call once. ``truncated``: the output was
        cut off (finish_reason ``length``): unfinished markup is dropped, never shown as content."""
        if self._finished:
            return []
        self._finished = True
        if self._raw_thinking is not None:
            deltas = self._shadowed(self._raw_stage(self._raw_thinking.finish(truncated=truncated), True, truncated),
                                    lambda p: p.finish(truncated=truncated))
        else:
            deltas = self._stage("", True, truncated)
        if truncated and self._forced is not None:
            deltas = self._forced_cut(deltas)
        return self._record(deltas)

    def _forced_cut(self, deltas: list[OutputDelta]) -> list[OutputDelta]:
        """The last ``deltas`` of a forced call's output cut off: where no call was read (its name not written
        yet) but the answer had begun (text outside the thinking: the call's markup), the forced call, with
        empty arguments, in place of what the cut left unsaid."""
        if self._calls or any(d.tool_calls for d in deltas):
            return deltas
        text = "".join(self._fed)
        answer, at = [], 0
        for start, end in self._fmt.reasoning_spans(text, self._open_at_start):
            answer.append(text[at:start])
            at = max(at, end)
        answer.append(text[at:])
        if not "".join(answer).strip(" \t\r\n"):
            return deltas  # cut off in its thinking (or before anything): no call was begun
        kept = [OutputDelta(reasoning=d.reasoning) for d in deltas if d.reasoning]
        return kept + [OutputDelta(tool_calls=(CallDelta(0, self._new_id(), self._forced, ""),))]

    @property
    def made_tool_calls(self) -> bool:
        return bool(self._calls)

    @property
    def thinks(self) -> bool:
        """Whether this output can hold thinking at all (its format has thinking markers or channels)."""
        return self._fmt.thinks

    @property
    def plain(self) -> bool:
        """Whether all of the output is content, verbatim: no thinking split off, no tool calls or answer framing
        read out of it (a client's stop strings may then be matched on the raw output, as the engine does)."""
        return self._tools is None and self._splitter is None

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        """Where thinking lies in ``text``, this parser's output as the model wrote it (the pieces fed, joined):
        ``(start, end)`` character ranges, markup included (:meth:`ChatFormat.reasoning_spans`), whether the
        thinking is split off or left in the content (``reasoning_format="none"``)."""
        return self._fmt.reasoning_spans(text, self._open_at_start)

    def _stage(self, piece: str, final: bool, truncated: bool = False) -> list[OutputDelta]:
        out: list[OutputDelta] = []
        rest = piece
        if self._splitter is not None:
            reasoning, rest = self._splitter.feed(piece) if piece else ("", "")
            if final:
                r2, c2 = self._splitter.finish(truncated=truncated)
                reasoning, rest = reasoning + r2, rest + c2
            if reasoning:
                out.append(OutputDelta(reasoning=reasoning))
        if self._tools is None:
            if rest:
                out.append(OutputDelta(content=rest))
        else:
            if rest:
                out += self._tools.feed(rest)
            if final and truncated and self._splitter is not None:
                held = self._cut_markup(self._splitter.held_answer())
                if held:
                    out += self._tools.feed(held)
            if final:
                out += self._tools.finish(truncated=truncated)
        return _merge(out)

    def _cut_markup(self, held: str) -> str:
        """Of ``held``, the answer text the thinking stage held back as a possible marker of its own when the
        output was cut off: what goes on to the call parser. A cut leaves a held marker unsaid, but a call's
        markup may hold the same characters (Mistral's ``NAME[``, where ``[`` may begin ``[THINK]``), and
        there they end the call's name: the call parser then gets them, as it would have with more output,
        and its own cut rules apply (the call is made; its markup never shows as content)."""
        if not held or self._tools is None or not self._tools.takes_cut(held):
            return ""
        return held

    def _raw_stage(self, pieces: list[tuple[str, str]], final: bool, truncated: bool = False) -> list[OutputDelta]:
        """``reasoning_format: "none"``: thinking pieces are content as written, the rest is parsed as with "auto"
        (any thinking the answer's parser still finds, a Harmony one, is shown raw too: none is split off)."""
        out: list[OutputDelta] = []
        for kind, text in pieces:
            out += [OutputDelta(content=text)] if kind == "thinking" else self._stage(text, False)
        if final and truncated and self._raw_thinking is not None:
            out += self._stage(self._cut_markup(self._raw_thinking.held_rest()), False)
        if final:
            out += self._stage("", True, truncated)
        return _merge([OutputDelta(content=d.content + d.reasoning, tool_calls=d.tool_calls) for d in out])

    def _shadowed(self, deltas: list[OutputDelta], step: Callable[["OutputParser"], list[OutputDelta]]) -> list[OutputDelta]:
        """``deltas`` with the reasoning the shadow parser (``deepseek-legacy``) splits off the same pieces."""
        if self._shadow is None:
            return deltas
        reasoning = "".join(d.reasoning for d in step(self._shadow))
        return [OutputDelta(reasoning=reasoning), *deltas] if reasoning else deltas

    def _record(self, deltas: list[OutputDelta]) -> list[OutputDelta]:
        deltas = self._surrogates.fix(deltas, self._finished)
        for d in deltas:
            if d.content:
                self._content.append(d.content)
            if d.reasoning:
                self._reasoning.append(d.reasoning)
            for c in d.tool_calls:
                if c.id is not None:
                    self._calls.append(ParsedCall(c.id, c.name or "", c.arguments))
                elif c.arguments:
                    self._calls[c.index].arguments += c.arguments
        return deltas

    @property
    def result(self) -> ParsedOutput:
        """Everything parsed so far (complete after :meth:`finish`)."""
        return ParsedOutput(
            content="".join(self._content) or None,
            reasoning="".join(self._reasoning) or None,
            tool_calls=[ParsedCall(c.id, c.name, c.arguments) for c in self._calls],
        )


# A high surrogate's escape at the end of JSON text (an odd run of backslashes before its "u": an escape, not text)
_HIGH_AT_END = re.compile(r"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}$")


class _SurrogateEscapes:
    """Tool-call arguments with each lone surrogate's escape (``\\ud800`` without its pair: a model's JSON may write
    one, its grammar allowing any ``\\uXXXX``) written ``\\ufffd``, as :func:`jan.json_text.loads_json` reads it:
    the arguments a client reads (a lone surrogate, which no UTF-8 text holds: jan refuses it in a request, so an
    agent sending its history back was refused), the Anthropic/Ollama object, the stored response and the prompt it
    is shown again in all hold U+FFFD. Every format's arguments pass here, streamed or whole. A high surrogate's
    escape at a piece's end waits for the next piece (its pair's low half may follow); the parsers never split an
    escape itself between pieces."""

    def __init__(self) -> None:
        self._held: dict[int, str] = {}  # call index -> a high surrogate's escape not sent yet

    def fix(self, deltas: list[OutputDelta], final: bool) -> list[OutputDelta]:
        if not self._held and not any("\\u" in c.arguments for d in deltas for c in d.tool_calls):
            return deltas
        out: list[OutputDelta] = []
        for d in deltas:
            calls: list[CallDelta] = []
            for c in d.tool_calls:
                for index in [i for i in self._held if i != c.index]:  # (another call goes on: this one is done)
                    out.append(OutputDelta(tool_calls=(CallDelta(index, arguments=self._flush(index)),)))
                text = self._held.pop(c.index, "") + c.arguments
                high = _HIGH_AT_END.search(text)
                if high is not None:
                    self._held[c.index] = text[high.end() - 6:]
                    text = text[:high.end() - 6]
                if text or c.id is not None:
                    calls.append(CallDelta(c.index, c.id, c.name, fix_lone_surrogate_escapes(text)))
            if (d.content or d.reasoning) and self._held:
                for index in list(self._held):
                    out.append(OutputDelta(tool_calls=(CallDelta(index, arguments=self._flush(index)),)))
            if d.content or d.reasoning or calls:
                out.append(OutputDelta(d.content, d.reasoning, tuple(calls)))
        if final:
            out += [OutputDelta(tool_calls=(CallDelta(i, arguments=self._flush(i)),)) for i in list(self._held)]
        return out

    def _flush(self, index: int) -> str:
        return fix_lone_surrogate_escapes(self._held.pop(index))  # (nothing followed: a lone one)


def _merge(deltas: list[OutputDelta]) -> list[OutputDelta]:
    """Fold consecutive text-only deltas of the same kind, to send fewer chunks."""
    out: list[OutputDelta] = []
    for d in deltas:
        prev = out[-1] if out else None
        # never fold thinking that comes after answer text into one delta: order matters to a reader
        if prev is not None and not d.tool_calls and not prev.tool_calls and not (prev.content and d.reasoning):
            out[-1] = OutputDelta(content=prev.content + d.content, reasoning=prev.reasoning + d.reasoning)
            continue
        out.append(d)
    return out


def parse_output(text: str, fmt: Any, tools: Iterable[Any] | None = None, **kw: Any) -> ParsedOutput:
    """Parse a finished output at once; same result as :class:`OutputParser` fed in any pieces."""
    p = OutputParser(fmt, tools, **kw)
    p.feed(text)
    p.finish()
    return p.result
