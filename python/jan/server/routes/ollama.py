"""Ollama's API (``/api/*``) on jan's port, for Ollama clients (Open WebUI, Continue, LangChain's
``ChatOllama``, the ``ollama`` packages): a thin adapter over :mod:`jan.services`.

Each handler parses Ollama's body (:mod:`jan.server.dialects.ollama_schemas`), builds the typed
request (:mod:`~jan.server.dialects.ollama_requests`), calls the service and formats what comes
back (:mod:`~jan.server.dialects.ollama_responses`, :mod:`~jan.server.dialects.ollama_models`).
Streams are NDJSON (``application/x-ndjson``), one object per line. Errors are Ollama's
``{"error": "..."}`` with the HTTP status Ollama uses, also as the last line of a stream that
already started. Model names are jan's model ids, found as Ollama finds names: in any case, with Ollama's defaults
(the tag ``latest``, the namespace ``library``) accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from jan.core import LocalInferenceExtension
from jan.core.engine_answers import model_state
from jan.downloads import DownloadCancelledError, DownloadError, filename_from_url
from jan.json_text import one_line_json
from jan.errors import CTX_LEN, MediaError, ModelLoadError, ModelNotFoundError, not_found_message
from jan.server.dialects import ollama_models, ollama_requests
from jan.server.dialects import ollama_schemas as wire
from jan.server.dialects.ollama_responses import OllamaEncoder, Timing
from jan.server.disconnect import WAIT_SHUTDOWN, first_item, raise_if_gone, unless_disconnected, unless_stopping
import jan.server.dialect_errors  # noqa: F401 - registers Ollama's error shape
from jan.server.errors import APIError, from_validation_error, to_api_error
from jan.server.sse import close_unframed
from jan.server.body_read import BodyLimit, blob_space_error, body_limit
from jan.server.jsonio import json_response_built, json_text, text_values
from jan.server.keys import CONFIG, SERVICES, SHUTTING_DOWN
from jan.server.route_state import prune_blobs
from jan.server.routes.models import model_facts
from jan.server.routes.docs import DIALECT_ERRORS, EXTRA_BODIES, RESPONSES
from jan.server.validation import (body_is_large, body_step, check_json_values, loads_bounded,
                                   request_json_values_limit)
from jan.store.aio import write_through
from jan.services import Services, Target
from jan.services.companions import lora_problem
from jan.services.errors import PrefillGrammarError, RequestError
from jan.templates.grammar import GrammarError
from jan.services.models import require_generating, unload_now, unload_replaced
from jan.services.types import CompletionDelta, TokenLogprob, Usage
from jan.store import AlreadyExistsError, InvalidArgumentError
from jan.store.blobs import BlobStore, InvalidDigestError
from jan.store.ids import is_valid_id
from jan.store.models import GGUFCutShortError, check_gguf

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

#: The Ollama release whose API this adapter follows, field for field (clients compare it to feature-gate, e.g.
#: ``think``, ``logprobs``): 0.32.15, the newest release, whose api/types.go is unchanged since 0.32.6 (the image
#: generation fields removed) and has /api/tags' ``capabilities`` and ``details`` lengths (0.30). Raise it only with
#: the fields and routes of the release it names (README, "Ollama API").
OLLAMA_VERSION = "0.32.15"
NDJSON = "application/x-ndjson"
PULL_PROGRESS_INTERVAL = 0.25

B = TypeVar("B", bound=BaseModel)

# Errors raised before a handler runs (the key check's 401, a foreign Origin's 403, an unknown /api/ route's
# 404, a body over the size limit) leave in Ollama's shape too, as the spec below declares: registered by
# jan.server.dialect_errors (imported here for it), which the app imports at start, before this module.
DIALECT_ERRORS["/api/"] = ("OllamaError", {"type": "object", "required": ["error"],
                                           "properties": {"error": {"type": "string"}}})
RESPONSES.update({  # streamed by default (NDJSON); "stream": false answers one JSON object
    ("POST", path): {"200": ("One JSON object, or with stream (the default) one per line", {
        "application/json": None, NDJSON: None})}
    for path in ("/api/chat", "/api/generate", "/api/pull", "/api/create")
})
RESPONSES[("POST", "/api/blobs/{digest}")] = {  # the body is the file itself (any Content-Type), no JSON
    "201": ("The blob was stored (its SHA-256 is the digest)", {}),
    "200": ("The blob was already here", {})}
EXTRA_BODIES.update({
    ("POST", "/api/chat"): wire.OllamaChatRequest,
    ("POST", "/api/generate"): wire.OllamaGenerateRequest,
    ("POST", "/api/embed"): wire.OllamaEmbedRequest,
    ("POST", "/api/embeddings"): wire.OllamaEmbeddingsRequest,
    ("POST", "/api/show"): wire.OllamaShowRequest,
    ("DELETE", "/api/delete"): wire.OllamaModelRequest,
    ("POST", "/api/copy"): wire.OllamaCopyRequest,
    ("POST", "/api/create"): wire.OllamaCreateRequest,
    ("POST", "/api/pull"): wire.OllamaPullRequest,
    ("POST", "/api/push"): wire.OllamaPushRequest,
})


class OllamaError(Exception):
    """An error to answer as Ollama does: ``{"error": message}`` with ``status`` (and ``headers``: the ones jan's
    error comes with, ``Retry-After`` on a full queue)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


#: How Ollama names a setting an error advises changing (:class:`jan.errors.Advice`): its request's and Modelfile's
#: option, which its clients set (``num_ctx``), not jan's model.json key.
OLLAMA_SETTING_NAMES = {CTX_LEN: "num_ctx"}
#: Where that setting is, said after advice to change it: a request's ``options.num_ctx`` is read but not applied
#: (a model is loaded once for every request it serves), so "use a larger context (num_ctx)" alone sent the
#: client that had sent a larger one round in a circle.
PER_MODEL_CONTEXT = (" (jan sets num_ctx per model, not per request: in /api/create's parameters, or as ctx_len in "
                     "the model's model.json; a request's options.num_ctx is not applied)")


def _error_of(exc: BaseException) -> OllamaError:
    """``exc`` as Ollama's error (a refusal of media is named in the body's terms by :func:`_media_named`)."""
    if isinstance(exc, OllamaError):
        return exc
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return OllamaError(400, f"{where}: {first.get('msg', 'invalid value')}" if where else first.get("msg", ""))
    if isinstance(exc, ollama_requests.OllamaRequestError):
        return OllamaError(400, str(exc))
    if isinstance(exc, PrefillGrammarError):  # a prefill the `format` cannot start with, said in Ollama's names
        return OllamaError(400, str(exc.said_as("format")))
    param = getattr(exc, "param", None)
    if isinstance(param, str) and param.startswith("response_format"):
        # the typed request's format is OpenAI's response_format; an Ollama body sent it as `format` (the place
        # in the schema kept)
        if isinstance(exc, GrammarError):
            return OllamaError(400, str(exc.said_of("format")))
        text = str(exc)
        if text.startswith(param):
            return OllamaError(400, "format" + text[len(param):])
        _, sep, why = text.partition(": ")
        return OllamaError(400, f"format: {why if sep else exc}")
    # the one mapping of jan's exceptions to statuses (and the headers they come with), settings named as Ollama does
    err = to_api_error(exc, setting_names=OLLAMA_SETTING_NAMES)
    advice = getattr(exc, "advice", None)
    where = PER_MODEL_CONTEXT if advice is not None and advice.setting == CTX_LEN else ""
    return OllamaError(err.status, err.message + where, err.headers)


