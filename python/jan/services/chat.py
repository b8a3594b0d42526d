"""The chat service: a typed :class:`ChatRequest` in, typed :class:`ChatDelta` pieces out.

For a local engine it renders the model's chat template, tokenizes, builds the grammar
(tools, response format), submits ``n`` choices and parses each choice's output
(:mod:`jan.services.output`); a message engine gets the request whole. Either way the
sampling layers are folded with the one precedence rule first: request > (thread > assistant,
which the runs service adds) > model.json ``parameters``, and the model.json's own system prompt and stored
messages added (:mod:`jan.services.model_prompt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jan.core import LocalInferenceExtension, LocalModel
from jan.core.held import Held
from jan.engine.model import Vocabulary
from jan.engine.results import Usage
from jan.errors import LARGER_CONTEXT, ContextOverflowError, GrammarPrefixError, MediaError, QueueFullError
from jan.services.control import GRAMMAR_HOLDS_THINKING
from jan.services.documents import read_documents
from jan.services.tool_images import has_tool_images, seen_as_text
from jan.services.engine_output import checked_deltas, engine_failures
from jan.services.errors import RequestError
from jan.services.fit import (PromptBudgetError, context_room, fit_context, fit_history, fits, prompt_size,
                              media_note, reply_room)
from jan.services.local import (ShownTokens, cancel_all, carries_schemas, chat_plan, given_back_unless_begun,
                                chat_prompt, check_fan_out, client_seed, constraint_grammar, prefill_refused,
                                preserved_ids, shown_bytes, shown_special, shows_text, trigger_patterns, merged, off_loop,
                                prompted_as, seeds)
from jan.services.media_workers import off_loop_for
from jan.services.worker_pool import undone_if_abandoned
from jan.services.model_prompt import model_prompt_place, requests_media_error, with_model_prompt
from jan.services.models import ModelService, Target, model_sampling
from jan.services.line_rules import LineCut, remote_refusal
from jan.services.output import AnswerStops, ReasoningTokens, output_parser
from jan.services.streams import DeltaStream
from jan.services.types import (
    ChatDelta,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ChoiceResult,
    RenderedPrompt,
    TextPart,
    ToolCall,
    check_context_keep,
    resolve_sampling,
    media_place,
    require_request,
)

__all__ = ["ChatAggregator", "ChatService", "combined_usage"]

# A queued request whose model's queue is full tries again when one of the model's requests ends, and
# at least this often (seconds): an end it was not told of (a request cancelled unread) is seen then.
ROOM_RECHECK_S = 1.0
# A queued request to a busy remote server tries again after 0.5 s, 1 s, 2 s, ... and then every 30 s.
REMOTE_RETRY_FIRST_S = 0.5
REMOTE_RETRY_MAX_S = 30.0


def combined_usage(usages: list[Usage]) -> Usage:
    """One request's usage from its choices': the prompt once, every choice's generated tokens."""
    if not usages:
        return Usage()
    first = usages[0]
    return Usage(prompt_tokens=first.prompt_tokens, completion_tokens=sum(u.completion_tokens for u in usages),
                 cached_tokens=first.cached_tokens, queue_ms=first.queue_ms, prompt_ms=first.prompt_ms,
                 generation_ms=first.generation_ms,
                 draft_tokens=sum(u.draft_tokens for u in usages),
                 draft_accepted=sum(u.draft_accepted for u in usages))


