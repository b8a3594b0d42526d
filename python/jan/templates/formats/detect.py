"""Which chat format a model speaks, read from its chat template source (never from its name).

:func:`detect_format` returns a :class:`ChatFormat`: how the model marks its
thinking, how it writes tool calls, the grammar that forces a call, and which
template switch turns thinking on or off. Checks run most specific first;
anything unrecognised gets the generic parser (Hermes ``<tool_call>``, Llama
JSON, ``<|python_tag|>``, Mistral ``[TOOL_CALLS]``...), which is what jan's
tool polyfill asks models to write.
"""

from __future__ import annotations

import functools

import json
import re
from datetime import datetime, timezone
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from ..tool_calls import MISTRAL_CALL_IDS, SOLAR_CALL_IDS, CallIdShape, partial_suffix
from .after_thinking import after_thinking
from .block_calls import SOLAR_CALLS, SOLAR_HEADER, parse_deepseek, parse_functionary_v32, parse_kimi, parse_solar_open
from ..grammar import either_grammar, gbnf_literal, json_strings_without, prefixed_rules
from .grammars import call_grammar
from .efforts import accepted_efforts, effort_off, named_efforts, template_effort
from .harmony import HARMONY_MARKERS, harmony_reasoning_spans, parse_harmony
from .harmony_grammar import after_analysis, final_message, harmony_budget, harmony_reply_tail
from .learned_markers import learned_markers
from .json_list_calls import parse_apertus, parse_apriel, parse_command_r, parse_firefunction
from .reasoning import ReasoningMarkers, reasoning_spans
from .text import WS, trigger_literals
from .types import Snapshot
from .xml_calls import parse_glm, parse_qwen3_coder

__all__ = ["ChatFormat", "detect_format", "THINK_TAGS"]

THINK_TAGS = ReasoningMarkers("<think>", "</think>")
# Apriel's answer follows its thinking between these (1.6's template writes only the first, after the thinking)
_APRIEL_ANSWER = ("[BEGIN FINAL RESPONSE]", "[END FINAL RESPONSE]")
# Solar Open's thinking message and the answer's (after a message header, formats/block_calls.py SOLAR_HEADER)
SOLAR_THINK, SOLAR_CONTENT, SOLAR_END = "<|think|>", "<|content|>", "<|end|>"
# Mistral's templates check `tool_call.id|length != 9` (and `tool_call_id`) and raise otherwise.
_SHORT_ID_CHECK = re.compile(r"""(?:\.id|tool_call_id['"]?\]?)\s*\|\s*length\s*!=\s*9\b""")

# A call grammar's literals (GBNF), and the markup in one: a tag (``<tool_call>``, ``</function>``, ``<|call|>``,
# DeepSeek's ``<｜tool▁sep｜>``) or a bracketed capital name (``[TOOL_CALLS]``, ``[ARGS]``)
_GBNF_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_MARKUP = re.compile(r'<[^<>\s"\\]+>|\[[A-Z_]+\]')

# A Mistral template that writes a content chunk of type "thinking" as [THINK]...[/THINK] (Ministral 3 Reasoning)
_THINKING_CHUNK = re.compile(r"""\[['"]type['"]\]\s*==\s*['"]thinking['"]""")

SnapshotFn = Callable[[str, bool, Mapping[str, Mapping[str, Any]]], Snapshot]