@contextlib.contextmanager
def _media_named(body: wire.OllamaChatRequest | wire.OllamaGenerateRequest) -> Iterator[None]:
    """A refusal of the request's media (a model without a projector, an image that does not decode, a media marker
    in the text) said of the field of ``body`` that sent it: ``messages[i].images[j]``, ``images[j]``, ``prompt``."""
    try:
        yield
    except MediaError as exc:
        named = ollama_requests.media_error(exc, body)
        if named is None:
            raise
        raise named from None


def ollama_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Answer every failure of ``handler`` in Ollama's error shape."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise  # the error middleware tells a client that left (noted quietly) from a failed upstream
        except Exception as exc:  # noqa: BLE001 - the dialect's one error mapping
            err = _error_of(exc)
            response = _json({"error": err.message}, status=err.status, headers=err.headers)
            response.api_error = err  # (what the access line says of it: jan.server.request_id.AccessLogger)
            return response

    return wrapped


async def _body(request: web.Request, model: type[B]) -> B:
    raw = await request.read()
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    body_is_large(len(raw))  # a big body (base64 images, 470,000 messages) is parsed and validated off the loop,
    values = await body_step(check_json_values, raw, request_json_values_limit(request))  # (a 413 before parsing)
    body_is_large(len(raw), values)  # and so is one of many values
    return await body_step(_decoded, raw, model)


def _decoded(raw: bytes, model: type[B]) -> B:
    try:
        data = loads_bounded(raw)  # nested too deep is a 400 too, never a RecursionError
    except APIError as exc:  # not JSON (Ollama's wording), or nested too deep (said as is)
        detail = exc.message.removeprefix("The request body is not valid JSON: ")
        raise OllamaError(400, f"invalid JSON in the request body: {detail}" if detail != exc.message
                          else exc.message) from None
    if not isinstance(data, dict):
        raise OllamaError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # the field named by its path in this body, as on every route
        raise OllamaError(400, from_validation_error(exc, data).message) from None


