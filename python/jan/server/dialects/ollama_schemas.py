"""Ollama's request bodies (``/api/*``), validated with pydantic at the HTTP edge.

Field names and types follow Ollama's ``api/types.go``. As Ollama (Go's JSON
decoding) does, unknown fields are ignored; a known field of the wrong type is
a 400. ``keep_alive`` is Ollama's duration: a Go duration string (``"5m"``,
``"1h30m"``, ``"-1s"``) or a number of seconds; negative means "forever".
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_type_hints

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationInfo, create_model,
                      field_validator, model_validator)

from jan.json_text import double_of
from jan.server.jsonio import json_text
from jan.server.schemas import (INT32_MAX, TOOL_NAME_PATTERN, NullMeansDefault, Seed, StopStrings, Think,
                                bounded)
from jan.engine.model import check_load_option
from jan.services.types import LoadOptions, SamplingOptions

FOREVER = math.inf

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Union[str, float, int, None]) -> float | None:
    """Ollama's ``keep_alive`` in seconds: ``None`` if not given, ``math.inf`` for a negative value
    (forever), else the duration (``0`` unloads the model when the request ends).

    Raises ``ValueError`` for text that is not a Go duration (``"5m"``, ``"300ms"``, ``"1h2m3s"``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # (a list or an object is no duration)
        raise ValueError(f"invalid duration {json_text(value)}: a duration string (\"5m\") or a number of seconds")
    if isinstance(value, (int, float)):
        value = double_of(value)  # (an integer past a double's range: forever either way, not OverflowError)
        if math.isnan(value):  # "nan" as text parses as a float; no duration
            raise ValueError(f"invalid duration {json_text(value)} (expected e.g. \"5m\", \"30s\", \"-1\" or seconds)")
        return FOREVER if value < 0 else float(value)
    text = value.strip()
    try:  # a bare number: seconds (Go would refuse it; clients send it anyway)
        return parse_keep_alive(float(text))
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f"invalid duration {json_text(value)} (expected e.g. \"5m\", \"30s\", \"-1\" or seconds)")
    return FOREVER if sign < 0 and total > 0 else total


class _Body(NullMeansDefault):
    # Ollama ignores fields it does not know (clients send newer ones); so do we. As Go's JSON decoder,
    # a value of the wrong type is refused ("1" is no integer) and null leaves the field's default.
    model_config = ConfigDict(extra="ignore", strict=True)


#: Ollama ``options`` that are jan's :class:`~jan.services.types.SamplingOptions` fields as they are
#: (same name, type and meaning); ``num_predict``, ``seed`` and ``stop`` are translated.
SHARED_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "mirostat", "mirostat_tau", "mirostat_eta",
                   "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty")


#: Ollama's load-time options (its ``Runner``) that ``/api/create``'s ``parameters`` may set, as the created model.json's
#: ``settings`` (a model is loaded once for every request it serves, so per request they are ignored): Ollama's name
#: -> jan's. ``num_gpu`` -1 (Ollama: "decide for me") and ``num_thread`` 0 leave jan's own choice.
LOAD_PARAMETERS = {"num_ctx": "ctx_len", "num_batch": "n_batch", "num_gpu": "ngl", "num_thread": "cpu_threads",
                   "use_mmap": "use_mmap", "draft_num_predict": "draft_max"}
#: Every load-time option Ollama's ``options`` take -> the :class:`jan.Model` load option whose range it has
#: (:func:`jan.engine.model.check_load_option`): :data:`LOAD_PARAMETERS` by their model.json setting, and
#: ``main_gpu``, which no model.json keeps (a 400 on /api/create) but a request may name (then ignored).
LOAD_OPTIONS = {**{name: LoadOptions.MODEL_JSON_KEYS[key] for name, key in LOAD_PARAMETERS.items()},
                "main_gpu": "main_gpu"}


