"""llama-server's own fields that its clients send to jan's OpenAI routes too (its web UI sends ``cache_prompt``,
``timings_per_token``, ``dry_multiplier: 0``...): which are accepted and ignored, which refused unless off; and how
its grammar fields (``grammar``, ``json_schema``, a lazy grammar's) are read, alike on every route that takes them
(:func:`client_grammar`).

Apart from :mod:`jan.server.dialects.llamacpp` (llama-server's routes' wire format, re-exporting these) because
every chat completion body is read through :func:`without_extras` (``jan.server.schemas``), while that module is
imported on the first request to one of llama-server's own routes (resident memory at start, issue 16).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from jan.json_text import finite_number

__all__ = ["IGNORED", "IGNORED_TYPES", "IGNORED_WHILE_OFF", "REFUSED_UNLESS", "SPECULATIVE", "TRIGGER_TYPES", "UNREAD", "bias_text",
           "bias_texts", "biases_with_ids", "client_grammar", "ignored_refusal", "lazy_refusal", "lazy_triggers", "logit_bias_ids",
           "refusal", "speculative_fields", "without_extras"]

#: Fields llama-server takes that change nothing jan's output could show, accepted and ignored: how llama-server
#: keeps its KV cache (jan reuses any prefix a slot holds, in any slot), its prompt-time limit (which llama-server
#: itself does not implement), context shifting (jan never shifts: a prompt that does not fit is a 400), progress,
#: pings and debug fields of its stream.
IGNORED = ("cache_prompt", "n_cache_reuse", "n_keep", "n_discard", "t_max_prompt_ms", "timings_per_token",
           "return_progress", "sse_ping_interval", "verbose", "stream_options", "backend_sampling",
           "message_delimiters",
           # arms the reasoning budget for llama-server's control endpoint (its web UI always sends it): jan has no
           # control endpoint, so it changes nothing
           "reasoning_control",
           # what llama-server's OpenAI answers have no field for (it tells the tokens and picks the fields only in
           # /completion's own results), and what its chat sets from the template whatever the body says (the
           # generation prompt, and tool call parsing: on with tools, nothing to parse without)
           "return_tokens", "response_fields", "generation_prompt", "parse_tool_calls")
#: The types llama-server's schema reads the :data:`IGNORED` fields as (its ``server-schema.cpp``): a value of
#: another type is its 400 ("Field 'cache_prompt': type must be boolean"), so jan, ignoring the value, still refuses
#: it (it was taken unsaid, where llama-server tells the client its field is wrong). Counts: (least, most).
_INT32_MAX = 2**31 - 1
IGNORED_TYPES: dict[str, Any] = {
    **dict.fromkeys(("cache_prompt", "timings_per_token", "return_progress", "verbose", "backend_sampling",
                     "return_tokens", "parse_tool_calls"), bool),
    "n_keep": (-1, _INT32_MAX), "n_discard": (0, _INT32_MAX), "n_cache_reuse": (0, _INT32_MAX),
    "sse_ping_interval": (-1, _INT32_MAX), "stream_options": dict,
    # (not generation_prompt nor reasoning_control: llama-server's chat sets them from the template unchecked; nor
    # t_max_prompt_ms, which its schema does not read)
}


def ignored_refusal(name: str, value: Any) -> str | None:
    """Why an :data:`IGNORED` field's ``value`` is refused although jan ignores it, or None: its type (and a count's
    range) is not llama-server's (:data:`IGNORED_TYPES`). Null is absent, as llama-server reads it; a count may be a
    whole float (llama-server's JSON reading), never a bool."""
    kind = IGNORED_TYPES.get(name)
    if kind is None or value is None:
        return None
    if kind is bool or kind is dict:
        what = "a boolean" if kind is bool else "an object"
        return None if isinstance(value, kind) else f"{name}: must be {what}, as llama-server reads it"
    low, high = kind
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        return f"{name}: must be an integer, as llama-server reads it"
    if not low <= value <= high:
        return f"{name}: must be between {low} and {high}, got {value!r}"
    return None


#: Samplers jan's engine does not have, refused unless the value that turns them off: field -> (is off, why).
REFUSED_UNLESS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dynatemp_range": (lambda v: v == 0, "its sampler has no dynamic temperature"),
    "xtc_probability": (lambda v: v == 0, "its sampler has no XTC"),
    "dry_multiplier": (lambda v: v == 0, "its sampler has no DRY penalty"),
    "top_n_sigma": (lambda v: v < 0, "its sampler has no top-n-sigma"),
    "adaptive_target": (lambda v: v < 0, "its sampler has no adaptive-p"),
    # (jan's truncating samplers keep one candidate at least, as llama.cpp's do with min_keep 0 or 1: both are what
    # jan does, and llama-server clients send 1)
    "min_keep": (lambda v: not isinstance(v, bool) and v in (0, 1),
                 "its samplers keep one candidate at least, never more"),
    # (told on /completion, /infill and chats, which declare it; a text completion's OpenAI lists have no field for
    # a probability)
    "post_sampling_probs": (lambda v: v is False, "a text completion's logprobs are the model's own; "
                                                  "/v1/chat/completions, /completion and /infill tell the "
                                                  "probabilities after sampling"),
    # (llama-server reads no such field of the body: media go in a prompt object, where it reads them; refused
    # rather than dropped unsaid)
    "image_data": (lambda v: v == [], 'media go in a prompt object: "prompt": {"prompt_string": "... <__media__> ...", '
                                      '"multimodal_data": ["<base64>"]}'),
    "multimodal_data": (lambda v: v == [], 'media go in a prompt object: "prompt": {"prompt_string": '
                                           '"... <__media__> ...", "multimodal_data": ["<base64>"]}'),
}
#: Fields that only tune a refused sampler above: accepted with it off (they change nothing then), as any field
#: llama-server does not know is.
IGNORED_WHILE_OFF = ("dynatemp_exponent", "xtc_threshold", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
           "dry_sequence_breakers", "adaptive_decay")

