"""The text completion service: prompts (text, token ids, or text with images and audio) in, :class:`CompletionDelta`
pieces out."""

from __future__ import annotations

import contextlib

from collections.abc import AsyncIterator
from dataclasses import replace

from jan.core import LocalInferenceExtension
from jan.core.held import Held
from jan.engine.results import Usage
from jan.errors import ContextOverflowError
from jan.services.errors import RequestError
from jan.services.local import (ShownLogprobs, ShownTokens, cancel_all, check_fan_out, client_seed,
                                completion_media_prompts, given_back_unless_begun, merged, off_loop, preserved_ids,
                                seeds, shown_special, submits_on_loop, trigger_patterns)
from jan.services.media_workers import on_media_worker
from jan.services.worker_pool import undone_if_abandoned
from jan.services.models import ModelService, Target, model_sampling
from jan.services.engine_output import checked_deltas, engine_failures
from jan.services.infill import infill_prompt
from jan.services.line_rules import LineCut, remote_refusal
from jan.services.streams import DeltaStream
from jan.services.types import (CompletionChoiceResult, CompletionDelta, CompletionRequest, CompletionResult, MediaText,
                                SamplingOptions, merge_options, require_request, resolve_sampling)

__all__ = ["CompletionAggregator", "CompletionService"]