@dataclass(frozen=True)
class ChatFormat:
    """How one family of chat templates marks thinking and tool calls.

    ``name``: the family (see docs/chat-formats.md). ``reasoning``: its
    thinking markers, or None. ``tool_calls``: its tool-call parser (None:
    the generic one). ``whole_output``: a parser for formats where channels
    carry everything (gpt-oss Harmony), and ``whole_output_spans`` where its
    thinking lies (see :meth:`reasoning_spans`). ``tool_grammar``: the
    :func:`call_grammar` key. ``trigger``: regex of the text that opens a
    call (for the lazy grammar of ``tool_choice: auto``). ``switches``: the
    template variables that turn thinking on/off or set its effort
    (``enable_thinking``, ``thinking``, ``reasoning_effort``) or ``"slash"``
    for a ``/think`` / ``/no_think`` line in the system message.
    ``render_special``: markers may be control tokens, whose text the engine
    must keep in the output. ``channels``: the output is Harmony messages, so
    an answer's grammar holds a ``final`` message after an ``analysis`` one
    (``formats/harmony_grammar.py``), not text after a marked block.
    """

    name: str
    reasoning: ReasoningMarkers | None = None
    tool_calls: SnapshotFn | None = None
    whole_output: SnapshotFn | None = None
    whole_output_spans: Callable[[str], list[tuple[int, int]]] | None = None
    tool_grammar: str = "hermes"
    trigger: str | None = None
    switches: tuple[str, ...] = ()
    render_special: bool = False
    budget_close: str | None = None
    # The tool-call parser also reads the framing of plain answers (functionary v3.2 writes ``all\n`` before
    # its answer), so it runs even when a request has no tools.
    frames_answer: bool = False
    # The call ids the template takes (Mistral's raise on other than 9 alphanumerics) or its model was trained on
    # (Solar Open's 10 lowercase letters and digits, read back in tool results): the ids jan gives parsed calls have
    # that shape, as a client sends them back into the render
    call_ids: CallIdShape | None = None
    channels: bool = False
    # What a template that reads ``reasoning_effort`` takes there, where it says (formats/efforts.py): the only
    # values it accepts (it raises on others: Hy3's no_think/low/high), and the value that turns thinking off
    # (Cohere's "none", Hy3's "no_think"); empty/None: any value, and off is the least effort
    efforts: tuple[str, ...] = ()
    effort_off: str | None = None
    # the levels beyond low/medium/high it names (Solar Open's "minimal"): given as asked, others as the nearest of those
    named_efforts: tuple[str, ...] = ()
    # The template keeps an earlier reply's thinking only as structured content (Apertus: ``content.blocks`` of
    # type ``thoughts`` and ``response``), never from ``reasoning_content``: ChatPlan.messages hands it so
    content_blocks: bool = False
    # The template keeps an earlier reply's thinking only as a ``{"type": "thinking", "thinking": ...}`` chunk of its
    # content (Ministral 3 Reasoning), never from ``reasoning_content``: ChatPlan.messages hands it so
    thinking_blocks: bool = False
    # What opens an answer message where the reply starts a new one (Solar Open's ``<|content|>``, or
    # ``<|begin|>assistant<|content|>`` after its thinking message): an answer's grammar (a response format) writes
    # one first, as the template writes an earlier answer and the parser reads it (ReasoningMarkers.strip)
    answer_opens: tuple[str, ...] = ()

    # -- request side -------------------------------------------------------

    def thinking_on(self, effort: str | None, enabled: bool | None) -> bool | None:
        """Whether the request turns thinking on (True), off (False) or leaves the template's default (None)."""
        if enabled is not None:
            return bool(enabled)
        if effort is None:
            return None
        return effort not in ("none",)

    def template_kwargs(
        self, effort: str | None = None, enabled: bool | None = None, *, tools: Sequence[Any] | None = None,
        budget: int | None = None,
    ) -> dict[str, Any]:
        """Template variables for a request: what carries ``reasoning_effort`` / ``think`` (and a thinking
        ``budget``, to a template that tells the model its budget) into this template, plus the variables some
        templates need beside ``tools`` (firefunction-v2's ``functions`` JSON and ``datetime``)."""
        on = self.thinking_on(effort, enabled)
        out: dict[str, Any] = {}
        if "thinking_budget" in self.switches and (on is False or budget is not None):
            # Seed-OSS: thinking is off at a budget of 0, and the model is told any other budget
            out["thinking_budget"] = 0 if on is False else budget
        if self.name == "firefunction-v2":
            fns = [t.get("function", t) for t in tools or () if isinstance(t, Mapping)]
            out["functions"] = json.dumps(fns, ensure_ascii=False, indent=4) if fns else ""
            out["datetime"] = datetime.now(timezone.utc).strftime("%b %d %Y %H:%M:%S GMT")
        if on is None:
            if "enable_thinking" in self.switches:
                # llama-server's default: reasoning on unless turned off, so a template that reads the switch is
                # given it (DeepSeek R1 distills close their thinking when it is undefined); other switches and
                # templates that read none keep their own defaults
                out["enable_thinking"] = True
            return out
        if "enable_thinking" in self.switches:
            out["enable_thinking"] = on
        if "thinking" in self.switches:
            out["thinking"] = on
        if "thinking_mode" in self.switches:
            out["thinking_mode"] = "enabled" if on else "disabled"
        if "reasoning_effort" in self.switches:
            out["reasoning_effort"] = template_effort(effort if on else None, on, self.efforts, self.effort_off,
                                                      self.named_efforts)
        return out

    def apply_switch(self, messages: list[dict[str, Any]], effort: str | None, enabled: bool | None) -> list[dict[str, Any]]:
        """For ``/think`` / ``/no_think`` templates: the messages with the switch in the system message."""
        on = self.thinking_on(effort, enabled)
        if "slash" not in self.switches or on is None:
            return messages
        flag = "/think" if on else "/no_think"
        msgs = [dict(m) for m in messages]
        if msgs and msgs[0].get("role") in ("system", "developer") and isinstance(msgs[0].get("content"), str):
            text = msgs[0]["content"]
            msgs[0]["content"] = f"{text}\n{flag}" if text else flag
        else:
            msgs.insert(0, {"role": "system", "content": flag})
        return msgs

    def starts_in_reasoning(self, prompt: str, continued: str = "") -> bool:
        """Whether the rendered ``prompt`` ends inside an open thinking block: the output continues it,
        so what it writes up to the end marker is reasoning (the parser, the thinking budget and the
        tool grammar all start from this one answer).

        Only the reply's own tail of the prompt decides. ``continued`` is the reply text the prompt
        ends in, when the request continues a final assistant message (a client's prefill, a resumed
        reply): its last marker wins, as it would in the output (``<think>Let me see`` is open,
        ``<think>x</think>The answer is`` closed). Without one (or a continued text that has no
        marker), the template's own tail decides: a generation prompt that ends in the start marker
        (QwQ, R1 distills, thinking switched on) opened the block. The rest of the conversation never
        does: a user quoting ``<think>`` or an earlier reply cut off mid-thought has no unclosed
        marker in the reply's tail, so it cannot turn the whole answer into reasoning.
        """
        return self._reply_tail(prompt, continued) == "open"

    def thought_state(self, prompt: str, continued: str = "") -> str | None:
        """``"open"`` where the reply's tail of ``prompt`` left a thinking block open, ``"closed"`` where it ended
        one, None where it says neither (the model may open one): :meth:`starts_in_reasoning`'s answer in full."""
        return self._reply_tail(prompt, continued)

    def _reply_tail(self, prompt: str, continued: str = "") -> str | None:
        """``"open"`` where the reply's tail of the prompt left a thinking block open, ``"closed"`` where it
        ends one (a template that switched thinking off writes an empty block), None where it says neither
        (the model may still open one). See :meth:`starts_in_reasoning`. Harmony: None where the reply opens a new
        message, ``"closed"`` where it continues text
        (:func:`~jan.templates.formats.harmony_grammar.harmony_reply_tail`)."""
        if self.channels:
            return harmony_reply_tail(prompt, continued)
        if self.reasoning is None:
            return None
        start, end = self.reasoning.start, self.reasoning.end
        if continued and prompt.endswith(continued):
            opened, closed = continued.rfind(start), continued.rfind(end)
            if opened >= 0 or closed >= 0:
                return "open" if opened > closed else "closed"
            prompt = prompt[:-len(continued)]  # no marker in it: the block is whatever the template left
        tail = prompt.rstrip()
        return "open" if tail.endswith(start) else "closed" if tail.endswith(end) else None

    def grammar_prefix(self, prompt: str, continued: str) -> str:
        """The text of a continued reply (``continued``, which ``prompt`` ends in) that the grammar of
        :meth:`grammar_options` must read before the output: the part of the reply that grammar holds. That grammar
        is the reply's from where ``continued`` leaves it (:meth:`answer_grammar`): still inside a thought it opened
        (or the template opened), the grammar starts in that free thought, so nothing; after a thought it closed,
        the text after the end marker (its leading whitespace the gap the grammar leaves, so dropped); otherwise
        the whole text (where the grammar allows a thought first, the text decides whether it takes that branch).
        Inside a thought, the part of a marker that ends it where ``continued`` stops part-way through one.
        Harmony: a continued reply is the text of its message, which the grammar holds from its first character.
        Empty where ``prompt`` does not end in ``continued`` (the template rewrote it; media in it): the grammar
        then holds the output alone, as it did before jan read prefixes."""
        if not continued or not prompt.endswith(continued):
            return ""
        if self.channels or self.reasoning is None:
            return continued
        tail = self._reply_tail(prompt, continued)
        if tail == "open":
            # nothing of the thought, but a marker it stops part-way through (``…</thi``): its rest in the output
            # (``nk>``) ends the thought, as in the same text written whole, so the grammar and the parser read
            # that part first (else neither ever sees the marker, and the answer goes on as thinking)
            ends = (self.reasoning.end, *self.reasoning.interrupt)
            return continued[len(continued) - partial_suffix(continued, ends):]
        closed = continued.rfind(self.reasoning.end)
        if closed >= 0:
            return continued[closed + len(self.reasoning.end):].lstrip()
        return continued

    def output_start(self, prompt: str, continued: str) -> tuple[str, bool]:
        """Where the output parser of a reply starts: ``(text it reads first, whether it starts inside a thought)``,
        so that a continued reply splits as the same text written whole would. That is the grammar's start
        (:meth:`grammar_prefix`, :meth:`starts_in_reasoning`) but after a thought ``continued`` closed: there the
        parser starts in the thought and reads from its end marker, whose whitespace after it is the marker's, not
        the answer's, also where the output writes it (``…</think>`` continued by ``\n\nThe answer``)."""
        prefix, opened = self.grammar_prefix(prompt, continued), self.starts_in_reasoning(prompt, continued)
        if continued and not opened and not self.channels and self.reasoning is not None and prompt.endswith(continued):
            closed = continued.rfind(self.reasoning.end)
            if closed >= 0 and self._reply_tail(prompt, continued) == "closed":
                return continued[closed:], True
        return prefix, opened

    def answer_grammar(self, grammar: str, prompt: str, continued: str = "", thinking: bool | None = None) -> str:
        """``grammar`` (meant for the answer or the call(s): a response format, a forced call) held after the
        thinking this reply may start with, so the thinking stays free and the budget's forced end marker is
        text the grammar allows (:func:`~jan.templates.formats.after_thinking.after_thinking`). A block the
        prompt opened must be closed first; where the prompt neither opened nor closed one, the model may open
        one only when the request turned thinking on (``thinking``: :meth:`thinking_on`): by default the grammar
        holds from the first token there, as llama.cpp's does (a forced call comes at once, not after thinking
        that may run to max_tokens). Thinking off, or a format without thinking markers: ``grammar`` unchanged.
        Harmony (``channels``): gpt-oss thinks unless asked not to, so a reply that opens a new message may write
        an analysis message first (:func:`~jan.templates.formats.harmony_grammar.after_analysis`), as llama.cpp's
        grammar for it allows; thinking off, or a reply that continues text, holds from the first token."""
        tail = self._reply_tail(prompt, continued)
        if self.channels:
            return grammar if tail == "closed" or thinking is False else after_analysis(grammar)
        if self.reasoning is None or tail == "closed" or (tail is None and thinking is not True):
            return grammar
        return after_thinking(grammar, self.reasoning, opened=tail == "open")

    def structure_markers(self, calls: str = "") -> tuple[str, ...]:
        """The marker texts this format's output parser reads as structure wherever they stand in the answer:
        Harmony's message markers, the thinking markers (a block's start, end, the texts that wrap or interrupt
        it, its family's call openers), what opens an answer message, and where the reply may call a tool
        (``calls``: its call grammar, GBNF; "" for none) the call's opening markers (:attr:`trigger`) and the
        markup its grammar writes around calls (``<tool_call>``, ``</tool_call>``, ``[TOOL_CALLS]``,
        ``<|tool_call_end|>``). What a grammar holds (a response format's JSON, a call's arguments) must not
        write them raw inside a string (:func:`~jan.templates.grammar.json_strings_without`): the parser would
        end the answer there, or open a call or a thought."""
        found = list(HARMONY_MARKERS) if self.channels else []
        if self.reasoning is not None:
            r = self.reasoning
            found += [r.start, r.end, *r.strip, *r.interrupt, *r.calls]
        found += self.answer_opens
        if calls:
            found += trigger_literals(self.trigger) or ()
            for literal in _GBNF_LITERAL.findall(calls):
                found += _MARKUP.findall(literal)
        # markup only (as learned_markers reads it): a marker of plain words (Apriel 1.6's "Here are my reasoning
        # steps:") opens the output and is read nowhere else, and its first letter would have to be escaped in
        # every counted string
        return tuple(dict.fromkeys(m for m in found if m[:1] in ("<", "[")))

    def answer_message(self, answer: str, prompt: str, continued: str = "") -> str:
        """A response format's grammar ``answer`` as the reply writes the answer: Harmony's is a ``final`` message
        (:func:`~jan.templates.formats.harmony_grammar.final_message`) unless the reply continues text; Solar Open's
        opens with its header (:attr:`answer_opens`) where the reply opens a message; every other format's answer is
        the text itself. What :meth:`answer_grammar` then holds after the thinking."""
        if self.channels and self._reply_tail(prompt, continued) is None:
            return final_message(answer)
        if self.answer_opens and not (continued and prompt.endswith(continued)):
            # (a continued reply is inside its message already: its text, and so the grammar, goes on from there)
            opens = " | ".join(gbnf_literal(text) for text in self.answer_opens)
            return f"root ::= ( {opens} ) opened-root\n" + prefixed_rules(answer, "opened-")
        return answer

    @property
    def short_call_ids(self) -> bool:
        """Whether the ids jan gives calls have the template's own shape (:attr:`call_ids`), not ``call_`` + 24."""
        return self.call_ids is not None

    @property
    def renders_off(self) -> bool:
        """Whether the template can render thinking off (a switch it reads; gpt-oss's ``reasoning_effort`` is no
        such switch: its least effort still thinks). Where it cannot, thinking asked off is a thinking budget of 0
        (:meth:`~jan.templates.formats.plan.ChatPlan.engine_options`), as llama-server's ``--reasoning-budget 0`` --
        except gpt-oss, whose off stays its least effort (``low``), as in Ollama and llama-server."""
        return bool(self.switches) and not self.channels

    @property
    def thinks(self) -> bool:
        """Whether outputs of this format can hold thinking (:meth:`reasoning_spans` can find any)."""
        return self.reasoning is not None or self.whole_output_spans is not None

    def reasoning_spans(self, text: str, open_at_start: bool = False) -> list[tuple[int, int]]:
        """Where thinking lies in an output ``text`` as the model wrote it: ``(start, end)`` character ranges, its
        markup included (a marker pair's blocks: :func:`~jan.templates.formats.reasoning.reasoning_spans`;
        Harmony's ``analysis`` messages). ``open_at_start``: the prompt opened a block (see
        :meth:`starts_in_reasoning`). The same whether the output is shown split or raw."""
        if self.reasoning is not None:
            return reasoning_spans(text, self.reasoning, open_at_start=open_at_start)
        return self.whole_output_spans(text) if self.whole_output_spans is not None else []

    def budget_options(self, budget: int | None, prompt: str, continued: str = "", calls: bool = False) -> dict[str, Any]:
        """Engine sampling options that cap the reply's thinking, all its blocks together, at ``budget`` tokens (empty
        when no cap applies). ``continued``: as for :meth:`starts_in_reasoning`. Harmony (gpt-oss): its analysis
        messages are capped (:func:`~jan.templates.formats.harmony_grammar.harmony_budget`; ``calls``: the request
        may call a tool)."""
        if budget is None or budget < 0:
            return {}
        markers = harmony_budget(budget, prompt, continued, calls) if self.channels else self._budget_markers(
            budget, prompt, continued)
        # The budget is the whole reply's thinking, not its first block's: Qwen3, DeepSeek, GLM, Kimi and MiniMax
        # open a <think> block again after a call or some content in the same reply (Anthropic's interleaved
        # thinking), as gpt-oss opens a second analysis message, and that block thought on uncapped. The engine
        # counts every block against the one budget, and once it is spent closes any new block at once.
        return {**markers, "reasoning_every": True} if markers else {}

    def _budget_markers(self, budget: int, prompt: str, continued: str) -> dict[str, Any]:
        """The engine's budget options for a marker pair's thinking (:meth:`budget_options`; empty: no thinking)."""
        if self.reasoning is None:
            return {}
        opened = self.starts_in_reasoning(prompt, continued)
        # the engine watches the output alone for the end marker: where the prefill stopped part-way through it
        # (``…</thi``), the output ends the thought with the rest of it (``nk>``)
        written = partial_suffix(continued, (self.reasoning.end,)) if opened and prompt.endswith(continued) else 0
        return {
            "reasoning_budget": int(budget),
            "reasoning_start": self.reasoning.start,
            "reasoning_end": self.reasoning.end[written:],
            "reasoning_close": self.budget_close or self.reasoning.end,
            **({"reasoning_interrupt": list(self.reasoning.interrupt)} if self.reasoning.interrupt else {}),
            "reasoning_open": opened,
        }

    def grammar_options(
        self, tools: Sequence[Any], tool_choice: Any, *, parallel: bool = True, prompt: str = "",
        continued: str = "", answer: str | None = None, thinking: bool | None = None,
    ) -> dict[str, Any]:
        """Engine options that constrain tool calls: ``grammar`` (+ ``grammar_triggers`` for ``auto``).

        ``required``/named: the grammar applies after the thinking the reply may start with
        (:meth:`answer_grammar`; ``thinking``: :meth:`thinking_on`). ``auto``: a lazy grammar
        that waits for the format's call marker outside thinking. ``none`` or
        no tools: nothing. Raises GrammarError for a bad tool_choice.

        ``answer``: a GBNF grammar the answer must match (a response format). It applies to the answer, never
        to a call: ``required``/named ignore it (the answer is a later turn's), ``none`` is the answer alone, and
        ``auto`` is one grammar, after the thinking, of either the call(s) or the answer (a lazy grammar
        leaves everything before its trigger free, so it cannot hold the answer to the format). The answer is
        framed as the format writes it (:meth:`answer_message`) before it is combined with a call. In the JSON
        strings of both, the format's markers cannot be written raw (:meth:`structure_markers`).
        """
        calls = bool(tools) and tool_choice != "none"
        grammar = call_grammar(self.tool_grammar, tools, "required" if tool_choice == "auto" else tool_choice,
                               parallel=parallel) if calls else ""
        # the JSON strings of what the grammar holds cannot write a marker the parser would read as structure
        markers = self.structure_markers(grammar)
        grammar = json_strings_without(grammar, markers)
        if answer:
            answer = self.answer_message(json_strings_without(answer, markers), prompt, continued)
        if not calls:
            return {"grammar": self.answer_grammar(answer, prompt, continued, thinking)} if answer else {}
        if tool_choice == "auto" and answer is not None:
            grammar = either_grammar(grammar, answer)
        elif tool_choice == "auto":
            if self.trigger is None:
                return {}
            if self.starts_in_reasoning(prompt, continued):
                # only a marker after the end of thinking counts. Searched, not matched from ^: llama.cpp
                # runs std::regex over the whole output so far, whose recursion grows with what a
                # [\s\S]* spans; here it spans only the text between the end of thinking and the call.
                pattern = re.escape(self.reasoning.end) + r"[\s\S]*?(" + self.trigger + ")"
                return {"grammar": grammar, "grammar_triggers": [pattern]}
            return {"grammar": grammar, "grammar_triggers": ["(" + self.trigger + ")"]}
        return {"grammar": self.answer_grammar(grammar, prompt, continued, thinking)}