def _dumps(obj: Any) -> str:
    # compact, as Go writes JSON; a lone surrogate (a model's "\ud800" in a tool call's arguments, read back) escaped
    # again, or writing the reply out as UTF-8 failed; and a line break other than "\n" (U+2028...) escaped, or the
    # ollama client, which splits the NDJSON stream as str.splitlines does, read half a line (one_line_json)
    return one_line_json(json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")))


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(obj, status=status, headers=headers or None, dumps=_dumps)


async def _whole(build: Callable[[], Any], values: int) -> web.Response:
    """A whole (not streamed) reply: ``build()``'s JSON, built and written off the event loop when it holds many
    values (``values``, about: a long reply's logprobs with their alternatives, its ``context``)."""
    return await json_response_built(build, values=values, encode=_dumps)


def _result_values(result: Any, top_logprobs: int) -> int:
    """About how many JSON values a chat result's Ollama object holds: per token its logprob and alternatives
    (each a few values and its bytes), and the ``context`` ids."""
    return sum(len(c.logprobs or ()) * (2 + top_logprobs) * 8 + len(c.prompt_token_ids or ()) + len(c.token_ids)
               for c in result.choices)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def _target(request: web.Request, name: str) -> Target:
    """The model a request names (its engine resolved); 400 without a name, 404 for an unknown one."""
    if not name:
        raise OllamaError(400, "model is required")
    services = _services(request)
    model_id = ollama_requests.model_id(name)
    try:
        try:
            return await services.models.resolve(model_id)
        except ModelNotFoundError as exc:
            if getattr(exc, "damaged", None):  # the model is there, its model.json damaged: what to repair, not
                raise OllamaError(404, str(exc)) from None  # "not found" of a model the user has (still a 404)
            return await services.models.resolve(await _other_case(services, model_id))
    except ModelNotFoundError:
        raise OllamaError(404, f"model '{name}' not found") from None


async def _other_case(services: Services, model_id: str) -> str:
    """The id of a model that no id spells as ``model_id`` does: Ollama finds a model whatever the case of its name
    (``Llama3`` is ``llama3``), so the one id equal to it but for case; ``ModelNotFoundError`` (a 404) when none is,
    or more than one (ids that differ only in case, on a case-sensitive file system, are not guessed between)."""
    folded = model_id.casefold()
    same = [m["id"] for m in await services.models.model_extension().list_models()
            if str(m.get("id", "")).casefold() == folded]
    if len(same) != 1:
        raise ModelNotFoundError(not_found_message("model", model_id))
    return same[0]


async def _as_named(services: Services, model_id: str) -> str:
    """The id a model made under ``model_id`` (``/api/copy``'s destination, ``/api/create``'s name) takes: that of
    the model it names whatever the case (``Llama3`` replaces ``llama3``), as Ollama keeps the existing name's
    spelling (its names are one whatever their case), rather than a second model beside it, which on macOS and
    Windows would be the same folder; else ``model_id`` itself."""
    if await _existing(services, model_id) is not None:
        return model_id
    try:
        return await _other_case(services, model_id)
    except ModelNotFoundError:
        return model_id


def _new_model_id(name: str, field: str) -> str:
    """The id a model made by ``/api/copy`` or ``/api/create`` gets from its Ollama ``name``; a name no jan model can
    have (another tag, a namespace, a character ids do not take) is a 400 that says what a name may be."""
    model_id = ollama_requests.model_id(name)
    if not is_valid_id(model_id):
        raise OllamaError(400, f"{field}: invalid model name {json_text(name)}: jan's model names are 1-128 of "
                               "A-Z a-z 0-9 . _ - starting with a letter or digit, without a tag (other than "
                               "latest) or a namespace")
    return model_id


@contextlib.asynccontextmanager
async def _model_in_use(request: web.Request, target: Target, keep_alive: float | None,
                        timing: Timing) -> AsyncIterator[None]:
    """Load the model first (so ``load_duration`` is measured as Ollama measures it); once the request
    is answered, apply its ``keep_alive`` — the time the model stays loaded *after* it, as in Ollama
    (applied earlier, a ``0`` could unload the model under the request). ``None`` (the request has no
    ``keep_alive``) is the server's default again (``jan serve --keep-alive``), as each Ollama request sets
    its model's keep-alive, to the default when it names none, rather than keeping an earlier request's."""
    started = timing.total_ns()
    await unless_stopping(request, target.engine.load_model(target.model))  # (the stop answers it at once)
    timing.load_ns = timing.total_ns() - started
    try:
        yield
    finally:
        with contextlib.suppress(ModelNotFoundError):  # unloaded meanwhile: nothing to keep
            await _set_keep_alive(target, keep_alive)


async def _set_keep_alive(target: Target, seconds: float | None) -> None:
    """``seconds`` (``math.inf``: until unloaded; ``None``: the server's default keep-alive) for the target's model."""
    set_keep_alive = getattr(target.engine, "set_keep_alive", None)
    if set_keep_alive is not None:  # engines without a model pool (remote ones) have nothing to keep
        await set_keep_alive(target.id, seconds)


async def _unload(target: Target) -> None:
    """Unload now (``/api/delete``): running requests end, a load in progress is waited for and undone."""
    await unload_now(target.engine, target.id)


async def _unload_when_idle(target: Target) -> None:
    """Ollama's ``keep_alive: 0``: unload once the requests running on the model end, as Ollama does —
    never cancel another client's generation (an admin's ``POST /v1/models/{id}/stop`` does that)."""
    when_idle = getattr(target.engine, "unload_when_idle", None)
    if when_idle is None:  # an engine without running requests to wait for (remote ones)
        await _unload(target)
        return
    with contextlib.suppress(ModelNotFoundError):  # not loaded: nothing to unload
        await when_idle(target.id)


# -- streaming ---------------------------------------------------------------------------
async def _ndjson(request: web.Request, first: Any, stream: AsyncIterator[Any],
                  lines: Callable[[Any], list[dict[str, Any]]], final: Callable[[], dict[str, Any]]) -> web.StreamResponse:
    """Send each item's objects as NDJSON lines, then the final object. Closing the stream (on a
    client that went away, or shutdown) cancels the generation. A failure once the status line is sent (a
    generation the server cut off: ``final`` raises) is the last line, ``{"error": ...}``, as Ollama's."""
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    close_unframed(request, response)
    await response.prepare(request)
    shutting_down = request.app[SHUTTING_DOWN]

    # One write per item (each write is a send() on the socket); an item that ends its reply is held and goes
    # out with the final line and the end of the body.
    held = b""

    async def send(objs: list[dict[str, Any]], *, hold: bool = False, last: bool = False) -> None:
        nonlocal held
        text = held + b"".join(_dumps(obj).encode() + b"\n" for obj in objs)
        held = text if hold else b""
        if last:
            await response.write_eof(text)
        elif text and not hold:
            await response.write(text)

    try:
        async with contextlib.aclosing(stream):
            if first is not None:
                await send(lines(first), hold=_ends(first))
            async for item in stream:
                await send(lines(item), hold=_ends(item))
                raise_if_gone(request)  # (an item with no line to send wrote nothing that would have noticed)
                if shutting_down.is_set():
                    await send([{"error": "the server is shutting down; the generation was stopped"}], last=True)
                    break
            else:
                await send([final()], last=True)
    except (ConnectionResetError, OSError) as exc:
        log.debug("ollama stream: client went away: %s", exc)
    except Exception as exc:  # noqa: BLE001 - the status line is gone: the error is the last line
        with contextlib.suppress(ConnectionResetError, OSError):
            await send([{"error": _error_of(exc).message}], last=True)
    return response


def _ends(item: Any) -> bool:
    """Whether a streamed delta ends its reply (what follows it comes at once)."""
    return getattr(item, "finish_reason", None) is not None


# -- chat and generate ---------------------------------------------------------------------
@routes.post("/api/chat")
@ollama_errors
async def chat(request: web.Request) -> web.StreamResponse:
    """Ollama chat: ``messages`` (with ``images``, ``tool_calls``, ``tool_name``), ``tools``, ``format``,
    ``options``, ``think``, ``keep_alive``, ``stream``."""
    timing = Timing()
    body = await _body(request, wire.OllamaChatRequest)
    keep_alive = body.keep_alive_seconds
    encoder = OllamaEncoder("chat", body.model, timing)
    target = await _target_or_unloaded(request, body.model, keep_alive == 0 and not body.messages, encoder)
    if isinstance(target, web.Response):
        return target
    encoder.remote = ollama_models.remote_fields(target.model)
    if not body.messages:
        return await _load_or_unload(request, target, keep_alive, timing, encoder)
    _require_generating(target, encoder)  # before _model_in_use loads it
    if any(m.images for m in body.messages):  # decoding megabytes of base64 stays off the event loop
        typed = await asyncio.to_thread(ollama_requests.chat_request, body, target.id)
    else:
        typed = await body_step(ollama_requests.chat_request, body, target.id)  # off the loop for a big body
    service = _services(request).chat
    with _media_named(body):
        if body.debug_render_only:
            return await _rendered(request, target, keep_alive, timing, typed, encoder,
                                   sum(len(m.images or ()) for m in body.messages))
        await _services(request).models.require_able(target, typed)  # (think, tools, images) before a load
        async with _model_in_use(request, target, keep_alive, timing):
            if not body.streaming:
                result = await unless_disconnected(request, service.complete(typed), target.id)
                return await _whole(lambda: encoder.whole(result), _result_values(result, body.top_logprobs))
            stream = service.stream(typed)
            first = await first_item(request, stream, target.id)
            return await _ndjson(request, first, stream, encoder.delta, encoder.final)


async def _rendered(request: web.Request, target: Target, keep_alive: float | None, timing: Timing, typed: Any,
                    encoder: OllamaEncoder, images: int, raw: str | None = None) -> web.Response:
    """Ollama's ``_debug_render_only``: the prompt the chat request ``typed`` renders to (the chat service's render,
    as ``/apply-template`` tells it), or the ``raw`` prompt as it is; nothing generated. The model is loaded for it
    and takes the request's ``keep_alive``, as Ollama schedules the model before it renders."""
    async with _model_in_use(request, target, keep_alive, timing):
        # (each written off the event loop when long: 16 MB of messages render to a prompt as long)
        if raw is not None:
            return await _whole(lambda: encoder.rendered(raw, images), text_values(raw))
        text = (await unless_stopping(request, _services(request).chat.render(typed), WAIT_SHUTDOWN)).text
        return await _whole(lambda: encoder.rendered(text, images), text_values(text))


async def _load_or_unload(request: web.Request, target: Target, keep_alive: float | None, timing: Timing,
                          encoder: OllamaEncoder) -> web.Response:
    """A request with nothing to generate loads the model (or unloads it with ``keep_alive: 0``)."""
    if keep_alive == 0:
        await _unload_when_idle(target)
        reason = "unload"
    else:
        _require_generating(target, encoder)  # Ollama's 400 for an embedding model loaded through generate or chat
        async with _model_in_use(request, target, keep_alive, timing):
            reason = "load"
    return _loaded_answer(encoder, reason)


def _loaded_answer(encoder: OllamaEncoder, reason: str) -> web.Response:
    """The answer to a request with nothing to generate: ``done_reason`` ``load`` or ``unload``."""
    obj = encoder.whole(text="")
    obj["done_reason"] = reason
    for key in ("total_duration", "load_duration"):
        obj.pop(key, None)  # Ollama answers these requests without statistics
    return _json(obj)


def _require_generating(target: Target, encoder: OllamaEncoder) -> None:
    """:func:`require_generating` in Ollama's words: an embedding model on ``/api/generate`` or ``/api/chat`` is its
    400 ``"<name>" does not support generate`` (``chat``), the name as the client sent it, which clients match on;
    jan's reason follows."""
    try:
        require_generating(target)
    except RequestError as exc:
        raise OllamaError(400, f"{json.dumps(encoder.model, ensure_ascii=False)} does not support {encoder.kind} "
                               "(it is an embedding model; it cannot generate text)") from exc


async def _target_or_unloaded(request: web.Request, name: str, unloading: bool,
                              encoder: OllamaEncoder) -> Target | web.Response:
    """:func:`_target`; for a ``keep_alive: 0`` with nothing to generate (``unloading``) of a loaded model whose
    model.json no longer reads (damaged, or its folder removed by hand while it serves), the model unloaded once
    its running requests end, and the unload's answer — as ``/api/delete`` and the admin's stop unload it. Before,
    a 404 that left its weights loaded until the server stopped."""
    try:
        return await _target(request, name)
    except OllamaError as exc:
        if exc.status == 404 and unloading and await _services(request).models.unload_unlisted(
                ollama_requests.model_id(name), when_idle=True):
            return _loaded_answer(encoder, "unload")
        raise


@routes.post("/api/generate")
@ollama_errors
async def generate(request: web.Request) -> web.StreamResponse:
    """Ollama generate: ``prompt`` (+ ``system``, ``images``) in the model's chat template, or as is
    with ``raw``; ``suffix`` fills in the middle on models with FIM tokens. ``context`` (token ids that
    the last object of an earlier reply gave, unless ``raw``) is continued: the new prompt follows it."""
    timing = Timing()
    body = await _body(request, wire.OllamaGenerateRequest)
    keep_alive = body.keep_alive_seconds
    encoder = OllamaEncoder("generate", body.model, timing, context=not body.raw)
    nothing = not body.prompt and not body.suffix and not body.images
    target = await _target_or_unloaded(request, body.model, keep_alive == 0 and nothing, encoder)
    if isinstance(target, web.Response):
        return target
    encoder.remote = ollama_models.remote_fields(target.model)
    if nothing:
        return await _load_or_unload(request, target, keep_alive, timing, encoder)
    _require_generating(target, encoder)  # before _model_in_use loads it
    services = _services(request)
    with _media_named(body):
        # what the model cannot do (a suffix without FIM tokens; think or images it has no place for, a context id
        # outside its vocabulary) is refused before _model_in_use loads it, as is a body no model could answer
        typed = grammar = None
        if body.suffix or body.raw:
            ollama_requests.check_completion(body)
            grammar = await asyncio.to_thread(ollama_requests.format_grammar, body.format)  # (a bad schema: 400)
            if ollama_requests.insists_on_thinking(body.think):  # Ollama checks it whatever the prompt
                await services.models.require_thinking(target)
        if body.debug_render_only and body.suffix and not body.raw:
            raise OllamaError(400, "_debug_render_only: not with suffix (a fill-in-the-middle prompt is made of the "
                                   "model's FIM tokens as it is evaluated, not rendered from a template)")
        if body.suffix:  # (Ollama asks for insert also of a raw prompt, which goes as is: the suffix left out)
            await services.models.require_fill_in(target, tuple(body.context or ()))
        if not body.suffix and not body.raw:
            typed = await asyncio.to_thread(ollama_requests.generate_chat_request, body, target.id) \
                if body.images else ollama_requests.generate_chat_request(body, target.id)
            if body.debug_render_only:
                return await _rendered(request, target, keep_alive, timing, typed, encoder, len(body.images or ()))
            await services.models.require_able(target, typed)
        elif body.raw and body.debug_render_only:  # (a raw prompt goes to the model as it is)
            return await _rendered(request, target, keep_alive, timing, None, encoder, len(body.images or ()),
                                   raw=body.prompt)
        async with _model_in_use(request, target, keep_alive, timing):
            if typed is None:
                stream = services.completions.stream(ollama_requests.completion_request(body, target.id, grammar))
                if not body.streaming:
                    whole = await unless_disconnected(request, _whole_completion(stream, encoder), target.id)
                    values = (len(whole.get("context") or ())
                              + len(whole.get("logprobs") or ()) * (2 + body.top_logprobs) * 8)
                    return await _whole(lambda: whole, values)
            else:
                if not body.streaming:
                    result = await unless_disconnected(request, services.chat.complete(typed), target.id)
                    return await _whole(lambda: encoder.whole(result), _result_values(result, body.top_logprobs))
                stream = services.chat.stream(typed)
            first = await first_item(request, stream, target.id)
            return await _ndjson(request, first, stream, encoder.delta, encoder.final)


async def _whole_completion(stream: AsyncIterator[CompletionDelta], encoder: OllamaEncoder) -> dict[str, Any]:
    text: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] = []
    prompt_ids: tuple[int, ...] | None = None
    token_ids: list[int] = []
    async with contextlib.aclosing(stream):
        async for delta in stream:
            if delta.usage is not None:
                usage = delta.usage
            if delta.choice != 0:
                continue
            text.append(delta.text)
            logprobs += delta.logprobs or ()
            finish = delta.finish_reason or finish
            prompt_ids = delta.prompt_token_ids if delta.prompt_token_ids is not None else prompt_ids
            token_ids += delta.token_ids
    return encoder.whole(text="".join(text), finish_reason=finish, usage=usage,
                         token_logprobs=tuple(logprobs) or None, prompt_token_ids=prompt_ids,
                         token_ids=tuple(token_ids))


