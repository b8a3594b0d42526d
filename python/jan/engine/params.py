"""Sampling options: one keyword API shared by generate/stream and the server.

:data:`RANGES` is the one table of what each numeric option may be. The
engine façade checks every call against it (``Model.generate(temperature=-1)``
is a ``ValueError``, as the server's 400 is), the CLI goes through the
façade, and the server's request schemas take their pydantic bounds from it
(:meth:`Range.field`), so the three agree and the OpenAPI spec shows them.
"""

from __future__ import annotations

import math
import numbers
import operator
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jan import _engine
from jan.errors import BadRequestError, BadRequestTypeError
from jan.json_text import double_of
from jan.templates.gbnf_check import check_gbnf

# Defaults match llama.cpp's server, so results are comparable.
DEFAULTS = {
    "max_tokens": None,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "typical_p": 1.0,
    # Mirostat 1 or 2 (0: off) in place of top-k/top-p/min-p/typical-p: the surprise target and learning rate.
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repeat_last_n": 64,
    "seed": None,
    "logit_bias": None,
    "grammar": None,
    "ignore_eos": False,
    # Under a grammar, filter the vocabulary with it before sampling, every token (exactly the allowed tokens'
    # distribution under top_k/top_p/min_p too, at a pass over the vocabulary per token); off: llama.cpp's common
    # sampler order, the grammar checking the token drawn (cpp/sampling.h, sample_token).
    "grammar_first": False,
    "stop": None,
    "logprobs": False,
    "top_logprobs": 0,
    # Also each prompt token's log-probability (OpenAI's echo with logprobs; no prefix reuse for the request).
    "prompt_logprobs": False,
    # With logprobs: the probabilities of the distribution the sampler chain drew from, its candidates as the
    # alternatives (llama-server's post_sampling_probs; cpp/sampling.h), not the model's raw ones.
    "post_sampling_probs": False,
    # Lazy grammar: regexes that switch the grammar on (see SamplingParams in cpp/sampling.h).
    "grammar_triggers": None,
    # Text the reply already holds (a prefill the prompt ends in): the grammar reads it first, so it holds the reply
    # as a whole and the output continues it; one the grammar cannot start with is a jan.errors.GrammarPrefixError.
    "grammar_prefix": "",
    # Thinking budget (cpp/reasoning_budget.h): -1/None = no cap; the markers come from the chat format.
    "reasoning_budget": None,
    "reasoning_start": "",
    "reasoning_end": "",
    "reasoning_close": "",
    "reasoning_interrupt": None,  # other texts that end the thinking where they stand (nothing forced after them)
    "reasoning_open": False,
    "reasoning_every": False,  # every thinking block of the reply counts against the budget (gpt-oss's analyses)
    # Keep the text of control tokens in the output (formats whose markers are control tokens).
    "render_special": False,
    # ...and of these token ids alone (llama-server's preserved_tokens): shown while other control tokens stay dropped.
    "preserved_tokens": None,
    # llama.cpp's infill sampler after the temperature (fill-in-the-middle code completion: an end of generation
    # wins when likely enough, candidates spelling the start of another are merged into it); sampled requests only.
    "infill": False,
    # Speculative decoding (llama-server's names): off unless ``speculative`` is "ngram" (or True:
    # draft-free n-gram / prompt lookup) or "draft" (the model's draft model, see jan.Model's
    # ``draft_model``); then up to ``draft_max`` tokens are drafted per step — from the earlier
    # occurrence of the last ``ngram`` tokens, or greedily by the draft model while its top
    # token's probability is at least ``draft_p_min`` — and none when fewer than ``draft_min``.
    "speculative": None,
    "draft_max": 16,
    "draft_min": 0,
    "ngram": 3,
    "draft_p_min": 0.75,
    # Whether the caller expects this output again (None: when it gave a seed; greedy always is). With
    # jan.Model's adaptive_threads "exact" such a request's output stays independent of machine load.
    "reproducible": None,
    # LoRA adapters this request runs under (llama-server's per-request "lora"): [{"id": i, "scale": s}, ...] by the
    # model's adapter ids, those not listed at 0; None: the model's current defaults (jan.Model's lora_adapters).
    "lora": None,
    # llama-server's id_slot: the slot (0 .. n_parallel - 1) the request runs in, waiting while it is busy (so that
    # a client can save "its" conversation's slot); None or -1: any slot.
    "id_slot": None,
}

