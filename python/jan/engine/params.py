"""Sampling options: one keyword API shared by generate/stream and the server."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from jan import _engine

# Defaults match llama.cpp's server, so results are comparable.
DEFAULTS = {
    "max_tokens": None,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repeat_last_n": 64,
    "seed": None,
    "logit_bias": None,
    "grammar": None,
    "ignore_eos": False,
    "stop": None,
    "logprobs": False,
    "top_logprobs": 0,
    # Lazy grammar: regexes that switch the grammar on (see SamplingParams in cpp/sampling.h).
    "grammar_triggers": None,
    # Thinking budget (cpp/reasoning_budget.h): -1/None = no cap; the markers come from the chat format.
    "reasoning_budget": None,
    "reasoning_start": "",
    "reasoning_end": "",
    "reasoning_close": "",
    "reasoning_open": False,
    # Keep the text of control tokens in the output (formats whose markers are control tokens).
    "render_special": False,
    # Speculative decoding (draft-free n-gram / prompt lookup; llama-server's names): off unless
    # ``speculative`` is "ngram" (or True); then up to ``draft_max`` tokens are drafted per step
    # from the earlier occurrence of the last ``ngram`` tokens, none when fewer than ``draft_min``.
    "speculative": None,
    "draft_max": 16,
    "draft_min": 0,
    "ngram": 3,
}

#: ``speculative`` values: None/False/"none" = off, True/"ngram" = n-gram drafting.
SPECULATIVE = ("none", "ngram")
#: The options :class:`jan.Model` takes as per-model defaults for every request.
SPECULATIVE_OPTIONS = ("speculative", "draft_max", "draft_min", "ngram")

_UINT32 = 0xFFFFFFFF


def sampling_params(**options) -> _engine.SamplingParams:
    """Build the native parameter struct; unknown names and bad values raise ValueError/TypeError."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
    o = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    p = _engine.SamplingParams()
    p.max_tokens = -1 if o["max_tokens"] is None else _int("max_tokens", o["max_tokens"], minimum=0)
    p.temperature = _float("temperature", o["temperature"])
    p.top_k = _int("top_k", o["top_k"])
    p.top_p = _float("top_p", o["top_p"])
    p.min_p = _float("min_p", o["min_p"])
    p.typical_p = _float("typical_p", o["typical_p"])
    p.repeat_penalty = _float("repeat_penalty", o["repeat_penalty"])
    p.presence_penalty = _float("presence_penalty", o["presence_penalty"])
    p.frequency_penalty = _float("frequency_penalty", o["frequency_penalty"])
    p.repeat_last_n = _int("repeat_last_n", o["repeat_last_n"], minimum=-1)
    # A request without a seed still gets a definite one, so the same request
    # can be replayed exactly from the seed it reports.
    seed = o["seed"]
    p.seed = random.randrange(0, _UINT32) if seed is None else _int("seed", seed) & _UINT32
    p.logit_bias = _logit_bias(o["logit_bias"])
    p.grammar = o["grammar"] or ""
    p.grammar_triggers = _strings("grammar_triggers", o["grammar_triggers"])
    p.reasoning_budget = -1 if o["reasoning_budget"] is None else _int("reasoning_budget", o["reasoning_budget"], minimum=0)
    p.reasoning_start = _string("reasoning_start", o["reasoning_start"])
    p.reasoning_end = _string("reasoning_end", o["reasoning_end"])
    p.reasoning_close = _string("reasoning_close", o["reasoning_close"])
    p.reasoning_open = bool(o["reasoning_open"])
    p.render_special = bool(o["render_special"])
    p.ignore_eos = bool(o["ignore_eos"])
    p.stop = _stops(o["stop"])
    p.logprobs = bool(o["logprobs"]) or bool(o["top_logprobs"])
    p.n_probs = _int("top_logprobs", o["top_logprobs"], minimum=0)
    draft_max = _int("draft_max", o["draft_max"], minimum=0)
    p.draft_max = draft_max if _speculative(o["speculative"]) == "ngram" else 0
    p.draft_min = _int("draft_min", o["draft_min"], minimum=0)
    p.ngram = _int("ngram", o["ngram"], minimum=1)
    return p


def _speculative(value) -> str:
    if value is None or value is False:
        return "none"
    if value is True:
        return "ngram"
    if isinstance(value, str) and value.lower() in SPECULATIVE:
        return value.lower()
    raise ValueError(f"speculative: expected one of {', '.join(SPECULATIVE)} (or a bool), got {value!r}")


def _int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _string(name: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def _strings(name: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{name}: expected a list of strings")
    return list(value)


def _stops(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, Iterable) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop: expected a string or a list of strings")
    stops = list(stop)
    if any(s == "" for s in stops):
        raise ValueError("stop: stop strings must not be empty")
    return stops


def _logit_bias(bias) -> list[tuple[int, float]]:
    if not bias:
        return []
    if isinstance(bias, Mapping):
        items: Sequence = list(bias.items())
    else:
        items = list(bias)
    out = []
    for key, value in items:
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias: keys must be token ids, got {key!r}") from None
        out.append((token, _float("logit_bias", value)))
    return out