# -- embeddings ----------------------------------------------------------------------------------
def _floats(vector: Any) -> list[float]:
    """A vector as JSON numbers (a local model's float32 array; a remote one's list as it came). The embedding
    service cut it to ``dimensions`` already."""
    if isinstance(vector, list):
        return vector
    import numpy as np  # only embeddings need numpy; a chat-only server never loads it (resident memory)

    return np.asarray(vector, dtype=np.float32).tolist()


@routes.post("/api/embed")
@ollama_errors
async def embed(request: web.Request) -> web.Response:
    """Ollama embed: ``input`` (text or texts) -> ``embeddings`` (normalized), ``prompt_eval_count``."""
    timing = Timing()
    body = await _body(request, wire.OllamaEmbedRequest)
    target = await _target(request, body.model)
    inputs = body.texts
    typed = ollama_requests.embedding_request(target.id, inputs, body.truncate, dimensions=body.dimensions,
                                              listed=not isinstance(body.input, str)) \
        if inputs else None
    if typed is not None:
        await _services(request).models.require_able(target, typed)  # (a model loaded with pooling none) before a load
    async with _model_in_use(request, target, body.keep_alive_seconds, timing):
        if typed is None:
            return _json({"model": body.model, "embeddings": []})
        result = await unless_disconnected(request, _services(request).embeddings.embed(typed), target.id)
    total_ns = timing.total_ns()

    def answer() -> dict[str, Any]:  # (built off the event loop when large: thousands of vectors to write)
        out: dict[str, Any] = {"model": body.model,
                               "embeddings": [_floats(v) for v in result.vectors],
                               "total_duration": total_ns, "load_duration": timing.load_ns,
                               "prompt_eval_count": result.prompt_tokens}
        return {k: v for k, v in out.items() if v or k == "embeddings"}
    return await json_response_built(answer, values=sum(len(v) for v in result.vectors), encode=_dumps)


