"""The typed path: what every front end builds and every service takes and yields.

Front ends (the OpenAI routes, the CLI, the Python API, later other dialects) turn their
wire format into these frozen dataclasses; services take them, call the engines and yield
typed deltas back; each front end only formats those. Nothing here knows HTTP or JSON.

Options are layered: a field that is ``None`` was not given and never overrides a layer
below it. :func:`resolve_sampling` and :func:`resolve_load` are the one precedence rule
(first non-``None`` per field wins) followed by the one defaults table
(:data:`SAMPLING_DEFAULTS`, :data:`LOAD_DEFAULTS`). The layers, top first: request >
thread > assistant > model.json > command-line flags (load options only) > extension
settings > built-in defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from jan.reasoning_fields import thinking_switch_fault
from jan.services.control import GenerationControl
from jan.engine.results import TokenLogprob, TopLogprob, Usage, plain
from jan.errors import BadRequestTypeError
from jan.templates.formats.types import CallDelta

__all__ = [
    "AudioPart",
    "ChatDelta",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "ChoiceResult",
    "CompletionChoiceResult",
    "CompletionDelta",
    "CompletionRequest",
    "CompletionResult",
    "DocumentPart",
    "EmbeddingRequest",
    "EmbeddingResult",
    "FINISH_REASONS",
    "FallbackTemplate",
    "FinishReason",
    "ImagePart",
    "InfillChunk",
    "LOAD_DEFAULTS",
    "MAX_EMBEDDING_INPUTS",
    "embedding_inputs_refusal",
    "MEDIA_ID",
    "MEDIA_MARKER",
    "media_place",
    "place_item",
    "MediaText",
    "MAX_EMBEDDING_TOKENS",
    "LineRules",
    "LoadOptions",
    "NamedToolChoice",
    "Part",
    "ReasoningOptions",
    "RenderedPrompt",
    "ResponseFormat",
    "SAMPLING_DEFAULTS",
    "SamplingOptions",
    "TextPart",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "TextGrammar",
    "ToolSpec",
    "TopLogprob",
    "Truncation",
    "allowed_tools",
    "check_context_keep",
    "Usage",
    "ends_in_prefill",
    "merge_options",
    "resolve_load",
    "resolve_sampling",
    "require_request",
]


# -- checks of what a caller builds ----------------------------------------------------------
# The HTTP front ends validate their bodies before they build these types; a Python caller (the services API
# of the README) builds them by hand. So each checks its fields against its own annotations when it is made, in
# one rule: a wrong type is a RequestError naming the field (a ValueError, which every front end answers as a
# 400), not an AttributeError or TypeError deep in a template or the engine. A list given for a tuple is taken
# as the tuple. The checks are built once per class from its annotations and are isinstance tests only, so a
# request a route validated already costs next to nothing more (microseconds).

#: Where a value is not of its type: (the path below the field: "", "[2]", " key 'x'"; what it should be; the value).
_Fault = tuple[str, str, Any]
_Check = Callable[[Any], "_Fault | None"]

_TYPE_WORDS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
               str: ("a string", "strings"), bytes: ("bytes", "bytes"), type(None): ("None", "None")}


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _words(hint: Any, plural: bool = False) -> str:
    """What a value of the type ``hint`` is, in words (for the error)."""
    origin, args = get_origin(hint), get_args(hint)
    if _is_union(hint):
        return " or ".join(_words(a, plural) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return ("tuples" if plural else "a tuple") + (f" of {_words(args[0], True)}" if args else "")
    if origin is Mapping:
        return ("mappings" if plural else "a mapping") + (f" with {_words(args[0], True)} as keys" if args else "")
    if hint in _TYPE_WORDS:
        return _TYPE_WORDS[hint][plural]
    name = getattr(hint, "__name__", str(hint))
    return name if plural else ("an " if name[:1] in "AEIOU" else "a ") + name


def _plain_check(hint: type) -> _Check:
    wanted = _words(hint)
    if hint is float:  # an int is a number too; a bool is neither here (nor in JSON)
        kinds: Any = (int, float)
    elif hint is bytes:
        kinds = (bytes, bytearray, memoryview)
    else:
        kinds = hint
    strict = hint in (int, float)
    # a whole float is an integer to the engine (jan.engine.params._int), as JSON has it: model.json's "top_k": 40.0
    whole_floats = hint is int

    def check(value: Any) -> _Fault | None:
        if isinstance(value, kinds) and not (strict and isinstance(value, bool)):
            return None
        if whole_floats and isinstance(value, float) and value.is_integer():
            return None
        return "", wanted, value
    return check


def _checker(hint: Any) -> _Check:
    """A check of a value against the type ``hint``, in the forms these dataclasses use (classes, unions,
    ``Literal``, ``tuple[X, ...]``, ``Mapping[K, V]``); any other form is not checked."""
    origin, args = get_origin(hint), get_args(hint)
    wanted = _words(hint)
    if _is_union(hint):
        arms = [_checker(a) for a in args if a is not type(None)]
        optional = type(None) in args

        def union(value: Any) -> _Fault | None:
            if value is None and optional:
                return None
            faults = []
            for arm in arms:
                fault = arm(value)
                if fault is None:
                    return None
                faults.append(fault)
            # an arm of the value's own kind that failed inside it (a tuple with a wrong item) says more
            return next((f for f in faults if f[0]), ("", wanted, value))
        return union
    if origin is Literal:
        return lambda value: None if any(type(value) is type(a) and value == a for a in args) else ("", wanted, value)
    if origin is tuple:
        item = _checker(args[0]) if len(args) == 2 and args[1] is Ellipsis else (lambda value: None)

        def tuple_of(value: Any) -> _Fault | None:
            if not isinstance(value, tuple):
                return "", wanted, value
            for i, element in enumerate(value):
                fault = item(element)
                if fault is not None:
                    return f"[{i}]{fault[0]}", fault[1], fault[2]
            return None
        return tuple_of
    if origin is Mapping:
        key_check, value_check = (_checker(a) for a in (args or (Any, Any)))

        def mapping(value: Any) -> _Fault | None:
            if not isinstance(value, Mapping):
                return "", wanted, value
            for key, element in value.items():
                fault = key_check(key)
                if fault is not None:
                    return f" key {key!r}", fault[1], fault[2]
                fault = value_check(element)
                if fault is not None:
                    return f"[{key!r}]{fault[0]}", fault[1], fault[2]
            return None
        return mapping
    if isinstance(hint, type) and hint is not Any:
        return _plain_check(hint)
    return lambda value: None


def _as_tuples(value: list, hint: Any) -> Any:
    """A list given where ``hint`` wants a tuple, as that tuple (lists in it that should be tuples too)."""
    for arm in get_args(hint) if _is_union(hint) else (hint,):
        if get_origin(arm) is tuple:
            item = get_args(arm)[0] if get_args(arm) else Any
            return tuple(_as_tuples(v, item) if isinstance(v, list) else v for v in value)
    return value


_NO_DEFAULT = object()


@functools.cache
def _field_checks(cls: type) -> tuple[tuple[str, _Check, Any, Any], ...]:
    """``(name, check, annotation, default)`` of each init field of a dataclass of this module (built once per
    class); ``default`` is the field's own default value, or a marker no value is, for a field without one."""
    hints = get_type_hints(cls)
    return tuple((f.name, _checker(hints[f.name]), hints[f.name], _NO_DEFAULT if f.default is MISSING else f.default)
                 for f in fields(cls) if f.init)


def _misuse(where: str, message: str, param: str | None = None, *, typed: bool = False,
            code: str = "invalid_value") -> ValueError:
    """The :class:`~jan.services.errors.RequestError` naming ``where``; ``typed``: a value of the wrong type, a
    :class:`~jan.services.errors.RequestTypeError` (also a ``TypeError``). Code ``invalid_value`` either way, as
    every typed request's refusal has always had (text that is no Unicode: ``invalid_unicode``, the engine's)."""
    from jan.services.errors import RequestError, RequestTypeError  # (jan.services imports this module)

    kind = RequestTypeError if typed else RequestError
    return kind(f"{where}: {message}", param=param or where, code=code)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_fields(obj: Any) -> None:
    """Each field of the frozen dataclass ``obj`` of its annotated type (lists given for tuples made tuples), or a
    ``RequestError`` naming the field (the item within it) and what it should be."""
    for name, check, hint, default in _field_checks(type(obj)):
        value = getattr(obj, name)
        if value is default:
            continue  # the field's own default, valid by its definition: most fields of a request, every request
        if type(value) is list:
            value = _as_tuples(value, hint)
            object.__setattr__(obj, name, value)
        fault = check(value)
        if fault is not None:
            where, wanted, got = fault
            raise _misuse(name + where, f"expected {wanted}, got {_shown(got)}{_build_hint(wanted, got)}",
                          param=name + where.partition(" ")[0], typed=not wanted.startswith("one of "))
        if not type(obj).__name__.endswith(_OUTPUT_KINDS):
            _check_text(name, value)