class ChatService(Held):
    """Chat completions on any engine; see the module docstring."""

    held = "the model service of a running extension manager"

    def __init__(self, models: ModelService):
        self.models = models

    # -- public --------------------------------------------------------------
    def stream(self, request: ChatRequest) -> DeltaStream[ChatDelta]:
        """The request's deltas: per choice content / reasoning / tool-call pieces, then one with
        its ``finish_reason``; last a ``choice == -1`` delta with the request's ``usage``.

        Setup errors raise from the first ``__anext__``: ``ModelNotFoundError``,
        ``ModelLoadError``, ``TemplateError``/``GrammarError``/``ValueError`` (bad input; a
        ``RequestError`` for a ``context`` outside the vocabulary or sent to a message engine),
        ``ContextOverflowError``, ``QueueFullError``, ``DocumentError`` (a document that cannot be read as text:
        :mod:`jan.services.documents`). Closing the stream cancels the generation.
        A request's own fields were checked when it was made (:class:`ChatRequest`: a wrong type, or no
        messages, is a ``RequestError`` naming the field); anything but a ``ChatRequest`` is a ``TypeError`` here.
        """
        _require_request(request)
        if not request.generation_prompt:  # (a prompt closed after its last turn is one to render, not to run)
            raise RequestError("add_generation_prompt: false only renders a prompt (/apply-template); a generation "
                               "answers after the generation prompt", param="add_generation_prompt",
                               code="invalid_value")

        async def open_() -> tuple[str, AsyncIterator[ChatDelta]]:
            target = await self.models.resolve_generating(request.model)
            # documents (PDFs, text files) as the text the model reads, for every engine (a worker thread)
            documents = await self._tool_images_seen(target, await read_documents(request))
            # what the request insists on that the model cannot do: refused now, before _local loads it
            await self.models.require_able(target, documents)
            layered = self._layered(documents, target)
            if isinstance(target.engine, LocalInferenceExtension):
                return target.id, self._local(target, layered, model_prompt_place(documents, target.model))
            if layered.context:  # token ids mean nothing to an engine that takes messages: never silently dropped
                raise RequestError(f"context: the model '{target.id}' runs on the '{target.engine.engine_name}' "
                                   "engine, which takes messages, not token ids; send the conversation as messages",
                                   param="context", code="not_supported")
            if layered.line_rules:
                raise remote_refusal(target.id, layered.line_rules)
            if layered.post_sampling_probs and layered.logprobs:
                # (a remote engine's logprobs are the model's own: told as post-sampling ones they would mislead)
                raise RequestError(f"post_sampling_probs: model '{target.id}' cannot tell the probabilities after "
                                   "sampling (its engine is not local); leave it out", param="post_sampling_probs",
                                   code="not_supported")
            if request.control is not None:
                request.control.attach([], armed=False)  # (an engine of messages takes no control of its thinking)
            with engine_failures(target.engine, "chat()"):
                deltas = self._remote_when_free(target, layered) if layered.wait_for_room \
                    else target.engine.chat(target.model, layered)
            return target.id, checked_deltas(target.engine, deltas, ChatDelta, layered.n, "chat")

        return DeltaStream(open_)

    async def answering_model(self, request: ChatRequest) -> str:
        """The id of the model that would answer ``request``, resolved now: what refuses it before any work
        (``ModelNotFoundError``; a ``RequestError`` when no model is named and none is the default, or for one that
        cannot generate), for work started later (a background response), so that those are a 4xx when it is
        asked rather than a response that fails."""
        _require_request(request)
        target = await self.models.resolve_generating(request.model)
        # (its schemas checked now for a loaded model too: the generation that builds its grammar comes later)
        return (await self.models.require_able(target, request, builds_grammar=False)).id

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole completion (the stream aggregated); same errors as :meth:`stream`."""
        return await self.stream(request).aggregated(ChatAggregator(), request.model)

    async def count(self, request: ChatRequest) -> int:
        """The prompt tokens ``request`` makes (what ``count_tokens`` and ``input_tokens`` answer): a local model's
        prompt rendered and tokenized here (:meth:`render`); a remote one's counted by its server, which renders it
        (the engine's optional ``count_chat_tokens``: jan and llama.cpp's server count a chat body), where a
        ``RequestError`` said the engine renders its prompts itself. Same errors as :meth:`render` otherwise."""
        _require_request(request)
        target = await self.models.resolve_generating(request.model)
        count = getattr(target.engine, "count_chat_tokens", None)
        if isinstance(target.engine, LocalInferenceExtension) or count is None:
            return len((await self.render(request)).tokens)
        # (the text the model reads, as a chat sends it)
        documents = await self._tool_images_seen(target, await read_documents(request))
        await self.models.require_able(target, documents, builds_grammar=False)
        with engine_failures(target.engine, "count_chat_tokens()"):
            return await count(target.model, self._layered(documents, target))

    async def render(self, request: ChatRequest) -> RenderedPrompt:
        """The prompt the model would see: the rendered template text and its token ids.

        ``RequestError`` for a model whose engine renders prompts itself (a remote one).
        """
        _require_request(request)
        target = await self.models.resolve_generating(request.model)
        if not isinstance(target.engine, LocalInferenceExtension):
            raise RequestError(f"the model '{target.id}' runs on the '{target.engine.engine_name}' engine, which "
                               "renders its prompts itself", param="model", code="not_supported")
        request = await self._tool_images_seen(target, await read_documents(request))
        await self.models.require_able(target, request, builds_grammar=False)  # before the acquire loads it
        place = model_prompt_place(request, target.model)
        request = with_model_prompt(request, target.model)  # as a chat would send it
        local = prompted_as(await target.engine.acquire(target.model), request)
        try:
            with given_back_unless_begun(local):
                _, text, tokens, _ = await off_loop_for(request, _prompt_held, local, request,
                                                        target.model.get("settings"))
        except MediaError as exc:
            raise requests_media_error(exc, place) from None
        return RenderedPrompt(target.id, text, tuple(getattr(tokens, "tokens", tokens)))  # -1: media

    # -- internals -------------------------------------------------------------
    async def _tool_images_seen(self, target: Target, request: ChatRequest) -> ChatRequest:
        """``request`` with the images of tools jan ran (:class:`~jan.services.tool_images.ToolImagePart`) as the
        notes they were for a model the files say cannot see images (no projector, no vision encoder): nobody
        asked for a tool's image, so it is no request to refuse (a client's own image is). Any other model (one
        with a projector, one on a remote engine) is sent the images."""
        if not has_tool_images(request.messages):
            return request
        abilities = await self.models.abilities(target)
        if abilities is None or (abilities.projector is not False and abilities.vision is not False):
            return request
        return replace(request, messages=seen_as_text(request.messages))

    @staticmethod
    def _layered(request: ChatRequest, target: Target) -> ChatRequest:
        parameters = target.model.get("parameters")
        # the model's own system prompt and stored messages (model.json system/messages), for every engine
        layered = with_model_prompt(request, target.model).with_sampling(model_sampling(target.model))
        # the model's own num_keep (Ollama's /api/create parameters) under the request's; read only where a context
        # may be cut (a bad stored value fails those requests alone)
        stored = parameters.get("num_keep") if isinstance(parameters, Mapping) else None
        if layered.context and layered.context_keep is None and stored is not None:
            layered = replace(layered, context_keep=check_context_keep(stored, "parameters.num_keep"))
        return layered

    @staticmethod
    async def _remote_when_free(target: Target, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """A queued request to a message engine whose server is busy (429/503: QueueFullError) tries
        again, waiting longer each time (up to REMOTE_RETRY_MAX_S): that server is someone else's, so
        there is no signal to wait on. Errors other than busy end it as they would any request."""
        delay = REMOTE_RETRY_FIRST_S
        while True:
            deltas = target.engine.chat(target.model, request)
            try:
                first = await anext(deltas)
                break
            except QueueFullError:
                await deltas.aclose()
                await asyncio.sleep(delay)
                delay = min(2 * delay, REMOTE_RETRY_MAX_S)
            except StopAsyncIteration:
                return
        async with contextlib.aclosing(deltas):
            yield first
            async for delta in deltas:
                yield delta

    async def _local(self, target: Target, request: ChatRequest,
                     place: tuple[int, int] = (0, 0)) -> AsyncIterator[ChatDelta]:
        """``place``: where the model's own prompt went among the request's messages (:func:`model_prompt_place`),
        for a media error to name the request's message."""
        local: LocalModel = prompted_as(await target.engine.acquire(target.model), request)
        try:
            with given_back_unless_begun(local):  # (refused, or its client gone, before its template: not held)
                check_fan_out(local.model, request.n, param="n")
                start = await undone_if_abandoned(functools.partial(off_loop_for, request), _start, local, request,
                                                  target.model.get("settings"),
                                                  undo=lambda started: cancel_all(started.requests))
        except MediaError as exc:
            raise requests_media_error(exc, place) from None
        requests = start.requests
        while requests is None:  # a queued request, and the engine's queue was full: wait for room
            await local.model.wait_for_room(ROOM_RECHECK_S)
            requests = await undone_if_abandoned(off_loop, start.submit, local, request, undo=cancel_all)
        parsers = start.parsers
        # a parsed choice's client stop strings, matched on its answer text alone (the engine was not given them)
        stops = [AnswerStops(start.answer_stops) for _ in range(request.n)]
        # the prompt's length (its images' and audio's tokens included), told on the first delta
        prompt_tokens: int | None = prompt_size(start.tokens)
        want_ids = request.token_ids
        # on each choice's first delta (the context the prompt continued, as fitted, names its places)
        prompt_ids = _token_ids(start.tokens, start.context) if want_ids else None
        started = [False] * request.n
        # generated token ids not on a delta yet (the parser holds some text back): on the choice's next one
        held: list[list[int]] = [[] for _ in range(request.n)]
        # each choice's ids let out as their text is shown: a matched stop string's are left out
        special = shown_special(start.options, start.options.get("preserved_tokens") or ())
        shown = [ShownTokens(start.vocab, special) for _ in range(request.n)] if want_ids else []
        # with answer stop strings, a choice's ids wait for its end (where a stop string cuts its output is known
        # only once it matched): its output as generated, its ids, and where the matched stop string starts in it
        outputs: list[list[str]] = [[] for _ in range(request.n)]
        generated: list[list[int]] = [[] for _ in range(request.n)]
        cuts: list[int | None] = [None] * request.n
        through: list[int | None] = [None] * request.n  # a stopped choice's tokens through its stop string
        usages: list[Usage | None] = [None] * request.n
        # which generated tokens went to thinking (the usage's reasoning tokens), counted as each choice ends; none
        # kept for an output that cannot think (no cost per token)
        tallies = [ReasoningTokens(lambda t: start.vocab.token_to_bytes(t, shows_text(special, t))) if parser.thinks
                   else None
                   for parser in parsers]
        reasoning_tokens = 0
        # the token limit the engine was given: a "length" end short of it (or with none) is the context's
        limit = start.options.get("max_tokens")
        # llama-server's n_indent and t_max_predict_ms, on each choice's raw output (as it reads its generated text)
        line_cuts = [LineCut(request.line_rules) for _ in range(request.n)] if request.line_rules else []
        # closed here, not left to the garbage collector: the engine requests are cancelled at once
        async with contextlib.aclosing(merged(requests)) as chunks:
            async for index, chunk in chunks:
                if line_cuts:
                    ruled = line_cuts[index].chunk(chunk, requests[index].cancel)
                    if ruled is None:
                        continue
                    chunk = ruled
                parser = parsers[index]
                tally = tallies[index]
                stop = stops[index]
                if tally is not None:  # (tokens generated after a stop string matched are the reply's too)
                    tally.add(chunk.text, chunk.token_ids)
                if stop:
                    outputs[index].append(chunk.text)
                    generated[index] += chunk.token_ids
                if stop.matched is not None:
                    # the answer ended at a stop string: what the engine made before the cancel reached it is
                    # dropped; only its end (the usage) is waited for
                    if chunk.finish_reason is None:
                        continue
                else:
                    deltas = parser.feed(chunk.text)
                    if chunk.finish_reason is not None:
                        deltas += parser.finish(chunk.finish_reason)
                    if stop:
                        deltas = stop.feed(deltas)
                        if stop.matched is not None:
                            # no token more is generated (nor billed) for this choice; the others go on
                            requests[index].cancel()
                            output = "".join(outputs[index])
                            cuts[index] = _cut_at(output, stop)
                            # billed: the tokens through the stop string, as the engine counts its own stops —
                            # not what it made before the cancel reached it (as many as the loop was late by)
                            through[index] = _tokens_through(start.vocab, special, generated[index], output,
                                                             cuts[index] + len(stop.matched))
                        elif chunk.finish_reason is not None:
                            deltas += stop.finish()
                    logprobs = tuple(chunk.logprobs) if request.logprobs and chunk.logprobs else None
                    if not deltas and (logprobs or not started[index]):
                        deltas = [ChatDelta()]
                    if want_ids and not stop:
                        held[index] += shown[index].add(chunk.text, chunk.token_ids)
                        if chunk.finish_reason is not None:
                            held[index] += shown[index].finish(chunk.stop)
                    elif want_ids and chunk.finish_reason is not None and stop.matched is None:
                        held[index] += shown[index].add("".join(outputs[index]), generated[index])
                        held[index] += shown[index].finish(chunk.stop)
                    ids: tuple[int, ...] = ()
                    if deltas:
                        ids = tuple(held[index])
                        held[index].clear()
                    # and how much of it the KV cache held (the first token's chunk says; one that ends at once, its
                    # usage)
                    cached = chunk.cached_tokens if chunk.cached_tokens is not None else (
                        chunk.usage.cached_tokens if chunk.usage is not None else None)
                    for k, delta in enumerate(deltas):
                        yield replace(delta, choice=index, logprobs=logprobs if k == 0 else None,
                                      prompt_tokens=prompt_tokens,
                                      cached_tokens=cached if prompt_tokens is not None else None,
                                      prompt_token_ids=prompt_ids if k == 0 and not started[index] else None,
                                      token_ids=ids if k == 0 else (),
                                      progress=chunk.progress if k == len(deltas) - 1 else None)
                        prompt_tokens = None
                    started[index] = True
                if chunk.finish_reason is None:
                    continue
                usages[index] = chunk.usage if through[index] is None else _billed(chunk.usage, through[index])
                reasoning_tokens += tally.count(parser) if tally is not None else 0
                if stop.matched is not None:
                    yield replace(_stopped(index, stop, shown[index] if want_ids else None, outputs[index],
                                           generated[index], cuts[index]), choice_usage=usages[index])
                    continue
                finish = chunk.finish_reason
                if finish == "stop" and parser.made_tool_calls:
                    finish = "tool_calls"  # the token limit wins over a cut-off call: "length" stays
                yield ChatDelta(choice=index, finish_reason=finish, stop=chunk.stop, token_ids=tuple(held[index]),
                                context_full=finish == "length" and _short_of(chunk.usage, limit)
                                and not (line_cuts and line_cuts[index].cut),
                                choice_usage=usages[index])
        yield ChatDelta(choice=-1, usage=combined_usage([u for u in usages if u is not None]),
                        reasoning_tokens=reasoning_tokens)