#: ``speculative`` values: None/False/"none" = off, True/"ngram" = n-gram drafting, "draft" = the draft model.
SPECULATIVE = ("none", "ngram", "draft")
#: The options :class:`jan.Model` takes as per-model defaults for every request.
SPECULATIVE_OPTIONS = ("speculative", "draft_max", "draft_min", "ngram", "draft_p_min")

_UINT32 = 0xFFFFFFFF
INT32_MAX = 2**31 - 1
#: The seeds a client may send: OpenAI's ``seed`` is an int64 (so are Ollama's and llama-server's).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
#: The seed that means "pick one for me": llama.cpp's, llama-server's and Ollama's convention.
RANDOM_SEED = -1


def _mix32(x: int) -> int:
    """MurmurHash3's 32-bit finalizer: a bijection on 32 bits that spreads every input bit over
    the output, and maps 0 to 0 (so a seed whose high word is 0 folds to itself)."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _UINT32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _UINT32
    x ^= x >> 16
    return x


def engine_seed(seed: int | None, name: str = "seed") -> int | None:
    """A client's seed as the native engine's 32-bit one (llama.cpp seeds its samplers with a
    ``uint32_t``). ``None`` and ``-1`` (:data:`RANDOM_SEED`) are None: no seed chosen, one is drawn.
    Seeds in ``[0, 2**32)`` are kept exactly (a seed's output never changes); any other int64 is its
    low word XOR a mix of its high word, so ``1`` and ``2**32 + 1`` (or ``-2`` and ``2**32 - 2``) sample
    differently where plain truncation made them the same seed. A fold that lands on ``2**32 - 1``
    (llama.cpp's LLAMA_DEFAULT_SEED, which it takes as "random") moves one below.

    Raises :class:`~jan.BadRequestError` naming ``name`` for a non-integer or one outside
    ``[-2**63, 2**63)``: one function for every dialect, the Python API and the CLI."""
    if seed is None:
        return None
    whole = _whole(seed)
    if whole is None:
        raise BadRequestTypeError(f"{name}: expected an integer, got {seed!r}", param=name)
    seed = whole
    if not SEED_MIN <= seed <= SEED_MAX:
        raise BadRequestError(f"{name}: must be a 64-bit signed integer (>= {SEED_MIN} and <= {SEED_MAX}), "
                              f"got {seed}", param=name)
    if seed == RANDOM_SEED:
        return None
    if 0 <= seed <= _UINT32:
        return seed
    bits = seed & 0xFFFFFFFFFFFFFFFF  # a negative seed as its two's complement, as a C int64 holds it
    folded = (bits & _UINT32) ^ _mix32(bits >> 32)
    return folded - 1 if folded == _UINT32 else folded


@dataclass(frozen=True)
class Range:
    """The values one option accepts: ``kind`` (int or float) within the given bounds (None: open)."""

    kind: type
    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def field(self) -> dict[str, float]:
        """The bounds as pydantic ``Field`` keywords: ``Field(None, **RANGES["top_k"].field())``."""
        return {k: v for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le)) if v is not None}

    def describe(self) -> str:
        lo = f">= {_bound(self.ge)}" if self.ge is not None else (f"> {_bound(self.gt)}" if self.gt is not None else "")
        hi = f"<= {_bound(self.le)}" if self.le is not None else ""
        return " and ".join(p for p in (lo, hi) if p)

    def check(self, name: str, value):
        """``value`` as ``kind``; ValueError naming ``name`` if it is not one or is out of range."""
        if self.kind is int:
            value = _int(name, value)
        else:
            value = _float(name, value)
            if math.isnan(value):
                raise option_refusal(name, f"{name}: must be a number, got NaN")
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le)):
            raise option_refusal(name, f"{name}: must be {self.describe()}, got {value!r}")
        return value


def _bound(value: float) -> str:
    """A bound as people write it: whole numbers in full (2147483647, not %g's 2.14748e+09), others as %g."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


#: What each numeric option accepts: the one table for the Python API, the CLI and the server.
#: (OpenAI's bounds where OpenAI has the option; llama.cpp's domain for its extras; int32 where
#: the native engine stores an int32.)
RANGES: dict[str, Range] = {
    "max_tokens": Range(int, ge=1, le=INT32_MAX),
    "temperature": Range(float, ge=0.0, le=2.0),          # 0: greedy
    "top_k": Range(int, ge=0, le=INT32_MAX),               # 0: off
    "top_p": Range(float, ge=0.0, le=1.0),
    "min_p": Range(float, ge=0.0, le=1.0),
    "typical_p": Range(float, gt=0.0, le=1.0),
    "repeat_penalty": Range(float, gt=0.0, le=INT32_MAX),
    "presence_penalty": Range(float, ge=-2.0, le=2.0),
    "frequency_penalty": Range(float, ge=-2.0, le=2.0),
    "repeat_last_n": Range(int, ge=-1, le=INT32_MAX),      # -1: the whole context
    "top_logprobs": Range(int, ge=0, le=20),
    "mirostat": Range(int, ge=0, le=2),                    # 0: off; 1 or 2: the algorithm's version
    "mirostat_tau": Range(float, ge=0.0, le=100.0),        # target surprise (bits)
    "mirostat_eta": Range(float, gt=0.0, le=1.0),          # learning rate
    "logit_bias": Range(float, ge=-100.0, le=100.0),       # each bias value
    "n": Range(int, ge=1, le=16),                          # choices per request (server)
    # Speculative decoding (the native engine's bounds, cpp/sampling.cpp; the server's schema agrees)
    "draft_max": Range(int, ge=0, le=256),                 # tokens drafted per step
    "draft_min": Range(int, ge=0, le=256),
    "ngram": Range(int, ge=1, le=64),                      # n-gram length looked up in the context
    "draft_p_min": Range(float, ge=0.0, le=1.0),           # draft model: least top-token probability drafted
}


#: Thinking tokens a request may spend (the engine holds an int32; None or -1: no cap, as DEFAULTS says and as the
#: server's schema and llama-server's --reasoning-budget take it: -1 was refused here alone).
REASONING_BUDGET = Range(int, ge=-1, le=INT32_MAX)
#: A request's slot (-1: any). Not in RANGES: its top is the model's slot count, which the model checks (Model.stream).
ID_SLOT = Range(int, ge=-1, le=INT32_MAX)


@dataclass(frozen=True)
class Order:
    """Two options of which ``low`` may not exceed ``high``: set the other way, they contradict each other (one
    of them cannot mean what it says). ``why``: what goes wrong, for the error."""

    low: str
    high: str
    why: str


#: The options that bound one another, the one table for every way options are given (``jan.Model(...)``, a
#: request, model.json ``settings``, the server's and the CLI's flags): :func:`check_order` judges them.
#: (The KV cache types' rules need the model's header: :mod:`jan.engine.kv_cache`.)
ORDERS: tuple[Order, ...] = (
    Order("draft_min", "draft_max", "a step drafts at most draft_max tokens and none when fewer than draft_min "
                                    "are found, so it would never draft"),
    Order("n_ubatch", "n_batch", "n_ubatch is the physical batch a logical batch of n_batch tokens is split "
                                 "into, so it cannot be the larger"),
    Order("image_min_tokens", "image_max_tokens", "one image takes at least image_min_tokens and at most "
                                                  "image_max_tokens tokens, and no count is both"),
)


def check_order(values: Mapping[str, object], defaults: Mapping[str, object] | None = None, *,
                prefix: str = "") -> None:
    """:class:`~jan.BadRequestError` (a ValueError) naming the option at fault (``prefix`` + its name, e.g.
    ``settings.draft_min``) when two options of :data:`ORDERS` contradict each other. ``values``: the options
    given (None or absent: not given); ``defaults``: what stands for one not given (None: a pair is judged only
    when both are given, as for a layer that others complete). The option blamed is the one given (``low`` when
    both are)."""
    for order in ORDERS:
        given = {name: values.get(name) for name in (order.low, order.high)}
        got = {name: v if v is not None else (defaults or {}).get(name) for name, v in given.items()}
        low, high = got[order.low], got[order.high]
        if not _number(low) or not _number(high) or low <= high:  # a bad value is its own range's error
            continue
        blamed = order.low if given[order.low] is not None else order.high
        said = {name: f"{got[name]!r}" if given[name] is not None else f"the default {got[name]!r}" for name in got}
        raise BadRequestError(f"{prefix}{blamed}: {order.low} ({said[order.low]}) must not exceed {order.high} "
                              f"({said[order.high]}): {order.why}", param=f"{prefix}{blamed}",
                              code="conflicting_options")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sampling_params(**options) -> _engine.SamplingParams:
    """Build the native parameter struct; unknown names and bad values raise ValueError/TypeError, and so do
    options that contradict each other or the defaults (:func:`check_order`)."""
    return _sampling_params(options, DEFAULTS)


def check_sampling_options(**options) -> None:
    """Check options as :func:`sampling_params` does, as one layer of several (a model.json's ``parameters``, an
    assistant's, one option at a time): two options that contradict each other are refused only when both are
    given here, since another layer may give the other one of a pair."""
    _sampling_params(options, None)


def _sampling_params(options: Mapping[str, object], order_defaults: Mapping[str, object] | None) -> _engine.SamplingParams:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        from jan.near_names import with_guess

        # each named with the option it likely meant (max_token, temprature), as every mistyped name in jan is
        said = [with_guess(name, DEFAULTS) for name in sorted(unknown, key=str)]
        # (a keyword no sampling option has: Python's TypeError for an unexpected keyword, and a bad argument)
        raise type_refusal(str(sorted(unknown, key=str)[0]), f"unknown sampling option(s): {', '.join(said)}")
    o = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    r = RANGES
    p = _engine.SamplingParams()
    p.max_tokens = -1 if o["max_tokens"] is None else r["max_tokens"].check("max_tokens", o["max_tokens"])
    p.temperature = r["temperature"].check("temperature", o["temperature"])
    p.top_k = r["top_k"].check("top_k", o["top_k"])
    p.top_p = r["top_p"].check("top_p", o["top_p"])
    p.min_p = r["min_p"].check("min_p", o["min_p"])
    p.typical_p = r["typical_p"].check("typical_p", o["typical_p"])
    p.repeat_penalty = r["repeat_penalty"].check("repeat_penalty", o["repeat_penalty"])
    p.presence_penalty = r["presence_penalty"].check("presence_penalty", o["presence_penalty"])
    p.frequency_penalty = r["frequency_penalty"].check("frequency_penalty", o["frequency_penalty"])
    p.repeat_last_n = r["repeat_last_n"].check("repeat_last_n", o["repeat_last_n"])
    # A request without a seed still gets a definite one, so the same request
    # can be replayed exactly from the seed it reports.
    seed = engine_seed(o["seed"])
    p.seed = random.randrange(0, _UINT32) if seed is None else seed
    # What the caller can expect to get again: the engine then keeps it independent of machine load
    # (jan.Model's adaptive_threads "exact"); a draw from a seed nobody chose may follow the load.
    wanted = o["reproducible"]  # (a yes/no as every flag: "no" or 0.0 read as truthy/falsy said the opposite)
    p.reproducible = p.temperature <= 0 or (seed is not None if wanted is None else check_flag("reproducible", wanted))
    p.logit_bias = _logit_bias(o["logit_bias"])
    if o["grammar"] is not None and (not isinstance(o["grammar"], str) or o["grammar"]):
        # llama.cpp's grammar parser recurses without bounds: check first (GrammarError, a ValueError). Anything but
        # text is its refusal too: a falsy one (0, [], False) was silently no grammar, an array numpy's "truth value
        # is ambiguous"
        check_gbnf(o["grammar"])
    p.grammar = o["grammar"] or ""
    p.grammar_triggers = _strings("grammar_triggers", o["grammar_triggers"])
    p.grammar_prefix = _string("grammar_prefix", o["grammar_prefix"])
    p.reasoning_budget = -1 if o["reasoning_budget"] is None else REASONING_BUDGET.check("reasoning_budget",
                                                                                        o["reasoning_budget"])
    p.reasoning_start = _string("reasoning_start", o["reasoning_start"])
    p.reasoning_end = _string("reasoning_end", o["reasoning_end"])
    p.reasoning_close = _string("reasoning_close", o["reasoning_close"])
    p.reasoning_interrupt = [engine_text("reasoning_interrupt", t) for t in _strings("reasoning_interrupt",
                                                                                     o["reasoning_interrupt"])]
    p.reasoning_open = check_flag("reasoning_open", o["reasoning_open"])
    p.reasoning_every = check_flag("reasoning_every", o["reasoning_every"])
    p.render_special = check_flag("render_special", o["render_special"])
    p.preserved_tokens = _token_ids("preserved_tokens", o["preserved_tokens"])
    p.infill = check_flag("infill", o["infill"])
    p.ignore_eos = check_flag("ignore_eos", o["ignore_eos"])
    p.grammar_first = check_flag("grammar_first", o["grammar_first"])
    p.stop = _stops(o["stop"])
    p.logprobs = check_flag("logprobs", o["logprobs"]) or bool(o["top_logprobs"])
    p.n_probs = r["top_logprobs"].check("top_logprobs", o["top_logprobs"])
    p.prompt_logprobs = check_flag("prompt_logprobs", o["prompt_logprobs"])
    p.post_sampling_probs = check_flag("post_sampling_probs", o["post_sampling_probs"])
    p.mirostat = r["mirostat"].check("mirostat", o["mirostat"])
    p.mirostat_tau = r["mirostat_tau"].check("mirostat_tau", o["mirostat_tau"])
    p.mirostat_eta = r["mirostat_eta"].check("mirostat_eta", o["mirostat_eta"])
    draft_max = r["draft_max"].check("draft_max", o["draft_max"])
    speculative = speculative_mode(o["speculative"])
    p.draft_max = draft_max if speculative != "none" else 0
    p.use_draft_model = speculative == "draft"
    p.draft_min = r["draft_min"].check("draft_min", o["draft_min"])
    p.ngram = r["ngram"].check("ngram", o["ngram"])
    p.draft_p_min = r["draft_p_min"].check("draft_p_min", o["draft_p_min"])
    lora = lora_request(o["lora"])
    p.lora_set = lora is not None
    p.lora = list(lora or ())
    p.id_slot = -1 if o["id_slot"] is None else ID_SLOT.check("id_slot", o["id_slot"])
    check_order(options, order_defaults)
    return p


#: The largest 32-bit float: llama.cpp keeps a LoRA scale as one, and a larger double becomes its infinity.
FLOAT32_MAX = 3.4028234663852886e38


def lora_scale(name: str, value) -> float:
    """A LoRA adapter's scale: a finite number as a 32-bit float (0: off; at most :data:`FLOAT32_MAX` either way);
    :class:`BadRequestError` naming ``name`` otherwise. (1e300 passed here and became the engine's infinity: every
    door then refused it naming ``lora``, not the entry, the model.json field or the flag that gave it.)"""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadRequestTypeError(f"{name}: expected a number, got {value!r}", param=name, code="invalid_type")
    scale = double_of(value)
    if not math.isfinite(scale):
        raise BadRequestError(f"{name}: expected a finite number, got {value!r}", param=name, code="invalid_value")
    if abs(scale) > FLOAT32_MAX:
        raise BadRequestError(f"{name}: expected a finite number as a 32-bit float (at most {FLOAT32_MAX:.7g} either "
                              f"way, as llama.cpp keeps scales), got {value!r}", param=name, code="invalid_value")
    return scale


def lora_request(value, name: str = "lora") -> tuple[tuple[int, float], ...] | None:
    """A request's ``lora`` (llama-server's: a list of ``{"id": adapter id, "scale": number}``; ``(id, scale)``
    pairs too) as ``(id, scale)`` pairs; None for None (the model's defaults). :class:`BadRequestError` naming the
    item's field for anything else: no list, an item without an ``id`` or ``scale``, an id that is no whole number
    >= 0, a scale that is no finite number, an id given twice. Ids past the model's adapters are the model's to
    refuse (:meth:`jan.Model.stream`), which knows how many it has."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise BadRequestTypeError(f"{name}: expected a list of {{\"id\": adapter id, \"scale\": number}}, got "
                                  f"{value!r}", param=name, code="invalid_type")
    out: list[tuple[int, float]] = []
    seen: set[int] = set()
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(item, Mapping):
            unknown = sorted(str(k) for k in item if k not in ("id", "scale"))
            if unknown:
                raise BadRequestError(f"{where}: unknown field(s) {', '.join(unknown)} (expected id and scale)",
                                      param=where, code="invalid_value")
            if "id" not in item or "scale" not in item:
                missing = "id" if "id" not in item else "scale"
                raise BadRequestError(f"{where}.{missing}: required", param=f"{where}.{missing}",
                                      code="missing_required_parameter")
            adapter, scale = item["id"], item["scale"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            adapter, scale = item
        else:
            raise BadRequestTypeError(f"{where}: expected {{\"id\": adapter id, \"scale\": number}}, got {item!r}",
                                      param=where, code="invalid_type")
        index = as_int(adapter)
        if index is None and isinstance(adapter, float) and adapter.is_integer():
            index = int(adapter)  # (JSON's 1.0)
        if index is None or index < 0:
            raise BadRequestError(f"{where}.id: expected an adapter id (a whole number >= 0), got {adapter!r}",
                                  param=f"{where}.id", code="invalid_value")
        if index in seen:
            raise BadRequestError(f"{where}.id: adapter {index} is given twice", param=f"{where}.id",
                                  code="invalid_value")
        seen.add(index)
        out.append((index, lora_scale(f"{where}.scale", scale)))
    return tuple(out)


#: The code of an option refused for its type (a string where a number belongs), as the services' own refusals say it.
TYPE = "invalid_type"


def option_refusal(name: str, message: str, code: str = "invalid_value") -> BadRequestError:
    """The error of an option, flag or argument value refused here: a :class:`~jan.BadRequestError` (a
    ``ValueError``) whose ``param`` names it, as the seed's, the token ids' and the engine's own checks are, so that a
    caller catching ``jan.BadRequestError`` (or reading ``param``) sees every bad argument of a call alike, not only
    some (``top_k=-1`` was a bare ValueError, ``seed=1.5`` a BadRequestError). A value of the wrong type (``code``
    :data:`TYPE`) is a :class:`~jan.BadRequestTypeError`, also a ``TypeError``."""
    kind = BadRequestTypeError if code == TYPE else BadRequestError
    return kind(message, param=name, code=code)


def type_refusal(name: str, message: str) -> BadRequestTypeError:
    """The error of an argument of the wrong type (``tokenize(5)``, ``embed(b"...")``): :func:`option_refusal`'s
    with code :data:`TYPE`, a :class:`~jan.BadRequestTypeError` naming ``name`` (it was a bare ``TypeError``, which
    ``except jan.BadRequestError`` missed and the server answered with a 500)."""
    return BadRequestTypeError(message, param=name, code=TYPE)


def speculative_mode(value) -> str:
    """``speculative`` as one of :data:`SPECULATIVE`; ValueError naming it otherwise. The one rule (and message)
    for every place it is given: a request in any dialect, model.json ``settings``, ``jan.Model``."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "ngram"
    if isinstance(value, str) and value.lower() in SPECULATIVE:
        return value.lower()
    raise option_refusal("speculative", f"speculative: expected one of {', '.join(SPECULATIVE)} (or true/false), "
                         f"got {value!r}")


def as_int(value) -> int | None:
    """``value`` as a Python int when it is an integer — an ``int`` or any other :class:`numbers.Integral`, such as
    numpy's ``int64`` (what ``np.argmax`` or a token array's items are) — but never a bool; None otherwise. The one
    rule for what counts as an integer option, token id or seed: numpy's integers are not ``int`` subclasses, so an
    ``isinstance(value, int)`` check refused them with "expected an integer"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, numbers.Integral):  # (numpy's bool_ is no Integral)
        return operator.index(value)
    return None


def _whole(value) -> int | None:
    """An integer option's value: :func:`as_int`'s, or a float that is a whole number (JSON's ``2.0``); None
    otherwise."""
    as_integer = as_int(value)
    if as_integer is None and isinstance(value, float) and value.is_integer():
        return int(value)
    return as_integer


def _int(name: str, value, minimum: int | None = None) -> int:
    whole = _whole(value)
    if whole is None:
        raise option_refusal(name, f"{name}: expected an integer, got {value!r}", TYPE)
    value = whole
    if minimum is not None and value < minimum:
        raise option_refusal(name, f"{name}: must be >= {minimum}, got {value}")
    return value


def _float(name: str, value) -> float:
    # numbers.Real: numpy's float32 and integers too (not float/int subclasses), as :func:`as_int` takes its integers
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise option_refusal(name, f"{name}: expected a number, got {value!r}", TYPE)
    return double_of(value)  # (an integer past a double's range: an infinity, refused as one, not OverflowError)


#: The longest duration told apart from "forever": threading.TIMEOUT_MAX (~292 years; also Go's longest
#: time.Duration, so Ollama's own limit). A thread cannot wait longer (OverflowError), and now plus a much longer
#: duration is past the last date a datetime holds, so ``/api/ps`` could not write when a model unloads.
MAX_SECONDS = threading.TIMEOUT_MAX


def check_seconds(name: str, value, *, positive: bool = False, finite: bool = False) -> float:
    """A duration option (``keep_alive``, ``room_timeout``, a wait's ``timeout``): a real number of seconds,
    >= 0 (> 0 with ``positive``), infinity ("forever") only where that means something (not ``finite``).
    ValueError naming the option otherwise: NaN compares false with every bound, so it would pass a plain
    ``< 0`` check and then mean nothing (or never). A finite value past :data:`MAX_SECONDS` (a client's
    ``keep_alive: 1e30``) comes back as infinity, or as :data:`MAX_SECONDS` where the option must be finite:
    nothing could tell them apart, and every later wait, deadline and date made from it stays in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise option_refusal(name, f"{name}: expected a number of seconds, got {value!r}", TYPE)
    value = double_of(value)  # (an integer past a double's range: infinity, as 1e999 reads)
    if math.isnan(value):
        raise option_refusal(name, f"{name}: expected a number of seconds, got NaN")
    if finite and math.isinf(value):
        raise option_refusal(name, f"{name}: must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise option_refusal(name, f"{name}: must be {'>' if positive else '>='} 0 seconds, got {value!r}")
    if value > MAX_SECONDS:
        return MAX_SECONDS if finite else math.inf
    return value


def engine_text(name: str, text: str) -> str:
    """``text`` as the native engine can take it (UTF-8); :class:`~jan.BadRequestError` naming ``name``
    when it holds a lone UTF-16 surrogate — what a JSON ``"\\ud800"`` escape or an undecodable byte read
    with ``surrogateescape`` (argv, stdin, file names) becomes — instead of pybind11's TypeError
    ("incompatible function arguments"), which says nothing about the text."""
    if text.isascii():  # the common case, without a copy
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequestError(f"{name}: the text holds a lone UTF-16 surrogate ({text[exc.start]!r} at position "
                              f"{exc.start}), which is not a Unicode character", param=name,
                              code="invalid_unicode") from None
    return text


def model_id_text(value, name: str = "model_id", *, empty: bool = False) -> str:
    """A model id as the pool keeps it and every answer names it: BadRequestTypeError naming ``name`` for no string,
    :class:`~jan.BadRequestError` (a ValueError) for an empty one (unless ``empty``) or one holding a lone UTF-16
    surrogate. The id was taken as is and failed later, where it became text to encode (a log line, a file name, an
    answer written as UTF-8)."""
    if not isinstance(value, str):
        raise type_refusal(name, f"{name}: expected a string, got {type(value).__name__}")
    if not value and not empty:
        raise BadRequestError(f"{name}: must not be empty", param=name)
    return engine_text(name, value)


def _string(name: str, value) -> str:
    if not isinstance(value, str):
        raise option_refusal(name, f"{name}: expected a string, got {value!r}", TYPE)
    return engine_text(name, value)


def _string_list(name: str, value, what: str) -> list[str]:
    """``value`` (any iterable of strings but text itself or a mapping) as a list, read once: a generator's items
    were consumed by the check that they are strings, and the option was then silently empty (``stop=iter(...)``
    stopped nothing). ValueError naming ``name`` (``what``: what it expects) for anything else, never the
    "'int' object is not iterable" of iterating it."""
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise option_refusal(name, f"{name}: expected {what}, got {type(value).__name__}", TYPE)
    items = list(value)
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise option_refusal(f"{name}[{i}]", f"{name}[{i}]: expected a string, got {type(s).__name__}", TYPE)
    return [engine_text(f"{name}[{i}]", s) for i, s in enumerate(items)]


def _strings(name: str, value) -> list[str]:
    if value is None:
        return []
    return _string_list(name, value, "a list of strings")


def _token_ids(name: str, value) -> list[int]:
    """A list of token ids (None: none); the engine checks they are in the vocabulary."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise option_refusal(name, f"{name}: expected a list of token ids, got {type(value).__name__}", TYPE)
    return [_int(f"{name}[{i}]", t, 0) for i, t in enumerate(value)]


def _stops(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    stops = _string_list("stop", stop, "a string or a list of strings")
    if any(s == "" for s in stops):
        raise option_refusal("stop", "stop: stop strings must not be empty")
    return stops


def _logit_bias(bias) -> list[tuple[int, float]]:
    """``{token id: bias}`` (JSON's string keys too) or an iterable of ``(token id, bias)`` pairs; anything
    else is a ValueError naming ``logit_bias``, not the TypeError/ValueError of unpacking a list of ints or
    a string deep in here, and a key that only Python's ``int()`` would take (``1.7``, ``True``) is refused
    rather than silently biasing another token."""
    if bias is None:
        return []
    if isinstance(bias, Mapping):
        items: Sequence = list(bias.items())
    elif isinstance(bias, (str, bytes, bytearray)) or not isinstance(bias, Iterable):
        raise option_refusal("logit_bias", "logit_bias: expected a mapping of token ids to biases, got "
                             f"{type(bias).__name__}", TYPE)
    else:
        items = list(bias)
    out = []
    for item in items:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise option_refusal("logit_bias", "logit_bias: expected a mapping of token ids to biases (or (token id, "
                                 f"bias) pairs), got the item {item!r}", TYPE)
        key, value = item
        token = _token_key(key)
        if not 0 <= token <= INT32_MAX:
            raise option_refusal("logit_bias", f"logit_bias: token id {token} is out of range")
        out.append((token, RANGES["logit_bias"].check(f"logit_bias[{token}]", value)))
    return out


def logit_bias_ids(bias) -> list[int]:
    """The token ids a ``logit_bias`` names, read as :func:`sampling_params` reads them (ValueError naming
    ``logit_bias`` as it does): for a check against a vocabulary before a model is loaded."""
    return [token for token, _ in _logit_bias(bias)]


def _token_key(key) -> int:
    """A logit_bias key as a token id: an int, or a string of one (JSON object keys are strings)."""
    if as_int(key) is not None:
        return as_int(key)
    if isinstance(key, str):
        try:
            return int(key.strip())
        except ValueError:
            pass
    raise option_refusal("logit_bias", f"logit_bias: keys must be token ids, got {key!r}", TYPE)


def check_flag(name: str, value) -> bool:
    """A yes/no option (sampling and tokenizer flags, jan.Model's load flags): a bool, never any truthy value:
    ``ignore_eos="no"`` or ``logprobs=5`` (meant as top_logprobs) would otherwise pass as True."""
    if isinstance(value, bool):
        return value
    raise option_refusal(name, f"{name}: expected true or false, got {value!r}", TYPE)