def _switches(src: str) -> tuple[str, ...]:
    out = []
    if re.search(r"(?<![.\w(])enable_thinking\b(?!\s*=[^=])", src):
        out.append("enable_thinking")
    if re.search(r"\b(?:(?:el)?if|not|and|or)\s+thinking\b(?!\s*[(\[.])|\bthinking\s+is\s+defined", src):
        out.append("thinking")
    if re.search(r"\breasoning_effort\b", src):
        out.append("reasoning_effort")
    if re.search(r"""\bthinking_mode\s*==\s*['"]disabled['"]""", src):  # MiniMax-M3: enabled/disabled/adaptive
        out.append("thinking_mode")
    if re.search(r"\bthinking_budget\s*==\s*0\b", src):  # Seed-OSS: 0 turns thinking off
        out.append("thinking_budget")
    if not out and "/no_think" in src:
        out.append("slash")
    if "enable_thinking" not in out and "/no_think" in src and re.search(r"ns\.enable_thinking", src):
        out.append("slash")
    return tuple(out)


# Per template source, once: every chat request asks (format_for_template), and reading a source is dozens of regex
# searches over it (_switches, learned_markers: 0.25 ms of a 0.6 ms chat request's preparation on stories260K's
# ChatML), on the worker threads that eight requests at once share with the event loop. ChatFormat is frozen.
@functools.lru_cache(maxsize=128)
def detect_format(source: str | None) -> ChatFormat:
    """The :class:`ChatFormat` of a chat template's Jinja ``source`` (None/empty: generic)."""
    src = source or ""
    fmt = _family(src)
    if fmt.reasoning is not None and not fmt.render_special and "<think>" not in src:
        # markers read off the template (learned_markers) are most often control tokens (Kimi-K3's <|open|>,
        # Seed-OSS's <seed:think>), whose text the engine leaves out unless asked: the parser must see them
        fmt = replace(fmt, render_special=True)
    if "reasoning_effort" in fmt.switches:
        fmt = replace(fmt, efforts=accepted_efforts(src), effort_off=effort_off(src), named_efforts=named_efforts(src))
    return fmt


