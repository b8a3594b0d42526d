"""OpenAI-compatible inference: chat, completions, embeddings, plus llama-server's tokenize/detokenize and rerank.

HTTP only: each handler parses its body, converts it with :mod:`jan.server.openai_wire`,
calls a service and writes the service's typed deltas back as OpenAI JSON or SSE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from aiohttp import web

from jan.core import InferenceStopped
from jan.errors import MediaError
from jan.server import openai_wire as wire
from jan.server.disconnect import (WAIT_SHUTDOWN, first_item, raise_if_gone, shutdown_error, unless_disconnected,
                                   unless_stopping)
from jan.server.document_inputs import read_body_documents
from jan.server.errors import APIError, prompt_param, to_api_error
from jan.server.jsonio import json_response, json_response_built, text_values
from jan.server.keys import BUS, LIVE_CONTROLS, MEDIA_FETCHER, SERVICES, SHUTTING_DOWN
from jan.server.media_fetch import fetch_body_images
from jan.server.resolve import model_and_engine
from jan.server.route_state import UPLOADS
from jan.server.schemas import (
    ChatCompletionRequest,
    ChatControlRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    RerankRequest,
    TokenizeRequest,
)
from jan.server.sse import SSEStream
from jan.server.validation import body_step, parse_body
from jan.services.engine_output import engine_failures
from jan.services.streams import DeltaStream
from jan.services.control import GenerationControl
from jan.services.types import ChatRequest
from jan.services.types import EmbeddingRequest as TypedEmbeddingRequest

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()
T = TypeVar("T")

async def first_delta(request: web.Request, stream: DeltaStream, model_id: str | None) -> tuple[Any, DeltaStream]:
    """Start the stream (so setup errors raise before any byte is sent; a client gone meanwhile cancels it:
    :func:`first_item`); returns its first delta."""
    return await first_item(request, stream, model_id), stream


async def stream_sse(request: web.Request, stream: DeltaStream, first: Any,
                     encode: Callable[[Any], dict[str, Any] | None],
                     headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Relay typed deltas as SSE chunks. A client that goes away, or a server shutting down,
    closes the stream, which cancels the generation."""
    sse = SSEStream(request)
    sse.response.headers.update(headers or {})
    finished = False
    shutting_down = request.app[SHUTTING_DOWN]

    async def deltas() -> AsyncIterator[Any]:
        if first is not None:
            yield first
        async for delta in stream:
            yield delta

    try:
        async with stream:
            async for delta in deltas():
                chunk = encode(delta)
                if chunk is not None:  # a choice's last chunk goes out with what follows it (SSEStream)
                    await sse.send(chunk, hold=getattr(delta, "finish_reason", None) is not None)
                raise_if_gone(request)  # (a delta with nothing to send wrote nothing that would have noticed)
                if shutting_down.is_set():
                    break  # leaving the block closes the stream, which cancels the generation
            else:
                finished = True
        if finished:
            await sse.done()
        else:
            await sse.error(shutdown_error().body())
    except (ConnectionResetError, OSError) as exc:
        log.debug("client disconnected mid-stream: %s", exc)  # closing the stream cancelled the generation
    except Exception as exc:  # noqa: BLE001
        if not sse.started:
            raise
        with contextlib.suppress(ConnectionResetError, OSError):
            await sse.error(to_api_error(exc).body())
    finally:
        if not finished:
            request.app[BUS].emit_nowait(InferenceStopped(model_id=stream.model or "", reason="client disconnected"))
    return sse.response


