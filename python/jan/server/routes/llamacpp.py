"""llama-server's native endpoints: ``POST /completion``, ``POST /infill``, ``GET /props``, ``POST /embedding``,
``GET /slots`` and ``POST /slots/{id}`` (save, restore, erase), ``GET``/``POST /lora-adapters``, and its router mode's ``POST /models/load`` and ``/models/unload``.

HTTP only: each handler parses its body (:mod:`jan.server.dialects.llamacpp`), calls the completion service and
writes the typed deltas back as llama-server's result objects, whole or as server-sent events (``data: {...}``
lines without ``[DONE]``, as llama-server ends its native stream). Errors leave in llama-server's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

import jan
from jan.core import ModelState
from jan.core.engine_answers import model_state
from jan.errors import BadRequestError, MediaError, ModelNotFoundError
from jan.server.dialects import llamacpp as native, ollama_models
from jan.server.disconnect import (SLOT_SHUTDOWN, WAIT_SHUTDOWN, first_item, raise_if_ended, unless_disconnected,
                                   unless_stopping)
from jan.server.dialect_errors import LLAMACPP_PATHS, LLAMACPP_TOKEN_PATHS, LLAMACPP_V1_PATHS
from jan.server.errors import APIError, prompt_param
from jan.server.jsonio import json_response, json_response_built
from jan.server import openai_wire as wire
from jan.server.keys import CONFIG, MEDIA_FETCHER, SERVICES
from jan.server.media_fetch import fetch_body_images
from jan.server.resolve import model_and_engine
from jan.server.routes.docs import DIALECT_ERRORS, EXTRA_BODIES, RESPONSES
from jan.server.schemas import ContentPrompt
from jan.server.streaming import relay
from jan.server.validation import body_step, parse_body, read_json
from jan.services.abilities import token_ids_refusal
from jan.services.engine_output import engine_failures
from jan.services.errors import RequestError
from jan.services.local import single_tokens
from jan.services.models import model_sampling, refuse_fan_out, unload_now
from jan.services.types import (MEDIA_MARKER, CompletionRequest, LoadOptions, MediaText, SamplingOptions,
                                embedding_inputs_refusal, resolve_load, resolve_sampling)

routes = web.RouteTableDef()

# (llama-server's error shape on these paths: registered by jan.server.dialect_errors, so that an error before this
# module is imported, a 401 or a 404, has it too)
PATHS = LLAMACPP_PATHS
for _path in PATHS + LLAMACPP_TOKEN_PATHS + LLAMACPP_V1_PATHS:
    DIALECT_ERRORS[_path] = ("LlamaServerError", {
        "type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "type"], "properties": {
                "code": {"type": "integer"}, "message": {"type": "string"}, "type": {"type": "string"},
                # (a prompt too long: exceed_context_size_error)
                "n_prompt_tokens": {"type": "integer"}, "n_ctx": {"type": "integer"}}}}})
EXTRA_BODIES[("POST", "/completion")] = native.CompletionBody
EXTRA_BODIES[("POST", "/infill")] = native.InfillBody
EXTRA_BODIES[("POST", "/embedding")] = native.EmbeddingBody
EXTRA_BODIES[("POST", "/models/load")] = native.ModelNameBody
EXTRA_BODIES[("POST", "/models/unload")] = native.ModelNameBody
RESPONSES[("POST", "/embedding")] = {"200": ("One result per input: its index and its vectors (the pooled one, or "
                                             "with pooling none one per token)", {"application/json": {
    "type": "array", "items": {"type": "object", "required": ["index", "embedding"], "properties": {
        "index": {"type": "integer", "minimum": 0},
        "embedding": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}}})}
RESPONSES[("GET", "/slots")] = {"200": ("The model's slots, each with the request it runs (else the last one it ran)",
                                        {"application/json": {
    "type": "array", "items": {"type": "object", "required": ["id", "n_ctx", "speculative", "is_processing"],
                               "properties": {"id": {"type": "integer"}, "n_ctx": {"type": "integer"},
                                              "speculative": {"type": "boolean"},
                                              "is_processing": {"type": "boolean"},
                                              "id_task": {"type": "integer"},
                                              "n_prompt_tokens": {"type": "integer"},
                                              "n_prompt_tokens_processed": {"type": "integer"},
                                              "n_prompt_tokens_cache": {"type": "integer"},
                                              "params": {"type": "object"},
                                              "next_token": {"type": "array", "items": {
                                                  "type": "object", "properties": {
                                                      "has_next_token": {"type": "boolean"},
                                                      "has_new_line": {"type": "boolean"},
                                                      "n_remain": {"type": "integer"},
                                                      "n_decoded": {"type": "integer"}}}}}}}})}
RESPONSES[("POST", "/slots/{id_slot}")] = {"200": (
    "Done: a save's n_saved/n_written, a restore's n_restored/n_read (each with its timings), an erase's n_erased",
    {"application/json": {"type": "object", "required": ["id_slot"], "properties": {
        "id_slot": {"type": "integer"}, "filename": {"type": "string"}, "n_saved": {"type": "integer"},
        "n_written": {"type": "integer"}, "n_restored": {"type": "integer"}, "n_read": {"type": "integer"},
        "n_erased": {"type": "integer"}, "timings": {"type": "object"}}}})}
_LORA_ADAPTER = {"type": "object", "required": ["id", "path", "scale"], "properties": {
    "id": {"type": "integer"}, "path": {"type": "string"}, "scale": {"type": "number"},
    "task_name": {"type": "string"}, "prompt_prefix": {"type": "string"}}}
RESPONSES[("GET", "/lora-adapters")] = {"200": ("The model's LoRA adapters, with the scales requests that name no "
                                                "'lora' run under", {"application/json": {
    "type": "array", "items": _LORA_ADAPTER}})}
RESPONSES[("POST", "/lora-adapters")] = {"200": ("Done: requests submitted from now on run under these scales",
                                                 {"application/json": {"type": "object", "required": ["success"],
                                                                       "properties": {"success": {"const": True}}}})}
for _path in ("/models/load", "/models/unload"):
    RESPONSES[("POST", _path)] = {"200": ("Done", {"application/json": {
        "type": "object", "required": ["success"], "properties": {"success": {"const": True}}}})}
for _path in ("/completion", "/infill"):
    RESPONSES[("POST", _path)] = {"200": (
        "llama-server's result (a list of them for several prompts or n_cmpl), or with stream: true its partial "
        "results as server-sent events, each result's last with stop: true", {"application/json": None,
                                                                               "text/event-stream": None})}


async def _prompts(request: web.Request, model_name: str | None, prompt: native.Prompt,
                   param: str = "prompt", field: str | None = None) -> tuple[tuple[Any, ...], list[str]]:
    """:func:`_tokenized_prompts`, told at once at a stop (the 503 ``server_shutdown``): tokenizing loads the model
    first where it is not loaded, and a long prompt takes seconds, as a generation waiting is told."""
    return await unless_stopping(request, _tokenized_prompts(request, model_name, prompt, param, field), WAIT_SHUTDOWN)


async def _tokenized_prompts(request: web.Request, model_name: str | None, prompt: native.Prompt,
                             param: str = "prompt", field: str | None = None) -> tuple[tuple[Any, ...], list[str]]:
    """The body's prompts as token ids, their text pieces tokenized with the model's vocabulary as llama-server
    does (special tokens parsed, BOS only before a leading text piece), and each one's text for the result's
    ``prompt`` (llama-server's: the tokens' pieces, BOS and special tokens spelled out); a prompt object with
    media its typed prompt (:class:`~jan.services.types.MediaText`) and its text. Token ids on a local
    model, so that every partial result tells ``tokens_evaluated`` as llama-server's do; text prompts stay text
    on an engine that cannot tell token pieces (a remote one). ``field``: the body's field that holds them, where it
    is not ``param`` (an embedding body's ``content``), to name a media item's."""
    prompts: list[Any] = []
    texts: list[str] = []
    engine = model = abilities = None
    body_prompt = prompt
    for k, prompt in enumerate(native.prompts_of(body_prompt)):
        if isinstance(prompt, ContentPrompt):  # (an embedding's: its text, with its media where it has any)
            prompt = await body_step(wire.content_prompt, prompt, native.prompt_field(body_prompt, k, field or param))
        if isinstance(prompt, MediaText):
            prompts.append(prompt)
            texts.append(prompt.text)
            continue
        if isinstance(prompt, native.MediaPrompt):
            # text with media: decoded (base64) as the body is, tokenized with its media by the completion (or
            # embedding) service, as llama-server tokenizes a prompt object for either
            typed = await body_step(native.media_text, prompt, native.prompt_field(body_prompt, k, field or param))
            prompts.append(typed)
            texts.append(typed.text)
            continue
        if engine is None:
            target = await request.app[SERVICES].models.resolve(model_name)
            model, engine = target.model, target.engine
            abilities = await request.app[SERVICES].models.abilities(target)
        if abilities is not None and not isinstance(prompt, str):
            # an id outside the vocabulary is refused as the body's element that holds it (``content[0][2]``),
            # before spelling it or tokenizing the text pieces around it (the spelling named it "token")
            problem = token_ids_refusal(abilities, prompt, native.prompt_field(body_prompt, k, field or param))
            if problem is not None:
                raise problem
        pieces = getattr(engine, "token_pieces", None)
        if isinstance(prompt, str) and pieces is None:
            prompts.append(prompt)
            texts.append(prompt)
            continue
        ids: list[int] = []
        with engine_failures(engine, "tokenize()"):
            for i, piece in enumerate([prompt] if isinstance(prompt, str) else prompt):
                if isinstance(piece, str):
                    ids += await engine.tokenize(model, piece, add_special=i == 0, parse_special=True)
                else:
                    ids.append(piece)
            if not ids:
                if isinstance(prompt, str):  # ("" on a model without a BOS: the completion path answers it)
                    prompts.append(prompt)
                    texts.append(prompt)
                    continue
                raise APIError(400, f"{param}: must not be empty", param=param, code="invalid_value")
            texts.append(await _spelled(engine, model, ids))
        prompts.append(tuple(ids))
    return tuple(prompts), texts


async def _spelled(engine: Any, model: dict[str, Any], ids: list[int]) -> str:
    """Token ids as llama-server spells a prompt: each token's piece, special ones as their text (the engine's
    detokenize, as llama-server's /detokenize spells them: jan.Model.spell on a local model)."""
    return await engine.detokenize(model, ids)


async def _preserved_ids(engine: Any, model: dict[str, Any], texts: list[str] | None) -> tuple[int, ...]:
    """The ids of a body's ``preserved_tokens`` as the completion service finds them (:func:`single_tokens`), for
    ``generation_settings`` to tell as llama-server does; none on an engine that cannot tokenize."""
    if not texts or getattr(engine, "tokenize", None) is None:
        return ()
    with engine_failures(engine, "tokenize()"):
        return single_tokens([await engine.tokenize(model, t, add_special=False, parse_special=True) for t in texts])


async def _fim_refusal(request: web.Request, model: str | None) -> APIError:
    """A model without fill-in-the-middle tokens, in llama-server's words (naming the model: jan serves several)."""
    with contextlib.suppress(Exception):  # (resolved a moment ago: the name, never another failure)
        model = (await request.app[SERVICES].models.resolve(model)).id
    return APIError(400, f"Infill is not supported by this model ('{model}'): it has no fill-in-the-middle tokens "
                         "(prefix, suffix, middle)", param="input_suffix", code="not_supported")


async def _answer(request: web.Request, body: native.CompletionBody, typed: CompletionRequest,
                  prompt_texts: list[str], infill: bool = False) -> web.StreamResponse:
    """Run ``typed`` and answer it as llama-server's results, whole or streamed."""
    stream = request.app[SERVICES].completions.stream(typed)
    try:
        first = await first_item(request, stream, typed.model)
    except RequestError as exc:
        if infill and exc.param == "suffix" and exc.code == "not_supported":
            raise await _fim_refusal(request, typed.model) from None
        raise
    model_id = stream.model or typed.model or ""
    try:
        model, engine = await model_and_engine(request, model_id or None)
        sampling = native.resolved(typed.sampling, model.get("parameters"))
        speculative, adapters = await _speculation(engine, model, model_id, sampling)
        preserved = await _preserved_ids(engine, model, body.preserved_tokens)
    except BaseException:
        await stream.aclose()  # (the generation started: stopped, not left to the garbage collector)
        raise
    n_predict = body.n_predict if body.n_predict is not None else (sampling.max_tokens or -1)
    n_results = len(typed.prompts) * typed.n
    samplers = native.applied_samplers(body.samplers)  # (checked already, by the request's conversion)
    results = native.NativeResults(
        model_id, lambda: native.generation_settings(sampling, n_predict, model=model_id, samplers=samplers,
                                                     n_probs=body.n_probs or 0, stream=body.stream,
                                                     post_sampling_probs=bool(body.post_sampling_probs),
                                                     timings_per_token=bool(body.timings_per_token),
                                                     grammar=typed.grammar or "", speculative=speculative,
                                                     lazy=body, adapters=adapters, preserved=preserved),
        n_results=n_results,
        return_tokens=body.return_tokens,
        prompt_texts=[t for t in prompt_texts for _ in range(typed.n)], clock=time.monotonic,
        post_sampling=typed.post_sampling_probs, timings_per_token=bool(body.timings_per_token))

    async def prompt_count(i: int) -> int | None:
        """Tokens of result ``i``'s prompt, where the generation ended before the engine told them."""
        prompt = typed.prompts[i // typed.n]
        if isinstance(prompt, MediaText):
            return None  # (its media's tokens: the engine's usage tells them, nothing here can)
        if not isinstance(prompt, str):
            return len(prompt)
        model_, engine = await model_and_engine(request, model_id)
        return len(await engine.tokenize(model_, prompt, add_special=True, parse_special=True))

    async def finals(stream_mode: bool, only: set[int] | None = None) -> list[dict[str, Any]]:
        """The last objects of the results (of those in ``only`` when given)."""
        wanted = [i for i in range(n_results) if only is None or i in only]
        counts = {i: await prompt_count(i) for i in wanted if (c := results.choices[i]).usage is None
                  and c.prompt_ids is None and n_results > 1}
        if infill:  # the prompt the model read, its FIM tokens spelled out (llama-server's "prompt" of an infill)
            model_, engine = await model_and_engine(request, model_id)
            for i in wanted:
                if (ids := results.choices[i].prompt_ids) is not None:
                    with engine_failures(engine, "token_pieces()"):
                        results.prompt_texts[i] = await _spelled(engine, model_, list(ids))
        out = [r for r in results.finals(counts.get) if r["index"] in wanted]
        if stream_mode:
            for r in out:
                # (the text went out in the partials; tokens that came with none since are told here)
                r.update(content="", tokens=results.choices[r["index"]].unsent_tokens)
                r.pop("completion_probabilities", None)
        return [native.pick_fields(r, body.response_fields) for r in out]

    if not body.stream:
        async def collect() -> list[dict[str, Any]]:
            async with stream:
                if first is not None:
                    results.add(first)
                async for delta in stream:
                    results.add(delta)
            return await finals(False)

        answer = await unless_disconnected(request, collect(), model_id)
        return await json_response_built(lambda: answer[0] if len(answer) == 1 else answer,
                                         values=_values(answer, body.n_probs or 0))

    sent: set[int] = set()  # results whose last object went out

    async def events() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        # closing this generator (a client gone, the server shutting down) closes the stream: the engine stops
        async with stream:
            if first is not None:
                chunk = results.add(first)
                if chunk is not None:
                    yield "", chunk  # (no event name: llama-server's lines are data only)
            async for delta in stream:
                raise_if_ended(request)  # (a delta with no object to send writes nothing that would notice)
                chunk = results.add(delta)
                if chunk is not None:
                    yield "", chunk
                if n_results > 1 and delta.finish_reason is not None:
                    # each result's last object as it ends, as llama-server sends it (one result's waits
                    # for the engine's usage, at the end)
                    for result in await finals(True, {delta.choice} - sent):
                        sent.add(delta.choice)
                        yield "", result
        for result in await finals(True, set(range(n_results)) - sent):
            yield "", result

    return await relay(request, events(), lambda err: ("", native.error_body(err)))


def _values(answer: list[dict[str, Any]], n_probs: int) -> int:
    """About how many JSON values the results hold (a big answer is encoded off the event loop): their settings,
    their token ids, each scored token with its alternatives."""
    return sum(40 + len(r.get("tokens") or ()) + 5 * (1 + n_probs) * len(r.get("completion_probabilities") or ())
               for r in answer)


@routes.post("/completion")
@prompt_param("prompt")
async def completion(request: web.Request) -> web.StreamResponse:
    """llama-server's native completion: ``prompt`` (text, token ids, both mixed, or a list of prompts), its
    sampling fields and ``n_predict``; answered as its results, or streamed with ``stream: true``."""
    body = await parse_body(request, native.CompletionBody)
    # More prompts than the model can ever run at once are refused before each is tokenized (a hop to a worker
    # thread or two each), as the completion service would refuse them after
    count = len(native.prompts_of(body.prompt))
    if count * (body.n_cmpl or 1) > 1:
        model, engine = await model_and_engine(request, body.model)
        refuse_fan_out(engine, model, count * (body.n_cmpl or 1), "prompt" if count > 1 else "n")
    prompts, texts = await _prompts(request, body.model, body.prompt)
    body = await _text_biases(request, body)
    typed = await body_step(native.completion_request, body, prompts)
    try:
        return await _answer(request, body, typed, texts)
    except MediaError as exc:  # a prompt's media the model cannot take: said of the field that held them
        raise native.media_error(exc, body.prompt) from None


@routes.post("/infill")
@prompt_param("input_prefix")
async def infill(request: web.Request) -> web.StreamResponse:
    """llama-server's code infill (llama.vscode, llama.vim): the code between ``input_prefix`` (with ``prompt``, the
    text typed after it) and ``input_suffix``, after ``input_extra``'s files, for a model with FIM tokens."""
    body = await parse_body(request, native.InfillBody)
    body = await _text_biases(request, body)
    # the text typed after the prefix joins it as text: llama-server tokenizes it apart, which for a SentencePiece
    # vocabulary puts a space before it that the user never typed
    typed = await body_step(native.completion_request, body, (body.input_prefix + body.prompt,), body.input_suffix,
                            native.infill_extra(body))
    return await _answer(request, body, typed, [body.input_prefix + body.prompt], infill=True)


async def _text_biases(request: web.Request, body: Any) -> Any:
    """``body`` with the tokens its ``logit_bias`` gives as text (``[["Hello", -0.5]]``, ``{"Hello": -0.5}``) as
    the ids of that text's tokens, each with its bias, as llama-server applies such an entry (its text tokenized
    without special tokens, as it is); ``body`` itself where none is text, or where the model's engine cannot
    tokenize (a remote one: :func:`~jan.server.dialects.llamacpp.completion_request` then refuses the text). Ids,
    entries that are no pair and biases that are no number are left to that check.

    The list is walked, and rebuilt, where the body's size says (:func:`body_step`): a 10 MB list of a million
    pairs was walked on the event loop, a second and more during which no other request was answered. Each text
    is tokenized once, however often it is given."""
    value = body.logit_bias
    texts = await body_step(native.bias_texts, value)
    if not texts:
        return body
    model, engine = await model_and_engine(request, body.model)
    if getattr(engine, "tokenize", None) is None:
        return body

    async def token_ids() -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {}
        for text in texts:
            with engine_failures(engine, "tokenize()"):
                ids[text] = await engine.tokenize(model, text, add_special=False, parse_special=False)
        return ids
    # (tokenizing loads the model first where it is not loaded: an /infill's first wait. Told at once at a stop, as
    # the prompts' tokenizing is)
    ids = await unless_stopping(request, token_ids(), WAIT_SHUTDOWN)
    return body.model_copy(update={"logit_bias": await body_step(native.biases_with_ids, value, ids)})


async def _status(engine: Any, model_id: str) -> dict[str, Any]:
    """The engine's status of the model, bounded in time (:func:`model_state`); ``{}`` where it cannot tell (no
    ``model_status``, or it failed or hung): that fails no answer, the model reads as not loaded."""
    if getattr(engine, "model_status", None) is None:
        return {}
    status = await model_state(engine, model_id)
    return {} if status.get("status") == ModelState.FAILED else status


def _load_options(engine: Any, model: dict[str, Any]) -> LoadOptions:
    """What the engine loads (or would load) the model with: model.json settings > flags > its settings > defaults."""
    load_options = getattr(engine, "load_options", None)
    return load_options(model) if load_options is not None else \
        resolve_load(LoadOptions.from_model_settings(model.get("settings")))


async def _served(request: web.Request) -> tuple[Any, dict[str, Any], LoadOptions]:
    """The default (or only loaded) model, or ``?model=``'s; its engine's status (empty where the engine cannot
    tell: that fails no /props, no /slots); its load options (loaded or not)."""
    target = await request.app[SERVICES].models.resolve(request.query.get("model") or None)
    return target, await _status(target.engine, target.id), _load_options(target.engine, target.model)


def _draft_in_use(status: dict[str, Any], model: dict[str, Any], load: LoadOptions) -> str | None:
    """The model's draft model: the loaded one's, else the one it would load with (its own, else the server's)."""
    if status.get("status") == ModelState.READY:
        return status.get("draft_model")
    return model.get("draft_model_path") or load.draft_model or None


def _speculative_mode(sampling: SamplingOptions, status: dict[str, Any], model: dict[str, Any],
                      load: LoadOptions) -> str:
    """What the model's requests draft with (llama-server's ``speculative.types``): the sampling's mode over the
    load's, with the draft model it loaded (or would load)."""
    return native.speculation(sampling.speculative, load.speculative, _draft_in_use(status, model, load))


async def _speculation(engine: Any, model: dict[str, Any], model_id: str, sampling: SamplingOptions
                      ) -> tuple[str, list[float] | None]:
    """:func:`_speculative_mode` of a request's resolved ``sampling``, and the default scales of the model's LoRA
    adapters (:func:`_adapter_scales`), for ``generation_settings``."""
    status = await _status(engine, model_id or model.get("id") or "")
    return _speculative_mode(sampling, status, model, _load_options(engine, model)), _adapter_scales(status)


def _adapter_scales(status: dict[str, Any]) -> list[float] | None:
    """The scales a request that names no ``lora`` runs under, one per adapter of the loaded model (its status'),
    in id order; None where the status tells no adapters (not loaded, or an engine without them)."""
    adapters = status.get("lora")
    return [a["scale"] for a in adapters] if isinstance(adapters, list) else None


def _model_sampling(model: dict[str, Any]) -> SamplingOptions:
    """The model's own sampling (its model.json ``parameters`` over the defaults): ``/props``' and ``/slots``'."""
    return resolve_sampling(model_sampling(model))


@routes.get("/props")
async def props(request: web.Request) -> web.Response:
    """llama-server's server properties for the default (or only loaded) model, or ``?model=``'s: its generation
    defaults, slots, context, chat template, modalities."""
    services = request.app[SERVICES]
    target, status, load = await _served(request)
    loaded = status.get("status") == ModelState.READY
    abilities = await services.models.abilities(target)
    n_ctx = status.get("n_ctx") or load.n_ctx  # (None before a load that picks the model's own)
    sampling = _model_sampling(target.model)
    speculative = _speculative_mode(sampling, status, target.model, load)
    template = abilities.template if abilities is not None else None
    # the weights' type as llama.cpp names it: the loaded model's, else its header's (read once per file version);
    # the template's capabilities (probe renders, kept per template): both off the event loop
    ftype = status.get("ftype")
    if not (isinstance(ftype, str) and ftype):  # (an engine that tells none, or no text: the header's)
        ftype = await asyncio.to_thread(_header_ftype, target.model.get("file_path"))
    caps = await asyncio.to_thread(lambda: template.llama_caps) if template is not None else {}
    return json_response({
        "default_generation_settings": {"params": native.generation_settings(sampling, -1, speculative=speculative,
                                                                             adapters=_adapter_scales(status)),
                                        "n_ctx": n_ctx or 0},
        "total_slots": status.get("n_parallel") or load.n_parallel,
        "model_alias": target.id,
        "model_path": target.model.get("file_path") or "",
        "model_ftype": ftype,
        "modalities": {"vision": bool(abilities and abilities.vision), "audio": bool(abilities and abilities.audio),
                       "video": False},
        "chat_template": template.source if template is not None else "",
        "chat_template_caps": caps,
        # (the GGUF's tool_use variant, which a request with tools renders in, as llama-server tells it)
        **({"chat_template_tool_use": template.tool_use.source}
           if template is not None and template.tool_use is not None else {}),
        "bos_token": getattr(template, "bos_token", "") or "",
        "eos_token": getattr(template, "eos_token", "") or "",
        "infill": bool(abilities and abilities.fim),
        # what stands for an image or audio clip in a prompt object's prompt_string: llama-server 0.3.36 makes one
        # at start and tells it only here, so its clients read it from /props (jan takes libmtmd's default)
        "media_marker": MEDIA_MARKER,
        "build_info": f"jan {jan.__version__}",
        # the endpoints llama-server's flags turn on or off: /slots unless --no-slots, /metrics always, POST /props
        # never
        "endpoint_slots": request.app[CONFIG].endpoint_slots, "endpoint_metrics": True, "endpoint_props": False,
        "is_sleeping": not loaded,
        # whether a chat page is served at / (jan's own, always: llama-server's unless --no-webui), the settings
        # llama-server's --webui-config gives its page (none here), and whether it proxies the page's MCP servers
        # (--webui-mcp-proxy: jan has no /cors-proxy)
        "ui": True, "ui_settings": {}, "cors_proxy_enabled": False,
    })


def _header_ftype(path: Any) -> str:
    """The weights' type its GGUF header tells, as llama.cpp names it (``general.file_type``, else llama.cpp's guess
    from the tensors: what a load would say), "" where there is none to read (a remote model, a file not
    downloaded). Blocking: the first read of a header is a vocab-only load."""
    return ollama_models.gguf_details(path if isinstance(path, str) else None).ftype


@routes.post("/embedding")
@prompt_param("input")
async def embedding(request: web.Request) -> web.Response:
    """llama-server's native embeddings: ``input`` (or ``content``) as text, token ids, both mixed or a list of
    them, ``embd_normalize``; answered as a list of ``{"index", "embedding"}``, ``embedding`` the pooled vector in a
    list, or with pooling none a vector per token."""
    body = await parse_body(request, native.EmbeddingBody)
    # more inputs than one request may have are refused before each is tokenized, as the service would after
    if (problem := embedding_inputs_refusal(len(native.prompts_of(body.inputs)), body.inputs_field)) is not None:
        raise problem
    await fetch_body_images(body, request.app[MEDIA_FETCHER])  # (a content input's image URLs, as a chat's)
    inputs, _ = await _prompts(request, body.model, body.inputs, param="input", field=body.inputs_field)
    if any(x == "" for x in inputs):  # (no token at all: a vocabulary that adds none to an empty text)
        raise APIError(400, f"{body.inputs_field}: Input content cannot be empty", param=body.inputs_field,
                       code="invalid_value")
    typed = await body_step(native.embedding_request, body, inputs)
    try:
        result = await unless_disconnected(request, request.app[SERVICES].embeddings.embed(typed), body.model)
    except MediaError as exc:  # an input's media the model cannot take: said of the field that held them
        raise native.media_error(exc, body.inputs, body.inputs_field) from None
    return await json_response_built(lambda: native.embedding_results(result),
                                     values=sum(getattr(v, "size", None) or len(v) for v in result.vectors))


@routes.get("/slots")
async def slots(request: web.Request) -> web.Response:
    """llama-server's slots of the default (or only loaded) model, or ``?model=``'s: each one's ``id``, ``n_ctx``,
    ``speculative`` and ``is_processing``, and of the request it runs (else the last one it ran) its ``id_task``,
    token counts, ``params`` and ``next_token``; ``?fail_on_no_slot=1`` answers 503 when none is idle. A server
    started with ``--no-slots`` answers llama-server's 501."""
    if not request.app[CONFIG].endpoint_slots:
        raise APIError(501, "This server does not support slots endpoint. Start it with `--slots`",
                       type="not_supported_error", code="not_supported")
    target, status, load = await _served(request)
    if getattr(target.engine, "slots_call", None) is not None:  # a remote model: its upstream's slots
        return await _forwarded(target.engine.slots_call(target.model,
                                                         fail_on_no_slot=bool(request.query.get("fail_on_no_slot"))))
    loaded = status.get("status") == ModelState.READY
    infos = None
    if loaded and getattr(target.engine, "slots_info", None) is not None:
        infos = await target.engine.slots_info(target.id)
    n_slots = (len(infos) if infos else None) or (status.get("n_parallel") if loaded else None) or load.n_parallel or 1
    n_ctx = (status.get("n_ctx") if loaded else None) or load.n_ctx or 0
    if infos is not None:
        busy = sum(bool(info.is_processing) for info in infos)
    else:  # (an engine that tells only how many slots are busy)
        busy = min(int(status.get("active_requests") or 0), n_slots) if loaded else 0
    if request.query.get("fail_on_no_slot") and busy >= n_slots:
        raise APIError(503, "no slot available", type="unavailable_error", code="no_slot_available")
    # whether the slots draft (llama-server's "speculative"): the model's own mode as /props tells it, n-gram included
    drafts = _speculative_mode(_model_sampling(target.model), status, target.model, load)
    return json_response(native.slots(n_slots, busy, n_ctx, drafts != "none", infos))


@routes.post("/slots/{id_slot}")
async def slot_action(request: web.Request) -> web.Response:
    """llama-server's slot actions on the default (or only loaded) model, or the one the body's ``model`` (as
    llama-server's router reads it) or ``?model=`` names: ``?action=save`` or
    ``restore`` with ``{"filename": ...}`` (a file in the server's ``--slot-save-path``), or ``erase``. Refused
    (501, llama-server's words) when the server was started without ``--slot-save-path``."""
    # (a slot id or action that is no such thing is the request's 400 whatever the server serves; llama-server looks
    # at its folder first, so that there such a request is its 501 too)
    raw_id = request.match_info["id_slot"]
    id_slot = int(raw_id) if raw_id.isascii() and raw_id.isdigit() else None
    if id_slot is None:
        raise APIError(400, "Invalid slot ID", param="id_slot", code="invalid_value")
    action = request.query.get("action", "")
    if action not in native.SLOT_ACTIONS:
        raise APIError(400, "Invalid action", param="action", code="invalid_value")
    body: Any = {}
    unread: APIError | None = None
    try:
        body = await read_json(request) if action != "erase" or request.body_exists else {}
    except APIError as exc:  # (told after the 501, as llama-server looks at its folder first)
        unread = exc
    remote = await _remote_target(request, body)
    if remote is not None:  # (the file is the upstream's, in its own --slot-save-path: its checks, its answer)
        if unread is not None:
            raise unread
        sent = {"filename": body.get("filename")} if isinstance(body, dict) and "filename" in body else {}
        # (the upstream's answer is not waited for past the stop, as a local action's is not)
        return await _forwarded(unless_stopping(request, remote.engine.slots_call(remote.model, id_slot, action, sent),
                                                SLOT_SHUTDOWN, watch_client=False))
    folder = request.app[CONFIG].slot_save_path
    if not folder:
        raise APIError(501, "This server does not support slots action. Start it with `--slot-save-path`",
                       type="not_supported_error", code="not_supported")
    if unread is not None:
        raise unread
    filename = path = None
    if action != "erase":
        filename = body.get("filename") if isinstance(body, dict) else None
        path = native.slot_file(folder, filename)
        if path is None:
            raise APIError(400, "Invalid filename", param="filename", code="invalid_value")
    if action == "save":
        # the folder jan serve was started with, deleted since (a cleanup of /tmp, the user): made again, as at the
        # start, not a 500 for each save; one that cannot be made is the engine's error saying why
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
    target = await request.app[SERVICES].models.resolve(_slot_model(request, body))
    run = getattr(target.engine, "slot_action", None)
    if run is None:
        raise APIError(400, f"model '{target.id}' runs on an engine without slots", param="model",
                       code="invalid_value")
    # A busy slot's action waits for its request to end (llama-server's defer), on a thread nothing can cut short:
    # at a stop the client is told now, as every request still waiting is, not after the stop's grace period. The
    # action may load the model first: a stop during that load is told so too.
    try:
        result = await unless_stopping(request, run(target.model, action, id_slot, path), SLOT_SHUTDOWN,
                                       watch_client=False)  # (a save or restore asked for goes on without its client)
    except BadRequestError as exc:
        raise _said_as_llama_server(exc) from None
    return json_response(native.slot_result(action, filename, result))


#: The arguments of :meth:`jan.Model.slot_action` a refusal names -> the field of llama-server's request that gave it.
_SLOT_FIELDS = {"action": "action", "id_slot": "id_slot", "path": "filename"}


def _said_as_llama_server(exc: BadRequestError) -> BadRequestError:
    """A refusal of :meth:`jan.Model.slot_action`, whose message begins with the library's argument (the library's
    rule: ``id_slot: Invalid slot ID: 3 (...)``, ``path: ...``), in llama-server's words, which its dialect answers
    (``Invalid slot ID: 3 (...)``), naming the request's field (its body's ``filename``, not the call's ``path``)."""
    field = _SLOT_FIELDS.get(exc.param or "")
    if field is None:
        return exc
    exc.args = (str(exc).removeprefix(f"{exc.param}: "), *exc.args[1:])
    exc.param = field
    return exc


async def _remote_target(request: web.Request, body: Any) -> Any:
    """The target of a slot action when its model is a remote one (its engine forwards slot routes: ``slots_call``),
    else None. A model that cannot be resolved is None too: the local checks (the 501 without ``--slot-save-path``,
    the filename) come first for it, as before, and its own error after them."""
    try:
        target = await request.app[SERVICES].models.resolve(_slot_model(request, body))
    except (APIError, jan.JanError, RequestError):
        return None
    return target if getattr(target.engine, "slots_call", None) is not None else None


async def _forwarded(call: Any) -> web.Response:
    """A remote model's slot route answered as its upstream answered it: the JSON as it is, or its refusal (llama-
    server's 400 for a bad slot, action or file, its 501 without ``--slot-save-path``, its 503 for no idle slot) in
    llama-server's shape with the upstream's message."""
    status, payload = await call
    if status < 400:
        return json_response(payload)
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    raise APIError(status, message if isinstance(message, str) and message else f"the upstream answered {status}",
                   type=kind if isinstance(kind, str) and kind else "invalid_request_error", code="upstream_error")


def _slot_model(request: web.Request, body: Any) -> str | None:
    """The model a slot action is for: the body's ``model``, as llama-server's router reads a POST's (a slot action
    that named one there went to the default model), or ``?model=``; both, naming two models, a 400."""
    named = body.get("model") if isinstance(body, dict) else None
    if named is not None and (not isinstance(named, str) or not named):
        raise APIError(400, "model: must be a model id", param="model", code="invalid_value")
    query = request.query.get("model") or None
    if named and query and named != query:
        raise APIError(400, f"model: the body names '{named}' and ?model= '{query}'; give one", param="model",
                       code="invalid_value")
    return named or query


async def _lora_adapters(request: web.Request, adapters: Any = None) -> list[dict[str, Any]]:
    """The LoRA adapters of the default (or only loaded) model, or ``?model=``'s (loaded if need be), their default
    scales set to ``adapters`` first when given."""
    target = await request.app[SERVICES].models.resolve(request.query.get("model") or None)
    lora_adapters = getattr(target.engine, "lora_adapters", None)
    if lora_adapters is None:
        if adapters is None:
            return []  # (an engine without adapters: none to list)
        raise APIError(400, f"model '{target.id}' runs on an engine without LoRA adapters", param="model",
                       code="invalid_value")
    try:
        # (it may load the model; scales being set are set whether their client waits or not)
        return await unless_stopping(request, lora_adapters(target.model, adapters), watch_client=adapters is None)
    except jan.BadRequestError as exc:
        raise APIError(400, str(exc), param=exc.param or "lora", code=exc.code or "invalid_value") from None


@routes.get("/lora-adapters")
async def get_lora_adapters(request: web.Request) -> web.Response:
    """llama-server's LoRA adapters of the default (or only loaded) model, or ``?model=``'s: each one's ``id``,
    ``path``, ``scale`` (what requests that name no ``lora`` run under), ``task_name`` and ``prompt_prefix``."""
    return json_response(await _lora_adapters(request))


@routes.post("/lora-adapters")
async def post_lora_adapters(request: web.Request) -> web.Response:
    """llama-server's: set the default scales of the model's LoRA adapters (``?model=``, as ``GET``) for requests
    submitted from now on: ``[{"id": 0, "scale": 0.5}, ...]``, the adapters not listed at 0."""
    body = await read_json(request)
    if not isinstance(body, list):
        raise APIError(400, "Request body must be an array", param="lora", code="invalid_type")
    await _lora_adapters(request, body)
    return json_response({"success": True})


#: Load settings a router-mode body might carry (a model.json's names, the engine's, the companion files'): llama-server
#: reads nothing but ``model`` there and drops the rest unsaid, which reads as applied.
_LOAD_SETTINGS = frozenset([*LoadOptions.MODEL_JSON_KEYS, *LoadOptions.MODEL_JSON_KEYS.values(), "draft_model",
                            "mmproj", "lora", "chat_template"])


def _no_load_settings(request: web.Request, body: native.ModelNameBody) -> None:
    """A 400 naming the first load setting a ``/models/load`` or ``/models/unload`` body sends (``cache_type_k``,
    ``ctx_len``, ``draft_model``, ...), saying where load settings go, as ``POST /v1/models/{id}/start`` does: they
    were ignored as llama-server ignores fields it does not know, so ``{"model": "m", "cache_type_k": "q8_0"}``
    loaded the model with its stored cache type and answered success. Other unknown fields stay ignored, as
    llama-server's."""
    given = [name for name in body.model_extra or {} if name in _LOAD_SETTINGS]
    if given:
        raise APIError(400, f"{given[0]}: {request.method} {request.path} takes no load settings (a model's load "
                            f"settings are its model.json's: PATCH /v1/models/{body.model} with "
                            "{\"settings\": {...}} before it loads)", param=given[0], code="unknown_parameter")


async def _router_model(request: web.Request, missing_status: int) -> tuple[dict[str, Any], Any, bool]:
    """The model ``POST /models/load`` or ``/models/unload`` names, its engine, and whether it is loaded or loading;
    a name jan does not serve answers ``missing_status`` with llama-server's words."""
    body = await parse_body(request, native.ModelNameBody)
    _no_load_settings(request, body)
    try:
        model, engine = await model_and_engine(request, body.model)
    except ModelNotFoundError:
        raise APIError(missing_status, f"model is not found: '{body.model}'", param="model",
                       code="not_found" if missing_status == 404 else "invalid_value") from None
    state = (await model_state(engine, model["id"])).get("status")
    return model, engine, state in (ModelState.READY, ModelState.LOADING)


@routes.post("/models/load")
async def router_load(request: web.Request) -> web.Response:
    """llama-server's router mode: load ``model`` (jan's model start); ``{"success": true}`` once loaded."""
    model, engine, running = await _router_model(request, 404)
    if running:
        raise APIError(400, "model is already running", param="model", code="invalid_value")
    await unless_stopping(request, engine.load_model(model))
    return json_response({"success": True})


@routes.post("/models/unload")
async def router_unload(request: web.Request) -> web.Response:
    """llama-server's router mode: unload ``model`` now (jan's model stop: its running requests end as cancelled);
    ``{"success": true}`` once unloaded."""
    try:
        model, engine, running = await _router_model(request, 400)
    except APIError:  # its model.json damaged or removed while it is loaded: the loaded copy still stops
        name = (await parse_body(request, native.ModelNameBody)).model  # (the body read once, kept by aiohttp)
        if await request.app[SERVICES].models.unload_unlisted(name):
            return json_response({"success": True})
        raise
    if not running:
        raise APIError(400, "model is not running", param="model", code="invalid_value")
    await unload_now(engine, model["id"])
    return json_response({"success": True})
