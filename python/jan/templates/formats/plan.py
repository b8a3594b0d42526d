"""What a chat request's reasoning and tool settings mean for one chat format.

:class:`ReasoningRequest` reads the competitors' request fields into one
shape (OpenAI/llama-server ``reasoning_effort`` and ``reasoning_format``,
Ollama ``think``, llama-server ``reasoning_budget``, Anthropic-style
``thinking_budget_tokens``, ``chat_template_kwargs.enable_thinking``);
:class:`ChatPlan` turns it, with a :class:`ChatFormat`, into template
variables, messages, engine options and an output parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..grammar import GrammarError, with_text_grammars
from .call_start import BAN
from .detect import ChatFormat
from .grammars import select_functions
from .parser import OutputParser
from .reasoning import THOUGHT_NAMES

# (read in a module of its own, so front ends that render no template -- the CLI -- read them the same way)
from jan.reasoning_fields import REASONING_FIELDS, request_reasoning

__all__ = ["ChatPlan", "ReasoningRequest", "REASONING_FIELDS", "EFFORTS", "EFFORT_LEVELS", "REASONING_FORMATS",
           "THINK_LEVELS", "format_for_template", "request_reasoning"]

#: The reasoning efforts a chat template is given (what templates test ``reasoning_effort`` for).
EFFORTS = ("none", "minimal", "low", "medium", "high")
#: The one table of effort levels a client may ask for, in every dialect (OpenAI's ``reasoning_effort`` and the
#: Responses API's ``reasoning.effort``, whose SDK has ``xhigh`` and ``max``; Anthropic's ``output_config.effort``;
#: Ollama's ``think`` levels), each as the template level it means: the two above ``high`` are the most a local
#: template offers, ``high``. The typed request keeps the level asked (a remote upstream gets it as is).
EFFORT_LEVELS = {"none": "none", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
                 "xhigh": "high", "max": "high"}
#: Ollama's ``think`` levels (its ``api/types.go`` ``ThinkValue``, besides ``true`` and ``false``): levels of the one
#: table, :data:`EFFORT_LEVELS` (``max`` means ``high`` locally). Ollama's ``/api/chat`` and ``/api/generate`` and the
#: chat completions' ``think`` take them.
THINK_LEVELS = ("low", "medium", "high", "max")
REASONING_FORMATS = ("none", "auto", "deepseek", "deepseek-legacy")


@dataclass(frozen=True)
class ReasoningRequest:
    """One request's thinking settings (every field optional: None = the model's default).

    ``effort``: none|minimal|low|medium|high; ``enabled``: thinking on/off;
    ``format``: ``none`` (thinking stays in the content, verbatim) or
    ``auto``/``deepseek`` (split into reasoning_content); ``budget_tokens``:
    cap on thinking tokens (-1 or None: none).
    """

    effort: str | None = None
    enabled: bool | None = None
    format: str | None = None
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.effort is not None:
            if self.effort not in EFFORT_LEVELS:
                raise ValueError(f"reasoning_effort must be one of {', '.join(EFFORT_LEVELS)}, got {self.effort!r}")
            object.__setattr__(self, "effort", EFFORT_LEVELS[self.effort])  # as a template knows it
        if self.format is not None and self.format not in REASONING_FORMATS:
            raise ValueError(f"reasoning_format must be one of {', '.join(REASONING_FORMATS)}, got {self.format!r}")
        if self.budget_tokens is not None and (isinstance(self.budget_tokens, bool) or self.budget_tokens < -1):
            raise ValueError("reasoning_budget must be >= 0, or -1 for no limit")
        if self.budget_tokens == 0 and self.enabled is None:
            # no thinking at all: the template renders it off (as llama-server's --reasoning-budget 0 does), not an
            # opened block the engine closes at once; an explicit switch on still wins. Here, where every request's
            # settings meet (the request's budget or the model's), not in one reader of them
            object.__setattr__(self, "enabled", False)

    @classmethod
    def from_request(cls, body: Mapping[str, Any], model_settings: Mapping[str, Any] | None = None) -> "ReasoningRequest":
        """From an OpenAI/llama-server/Ollama-style request dict (read by :func:`request_reasoning`); the model's
        settings (model.json ``settings``: ``reasoning_budget``, ``reasoning_format``, ``reasoning_effort``) give
        the defaults of what it leaves out. Raises ValueError for bad values."""
        settings = model_settings or {}
        given = request_reasoning(body)
        budget = given.get("budget_tokens", settings.get("reasoning_budget"))
        return cls(
            effort=given.get("effort", settings.get("reasoning_effort")),
            enabled=given.get("enabled"),
            format=given.get("format") or settings.get("reasoning_format"),
            budget_tokens=None if budget is None or budget == -1 else int(budget),
        )


@dataclass
class ChatPlan:
    """The format-specific parts of one chat request.

    Use: ``messages = plan.messages(msgs)``; render with ``plan.template_kwargs()``;
    then ``plan.engine_options(prompt)`` for the engine and ``plan.parser(prompt)``
    per choice.
    """

    fmt: ChatFormat
    reasoning: ReasoningRequest = field(default_factory=ReasoningRequest)
    tools: Sequence[Any] | None = None
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    chat_template_kwargs: Mapping[str, Any] | None = None
    constrained: bool = False  # another grammar (response_format, grammar) already applies
    # a client's raw GBNF grammar holds the whole output (a forced tool_choice adds nothing to it)
    whole_grammar: bool = False
    # The reply text the prompt ends in when the request continues a final assistant message (a
    # prefill, a resumed reply), "" otherwise: whether it left a thinking block open decides where the
    # output starts (ChatFormat.starts_in_reasoning). The output, and so the reply, is only what the
    # model adds to it: the client already has this text (Anthropic and OpenAI prefills return only
    # the new text), so a thought it opened goes on in ``reasoning`` without the text before.
    continued: str = ""
    # tool_choice "none" (the tools stay in the prompt, no call is parsed): the tokens that open a call, banned
    # (jan.templates.formats.call_start); empty where a call opens with text, which then comes back as content
    banned_tokens: tuple[int, ...] = ()
    # tool name -> {string argument: Lark definition}: what the call grammar holds those arguments to beyond their
    # schema (a Responses custom tool's format; jan.templates.grammar.with_text_grammars), never shown to the model
    text_grammars: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def template_kwargs(self) -> dict[str, Any]:
        """Template variables: the format's switches, then the request's own chat_template_kwargs (they win)."""
        r = self.reasoning
        return {**self.fmt.template_kwargs(r.effort, r.enabled, tools=self.tools, budget=r.budget_tokens),
                **(self.chat_template_kwargs or {})}

    def messages(self, messages: Iterable[Any]) -> list[Any]:
        """Messages for the template: ``/think`` switches where that is the convention; earlier
        reasoning passed as ``reasoning_content``, and under the other names templates read it by
        (:data:`~jan.templates.formats.reasoning.THOUGHT_NAMES`), or as the structured content a template keeps it
        in (:attr:`ChatFormat.content_blocks`, :attr:`ChatFormat.thinking_blocks`)."""
        out = []
        for i, m in enumerate(messages):
            if not hasattr(m, "model_dump") and not isinstance(m, Mapping):
                # (a jan.services.types.ChatMessage was "'ChatMessage' object is not iterable" from dict())
                raise TypeError(f"messages[{i}]: expected a message as a dict ({{'role': ..., 'content': ...}}, "
                                f"as the OpenAI API's), got {type(m).__name__}")
            d = m.model_dump(exclude_none=True) if hasattr(m, "model_dump") else dict(m)
            if d.get("reasoning_content"):
                # a template that reads the thinking by another name (gpt-oss's and LFM2.5's ``thinking``, Solar
                # Open's ``reasoning``) otherwise drops it, a tool loop's own thinking too; those reading several
                # names take the first they find, the same text
                for name in THOUGHT_NAMES:
                    d.setdefault(name, d["reasoning_content"])
                if self.fmt.name == "gpt-oss" and d.get("tool_calls") and d.get("content"):
                    # gpt-oss's template raises on a call turn with both text and thinking (it writes one of them
                    # as the turn's analysis): jan's own reply (an analysis, a commentary preamble, a call) sent back
                    # was refused. The thinking is the analysis the model wrote; the preamble it already said is
                    # left out of the prompt, as llama-server leaves it
                    d.pop("content")
            out.append(d)
        if self.fmt.content_blocks:
            out = _content_blocks(out)
        if self.fmt.thinking_blocks:
            out = [_thinking_block(m) for m in out]
        r = self.reasoning
        return self.fmt.apply_switch(out, r.effort, r.enabled)

    @property
    def forced_call(self) -> bool:
        """Whether the whole output is tool call(s): tools with ``required``/``any`` or a named one."""
        return bool(self.tools) and self.tool_choice not in ("auto", "none", None)

    @property
    def raw_reasoning(self) -> bool:
        """Whether the thinking stays in the content as written (``none``; ``deepseek-legacy`` also splits it off)."""
        return self.reasoning.format in ("none", "deepseek-legacy")

    def engine_options(self, prompt: str, logit_bias: Mapping[int, float] | None = None) -> dict[str, Any]:
        """Sampling options for the engine (cheap): control-token text, the thinking budget and, for
        ``tool_choice: "none"`` with the tools in the prompt, ``logit_bias`` banning the tokens that open a
        call over the client's own ``logit_bias`` (which it is given here so that a client's bias on those
        tokens cannot lift the ban)."""
        opts: dict[str, Any] = {}
        if self.fmt.render_special and (self._calls or self.fmt.reasoning is not None or self.fmt.whole_output):
            opts["render_special"] = True
        budget = self.reasoning.budget_tokens
        if (budget is None and not self.fmt.renders_off and not self.fmt.channels and not self.whole_grammar
                and self.fmt.thinking_on(self.reasoning.effort, self.reasoning.enabled) is False):
            # thinking asked off of a template that cannot render it off (R1 distills, Kimi-K2-Thinking): the engine
            # closes it at once, where it went on in full as though asked for. Not gpt-oss: it is made to reason (its
            # least effort is low), Ollama and llama-server keep its analysis for `think: false` too, and an
            # Anthropic client that leaves `thinking` out would get it with no analysis at all. Not under a client's raw
            # grammar, which holds the whole output, thinking included: only it can end that thinking (a forced end
            # marker it rules out would be a 400 naming a budget nobody set)
            budget = 0
        opts.update(self.fmt.budget_options(budget, prompt, self.continued, self._calls))
        if self.banned_tokens:
            opts["logit_bias"] = {**(logit_bias or {}), **{token: BAN for token in self.banned_tokens}}
        return opts

    def watched_thinking_options(self, prompt: str) -> dict[str, Any]:
        """The engine's thinking-budget options without a cap (2**31 - 1 tokens): its sampler then watches the
        thinking, so that the request's ``end_reasoning`` can close it (llama-server's ``reasoning_control``).
        Empty for a format that does not think."""
        return self.fmt.budget_options(2**31 - 1, prompt, self.continued, self._calls)

    @property
    def _calls(self) -> bool:
        """Whether the reply may call a tool (the tools are given and ``tool_choice`` is not ``none``)."""
        return bool(self.tools) and self.tool_choice != "none"

    def grammar_options(self, prompt: str, answer: str | None = None) -> dict[str, Any]:
        """Blocking (builds a grammar): ``grammar`` (+ ``grammar_triggers`` for a lazy ``auto``) that makes
        tool calls in the format's own syntax and holds the answer to ``answer`` (the GBNF of a response
        format or a client grammar; :meth:`ChatFormat.grammar_options` says how they combine per tool_choice).
        Without ``answer`` but ``constrained`` (the caller applies its own grammar): empty. The grammar holds
        what follows the thinking, which stays free (:meth:`ChatFormat.answer_grammar`). A continued reply adds
        ``grammar_prefix``, its text the grammar reads first (:meth:`ChatFormat.grammar_prefix`).
        Raises GrammarError for a bad tool_choice or schema."""
        if answer is None and self.constrained:
            return {}
        thinking = self.fmt.thinking_on(self.reasoning.effort, self.reasoning.enabled)
        tools = with_text_grammars(self.tools, self.text_grammars)
        options = self.fmt.grammar_options(tools, self.tool_choice or "auto", parallel=self.parallel_tool_calls,
                                           prompt=prompt, continued=self.continued, answer=answer, thinking=thinking)
        # The grammar holds the reply, and a continued reply's text is the client's start of it: the engine reads
        # that text through the grammar first (``grammar_prefix``), so a prefill `{"` is continued into one JSON
        # document rather than followed by a whole one of its own; one the grammar cannot start with is refused.
        prefix = self.fmt.grammar_prefix(prompt, self.continued) if options.get("grammar") else ""
        if prefix:
            options["grammar_prefix"] = prefix
        return options

    def output_prefix(self, prompt: str) -> str:
        """The part of a continued reply the output is parsed after, as though the model had written it: the
        text :meth:`parser` reads first (``""`` where the request continues nothing). It is the part the grammar
        holds (:meth:`ChatFormat.grammar_prefix`), for the same reason: it is what comes after the state the
        parser starts in (inside a thought left open, only the part of its end marker the prefill stopped in;
        after a closed one, the answer, read from the end marker: :meth:`ChatFormat.output_start`; else all of it),
        so a call the prefill opened is read as the call the output finishes, and a marker it began is finished.
        Raw reasoning (``none``) reads the grammar's part: its output is shown as written."""
        if self.raw_reasoning:
            return self.fmt.grammar_prefix(prompt, self.continued)
        return self.fmt.output_start(prompt, self.continued)[0]

    def parser(self, prompt: str, **kw: Any) -> OutputParser:
        """A fresh output parser for one choice of this request. ``tool_choice: "none"`` reads no calls, though
        the tools are in the prompt: a call the model writes anyway is content, as it wrote it."""
        tools = self.tools if self.tool_choice != "none" else None
        open_at_start = self.fmt.output_start(prompt, self.continued)[1]
        if self.raw_reasoning and self.continued:
            # raw output is verbatim, and the parser would start it with the start marker the prompt
            # swallowed; a continued reply's text (the marker in it, or before it) is the client's own
            open_at_start = False
        # a thought the prompt ends in (not a block it only opened): the output's first whitespace joins it to that
        thought = (open_at_start and bool(self.continued) and self.fmt.reasoning is not None
                   and not prompt.rstrip().endswith(self.fmt.reasoning.start))
        return OutputParser(
            self.fmt, tools, reasoning_format=self.reasoning.format if self.raw_reasoning else "auto",
            open_at_start=open_at_start, continues_thought=thought, forced=self.forced_function, **kw,
        )

    @property
    def forced_function(self) -> str | None:
        """The one function the call grammar holds the answer to (a named ``tool_choice``, or ``required`` with a
        single tool), else None. A grammar applies only when no other constraint replaced it."""
        if not self.forced_call or self.whole_grammar:
            return None
        try:
            funcs = select_functions(self.tools or (), self.tool_choice)
        except GrammarError:
            return None
        return funcs[0]["name"] if len(funcs) == 1 else None