@routes.post("/api/embeddings")
@ollama_errors
async def embeddings(request: web.Request) -> web.Response:
    """Ollama's older embeddings endpoint: ``prompt`` -> ``embedding``, the model's pooled vector as it is (not
    normalized, as Ollama's)."""
    body = await _body(request, wire.OllamaEmbeddingsRequest)
    target = await _target(request, body.model)
    typed = ollama_requests.embedding_request(target.id, [body.prompt], normalize=False, listed=False,
                                              field="prompt") if body.prompt else None
    if typed is not None:
        await _services(request).models.require_able(target, typed)  # (as /api/embed) before a load
    async with _model_in_use(request, target, body.keep_alive_seconds, Timing()):
        if typed is None:
            return _json({"embedding": []})
        result = await unless_disconnected(request, _services(request).embeddings.embed(typed), target.id)
    return _json({"embedding": _floats(result.vectors[0])})


# -- models ----------------------------------------------------------------------------------------
async def _weights(services: Services, model: dict[str, Any]) -> str | None:
    """The model's GGUF file as the model service resolves it (``None``: remote, or not downloaded)."""
    if model.get("file_path"):
        return model["file_path"]
    if not isinstance(services.models.engine_for(model), LocalInferenceExtension):
        return None
    return (await services.models.with_weights(model)).get("file_path")


async def _written_at(services: Services, model_id: str) -> float | None:
    """When the model's model.json was written (:meth:`~jan.core.interfaces.model.ModelExtension.model_written_at`);
    None for a model the catalogue does not hold (one this process was given by path)."""
    try:
        return await services.models.model_extension().model_written_at(model_id)
    except Exception:  # noqa: BLE001 - a time to show only: the weights' time then, never a failed answer
        return None


@routes.get("/api/tags")  # aiohttp answers HEAD too, as Ollama does
@ollama_errors
async def tags(request: web.Request) -> web.Response:
    """The models in the data folder — the same list as ``/v1/models``."""
    services = _services(request)
    entries = []
    for model in await services.models.model_extension().list_models():
        try:
            path = await _weights(services, model)
        except ValueError:  # its engine is not enabled: listed, without file details
            path = None
        # its capabilities as /api/show and /v1/models tell them (Ollama's list has them, and apps filter by them)
        facts = await model_facts(request, model)
        written = await _written_at(services, model["id"])
        entries.append(await asyncio.to_thread(ollama_models.model_entry, model, path, written=written,
                                               capabilities=facts.capabilities))
    # the most recently modified first, as Ollama lists them (an app that takes the first listed model gets the one
    # pulled last, not the first by name); equal times stay in id order
    entries.sort(key=lambda entry: entry["modified_at"], reverse=True)
    return _json({"models": entries})


@routes.post("/api/show")
@ollama_errors
async def show(request: web.Request) -> web.Response:
    """One model's details, template, parameters, GGUF metadata (``model_info``) and capabilities."""
    body = await _body(request, wire.OllamaShowRequest)
    target = await _target(request, body.model_name)
    path = target.model.get("file_path")
    written = await _written_at(_services(request), target.id)
    shown = await asyncio.to_thread(ollama_models.show, target.model, path, verbose=body.verbose, written=written,
                                    system=body.system, options=body.options)
    # with verbose, the vocabulary's hundreds of thousands of strings: encoded on a worker thread, not the loop
    values = sum(len(v) for info in ("model_info", "projector_info") for v in shown.get(info, {}).values()
                 if isinstance(v, list)) + 6 * len(shown.get("tensors", ()))
    return await json_response_built(lambda: shown, values=values, encode=_dumps)


@routes.get("/api/ps")
@ollama_errors
async def ps(request: web.Request) -> web.Response:
    """The models loaded now, with when they will be unloaded (``expires_at``)."""
    services = _services(request)
    entries = []
    for model_id, engine in await services.models.loaded_with_engines():
        try:
            target = await services.models.resolve(model_id)
            model, engine, path = target.model, target.engine, target.model.get("file_path")
        except (ModelNotFoundError, ValueError):
            # its model.json damaged or removed while it serves: still loaded (as /health lists it, and
            # keep_alive: 0, /api/delete unload it), told by its id and what its engine says of it
            model, path = {"id": model_id}, None
        status = await model_state(engine, model_id)
        entries.append(await asyncio.to_thread(ollama_models.running_entry, model, path, status))
    entries.sort(key=lambda entry: entry["expires_at"], reverse=True)  # the longest left first, as Ollama lists them
    return _json({"models": entries})


@routes.delete("/api/delete")
@ollama_errors
async def delete(request: web.Request) -> web.Response:
    """Delete a model (unloaded first) and its files."""
    body = await _body(request, wire.OllamaModelRequest)
    # (an alias reaches its model, and deleting it would delete that model's files: refused, naming the id)
    _services(request).models.refuse_alias(ollama_requests.model_id(body.model_name), "delete")
    try:
        target = await _target(request, body.model_name)
    except OllamaError as exc:  # no model.json: what a killed pull or import left, removed as a model would be
        if exc.status != 404:
            raise
        model_id = ollama_requests.model_id(body.model_name)
        # (a damaged model.json may belong to a loaded model: unloaded first, as a model is, never left serving)
        unloaded = await _services(request).models.unload_unlisted(model_id)
        if await _services(request).models.delete_leftover(model_id) or unloaded:
            return web.Response(status=200)
        raise
    await _unload(target)
    await _services(request).models.model_extension().delete_model(target.id)
    await prune_blobs(request.app)  # the blob the model was made from, if no other model uses it (Ollama's)
    return web.Response(status=200)


@routes.post("/api/copy")
@ollama_errors
async def copy(request: web.Request) -> web.Response:
    """Copy a model under a new name: the weights are hard-linked (copied across file systems),
    model.json settings and parameters carried over. A model of that name is replaced, as Ollama's
    ``CopyModel`` writes the manifest over the old one."""
    body = await _body(request, wire.OllamaCopyRequest)
    if not body.destination:
        raise OllamaError(400, f"destination {json_text(body.destination)} is invalid")
    source = await _target(request, body.source)
    services = _services(request)
    destination = await _as_named(services, _new_model_id(body.destination, "destination"))
    before = await _existing(services, destination)
    await _copy_model(services, source, destination, overwrite=True)
    await _replaced(request, before)
    return web.Response(status=200)


