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

An agent's long tool loop after its last user turn is shortened too: that turn stays, followed by its most
recent tool rounds (an assistant turn with tool calls and their results), the oldest rounds dropped.

A request with ``max_tokens`` that is shortened anyway keeps that much room for the reply (at most half the
context): the answer asked for is not cut off by the history. Without ``max_tokens``, the reply has what the
context has left (generation ends with ``finish_reason: "length"`` when it runs out), as Ollama does.

A token budget (``ChatRequest.max_prompt_tokens``: what an assistant run's ``max_prompt_tokens`` leaves for its
next model turn) is a second limit on the prompt, under the context: the conversation is shortened the same way
until its prompt holds at most that many tokens. One that does not fit it even from its last turn is refused with
:class:`PromptBudgetError` (the run ends ``incomplete``), unless it does not fit the context either: that stays a
``ContextOverflowError``, as without a budget (no budget would let that prompt run).

A prompt that continues an earlier exchange's token ids (``ChatRequest.context``: Ollama's ``context`` on
``/api/generate``) loses the oldest of those ids first, as Ollama's runner truncates an input prompt
(:func:`fit_context`): a BOS that starts them stays, and the ``num_keep`` tokens after it
(``ChatRequest.context_keep``), the new turn stays whole, and the reply keeps its room.
A new turn that does not fit even after the whole context is refused as any over-long last turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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

#: Tokens at the start of a context that a cut keeps after its BOS when neither the request nor the model says
#: (``ChatRequest.context_keep``): Ollama's default ``num_keep`` (``api.DefaultOptions``).
DEFAULT_KEEP = 4


class PromptBudgetError(ContextOverflowError):
    """Even the shortest prompt a request allows holds more than its token budget (``max_prompt_tokens``) though
    it fits the context. ``n_tokens``: that prompt's size; ``budget``: the budget. A ``ContextOverflowError`` (an
    HTTP front end answers 400 ``context_length_exceeded``) for callers that do not tell the two apart; a run
    ends ``incomplete`` on it, with ``incomplete_details.reason`` ``"max_prompt_tokens"``."""

    def __init__(self, message: str, n_tokens: int, budget: int):
        super().__init__(message, n_tokens, None)
        self.budget = budget


def prompt_size(tokens: Any) -> int:
    """Tokens in a prompt: a token list, or a ``MediaPrompt`` (its image/audio tokens included)."""
    return tokens.n_tokens if hasattr(tokens, "n_tokens") else len(tokens)


