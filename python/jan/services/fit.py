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

Before any turn is dropped, tool outputs are shortened (:class:`_ToolCuts`): a tool can answer with tens of
thousands of characters (an MCP tool, a built-in one, a client's output), and dropping the conversation for it
would leave the model with neither the question nor the answer. The largest outputs of the earlier rounds are cut
first (down to :data:`MIN_TOOL_OUTPUT` characters), then those of the latest round, each keeping its head and a
marker saying how much was cut (:func:`cut_marker`); only then are turns dropped (outputs kept at that floor, and
as long as the kept turns allow), and as a last resort the kept outputs are cut below it. Only the prompt is
shortened: what a thread or a client stored stays whole.

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
from jan.errors import CTX_LEN, LARGER_CONTEXT, Advice, ContextOverflowError
from jan.services.local import has_media, render_prompt
from jan.services.types import AudioPart, ChatMessage, ChatRequest, ImagePart, TextPart
from jan.services.untrusted import prompt_tokens
from jan.templates.formats import ChatPlan

log = logging.getLogger("jan.services")

#: Roles that stay however much of the conversation is dropped.
KEPT_ROLES = ("system", "developer")

#: Characters a tool output keeps (its head) while fitting a prompt can still drop turns instead: below it the
#: output says little, and the turns around it say more.
MIN_TOOL_OUTPUT = 256

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
    """Blocking (renders and tokenizes a few times): ``request`` with its tool outputs shortened and, where that is
    not enough, its oldest turns dropped, so that its prompt fits ``local``'s context with ``room`` positions left
    for the reply (or, where no shortening leaves that much, the longest shortening that fits at all), and holds at
    most ``budget`` tokens (None: no budget). ``tokens``: the whole conversation's prompt, already found too long
    (its media chunks tell each image's size). The conversation is unchanged when it fits (context and budget)
    without the room and no shortening makes any. When even the shortest one (the system messages, the last user
    turn and its last tool round, its tool outputs cut to their markers) does not fit: ``ContextOverflowError`` if
    it is over the context, else :class:`PromptBudgetError`."""
    messages = request.messages
    n_ctx = local.model.n_ctx
    candidates = _candidates(messages)
    cuts = _ToolCuts(messages)
    media = _media_tokens(messages, tokens)
    marker = local.model.media_marker if has_media(request) else None
    sizes: dict[tuple[int, int], int] = {}
    whole = -1  # the candidate index standing for the whole conversation

    def kept(k: int) -> list[int]:
        return list(range(len(messages))) if k == whole else candidates[k]

    def shortened(indices: list[int], level: int) -> tuple[ChatMessage, ...]:
        return tuple(cuts.message(i, level) for i in indices)

    def size(k: int, level: int) -> int:
        if (k, level) not in sizes:
            indices = kept(k)
            # tokenized as the prompt will be: untrusted text (documents, tool outputs) without special tokens,
            # where a control token's text is several tokens (jan.services.untrusted)
            prompt = render_prompt(local, replace(request, messages=shortened(indices, level)), plan, marker)
            # +1: a BOS the model may add; each media marker's own text tokens overcount a little (the safe side)
            sizes[k, level] = len(prompt_tokens(local.model, prompt)) + 1 + sum(media[i] for i in indices)
        return sizes[k, level]

    def ok(k: int, level: int, want: int) -> bool:
        return size(k, level) + want <= n_ctx and (budget is None or size(k, level) <= budget)

    def first(lo: int, hi: int, good: Any) -> int:
        """The first of lo..hi that is ``good`` (``hi`` is): the prompt shrinks along both the candidates (fewer
        turns) and the cut levels (shorter outputs)."""
        while lo < hi:
            mid = (lo + hi) // 2
            if good(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def done(k: int, level: int) -> ChatRequest:
        if k == whole and level == 0:
            return request  # it fits as it is with the least room asked for
        indices = kept(k)
        cut = cuts.cut_count(indices, level)
        log.info("conversation of %d tokens, context %d%s: %d of %d messages dropped%s to fit", prompt_size(tokens),
                 n_ctx, f", budget {budget}" if budget is not None else "", len(messages) - len(indices),
                 len(messages), f", {cut} tool outputs cut" if cut else "")
        return replace(request, messages=shortened(indices, level))

    last = len(candidates) - 1 if candidates else whole
    for want in dict.fromkeys((max(room, 1), 1)):  # the reply's room if any shortening leaves it, else one position
        # tool outputs first, down to their floor: no turn is dropped
        if cuts.floor > 0 and ok(whole, cuts.floor, want):
            return done(whole, first(0, cuts.floor, lambda level: ok(whole, level, want)))
        # then turns, the outputs of those kept as long as they allow
        if candidates and ok(last, cuts.floor, want):
            k = first(0, last, lambda k: ok(k, cuts.floor, want))
            return done(k, first(0, cuts.floor, lambda level: ok(k, level, want)))
        # the shortest conversation, its outputs cut below their floor (down to their markers)
        if cuts.deepest > cuts.floor and ok(last, cuts.deepest, want):
            return done(last, first(cuts.floor, cuts.deepest, lambda level: ok(last, level, want)))
    if fits(local, tokens, budget=budget):
        return request  # it fits as it is; no shortening leaves the reply more room
    # The shortest prompt allowed: over the context, no budget would let it run (the request's own error, as
    # without one); within the context, it is the budget that refuses it.
    shortest = size(last, cuts.deepest) if candidates or cuts.deepest else prompt_size(tokens)
    whole_size = prompt_size(tokens)
    if budget is not None and shortest + 1 <= n_ctx:
        if not candidates:
            raise PromptBudgetError(
                f"the prompt has {whole_size} tokens but only {budget} are left of max_prompt_tokens, and there is no "
                "earlier turn to drop", shortest, budget)
        raise PromptBudgetError(
            f"the conversation has {whole_size} tokens but only {budget} are left of max_prompt_tokens, and it does "
            f"not fit even from its last user turn (and that turn's last tool round) with its system messages "
            f"({shortest} tokens)", shortest, budget)
    # what the media of the prompt it cannot shorten take
    note = media_note(sum(media[i] for i in kept(last)), media_kinds([messages[i] for i in kept(last)]))
    if not candidates:
        raise ContextOverflowError("", whole_size, n_ctx).advise(
            f"the prompt has {whole_size} tokens but the context holds {n_ctx}, and there is no earlier turn to drop",
            LARGER_CONTEXT, note)
    raise ContextOverflowError("", whole_size, n_ctx).advise(
        f"the conversation has {whole_size} tokens but the context holds {n_ctx}, and it does not fit even from its "
        "last user turn (and that turn's last tool round) with its system messages",
        Advice(CTX_LEN, "shorten that turn or use a larger context ({setting})"), note)


def media_note(n_media_tokens: int, kinds: set[str] | frozenset[str] = frozenset({"image", "audio"})) -> str:
    """For an error saying that a prompt does not fit the context: what its media (``kinds``: ``image``, ``audio``)
    take of it (``n_media_tokens``), and, where it has images, the setting that makes them smaller; "" for a prompt
    without media. A photo on a dynamic-resolution projector (Qwen2/2.5/3-VL: up to 4096 tokens each by default)
    can take most of a context; a clip takes a fixed share per 30 s window (750 tokens on Qwen2-Audio), which no
    setting changes: a shorter clip or a larger context is the way."""
    if n_media_tokens <= 0:
        return ""
    if "image" not in kinds:
        return f"; its audio takes {n_media_tokens} tokens of it (a shorter clip, or a larger context, fits)"
    what = "its images and audio take" if "audio" in kinds else "its images take"
    return (f"; {what} {n_media_tokens} tokens of it (on a projector that sizes images by their pixels, such as "
            "Qwen2/2.5/3-VL's, a smaller image_max_tokens setting makes each image take fewer)")


def media_kinds(messages: Sequence[ChatMessage]) -> set[str]:
    """The kinds of media (``image``, ``audio``) ``messages`` hold."""
    return {"image" if isinstance(p, ImagePart) else "audio" for m in messages for p in m.content
            if isinstance(p, (ImagePart, AudioPart))}


def cut_marker(n_chars: int) -> str:
    """What a tool output cut to fit the context ends with, in place of its last ``n_chars`` characters."""
    return f"[… {n_chars:,} characters of tool output cut to fit the context]"


class _ToolCuts:
    """The tool outputs of a conversation, shortened by *level*: 0 leaves them whole, each level one character
    less of the outputs it cuts, so that a prompt shrinks as the level grows (a binary search finds the least
    level that fits).

    Levels ``0..floor`` cut the earlier rounds' outputs down to :data:`MIN_TOOL_OUTPUT` characters, the largest
    first (a cap that falls until it reaches them), then the latest round's (the one after the last assistant turn
    that called tools: what the model is about to read), the same way. Levels ``floor..deepest`` lower every cap
    together from the floor to nothing, the marker alone. An output is only cut where the marker is shorter than
    what it replaces. Text parts only: an image in a tool result stays (its tokens are no characters to cut)."""

    def __init__(self, messages: tuple[ChatMessage, ...]):
        self.messages = messages
        self.lengths = {i: sum(len(p.text) for p in m.content if isinstance(p, TextPart))
                        for i, m in enumerate(messages) if m.role == "tool"}
        calls = [i for i, m in enumerate(messages) if m.role == "assistant" and m.tool_calls]
        latest = calls[-1] if calls else len(messages)
        self.latest = {i for i in self.lengths if i > latest}
        earlier_max = max((n for i, n in self.lengths.items() if i not in self.latest), default=0)
        latest_max = max((n for i, n in self.lengths.items() if i in self.latest), default=0)
        self.earlier_top, self.latest_top = earlier_max, latest_max
        self.earlier_span = max(0, earlier_max - MIN_TOOL_OUTPUT)
        self.floor = self.earlier_span + max(0, latest_max - MIN_TOOL_OUTPUT)
        self.deepest = self.floor + (MIN_TOOL_OUTPUT if self.lengths and max(self.lengths.values()) else 0)

    def cap(self, i: int, level: int) -> int | None:
        """Characters message ``i`` keeps at ``level`` (None: whole)."""
        if i not in self.lengths or level <= 0:
            return None
        if level > self.floor:
            return max(0, MIN_TOOL_OUTPUT - (level - self.floor))
        if i in self.latest:
            below = level - self.earlier_span
            return self.latest_top - below if below > 0 else None
        return max(MIN_TOOL_OUTPUT, self.earlier_top - level)

    def _cut(self, i: int, level: int) -> tuple[Any, ...] | None:
        """Message ``i``'s content cut to its cap at ``level``; None where it stays whole."""
        keep = self.cap(i, level)
        total = self.lengths.get(i, 0)
        if keep is None or total <= keep:
            return None
        marker = ("\n" if keep else "") + cut_marker(total - keep)
        if len(marker) >= total - keep:
            return None  # the marker would be no shorter than what it replaces
        parts: list[Any] = []
        left = keep
        for part in self.messages[i].content:
            if not isinstance(part, TextPart):
                parts.append(part)
            elif left > 0:
                parts.append(replace(part, text=part.text[:left]))  # (an untrusted part stays untrusted)
                left -= min(left, len(part.text))
        parts.append(TextPart(marker))
        return tuple(parts)

    def message(self, i: int, level: int) -> ChatMessage:
        content = self._cut(i, level)
        return self.messages[i] if content is None else replace(self.messages[i], content=content)

    def cut_count(self, indices: list[int], level: int) -> int:
        return sum(self._cut(i, level) is not None for i in indices)


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
    all zero for a text-only prompt.

    One part may be several chunks: a clip is one per 30 s window of its encoder, a sliced image one per slice. A
    part's chunks share its content id (``<hash>#<n>``), so the chunks are grouped in runs of one id; parts of the
    same content next to each other (the same clip twice) share one run, split evenly (the same content makes the
    same chunks)."""
    spans = list(getattr(tokens, "media", ()))
    parts = [(i, p.data) for i, m in enumerate(messages) for p in m.content if isinstance(p, (ImagePart, AudioPart))]
    out = [0] * len(messages)
    if not spans:
        return out
    runs: list[tuple[str, list[int]]] = []
    for span in spans:
        base = str(span[3]).rpartition("#")[0]
        if runs and base and runs[-1][0] == base:
            runs[-1][1].append(span[1])
        else:
            runs.append((base, [span[1]]))
    groups: list[list[int]] = []  # the messages of runs of parts of one content
    for k, (i, data) in enumerate(parts):
        if k and data == parts[k - 1][1]:
            groups[-1].append(i)
        else:
            groups.append([i])
    if len(groups) == len(runs) and all(len(run) % len(group) == 0 for group, (_, run) in zip(groups, runs)):
        for group, (_, run) in zip(groups, runs):
            each = len(run) // len(group)
            for j, i in enumerate(group):
                out[i] += sum(run[j * each:(j + 1) * each])
        return out
    # chunks without ids (or ids that do not tell the parts apart): one chunk per part, the rest on the last part's
    # message, so that no media token goes uncounted
    for k, (i, _) in enumerate(parts):
        out[i] += sum(span[1] for span in (spans[k:] if k == len(parts) - 1 else spans[k:k + 1]))
    return out
