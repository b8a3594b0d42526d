"""A running generation: iterate it (sync or ``async for``), cancel it, or wait for the whole result."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from jan.errors import BadRequestError, EngineError, JanError, ModelClosedError
from jan.engine.params import check_flag
from jan.engine.logs import forward_native_logs
from jan.engine.results import Chunk, Completion, TokenLogprob, TopLogprob, Usage, told_logprob

if TYPE_CHECKING:
    from jan.engine.model import Model

# Short enough that Ctrl-C interrupts a blocking iteration promptly.
_SYNC_WAIT_S = 0.1


class Request:
    """Handle on one queued or running generation.

    Events are pushed by the engine thread into a native queue; a sync
    iteration waits on it without holding the GIL, an async one is woken by
    the event loop through a file descriptor (no thread per request, no
    polling). Dropping the handle, calling :meth:`cancel` or a Ctrl-C while a
    sync iteration or :meth:`result` waits frees the slot at the engine's next step.
    """

    def __init__(self, native, model: "Model", pieces: Callable[[int], tuple[str, bytes]], *, logprobs: bool,
                 seed: int | None = None, thinking_budget: bool = False):
        # A request is made by Model.stream/generate; one made by hand of the wrong things failed at its first use
        # with an AttributeError of an attribute nobody named (jan.Request(None, ...).result()). Checked by what is
        # used, not by class: the engine's native request and model, or stand-ins of their shape.
        for name, value, needs in (("native", native, ("wait", "wait_final", "cancel", "fileno")),
                                   ("model", model, ("_room",))):
            if any(not hasattr(value, attr) for attr in needs):
                raise TypeError(f"{name}: expected the engine's {'native request' if name == 'native' else 'jan.Model'}"
                                f" (a jan.Request is made by Model.stream/generate), got {type(value).__name__}")
        if not callable(pieces):
            raise TypeError(f"pieces: expected a callable, got {type(pieces).__name__}")
        logprobs = check_flag("logprobs", logprobs)
        thinking_budget = check_flag("thinking_budget", thinking_budget)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
        self._native = native
        self._thinking_budget = thinking_budget
        self._model = model
        # a token's (text, bytes), for logprobs: its own reference, as the request is read to its end after a
        # close of its model too (it ends cancelled), when the model has let go of its vocabulary
        self._pieces = pieces
        self._logprobs = logprobs
        self._buffer: deque[Chunk] = deque()
        self._done = False
        self.seed = seed
        self.final: Chunk | None = None
        # The chunks result()/aresult() took, in stream order, for every call of them: they wait for one end and all
        # return its Completion (as a future's result()), whether called one after the other or at once from two
        # tasks or threads; only chunks a plain iteration took are not in it. The lock keeps the order when two
        # threads move chunks in at once.
        self._result_chunks: list[Chunk] = []
        self._result_lock = threading.Lock()
        self._result: Completion | None = None  # the Completion of _result_chunks, while no chunk joined them since
        self._result_size = 0
        self._watching: asyncio.AbstractEventLoop | None = None  # the loop watching the engine's fd
        self._fd = -1  # that fd, while watched
        # Every consumer awaiting the fd (two tasks iterating one request, aresult() awaited twice): all woken, since
        # the one that drains takes every event, and the fd is not readable again until the next one (the last
        # event drained by one left the others waiting on a fd that never became readable again: a hang).
        self._waiters: set[asyncio.Future] = set()
        # The process whose model's engine thread serves this request (none does in a child forked after it).
        self._pid = os.getpid()

    # -- control -------------------------------------------------------
    def cancel(self) -> None:
        """Stop generating; the last chunk then has finish_reason ``cancelled``. Harmless once finished, twice, or
        from another thread than the one reading. (In a child process forked after the request was made, nothing
        runs it there: a no-op, which takes no lock the parent's engine thread may have held.)"""
        if self._forked():
            return
        self._native.cancel()

    def end_reasoning(self) -> bool:
        """Close the model's thinking at its next token and let it answer, as a spent thinking budget does
        (llama-server's ``reasoning_end`` control: a "stop thinking" button). Only a request made with a thinking
        budget has the sampler that does it (``reasoning_budget`` with the chat format's markers; a budget of
        2**31 - 1 arms it without a cap): False for any other, or once the request has finished; True when asked
        (a thinking block already closed, or not yet opened, is left alone until it opens). Harmless twice or from
        another thread."""
        if not self._thinking_budget or self._native.finished or self._forked():
            return False
        self._native.end_reasoning()
        return True

    def _forked(self) -> bool:
        return os.getpid() != getattr(self, "_pid", os.getpid())

    def _check_process(self) -> None:
        """ModelClosedError in a child process forked after the request was made: the engine thread that would
        deliver its events is the parent's, so waiting for them here would never end."""
        if self._forked():
            raise ModelClosedError("this request belongs to the process that made it (this is a child forked from "
                                   "it, where its model's engine thread does not run); load the model again here")

    @property
    def done(self) -> bool:
        return self._done and not self._buffer

    # -- sync iteration ------------------------------------------------
    def __iter__(self) -> "Request":
        return self

    def __next__(self) -> Chunk:
        """The next chunk, waiting for it (Ctrl-C interrupts). Several threads may iterate one request: each chunk
        goes to one of them. ModelClosedError in a child process forked after the request was made."""
        while True:
            try:  # (not "check, then pop": another thread iterating the request may take the chunk in between)
                return self._buffer.popleft()
            except IndexError:
                pass
            if self._done:
                if self._buffer:  # a chunk another thread's wait accepted together with the final one
                    continue
                raise StopIteration
            self._check_process()
            try:  # (a plain try: free on this per-token wait, where a context manager costs each token)
                self._accept(self._native.wait(_SYNC_WAIT_S, self._logprobs))
            except KeyboardInterrupt:
                # A Ctrl-C while waiting stops the request. The handle is not dropped then: the traceback (a REPL's
                # sys.last_traceback, a notebook's, a logged exc_info) keeps the frame that holds it, so the
                # generation ran on to its token limit, a slot and the CPU taken for nobody.
                self.cancel()
                raise

    # -- async iteration -----------------------------------------------
    def __aiter__(self) -> "Request":
        return self

    async def __anext__(self) -> Chunk:
        """The next chunk, awaited without blocking the loop. Several tasks may iterate one request (each chunk
        goes to one of them), or await :meth:`aresult` at once. ModelClosedError in a child process forked after
        the request was made."""
        while not self._buffer and not self._done:
            self._check_process()
            self._accept(self._native.drain(self._logprobs))
            if self._buffer or self._done:
                self._wake_waiters()  # the others waiting drained nothing: they look again (the end, or more)
            else:
                # A wake-up may be stale (readiness reported before the last drain): drain and look again.
                await self._readable()
        if self._done:
            self._unwatch()  # the final event is in: nothing more will come
        try:
            return self._buffer.popleft()
        except IndexError:  # another task took the last chunk
            raise StopAsyncIteration from None

    async def _readable(self) -> None:
        # The fd stays watched from one wait to the next (no epoll_ctl pair per token); it is readable only
        # from the engine's first event after a drain until the next drain (cpp/request.cpp).
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.add(waiter)
        if self._watching is not loop:
            self._unwatch()
            self._fd = self._native.fileno()  # (enables the engine's signal; it takes the request's lock)
            loop.add_reader(self._fd, self._wake)
            self._watching = loop
        try:
            await waiter
        except BaseException:
            self._waiters.discard(waiter)
            if not self._waiters:  # the last consumer was cancelled: let go now, so a dropped handle cancels at once
                self._unwatch()
            raise
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        if not self._waiters:
            # Readable while nobody waits (the consumer is writing, or has gone): stop watching until the
            # next wait, so the level-triggered fd cannot spin the loop, and the loop drops this request.
            self._unwatch()
        else:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def _unwatch(self) -> None:
        if self._watching is not None:
            self._watching.remove_reader(self._fd)
            self._watching = None

    # -- whole result --------------------------------------------------
    def result(self) -> Completion:
        """Block until finished and aggregate every chunk no iterating reader took. ModelClosedError in a child process
        forked after the request was made; the error a failed generation ended with otherwise. Every call, one after
        the other or at once from several threads or tasks (:meth:`aresult`), returns the same
        :class:`~jan.Completion`, as a future's ``result()`` does."""
        while not self._done:  # one wake-up at the end instead of one per token
            self._check_process()
            try:
                self._accept(self._native.wait_final(_SYNC_WAIT_S, self._logprobs))
            except KeyboardInterrupt:  # stops the request, as in __next__
                self.cancel()
                raise
        return self._completed()

    async def aresult(self) -> Completion:
        """Await the end and aggregate every chunk no iterating reader took (the same Completion for every call,
        as :meth:`result`)."""
        while True:
            self._take_for_result()  # (taken as they come: the buffer left full would read as "more to read")
            if self._done:
                break
            self._check_process()
            self._accept(self._native.drain(self._logprobs))
            if self._buffer or self._done:
                self._wake_waiters()  # other readers look again: the end is in for them too
            else:
                await self._readable()
        self._unwatch()
        return self._completed()

    def _take_for_result(self) -> None:
        with self._result_lock:
            self._move_buffer()

    def _move_buffer(self) -> None:
        while True:  # (not "while buffer: pop": an iterating thread may take the last chunk in between)
            try:
                self._result_chunks.append(self._buffer.popleft())
            except IndexError:
                return

    def _completed(self) -> Completion:
        with self._result_lock:
            self._move_buffer()
            if self._result is None or self._result_size != len(self._result_chunks):
                self._result = self._aggregate(self._result_chunks)
                self._result_size = len(self._result_chunks)
            return self._result

    def raise_for_error(self, chunk: Chunk) -> None:
        """Raise the error a chunk ended with (its ``finish_reason`` is ``"error"``); nothing for any other."""
        if not isinstance(chunk, Chunk):  # (an AttributeError of finish_reason, before)
            raise TypeError(f"chunk: expected a jan.Chunk, got {type(chunk).__name__}")
        if chunk.finish_reason == "error":
            raise generation_error(chunk.error)

    def _aggregate(self, chunks: list[Chunk]) -> Completion:
        final = self.final
        if final is None:
            raise EngineError("the request ended without a final event")
        self.raise_for_error(final)
        logprobs = None
        if self._logprobs:
            logprobs = [lp for c in chunks for lp in (c.logprobs or [])]
        return Completion(
            text="".join(c.text for c in chunks),
            token_ids=[t for c in chunks for t in c.token_ids],
            finish_reason=final.finish_reason or "stop",
            usage=final.usage or Usage(),
            logprobs=logprobs,
            stop=final.stop,
            seed=self.seed,
            id_slot=final.id_slot,
            prompt_logprobs=[lp for c in chunks for lp in (c.prompt_logprobs or [])]
            if any(c.prompt_logprobs for c in chunks) else None,
        )

    # -- conversion ----------------------------------------------------
    def _accept(self, events: list) -> None:
        """Native :class:`jan._engine.Event` objects to :class:`Chunk` (finish reasons as their names)."""
        for ev in events:
            final = ev.final
            logprobs = ev.logprobs
            ids = ev.token_ids
            prompt = ev.prompt_logprobs
            chunk = Chunk(
                text=ev.text,
                token_ids=ids,
                logprobs=self._convert_logprobs(ids, logprobs) if logprobs is not None else None,
                prompt_logprobs=self._convert_logprobs([t for t, _, _ in prompt], [(lp, top) for _, lp, top in prompt])
                if prompt is not None else None,
                cached_tokens=ev.cached_tokens,
                finish_reason=ev.finish_reason.name if final else None,
                usage=ev.usage,
                error=ev.error,
                stop=ev.stop,
                id_slot=ev.id_slot,
                # (the engine folds the tokens a slow reader has not taken yet into the final event: its usage is
                # their progress too)
                progress=ev.usage if final else ev.progress,
            )
            self._buffer.append(chunk)
            if final:
                self._done = True
                self.final = chunk
                self._model._room.notify()
                forward_native_logs()

    def _convert_logprobs(self, ids: list[int], logprobs: list) -> list[TokenLogprob]:
        piece = self._pieces
        out = []
        for token_id, (logprob, top) in zip(ids, logprobs):
            text, raw = piece(token_id)
            out.append(
                TokenLogprob(
                    token_id=token_id,
                    token=text,
                    bytes=list(raw),
                    logprob=told_logprob(logprob),
                    top=[TopLogprob(t, *_text_and_bytes(piece(t)), told_logprob(lp)) for t, lp in top],
                )
            )
        return out

    def __reduce__(self):
        # a copy shared the native request, and dropping the copy cancelled the original's generation (__del__)
        raise TypeError("a jan.Request cannot be copied or pickled: it is a handle on a running generation "
                        "(read it, or pickle its Completion/Chunks)")

    def __repr__(self) -> str:
        # (the default <... object at 0x...> said neither whose request it was nor whether it had ended)
        final = self.final
        state = "running" if final is None else f"finished ({final.finish_reason})"
        return f"<jan.Request model={getattr(self._model, 'id', None)!r} {state}>"

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        # (not in a forked child: cancelling takes the request's lock, which the parent's engine thread may have held)
        if native is not None and not self._done and not self._forked():
            native.cancel()


def _text_and_bytes(piece: tuple[str, bytes]) -> tuple[str, list[int]]:
    return piece[0], list(piece[1])


def generation_error(message: str | None) -> JanError:
    """The exception for a generation that ended with ``finish_reason == "error"``.

    A grammar the model's vocabulary cannot satisfy (llama.cpp: "empty grammar stack") is the
    request's fault, found only once sampling starts: :class:`BadRequestError` naming
    ``grammar`` (HTTP 400). A reasoning budget whose end-of-thinking text the grammar rules out
    is a :class:`BadRequestError` naming ``reasoning_budget``. Anything else is an :class:`EngineError`.
    """
    text = message or "generation failed"
    if text.startswith("reasoning_budget:"):
        # the engine's budget found its end-of-thinking text ruled out by the grammar (cpp/reasoning_budget.cpp)
        return BadRequestError(text, param="reasoning_budget", code="reasoning_budget_conflicts_with_grammar")
    if "grammar" in text:
        return BadRequestError(f"grammar: the model cannot write anything this grammar allows ({text.strip()})",
                               param="grammar", code="grammar_unsatisfiable")
    return EngineError(text)