def _thinking_block(message: dict[str, Any]) -> dict[str, Any]:
    """For a template that reads an earlier reply's thinking only from its content's ``thinking`` chunk (Ministral 3
    Reasoning, :attr:`ChatFormat.thinking_blocks`): an assistant reply with ``reasoning_content`` whose content is
    that chunk, then its text (its parts, where it has several). Its text stays last, so a reply the prompt
    continues (a prefill) still ends the prompt."""
    thought = message.get("reasoning_content")
    if message.get("role") != "assistant" or not thought:
        return message
    content = message.get("content")
    if isinstance(content, list):
        rest = list(content)
    else:
        rest = [{"type": "text", "text": content}] if content else []
    out = {**message, "content": [{"type": "thinking", "thinking": thought}, *rest]}
    del out["reasoning_content"]
    return out


def _content_blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a template that keeps earlier thinking only as structured content (Apertus, :attr:`ChatFormat.content_blocks`):
    each assistant reply's text as ``{"blocks": [{"type": "thoughts", ...}, {"type": "response", ...}]}``, its
    thinking first. The template insists on one shape for every reply of a conversation, so all replies are
    given so, or none: where a reply's content is not plain text (parts), where no reply has thinking (nothing to
    gain), and where the conversation ends in a reply (a prefill the prompt continues, which must end in its
    text), the replies stay text, and earlier thinking is left out as before. Tool calls stay in ``tool_calls``,
    which the template writes after the blocks with their arguments encoded once (``tojson`` of the object)."""
    replies = [m for m in messages if m.get("role") == "assistant"]
    if (not any(m.get("reasoning_content") for m in replies) or messages[-1].get("role") == "assistant"
            or any(not isinstance(m.get("content"), (str, type(None))) for m in replies)):
        return messages
    out = []
    for m in messages:
        if m.get("role") == "assistant":
            blocks = []
            if m.get("reasoning_content"):
                blocks.append({"type": "thoughts", "text": m["reasoning_content"]})
            if m.get("content") or not m.get("tool_calls"):
                blocks.append({"type": "response", "text": m.get("content") or ""})
            m = {**m, "content": {"blocks": blocks}}
        out.append(m)
    return out


def format_for_template(template: Any, with_tools: bool) -> ChatFormat:
    """The :class:`ChatFormat` of a :class:`~jan.templates.ChatTemplate` for a request with or without tools.

    A ``tool_use`` variant that renders the tools decides the tool format. A
    template that ignores tools but whose family's own call syntax is known
    from it (DeepSeek R1 distills and V3.1, firefunction-v2, ...) keeps that
    format: jan's tool polyfill asks the model for that syntax
    (:attr:`ChatTemplate.native_tool_format`), and its own parser and grammar
    read and force it. Any other template gets the Hermes-style polyfill, so
    its calls are parsed (and forced) in that format, while thinking keeps the
    template's own markers.
    """
    # Kept on the template (immutable once made): detecting a format may render it (learned_markers), slow work
    # that callers on the event loop (a refusal before a load, listed capabilities) must find done. The model's
    # abilities make both answers off the loop (jan.services.abilities), and an lru cache could evict them.
    formats = getattr(template, "__dict__", None)
    formats = formats.setdefault("_jan_formats", {}) if isinstance(formats, dict) else {}
    if with_tools not in formats:
        formats[with_tools] = _format_for_template(template, with_tools)
    return formats[with_tools]


def _format_for_template(template: Any, with_tools: bool) -> ChatFormat:
    from dataclasses import replace

    from .detect import detect_format

    source = template.source
    if with_tools and not template.supports_tools:
        tool_use = getattr(template, "tool_use", None)
        if tool_use is not None and tool_use.supports_tools:
            return detect_format(tool_use.source)
        fmt = detect_format(source)
        if fmt.tool_calls is not None or fmt.whole_output is not None:
            return fmt  # the family's own syntax: what the polyfilled prompt asks for (ChatTemplate._polyfill)
        return replace(fmt, tool_calls=None, tool_grammar="hermes", trigger="<tool_call>")
    return detect_format(source)
