"""Relaying a dialect's named server-sent events (Anthropic Messages, OpenAI Responses).

Both dialects send ``event: <name>`` + ``data: {json}`` pairs and end without OpenAI's
``[DONE]``; an error after the first byte becomes the dialect's own error event.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web

from jan.server.disconnect import first_item, shutdown_error
from jan.server.errors import APIError, to_api_error
from jan.server.keys import SHUTTING_DOWN
from jan.server.sse import SSEStream

log = logging.getLogger("jan.server")
T = TypeVar("T")

Event = tuple[str, dict[str, Any]]


async def started(request: web.Request | None, stream: AsyncIterator[T], model_id: str | None) -> AsyncIterator[T]:
    """Await the stream's first item now (so setup errors — unknown model, bad template,
    context overflow — raise before any byte is sent, as a plain 4xx; a client gone meanwhile
    cancels it: :func:`first_item`; no ``request`` for work no client waits on) and hand back an
    equivalent stream; closing it closes ``stream`` (which cancels the generation)."""
    first = await first_item(request, stream, model_id)
    if first is None:
        return _empty(stream)

    async def rest() -> AsyncIterator[T]:
        try:
            yield first
            async for item in stream:
                yield item
        finally:
            await stream.aclose()

    return rest()


async def _empty(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    await stream.aclose()
    return
    yield  # never reached: makes this an async generator


async def relay(request: web.Request, events: AsyncIterator[Event],
                error_event: Callable[[APIError], Event]) -> web.StreamResponse:
    """Send ``events`` as SSE; a failure (or the server shutting down) after the first byte
    is sent as ``error_event(error)``, then the stream ends. A client that goes away closes
    ``events``, which cancels the generation behind them."""
    sse = SSEStream(request)
    shutting_down = request.app[SHUTTING_DOWN]
    try:
        async with contextlib.aclosing(events) as stream:
            async for name, data in stream:
                await sse.send(data, event=name)
                if shutting_down.is_set():
                    raise shutdown_error()
        await sse.end()
    except (ConnectionResetError, OSError) as exc:
        log.debug("client disconnected mid-stream: %s", exc)
    except Exception as exc:  # noqa: BLE001 - becomes the dialect's error event
        if not sse.started:
            raise
        name, data = error_event(to_api_error(exc))
        with contextlib.suppress(ConnectionResetError, OSError):
            await sse.send(data, event=name, hold=True)
            await sse.end()
    return sse.response