async def _replaced(request: web.Request, before: Target | None) -> None:
    """After a model named like ``before`` was written over: the old model is not served again (unloaded once
    idle, unless the new model.json loads the same), and the blob it was made from goes if nothing uses it now
    (Ollama's RemoveLayers)."""
    if before is None:
        return
    after = await _existing(_services(request), before.id)
    await unload_replaced(before, after.model if after is not None else None)
    await prune_blobs(request.app)


async def _copy_model(services: Services, source: Target, destination: str,
                      parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None, *,
                      stored: dict[str, Any] | None = None, overwrite: bool = False) -> None:
    """``source`` as the new model ``destination`` (409 if it exists, unless ``overwrite``: replaced);
    ``parameters`` and ``settings`` over the source's, ``stored`` (``system``, ``messages``, ``license``) in place
    of its. The new model.json is written once, whole: one that replaces a model is never seen half made (the new
    weights with the old settings)."""
    models = services.models.model_extension()
    if destination == source.id:
        # onto itself (a copy to its own name, a create FROM itself to change its prompt or parameters): its
        # model.json changed in place, its files left as they are, as Ollama's manifest is written back over itself.
        # Imported again, a file imported by reference would become a link in the data folder (across file systems
        # a copy of its gigabytes), and `jan serve -m <that file>` would no longer find its model
        changes = {**({"parameters": parameters} if parameters else {}),
                   **({"settings": settings} if settings else {}), **(stored or {})}
        if changes:
            await models.update_model(destination, changes)
        return
    path = source.model.get("file_path")
    own_lora = bool(settings and "lora" in settings)  # (a create's adapters replace the source's)
    # (the files the model service resolved are no model.json fields)
    doc = {k: v for k, v in source.model.items()
           if k not in ("id", "file_path", "mmproj_path", "draft_model_path", "lora_paths", "mmproj_named")}
    if parameters:
        doc["parameters"] = {**(doc.get("parameters") or {}), **parameters}
    if settings:
        doc["settings"] = {**(doc.get("settings") or {}), **settings}
    doc.update(stored or {})
    if path:
        # (the model's own prompt and license too: a copy answers as the source does)
        keep = {k: doc[k] for k in ("name", "description", "parameters", "metadata", "system", "messages", "license",
                                    "parent_model") if doc.get(k)}
        # the projector as the source resolved it: a name relative to the source's folder would not be the copy's
        settings = {k: v for k, v in (doc.get("settings") or {}).items() if k not in ("llama_model_path", "mmproj")}
        if source.model.get("lora_paths") and not own_lora:  # likewise its LoRA adapters, as the source resolved them
            settings["lora"] = source.model["lora_paths"]
        await models.import_model(path, model_id=destination, mode="link", mmproj=source.model.get("mmproj_path"),
                                  settings=settings, overwrite=overwrite, **keep)
    else:
        await models.create_model({**doc, "id": destination}, **({"overwrite": True} if overwrite else {}))


@routes.post("/api/create")
@ollama_errors
async def create(request: web.Request) -> web.StreamResponse:
    """Create a model ``from`` an existing one, or from ``files``: one GGUF pushed with ``POST
    /api/blobs/sha256:<hex>`` (``{"model.gguf": "sha256:<hex>"}``, hard-linked into the new model's
    folder), plus optionally its projector (a file whose name contains ``mmproj``). ``parameters`` (Ollama's
    option names) become the new model.json's ``parameters``; ``system``, ``messages`` and ``license`` its own
    fields of those names (the chat service puts the system prompt and messages into every chat:
    :mod:`jan.services.model_prompt`); left out, a ``from`` model's stay. ``adapters`` (file name -> digest of a
    pushed GGUF blob) become the model's LoRA adapters at scale 1 (``settings.lora``, each blob referenced where it
    is, as a projector is; they replace a ``from`` model's). Quantizing and Go templates have no place in jan's
    models: asked for, they are a 400.

    A model of that name is replaced, as Ollama's manifest is: its model.json is written over at once, when every
    check has passed (a refused request leaves it as it was), and a loaded copy of the old model is unloaded once
    the requests running on it end (:func:`~jan.services.models.unload_replaced`)."""
    body = await _body(request, wire.OllamaCreateRequest)
    if not body.model_name:
        raise OllamaError(400, "model is required")
    given = [name for name in body.UNSUPPORTED if getattr(body, name)]
    if given:
        raise OllamaError(400, f"{given[0]}: not supported by jan's /api/create, which makes a model from an "
                               "existing one (from) or from one GGUF file pushed as a blob (files), with other "
                               "default parameters, system prompt, messages or license (jan prompts each model "
                               "with its own chat template)")
    if body.from_ and body.files is not None:
        raise OllamaError(400, "from and files: give one of them (the model to start from, or the GGUF blob)")
    if not body.from_ and body.files is None:
        raise OllamaError(400, "from: required (the existing model to create the new one from), or files "
                               "(a GGUF file pushed with POST /api/blobs/sha256:<hex>)")
    parameters = ollama_requests.model_parameters(body.parameters)
    settings = ollama_requests.model_settings(body.parameters)
    if body.adapters:
        settings = {**(settings or {}), "lora": [{"path": str(await _blob_gguf(request, name, digest, "adapters"))}
                                                 for name, digest in body.adapters.items()]}
    services = _services(request)
    model_id = await _as_named(services, _new_model_id(body.model_name, "model"))
    # a model of that name is replaced, as Ollama writes its manifest over the old one
    before = await _existing(services, model_id)
    if body.files is not None:
        statuses = await _create_from_files(request, body.files, model_id, parameters, settings, body.stored())
    else:
        source = await _target(request, body.from_)
        stored = body.stored()
        if source.id != model_id:  # Ollama's details.parent_model: the model it was made from, as Ollama names it
            stored["parent_model"] = ollama_models.listed_name(source.id)
        inherited = source.model.get("license")
        if "license" in stored and isinstance(inherited, str) and inherited:
            # Ollama appends a create's licenses to the ones its FROM model has (its /api/show joins them with \n)
            stored["license"] = f"{inherited}\n{stored['license']}"
        await _copy_model(services, source, model_id, parameters, settings, stored=stored, overwrite=True)
        statuses = [f"using existing model {source.id}", "writing manifest", "success"]
    await _replaced(request, before)
    if body.stream is False:
        return _json({"status": "success"})
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
    close_unframed(request, response)
    await response.prepare(request)
    for status in statuses:
        await response.write(_dumps({"status": status}).encode() + b"\n")
    await response.write_eof()
    return response


async def _existing(services: Services, model_id: str) -> Target | None:
    """The model ``model_id`` as requests resolve it (its files found); None when there is none, or its engine
    is not enabled (nothing of it can be loaded then)."""
    try:
        return await services.models.resolve(model_id)
    except (ModelNotFoundError, RequestError):
        return None


