"""OpenAI-compatible inference: chat, completions, embeddings, plus tokenize/detokenize."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from jan.core import InferenceStopped, collect_chat_completion, collect_completion
from jan.server.errors import APIError, to_api_error
from jan.server.keys import BUS, SHUTTING_DOWN
from jan.server.resolve import model_and_engine
from jan.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from jan.server.sse import SSEStream
from jan.server.validation import parse_body

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()


async def stream_chunks(request: web.Request, chunks: AsyncIterator[dict[str, Any]], *, model_id: str,
                        include_usage: bool) -> web.StreamResponse:
    """Relay engine chunks as SSE. The first chunk is awaited before any byte is sent, so
    failures that happen up front (bad template, context overflow) are still a plain 4xx."""
    sse = SSEStream(request)
    finished = False
    shutting_down = request.app[SHUTTING_DOWN]
    try:
        async with contextlib.aclosing(chunks) as stream:
            async for chunk in stream:
                if not chunk.get("choices") and "usage" in chunk and not include_usage:
                    continue
                await sse.send(chunk)
                if shutting_down.is_set():
                    break  # leaving the block closes the stream, which cancels the generation
            else:
                finished = True
        if finished:
            await sse.done()
        else:
            await sse.error(APIError(503, "The server is shutting down; the generation was stopped.",
                                     type="server_error", code="server_shutdown").body())
    except (ConnectionResetError, OSError) as exc:
        # the client went away: closing the stream above cancelled the generation
        log.debug("client disconnected mid-stream: %s", exc)
    except Exception as exc:  # noqa: BLE001
        if not sse.started:
            raise
        with contextlib.suppress(ConnectionResetError, OSError):
            await sse.error(to_api_error(exc).body())
    finally:
        if not finished:
            request.app[BUS].emit_nowait(InferenceStopped(model_id=model_id, reason="client disconnected"))
    return sse.response


async def first_then_rest(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Start the generator (so setup errors raise now) and hand back an equivalent stream."""
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()
        raise

    async def rest():
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return rest()


async def generate(request: web.Request, body: ChatCompletionRequest | CompletionRequest, start, collect):
    """Run a chat or text completion: ``start(engine)`` is the engine method, ``collect`` the aggregator
    that turns its chunks into one response when the client did not ask for a stream."""
    model, engine = await model_and_engine(request, body.model)
    payload = body.model_dump(exclude_none=True, by_alias=True)
    if not body.stream:
        payload["stream_options"] = {"include_usage": True}  # usage belongs in every response
        return web.json_response(await collect(start(engine)(model, payload)))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = await first_then_rest(start(engine)(model, payload))
    return await stream_chunks(request, chunks, model_id=body.model, include_usage=include_usage)


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Chat completion (OpenAI); streamed as server-sent events with ``stream: true``."""
    body = await parse_body(request, ChatCompletionRequest)
    return await generate(request, body, lambda engine: engine.chat, collect_chat_completion)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    """Text completion (OpenAI legacy); streamed as server-sent events with ``stream: true``."""
    body = await parse_body(request, CompletionRequest)
    return await generate(request, body, lambda engine: engine.complete, collect_completion)


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    """Embeddings (OpenAI): one vector per input, float or base64."""
    body = await parse_body(request, EmbeddingRequest)
    model, engine = await model_and_engine(request, body.model)
    return web.json_response(await engine.embed(model, body.model_dump(exclude_none=True)))


@routes.post("/v1/tokenize")
@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    """Text to token ids with the model's vocabulary (``with_pieces`` adds each token's text)."""
    body = await parse_body(request, TokenizeRequest)
    model, engine = await model_and_engine(request, body.model)
    text = body.content if body.content is not None else body.text
    tokens = await engine.tokenize(model, text, add_special=body.add_special, parse_special=body.parse_special)
    result: dict[str, Any] = {"tokens": tokens}
    if body.with_pieces and hasattr(engine, "token_pieces"):
        pieces = await engine.token_pieces(model, tokens)
        result["tokens"] = [{"id": t, "piece": p} for t, p in zip(tokens, pieces)]
    return web.json_response(result)


@routes.post("/v1/detokenize")
@routes.post("/detokenize")
async def detokenize(request: web.Request) -> web.Response:
    """Token ids to text."""
    body = await parse_body(request, DetokenizeRequest)
    model, engine = await model_and_engine(request, body.model)
    return web.json_response({"content": await engine.detokenize(model, body.tokens)})
