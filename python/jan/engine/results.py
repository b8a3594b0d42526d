"""What generation returns: streamed chunks and the aggregated completion."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopLogprob:
    token_id: int
    token: str
    bytes: list[int]
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the best alternatives."""

    token_id: int
    token: str
    bytes: list[int]
    logprob: float
    top: list[TopLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    queue_ms: float = 0.0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_per_second(self) -> float:
        """Generation speed after the first token (the first one's cost is prompt processing)."""
        if self.completion_tokens <= 1 or self.generation_ms <= 0:
            return 0.0
        return (self.completion_tokens - 1) / (self.generation_ms / 1000.0)


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed generation.

    ``text`` is always whole UTF-8 characters and never contains any part of a
    matched stop string. ``finish_reason`` and ``usage`` are set on the last
    chunk only (``stop``, ``length``, ``cancelled`` or ``error``).
    """

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None
    stop: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    logprobs: list[TokenLogprob] | None = None
    stop: str | None = None
    seed: int | None = None