#: Fields llama.cpp's web UI sends that llama-server itself does not read (``typ_p``: it reads ``typical_p``).
UNREAD = ("typ_p",)

#: llama-server's per-request speculative decoding fields (what its clients send to tune or turn off drafting, on
#: /completion and its OpenAI routes alike) -> jan's options. /completion ignored them and the OpenAI routes refused
#: them as unknown, so a client's ``"speculative.n_max": 0`` drafted on as before.
SPECULATIVE = {"speculative.n_max": "draft_max", "speculative.n_min": "draft_min", "speculative.p_min": "draft_p_min"}


def speculative_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """A body's :data:`SPECULATIVE` fields as jan's options (``{"draft_max": 4}``), null ones left out, each
    checked against jan's range for the option (a whole float is its integer, as llama-server reads counts).
    ValueError naming the body's field (``speculative.n_max: must be >= 0 and <= 256, got -1``): jan refuses what
    llama-server silently clamps, as it does for its own names."""
    given = {name: data[name] for name in SPECULATIVE if data.get(name) is not None}
    if not given:
        return {}
    from jan.engine.params import RANGES  # (only for a body that has one: this module stays light, see above)

    out = {}
    for name, value in given.items():
        option = SPECULATIVE[name]
        if RANGES[option].kind is int and type(value) is float and value.is_integer():
            value = int(value)
        out[option] = RANGES[option].check(name, value)
    return out


def lazy_refusal(lazy: bool, grammar: bool, triggers: Any) -> str | None:
    """Why a body's lazy grammar (``grammar_lazy``, ``grammar_triggers``; ``grammar``: it gives a grammar or a JSON
    schema) is refused, or None: a lazy grammar needs both (llama-server's "no triggers set for lazy grammar")."""
    if lazy and not grammar:
        return "grammar_lazy: a lazy grammar needs a grammar (or json_schema) to apply once triggered"
    if lazy and not triggers:
        return "grammar_lazy: no triggers set for the lazy grammar; give grammar_triggers"
    return None


def refusal(name: str, value: Any) -> str | None:
    """Why ``name`` (a field of :data:`REFUSED_UNLESS`) at ``value`` is refused, or None (off, or null)."""
    if name not in REFUSED_UNLESS or value is None:
        return None
    off, why = REFUSED_UNLESS[name]
    try:
        ok = off(value)
    except TypeError:
        ok = False
    return None if ok else f"{name} is not supported by jan ({why}); leave it out"