def _require_request(request: Any) -> None:
    require_request(request, ChatRequest, "chat")


def _stopped(index: int, stop: AnswerStops, shown: ShownTokens | None, output: list[str], ids: list[int],
             cut: int | None) -> ChatDelta:
    """The last delta of a choice whose answer a client's stop string ended (:class:`AnswerStops`): ``stop``
    (or ``tool_calls`` where it had made calls), the matched string, and with token ids the ones of its output
    before that string (the output after it was never shown)."""
    token_ids: tuple[int, ...] = ()
    if shown is not None:
        text = "".join(output)
        token_ids = tuple(shown.add(text[:len(text) if cut is None else cut], ids) + shown.finish(stop.matched))
    return ChatDelta(choice=index, finish_reason="tool_calls" if stop.made_tool_calls else "stop",
                     stop=stop.matched, token_ids=token_ids)


def _tokens_through(model: Any, special: "bool | frozenset[int]", ids: list[int], output: str, end: int) -> int:
    """How many of a choice's generated ``ids`` (whose text is ``output``) it took to write ``output[:end]``
    (``special``: whose control tokens' text the output shows, :func:`shown_special`)."""
    pieces = [model.token_to_bytes(token, shows_text(special, token)) for token in ids]
    target = shown_bytes(b"".join(pieces), output[:end])  # (bytes that are no UTF-8 show as U+FFFD)
    written = 0
    for n, piece in enumerate(pieces):
        if written >= target:
            return n
        written += len(piece)
    return len(ids)