def _family(src: str) -> ChatFormat:
    sw = _switches(src)
    think = THINK_TAGS if "<think>" in src else None
    if think is None and "<|channel|>" not in src:
        # markers the source spells in variables (<seed:think>, <mm:think>, <think:opensource>): as the template
        # writes them around an earlier reply's thinking
        think = learned_markers(src)
    if "<|channel|>" in src:
        return ChatFormat(
            "gpt-oss", whole_output=parse_harmony, whole_output_spans=harmony_reasoning_spans, tool_grammar="harmony",
            trigger=r"<\|channel\|>commentary to=", switches=sw or ("reasoning_effort",), render_special=True,
            channels=True,
        )
    if "<|tool_call:begin|>" in src and "<|think|>" in src:
        # Solar Open: messages under headers (the prompt ends in ``<|begin|>assistant``): thinking as
        # ``<|think|>…<|end|>``, then ``<|begin|>assistant<|content|>ANSWER<|end|>`` or a calls message, whose
        # header the parser drops. A model that skips a thought's end marker ends it at the next message's.
        return ChatFormat(
            "solar-open", ReasoningMarkers(SOLAR_THINK, SOLAR_END, (SOLAR_HEADER + SOLAR_CONTENT, SOLAR_CONTENT, SOLAR_END),
                                           interrupt=(SOLAR_HEADER, SOLAR_CONTENT, SOLAR_CALLS),
                                           calls=(SOLAR_HEADER + SOLAR_CALLS, SOLAR_CALLS)),
            parse_solar_open, tool_grammar="solar-open", trigger=r"<\|tool_calls\|>", switches=sw, render_special=True,
            answer_opens=(SOLAR_HEADER + SOLAR_CONTENT, SOLAR_CONTENT), call_ids=SOLAR_CALL_IDS,
        )
    if "<|tool_calls_section_begin|>" in src:
        return ChatFormat("kimi-k2", think, parse_kimi, tool_grammar="kimi", trigger=r"<\|tool_calls_section_begin\|>",
                          switches=sw, render_special=True)
    if "<arg_key>" in src:
        return ChatFormat("glm-4.5", think or THINK_TAGS, parse_glm, tool_grammar="glm", trigger=r"<tool_call>",
                          switches=sw, render_special=True)
    if "tool▁calls▁begin" in src:
        r1 = "```json" in src
        return ChatFormat(
            "deepseek-r1" if r1 else "deepseek-v3.1", think or THINK_TAGS, parse_deepseek,
            tool_grammar="deepseek-r1" if r1 else "deepseek-v3.1", trigger=r"<｜tool▁calls▁begin｜>",
            switches=sw, render_special=True,
        )
    if "<|START_ACTION|>" in src:
        return ChatFormat(
            "command-r7b", ReasoningMarkers("<|START_THINKING|>", "<|END_THINKING|>", ("<|START_RESPONSE|>", "<|END_RESPONSE|>")),
            parse_command_r, tool_grammar="command-r7b", trigger=r"<\|START_ACTION\|>", switches=sw, render_special=True,
        )
    if "<|tools_prefix|>" in src and "<|inner_prefix|>" in src:
        # Apertus: thinking in <|inner_prefix|>...<|inner_suffix|> (its "Deliberation" switch is enable_thinking),
        # calls as a JSON list of {NAME: {arguments}}, which its template writes inside the thinking (so a call
        # opener ends the block); an earlier reply's thinking only from content blocks
        return ChatFormat(
            "apertus", ReasoningMarkers("<|inner_prefix|>", "<|inner_suffix|>", interrupt=("<|tools_prefix|>",)),
            parse_apertus, tool_grammar="apertus", trigger=r"<\|tools_prefix\|>", switches=sw, render_special=True,
            content_blocks="content.blocks" in src and "'thoughts'" in src,
        )
    if "<tool_calls>[" in src and _APRIEL_ANSWER[0] in src:
        # Apriel 1.6: the generation prompt opens the thinking ("Here are my reasoning steps:\n", kept in a
        # variable), which runs to [BEGIN FINAL RESPONSE]. Apriel 1.5: thinking in <thinking>...</thinking>, the
        # answer wrapped in [BEGIN FINAL RESPONSE]...[END FINAL RESPONSE]. Calls after the answer, both.
        opened = re.search(r"""reasoning_asst_turn_start\s*=\s*['"]([^'"\\]+)""", src)
        reasoning = (ReasoningMarkers(opened.group(1).strip(WS), _APRIEL_ANSWER[0], _APRIEL_ANSWER, calls=("<tool_calls>",))
                     if opened else ReasoningMarkers("<thinking>", "</thinking>", _APRIEL_ANSWER, calls=("<tool_calls>",)))
        return ChatFormat("apriel-1.6" if opened else "apriel-1.5", reasoning, parse_apriel, tool_grammar="apriel",
                          trigger=r"<tool_calls>", switches=sw, render_special=True)
    if "<function=" in src and "<parameter=" in src:
        seed = "<seed:tool_call>" in src  # Seed-OSS: the same calls in its own wrapper
        return ChatFormat("qwen3-coder", think, parse_qwen3_coder, tool_grammar="seed-oss" if seed else "qwen3-coder",
                          trigger=r"<seed:tool_call>|<function=" if seed else r"<tool_call>|<function=", switches=sw)
    if ">>>all" in src:
        return ChatFormat("functionary-v3.2", None, parse_functionary_v32, tool_grammar="functionary-v3.2", switches=sw,
                          frames_answer=True)
    if "functools[" in src:
        return ChatFormat("firefunction-v2", None, parse_firefunction, tool_grammar="firefunction", trigger=r" ?functools\[",
                          switches=sw)
    if "[TOOL_CALLS]" in src:
        args = "[ARGS]" in src
        reasoning = ReasoningMarkers("[THINK]", "[/THINK]") if "[THINK]" in src else None
        return ChatFormat("mistral-reasoning" if reasoning else "mistral", reasoning, None,
                          tool_grammar="mistral-args" if args else "mistral-json", trigger=r"\[TOOL_CALLS\]",
                          switches=sw, render_special=True,
                          call_ids=MISTRAL_CALL_IDS if _SHORT_ID_CHECK.search(src) is not None else None,
                          thinking_blocks=reasoning is not None and _THINKING_CHUNK.search(src) is not None)
    if "<function=" in src:
        return ChatFormat("functionary-v3.1", None, None, tool_grammar="functionary-v3.1", trigger=r"<function=", switches=sw)
    if "<|python_tag|>" in src or ("<|start_header_id|>" in src and "tools" in src and "<tool_call>" not in src):
        return ChatFormat("llama3", None, None, tool_grammar="llama3", trigger=None, switches=sw, render_special=True)
    if "<|tool_call|>" in src:
        granite = ReasoningMarkers("<think>", "</think>", ("<response>", "</response>")) if think else None
        return ChatFormat("granite", granite, None, tool_grammar="granite", trigger=r"<\|tool_call\|>", switches=sw,
                          render_special=True)
    if "<TOOLCALL>" in src:
        return ChatFormat("nemotron", think, None, tool_grammar="nemotron", trigger=r"<TOOLCALL>", switches=sw)
    return ChatFormat("hermes" if "<tool_call>" in src else "generic", think, None, tool_grammar="hermes",
                      trigger=r"<tool_call>", switches=sw)