async def stream_response(request: web.Request, body: Any, stream: DeltaStream,
                          encoder_for: Callable[[str, bool], Any],
                          headers_for: Callable[[str | None], Awaitable[dict[str, str]]] | None = None
                          ) -> web.StreamResponse:
    """Start ``stream`` and relay it as SSE through ``encoder_for(model_id, include_usage)``;
    ``headers_for(model_id)`` adds response headers."""
    first, stream = await first_delta(request, stream, body.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    headers = await headers_for(stream.model) if headers_for is not None else None
    return await stream_sse(request, stream, first, encoder_for(stream.model or "", include_usage).encode,
                            headers=headers)


# The OpenAI routes are also served without /v1, as llama-server does (many local clients rely on it).
@routes.post("/v1/chat/completions")
@routes.post("/chat/completions")
@prompt_param("messages")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Chat completion (OpenAI); streamed as server-sent events with ``stream: true``."""
    body = await parse_body(request, ChatCompletionRequest)
    chat = await typed_chat(request.app, body)
    service = request.app[SERVICES].chat
    top, legacy = chat.top_logprobs, body.legacy_functions
    per_token = bool(body.timings_per_token)
    cid = wire.completion_id("chat.completion")
    with live_control(request.app, cid, chat, body.reasoning_control) as chat:
        try:
            if not body.stream:
                result = await unless_disconnected(request, service.complete(chat), chat.model)
                # logprobs are a few values per token and alternative (with its bytes): n long replies, a big body
                values = sum(len(c.logprobs or ()) for c in result.choices) * (1 + top) * 8
                return await json_response_built(
                    lambda: wire.chat_completion(result, top_logprobs=top, legacy_functions=legacy,
                                                 completion_id=cid, post_sampling=chat.post_sampling_probs),
                    values=values, headers=await template_headers(request, result.model))
            post_sampling = chat.post_sampling_probs
            return await stream_response(request, body, service.stream(chat),
                                         lambda model, usage: wire.ChatChunkEncoder(model, top_logprobs=top,
                                                                                    include_usage=usage,
                                                                                    legacy_functions=legacy,
                                                                                    completion_id=cid,
                                                                                    timings_per_token=per_token,
                                                                                    post_sampling=post_sampling),
                                         headers_for=lambda model: template_headers(request, model))
        except MediaError as exc:  # (before any byte is sent) said of the message's field
            raise wire.media_error(exc, body) from None


@contextlib.contextmanager
def live_control(app: web.Application, cid: str, chat: ChatRequest, armed: bool | None) -> Iterator[ChatRequest]:
    """``chat`` with a :class:`GenerationControl` (``reasoning_control``: llama-server's) kept under the reply's id
    while the reply is made, for ``POST /v1/chat/completions/control``; ``chat`` as it is otherwise."""
    if not armed:
        yield chat
        return
    control = GenerationControl()
    app[LIVE_CONTROLS][cid] = control
    try:
        yield dataclasses.replace(chat, control=control)
    finally:
        app[LIVE_CONTROLS].pop(cid, None)


@routes.post("/v1/chat/completions/control")
@routes.post("/chat/completions/control")
async def chat_control(request: web.Request) -> web.Response:
    """Act on a chat completion while it is generated (llama-server's): ``{"id": "chatcmpl-...", "action":
    "reasoning_end"}`` closes its thinking at the next token, so that the model answers now. The completion must
    have been asked with ``reasoning_control: true``. Answers ``{"success": true}``, or ``{"success": false,
    "message"}`` when there is nothing to end (no such completion running, or one that does not think)."""
    body = await parse_body(request, ChatControlRequest)
    control = request.app[LIVE_CONTROLS].get(body.id)
    if control is None:
        return json_response({"success": False, "message": "no active completion for this id (it has ended, or it "
                                                           "was not asked with reasoning_control: true)"})
    outcome = control.end_reasoning()
    if outcome in ("ended", "pending"):
        return json_response({"success": True})
    why = {"not_armed": control.unarmed_reason or "this completion's model does not think (its chat format has "
                                                  "no thinking), or its engine cannot end a thinking",
           "finished": "the completion has finished"}[outcome]
    return json_response({"success": False, "message": why})


async def typed_chat(app: web.Application, body: ChatCompletionRequest) -> ChatRequest:
    """The typed chat request of a chat completion body, its images fetched and its documents read (the route's
    and a batch item's way in)."""
    await fetch_body_images(body, app[MEDIA_FETCHER])
    await read_body_documents(body, app.get(UPLOADS), app[MEDIA_FETCHER])  # file parts' file_id
    return await body_step(wire.chat_request, body)  # (off the loop for a big body, as parsing it was)


async def template_headers(request: web.Request, model_id: str | None) -> dict[str, str]:
    """``X-Jan-Chat-Template`` on a chat reply rendered with a stand-in template (a model without one
    of its own): the reason its output may be poor, where a client can see it."""
    if not model_id:
        return {}
    with contextlib.suppress(Exception):  # a header, never a failure
        _model, engine = await model_and_engine(request, model_id)
        info_of = getattr(engine, "chat_template_info", None)
        info = info_of(model_id) if info_of is not None else None
        if info and info.get("fallback"):
            text = f'{info["name"]}; fallback="{info["fallback"]}"'
            return {"X-Jan-Chat-Template": text.encode("ascii", "replace").decode().replace("\n", " ")[:300]}
    return {}


@routes.post("/v1/completions")
@routes.post("/completions")
@prompt_param("prompt")
async def completions(request: web.Request) -> web.StreamResponse:
    """Text completion (OpenAI legacy); streamed as server-sent events with ``stream: true``."""
    body = await parse_body(request, CompletionRequest)
    req = await body_step(wire.completion_request, body)
    stream = request.app[SERVICES].completions.stream(req)
    want_logprobs = req.logprobs is not None
    if not body.stream:
        answer = await unless_disconnected(request, collect_completion(stream, req), req.model)
        # echo with logprobs scores every prompt token with up to 20 alternatives: a long prompt is a big body
        return await json_response_built(lambda: answer, values=_completion_values(answer))
    return await stream_response(request, body, stream, lambda model, usage: wire.CompletionChunkEncoder(
        model, logprobs=want_logprobs, include_usage=usage, timings_per_token=bool(body.timings_per_token)))


async def collect_completion(stream: DeltaStream, req: Any) -> dict[str, Any]:
    """A completion stream's whole answer, as OpenAI's non-streamed ``text_completion``."""
    want_logprobs = req.logprobs is not None
    async with stream:
        encoder = None
        async for delta in stream:
            encoder = encoder or wire.CompletionChunkEncoder(stream.model or "", logprobs=want_logprobs)
            encoder.encode(delta)
    return (encoder or wire.CompletionChunkEncoder(req.model or "")).response()


def _completion_values(answer: dict[str, Any]) -> int:
    """About how many JSON values a completion's answer holds: its choices' tokens, with their alternatives."""
    values = 0
    for choice in answer.get("choices", ()):
        logprobs = choice.get("logprobs") or {}
        tokens = len(logprobs.get("tokens") or ())
        top = max((len(t) for t in logprobs.get("top_logprobs") or () if t), default=0)
        # OpenAI's lists (a token, its logprob and offset, its alternatives) and llama-server's content list (each
        # token's and alternative's id, text, bytes and logprob)
        values += 1 + tokens * (4 + top) + tokens * 5 * (1 + top)
    return values


async def typed_embedding(app: web.Application, body: EmbeddingRequest) -> TypedEmbeddingRequest:
    """The typed request of an embedding body, the images its content inputs give by URL fetched (as a chat's;
    the route's and a batch's line's alike)."""
    await fetch_body_images(body, app[MEDIA_FETCHER])
    return await body_step(wire.embedding_request, body)


@routes.post("/v1/embeddings")
@routes.post("/embeddings")
@prompt_param("input")
async def embeddings(request: web.Request) -> web.Response:
    """Embeddings (OpenAI): one vector per input, float or base64. A body with llama-server's ``content`` and no
    ``input`` is answered as llama-server answers it on these paths: its native ``/embedding`` (its field is "not
    OAI compatible"), not a 400 for an ``input`` the client never meant to send."""
    try:
        body = await parse_body(request, EmbeddingRequest)
    except APIError as exc:
        if exc.param == "input" and exc.code == "missing_required_parameter" and await _sends_content(request):
            from jan.server.dialect_errors import NATIVE_EMBEDDING
            from jan.server.routes.llamacpp import embedding as native_embedding

            request[NATIVE_EMBEDDING] = True  # (its errors in llama-server's shape too)
            return await native_embedding(request)
        if exc.param == "content" and await _sends_content(request, also="input"):
            # llama-server's name of input beside input itself: said as /embedding says it, not as a field jan
            # never heard of (refused as unknown, the client would drop the one jan does take)
            from jan.server.dialects.llamacpp import BOTH_EMBEDDING_INPUTS

            raise APIError(400, BOTH_EMBEDDING_INPUTS, param="content", code="invalid_value") from None
        raise
    typed = await typed_embedding(request.app, body)
    try:
        result = await unless_disconnected(request, request.app[SERVICES].embeddings.embed(typed), body.model)
    except MediaError as exc:  # a prompt object's media (llama-server's) the model cannot take: said of its field
        raise wire.embedding_media_error(exc, body) from None
    return await json_response_built(lambda: wire.embeddings_response(result, body.encoding_format),
                                     values=sum(len(v) for v in result.vectors))


async def _sends_content(request: web.Request, also: str | None = None) -> bool:
    """Whether the request's JSON body (read already: refused) is an object with a non-null ``content`` (and a
    non-null ``also``, when given)."""
    from jan.server.validation import read_json

    try:
        data = await read_json(request)
    except APIError:
        return False
    return (isinstance(data, dict) and data.get("content") is not None
            and (also is None or data.get(also) is not None))


@routes.post("/v1/rerank")
@routes.post("/rerank")
@routes.post("/v1/reranking")
@routes.post("/reranking")
async def rerank(request: web.Request) -> web.Response:
    """Rerank (llama-server's paths; Jina's, Cohere's or Text Embeddings Inference's body): the documents most
    relevant to the query first, scored by a reranker model."""
    body = await parse_body(request, RerankRequest)
    typed = await body_step(wire.rerank_request, body)
    try:
        result = await unless_disconnected(request, request.app[SERVICES].embeddings.rerank(typed), body.model)
    except ValueError as exc:  # a pair too long, an empty one: said of the field the body sent (query, documents, texts)
        if (refusal := wire.rerank_refusal(exc, body)) is None:
            raise
        raise refusal from None
    return await json_response_built(lambda: wire.rerank_response(result, body), values=len(result.ranked) * 3)


def _piece(piece: bytes) -> str | list[int]:
    """A token's piece as llama-server's ``with_pieces`` gives it: its text, or, when its bytes are no whole UTF-8
    text (part of a character: an emoji is four byte tokens), the bytes as numbers. As text each was a U+FFFD, which
    neither told the bytes nor joined back into the character."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


@routes.post("/v1/tokenize")
@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    """Text to token ids with the model's vocabulary (``with_pieces`` adds each token's text)."""
    body = await parse_body(request, TokenizeRequest)
    target = await request.app[SERVICES].models.resolve(body.model)
    model, engine = target.model, target.engine
    given = body.content if body.content is not None else body.text
    # a text is one piece; {} tokenizes nothing, as llama-server answers it
    pieces_given: list[str | int] = [given] if isinstance(given, str) else list(given or ())
    await _check_token_ids(request, target, pieces_given)

    async def tokenized() -> tuple[list[int], list[bytes] | None]:
        tokens: list[int] = []
        # null is the field's default (as llama-server reads it), not a value for the engine's yes/no checks
        with engine_failures(engine, "tokenize()"):  # an extension's own exception names it, as in every service
            for i, piece in enumerate(pieces_given):
                if isinstance(piece, str):
                    # (llama-server's mixed prompt: add_special only before a leading text piece)
                    tokens += await engine.tokenize(model, piece, add_special=bool(body.add_special) and i == 0,
                                                    parse_special=body.parse_special is not False)
                else:
                    tokens.append(piece)
            pieces = await engine.token_pieces(model, tokens) \
                if body.with_pieces and hasattr(engine, "token_pieces") else None
        return tokens, pieces

    # (the engine loads the model first where it is not loaded, and a long text takes seconds: at a stop the client
    # is told now, as every request still waiting is, not after the stop's grace period)
    tokens, pieces = await unless_stopping(request, tokenized(), WAIT_SHUTDOWN)

    def answer() -> dict[str, Any]:  # (built off the event loop when large: a tokenized book is millions of ids)
        if pieces is None:
            return {"tokens": tokens}
        return {"tokens": [{"id": t, "piece": _piece(p)} for t, p in zip(tokens, pieces)]}
    return await json_response_built(answer, values=len(tokens) * (1 if pieces is None else 3))


async def _check_token_ids(request: web.Request, target: Any, pieces: list[str | int]) -> None:
    """A 400 naming ``content[i]`` for a token id of a mixed ``/tokenize`` content outside the model's vocabulary
    (llama-server echoes any number back as a token, which a client then feeds to a completion that refuses it,
    or a ``with_pieces`` that reads past the vocabulary); none where the vocabulary is not known (a remote model:
    its server judges)."""
    if not any(isinstance(p, int) for p in pieces):
        return
    abilities = await request.app[SERVICES].models.abilities(target)
    n_vocab = abilities.n_vocab if abilities is not None else None
    if n_vocab is None:
        return
    for i, piece in enumerate(pieces):
        if isinstance(piece, int) and not 0 <= piece < n_vocab:
            raise APIError(400, f"content[{i}]: token id {piece} is outside the model's vocabulary "
                                f"(0..{n_vocab - 1})", param=f"content[{i}]", code="invalid_value")


@routes.post("/v1/detokenize")
@routes.post("/detokenize")
async def detokenize(request: web.Request) -> web.Response:
    """Token ids to text."""
    body = await parse_body(request, DetokenizeRequest)
    model, engine = await model_and_engine(request, body.model)

    async def detokenized() -> str:
        with engine_failures(engine, "detokenize()"):
            return await engine.detokenize(model, body.tokens)
    # (told at once at a stop, as /tokenize is; the stop's 503 is no failure of the engine's)
    content = await unless_stopping(request, detokenized(), WAIT_SHUTDOWN)
    # (written off the event loop when long: 320 Ki ids spell megabytes of text)
    return await json_response_built(lambda: {"content": content}, values=text_values(content))


async def _prompt_of(request: web.Request, use: Callable[[ChatRequest], Awaitable[T]],
                     render_only: bool = False) -> T:
    """What ``use`` (the chat's :meth:`~jan.services.chat.ChatService.render` or ``count``) makes of a chat
    completion body's prompt, by the chat's own rendering: its images fetched, its documents read, nothing
    generated (``render_only``: as :func:`~jan.server.openai_wire.chat_request` takes it)."""
    body = await parse_body(request, ChatCompletionRequest)
    await fetch_body_images(body, request.app[MEDIA_FETCHER])
    await read_body_documents(body, request.app.get(UPLOADS), request.app[MEDIA_FETCHER])
    try:
        # (rendering loads the model first where it is not loaded: told at once at a stop, as /tokenize is)
        return await unless_stopping(request, use(await body_step(wire.chat_request, body, render_only)),
                                     WAIT_SHUTDOWN)
    except MediaError as exc:  # said of the message's field, as the chat completion it renders would say it
        raise wire.media_error(exc, body) from None


@routes.post("/v1/apply-template")
@routes.post("/apply-template")
async def apply_template(request: web.Request) -> web.Response:
    """The exact prompt a chat request renders to (llama-server's ``/apply-template``): ``{"prompt": ...}``."""
    prompt = (await _prompt_of(request, request.app[SERVICES].chat.render, True)).text
    # (written off the event loop when long: 16 MB of messages render to a prompt as long)
    return await json_response_built(lambda: {"prompt": prompt}, values=text_values(prompt))


@routes.post("/v1/chat/completions/input_tokens")
@routes.post("/chat/completions/input_tokens")
@prompt_param("messages")
async def chat_input_tokens(request: web.Request) -> web.Response:
    """The prompt tokens of a chat completion body, as the model's chat template and vocabulary make them
    (llama-server's): ``{"object": "response.input_tokens", "input_tokens": n}``."""
    # (a remote model's server counts it: ChatService.count)
    count = await _prompt_of(request, request.app[SERVICES].chat.count)
    return json_response({"object": "response.input_tokens", "input_tokens": count})