async def _create_from_files(request: web.Request, files: dict[str, str], model_id: str,
                             parameters: dict[str, Any], settings: dict[str, Any],
                             stored: dict[str, Any]) -> list[str]:
    """Import the GGUF blob ``files`` names as the model ``model_id`` (its projector attached); the
    progress lines Ollama sends for it. Every check comes first, so a refusal is a plain 400."""
    if not files:
        raise OllamaError(400, "files: no files provided to convert")
    projectors = [name for name in files if "mmproj" in os.path.basename(name).lower()]
    weights = [name for name in files if name not in projectors]
    if len(weights) != 1 or len(projectors) > 1:
        raise OllamaError(400, f"files: jan makes a model from one GGUF file and at most one projector (a file "
                               f"whose name contains 'mmproj'), not from {', '.join(sorted(files))}")
    paths = {name: await _blob_gguf(request, name, digest, "files") for name, digest in files.items()}
    models = _services(request).models.model_extension()
    mmproj = str(paths[projectors[0]]) if projectors else None
    # Hard-linked (copied across filesystems) under the name the client gave it: deleting the model later
    # leaves the blob; the projector is referenced where it is, as `jan models import --mmproj` does.
    # (Ollama's details.parent_model of a model made from files is the weights' name as the create gave it)
    await models.import_model(str(paths[weights[0]]), model_id=model_id, mode="link",
                              filename=os.path.basename(weights[0]), mmproj=mmproj, name=model_id,
                              parameters=parameters or None, overwrite=True,
                              **({"settings": settings} if settings else {}), **stored, parent_model=weights[0])
    return ["parsing GGUF", *(f"using existing layer sha256:{path.name.removeprefix('sha256-')}"
                              for path in paths.values()), "writing manifest", "success"]


async def _blob_gguf(request: web.Request, name: str, digest: Any, field: str) -> Path:
    """The pushed blob ``digest`` that the create's ``field`` names ``name``, checked to be there and a GGUF; a 400
    naming them otherwise."""
    if not isinstance(digest, str):
        raise OllamaError(400, f"{field}: {name}: invalid digest format")
    path = _blob_path(request, digest)
    if not await asyncio.to_thread(path.is_file):
        raise OllamaError(400, f"{field}: {name}: blob \"{digest}\" not found (push it first with "
                               f"POST /api/blobs/{digest})")
    try:
        await asyncio.to_thread(check_gguf, path, "blob")
    except GGUFCutShortError as exc:  # (pushed whole by its digest, but cut short before it was pushed)
        raise OllamaError(400, f"{field}: {name}: {exc}") from None
    except InvalidArgumentError:
        raise OllamaError(400, f"{field}: {name}: supplied file was not in GGUF format") from None
    # (a model's weights pushed as its ADAPTER: stored, every request to the new model was a 400 from then on)
    why = await asyncio.to_thread(lora_problem, str(path)) if field == "adapters" else None
    if why is not None:
        raise OllamaError(400, f"{field}: {name}: {why}")
    return path


# -- blobs -------------------------------------------------------------------------------------------
#: Bytes of an upload gathered before a worker thread hashes and writes them (one chunk in flight while
#: the next is read).
BLOB_WRITE_BYTES = 4 * 1024 * 1024


def _blobs(request: web.Request) -> BlobStore:
    return BlobStore(request.app[CONFIG].data_folder)


def _blob_path(request: web.Request, digest: str) -> Path:
    try:
        return _blobs(request).path(digest)
    except InvalidDigestError:
        raise OllamaError(400, "invalid digest format") from None


@routes.head("/api/blobs/{digest}")
@ollama_errors
async def head_blob(request: web.Request) -> web.Response:
    """Whether jan holds the blob ``sha256:<hex>``: 200, or 404 (400 for a malformed digest)."""
    digest = request.match_info["digest"]
    path = _blob_path(request, digest)
    if not await asyncio.to_thread(path.is_file):
        raise OllamaError(404, f"blob \"{digest}\" not found")
    return web.Response(status=200)


async def _blob_refusal(request: web.Request, config: Any, size: int) -> None:
    """A blob's declared size against the disk's free space (a blob held already is answered 200 whatever its
    size: the route drains the body; a malformed digest is the route's own 400)."""
    blobs = BlobStore(config.data_folder)
    try:
        path = blobs.path(request.match_info.get("digest", ""))
    except InvalidDigestError:
        return
    if await asyncio.to_thread(path.is_file):
        return
    why = blob_space_error(await asyncio.to_thread(blobs.free_bytes), size, blobs.folder)
    if why is not None:
        raise APIError(413, why)  # (in Ollama's shape, {"error": why}, as the route answers it)


#: A blob: bound by the disk's free space (by its declared size), not by max_body_bytes; its bytes stream to disk.
BLOB_BODY = BodyLimit(lambda config: None, lambda config, size: APIError(413, "the blob is too large"),
                      declared=_blob_refusal)


@routes.post("/api/blobs/{digest}")
@body_limit(BLOB_BODY)
@ollama_errors
async def push_blob(request: web.Request) -> web.Response:
    """Store the request body as the blob ``sha256:<hex>`` (for ``/api/create``'s ``files``): streamed to a
    temporary file in ``<data>/blobs`` while hashed, renamed into place when the SHA-256 matches (201), else
    removed (400). 200 when the blob is already here (the body read and dropped). Not bound by the server's body size limit
    (``max_body_bytes``): a body that does not fit in the disk's free space, by its Content-Length, is a 413."""
    digest = request.match_info["digest"]
    blobs = _blobs(request)
    path = _blob_path(request, digest)
    if await asyncio.to_thread(path.is_file):
        # Not written again. The body is drained (not stored) so that a client that sent it without asking
        # first (the ollama Python client's create_blob) ends its upload cleanly instead of a broken pipe.
        async for _ in request.content.iter_any():
            pass
        return web.Response(status=200)
    # (a declared size the disk cannot hold was refused before: BLOB_BODY, jan.server.body_read)
    writer = await asyncio.to_thread(blobs.writer, digest)
    committed = False
    try:
        # never the whole body in memory
        await write_through(request.content.iter_any(), writer.write, BLOB_WRITE_BYTES)
        committed = await asyncio.to_thread(writer.commit)
    finally:
        if not committed:
            writer.discard()
    if not committed:
        raise OllamaError(400, f"digest mismatch, expected \"{digest}\", got \"sha256:{writer.hexdigest}\"")
    log.info("ollama: stored blob %s (%d bytes)", path.name, writer.size)
    return web.Response(status=201)


