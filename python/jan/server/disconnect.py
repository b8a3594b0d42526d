"""Non-streamed answers end when their client goes away (issue 10 item 16), in every dialect.

aiohttp does not cancel a handler whose client disconnects (``handler_cancellation`` is off, so
that writes already started are not torn). A streamed answer notices on its next write; a
non-streamed one writes nothing until the end, so :func:`unless_disconnected` watches the
connection while the generation runs and cancels it — which closes its delta stream and frees
the engine's slot — when the client is gone. A streamed answer sends nothing either until its first
delta (so that setup errors are a plain 4xx): :func:`first_item` watches the connection until then,
or a client that gave up on a request waiting in the queue would still have its whole prompt
evaluated, ahead of those still waiting. Work that waits on a model before any of that (its load, a tokenizing, a
chat's rendering: Ollama's explicit load, llama-server's prompts) is watched by :func:`unless_stopping`. Runs are not
cancelled this way: they are meant to finish and be saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from jan.core import InferenceStopped
from jan.server.keys import BUS, SHUTTING_DOWN

if TYPE_CHECKING:
    from jan.server.errors import APIError

T = TypeVar("T")

#: Seconds between checks that the client of a non-streaming request is still there.
DISCONNECT_POLL_S = 0.25


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


#: What a generation the server's stop cut off says (the 503 ``server_shutdown``, whole or as a stream's last event).
SHUTDOWN = "The server is shutting down; the generation was stopped."


def shutdown_error(message: str = SHUTDOWN) -> "APIError":
    """The 503 ``server_shutdown`` of work the server's stop cut off (each dialect shapes it)."""
    from jan.server.errors import APIError  # (jan.server.errors imports this module)

    return APIError(503, message, type="server_error", code="server_shutdown")


def raise_if_gone(request: web.Request) -> None:
    """Raise :class:`ConnectionResetError` when the client of a streamed answer is gone. A stream notices that on its
    next write, but a stretch of deltas that write nothing (thinking not shown, a dialect's encoder with nothing to
    say for them) would otherwise generate on for nobody, up to its token limit, its slot held: each streaming loop
    asks after every delta."""
    if client_gone(request):
        raise ConnectionResetError("the client disconnected mid-stream")


def raise_if_ended(request: web.Request) -> None:
    """:func:`raise_if_gone`, and :func:`shutdown_error` once the server is stopping, for the delta loop behind a
    :func:`jan.server.streaming.relay`: the relay asks of the stop after each event it sends, and deltas with no event
    to send would hold the stop up for its whole grace period, then end the stream with no error event."""
    raise_if_gone(request)
    stopping = request.app.get(SHUTTING_DOWN)
    if stopping is not None and stopping.is_set():
        raise shutdown_error()