def reply_room(local: LocalModel, request: ChatRequest) -> int:
    """Positions a truncated conversation leaves for the reply: its ``max_tokens``, at most half the context
    (dropping turns anyway, it drops enough for the answer asked for); 0 without ``max_tokens``."""
    max_tokens = request.sampling.max_tokens
    return min(max_tokens, local.model.n_ctx // 2) if max_tokens else 0


def fits(local: LocalModel, tokens: Any, room: int = 0, budget: int | None = None) -> bool:
    """Whether the engine takes this prompt with ``room`` positions after it (at least one stays free to
    generate: the scheduler's rule), and it holds at most ``budget`` tokens (None: no budget)."""
    size = prompt_size(tokens)
    return size + max(room, 1) <= local.model.n_ctx and (budget is None or size <= budget)


def kept_start(local: LocalModel, request: ChatRequest) -> int:
    """How many tokens at the start of ``request.context`` a cut keeps, as Ollama's runner counts its ``num_keep``
    (``llm/llama_server.go``): a BOS that starts the context is not counted and always stays; then
    ``context_keep`` tokens (-1: all of them; None: :data:`DEFAULT_KEEP`), at most the whole context and at most
    one position short of the model's context (Ollama's clamp: at least one token can go)."""
    context = request.context
    bos = local.model.info.special_tokens.get("bos")
    head = 1 if bos is not None and context[:1] == (bos,) else 0
    keep = DEFAULT_KEEP if request.context_keep is None else request.context_keep
    kept = len(context) if keep < 0 else head + keep
    return max(head, min(kept, len(context), local.model.n_ctx - 1))


def context_room(local: LocalModel, request: ChatRequest) -> int:
    """Positions a prompt shortened by dropping ``context`` tokens leaves for the reply: :func:`reply_room` with
    ``max_tokens``; without it half of what the kept start leaves, as Ollama's runner frees when it truncates an
    input prompt (``contextShiftPromptLimit``: ``n_ctx - max((n_ctx - num_keep) / 2, 1)`` positions for the
    prompt). Cut at any token, a context filled to the last position would otherwise leave the reply one token,
    and every later turn of a conversation carried that way would end at once."""
    n_ctx = local.model.n_ctx
    return reply_room(local, request) or max((n_ctx - kept_start(local, request)) // 2, 1)


def fit_context(local: LocalModel, request: ChatRequest, tokens: Any, room: int = 0,
                budget: int | None = None) -> ChatRequest:
    """``request`` with the oldest tokens of its ``context`` dropped so that its prompt (``tokens``: the whole
    one, the context first, already found too long) fits ``local``'s context with ``room`` positions left for the
    reply (or, where the new turn leaves less, one), and holds at most ``budget`` tokens (None: no budget).

    As Ollama's runner (``llm/llama_server.go``: it keeps the first ``num_keep`` tokens after the BOS and drops
    the ones after them) the cut is inside the context, token by token: its start stays (:func:`kept_start`: the
    BOS and the ``context_keep`` tokens after it), then its newest tokens, then the new turn whole (the rendered
    prompt after the context is never cut, where Ollama cuts the whole prompt; so a ``num_keep`` of -1 drops the
    context's newest tokens, where Ollama's would drop the new turn's). Where the new turn leaves the reply its
    room but no room for the whole kept start, the start is cut short rather than the reply's room.

    Arithmetic only (the prompt is rebuilt by the caller). Where the new turn does not fit even without any of
    the context, the context is left at its BOS: the caller's prompt is then the new turn's alone, which the
    usual checks refuse (``ContextOverflowError``) or, for a conversation with earlier turns, shorten."""
    context = request.context
    n_ctx = local.model.n_ctx
    bos = local.model.info.special_tokens.get("bos")
    head = 1 if bos is not None and context[:1] == (bos,) else 0
    kept = kept_start(local, request)
    # everything in the prompt but the context: the rendered new turn (and a BOS the model adds before it); one
    # more where the context has no BOS to keep, for the one the new turn's template may write once no context
    # is left before it (the safe side)
    rest = prompt_size(tokens) - len(context) + (1 if bos is not None and not head else 0)
    for want in dict.fromkeys((max(room, 1), 1)):  # the reply's room if the new turn leaves it, else one position
        limit = n_ctx - want if budget is None else min(n_ctx - want, budget)
        fit = limit - rest  # the context tokens that fit before the new turn
        if fit >= len(context):
            return request
        if fit >= head:
            start = min(kept, fit)
            newest = fit - start
            log.info("prompt of %d tokens, context %d: %d of its %d context tokens dropped to fit (the first %d "
                     "kept)", prompt_size(tokens), n_ctx, len(context) - fit, len(context), start)
            return replace(request, context=context[:start] + context[len(context) - newest:len(context)])
    return replace(request, context=context[:head])


def fit_history(local: LocalModel, request: ChatRequest, plan: ChatPlan, tokens: Any, room: int = 0,
                budget: int | None = None) -> ChatRequest:
    """Blocking (renders and tokenizes a few times): ``request`` with its oldest turns dropped so that its
    prompt fits ``local``'s context with ``room`` positions left for the reply (or, where no shortening
    leaves that much, the longest shortening that fits at all), and holds at most ``budget`` tokens (None: no
    budget). ``tokens``: the whole conversation's prompt, already found too long (its media chunks tell each
    image's size). The conversation is unchanged when it fits (context and budget) without the room and no
    shortening makes any. When even the shortest one (the system messages, the last user turn and its last tool
    round) does not fit: ``ContextOverflowError`` if it is over the context, else :class:`PromptBudgetError`."""
    messages = request.messages
    n_ctx = local.model.n_ctx
    candidates = _candidates(messages)
    media = _media_tokens(messages, tokens)
    marker = local.model.media_marker if has_media(request) else None
    sizes: dict[int, int] = {}

    def size(k: int) -> int:
        if k not in sizes:
            kept = [messages[i] for i in candidates[k]]
            text = render_chat(local, replace(request, messages=tuple(kept)), plan, marker)
            # +1: a BOS the model may add; each media marker's own text tokens overcount a little (the safe side)
            sizes[k] = (len(local.model.tokenize(text, add_special=False, parse_special=True)) + 1
                        + sum(media[i] for i in candidates[k]))
        return sizes[k]

    def ok(k: int, want: int) -> bool:
        return size(k) + want <= n_ctx and (budget is None or size(k) <= budget)

    whole = prompt_size(tokens)
    for want in dict.fromkeys((max(room, 1), 1)):  # the reply's room if any shortening leaves it, else one position
        if not candidates or not ok(len(candidates) - 1, want):
            continue
        # The prompt shrinks along the candidates (fewer turns): binary search for the first that fits.
        lo, hi = 0, len(candidates) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid, want):
                hi = mid
            else:
                lo = mid + 1
        kept = candidates[lo]
        log.info("conversation of %d tokens, context %d%s: %d of %d messages dropped to fit",
                 whole, n_ctx, f", budget {budget}" if budget is not None else "", len(messages) - len(kept),
                 len(messages))
        return replace(request, messages=tuple(messages[i] for i in kept))
    if fits(local, tokens, budget=budget):
        return request  # it fits as it is; no shortening leaves the reply more room
    # The shortest prompt allowed: over the context, no budget would let it run (the request's own error, as
    # without one); within the context, it is the budget that refuses it.
    shortest = size(len(candidates) - 1) if candidates else whole
    if budget is not None and shortest + 1 <= n_ctx:
        if not candidates:
            raise PromptBudgetError(
                f"the prompt has {whole} tokens but only {budget} are left of max_prompt_tokens, and there is no "
                "earlier turn to drop", whole, budget)
        raise PromptBudgetError(
            f"the conversation has {whole} tokens but only {budget} are left of max_prompt_tokens, and it does not "
            f"fit even from its last user turn (and that turn's last tool round) with its system messages "
            f"({shortest} tokens)", shortest, budget)
    if not candidates:
        raise ContextOverflowError(
            f"the prompt has {whole} tokens but the context holds {n_ctx}, and there is no earlier turn to drop; "
            "shorten it or use a larger context (ctx_len)", whole, n_ctx)
    raise ContextOverflowError(
        f"the conversation has {whole} tokens but the context holds {n_ctx}, and it does not fit even from its last "
        "user turn (and that turn's last tool round) with its system messages; shorten that turn or use a larger "
        "context (ctx_len)", whole, n_ctx)


def _candidates(messages: tuple[ChatMessage, ...]) -> _Candidates:
    """The shortened conversations to choose from, as message indices, longest first (each keeps every
    system/developer message): starting at each later user turn; then the last user turn followed by its
    later tool rounds only (an agent's long tool loop), each round an assistant turn with tool calls and
    what follows it. Never the whole conversation."""
    n = len(messages)
    specs: list[tuple[int, tuple[int, ...]]] = [(s, ()) for s in _starts(messages)]
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if users:
        last = users[-1]
        rounds = [i for i in range(last + 1, n) if messages[i].role == "assistant" and messages[i].tool_calls]
        # dropping the rounds before each later one (the first round's start would drop nothing)
        specs += [(r, (last,)) for r in rounds[1:]]
    return _Candidates(n, [i for i, m in enumerate(messages) if m.role in KEPT_ROLES], specs)


class _Candidates(Sequence[list[int]]):
    """:func:`_candidates`' list, each candidate's indices made when it is read: a conversation of n turns has
    up to n candidates of up to n indices, and the binary search reads O(log n) of them, so making them all
    (O(n²): 16 s and gigabytes for 20,000 turns) is what would take the time, not the fitting."""

    def __init__(self, n: int, kept_roles: list[int], specs: list[tuple[int, tuple[int, ...]]]):
        self._n, self._kept, self._specs = n, kept_roles, specs
        #: candidates made so far (a test counts them: reading O(log n) of them is the point)
        self.made = 0

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        start, head = self._specs[k]
        self.made += 1
        return sorted({*(i for i in self._kept if i < start), *head, *range(start, self._n)})

    def __eq__(self, other: object) -> bool:
        return list(self) == other if isinstance(other, list) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


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