def _billed(usage: Usage | None, completion_tokens: int) -> Usage | None:
    """``usage`` with at most ``completion_tokens`` generated tokens."""
    if usage is None or usage.completion_tokens <= completion_tokens:
        return usage
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=completion_tokens,
                 cached_tokens=usage.cached_tokens, queue_ms=usage.queue_ms, prompt_ms=usage.prompt_ms,
                 generation_ms=usage.generation_ms, draft_tokens=usage.draft_tokens,
                 draft_accepted=usage.draft_accepted)


def _cut_at(output: str, stop: AnswerStops) -> int:
    """Where the stop string ``stop`` matched starts in a choice's ``output`` as generated so far: answer text is
    the output's own text, so the last place that holds the string with the content the match dropped after it."""
    at = output.rfind(stop.dropped)
    if at < 0:
        at = output.rfind(stop.matched or "")
    return at if at >= 0 else len(output)


def _short_of(usage: Usage | None, limit: Any) -> bool:
    """Whether a choice that ended ``length`` with ``usage`` stopped short of the token ``limit`` it was given (None:
    no limit): the engine ends one at its limit first, so short of it (or without one) the context was full."""
    return limit is None or (usage is not None and usage.completion_tokens < limit)


def _token_ids(tokens: Any, context: Sequence[int] = ()) -> tuple[int, ...]:
    """A prompt's token ids: a token list, or a ``MediaPrompt``'s text tokens with each image or clip one
    :func:`~jan.services.types.media_place` at its place (its positions hold no id), naming the request's item it is
    (``context``: the ids the prompt continued): a context continuing them binds each place to the request's item of
    that index, which a client continuing the exchange sends again (Ollama's ``[img-n]`` tags); where it does not, the
    context is refused, where one that left the places out went on without the image."""
    ids = getattr(tokens, "tokens", None)
    if ids is None:
        return tuple(tokens)
    # One place per item, not per chunk: an image sliced into tiles, or a clip longer than one window, is several
    # chunks, each with its item's id and its own "#k" (Projector::tokenize, counted anew in each tokenizing), so a
    # place starts where the item changes, or at a "#0": an item put back at a context's place is tokenized alone,
    # so the same picture there and in the new turn are two places (the same picture twice in a row in one request's
    # messages is one place: a continuation sending it again binds it all the same)
    starts, previous = [], None
    for start, _, _, chunk_id, *_ in tokens.media:
        item, _, k = chunk_id.rpartition("#")
        if not item or item != previous or k == "0":
            starts.append(start)
        previous = item or None
    # the continued context's places come first (each its item put back whole: one place), named as they were; then
    # the new turn's items, in their messages' order
    kept = [token for token in context if token < 0]
    marks = {start: kept[j] if j < len(kept) else media_place(j - len(kept)) for j, start in enumerate(starts)}
    return tuple(marks.get(i, t) for i, t in enumerate(ids) if t >= 0 or i in marks)