async def _until_gone(request: web.Request, work: Awaitable[T],
                      stopping: asyncio.Event | None = None) -> tuple[str | None, T | None]:
    """(None, ``work``'s result); or, when the client goes away first, ``work`` cancelled and ("gone", None); or,
    when ``stopping`` is set first (the server is shutting down), ``work`` cancelled and ("stopping", None)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=DISCONNECT_POLL_S)
            if done:
                return None, task.result()
            if client_gone(request):
                return "gone", None
            if stopping is not None and stopping.is_set():
                return "stopping", None
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def unless_disconnected(request: web.Request, work: Awaitable[T], model_id: str | None, *,
                              at_shutdown: bool = True) -> T:
    """Await ``work`` (a non-streaming generation); when the client goes away first, cancel it and raise
    :class:`ConnectionResetError` (the connection is dropped; nobody is left to answer). When the server starts
    shutting down first, cancel it and raise the 503 ``server_shutdown`` a stream ends with: the client is told now,
    not left waiting out the stop's grace period for a dropped connection (``at_shutdown=False``: ``work`` ends at a
    shutdown by itself, as a foreground response does, cancelled by the app, and is answered as it ended)."""
    # (.get: an extension's sub-application, or a test's stand-in app, has no stop of its own to watch)
    why, result = await _until_gone(request, work, request.app.get(SHUTTING_DOWN) if at_shutdown else None)
    if why is None:
        return result  # type: ignore[return-value]
    if why == "stopping":
        request.app[BUS].emit_nowait(InferenceStopped(model_id=model_id or "", reason="server shutting down"))
        raise shutdown_error()
    request.app[BUS].emit_nowait(InferenceStopped(model_id=model_id or "", reason="client disconnected"))
    raise ConnectionResetError("the client disconnected before the response was ready")


# The request the running handler answers, and the handler's task: what :func:`while_client_waits` watches. A task
# the handler starts (a batch's, a run's) inherits the context, not the client: it is told apart by its task.
# Weak references: every context copied while a handler runs keeps this value — each timer it schedules (a body
# read's 60 s guard, a wait's timeout) keeps its context until its deadline even once cancelled, and a task it starts
# (a background response, a run) keeps it for its whole life — and a strong one kept the request, its body and the
# finished handler's answer that long with it.
_HANDLING: contextvars.ContextVar[tuple[weakref.ref[web.Request], weakref.ref[asyncio.Task]] | None] = \
    contextvars.ContextVar("jan_handling", default=None)


@web.middleware
async def handling_middleware(request: web.Request, handler):
    """Note the request being handled (:func:`while_client_waits`)."""
    token = _HANDLING.set((weakref.ref(request), weakref.ref(asyncio.current_task())))  # type: ignore[arg-type]
    try:
        return await handler(request)
    finally:
        _HANDLING.reset(token)


async def while_client_waits(work: Awaitable[T]) -> T:
    """Await ``work`` (fetching a request's media by URL, up to its 30 s limit), cancelled when the client of the
    request being handled goes away first (:class:`ConnectionResetError`): nobody is left for its answer, and a
    fetch left running held its connection to the media's server (and a place among the fetches) for nothing; or
    when the server starts stopping first (:func:`shutdown_error`).
    Work outside a request's handler (a batch's item, a run) is only awaited."""
    handling = _HANDLING.get()
    request = handling[0]() if handling is not None else None
    if request is None or handling[1]() is not asyncio.current_task():  # type: ignore[index]
        return await work
    why, result = await _until_gone(request, work, request.app.get(SHUTTING_DOWN))
    if why == "stopping":  # (told now, not after the stop's grace period as a dropped connection)
        raise shutdown_error("The server is shutting down; the request stopped while its media was fetched.")
    if why is not None:
        raise ConnectionResetError("the client disconnected before its media was fetched")
    return result  # type: ignore[return-value]


#: What a model load the server's stop cut off says.
LOAD_SHUTDOWN = "The server is shutting down; the model was not loaded."
#: What a request that waits on its model without generating (a tokenizing, a chat's rendering: each may load the
#: model first) says when the server's stop cut it off.
WAIT_SHUTDOWN = "The server is shutting down; the request was not answered (it was waiting for its model)."
#: What a slot action (llama-server's ``POST /slots/{id}``) the server's stop cut off says: one still waiting for its
#: busy slot is never run (the engine's close fails it); one already reading or writing its file ends by itself.
SLOT_SHUTDOWN = ("The server is shutting down; the slot action was not waited for (one still waiting for its slot "
                 "is not run).")


async def unless_stopping(request: web.Request, load: Awaitable[T], message: str = LOAD_SHUTDOWN, *,
                          watch_client: bool = True) -> T:
    """Await ``load`` (a model's load for the request being handled, or other work that waits on a model: a
    tokenizing, a chat's rendering, each of which may load the model first, a slot action waiting for its busy
    slot). The one watch every route that may wait for a load keeps on its client (as :func:`unless_disconnected`
    keeps it on a generation): when the client goes away first, ``load``'s await is cancelled and
    :class:`ConnectionResetError` raised at once (the 499 is counted then, not when the load ends). A load's own
    thread is left to finish (another request may be waiting for the same load); what it claimed for this request
    is given back (:meth:`jan.ModelPool.release_claim`), and nothing is generated. When the server starts stopping
    first, raise the 503 ``server_shutdown`` (each dialect shapes it; ``message`` says what was cut off) now, not a
    dropped connection once the stop's grace period is over; the work is then left to end (it cannot be cut short:
    its engine's stop waits for its thread, and frees what it made, or fails what still waits).
    ``watch_client=False``: a change the client asked for that goes on without it (a slot's save or restore, LoRA
    scales set once the model is loaded) is not cut short when it leaves; only the stop is watched."""
    stopping = request.app.get(SHUTTING_DOWN)
    if stopping is None:  # (an extension's sub-application, a test's stand-in app: no stop of its own)
        return await load
    if stopping.is_set():  # no work starts as the server stops
        if asyncio.iscoroutine(load):
            load.close()
        raise shutdown_error(message)
    task = asyncio.ensure_future(load)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        while not task.done() and not stopped.done():
            if watch_client and client_gone(request):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # (nobody is left to tell)
                    await task
                raise ConnectionResetError("the client disconnected while its request waited for its model")
            await asyncio.wait([task, stopped], timeout=DISCONNECT_POLL_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.add_done_callback(_retrieved)
    raise shutdown_error(message)


def _retrieved(task: asyncio.Future) -> None:
    """Work nobody awaits any more (a load, a slot action): its failure (the pool or the model closed under it) is
    read, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


_EMPTY = object()


async def _next(stream: AsyncIterator[T]) -> T | object:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:  # (told apart from an item: no StopAsyncIteration through a task's result)
        return _EMPTY


async def first_item(request: web.Request | None, stream: AsyncIterator[T], model_id: str | None) -> T | None:
    """The first item of a streamed answer's ``stream`` (None: it has none), before any byte is sent: setup
    errors (unknown model, context overflow) raise here, as a plain 4xx. While it is awaited (in the model's
    queue, evaluating the prompt) a client that goes away cancels it as :func:`unless_disconnected` does (no
    ``request``: work no client waits on, a batch's item, which only a cancel of its task stops). On any
    failure the stream is closed, which frees its place in the queue or its slot."""
    try:
        first = _next(stream)
        item = await (first if request is None else unless_disconnected(request, first, model_id))
    except BaseException:
        await stream.aclose()
        raise
    return None if item is _EMPTY else item