def without_extras(data: dict[str, Any], declared: Collection[str]) -> dict[str, Any]:
    """A body for llama-server's OpenAI-compatible routes without the llama-server fields that are not
    ``declared`` on it (its clients send them there too: its web UI, ``extra_body={"cache_prompt": true}``), taken
    as ``/completion`` takes them: accepted and ignored (:data:`IGNORED`, :data:`IGNORED_WHILE_OFF`,
    :data:`UNREAD`), or a ValueError naming an ignored one not of llama-server's type (:func:`ignored_refusal`) or naming one of :data:`REFUSED_UNLESS` that is not off."""
    out = {}
    speculative = speculative_fields(data)
    for name, value in data.items():
        if name in SPECULATIVE and SPECULATIVE[name] in declared and name not in declared:
            continue  # (taken below, as jan's option)
        if name in declared:
            out[name] = value
        elif name in REFUSED_UNLESS:
            why = refusal(name, value)
            if why is not None:
                raise ValueError(why)
        elif name in IGNORED:
            why = ignored_refusal(name, value)
            if why is not None:
                raise ValueError(why)
        elif name not in IGNORED_WHILE_OFF and name not in UNREAD:
            out[name] = value  # (the body's own check refuses what it does not know)
    for option, value in speculative.items():
        if option in declared and out.get(option) is None:  # (jan's own name, given too, wins)
            out[option] = value
    return out


def bias_text(token: Any) -> bool:
    """Whether a ``logit_bias`` entry's token is text to tokenize (llama-server's ``[["Hello", -0.5]]``), not an id
    (a number, or a string of one: an object's keys, ``"-1"`` included, are ids to llama-server's ``strtol``)."""
    return isinstance(token, str) and _ID_TEXT.fullmatch(token) is None


#: A token id written as text (ASCII digits, a sign, spaces around: what llama-server's strtol takes whole).
_ID_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")


def _bias_pairs(value: Any) -> list[Any]:
    return list(value.items()) if isinstance(value, Mapping) else value or []


def _text_pair(pair: Any) -> bool:
    return isinstance(pair, (list, tuple)) and len(pair) == 2 and bias_text(pair[0])


def bias_texts(value: Any) -> list[str]:
    """The distinct texts a ``logit_bias`` (either form) gives as tokens, in their order (blocking: a long list
    walks on a worker thread, ``body_step``)."""
    return list(dict.fromkeys(pair[0] for pair in _bias_pairs(value) if _text_pair(pair)))


def biases_with_ids(value: Any, ids: Mapping[str, Sequence[int]]) -> list[list[Any]]:
    """``logit_bias`` (either form) as ``[token, bias]`` pairs, each entry whose token is text as one pair per id of
    that text's tokens (``ids``: each text's, from :func:`bias_texts`); other entries as they are (blocking)."""
    out: list[list[Any]] = []
    for pair in _bias_pairs(value):
        if _text_pair(pair):
            out += [[token, pair[1]] for token in ids[pair[0]]]
        else:
            out.append(list(pair) if isinstance(pair, tuple) else pair)
    return out

#: Why a ``logit_bias`` token given as text is refused where nothing tokenized it first.
NO_TEXT_TOKENS = "this model's engine cannot tokenize text"


def logit_bias_ids(value: Any, text_refused: str = NO_TEXT_TOKENS) -> dict[int, float] | None:
    """llama-server's two forms (``{"15043": 1.0}``, ``[[15043, 1.0]]``; ``false`` bans the token) as token ids to
    biases; a token given as text is refused here, ``text_refused`` saying why (``/completion`` tokenizes such text
    first where the model's engine can tokenize: ``routes.llamacpp._text_biases``)."""
    if value is None:
        return None
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    out: dict[int, float] = {}
    for i, pair in enumerate(pairs):
        if not isinstance(value, Mapping) and (not isinstance(pair, list) or len(pair) != 2):
            raise ValueError(f"logit_bias[{i}]: expected a [token id, bias] pair, got {pair!r}")
        token, bias = pair
        if isinstance(token, str) and not bias_text(token):
            token = int(token)  # (an id written as text, an object's key: "15043", "-1" as llama-server's strtol)
        elif type(token) is float and token.is_integer():
            token = int(token)  # (a whole float, 15043.0: that id, as llama-server's JSON reading takes it)
        if isinstance(token, str):
            raise ValueError(f"logit_bias: token {token!r} is no token id, and {text_refused}; give its id "
                             "(POST /tokenize)")
        if not isinstance(token, int) or isinstance(token, bool):
            # (a list, a fraction, true: neither an id nor text, so no tokenizer would have helped)
            raise ValueError(f"logit_bias: token {json.dumps(token)} is neither a token id (a whole number) nor "
                             "text to tokenize (a string)")
        if bias is False:
            bias = -100.0  # (the lowest bias jan takes: the token is never sampled)
        elif not finite_number(bias):
            raise ValueError(f"logit_bias: the bias of token {token} must be a number or false, got {bias!r}")
        out[token] = float(bias)
    return out or None