class CompletionService(Held):
    """Text completions on any engine. Choices are numbered prompt-major (prompt ``i``'s choice
    ``j`` is ``i * n + j``)."""

    held = "the model service of a running extension manager"

    def __init__(self, models: ModelService):
        self.models = models

    def stream(self, request: CompletionRequest) -> DeltaStream[CompletionDelta]:
        """Per choice text pieces (with ``echo``, the prompt's text first, as its own delta),
        the last one with its ``finish_reason``; then ``choice == -1`` with ``usage`` (each
        prompt's tokens once, every choice's generated tokens). Local engines tell each piece's
        ``token_ids``, and a prompt given as token ids on its choices' first deltas
        (``prompt_token_ids``). With ``logprobs`` a local engine's delta holds the tokens of its text, each piece
        of text told with the tokens that make it (the echo: every prompt token, its BOS too; a matched stop
        string's are left out, as its text is).
        Errors as :meth:`ChatService.stream` (``TypeError`` for anything but a :class:`CompletionRequest`)."""
        require_request(request, CompletionRequest, "completions")

        async def open_() -> tuple[str, AsyncIterator[CompletionDelta]]:
            target = await self.models.resolve_generating(request.model)
            layered = replace(request, sampling=_layer(request, target))
            if layered.suffix is not None:
                layered = await self._filled_in(target, layered)
            if isinstance(target.engine, LocalInferenceExtension):
                await self.models.require_able(target, layered)  # (token ids outside its vocabulary) before a load
                return target.id, self._local(target, layered)
            if any(isinstance(p, MediaText) for p in layered.prompts):
                # (a remote engine's completion API takes text: its media would be lost, unsaid)
                raise RequestError(f"prompt: model '{target.id}' takes no images or audio in a completion prompt "
                                   "(its engine is not local); send them to /v1/chat/completions",
                                   param="prompt", code="not_supported")
            if layered.line_rules:
                raise remote_refusal(target.id, layered.line_rules)
            if layered.post_sampling_probs and layered.logprobs is not None:
                # (a remote engine's logprobs are the model's own: told as post-sampling ones they would mislead)
                raise RequestError(f"post_sampling_probs: model '{target.id}' cannot tell the probabilities after "
                                   "sampling (its engine is not local); leave it out", param="post_sampling_probs",
                                   code="not_supported")
            with engine_failures(target.engine, "complete()"):
                deltas = target.engine.complete(target.model, layered)
            return target.id, checked_deltas(target.engine, deltas, CompletionDelta, len(layered.prompts) * layered.n,
                                             "complete")

        return DeltaStream(open_)

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The whole completion (the stream aggregated), as :meth:`ChatService.complete` gives a chat's; same errors
        as :meth:`stream`."""
        return await self.stream(request).aggregated(CompletionAggregator(), request.model)

    async def _filled_in(self, target: Target, request: CompletionRequest) -> CompletionRequest:
        """``request`` with each prompt made the fill-in-the-middle prompt of it and ``request.suffix`` (token ids);
        refused before a load for a model without FIM tokens, and for a remote engine's (which gets no FIM)."""
        await self.models.require_fill_in(target, request.infill_context)
        prompts = [await infill_prompt(self.models, target.id, prefix, request.suffix, request.infill_context,
                                       request.infill_extra, resolve_sampling(request.sampling).max_tokens,
                                       fit=request.infill_fit)
                   for prefix in request.prompts]
        return replace(request, prompts=tuple(prompts), suffix=None, infill_context=(), infill_extra=(),
                       infill_fit=False)

    async def _local(self, target: Target, request: CompletionRequest) -> AsyncIterator[CompletionDelta]:
        local = await target.engine.acquire(target.model)
        # (refused, or its client gone, before its submit: the claim given back, not held for nobody)
        with given_back_unless_begun(local):
            model = local.model
            n_prompts = len(request.prompts)
            check_fan_out(model, n_prompts * request.n, param="prompt" if n_prompts > 1 else "n")
            options = resolve_sampling(request.sampling).given()
            seed = client_seed(options)
            want_logprobs = request.logprobs is not None
            # echo with logprobs: the prompt's tokens are scored too (OpenAI's; what evaluation harnesses read)
            want_prompt = request.echo and want_logprobs
            if request.prompt_only:
                options["max_tokens"] = 1  # the prompt is evaluated (and scored); the one token sampled is not shown

            # the tokenizer, to read the requests' output to its end also after the model closed (an unload)
            vocab = model.vocabulary()

            has_media = any(isinstance(p, MediaText) for p in request.prompts)

            preserved: list[int] = []  # (the ids of request.preserved_tokens, found by submit)

            # one of a list of prompts: a context error names which (the route names only its field)
            named_prompt = request.prompt_name if request.listed is not False else None

            def submit() -> tuple[list, list[str], list[tuple[int, ...] | None]]:
                requests, echo, prompt_ids = [], [], []
                triggers = trigger_patterns(model, request.grammar_triggers, request.grammar_trigger_tokens)
                preserved[:] = preserved_ids(model, request.preserved_tokens)
                # decoded, sized and encoded once: each of a prompt's choices reads the same one
                made = (completion_media_prompts(local, request.prompts, prompt_name=named_prompt) if has_media
                        else {})
                try:
                    for i, prompt in enumerate(request.prompts):
                        if isinstance(prompt, MediaText):
                            text, given = prompt.text, made[i]
                        else:
                            text = prompt if isinstance(prompt, str) else model.detokenize(list(prompt))
                            given = prompt if isinstance(prompt, str) else list(prompt)
                        for s in seeds(seed, request.n):
                            try:
                                stream = model.stream(given, **options,
                                                      seed=s, grammar=request.grammar, logprobs=want_logprobs,
                                                      grammar_triggers=triggers or None,
                                                      preserved_tokens=list(preserved) or None,
                                                      top_logprobs=request.logprobs or 0,
                                                      prompt_logprobs=want_prompt, infill=request.infill_sampler,
                                                      post_sampling_probs=request.post_sampling_probs)
                            except ContextOverflowError as exc:
                                if exc.param is None and named_prompt is not None:
                                    exc.param = named_prompt(i)
                                raise
                            requests.append(stream)
                            echo.append(text if request.echo else "")
                            prompt_ids.append(tuple(prompt) if isinstance(prompt, tuple) and request.token_ids
                                              else None)
                except BaseException:
                    for r in requests:
                        r.cancel()
                    raise
                return requests, echo, prompt_ids

            def held() -> tuple[list, list[str], list[tuple[int, ...] | None]]:
                # held from decoding to the submit: encoding images can outlast the pool's claim on the model, and a
                # model nobody holds may be unloaded for another one meanwhile (as a chat's media prompt). And the
                # request's generations, one per prompt and choice, are its one use: counted one each, they stood for
                # the claims of other requests not submitted yet, which a keep_alive 0 then closed the model under
                with local.hold():
                    return submit()

            # short prompts: here, as the hop to a worker thread would cost more than the tokenizing (submits_on_loop)
            def undo(submitted: tuple[list, list[str], list[tuple[int, ...] | None]]) -> None:
                cancel_all(submitted[0])

            if has_media:
                requests, echo, prompt_ids = await undone_if_abandoned(on_media_worker, held, undo=undo)
            elif submits_on_loop(request.prompts, request.n, request.grammar, options.get("logit_bias")):
                requests, echo, prompt_ids = held()
            else:
                requests, echo, prompt_ids = await undone_if_abandoned(off_loop, held, undo=undo)
        # each choice's ids let out as their text is shown: a matched stop string's are left out
        special = shown_special(options, preserved)
        shown = [ShownTokens(vocab, special) for _ in requests] if request.token_ids else []
        # with logprobs, the text told with the tokens that make it: a delta's logprobs are the tokens of its text
        scores = [ShownLogprobs(vocab, special) for _ in requests] if want_logprobs else []
        unstarted = set(range(len(requests)))  # choices whose first delta is still to come
        # llama-server's n_indent and t_max_predict_ms, on each choice's text as generated (none for a prompt alone)
        cuts = [LineCut(request.line_rules) for _ in requests] if request.line_rules and not request.prompt_only else []

        def first_ids(index: int) -> tuple[int, ...] | None:
            """The prompt's token ids on a choice's first delta (when given as ids), else None."""
            if index not in unstarted:
                return None
            unstarted.discard(index)
            return prompt_ids[index]

        usages: dict[int, Usage] = {}
        # closed here, not left to the garbage collector: the engine requests are cancelled at once
        scored: dict[int, list] = {}  # choice -> its prompt's scored tokens so far (want_prompt)
        to_echo = set(range(len(requests))) if request.echo else set()  # (an empty prompt is echoed too)
        async with contextlib.aclosing(merged(requests)) as chunks:
            async for index, chunk in chunks:
                if chunk.prompt_logprobs:
                    scored.setdefault(index, []).extend(chunk.prompt_logprobs)
                generated = bool(chunk.token_ids or chunk.text) or chunk.finish_reason is not None
                if want_prompt and not generated:
                    continue  # the prompt is still being scored: its echo waits for all of it
                if index in to_echo:
                    to_echo.discard(index)
                    yield CompletionDelta(choice=index, text=echo[index],
                                          logprobs=tuple(scored.pop(index, ())) if want_prompt else None,
                                          prompt_token_ids=first_ids(index))
                if request.prompt_only:  # nothing generated is shown: the choice ends with its prompt
                    if chunk.finish_reason is not None:
                        usages[index] = _prompt_only(chunk.usage)  # (errors raise in merged())
                        yield CompletionDelta(choice=index, text="", logprobs=() if want_logprobs else None,
                                              finish_reason="length", prompt_token_ids=first_ids(index))
                    continue
                if cuts:
                    ruled = cuts[index].chunk(chunk, requests[index].cancel)
                    if ruled is None:
                        continue
                    chunk = ruled
                text, logprobs = chunk.text, None
                if scores:  # the text goes out with its tokens' logprobs
                    text, told = scores[index].add(chunk.text, chunk.logprobs or ())
                    if chunk.finish_reason is not None:
                        rest, more = scores[index].finish(chunk.stop)
                        text, told = text + rest, told + more
                    logprobs = tuple(told)
                ids = shown[index].add(chunk.text, chunk.token_ids) if shown else []
                if shown and chunk.finish_reason is not None:
                    ids += shown[index].finish(chunk.stop)
                yield CompletionDelta(choice=index, text=text, logprobs=logprobs, finish_reason=chunk.finish_reason,
                                      token_ids=tuple(ids),
                                      prompt_token_ids=first_ids(index),
                                      stop=chunk.stop if chunk.finish_reason == "stop" else None,
                                      choice_usage=chunk.usage if chunk.finish_reason is not None else None,
                                      id_slot=chunk.id_slot, progress=chunk.progress)
                if chunk.finish_reason is not None:
                    usages[index] = chunk.usage
        yield CompletionDelta(choice=-1, usage=_usage(usages, request.n, len(request.prompts)))