@routes.post("/api/pull")
@ollama_errors
async def pull(request: web.Request) -> web.StreamResponse:
    """Download a model: ``model`` is an ``hf://owner/repo/file.gguf`` or http(s) URL of a GGUF
    file, a whole ``hf://owner/repo[:QUANT]`` (its model and projector, as the README says of every pull), or a jan
    model id whose model.json names a download source. Streams Ollama's progress
    objects (``pulling manifest``, ``pulling <file>`` with ``digest``/``total``/``completed``,
    ``success``) unless ``stream`` is false. Leaving the stream does not stop the download."""
    body = await _body(request, wire.OllamaPullRequest)
    name = body.model_name
    if not name:
        raise OllamaError(400, "model is required")
    services = _services(request)
    models = services.models.model_extension()
    source, model_id = await _pull_source(services, name)
    if source is None:
        return await _pull_reply(request, body, None, model_id)
    try:
        task = await models.pull(source, model_id)
    except DownloadError as exc:
        raise OllamaError(exc.http_status, f"pull model manifest: {exc}") from None
    except AlreadyExistsError as exc:
        # the id the URL's file name gives holds another model: its message says to pull under another id, which
        # Ollama's pull (a name only) cannot say, so say where one can
        raise OllamaError(409, f"pull model manifest: {exc} (Ollama's pull names no id: use `jan models pull URL "
                               "--id NAME`, or POST /v1/models/pull with \"url\" and \"id\")") from None
    return await _pull_reply(request, body, task, model_id)


def _pull_failure(exc: BaseException) -> OllamaError:
    """A pull that started and failed, as the error its answer carries: the status every pull route gives a
    download's failure (:attr:`DownloadError.http_status`: 404 when the source has no such file, 502 when it fails
    otherwise); a file that came whole but is no GGUF model is the source's fault too (502), never a 500."""
    if isinstance(exc, DownloadError):
        return OllamaError(exc.http_status, f"pull model: {exc}")
    if isinstance(exc, (ModelLoadError, InvalidArgumentError)):
        return OllamaError(502, f"pull model: the downloaded file is not a usable GGUF model: {exc}")
    err = _error_of(exc)
    return OllamaError(err.status, f"pull model: {err.message}", err.headers)


async def _pull_source(services: Services, name: str) -> tuple[str | None, str | None]:
    """(URL to download, model id); no URL when the model is already there."""
    from jan.hf_repo import canonical_source

    name = canonical_source(name)  # Ollama's hf.co/owner/repo[:QUANT], as its docs tell users to pull
    if "://" in name:
        return name, None
    model_id = ollama_requests.model_id(name)
    try:
        try:
            model = await services.models.get(model_id)
        except ModelNotFoundError:
            model_id = await _other_case(services, model_id)
            model = await services.models.get(model_id)
    except ModelNotFoundError:
        raise OllamaError(404, f"pull model manifest: '{name}' is neither a jan model id nor an hf://owner/repo/"
                               "file.gguf, hf.co/owner/repo[:QUANT] or http(s) URL of a GGUF file") from None
    if not isinstance(services.models.engine_for(model), LocalInferenceExtension) or await _weights(services, model):
        return None, model_id
    urls = [s.get("url") for s in model.get("sources") or () if isinstance(s, dict) and s.get("url")]
    if not urls:
        raise OllamaError(400, f"pull model manifest: the model '{model_id}' has no weights and no download source")
    return urls[0], model_id


async def _pull_reply(request: web.Request, body: wire.OllamaPullRequest, task: Any, model_id: str | None) -> web.StreamResponse:
    if task is None:
        events: AsyncIterator[dict[str, Any]] = _already_there()
    else:
        events = _pull_events(task, request.app[SHUTTING_DOWN])
    if body.stream is False:
        last: dict[str, Any] = {}
        async for event in events:  # a failure raises its OllamaError: the answer's status says what failed
            last = event
        return _json(last)
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
    close_unframed(request, response)
    await response.prepare(request)
    try:
        try:
            async for event in events:
                await response.write(_dumps(event).encode() + b"\n")
        except OllamaError as exc:  # the status line is gone: the error is the last line, as Ollama's
            await response.write(_dumps({"error": exc.message}).encode() + b"\n")
        await response.write_eof()
    except (ConnectionResetError, OSError):
        log.debug("ollama pull: the client stopped listening; the download goes on")
    return response


async def _already_there() -> AsyncIterator[dict[str, Any]]:
    yield {"status": "pulling manifest"}
    yield {"status": "success"}


async def _pull_events(task: Any, stopping: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
    """Ollama's pull progress from a download task: one object per change, at most 4 a second. A failed pull
    raises its :class:`OllamaError` (:func:`_pull_failure`) after the progress told so far; so does the server's stop
    (``stopping`` set: a 503), at once: the download stops with the extensions after the grace period the server
    gives open answers, and this one would hold the stop up, then be cut off with no reason given.

    Ollama's ``digest`` is the layer's ``sha256:<hex>``, and clients group progress bars by it: it is sent only
    when the file's hash is known before it is fetched (a pull that names one), never a file name in its place;
    the ``status`` line names the file (Ollama's names the digest's first hex digits)."""
    yield {"status": "pulling manifest"}
    status = task.status()
    try:
        name = filename_from_url(status.get("url") or "")
    except DownloadError:
        name = task.model_id
    sha256 = getattr(task, "sha256", None)
    head = {"status": f"pulling {name}", **({"digest": f"sha256:{sha256}"} if sha256 else {})}
    waiter = asyncio.ensure_future(task.wait())
    last = None
    try:
        while not waiter.done():
            if stopping is not None and stopping.is_set():
                raise OllamaError(503, "the server is shutting down; the download stops with it (pull the model "
                                       "again to resume it)")
            status = task.status()
            event = dict(head)
            if status.get("total_bytes"):
                event["total"] = status["total_bytes"]
            if status.get("downloaded_bytes"):
                event["completed"] = status["downloaded_bytes"]
            if event != last and ("total" in event or "completed" in event):  # something known beyond the name
                yield event
                last = event
            await asyncio.wait([waiter], timeout=PULL_PROGRESS_INTERVAL)
        error = waiter.exception() if not waiter.cancelled() else DownloadCancelledError()
        if error is not None:
            raise _pull_failure(error)
        status = task.status()
        if status.get("total_bytes"):
            yield {**head, "total": status["total_bytes"], "completed": status["total_bytes"]}
        yield {"status": "writing manifest"}
        yield {"status": "success"}
    finally:
        if not waiter.done():
            waiter.cancel()  # stops waiting only; the download itself continues


@routes.post("/api/push")
@ollama_errors
async def push(request: web.Request) -> web.Response:
    """Ollama's push uploads a model to a registry (ollama.com); jan has no registry to push to. The body is
    read as Ollama reads it (its errors first), then the push is refused with a 400 that says so, streamed or
    not (no progress has been sent yet), rather than a 404 that would read as a jan too old for the route."""
    body = await _body(request, wire.OllamaPushRequest)
    if not body.model_name:
        raise OllamaError(400, "model is required")
    raise OllamaError(400, f"push model: jan does not push models to a registry; '{body.model_name}' stays in this "
                           "data folder (copy its folder, or share the GGUF file it was made from)")


# -- the rest ------------------------------------------------------------------------------------------
@routes.get("/api/version")
@ollama_errors
async def version(request: web.Request) -> web.Response:
    """The Ollama API level served (and jan's own version)."""
    import jan

    return _json({"version": OLLAMA_VERSION, "jan_version": jan.__version__})

