"""The token counts of one generation, computed once, for every front end to rename into its dialect.

Every answer that reports usage (OpenAI chat and text completions, Assistants runs and their steps and messages,
the Responses API, Anthropic Messages, batch outputs, the CLI's ``--json`` and verbose stats) reads these numbers
from :func:`token_counts`, so the same generation reports the same counts wherever it is asked about: each dialect
only picks its field names (and Anthropic's one difference of meaning: its ``input_tokens`` leave the cached prefix
out, as :attr:`TokenCounts.uncached_prompt_tokens`).

The engine's :class:`jan.engine.results.Usage` carries the prompt's and the answer's counts, the prefix the KV cache
held and the speculative drafts; the reasoning tokens are counted beside it by the chat service
(:attr:`jan.services.types.ChatDelta.reasoning_tokens`, one count per request, also when the answer ends in a tool
call or is cut by its token limit) and joined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jan.engine.results import Usage

__all__ = ["TokenCounts", "token_counts"]


@dataclass(frozen=True)
class TokenCounts:
    """One generation's token counts (all in tokens, each >= 0).

    ``prompt_tokens``: the whole prompt, cached or not; ``cached_tokens``: of those, the prefix the KV cache held
    (reused, not evaluated again; at most ``prompt_tokens``). ``completion_tokens``: every generated token, thinking
    included; ``reasoning_tokens``: of those, the thinking's (at most ``completion_tokens``).
    ``draft_tokens``/``draft_accepted``: speculative decoding's drafted tokens and how many of them the model kept
    (0 without a draft model)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    draft_tokens: int = 0
    draft_accepted: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt and completion together (OpenAI's ``total_tokens``)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """The prompt tokens evaluated for this generation: the prompt less its cached prefix (Anthropic's
        ``input_tokens``, Ollama's work)."""
        return self.prompt_tokens - self.cached_tokens

    def openai_chat(self, *, reasoning: bool = True) -> dict[str, Any]:
        """OpenAI's chat/completions ``usage`` (also the Assistants run's, run step's and message's): the counts,
        ``prompt_tokens_details.cached_tokens`` and, for a chat (``reasoning``), ``completion_tokens_details
        .reasoning_tokens`` (always told, as OpenAI's chat completions do); speculative drafts as OpenAI's predicted
        outputs (``accepted_prediction_tokens``/``rejected_prediction_tokens``) where there were any. A text
        completion (``reasoning=False``) parses no thinking, so tells no reasoning count."""
        out: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                               "total_tokens": self.total_tokens,
                               "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
        details: dict[str, int] = {}
        if reasoning:
            details["reasoning_tokens"] = self.reasoning_tokens
        if self.draft_tokens:
            details.update(accepted_prediction_tokens=self.draft_accepted,
                           rejected_prediction_tokens=self.draft_tokens - self.draft_accepted)
        if details:
            out["completion_tokens_details"] = details
        return out


def _count(value: Any) -> int:
    return max(int(value or 0), 0)


def token_counts(usage: Usage | None, reasoning_tokens: int = 0) -> TokenCounts:
    """The counts of a generation from the engine's ``usage`` (None: nothing known, all zero) and the chat service's
    ``reasoning_tokens`` (:attr:`jan.services.types.ChatDelta.reasoning_tokens`; 0 for a text completion).

    A cached count above the prompt's (an engine that counts its cache otherwise) is told as the whole prompt, and
    a reasoning count above the completion's as the whole completion, so that no dialect reports a part larger
    than its whole (Anthropic's ``input_tokens`` would go negative)."""
    if usage is None:
        return TokenCounts()
    prompt, completion = _count(usage.prompt_tokens), _count(usage.completion_tokens)
    draft = _count(getattr(usage, "draft_tokens", 0))
    return TokenCounts(prompt_tokens=prompt, completion_tokens=completion,
                       cached_tokens=min(_count(usage.cached_tokens), prompt),
                       reasoning_tokens=min(_count(reasoning_tokens), completion),
                       draft_tokens=draft, draft_accepted=min(_count(getattr(usage, "draft_accepted", 0)), draft))