def _prompt(local: LocalModel, request: ChatRequest, settings: Any) -> tuple[Any, str, Any, tuple[int, ...]]:
    """Blocking (the chat template, tokenizing): the chat plan, the prompt text, its tokens and the part of the
    request's ``context`` they continue (all of it, unless the fit dropped some).

    With ``truncation="auto"``, a prompt over the context (or budget) loses the oldest tokens of its ``context``
    first (:func:`fit_context`), then its oldest turns (:func:`fit_history`).
    ``PromptBudgetError`` (before anything reaches the engine) for a prompt over ``request.max_prompt_tokens``
    that truncation could not shorten enough; one over the context is left to the engine's own error."""
    # an embedding model has no context to fit a prompt to: say what it is before the template and the fit run
    local.model.require_generation()
    plan = chat_plan(local, request, settings)
    text, tokens = chat_prompt(local, request, plan)
    room = reply_room(local, request)
    budget = request.max_prompt_tokens
    if request.truncation == "auto" and request.context and not fits(local, tokens, room, budget):
        # the oldest part of the prompt is the earlier exchange's token ids: dropped first, token by token
        trimmed = fit_context(local, request, tokens, context_room(local, request), budget)
        if trimmed is not request:
            request = trimmed
            text, tokens = chat_prompt(local, request, plan)
    if request.truncation == "auto" and not fits(local, tokens, room, budget):
        fitted = fit_history(local, request, plan, tokens, room, budget)
        if fitted is not request:
            text, tokens = chat_prompt(local, fitted, plan)
    size = prompt_size(tokens)
    if budget is not None and size > budget and fits(local, tokens):  # truncation disabled: nothing was dropped
        raise PromptBudgetError(f"the prompt has {size} tokens but only {budget} are left of max_prompt_tokens",
                                size, budget)
    return plan, text, tokens, request.context