class _OptionsBase(_Body):
    # -1: no limit, -2: fill the context (Ollama's); else at most what the engine holds.
    num_predict: int | None = Field(None, ge=-2, le=INT32_MAX)
    seed: Seed | None = None  # -1: random
    stop: StopStrings | None = None
    # tokens at the start of a generate context that a cut keeps (after its BOS); -1: all of it. Ollama reads any
    # negative as -1; other negatives are refused here rather than guessed at.
    num_keep: int | None = Field(None, ge=-1, le=INT32_MAX)
    # Ollama's load-time options (its Runner): ignored per request (see OllamaOptions), but typed, as Ollama's are
    # ("num_ctx": "4k" was taken without a word, where Ollama refuses it: "must be of type integer"), and held to
    # the range of the jan setting each one is (_load_range): "draft_num_predict": -1 was taken without a word too.
    num_ctx: int | None = None  # 0: the model's own
    num_batch: int | None = None
    num_gpu: int | None = None  # -1: jan's choice
    main_gpu: int | None = None
    num_thread: int | None = None  # 0: jan's choice
    use_mmap: bool | None = None
    draft_num_predict: int | None = None

    @field_validator(*LOAD_OPTIONS, mode="after")
    @classmethod
    def _load_range(cls, value: Any, info: ValidationInfo) -> Any:
        # the one rule for a load option (jan.engine.model.check_load_option and its table, LOAD_RANGES/RANGES),
        # said under the Ollama name the client sent: the same values /api/create, model.json and the CLI take
        name = info.field_name
        option = LOAD_OPTIONS[name]
        try:
            return check_load_option(option, value)
        except ValueError as exc:
            said = str(exc).removeprefix(f"{option}: ")
            setting = LOAD_PARAMETERS.get(name, name)  # (as README and model.json call it)
            raise ValueError(f"{name}: {said}" + (f" (jan's {setting})" if setting != name else "")) from None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, values: Any) -> Any:
        # Ollama reads ``options`` as a map of JSON numbers (Go's float64) and takes 40.0 for an integer option
        # (api.Options.FromMap), so clients that compute one (Python's 4096 * 1.0) send it; so do we. A fraction
        # stays a 400: Ollama would cut 2.5 to 2 without a word.
        if not isinstance(values, dict):
            return values
        ints = _integer_fields(cls)
        return {key: int(value) if key in ints and type(value) is float and value.is_integer() else value
                for key, value in values.items()}


@functools.cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields that take an integer (and no float)."""
    def holds(annotation: Any, kind: type) -> bool:
        return annotation is kind or any(holds(arg, kind) for arg in get_args(annotation))
    return frozenset(name for name, info in model.model_fields.items()
                     if holds(info.annotation, int) and not holds(info.annotation, float))


_SAMPLING_TYPES = get_type_hints(SamplingOptions)
#: Where Ollama takes more than jan's one table of ranges (jan.engine.params.RANGES, OpenAI's where OpenAI has the
#: option, which the other dialects keep): values that mean "off" to Ollama and llama.cpp, mapped to jan's "off" by
#: ollama_requests.sampling. ``top_k`` <= 0 is no top-k (any Go int); ``typical_p`` 0 is Go's zero value, "not set":
#: typical sampling stays off (1), as a mass of 0 would mean nothing.
OLLAMA_BOUNDS = {
    "top_k": Field(None, ge=-(2**63), le=INT32_MAX),
    "typical_p": Field(None, ge=0.0, le=1.0),
}
# The shared fields take their types from SamplingOptions: one field list, not two to keep in step.
OllamaOptions = create_model(
    "OllamaOptions", __base__=_OptionsBase, __module__=__name__,
    **{name: (_SAMPLING_TYPES[name], OLLAMA_BOUNDS.get(name) or bounded(name)) for name in SHARED_SAMPLING})
OllamaOptions.__doc__ = """``options``: the Modelfile parameters Ollama takes per request.

