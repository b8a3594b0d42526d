"""One response being generated, in its own task.

A response runs apart from the request that made it, so a ``background`` response outlives
that request, any in-flight response can be cancelled (``POST /v1/responses/{id}/cancel``)
and ``GET /v1/responses/{id}`` can show it while it runs. The run formats the chat path's
deltas with :class:`~jan.server.dialects.responses.ResponseStream`, keeps the events of a streamed
response for the requests that read them (the one that created it; for a ``background`` one, also
``GET /v1/responses/{id}?stream=true&starting_after=N``, which replays them and follows on), and saves
the response when it is stored. :class:`ReplayableStreams` holds the background streams while they run and
a while after, to be replayed. No HTTP here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jan.server.dialects.responses_store import KeptTurn, ResponsesStore, StoredResponse
from jan.services.event_log import EventLog
from jan.services.types import ChatDelta, ChatMessage

if TYPE_CHECKING:
    from jan.server.dialects.responses import ResponsesRequest

# The wire format (jan.server.dialects.responses: pydantic models) is imported by the runs, not at the top: the
# server holds a ReplayableStreams from its start, long before a first Responses request, if ever (resident memory
# at start, issue 16).

log = logging.getLogger("jan.server")

__all__ = ["STREAM_KEPT_S", "InConversation", "ReplayableStreams", "ResponseRun"]


@dataclass(frozen=True)
class InConversation:
    """The conversation a response is made in: its store and thread, the turns its input adds (each with the ids
    and kinds of its items: :class:`~jan.server.dialects.responses_store.KeptTurn`), ``taken`` (the ids its items
    have, read when they are added: an input item's id one of them has already is given anew) and ``history`` (the
    ids of the items the response read before its input)."""

    store: ResponsesStore
    thread_id: str
    inputs: list[KeptTurn]
    taken: Callable[[str], Awaitable[set[str]]]
    history: list[str] = field(default_factory=list)
    #: Lets the next response into the conversation (:mod:`jan.server.dialects.conversation_locks`): called once
    #: this one's items are in it, before its final event, or when the run is torn down.
    release: Callable[[], None] = lambda: None
    #: :attr:`release`, waiting until the conversation is free (its claim on disk removed in a worker thread)
    let_go: Callable[[], Awaitable[None]] | None = None

# The Responses stream's text deltas, kept compactly (jan.services.event_log): a delta of an item's text, reasoning,
# call arguments or custom tool input whose other fields are plain values (logprobs none: a list of them is kept
# with its event as it is), made again in the order ResponseStream.event gives its fields.
_DELTAS = frozenset({"response.output_text.delta", "response.reasoning_text.delta",
                     "response.reasoning_summary_text.delta",
                     "response.function_call_arguments.delta", "response.custom_tool_call_input.delta"})
_NO_LOGPROBS = ("logprobs", ())  # (in a key: the field, an empty list)


def _split_delta(event: dict[str, Any]) -> tuple[tuple, str, int] | None:
    if event.get("type") not in _DELTAS:
        return None
    text, number = event.get("delta"), event.get("sequence_number")
    if not isinstance(text, str) or type(number) is not int:
        return None
    key = []
    for name, value in event.items():
        if name in ("delta", "sequence_number"):
            key.append((name, None))  # (where it stands)
        elif name == "logprobs" and value == []:
            key.append(_NO_LOGPROBS)
        elif value is None or type(value) in (str, int):
            key.append((name, value))
        else:
            return None
    return tuple(key), text, number


def _join_delta(key: tuple, text: str, number: int | None) -> dict[str, Any]:
    return {name: (text if name == "delta" else number if name == "sequence_number" else
                   [] if (name, value) == _NO_LOGPROBS else value) for name, value in key}


# The event that ends a stream, per final status. The Responses stream has no "cancelled" event (the SDK's
# ResponseStreamEvent has completed, failed and incomplete): a cancelled response (a cancel request's, or one the
# server cut off: its model stopped or unloaded) ends as one that did not complete, ``response.incomplete`` carrying
# the response with status "cancelled", which clients (the SDK's stream, Codex) take as a turn that ended early,
# never as a whole answer. (response.failed would say the model failed, with an error, which it did not.)
FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete",
                "failed": "response.failed", "cancelled": "response.incomplete"}


#: What stays on disk of a stored response whose end the store refused: the record written as it began, with its
#: input items (and, outside a conversation, its input turns in its thread), which a GET reads as failed.
STORED_AS_BEGUN = "the response stays stored as it began, with its input and no output (a GET reads it failed)"


def _not_saved(response_id: str, exc: Exception) -> None:
    """Log a response the store could not save: one line when its store was disabled meanwhile (no fault of jan's,
    nothing a traceback explains), the traceback for anything else."""
    from jan.core import ExtensionNotFoundError

    if isinstance(exc, ExtensionNotFoundError):
        log.warning("could not save response %s: %s", response_id, exc)
    else:
        log.exception("could not save response %s", response_id, exc_info=exc)


def _never_gone() -> bool:
    return False


class ResponseRun:
    """Generates response ``response_id`` from ``deltas`` (the chat service's stream);
    ``model()`` names the model (the request's, or the one the service resolved).

    ``events`` yields the stream's events in order (``response.created`` ... the final
    event), from any point, to each request that reads them; :meth:`wait` returns the final ``response``
    object; :meth:`cancel` stops the generation (status ``cancelled``). ``error_of`` turns an
    exception into the ``error`` object of a failed response.
    """

    def __init__(self, response_id: str, body: ResponsesRequest, model: Callable[[], str | None],
                 deltas: AsyncIterator[ChatDelta], *,
                 store: ResponsesStore | None, previous: StoredResponse | None, inputs: list[ChatMessage],
                 input_items: list[dict[str, Any]], error_of: Callable[[BaseException], dict[str, Any]],
                 streamed: bool = True, conversation: InConversation | None = None,
                 client_gone: Callable[[], bool] = lambda: False):
        self.id = response_id
        self.body = body
        self._model = model  # the resolved model id, once the chat service has resolved it
        self._deltas = deltas
        self._store = store
        self._previous = previous
        self._inputs = inputs
        self._input_items = input_items
        self._error_of = error_of
        # (the store and the thread of the conversation the response is made in: its turns join it when it ends,
        # stored or not, as OpenAI adds a response's items to its conversation whatever its ``store``)
        self._conversation = conversation
        # Nobody reads the events of a response that is not streamed: they are not kept.
        self._streamed = streamed
        # Whether the client of a foreground response left: asked after each delta, as a stretch of deltas with no
        # event to send (or a whole answer) writes nothing that would notice, and would generate on for nobody.
        self._client_gone = client_gone
        # (their text deltas kept compactly: a replayable stream is kept a while after it ends)
        self._events: EventLog[dict[str, Any]] = EventLog(_split_delta, _join_delta)
        self._more = asyncio.Event()  # set (and replaced) when an event is added or the run ends
        from jan.server.dialects.responses import ResponseStream

        self.encoder = ResponseStream.for_request(body)
        self.created_at: int | None = None
        self.status = "queued" if body.background else "in_progress"
        self.final: dict[str, Any] | None = None
        self._done = asyncio.Event()
        self.ended_at: float | None = None  # time.monotonic() when the run ended
        self._task: asyncio.Task | None = None
        self._cancelled = False
        self._generating = False  # the deltas are being read: a cancel interrupts the task
        # Set once a stored response is on disk (or storing it failed, or nothing is stored): its id is
        # shown to no one before, so an id a client was given is never lost to a crash (see stored()).
        self._stored = asyncio.Event()
        #: why its record could not be written when the response began (it then failed at once), or None
        self.store_error: BaseException | None = None

    def snapshot(self, status: str | None = None, **extra: Any) -> dict[str, Any]:
        """The ``response`` object as it stands (the output so far, copied)."""
        if self.final is not None and status is None:
            return self.final
        from jan.server.dialects.responses import response_object

        obj = response_object(self.id, self.body, self._model() or "", status=status or self.status,
                              output=copy.deepcopy(self.encoder.output), created_at=self.created_at, **extra)
        self.created_at = obj["created_at"]
        return obj

    def start(self, on_done: Callable[[], Any] | None = None) -> None:
        """Start generating in a task of its own; ``on_done()`` is called when the run has ended."""
        self.snapshot()  # fixes created_at
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"response {self.id}")
        if on_done is not None:
            self._task.add_done_callback(lambda _task: on_done())

    @property
    def replayable(self) -> bool:
        """Whether its stream can be read again (OpenAI's rule: a ``background`` response created with
        ``stream: true``); a foreground stream is its one request's."""
        return self.body.background and self._streamed

    def _emit(self, event: dict[str, Any]) -> None:
        if self._streamed:
            self._events.append(event)
            self._wake()

    def kept_bytes(self) -> int:
        """About how many bytes its kept events take."""
        return self._events.nbytes()

    def _wake(self) -> None:
        more, self._more = self._more, asyncio.Event()
        more.set()

    def _end(self) -> None:
        self.ended_at = time.monotonic()
        self._done.set()
        self._wake()

    async def _run(self) -> None:
        try:
            await self._generate()
        finally:
            if self._conversation is not None:
                self._conversation.release()  # (torn down before its end: the conversation is not left held)
            if not self._done.is_set():  # torn down from outside: whoever waits must not hang
                self.status = "failed"
                self.final = self.snapshot("failed", error={"code": "server_error", "message": "The server stopped."})
                self._end()
            self._let_go_of_inputs()

    def _let_go_of_inputs(self) -> None:
        """Once ended, a run is its events and :attr:`final` (replayed for up to :data:`STREAM_KEPT_S`): the request's
        input (its text, images, files: as sent, as items and as messages), kept with it, was held that long too,
        outside the :data:`STREAM_KEPT_BYTES` its streams are bounded by."""
        self.body = self.body.model_copy(update={"input": ""})
        self._inputs, self._input_items, self._previous = [], [], None
        self._deltas = None  # type: ignore[assignment]  # (read only while generating: closed by then)
        self._client_gone = _never_gone

    async def _generate(self) -> None:
        encoder = self.encoder
        stored = None
        store_error: Exception | None = None
        try:
            # Stored before the first event names the response (and before a background response's POST
            # answers, which waits on stored()): a kill -9 right after a client read the id must leave a
            # response that GET finds (ended as failed by the restart), not a 404.
            if self._store is not None:
                try:
                    within = self._conversation
                    stored = await self._store.begin(self.snapshot(), self._input_items, self._inputs, self._previous,
                                                     conversation=within.thread_id if within else None,
                                                     history=within.history if within else None)
                except Exception as exc:  # noqa: BLE001 - the response fails with it, below
                    store_error = self.store_error = exc
        finally:
            self._stored.set()
        self._emit(encoder.event("response.created", response=self.snapshot()))
        if self.status != "queued":
            self._in_progress()
        error = None
        try:
            try:
                if store_error is not None:
                    raise store_error
                async with contextlib.aclosing(self._deltas) as deltas:
                    # From here a cancel interrupts the generation; one asked while the response was
                    # being stored waited for that (interrupted, it would leave the response unsaved).
                    self._generating = True
                    if not self._cancelled:
                        async for delta in deltas:
                            if self._client_gone():
                                self._cancelled = True  # (leaving the block closes the deltas: the engine stops)
                                break
                            if self.status == "queued":  # a background response waited for the model until now
                                self._in_progress()
                            for event in encoder.feed(delta):
                                self._emit(event)
                self._generating = False
                if self._cancelled:  # asked before the generation began, or its client left
                    encoder.cancelled()
                # the engine's own cancel (the model stopped or unloaded under it) reads "cancelled" too
                status = "cancelled" if self._cancelled else encoder.status
            except asyncio.CancelledError:
                self._generating = False
                if not self._cancelled:
                    raise  # the server is going away, not a cancel request
                status = "cancelled"
                encoder.cancelled()  # the items it cut off close incomplete
            for event in encoder.finish():
                self._emit(event)
        except Exception as exc:  # noqa: BLE001 - a failed response carries its error
            status, error = "failed", self._error_of(exc)
        usage = encoder.usage
        final = self.snapshot(status, usage=usage, error=error, incomplete_reason=encoder.incomplete_reason,
                              reasoning_tokens=encoder.reasoning_tokens)
        if self._conversation is not None and (stored is not None or self._store is None):
            # (a stored response whose index could not be written failed before it began: nothing to add)
            try:
                answer = encoder.kept(final["output"]) if status != "failed" else []
                within = self._conversation
                await within.store.complete_in_conversation(within.thread_id, stored, final, within.inputs, answer,
                                                            taken=within.taken)
            except Exception as exc:  # noqa: BLE001 - the answer was given; saving it failed
                _not_saved(self.id, exc)
                status, final = self._unsaved(exc, status, final, began=stored is not None, conversation=True)
        if self._conversation is not None:
            # its items are in the conversation: the next response may read it (before the final event, so that a
            # client sending its next turn on reading it finds the conversation free)
            if self._conversation.let_go is not None:
                await self._conversation.let_go()
            else:
                self._conversation.release()
        if self._store is not None and stored is not None and self._conversation is None:
            try:
                answer = encoder.kept(final["output"]) if status != "failed" else []
                await self._store.complete(stored, final, answer)
            except Exception as exc:  # noqa: BLE001 - the answer was given; saving it failed
                _not_saved(self.id, exc)
                status, final = self._unsaved(exc, status, final, began=True, conversation=False)
        self.status, self.final = status, final
        self._emit(encoder.event(FINAL_EVENTS[status], response=final))
        self._end()

    def _unsaved(self, exc: Exception, status: str, final: dict[str, Any], *, began: bool,
                 conversation: bool) -> tuple[str, dict[str, Any]]:
        """``(status, response)`` of a response whose stored copy could not be completed (a disk that filled while
        it streamed): ``failed`` with ``exc``'s error (kept in :attr:`store_error`, which a request that waits for
        the whole response answers), never ``completed`` over the partial copy a GET finds. Its output stays, as
        generated. A store disabled meanwhile (``ExtensionNotFoundError``) keeps ``status``: no GET finds a copy
        through a store that is gone, and the answer was given whole (said in one log line, :func:`_not_saved`).

        ``began``: its record was written as it began (``store: true``): that copy stays (its input, no output; a
        GET reads it failed), and the error says so rather than "nothing was saved"; ``conversation``: the
        response was made in a conversation, which it added nothing to."""
        from jan.core import ExtensionNotFoundError
        from jan.store.errors import partly_saved

        if isinstance(exc, ExtensionNotFoundError):
            return status, final
        if began:
            exc = partly_saved(exc, STORED_AS_BEGUN + ("; nothing was added to its conversation" if conversation
                                                       else ""), "the response")
        self.store_error = exc
        return "failed", {**final, "status": "failed", "error": self._error_of(exc), "incomplete_details": None}

    def _in_progress(self) -> None:
        self.status = "in_progress"
        self._emit(self.encoder.event("response.in_progress", response=self.snapshot()))

    async def events(self, after: int = -1) -> AsyncIterator[dict[str, Any]]:
        """The stream's events whose ``sequence_number`` is above ``after`` (all of them: -1), those kept first,
        then each as it comes, until the final one. Any number of readers; one leaving stops nothing."""
        seen = 0
        while True:
            more = self._more  # taken before looking: an event added meanwhile sets this one
            while seen < len(self._events):
                event = self._events[seen]
                seen += 1
                if event["sequence_number"] > after:
                    yield event
            if self._done.is_set():  # (set after the final event is added: every event was read)
                return
            await more.wait()

    async def stored(self) -> None:
        """Wait until the response is on disk, when it is stored (at once otherwise), or its run has ended."""
        if self._task is None:
            return
        stored = asyncio.ensure_future(self._stored.wait())
        try:
            await asyncio.wait([stored, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stored.cancel()

    async def wait(self) -> dict[str, Any]:
        await self._done.wait()
        assert self.final is not None
        return self.final

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def cancel(self) -> dict[str, Any]:
        """Stop the generation; the response ends ``cancelled`` (saved, when stored) and is returned."""
        if self._task is not None and not self._done.is_set():
            self._cancelled = True
            if self._generating:  # else the run sees the flag when it gets there
                self._task.cancel()
        return await self.wait()

    async def abort(self) -> None:
        """On server shutdown: cancel and wait for the run to end. As :meth:`cancel`, a run still storing its start
        sees the flag when it gets to generating (interrupted there, the response was left half stored, and ended
        failed, "The server stopped.", instead of cancelled)."""
        if self._task is not None and not self._task.done():
            self._cancelled = True
            if self._generating:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


#: How long an ended background stream stays replayable: OpenAI's window (a stream "more than 5 minutes old can no
#: longer be streamed"), long enough for a client whose connection dropped to come back. Kept in memory only.
STREAM_KEPT_S = 300.0
#: About how many bytes the events of the ended streams kept may take in all: past it the oldest ended ones are
#: forgotten before their time (a replay of one is then a 404, as after STREAM_KEPT_S).
STREAM_KEPT_BYTES = 64 * 1024 * 1024


class ReplayableStreams:
    """The background streamed responses (:attr:`ResponseRun.replayable`) by id, from their start until
    ``kept_s`` seconds after their end, so that ``GET /v1/responses/{id}?stream=true`` can replay them."""

    def __init__(self, kept_s: float = STREAM_KEPT_S, kept_bytes: int = STREAM_KEPT_BYTES):
        self.kept_s = kept_s
        self.kept_bytes = kept_bytes
        self._runs: dict[str, ResponseRun] = {}

    def _prune(self) -> None:
        now = time.monotonic()
        for response_id, run in list(self._runs.items()):
            if run.ended_at is not None and now - run.ended_at > self.kept_s:
                del self._runs[response_id]
        ended = sorted((run for run in self._runs.values() if run.ended_at is not None), key=lambda r: r.ended_at)
        kept = sum(run.kept_bytes() for run in self._runs.values())
        for run in ended:  # the oldest first; a stream still running is never dropped
            if kept <= self.kept_bytes:
                break
            kept -= run.kept_bytes()
            del self._runs[run.id]

    def add(self, run: ResponseRun) -> None:
        """Hold ``run``, if its stream can be replayed."""
        self._prune()
        if run.replayable:
            self._runs[run.id] = run

    def get(self, response_id: str) -> ResponseRun | None:
        self._prune()
        return self._runs.get(response_id)

    def forget(self, response_id: str) -> None:
        self._runs.pop(response_id, None)