@dataclass
class _Start:
    """A chat request made ready for the engine: the prompt, its plan, each choice's output parser, the engine
    options and the client's stop strings matched on the answer's text (not given to the engine); the engine
    requests once submitted (``None`` while a queued request waits for room)."""

    text: str
    plan: Any
    tokens: Any
    parsers: list[Any]
    options: dict[str, Any]
    answer_stops: tuple[str, ...]
    seeds: list[int]
    extra: dict[str, Any]
    #: the model's tokenizer, to read the requests' output to its end also after the model closed (an unload)
    vocab: Vocabulary
    requests: list | None = None
    #: the part of the request's ``context`` the prompt continues (a fit may drop some): what names its places
    context: tuple[int, ...] = ()

    def submit(self, local: LocalModel, request: ChatRequest) -> list | None:
        """Blocking (llama.cpp parses the grammar): the engine requests; ``None`` when the queue is
        full and the request is one that waits (``ChatRequest.wait_for_room``)."""
        options = self.options
        if request.control is not None and request.control.end_asked and "reasoning_budget" in options:
            options = {**options, "reasoning_budget": 0}  # ended before it began: closed at its first token
        try:
            # held: one use with the render before it (the n choices' generations too); a submit again once the
            # queue had room begins no request (the first try's render began this one): counted, it would end
            # another request's claim on the model
            with local.model.hold(begins=False):
                requests = _submit(local, self.tokens, options, self.seeds, **self.extra)
            if request.control is not None:
                # A client's raw grammar is the whole output's, its thinking included (constraint_grammar): the
                # engine could only force the end-of-thinking text against it, and the reply would end in an error
                # naming a budget nobody set. Such a thinking is the grammar's to end, so the control is not armed.
                held = request.grammar is not None
                request.control.attach(requests, armed="reasoning_budget" in self.options and not held,
                                       reason=GRAMMAR_HOLDS_THINKING if held else None)
            return requests
        except GrammarPrefixError as exc:  # the prefill cannot start the reply its format or forced call holds
            raise prefill_refused(request, self.plan, self.options.get("grammar_prefix") or "", exc) from None
        except QueueFullError:
            if request.wait_for_room:
                return None
            raise