#: The dataclasses jan makes of a model's output (a result, a streamed delta), whose text is the engine's UTF-8 (a
#: model's ``\ud800`` escape is read as U+FFFD: jan.json_text): no caller's argument, not checked as one.
_OUTPUT_KINDS = ("Result", "Delta")


def _check_text(where: str, value: Any) -> None:
    """A ``RequestError`` naming ``where`` (the item within it) for text holding a lone UTF-16 surrogate (a
    ``"\\ud800"`` a Python caller wrote, a file name's undecodable byte read with ``surrogateescape``), which no
    model can read (it becomes UTF-8 on its way to the engine): refused where the request is made, as the engine's
    ``invalid_unicode`` (:func:`jan.engine.params.engine_text`), not when a service reaches the tokenizer (after a
    model load) or never (a tool's name, stored in a thread and failing each later write)."""
    if isinstance(value, str):
        from jan.engine.params import engine_text  # (the engine's one check and wording)

        try:
            engine_text(where, value)
        except ValueError as exc:
            raise _misuse(where, str(exc).removeprefix(f"{where}: "), code="invalid_unicode") from None
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_text(f"{where}[{i}]", item)


def _build_hint(wanted: str, got: Any) -> str:
    """How to make the typed value a dict was given for (an OpenAI-style ``{"role", "content"}`` message is what a
    user of the wire formats passes first): the class to build, and for a message its one-line constructor."""
    cls = globals().get(wanted.removeprefix("a ").removeprefix("an "))
    if not isinstance(got, Mapping) or not isinstance(cls, type) or cls.__module__ != __name__:
        return ""
    if cls.__name__ == "ChatMessage":
        return " (a dict is no ChatMessage: build one with jan.services.types.ChatMessage.of_text(role, text))"
    return f" (a dict is no {cls.__name__}: build one with jan.services.types.{cls.__name__}(...))"


def _check_counts(obj: Any, counts: Mapping[str, str]) -> None:
    """Each of ``obj``'s fields in ``counts`` (field -> its :data:`jan.engine.params.RANGES` entry, or
    ``reasoning_budget``, ``id_slot``) within the engine's bounds when given, or a ``RequestError`` naming the field:
    ``n`` (1 to 16, the server's: n=0 made no choice, a chat then failed with an IndexError, a completion answered
    nothing), ``top_logprobs`` (0 to 20), a thinking budget (-1: none, or a count), a slot (-1: any) — every front
    end's refusal, made here for a Python caller too rather than only where the engine reads it, after the load."""
    from jan.engine.params import ID_SLOT, RANGES, REASONING_BUDGET

    apart = {"reasoning_budget": REASONING_BUDGET, "id_slot": ID_SLOT}  # (not in RANGES: see jan.engine.params)
    for name, option in counts.items():
        value = getattr(obj, name)
        if value is None:
            continue
        try:
            (apart.get(option) or RANGES[option]).check(name, value)
        except ValueError as exc:
            raise _misuse(name, str(exc).removeprefix(f"{name}: "), typed=isinstance(exc, TypeError)) from None


def _check_ranges(options: "SamplingOptions") -> None:
    """Each given option within :data:`jan.engine.params.RANGES` (the one table the engine checks too), or a
    ``RequestError`` naming it, when the options are made: checked only by the engine, a Python caller of the
    services got a bare ``ValueError`` without its ``param``, and only after the model had loaded for it."""
    from jan.engine.params import RANGES

    for name in _RANGED_OPTIONS:
        value = getattr(options, name)
        if value is None:
            continue
        try:
            RANGES[name].check(name, value)
        except ValueError as exc:
            raise _misuse(name, str(exc).removeprefix(f"{name}: "), typed=isinstance(exc, TypeError)) from None
    for token, bias in (options.logit_bias or {}).items():
        try:
            RANGES["logit_bias"].check(f"logit_bias[{token}]", bias)
        except ValueError as exc:
            raise _misuse(f"logit_bias[{token}]", str(exc).removeprefix(f"logit_bias[{token}]: "),
                          param="logit_bias") from None


#: SamplingOptions' fields the engine bounds (jan.engine.params.RANGES); logit_bias, a mapping, is checked apart
_RANGED_OPTIONS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "typical_p", "mirostat", "mirostat_tau",
                   "mirostat_eta", "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
                   "draft_max", "draft_min", "ngram", "draft_p_min")


def _not_empty(obj: Any, name: str, what: str) -> None:
    if not getattr(obj, name):
        raise _misuse(name, f"must hold at least one {what}")