#: llama.cpp's trigger types (common_grammar_trigger_type), by number and by name.
TRIGGER_TYPES = ("token", "word", "pattern", "pattern_full")


def lazy_triggers(triggers: list[Any] | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """llama-server's ``grammar_triggers`` as jan's: the regular expressions (ECMAScript, as the engine's std::regex
    reads them) whose match starts the grammar's text, and the token ids whose text does (``token``). A ``word`` is
    searched as it is written, a ``pattern`` searched, a ``pattern_full`` matched against the whole text so far
    (anchored ``^...$``, as llama.cpp anchors it); in a pattern the first capture group that matched starts the
    grammar's text, else the whole match does. ValueErrors name the trigger at fault."""
    from jan._engine import trigger_scan

    patterns: list[str] = []
    tokens: list[int] = []
    for i, t in enumerate(triggers or ()):
        where = f"grammar_triggers[{i}]"
        if not isinstance(t, dict):
            raise ValueError(f'{where}: a trigger is an object {{"type": 0-3 (token, word, pattern, pattern_full), '
                             f'"value": "..."}}, got {type(t).__name__}')
        kind, value = t.get("type"), t.get("value")
        if type(kind) is int and 0 <= kind < len(TRIGGER_TYPES):
            kind = TRIGGER_TYPES[kind]
        elif not (isinstance(kind, str) and kind in TRIGGER_TYPES):
            raise ValueError(f"{where}.type: unknown trigger type {kind!r}: 0 (token), 1 (word), 2 (pattern) or "
                             "3 (pattern_full), by number or by name")
        if not isinstance(value, str):
            raise ValueError(f"{where}.value: must be a string, got {type(value).__name__}")
        if kind == "token":
            token = t.get("token")
            if type(token) is not int or token < 0:
                raise ValueError(f"{where}.token: a token trigger names its token id (a whole number from 0), got "
                                 f"{token!r}")
            tokens.append(token)
            continue
        if kind == "word":
            pattern = re.escape(value)  # (what Python escapes, std::regex's ECMAScript reads as the character)
        elif kind == "pattern_full":
            pattern = ("" if value.startswith("^") else "^") + value + ("" if value.endswith("$") else "$")
        else:
            pattern = value
        if not pattern:
            raise ValueError(f"{where}.value: an empty word or pattern would trigger at once; leave the grammar "
                             "unlazy instead")
        try:
            trigger_scan([pattern], [])  # (compiled as the engine compiles it: its own syntax errors)
        except ValueError as exc:
            raise ValueError(f"{where}.value: {str(exc).split(': ', 1)[-1]}") from None
        patterns.append(pattern)
    return tuple(patterns), tuple(tokens)


def client_grammar(grammar: str | None, json_schema: dict[str, Any] | None, lazy: bool, triggers: Any
                   ) -> tuple[str | None, tuple[str, ...], tuple[int, ...]]:
    """The constraint a body's llama-server grammar fields ask for, the one precedence every route that takes them
    reads them by (``/completion``, ``/infill``, ``/v1/completions``, ``/v1/chat/completions``): ``grammar``
    (GBNF), else ``json_schema``'s grammar; and, with ``lazy`` (``grammar_lazy``), the ``triggers``
    (``grammar_triggers``) that start it (:func:`lazy_triggers`: patterns, token ids). Triggers are read, and their
    faults said, also when the grammar is not lazy: it then holds the whole output, as llama-server reads them.
    ValueErrors name the field at fault (a body's own check refuses a grammar with a json_schema, and a lazy
    grammar without a grammar or triggers: :func:`lazy_refusal`)."""
    grammar = grammar or None
    if json_schema is not None:
        from jan.templates import json_schema_to_grammar

        grammar = json_schema_to_grammar(json_schema or {"type": "object"}, param="json_schema")
    patterns, tokens = lazy_triggers(triggers)
    if not lazy:
        patterns, tokens = (), ()
    return grammar, patterns, tokens