def _prompt_held(local: LocalModel, request: ChatRequest, settings: Any) -> tuple[Any, str, Any, tuple[int, ...]]:
    """:func:`_prompt` with the model held: a render submits nothing, so without the hold the claim its hand-out
    made would stand until it lapses, and a ``keep_alive: 0`` (which waits for claims) would wait that long."""
    with local.hold():
        return _prompt(local, request, settings)


def _start(local: LocalModel, request: ChatRequest, settings: Any) -> _Start:
    """Blocking, in one worker call: the chat template, the constraint grammar (llama.cpp parses it)
    and one engine request per choice. One hop, not one per step: each hop costs the event loop a
    wake-up, and under load a request's first token waits behind every one of them.

    The model is held (:meth:`jan.Model.hold`) from the template to the submit: encoding a request's images can
    outlast the pool's claim on the model, and a model nobody holds may be unloaded for another one meanwhile."""
    with local.hold():
        return _start_held(local, request, settings)


def _start_held(local: LocalModel, request: ChatRequest, settings: Any) -> _Start:
    try:
        plan, text, tokens, context = _prompt(local, request, settings)
    except (ContextOverflowError, PromptBudgetError):
        # a constraint no model could use (a schema that does not compile) is the request's fault whatever its
        # prompt, and refused first before a load (ModelService.require_able): said first by a loaded model too,
        # not only once a shorter prompt is sent (a huge enum in a tool's schema makes a long prompt as well)
        if carries_schemas(request):
            constraint_grammar(request, chat_plan(local, request, settings), "")
        raise
    parsers = [output_parser(request, plan, text) for _ in range(request.n)]
    constraint = constraint_grammar(request, plan, text)
    grammar = constraint.pop("grammar", None)
    options = resolve_sampling(request.sampling).given()
    answer_stops: tuple[str, ...] = ()
    if not parsers[0].plain:
        # a client's stop strings end the answer's text, never its thinking nor a call's markup or arguments (a
        # "\n\n", "}" or "Observation:" there would cut the call, or end the reply before it answered): the engine
        # sees only raw output, so the service matches them on the parsed content (AnswerStops); a forced call's
        # output is all call, so nothing there ever matches
        answer_stops = tuple(options.pop("stop", None) or ())
    # the chat format's engine options: control-token text, thinking budget, lazy-grammar triggers
    options.update(plan.engine_options(text, options.get("logit_bias")))
    if request.control is not None and "reasoning_budget" not in options and request.grammar is None:
        options.update(plan.watched_thinking_options(text))  # (a control's end of the thinking needs the sampler)
    options.update(constraint)
    if request.grammar_triggers or request.grammar_trigger_tokens:  # (a client's lazy grammar: its own triggers)
        options["grammar_triggers"] = trigger_patterns(local.model, request.grammar_triggers,
                                                       request.grammar_trigger_tokens)
    if request.preserved_tokens:
        options["preserved_tokens"] = list(preserved_ids(local.model, request.preserved_tokens)) or None
    seed = client_seed(options)
    if local.end_of_turn and not options.get("ignore_eos"):
        # the end of turn a stand-in template spells as text is this model's end of generation: ignore_eos, which
        # generates past the model's end-of-generation tokens (llama-server's too), generates past it as well
        options["stop"] = list(options.get("stop") or []) + list(local.end_of_turn)
    _encode_media(local, tokens)
    start = _Start(text, plan, tokens, parsers, options, answer_stops, seeds(seed, request.n),
                   {"grammar": grammar, "logprobs": request.logprobs, "top_logprobs": request.top_logprobs,
                    **({"post_sampling_probs": True} if request.post_sampling_probs and request.logprobs else {})},
                   local.model.vocabulary(), context=context)
    start.requests = start.submit(local, request)
    return start