def _prompt_only(usage: Usage) -> Usage:
    """A prompt-only choice's usage: the prompt, and no completion (its one sampled token is not shown)."""
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=0, cached_tokens=usage.cached_tokens,
                 queue_ms=usage.queue_ms, prompt_ms=usage.prompt_ms, generation_ms=0.0)


def _layer(request: CompletionRequest, target: Target) -> SamplingOptions:
    """The request's options > the model.json's ``parameters`` > the dialect's defaults (the one precedence rule)."""
    return merge_options(request.sampling, model_sampling(target.model),
                         request.dialect_defaults)


def _usage(usages: dict[int, Usage], n: int, n_prompts: int) -> Usage:
    if not usages:
        return Usage()
    ordered = [usages[i] for i in sorted(usages)]
    prompt = sum(usages[i * n].prompt_tokens for i in range(n_prompts) if i * n in usages)
    first = ordered[0]
    return Usage(prompt_tokens=prompt, completion_tokens=sum(u.completion_tokens for u in ordered),
                 cached_tokens=first.cached_tokens, queue_ms=first.queue_ms, prompt_ms=first.prompt_ms,
                 generation_ms=first.generation_ms,
                 draft_tokens=sum(u.draft_tokens for u in ordered),
                 draft_accepted=sum(u.draft_accepted for u in ordered))


class CompletionAggregator:
    """Folds :class:`CompletionDelta` pieces into a :class:`CompletionResult`: each choice's text, logprobs and token
    ids appended, its prompt's token ids, its last finish_reason and stop string, and the request's usage kept."""

    def __init__(self) -> None:
        self._choices: dict[int, dict] = {}
        self.usage: Usage | None = None

    def add(self, delta: CompletionDelta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.choice < 0:
            return
        state = self._choices.setdefault(delta.choice, {"text": [], "logprobs": None, "finish_reason": None,
                                                        "prompt_token_ids": None, "token_ids": [], "stop": None})
        if delta.text:
            state["text"].append(delta.text)
        if delta.logprobs:
            state["logprobs"] = (state["logprobs"] or ()) + tuple(delta.logprobs)
        if delta.finish_reason:
            state["finish_reason"], state["stop"] = delta.finish_reason, delta.stop
        if delta.prompt_token_ids is not None:
            state["prompt_token_ids"] = delta.prompt_token_ids
        state["token_ids"] += delta.token_ids

    def result(self, model: str) -> CompletionResult:
        choices = tuple(CompletionChoiceResult("".join(s["text"]), s["finish_reason"] or "stop", s["logprobs"],
                                               prompt_token_ids=s["prompt_token_ids"], token_ids=tuple(s["token_ids"]),
                                               stop=s["stop"])
                        for _, s in sorted(self._choices.items()))
        return CompletionResult(model, choices, self.usage or Usage())