The sampling ones reach the sampler. Ollama's load-time knobs (``num_ctx``,
``num_batch``, ``num_gpu``, ``main_gpu``, ``num_thread``, ``use_mmap``,
``draft_num_predict``: :data:`LOAD_OPTIONS`) are jan's ``jan serve`` flags and
model.json settings instead (a model is loaded once for every request it serves),
so they are ignored here, but for ``draft_num_predict``, which is jan's per-request
``draft_max``; a value of the wrong type is still a 400, as Ollama's is,
and so is one out of the range of the jan setting it is (``num_ctx`` 0 is the
model's own, ``num_gpu`` -1 and ``num_thread`` 0 jan's choice). Options Ollama does
not know are ignored, as Ollama ignores them; so are those it dropped or jan has no
use for (``penalize_newline``, ``tfs_z``, ``numa``, ``low_vram``, ``use_mlock``,
``vocab_only``, ``num_gqa``, ``rope_frequency_*``: :data:`UNSUPPORTED_PARAMETERS`,
whatever their value; named in ``/api/create``'s ``parameters`` they are a 400).

``num_keep`` is what a ``/api/generate`` ``context`` too long for the window keeps
of its start (after its BOS; -1 all of it, default 4, as Ollama's runner) when its
oldest tokens are dropped (``truncate``). It is checked on every request, and does
nothing where jan cuts no tokens: a chat history loses whole turns, a raw or
fill-in-the-middle prompt too long is a 400, and jan never shifts the context while
it generates.
"""


#: Ollama options jan has nothing to do with: named, they are a 400 on /api/create (a model.json cannot keep them).
UNSUPPORTED_PARAMETERS = {
    "main_gpu": "jan has no main GPU setting (llama.cpp's default device is used)",
    "penalize_newline": "llama.cpp dropped it", "tfs_z": "llama.cpp dropped it",
    "numa": "jan has no NUMA setting", "low_vram": "llama.cpp dropped it", "vocab_only": "not a model's setting",
    "use_mlock": "not a model.json setting", "num_gqa": "read from the GGUF", "rope_frequency_base": "read from the GGUF",
    "rope_frequency_scale": "read from the GGUF",
}


class OllamaCreateParameters(OllamaOptions):  # type: ignore[misc,valid-type]
    """``/api/create``'s ``parameters``: Ollama's option names, each stored in the new model.json — the sampling
    ones as its ``parameters``, the load-time ones (:data:`LOAD_PARAMETERS`) as its ``settings``. Unlike a request's
    ``options`` (where Ollama skips names it does not know), a name that is no Ollama parameter is a 400, as
    Ollama's Modelfile parser refuses it ("unknown parameter"): a model made without it would silently differ."""

    # (the load-time ones take the ranges of the request's options, which are jan's: _OptionsBase._load_range)

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in UNSUPPORTED_PARAMETERS:
                    raise ValueError(f"parameter '{key}' is not supported by jan ({UNSUPPORTED_PARAMETERS[key]})")
                if key not in cls.model_fields:
                    raise ValueError(f"unknown parameter '{key}'")
        return data


class OllamaToolCallFunction(_Body):
    index: int | None = None
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _null_arguments(cls, value: Any) -> Any:
        return {} if value is None else value


class OllamaToolCall(_Body):
    id: str | None = None
    function: OllamaToolCallFunction


class OllamaMessage(_Body):
    role: str
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower_role(cls, value: str) -> str:
        role = value.lower()  # Ollama lower-cases the role
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"role must be system, user, assistant or tool, not {json_text(value)}")
        return role


class OllamaToolFunction(_Body):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class OllamaTool(_Body):
    type: str = "function"
    function: OllamaToolFunction


Format = Union[Literal["", "json"], dict[str, Any], None]
KeepAlive = Union[StrictStr, StrictInt, StrictFloat, None]  # not a bool


class _ModelUse(_Body):
    """A request that uses a model: its name, ``options`` and ``keep_alive``."""

    model: str = ""
    keep_alive: KeepAlive = None
    options: OllamaOptions | None = None

    @field_validator("keep_alive", mode="before")  # before: a bool is no duration, said as one
    @classmethod
    def _duration(cls, value: Any) -> Any:
        parse_keep_alive(value)
        return value

    @property
    def keep_alive_seconds(self) -> float | None:
        """Seconds (``math.inf``: forever), ``None`` when not given."""
        return parse_keep_alive(self.keep_alive)


class _Inference(_ModelUse):
    stream: bool | None = None
    format: Format = None
    think: Think = None
    logprobs: bool = False
    top_logprobs: int = bounded("top_logprobs", 0)
    #: A history longer than the context loses its oldest turns (jan.services.fit); ``false``: a 400 instead.
    truncate: bool | None = None
    #: Ollama's context shift (keep generating past a full context by dropping old tokens). jan does not shift,
    #: as llama-server by default: a reply that fills the context ends with done_reason "length".
    shift: bool | None = None
    #: Ollama's ``_debug_render_only``: answer the prompt the request renders to (``_debug_info``), generate nothing.
    debug_render_only: bool = Field(False, alias="_debug_render_only")

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is None or value in ("", "json") or isinstance(value, dict):
            return value
        raise ValueError(f"invalid format {json_text(value)}: expected \"json\" or a JSON schema object")

    @property
    def streaming(self) -> bool:
        return self.stream is not False  # Ollama streams unless told not to


class OllamaChatRequest(_Inference):
    """``POST /api/chat``."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[OllamaTool] | None = None


class OllamaGenerateRequest(_Inference):
    """``POST /api/generate``."""

    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    #: The token ids an earlier reply's last object gave (its ``context``): the new prompt continues them. A negative
    #: one is an image's place in them, -1 - n for the request's image n (jan.services.types.media_place: Ollama's
    #: ``[img-n]``), bound there by the service to ``images[n]``, or refused saying so where the request lacks it.
    context: list[Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX)]] | None = None
    raw: bool = False
    images: list[str] | None = None


class OllamaEmbedRequest(_ModelUse):
    """``POST /api/embed``."""

    input: Union[str, list[str], None] = None
    truncate: bool | None = None
    #: 0 is Go's zero value, which Ollama reads as "not given" (the whole vector), as an absent field
    dimensions: int | None = Field(None, ge=0, le=INT32_MAX)

    @field_validator("dimensions")
    @classmethod
    def _zero_is_unset(cls, value: int | None) -> int | None:
        return value or None

    @property
    def texts(self) -> list[str]:
        """The texts to embed, as Ollama reads ``input``: a list as given (an empty string in it is embedded), but
        one empty string, like no input, is none -- the request only loads the model and answers no vectors."""
        if isinstance(self.input, str):
            return [self.input] if self.input else []
        return list(self.input or ())


class OllamaEmbeddingsRequest(_ModelUse):
    """``POST /api/embeddings`` (Ollama's older endpoint: one prompt, one vector)."""

    prompt: str = ""


class OllamaModelRequest(_Body):
    """``/api/show``, ``/api/delete``: ``model`` (or the deprecated ``name``)."""

    model: str = ""
    name: str = ""
    verbose: bool = False

    @property
    def model_name(self) -> str:
        return self.model or self.name


class OllamaShowRequest(OllamaModelRequest):
    """``POST /api/show``: ``model`` (or ``name``), ``verbose``; ``system`` is shown in place of the model's own
    system prompt and ``options`` as PARAMETER lines of the Modelfile shown, over the model's own, as Ollama's show
    does; ``template`` is taken and unused, as in Ollama."""

    system: str = ""
    template: str = ""
    options: dict[str, Any] | None = None


class OllamaPullRequest(OllamaModelRequest):
    """``POST /api/pull``: ``model`` is a jan model id, an ``hf://owner/repo/file.gguf``, a whole
    ``hf://owner/repo[:QUANT]`` (its model and projector) or an http(s) URL."""

    insecure: bool = False
    stream: bool | None = None


class OllamaPushRequest(OllamaPullRequest):
    """``POST /api/push`` (refused: jan has no registry to push to)."""


class OllamaStoredMessage(OllamaMessage):
    """One of ``/api/create``'s ``messages`` (a Modelfile MESSAGE): a text turn of the system, the user or the
    assistant, kept in the model.json's ``messages``. What a model.json cannot keep (images, tool calls,
    thinking) is refused, never dropped."""

    @field_validator("role")
    @classmethod
    def _stored_role(cls, value: str) -> str:
        if value == "tool":  # (Ollama's MESSAGE takes system, user and assistant)
            raise ValueError("role must be system, user or assistant, not \"tool\"")
        return value

    @model_validator(mode="after")
    def _text_only(self) -> "OllamaStoredMessage":
        for name in ("images", "tool_calls", "thinking", "tool_name", "tool_call_id"):
            if getattr(self, name):
                raise ValueError(f"{name}: jan stores a model's messages as text turns (role and content) only")
        return self


class OllamaCreateRequest(_Body):
    """``POST /api/create``: a new model ``from`` an existing one, or from ``files`` — one GGUF pushed
    with ``POST /api/blobs/sha256:<hex>`` (``{"model.gguf": "sha256:<hex>"}``), and optionally its
    projector (a file whose name contains ``mmproj``) — with its own default ``parameters`` (Ollama's
    option names), ``system`` prompt, ``messages``, ``license`` and LoRA ``adapters`` (file name -> digest of a
    pushed GGUF blob, applied at scale 1: ``settings.lora``), kept in the new model.json. What jan cannot make or
    keep (``quantize``, a Go ``template``, a ``modelfile``) is refused with a 400 by the route, never dropped."""

    model: str = ""
    name: str = ""  # Ollama's deprecated name for ``model`` (its create reads cmp.Or(r.Model, r.Name))
    from_: str = Field("", alias="from")
    files: dict[str, str] | None = None
    parameters: OllamaCreateParameters | None = None
    stream: bool | None = None
    system: str | None = None
    messages: list[OllamaStoredMessage] | None = None
    license: Union[str, list[str], None] = None  # several: one text, as Ollama's /api/show joins them
    adapters: dict[str, Any] | None = None
    # refused when given (see above)
    quantize: str | None = None
    template: str | None = None
    modelfile: str | None = None
    path: str | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("quantize", "template", "modelfile", "path")

    def stored(self) -> dict[str, Any]:
        """The model.json fields the request sets besides ``parameters``: ``system``, ``messages``, ``license``
        (those it leaves out, or sends empty, keep the ``from`` model's, as Ollama's create does)."""
        out: dict[str, Any] = {}
        if self.system:
            out["system"] = self.system
        if self.messages:
            out["messages"] = [{"role": m.role, "content": m.content or ""} for m in self.messages]
        if self.license:
            out["license"] = self.license if isinstance(self.license, str) else "\n".join(self.license)
        return out

    @property
    def model_name(self) -> str:
        return self.model or self.name


class OllamaCopyRequest(_Body):
    """``POST /api/copy``."""

    source: str = ""
    destination: str = ""