# -- content parts -------------------------------------------------------------------
@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = field(default="text", init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class ImagePart:
    """An image as its encoded file bytes (PNG, JPEG, ...) and MIME type."""

    data: bytes
    mime_type: str
    type: Literal["image"] = field(default="image", init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class AudioPart:
    """Audio as its encoded file bytes and format (``"wav"``, ``"mp3"``)."""

    data: bytes
    format: str
    type: Literal["audio"] = field(default="audio", init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class DocumentPart:
    """A document (a PDF, a text file) as its file bytes: what every dialect's file or document input becomes.

    A local text model cannot see pages, so the chat service reads it as text before the prompt is made
    (:func:`jan.services.documents.read_documents`, in a worker thread); what the model reads is ``title``
    and ``context``, then the text. ``media_type``: the type the client gave (``""``: unknown, told by the
    bytes); ``title``: its file name or title. A document that cannot be read is a
    :class:`jan.DocumentError` naming its message and part."""

    data: bytes
    media_type: str = ""
    title: str | None = None
    context: str | None = None
    type: Literal["document"] = field(default="document", init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)


Part = Union[TextPart, ImagePart, AudioPart, DocumentPart]


# -- messages and tools ----------------------------------------------------------------
@dataclass(frozen=True)
class ToolCall:
    """A call the model made: ``arguments`` is the JSON text of the arguments object."""

    id: str
    name: str
    arguments: str

    def __post_init__(self) -> None:
        _check_fields(self)


#: The roles of a :class:`ChatMessage`.
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``role``: system, developer, user, assistant or tool; ``content``: its parts (a string is
    taken as its one text part, as :meth:`of_text` makes it). A wrong type or role is a ``RequestError``
    naming the field."""

    role: str
    content: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.content, str):  # a text turn, as of_text makes it (not a tuple of characters)
            object.__setattr__(self, "content", (TextPart(self.content),) if self.content else ())
        _check_fields(self)
        if self.role not in ROLES:
            raise _misuse("role", f"expected one of {', '.join(ROLES)}, got {self.role!r}")

    @classmethod
    def of_text(cls, role: str, text: str, **kw: Any) -> "ChatMessage":
        return cls(role, (TextPart(text),) if text else (), **kw)

    @property
    def text(self) -> str:
        """The text parts joined (``""`` when there are none)."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def openai_dict(self, content: Any) -> dict[str, Any]:
        """This message in OpenAI's shape around ``content`` (as the caller wants it: text for a
        chat template, parts for an upstream API): role, tool calls, tool_call_id, name,
        reasoning_content."""
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.reasoning:
            out["reasoning_content"] = self.reasoning
        return out


@dataclass(frozen=True)
class TextGrammar:
    """A Lark grammar that one string ``argument`` of a tool's arguments must follow, whole (a Responses custom
    tool's ``format``: the tool's text is that argument). Where the engine constrains calls, the call's grammar holds
    the argument to it (:mod:`jan.templates.lark_gbnf`); a definition that cannot be held so is a 400."""

    argument: str
    definition: str
    syntax: Literal["lark"] = "lark"


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is its arguments' JSON schema, ``text_grammar`` a grammar one
    of its string arguments follows beyond it."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None
    text_grammar: TextGrammar | None = None

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class NamedToolChoice:
    """Force a call of this one tool."""

    name: str

    def __post_init__(self) -> None:
        _check_fields(self)


ToolChoice = Union[Literal["auto", "none", "required"], NamedToolChoice]
def allowed_tools(tools: tuple["ToolSpec", ...], names: list[str], *, param: str,
                  schema_field: Callable[[int], str] | None = None) -> tuple["ToolSpec", ...]:
    """OpenAI's ``allowed_tools`` tool choice: only the ``tools`` that ``names`` lists, in their order (OpenAI
    keeps the whole list in the prompt for its cache; the model is shown only these). A name not among
    ``tools`` is a ``ValueError`` naming the field: ``param`` with ``{i}`` for the name's index.

    A tool left out is still the request's: its ``parameters`` schema is checked as every tool's is
    (:func:`jan.services.local.check_schemas`, which sees only the tools kept), a
    :class:`~jan.templates.GrammarError` said of ``schema_field(i)`` (``i``: its index in ``tools``) -- a broken
    schema was let through by naming only the other tools, where ``tool_choice: "auto"`` refused it."""
    known = {t.name for t in tools}
    for i, name in enumerate(names):
        if name not in known:
            raise ValueError(f"{param.format(i=i)}: no function '{name}' in tools")
    wanted = set(names)
    if schema_field is not None:
        from jan.templates.formats.grammars import parameters_error  # (the templates load with the first chat)

        for i, tool in enumerate(tools):
            if tool.name not in wanted and tool.text_grammar is None:
                err = parameters_error(tool.parameters)
                if err is not None:
                    raise err.said_of(schema_field(i))
    return tuple(t for t in tools if t.name in wanted)


#: How a conversation longer than the context is treated (``ChatRequest.truncation``).
Truncation = Literal["disabled", "auto"]

#: What prompts a model that has no chat template of its own (``ChatRequest.fallback_template``).
FallbackTemplate = Literal["chatml", "ollama"]


@dataclass(frozen=True)
class ResponseFormat:
    """``text``, ``json_object`` (any object, or one matching ``schema`` if given) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None

    def __post_init__(self) -> None:
        _check_fields(self)

    @classmethod
    def from_mapping(cls, value: Any, param: str = "response_format") -> "ResponseFormat | None":
        """A stored layer's ``response_format`` in OpenAI's shape (an assistant's or a thread's
        ``parameters``): ``"auto"``/``None`` is not given; ``{"type": "text" | "json_object" (with
        llama.cpp's optional ``schema``) | "json_schema", "json_schema": {"name", "schema", "strict"}}``.
        :class:`ValueError` naming ``param`` for any other value."""
        if value is None or value == "auto":
            return None
        if not isinstance(value, Mapping) or value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError(f"{param}: expected \"auto\" or {{\"type\": \"text\" | \"json_object\" | "
                             f"\"json_schema\", ...}}, got {value!r}")
        kind = value["type"]
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, Mapping):
                raise ValueError(f"{param}.json_schema: required when type is 'json_schema'")
            schema, name, strict = spec.get("schema"), spec.get("name"), spec.get("strict")
            if schema is not None and not isinstance(schema, Mapping):
                raise ValueError(f"{param}.json_schema.schema: expected an object, got {schema!r}")
            if name is not None and not isinstance(name, str):
                raise ValueError(f"{param}.json_schema.name: expected a string, got {name!r}")
            if strict is not None and not isinstance(strict, bool):
                raise ValueError(f"{param}.json_schema.strict: expected true or false, got {strict!r}")
            return cls("json_schema", schema=dict(schema) if schema else None, name=name or "response",
                       strict=strict)
        schema = value.get("schema")
        if schema is not None and not isinstance(schema, Mapping):
            raise ValueError(f"{param}.schema: expected an object, got {schema!r}")
        return cls(kind, schema=dict(schema) if schema and kind == "json_object" else None)


@dataclass(frozen=True)
class ReasoningOptions:
    """How a reasoning model should think and how its thoughts come back (all optional)."""

    effort: str | None = None
    format: str | None = None
    budget_tokens: int | None = None
    enabled: bool | None = None
    #: The client insists on thinking (Ollama's ``think: true``): a model whose chat format cannot think is
    #: the request's 400 (Ollama's own answer), where by default it just answers without thinking.
    required: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_counts(self, {"budget_tokens": "reasoning_budget"})  # (-1: no cap, as the engine takes it)


# -- options: one defaults table and one precedence function per kind -----------------------
@dataclass(frozen=True)
class SamplingOptions:
    """Sampling for one request; ``None`` = not given here (a lower layer or the default decides).

    ``max_tokens``: generated tokens at most (``None``: until the end of the context);
    ``temperature`` <= 0 is greedy; ``stop`` strings end generation and are not returned (one
    string is taken as the one stop); ``logit_bias`` maps token ids to additive biases.

    A value of the wrong type (``max_tokens="3"``) or out of range (:data:`jan.engine.params.RANGES`, the one
    table of ranges, which the engine checks again) is a ``RequestError`` (a ``ValueError``) naming the field
    when the options are made, before any model loads for them.
    """

    # when to stop
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    ignore_eos: bool | None = None
    # the sampler chain
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    mirostat: int | None = None  # 1 or 2: Mirostat in place of top-k/top-p/min-p/typical-p; 0: off
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    # penalties and biases
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[int, float] | None = None
    # reproducibility
    seed: int | None = None
    # Speculative decoding (llama-server's names; see jan.engine.params): "ngram"/True drafts
    # with n-grams, "draft" with the model's draft model; the output is the same as without it.
    speculative: bool | str | None = None
    draft_max: int | None = None
    draft_min: int | None = None
    ngram: int | None = None
    draft_p_min: float | None = None
    # LoRA adapters this request runs under (llama-server's per-request "lora"): (adapter id, scale) pairs, the
    # model's other adapters at 0; None: the model's current defaults (GET/POST /lora-adapters)
    lora: tuple[tuple[int, float], ...] | None = None
    # llama-server's id_slot: the engine slot the request runs in, waiting while it is busy (None or -1: any)
    id_slot: int | None = None
    # Fields this layer says have no value (:data:`CLEARABLE`: no token limit, a seed drawn at random, no stop
    # strings), which lower layers (a model.json's parameters) then do not fill in: Ollama's num_predict -1 and
    # seed -1, llama-server's n_predict -1, an empty stop list of either. None alone is "not given here".
    cleared: tuple[str, ...] = ()

    #: The fields whose absence is itself a setting, so a request can clear a lower layer's value of them.
    CLEARABLE: ClassVar[frozenset[str]] = frozenset({"max_tokens", "seed", "stop"})

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # one stop string, not its characters
            object.__setattr__(self, "stop", (self.stop,))
        _check_fields(self)
        _check_ranges(self)
        _check_counts(self, {"id_slot": "id_slot"})  # (its top is the model's slot count: Model.stream checks that)
        for name in self.cleared:
            if name not in self.CLEARABLE:
                raise _misuse("cleared", f"{name!r} cannot be cleared (only {', '.join(sorted(self.CLEARABLE))})")
        if any(getattr(self, name) is not None for name in self.cleared):
            # a value given wins (a later replace(max_tokens=...) of a layer that cleared it): it says the field
            object.__setattr__(self, "cleared", tuple(n for n in self.cleared if getattr(self, n) is None))
        if self.stop and "" in self.stop:
            # here, not only in the engine's parameters: a parsed reply's stop strings never reach the engine
            # (services/output.AnswerStops), and an empty one would end every answer before it began
            raise _misuse("stop", "stop strings must not be empty")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "SamplingOptions":
        """A layer from a dict in Jan's/OpenAI's terms (model.json ``parameters``, a thread's or an
        assistant's ``parameters``, a request body). Unknown keys are ignored; Jan's ``max_tokens``
        of -1/0 ("no limit") and an empty ``stop`` list mean "not given"; ``max_completion_tokens``
        is OpenAI's newer name for ``max_tokens`` and wins over it."""
        if not isinstance(values, Mapping):
            return cls()
        kw: dict[str, Any] = {}
        for f in sampling_fields():
            value = values.get(f.name)
            if value is not None:
                kw[f.name] = value
        if values.get("max_completion_tokens") is not None:
            kw["max_tokens"] = values["max_completion_tokens"]
        if isinstance(kw.get("max_tokens"), int) and not isinstance(kw["max_tokens"], bool) and kw["max_tokens"] <= 0:
            del kw["max_tokens"]
        # A stored layer (a hand-edited file, an older client's) may hold any JSON: a wrong shape is a
        # ValueError naming the field, as the engine's own checks of the other fields are, never a TypeError.
        stop = kw.get("stop")
        if stop is not None:
            if not isinstance(stop, (str, list, tuple)) or not all(isinstance(s, str) for s in stop):
                raise ValueError(f"stop: expected a string or a list of strings, got {stop!r}")
            stops = (stop,) if isinstance(stop, str) else tuple(stop)
            if stops:
                kw["stop"] = stops
            else:
                del kw["stop"]
        if kw.get("lora") is not None:
            from jan.engine.params import lora_request  # (the one rule, with the engine's messages)

            kw["lora"] = lora_request(kw["lora"])
        bias = kw.get("logit_bias")
        if bias is not None:
            if not isinstance(bias, Mapping):
                raise ValueError(f"logit_bias: expected an object of token ids to biases, got {bias!r}")
            try:
                bias = {int(k): float(v) for k, v in bias.items()}
            except (TypeError, ValueError):
                raise ValueError(f"logit_bias: expected an object of token ids to biases, got {bias!r}") from None
            if bias:
                kw["logit_bias"] = bias
            else:
                del kw["logit_bias"]
        return cls(**kw)

    def given(self) -> dict[str, Any]:
        """The fields that are set, as keyword arguments (``stop`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in sampling_fields() if getattr(self, f.name) is not None}
        if "stop" in out:
            out["stop"] = list(out["stop"])
        if "logit_bias" in out:
            out["logit_bias"] = dict(out["logit_bias"])
        if "lora" in out:
            out["lora"] = [{"id": index, "scale": scale} for index, scale in out["lora"]]
        return out


@dataclass(frozen=True)
class LineRules:
    """llama-server's output rules for code completion, which end a choice early (``finish_reason`` ``length``,
    its ``stop_type: "limit"``), applied by the service on the generated text as llama-server applies them:

    ``n_indent`` (0: off): after the first line, a line indented by fewer spaces or tabs than this (an empty line
    too) ends the choice, cut before the line's first character; ``t_max_predict_ms`` (-1 or 0: off): once this
    many milliseconds passed since the choice's first token, the next piece of text holding a newline ends it
    (that piece shown whole). Local engines only (a RequestError for a remote one, which the service cannot
    stop mid-line). Out of range: a RequestError naming the field.
    """

    n_indent: int = 0
    t_max_predict_ms: int = -1

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.n_indent < 0:
            raise _misuse("n_indent", f"must be 0 (off) or more, got {self.n_indent}")
        if self.t_max_predict_ms < -1:
            raise _misuse("t_max_predict_ms", f"must be -1 (off) or more, got {self.t_max_predict_ms}")

    def __bool__(self) -> bool:
        return self.n_indent > 0 or self.t_max_predict_ms > 0


def sampling_fields() -> tuple[Any, ...]:
    """:class:`SamplingOptions`' option fields: its dataclass fields but ``cleared``, which says of the others."""
    return tuple(f for f in fields(SamplingOptions) if f.name != "cleared")


#: The built-in sampling defaults, as llama.cpp's server has them (results are comparable).
SAMPLING_DEFAULTS = SamplingOptions(
    max_tokens=None,
    temperature=0.8,
    top_k=40,
    top_p=0.95,
    min_p=0.05,
    typical_p=1.0,
    mirostat=0,
    mirostat_tau=5.0,
    mirostat_eta=0.1,
    repeat_penalty=1.0,
    repeat_last_n=64,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    seed=None,
    logit_bias=None,
    stop=None,
    ignore_eos=False,
)


@dataclass(frozen=True)
class LoadOptions:
    """How a local model is loaded; ``None`` = not given at this layer.

    ``n_ctx``: context tokens per slot (``None``: the model's training context, at most 4096, or
    less when that KV cache would not fit in free memory — see :mod:`jan.engine.fit`);
    ``n_parallel``: slots (requests served at once); ``max_queue``: requests that may wait for a
    slot; ``n_gpu_layers``: layers offloaded (-1: all; "auto": as many as the GPUs hold, none without one,
    :mod:`jan.engine.offload`); ``cache_type_k``/``cache_type_v``: the KV
    cache's element type (f16, q8_0, q4_0, ...; ``jan.engine.model.CACHE_TYPES``); ``draft_model``:
    a GGUF sharing the model's vocabulary that drafts for it (speculative decoding);
    ``image_min_tokens``/``image_max_tokens``: the tokens one image may take on a projector that resizes
    images (dynamic resolution: Qwen2/2.5/3-VL, ...; None: the projector's own bounds).
    """

    n_ctx: int | None = None
    n_parallel: int | None = None
    n_batch: int | None = None
    n_threads: int | None = None
    # Fewer threads while other processes keep cores busy: "exact", "always", "off" (jan.Model's).
    adaptive_threads: bool | str | None = None
    n_gpu_layers: int | str | None = None
    max_queue: int | None = None
    flash_attn: bool | None = None
    use_mmap: bool | None = None
    kv_unified: bool | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    # MiB of host memory keeping more conversations' KV caches than there are slots (-1 no limit, 0 off)
    cache_ram_mib: int | None = None
    # Every request's speculative-decoding defaults (a request's own options win).
    speculative: bool | str | None = None
    draft_max: int | None = None
    draft_min: int | None = None
    ngram: int | None = None
    draft_p_min: float | None = None
    # A GGUF sharing the model's vocabulary that drafts for it (speculative "draft" by default).
    draft_model: str | None = None
    # LoRA adapters loaded with the model: (file, default scale) pairs (jan.Model's ``lora``); a model.json's own
    # (settings.lora, its paths resolved by the model service: ``lora_paths``) win over the server's (--lora)
    lora: tuple[tuple[str, float], ...] | None = None
    # the adapters loaded with every default scale 0 (llama-server's --lora-init-without-apply)
    lora_init_without_apply: bool | None = None
    embedding: bool | None = None
    pooling: str | None = None
    # Tokens one image may take on a dynamic-resolution projector (Qwen2/2.5/3-VL...); None: the projector's own
    image_min_tokens: int | None = None
    image_max_tokens: int | None = None

    #: model.json ``settings`` key -> field
    MODEL_JSON_KEYS = {
        "ctx_len": "n_ctx",
        "ngl": "n_gpu_layers",
        "n_parallel": "n_parallel",
        "cpu_threads": "n_threads",
        "adaptive_threads": "adaptive_threads",
        "n_batch": "n_batch",
        "embedding": "embedding",
        "pooling": "pooling",
        "flash_attn": "flash_attn",
        "use_mmap": "use_mmap",
        "max_queue": "max_queue",
        "kv_unified": "kv_unified",
        "cache_type_k": "cache_type_k",
        "cache_type_v": "cache_type_v",
        "cache_ram_mib": "cache_ram_mib",
        "speculative": "speculative",
        "draft_max": "draft_max",
        "draft_min": "draft_min",
        "ngram": "ngram",
        "draft_p_min": "draft_p_min",
        "image_min_tokens": "image_min_tokens",
        "image_max_tokens": "image_max_tokens",
        "lora_init_without_apply": "lora_init_without_apply",
        # the draft model's file is resolved by the model service (``draft_model_path``), and so are the LoRA
        # adapters' (``lora_paths``)
    }

    def __post_init__(self) -> None:
        """Each value given checked as the engine's load option of its name (:func:`jan.engine.model.check_load_option`:
        ``n_ctx=-1`` is no context size): a layer that can never load is refused where it is made, not at the load it
        reaches later. TypeError or :class:`RequestError` (a ValueError) naming the field; options that depend on
        another layer's (``draft_p_min`` on a draft model) are judged once the layers are merged, at load."""
        from jan.engine.model import check_load_option

        for f in fields(self):
            value = getattr(self, f.name)
            try:
                check_load_option(f.name, value)
            except ValueError as exc:  # (first: a BadRequestTypeError is both, and was a RequestError as a ValueError)
                detail = str(exc).removeprefix(f"{f.name}: ")
                raise _misuse(f.name, detail, typed=isinstance(exc, TypeError)) from None
            except TypeError as exc:
                raise TypeError(str(exc) if str(exc).startswith(f"{f.name}") else f"{f.name}: {exc}") from None

    @classmethod
    def from_model_settings(cls, settings: Mapping[str, Any] | None) -> "LoadOptions":
        """The layer a model.json's ``settings`` gives (``ctx_len`` 0/-1 means "the model's own")."""
        if not isinstance(settings, Mapping):
            return cls()
        kw = {name: settings[key] for key, name in cls.MODEL_JSON_KEYS.items() if settings.get(key) is not None}
        if kw.get("n_ctx") in (0, -1):
            del kw["n_ctx"]
        return cls(**kw)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "LoadOptions":
        """A layer from keyword-style names (extension settings, command-line flags); ``None`` values are not given."""
        if not isinstance(values, Mapping):
            return cls()
        return cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})

    def given(self) -> dict[str, Any]:
        """The fields that are set, as ``jan.Model`` keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


#: The built-in load defaults for served models (``jan serve``, ``jan chat``/``jan run``).
LOAD_DEFAULTS = LoadOptions(n_parallel=4, max_queue=64, n_gpu_layers="auto", n_batch=512, cache_type_k="f16",
                            cache_type_v="f16", adaptive_threads="exact")

_Options = Union[SamplingOptions, LoadOptions]


def merge_options(*layers: _Options | None) -> Any:
    """The layers folded into one: per field the first non-``None`` value, top layer first.

    No defaults are applied (engines that forward options, like a remote API, want only what
    was given). All layers must be of one type; ``None`` layers are skipped.
    """
    present = [layer for layer in layers if layer is not None]
    if not present:
        raise TypeError("merge_options needs at least one layer")
    kind = type(present[0])
    values: dict[str, Any] = {}
    cleared: list[str] = []
    for f in fields(kind):
        if f.name == "cleared":
            continue
        for layer in present:
            if not isinstance(layer, kind):
                raise TypeError(f"cannot merge {type(layer).__name__} into {kind.__name__}")
            value = getattr(layer, f.name)
            if value is not None:
                values[f.name] = value
                break
            if f.name in getattr(layer, "cleared", ()):  # said to have none: the layers under it are not asked
                cleared.append(f.name)
                break
    if cleared:  # (kept cleared, so that a later merge under more layers leaves them so)
        values["cleared"] = tuple(cleared)
    return kind(**values)


def resolve_sampling(*layers: SamplingOptions | None) -> SamplingOptions:
    """The effective sampling: the layers (top first), then :data:`SAMPLING_DEFAULTS`."""
    return merge_options(*layers, SAMPLING_DEFAULTS)


def resolve_load(*layers: LoadOptions | None) -> LoadOptions:
    """The effective load options: the layers (top first), then :data:`LOAD_DEFAULTS`."""
    return merge_options(*layers, LOAD_DEFAULTS)


# -- requests ---------------------------------------------------------------------------
def check_context_keep(value: Any, param: str) -> int:
    """``value`` as a :attr:`ChatRequest.context_keep` (Ollama's ``num_keep``): -1 or a count of tokens >= 0;
    else a ``RequestError`` naming ``param`` (Ollama treats any negative as -1; jan says so instead)."""
    from jan.services.errors import RequestError  # (jan.services imports this module)

    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise RequestError(f"{param}: expected -1 (keep all of the context) or a number of tokens >= 0, got "
                           f"{value!r}", param=param, code="invalid_value")
    return value


def ends_in_prefill(messages: tuple[ChatMessage, ...] | list[ChatMessage]) -> bool:
    """Whether a conversation ends in an assistant turn to continue rather than answer: a prefill (text, or
    nothing, but no tool calls). llama-server (/v1/chat/completions), Ollama (/api/chat) and Anthropic
    (/v1/messages) all continue such a turn; its text is not repeated in the reply."""
    return bool(messages) and messages[-1].role == "assistant" and not messages[-1].tool_calls


def thought_prefill(messages: tuple[ChatMessage, ...] | list[ChatMessage]) -> str:
    """The thinking a conversation's final assistant turn holds when that is all it holds (no text, media nor tool
    calls: a thought a client asks to go on, an answer cut off while thinking sent back), stripped; ``""``
    otherwise. Such a prefill is continued inside the thought (:func:`jan.services.local.chat_prompt` ends the
    prompt inside the open thinking block), never dropped."""
    if not ends_in_prefill(messages) or messages[-1].content:
        return ""
    return (messages[-1].reasoning or "").strip()


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request, whatever front end it came from.

    ``model=None`` means the one loaded or default model. ``n`` choices are generated
    (seeds consecutive from ``sampling.seed``); ``top_logprobs`` alternatives per token when
    ``logprobs``. ``grammar`` (GBNF) constrains the whole output (a JSON ``response_format``
    with it is a ``RequestError``, and so is a ``tool_choice`` that forces a call). ``chat_template_kwargs`` become chat template variables.
    ``continue_final_message``: the last message is an assistant reply to continue (cut off
    earlier, or a client's prefill); the prompt ends inside it and generation continues its
    text, which the output does not repeat. Set it with :func:`ends_in_prefill`.
    """

    model: str | None
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    #: ``"auto"`` (None), ``"required"``, a :class:`NamedToolChoice`, or ``"none"``: the model answers in text. The
    #: tools stay in the prompt either way (an agent's final-answer turn reuses its earlier turns' KV cache); with
    #: ``"none"`` no call is parsed out of the output (one the model writes anyway is content) and, where a call
    #: opens with a single token, that token is banned.
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    grammar: str | None = None
    #: A lazy ``grammar`` (llama-server's ``grammar_lazy``), as :attr:`CompletionRequest.grammar_triggers`: free
    #: output until a trigger matches, the grammar's from there on.
    grammar_triggers: tuple[str, ...] = ()
    grammar_trigger_tokens: tuple[int, ...] = ()
    #: Control tokens whose text the output shows, as :attr:`CompletionRequest.preserved_tokens`.
    preserved_tokens: tuple[str, ...] = ()
    sampling: SamplingOptions = SamplingOptions()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning: ReasoningOptions | None = None
    chat_template_kwargs: Mapping[str, Any] | None = None
    #: The last message is an assistant reply to continue (a resumed run, a prefill), not a turn to answer.
    continue_final_message: bool = False
    #: False: the prompt ends after the last message, no assistant turn opened (llama-server's
    #: ``add_generation_prompt: false`` on ``/apply-template``). Only a rendering takes it: a generation answers
    #: after the generation prompt (RequestError).
    generation_prompt: bool = True
    #: Queued work (a background response, an assistant run): when the model's wait queue is full it
    #: waits for room, as the API's ``queued`` status promises, instead of failing with QueueFullError.
    wait_for_room: bool = False
    #: A conversation longer than the model's context: ``"disabled"`` refuses it (ContextOverflowError);
    #: ``"auto"`` drops its oldest turns (system messages stay, the last turn always) until the prompt
    #: fits, as Ollama's ``truncate``, the Responses API's ``truncation`` and a run's
    #: ``truncation_strategy`` ask. See :func:`jan.services.fit.fit_history`.
    truncation: Truncation = "disabled"
    #: The most tokens the prompt may hold (None: the context is the only limit): what an assistant run's
    #: ``max_prompt_tokens`` leaves for this turn. With ``truncation="auto"`` the oldest turns are dropped to fit
    #: it too; a prompt that still holds more is refused before it reaches the engine
    #: (:class:`jan.services.fit.PromptBudgetError`). Local engines only: one that renders its own prompts is
    #: not told (the run checks what its turns reported using instead).
    max_prompt_tokens: int | None = None
    #: The client insists that the model's chat template knows tools (Ollama's 400 "does not support
    #: tools"); by default tools given to one that does not are written into the prompt in a generic format.
    tools_need_template: bool = False
    #: Token ids of an earlier exchange that this prompt continues (Ollama's ``context`` on ``/api/generate``:
    #: what a reply's :attr:`ChatDelta.prompt_token_ids` and ``token_ids`` were): the rendered prompt follows
    #: them, with no BOS of its own. A negative id is an image's place (:data:`MEDIA_ID`): the request's media item
    #: it names is put back there. Local engines only; an id outside the vocabulary, or a place whose item the
    #: request does not send, is a ``RequestError`` (``param="context[i]"``). With ``truncation="auto"``, a prompt
    #: over the context loses the oldest of them (a BOS that starts them and the ``context_keep`` after it stay, the
    #: new turn whole): :func:`jan.services.fit.fit_context`.
    context: tuple[int, ...] = ()
    #: How many tokens at the start of ``context`` (after a BOS that starts it, which always stays) a cut that
    #: drops its oldest tokens keeps: Ollama's ``num_keep``; -1 keeps all of them (the cut then drops the context's
    #: newest tokens). None: the model.json ``parameters.num_keep``, else :data:`jan.services.fit.DEFAULT_KEEP`.
    #: Where the new turn leaves no room for them all, fewer stay (:func:`jan.services.fit.fit_context`).
    context_keep: int | None = None
    #: The prompt of a model whose GGUF has no (usable) chat template and whose model.json names none:
    #: ``"chatml"`` (ChatML stands in, as llama-server's chat endpoint does) or ``"ollama"`` (Ollama's default
    #: template ``{{ .Prompt }}``: the turns' text as it is, system messages left out; what Ollama's API does
    #: for a base model). See :meth:`jan.templates.ChatTemplate.ollama_default`.
    fallback_template: FallbackTemplate = "chatml"
    #: Tell token ids on the deltas (:attr:`ChatDelta.prompt_token_ids`, :attr:`ChatDelta.token_ids`): what a
    #: front end that gives them back asks (Ollama's ``context``). Off by default: following which ids have been
    #: shown costs a little on every token, which no other front end needs to pay.
    token_ids: bool = False
    #: With ``logprobs``: the log-probabilities in the distribution the sampler chain drew from, as
    #: :attr:`CompletionRequest.post_sampling_probs` (llama-server's ``post_sampling_probs``). A local engine's only.
    post_sampling_probs: bool = False
    #: llama-server's ``n_indent`` and ``t_max_predict_ms`` (:class:`LineRules`), on the model's raw output (its
    #: thinking and call markup too, as llama-server reads its generated text).
    line_rules: LineRules = LineRules()
    #: A handle a front end keeps to act on the generation while it runs (:mod:`jan.services.control`: end its
    #: thinking now). Giving one arms it: the thinking is watched by the engine's budget sampler (uncapped where
    #: no budget is asked). Local engines only.
    control: GenerationControl | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        # (what a template would take as "no element 0")
        _not_empty(self, "messages", "message (ChatMessage.of_text(\"user\", text) makes one)")
        _check_counts(self, {"n": "n", "top_logprobs": "top_logprobs"})
        # A tool name given twice (as Anthropic's "Tool names must be unique"): the model's call could not say
        # which one it means. Refused when the request is made, so queued work (a background response) is too.
        from jan.services.errors import check_unique_tool_names  # (jan.services imports this module)

        check_unique_tool_names(enumerate(t.name for t in self.tools))
        if self.context_keep is not None:
            check_context_keep(self.context_keep, "context_keep")
        # checked here, where every front end's request is made, not only where a local template renders it: a
        # remote engine was sent it as it was (and the thinking settings read from the request had ignored it)
        if (fault := thinking_switch_fault(self.chat_template_kwargs)) is not None:
            from jan.services.errors import RequestError  # (jan.services imports this module)

            raise RequestError(f"chat_template_kwargs.{fault[0]}: expected a boolean (true or false), got "
                               f"{_shown(fault[1])}", param=f"chat_template_kwargs.{fault[0]}", code="invalid_type")
        if (self.grammar_triggers or self.grammar_trigger_tokens) and not self.grammar:
            raise _misuse("grammar_triggers", "start a lazy grammar: they need a grammar")
        if self.grammar and self.response_format is not None and self.response_format.type != "text":
            # Two constraints on one answer: the schema's grammar was used and the client's GBNF dropped without
            # a word. Refused, as llama-server refuses them ("Cannot use both json_schema and grammar").
            raise _misuse("grammar", f"cannot be used with a response_format of type {self.response_format.type!r} "
                                     "(both constrain the answer); give one of them")
        if self.grammar and self.tools and (self.tool_choice == "required"
                                            or isinstance(self.tool_choice, NamedToolChoice)):
            # A client's GBNF is the whole output's (it spells any call markup itself), so a forced call's grammar
            # cannot hold with it: one would be dropped without a word. Refused, as llama-server refuses a grammar
            # with tools ("Cannot specify grammar with tools"); with "auto" (the parser reads the calls the grammar
            # spells) or "none" it stays the whole output's.
            raise _misuse("grammar", "cannot be used with a tool_choice that forces a tool call (the grammar is the "
                                     "whole output's); give tool_choice \"auto\" or \"none\", or leave the grammar "
                                     "out (a response_format constrains the answer and leaves calls to the tools)")

    @property
    def continues(self) -> bool:
        """Whether the prompt ends inside the last message (asked for, and that message can be continued)."""
        return self.continue_final_message and ends_in_prefill(self.messages)

    def with_sampling(self, *lower: SamplingOptions | None) -> "ChatRequest":
        """This request with lower layers (thread, assistant, ...) filled in under its own sampling."""
        return replace(self, sampling=merge_options(self.sampling, *lower))


@dataclass(frozen=True)
class InfillChunk:
    """One file of extra context before a fill-in-the-middle prompt (llama-server's ``input_extra`` item): the
    code of another file the project holds, which a code model reads before the gap it fills
    (:func:`jan.services.infill.infill_prompt` frames it with the model's repo/file-separator tokens)."""

    text: str
    filename: str = "tmp"  # (llama-server's name for a chunk that gives none)

    def __post_init__(self) -> None:
        _check_fields(self)


#: libmtmd's default media marker (``mtmd_default_marker()``): what stands for one image or audio clip in a
#: :class:`MediaText` prompt, as llama-server's prompt objects spell it whatever the model (the service puts the
#: model's own marker in its place).
MEDIA_MARKER = "<__media__>"

#: What stands for an image or audio clip among the token ids a reply tells (:attr:`ChatDelta.prompt_token_ids`:
#: Ollama's ``context``): one per item, where its positions were (no token id holds it), as ``MEDIA_ID - n``
#: (:func:`media_place`): the place of the request's media item ``n`` (of its messages, in order: Ollama's
#: ``[img-n]`` tag; -1 is the first). A :attr:`ChatRequest.context` that continues it binds the place to its own
#: request's item ``n``, as Ollama binds a context's tags to the request's images by index (a client continuing an
#: exchange about a picture sends it again): the item is put back at its place, and stands in the new turn too. A
#: place whose item the request does not send is refused (the ids cannot carry the item: continued without it,
#: the model answered about a picture it no longer had).
MEDIA_ID = -1


def media_place(n: int) -> int:
    """The id that stands for the request's media item ``n`` among a context's token ids (:data:`MEDIA_ID`)."""
    return MEDIA_ID - n


def place_item(token: int) -> int | None:
    """The media item a context's id stands for (:func:`media_place`), or None for a token id (not negative)."""
    return MEDIA_ID - token if token < 0 else None


@dataclass(frozen=True)
class MediaText:
    """A completion prompt with images and audio (llama-server's ``{"prompt_string", "multimodal_data"}``): ``text``
    holds one :data:`MEDIA_MARKER` per item of ``media``, each standing for its item in order. Tokenized as
    llama-server tokenizes such a prompt: the model's BOS added, special tokens parsed. A RequestError
    (``param="prompt"``) when the markers and the items are not as many."""

    text: str
    media: tuple[Union[ImagePart, AudioPart], ...]

    def __post_init__(self) -> None:
        _check_fields(self)
        markers = self.text.count(MEDIA_MARKER)
        if markers != len(self.media):
            raise _misuse("prompt", f"the text holds {markers} media markers ({MEDIA_MARKER}) for {len(self.media)} "
                                    "images/audio clips; give one marker per item")


@dataclass(frozen=True)
class CompletionRequest:
    """A text completion: each prompt (text, or token ids) gets ``n`` choices, numbered
    prompt-major. ``logprobs``: alternatives per token (``None``: no logprobs); ``echo`` puts
    the prompt's text before the completion. ``prompt_only`` (OpenAI's ``max_tokens: 0``): nothing is
    generated; with ``echo`` and ``logprobs`` the choice is the prompt, scored (what evaluation harnesses ask).
    ``suffix``: fill in the middle — each prompt (text) is the code before the gap, ``suffix`` the code after it,
    and the model's FIM tokens frame them (:func:`jan.services.infill.infill_prompt`; ``infill_context``: an earlier
    exchange's token ids the infill prompt continues, Ollama's ``context``; ``infill_extra``: other files' code
    read before it, llama-server's ``input_extra``). A RequestError (``param="suffix"``)
    for a model without FIM tokens, with token-id prompts or with ``echo``. A prompt may carry images and audio
    (:class:`MediaText`, a local model with a projector), as llama-server's ``/completion`` takes them."""

    model: str | None
    prompts: tuple[Union[str, tuple[int, ...], MediaText], ...]
    sampling: SamplingOptions = SamplingOptions()
    n: int = 1
    logprobs: int | None = None
    echo: bool = False
    grammar: str | None = None
    prompt_only: bool = False
    #: Tell token ids on the deltas (:attr:`CompletionDelta.token_ids`, ``prompt_token_ids``), as
    #: :attr:`ChatRequest.token_ids`.
    token_ids: bool = False
    #: The dialect's own defaults (OpenAI's legacy completions: ``max_tokens`` 16), under the model.json's
    #: ``parameters``: a default the client did not send must not hide the one the user set for the model.
    dialect_defaults: SamplingOptions = SamplingOptions()
    suffix: str | None = None
    infill_context: tuple[int, ...] = ()
    infill_extra: tuple[InfillChunk, ...] = ()
    #: The prefix's start and the suffix's end give way where they do not fit in the context (llama-server's
    #: ``/infill`` cuts them so; elsewhere a prompt too long is a 400): :func:`jan.services.infill.infill_prompt`.
    infill_fit: bool = False
    #: A lazy ``grammar``: free text until one of these regular expressions (ECMAScript, as ``jan.Model.generate``'s
    #: ``grammar_triggers``) matches the text so far, or one of ``grammar_trigger_tokens`` (token ids) is
    #: generated; the grammar holds from there on (llama-server's ``grammar_lazy``).
    grammar_triggers: tuple[str, ...] = ()
    grammar_trigger_tokens: tuple[int, ...] = ()
    #: Control tokens whose text the output shows (llama-server's ``preserved_tokens``): each text that the model's
    #: vocabulary spells as one token (special tokens parsed) is shown where that token is generated, while other
    #: control tokens stay dropped; a text of several tokens changes nothing, as in llama-server.
    preserved_tokens: tuple[str, ...] = ()
    #: llama.cpp's infill sampler in the chain (llama-server's ``samplers`` naming ``infill``, as its code-completion
    #: clients send it): an end of generation wins when likely enough, so a completion stops where the code does.
    infill_sampler: bool = False
    #: a front end's body: whether its ``prompt`` was a list of prompts (an error names ``prompt[i]...``) or one
    #: prompt (``prompt...``: a text, or one list of token ids); None, a caller of this API: ``prompts[i]...``
    listed: bool | None = None
    #: With ``logprobs``: each token's and its alternatives' log-probabilities in the distribution the sampler
    #: chain drew from (after penalties, truncation and temperature; the alternatives are the candidates it left,
    #: a greedy pick's only itself at 0), not the model's raw ones (llama-server's ``post_sampling_probs``). A
    #: local engine's only.
    post_sampling_probs: bool = False
    #: llama-server's ``n_indent`` and ``t_max_predict_ms`` (:class:`LineRules`): what ends a code completion early.
    line_rules: LineRules = LineRules()

    def __post_init__(self) -> None:
        _check_fields(self)
        _not_empty(self, "prompts", "prompt (a string, or a tuple of token ids)")
        _check_counts(self, {"n": "n", "logprobs": "top_logprobs"})  # (a completion's alternatives per token)
        if (self.grammar_triggers or self.grammar_trigger_tokens) and not self.grammar:
            raise _misuse("grammar_triggers", "start a lazy grammar: they need a grammar")
        if self.suffix is not None:
            if not all(isinstance(p, str) for p in self.prompts):
                raise _misuse("suffix", "fills in after a text prompt (the code before the gap), not token ids")
            if self.echo:
                raise _misuse("suffix", "cannot be combined with echo (the prompt a fill-in-the-middle request "
                                        "sends the model is the prefix and the suffix framed, not the prompt given)")
        elif self.infill_context:
            raise _misuse("infill_context", "is the context of a fill-in-the-middle prompt: it needs a suffix")
        elif self.infill_extra or self.infill_fit:
            name = "infill_extra" if self.infill_extra else "infill_fit"
            raise _misuse(name, "is about a fill-in-the-middle prompt: it needs a suffix")

    def prompt_name(self, i: int) -> str:
        """The field that holds prompt ``i`` (:attr:`listed`)."""
        return f"prompts[{i}]" if self.listed is None else f"prompt[{i}]" if self.listed else "prompt"


#: The most inputs one embedding request holds, and the most tokens all its inputs hold together (OpenAI's limits per
#: request, so a client written for OpenAI already batches within them): every front end shares one embedding context
#: per model, and one request of 20,000 inputs held it for 90 s, with nothing to tell a client how much is too much.
#: (``jan.Model.embed`` itself takes any number: its caller's own process, and it takes turns with other requests.)
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_TOKENS = 300_000



@dataclass(frozen=True)
class EmbeddingRequest:
    """Texts or token-id lists to embed, at most :data:`MAX_EMBEDDING_INPUTS` of them holding at most
    :data:`MAX_EMBEDDING_TOKENS` tokens in all. An input longer than the model's embedding context is a
    ``ContextOverflowError``, or with ``truncate`` is cut to fit (its end dropped). ``normalize`` False keeps a local
    model's pooled vectors as they are (Ollama's legacy ``/api/embeddings`` answers them so); a remote engine answers
    its upstream's vectors either way.

    ``dimensions`` (1 to the model's ``n_embd``): each vector's first N components, L2-normalized again when
    ``normalize`` -- OpenAI's ``dimensions`` of text-embedding-3, the Matryoshka cut that nomic-embed-text v1.5,
    mxbai-embed-large or Qwen3-Embedding are trained for; ``n_embd`` itself is the plain vector. More than ``n_embd``
    is a ``RequestError`` naming it, unless ``dimensions_capped``: Ollama's ``/api/embed`` answers the whole vector
    then (its EmbedHandler cuts only below the model's size). A remote engine gets ``dimensions`` forwarded.

    ``p_norm`` (llama.cpp's ``embd_normalize``, llama-server's native ``/embedding``), when given, replaces
    ``normalize``: -1 none, 0 scaled to int16's range (the largest component 32760), 1 taxicab, 2 euclidean, above 2
    that p-norm. ``per_token``: a model loaded with pooling none answers its token vectors (one ``(n_tokens,
    n_embd)`` array per input, unnormalized under ``p_norm`` as llama-server answers them) instead of the refusal
    one-vector-per-input shapes get."""

    model: str | None
    #: texts, token ids, or (a local model with a projector) texts with images and audio (:class:`MediaText`, as
    #: llama-server's ``/embedding`` takes its prompt objects): not cut by ``truncate``
    inputs: tuple[Union[str, tuple[int, ...], MediaText], ...]
    dimensions: int | None = None
    truncate: bool = False
    normalize: bool = True
    dimensions_capped: bool = False
    p_norm: int | None = None
    per_token: bool = False
    #: a front end's body: whether its ``input`` was a list of inputs (an error names ``input[i]...``) or one input
    #: (``input...``: a text, or one list of token ids); None, a caller of this API: ``inputs[i]...``
    listed: bool | None = None
    #: the body's field that holds the inputs, as the client named it (llama-server's ``content``, Ollama's legacy
    #: ``prompt``): what an input's error names
    field: str = "input"

    def __post_init__(self) -> None:
        _check_fields(self)
        _not_empty(self, "inputs", "input (a string, or a tuple of token ids)")
        if self.dimensions is not None and self.dimensions < 1:
            raise _misuse("dimensions", f"must be at least 1, got {self.dimensions}")
        if self.p_norm is not None and self.p_norm < -1:
            raise _misuse("p_norm", f"must be -1 or more (llama.cpp's embd_normalize), got {self.p_norm}")
        if (problem := embedding_inputs_refusal(len(self.inputs), self.field)) is not None:
            raise problem

    def prompt_name(self, i: int) -> str:
        """The field that holds input ``i`` (:attr:`listed`)."""
        return f"inputs[{i}]" if self.listed is None else f"{self.field}[{i}]" if self.listed else self.field


def embedding_inputs_refusal(count: int, field: str = "input") -> Exception | None:
    """The refusal of an embedding request with ``count`` inputs, more than :data:`MAX_EMBEDDING_INPUTS` (a
    :class:`~jan.services.errors.RequestError` naming ``field``, the body's field that holds them: llama-server's
    ``content``), or None; also asked before the inputs are read further (a front end that tokenizes each one
    first)."""
    if count <= MAX_EMBEDDING_INPUTS:
        return None
    from jan.services.errors import RequestError  # (jan.services imports this module)

    return RequestError(f"{field}: at most {MAX_EMBEDDING_INPUTS} inputs in one embedding request, got {count}; "
                        "send them in several requests", param=field, code="invalid_value")


@dataclass(frozen=True)
class RerankRequest:
    """Score ``documents`` against ``query`` with a reranker model; the answer keeps the ``top_n`` most relevant
    (all when None). At most :data:`MAX_EMBEDDING_INPUTS` documents, as an embedding request's inputs (each
    document is read with the query: one input each, at most the embedding context long)."""

    model: str | None
    query: str
    documents: tuple[str, ...]
    top_n: int | None = None
    #: each document read to at most this many of its tokens (Cohere's ``max_tokens_per_doc``); None: whole
    max_tokens_per_doc: int | None = None
    #: a document too long for the context read as at most this many chunks that fit, scored as its best
    #: (Cohere v1's ``max_chunks_per_doc``); None: not chunked
    max_chunks_per_doc: int | None = None
    #: a document whose pair with the query does not fit the context is read as far as fits, not refused (Text
    #: Embeddings Inference's ``truncate``); the query is always read whole
    truncate: bool = False
    #: which end of a document a cut keeps: "right" cuts its end, "left" its beginning (TEI's)
    truncation_direction: Literal["right", "left"] = "right"
    #: the classifier's raw output (a logit, llama-server's score); False: its sigmoid, a relevance in 0..1 (TEI's
    #: default)
    raw_scores: bool = True
    #: the body's field that holds the documents, as the client named it (Text Embeddings Inference's ``texts``):
    #: what a refusal of them names
    field: str = "documents"

    def __post_init__(self) -> None:
        _check_fields(self)
        if not self.query:
            raise _misuse("query", "must not be empty")
        if self.max_tokens_per_doc is not None and self.max_tokens_per_doc < 1:
            raise _misuse("max_tokens_per_doc", f"must be at least 1, got {self.max_tokens_per_doc}")
        if self.max_chunks_per_doc is not None and self.max_chunks_per_doc < 1:
            raise _misuse("max_chunks_per_doc", f"must be at least 1, got {self.max_chunks_per_doc}")
        if not self.documents:
            raise _misuse(self.field, "must hold at least one document (a string)")
        if len(self.documents) > MAX_EMBEDDING_INPUTS:
            raise _misuse(self.field, f"at most {MAX_EMBEDDING_INPUTS} documents in one rerank request, got "
                                      f"{len(self.documents)}; send them in several requests")
        if self.top_n is not None and self.top_n < 1:
            raise _misuse("top_n", f"must be at least 1, got {self.top_n}")


# -- results ------------------------------------------------------------------------------
#: How a choice of a chat completion ends (:attr:`ChatDelta.finish_reason`, :attr:`ChoiceResult.finish_reason`), the
#: closed set every front end maps, each reason explicitly: ``stop`` (the model's end of turn, or a stop string),
#: ``length`` (the token limit cut it off), ``tool_calls`` (it called tools), ``content_filter`` (a remote upstream's
#: filter withheld the rest: OpenAI's), ``cancelled`` (the server cut it off before it finished: the model was
#: stopped or unloaded under it, or the server shut down; the engine's ``FinishReason.cancelled``). An engine's
#: ``error`` is raised, never a finish reason.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "cancelled"]
FINISH_REASONS: tuple[str, ...] = FinishReason.__args__  # type: ignore[attr-defined]

#: A piece of tool call ``index`` of a choice: the first piece has ``id`` and ``name``, later ones append
#: to ``arguments`` (JSON text). The chat-format parsers' own type, so their deltas pass through as they are.
ToolCallDelta = CallDelta


@dataclass(frozen=True)
class ChatDelta:
    """A piece of one choice of a chat completion.

    ``content``/``reasoning`` are text to append; ``tool_calls`` pieces of calls; ``logprobs``
    the tokens behind this piece (when asked for). ``finish_reason`` (``stop``, ``length``,
    ``tool_calls``) marks the choice's last delta; with ``stop``, the stop string that ended it
    (one of the request's, matched on the answer's text where the output is parsed, or the model's
    end-of-turn text the engine matched; None where neither says, e.g. an end-of-generation token). A delta
    with ``usage`` and ``choice == -1`` comes after every choice finished: the whole request's tokens.
    ``prompt_tokens``: on a local generation's first delta, the prompt's length in tokens, known
    before the usage (a dialect that announces it at the start can: Anthropic's ``message_start``);
    ``None`` elsewhere, and where it is not known then (a prompt with images, a remote engine).
    ``cached_tokens``: with ``prompt_tokens``, how many of them the KV cache held (the final usage's).
    Token ids only where the request asks (:attr:`ChatRequest.token_ids`): ``prompt_token_ids``: on each
    choice's first delta from a local engine, the prompt's token ids as the model evaluated them (each image or
    audio clip one :func:`media_place` where its positions were: no token id holds it); ``None``
    elsewhere. ``token_ids``: the choice's tokens generated since its previous delta, each once its text
    has been shown (a matched stop string's left out, as its text is; an end-of-generation token is not
    generated), where the engine tells them; the choice's last delta has any still held back. Together:
    the exchange, which :attr:`ChatRequest.context` continues.
    ``context_full``: on a choice's ``length`` finish, whether the context window filled up before the token limit
    was reached (or with no limit given), where the engine can tell (a local one); ``False`` for the token limit
    and every other end. ``finish_reason`` stays ``length`` either way; a dialect that tells them apart reads this
    (Anthropic's ``model_context_window_exceeded``).
    ``reasoning_tokens``: with ``usage``, how many of its ``completion_tokens`` went to thinking (OpenAI's
    ``reasoning_tokens``): a local engine's are counted by :class:`jan.services.output.ReasoningTokens` (its rule),
    a remote one's are what the upstream said (0 where it said nothing).
    ``choice_usage``: on each choice's last delta, that choice's own tokens and timings, as
    :attr:`CompletionDelta.choice_usage` (llama-server's last chunk of a result tells its ``timings``).
    ``progress``: a local engine's counts and timings of the choice so far, on the last delta a chunk of generated
    tokens made (:attr:`CompletionDelta.progress`: llama-server's ``timings_per_token``); None elsewhere.
    """

    choice: int = 0
    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    stop: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    token_ids: tuple[int, ...] = ()
    context_full: bool = False
    reasoning_tokens: int = 0
    choice_usage: Usage | None = None
    progress: Usage | None = None


@dataclass(frozen=True)
class ChoiceResult:
    """One choice of a :class:`ChatResult`; ``prompt_token_ids``, ``token_ids`` and ``context_full`` as its deltas
    had them."""

    message: ChatMessage
    finish_reason: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    token_ids: tuple[int, ...] = ()
    context_full: bool = False


@dataclass(frozen=True)
class ChatResult:
    """A whole chat completion: one :class:`ChoiceResult` per choice, and the request's usage;
    ``reasoning_tokens`` as its usage delta had them (:attr:`ChatDelta.reasoning_tokens`)."""

    model: str
    choices: tuple[ChoiceResult, ...]
    usage: Usage
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class CompletionChoiceResult:
    """One choice of a :class:`CompletionResult`: its whole ``text`` (with ``echo``, the prompt's text first), its
    ``finish_reason``, and ``logprobs``, ``prompt_token_ids``, ``token_ids`` and ``stop`` as its
    :class:`CompletionDelta` pieces told them."""

    text: str
    finish_reason: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    token_ids: tuple[int, ...] = ()
    stop: str | None = None


@dataclass(frozen=True)
class CompletionResult:
    """A whole text completion (:meth:`jan.services.completions.CompletionService.complete`), as :class:`ChatResult`
    is a chat's: its choices numbered prompt-major (prompt ``i``'s choice ``j`` at ``i * n + j``), and the
    request's usage (each prompt's tokens once, every choice's generated tokens)."""

    model: str
    choices: tuple[CompletionChoiceResult, ...]
    usage: Usage


@dataclass(frozen=True)
class CompletionDelta:
    """A piece of one choice of a text completion (``usage`` with ``choice == -1`` at the end).

    Where the request asks (:attr:`CompletionRequest.token_ids`): ``token_ids``: the tokens generated for this
    piece, where the engine tells them (each once its text has
    been shown; a matched stop string's left out, as its text is). ``prompt_token_ids``:
    on each choice's first delta, the prompt's token ids when it was given as token ids (``None`` for a
    text prompt, which the engine tokenizes).
    ``stop``: on a ``stop`` finish, the request's stop string that ended the choice (None for an end-of-generation
    token), as :attr:`ChatDelta.stop` (llama-server's ``stop_type: "word"`` and ``stopping_word``).
    ``choice_usage``: on a local engine's last delta of each choice, that choice's own tokens and timings (the
    ``choice == -1`` usage sums the request's; llama-server tells each result its own)."""

    choice: int = 0
    text: str = ""
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    token_ids: tuple[int, ...] = ()
    prompt_token_ids: tuple[int, ...] | None = None
    stop: str | None = None
    choice_usage: Usage | None = None
    #: The local engine slot the choice runs in (llama-server's ``id_slot``); None where no slot is known.
    id_slot: int | None = None
    #: A local engine's counts and timings of the choice so far, on a delta with generated tokens before its last
    #: (:attr:`jan.engine.results.Chunk.progress`: llama-server's ``timings_per_token``); None elsewhere.
    progress: Usage | None = None


@dataclass(frozen=True)
class RerankResult:
    """The answer of a :class:`RerankRequest`: ``ranked`` holds ``(index, score)`` of the documents, most relevant
    first (ties in document order), cut to ``top_n``; ``prompt_tokens`` counts every query-document input's tokens."""

    model: str
    ranked: tuple[tuple[int, float], ...]
    prompt_tokens: int


@dataclass(frozen=True)
class EmbeddingResult:
    """The answer of an :class:`EmbeddingRequest`.

    ``vectors``: one per input, in input order (float32 arrays from local models, lists of
    floats from remote ones); ``prompt_tokens`` counts every input's tokens.
    """

    model: str
    vectors: tuple[Any, ...]
    prompt_tokens: int


@dataclass(frozen=True)
class RenderedPrompt:
    """A chat request's prompt as the model sees it: the template's text and the token ids."""

    model: str
    text: str
    tokens: tuple[int, ...]


def require_request(request: Any, kind: type, service: str) -> None:
    """A service's entry takes its typed request (``kind``, which checked its own fields when it was made): anything
    else (None, a dict, an OpenAI body) is a :class:`~jan.BadRequestTypeError` (a ``TypeError``) naming the
    argument, the service and the type it takes, not an ``AttributeError`` from inside the service that says nothing
    of the call."""
    if not isinstance(request, kind):
        raise BadRequestTypeError(f"request: the {service} service takes a jan.services.types.{kind.__name__}, "
                                  f"got {type(request).__name__}", param="request", code="invalid_type")


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for logs and debugging), its :class:`Usage` values as dicts too
    (:func:`jan.engine.results.plain`): ``json.dumps`` takes it where its values are JSON's."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"obj: expected a dataclass instance, got {type(obj).__name__}")
    return plain(obj)
