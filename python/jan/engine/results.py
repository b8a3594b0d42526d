"""What generation returns: streamed chunks and the aggregated completion."""

from __future__ import annotations

import copyreg
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from jan import _engine


def told_logprob(value: float | None) -> float | None:
    """A log-probability as results tell it: None where it is no finite number. Logits that overflowed (a LoRA
    adapter at a huge scale, damaged weights) score every token NaN, and no JSON holds NaN or -inf: a response
    with one was refused after the work was done. None is what llama-server writes for them (``null``)."""
    return value if value is not None and math.isfinite(value) else None


def plain(value: Any) -> Any:
    """A result as plain data, JSON-ready where its values are: a dataclass as a dict of its fields, a :data:`Usage`
    as :meth:`Usage.to_dict`, lists and tuples as lists, dicts' values likewise, all the way down. The one conversion
    of results to plain data: ``dataclasses.asdict`` keeps the native Usage, which ``json.dumps`` refuses ("Object of
    type Usage is not JSON serializable")."""
    if isinstance(value, Usage):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class _PlainData:
    """``to_dict()`` for the result dataclasses: :func:`plain` of the result (``json.dumps(result.to_dict())``)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict of its fields, ``usage`` and ``progress`` as dicts too: JSON-ready."""
        return plain(self)


@dataclass(frozen=True)
class TopLogprob(_PlainData):
    token_id: int
    token: str
    bytes: list[int]
    logprob: float | None  # None: no finite number (told_logprob)


@dataclass(frozen=True)
class TokenLogprob(_PlainData):
    """One generated token with its log-probability and the best alternatives."""

    token_id: int
    token: str
    bytes: list[int]
    logprob: float | None  # None: a prompt's first token, which nothing before it scores, or no finite number
    top: list[TopLogprob] = field(default_factory=list)


#: Token counts and timings of one request: the native, read-only ``jan._engine.Usage``
#: (``prompt_tokens``, ``completion_tokens``, ``cached_tokens``, ``queue_ms``, ``prompt_ms``,
#: ``generation_ms``, ``draft_tokens``, ``draft_accepted``, ``total_tokens``, ``tokens_per_second``). The one Usage
#: type in Python.
Usage = _engine.Usage

#: Every field a Usage is made of (the others are computed from them): what a copy must carry. The speculative
#: counts were left out, so a pickled or deep-copied result said no draft was ever accepted.
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "queue_ms", "prompt_ms", "generation_ms",
                 "draft_tokens", "draft_accepted")


def _usage(*values) -> Usage:
    return Usage(**dict(zip(_USAGE_FIELDS, values)))


# A Completion, a Chunk or a service's result is a value: pickled (multiprocessing, a cache on disk) or deep-copied
# (dataclasses.asdict) like any other. The native type has no pickling of its own ("cannot pickle
# 'jan._engine.Usage' object" failed the whole result); it is rebuilt from its fields.
copyreg.pickle(Usage, lambda usage: (_usage, tuple(getattr(usage, name) for name in _USAGE_FIELDS)))



@dataclass(frozen=True)
class Chunk(_PlainData):
    """A piece of a streamed generation.

    ``text`` is always whole UTF-8 characters and never contains any part of a
    matched stop string. ``finish_reason`` and ``usage`` are set on the last
    chunk only (``stop``, ``length``, ``cancelled`` or ``error``).
    """

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    #: With ``prompt_logprobs``: the prompt tokens evaluated since the previous chunk, each scored given the
    #: ones before it (the first prompt token's ``logprob`` is None). All come before the first generated token.
    prompt_logprobs: list[TokenLogprob] | None = None
    #: On the chunk with the first generated token: prompt tokens reused from the KV cache (the final
    #: ``usage.cached_tokens``, known at the start).
    cached_tokens: int | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None
    stop: str | None = None
    #: The engine slot the request runs in (``id_slot`` to pin a request there, ``Model.slot_action``); -1 while it
    #: has none (a request cancelled while queued).
    id_slot: int = -1
    #: The request's counts and timings so far, the engine's own (llama-server's ``timings_per_token``), on a chunk
    #: with generated tokens (the last chunk's are its ``usage``); None elsewhere, and from an engine that does not
    #: tell them.
    progress: Usage | None = None


@dataclass(frozen=True)
class Completion(_PlainData):
    text: str
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    logprobs: list[TokenLogprob] | None = None
    stop: str | None = None
    seed: int | None = None
    #: With ``prompt_logprobs``: every prompt token, scored given the ones before it (the first's logprob is None).
    prompt_logprobs: list[TokenLogprob] | None = None
    #: The engine slot that served the request (as :attr:`Chunk.id_slot`).
    id_slot: int = -1
