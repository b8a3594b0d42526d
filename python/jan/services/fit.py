"""Fitting a conversation that is longer than the model's context, by dropping its oldest turns.

A request asks for it with ``ChatRequest.truncation = "auto"``: Ollama's ``truncate`` (on unless a
request says ``false``), the Responses API's ``truncation: "auto"``, an assistant run's
``truncation_strategy`` of type ``auto`` (the default). A prompt that does not fit the slot's context
(``n_ctx``) is made again from fewer messages: every system/developer message stays, and the
conversation starts at a later **user** turn, the earliest one whose prompt fits. Starting at a user
turn keeps each tool call with its result and the user/assistant alternation that many chat
templates insist on (Mistral's and Gemma's raise an error otherwise). As Ollama's ``chatPrompt``
(``server/prompt.go``), the last turn always stays: a conversation that does not fit even from its
last user turn is refused (``ContextOverflowError``), never cut inside a message.

The fit only makes the prompt fit; room for the reply is what the context has left (generation
ends with ``finish_reason: "length"`` when it runs out), as Ollama and the Responses API do.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from jan.core import LocalModel
from jan.errors import ContextOverflowError
from jan.services.local import has_media, render_chat
from jan.services.types import AudioPart, ChatMessage, ChatRequest, ImagePart
from jan.templates.formats import ChatPlan

log = logging.getLogger("jan.services")

#: Roles that stay however much of the conversation is dropped.
KEPT_ROLES = ("system", "developer")


def prompt_size(tokens: Any) -> int:
    """Tokens in a prompt: a token list, or a ``MediaPrompt`` (its image/audio tokens included)."""
    return tokens.n_tokens if hasattr(tokens, "n_tokens") else len(tokens)


def fits(local: LocalModel, tokens: Any) -> bool:
    """Whether the engine takes this prompt: one position must stay free to generate (the scheduler's rule)."""
    return prompt_size(tokens) < local.model.n_ctx


def fit_history(local: LocalModel, request: ChatRequest, plan: ChatPlan, tokens: Any) -> ChatRequest:
    """Blocking (renders and tokenizes a few times): ``request`` with its oldest turns dropped so that its
    prompt fits ``local``'s context. ``tokens``: the whole conversation's prompt, already found too long
    (its media chunks tell each image's size). Raises ``ContextOverflowError`` when even the last user turn
    (with the system messages) does not fit, or the conversation has no later turn to start from."""
    messages = request.messages
    n_ctx = local.model.n_ctx
    starts = _starts(messages)
    media = _media_tokens(messages, tokens)
    marker = local.model.media_marker if has_media(request) else None

    def size(start: int) -> int:
        kept = _kept(messages, start)
        text = render_chat(local, replace(request, messages=tuple(m for _, m in kept)), plan, marker)
        # +1: a BOS the model may add; each media marker's own text tokens overcount a little (on the safe side)
        n = len(local.model.tokenize(text, add_special=False, parse_special=True)) + 1
        return n + sum(media[i] for i, _ in kept)

    whole = prompt_size(tokens)
    if not starts or size(starts[-1]) >= n_ctx:
        raise ContextOverflowError(
            f"the conversation has {whole} tokens but the context holds {n_ctx}, and it does not fit even from its "
            "last user turn on (with its system messages); shorten that turn or use a larger context (ctx_len)",
            whole, n_ctx)
    # The prompt shrinks as the start moves later (fewer turns): binary search for the earliest start that fits.
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if size(starts[mid]) < n_ctx:
            hi = mid
        else:
            lo = mid + 1
    start = starts[lo]
    kept = _kept(messages, start)
    log.info("conversation of %d tokens over the context (%d): %d of %d messages dropped to fit",
             whole, n_ctx, len(messages) - len(kept), len(messages))
    return replace(request, messages=tuple(m for _, m in kept))


def _starts(messages: tuple[ChatMessage, ...]) -> list[int]:
    """Where a shortened conversation may begin: each user turn that has a non-system turn before it."""
    starts = []
    seen_turn = False
    for i, m in enumerate(messages):
        if m.role == "user" and seen_turn:
            starts.append(i)
        if m.role not in KEPT_ROLES:
            seen_turn = True
    return starts


def _kept(messages: tuple[ChatMessage, ...], start: int) -> list[tuple[int, ChatMessage]]:
    """The system/developer messages before ``start``, then everything from ``start`` on, with their indices."""
    return [(i, m) for i, m in enumerate(messages) if i >= start or m.role in KEPT_ROLES]


def _media_tokens(messages: tuple[ChatMessage, ...], tokens: Any) -> list[int]:
    """Per message, the tokens its images/audio take in ``tokens`` (a ``MediaPrompt``'s chunks, in order);
    all zero for a text-only prompt."""
    chunks = [span[1] for span in getattr(tokens, "media", ())]
    out = []
    at = 0
    for m in messages:
        k = sum(isinstance(p, (ImagePart, AudioPart)) for p in m.content)
        out.append(sum(chunks[at:at + k]))
        at += k
    return out