def _encode_media(local: LocalModel, tokens: Any) -> None:
    """Blocking (the vision/audio encoder): a media prompt's images and audio encoded, last of all the request's
    checks. The prompt is tokenized unencoded (:func:`chat_prompt`), so one that does not fit the context is refused
    here, as the engine would refuse it at submit, before the encoder runs (seconds of CPU per image on a big
    projector), and the fitting that shortens a conversation never encodes the turns it drops."""
    if not hasattr(tokens, "media"):
        return
    if not fits(local, tokens):
        size, n_ctx = prompt_size(tokens), local.model.n_ctx
        raise ContextOverflowError("", size, n_ctx).advise(
            f"the prompt has {size} tokens but the context holds {n_ctx} (one more is needed to generate)",
            LARGER_CONTEXT, media_note(tokens.n_media_tokens, {m[4] for m in tokens.media}))
    local.model.encode_media(tokens)


def _submit(local: LocalModel, tokens: Any, options: dict[str, Any], choice_seeds: list[int],
            **extra: Any) -> list:
    """Blocking (llama.cpp parses the grammar): one engine request per choice; all or none."""
    requests = []
    try:
        for seed in choice_seeds:
            requests.append(local.model.stream(tokens, **options, seed=seed, **extra))
    except BaseException:
        for r in requests:
            r.cancel()
        raise
    return requests


class ChatAggregator:
    """Folds :class:`ChatDelta` pieces into a :class:`ChatResult`: text, reasoning and token ids
    appended, tool calls merged by index, logprobs appended, the prompt's token ids, the last
    finish_reason (and whether the context filled up), usage and its reasoning tokens kept."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.reasoning_tokens = 0

    def add(self, delta: ChatDelta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
            self.reasoning_tokens = delta.reasoning_tokens
        if delta.choice < 0:
            return
        state = self._choices.get(delta.choice)
        if state is None:
            state = self._choices[delta.choice] = {"content": [], "reasoning": [], "calls": {}, "logprobs": None,
                                                   "finish_reason": None, "prompt_token_ids": None, "token_ids": [],
                                                   "context_full": False}
        if delta.content:
            state["content"].append(delta.content)
        if delta.reasoning:
            state["reasoning"].append(delta.reasoning)
        for piece in delta.tool_calls:
            call = state["calls"].setdefault(piece.index, {"id": None, "name": "", "arguments": []})
            if piece.id:
                call["id"] = piece.id
            if piece.name:
                call["name"] += piece.name
            if piece.arguments:
                call["arguments"].append(piece.arguments)
        if delta.logprobs:
            state["logprobs"] = (state["logprobs"] or ()) + tuple(delta.logprobs)
        if delta.finish_reason:
            state["finish_reason"] = delta.finish_reason
            state["context_full"] = delta.context_full
        if delta.prompt_token_ids is not None:
            state["prompt_token_ids"] = delta.prompt_token_ids
        state["token_ids"] += delta.token_ids

    def result(self, model: str) -> ChatResult:
        choices = []
        for index in sorted(self._choices):
            s = self._choices[index]
            text = "".join(s["content"])
            calls = tuple(ToolCall(c["id"] or "", c["name"], "".join(c["arguments"]))
                          for _, c in sorted(s["calls"].items()))
            message = ChatMessage("assistant", (TextPart(text),) if text or not calls else (), tool_calls=calls,
                                  reasoning="".join(s["reasoning"]) or None)
            choices.append(ChoiceResult(message, s["finish_reason"] or "stop", s["logprobs"],
                                        prompt_token_ids=s["prompt_token_ids"], token_ids=tuple(s["token_ids"]),
                                        context_full=s["context_full"]))
        return ChatResult(model, tuple(choices), self.usage or Usage(), reasoning_tokens=self.reasoning_tokens)

