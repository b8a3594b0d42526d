"""Runs: answer a thread with a model and save the reply as a message — independent of any front end.

What a run does
    1. Picks the assistant (``assistant_id`` > the thread's ``assistants[0]`` > ``jan``) and the
       model (request ``model`` > thread ``assistants[0].model.id`` > the assistant's ``model``
       unless ``"*"`` > the first model loaded in an engine).
    2. Appends ``additional_messages``, then turns the thread's history (``ready``/``stopped``
       messages with text; ``pending`` and ``error`` ones are skipped) into a typed
       :class:`ChatRequest`, with the instructions (request > thread ``assistants[0]`` > the
       assistant's, plus ``additional_instructions``) as the system message, and streams it
       through the chat service.
    3. Sampling, key by key: **request > thread (``assistants[0].model.parameters``) > assistant
       (``parameters``) > model.json ``parameters`` > defaults** — the one precedence rule
       (:func:`jan.services.types.merge_options`). The effective values are the run's
       ``parameters``.
    4. The assistant message is created at once with status ``pending``, rewritten with the
       text so far at most every :data:`SAVE_INTERVAL` s while tokens arrive, then finished as
       ``ready`` (``metadata.finish_reason``), ``stopped`` (cut off; ``metadata.stop_reason``,
       usage counted from the saved text with ``"estimated": true``) or ``error``
       (``metadata.error``, ``metadata.error_code``).
    5. A thread still titled ``New Thread`` (or untitled) is renamed after its first user
       message; a thread without assistants records the assistant and model used.
    6. Events: ``MessageSent``, ``MessageResponse``, ``MessageUpdate`` (each piece, then the
       final message), ``InferenceStopped`` (cut off).

Errors found before anything is written are raised (``NotFoundError``, ``ModelNotFoundError``,
:class:`RequestError`). Once the reply exists a failure makes the message ``error`` and the run
``failed``. Runs are kept in memory by the service (the messages are the durable record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jan.core import (
    AssistantExtension,
    ConversationalExtension,
    ExtensionManager,
    InferenceStopped,
    MessageResponse,
    MessageSent,
    MessageUpdate,
    NotFoundError,
)
from jan.services.chat import ChatService
from jan.services.errors import RequestError, require
from jan.services.models import ModelService
from jan.services.types import ChatMessage, ChatRequest, ResponseFormat, SamplingOptions, Usage, merge_options

log = logging.getLogger("jan.services.runs")

__all__ = ["Run", "RunRequest", "RunService", "history_messages", "text_of", "title_from"]

#: Seconds between rewrites of a reply that is still streaming.
SAVE_INTERVAL = 0.5
#: Finished runs remembered per service.
KEEP_RUNS = 256
DEFAULT_TITLES = ("", "New Thread")
TITLE_LENGTH = 40
DEFAULT_ASSISTANT = "jan"


@dataclass(frozen=True)
class RunRequest:
    """What a front end asks of a run (``None``: not given — the thread/assistant decide)."""

    thread_id: str
    assistant_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: tuple[dict[str, Any], ...] = ()  # as the conversational extension creates them
    metadata: dict[str, Any] | None = None
    last_messages: int | None = None  # truncation: only the last N messages of the history
    response_format: ResponseFormat | None = None
    sampling: SamplingOptions = SamplingOptions()


@dataclass(eq=False)
class Run:
    """One run's state (its wire shape is the front end's business). ``status``: queued,
    in_progress, completed, incomplete (the token limit), cancelled or failed."""

    thread_id: str
    assistant_id: str
    model_id: str
    instructions: str
    parameters: dict[str, Any]
    metadata: dict[str, Any]
    chat_request: ChatRequest | None = None
    id: str = field(default_factory=lambda: f"run_{uuid.uuid4().hex[:24]}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    started_at: int | None = None
    ended_at: int | None = None
    status: str = "queued"
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    last_error: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    stop_reason: str | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "in_progress")


# -- helpers -----------------------------------------------------------------
def text_of(message: dict[str, Any]) -> str:
    """The text of a stored message (its text parts, joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") == "text":
            text = part.get("text")
            parts.append(text.get("value", "") if isinstance(text, dict) else str(text or ""))
    return "".join(parts)


def title_from(text: str, limit: int = TITLE_LENGTH) -> str:
    """A thread title from a message: whitespace collapsed, cut at a word boundary near ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else text[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def history_messages(history: list[dict[str, Any]], system: str) -> tuple[ChatMessage, ...]:
    """The thread as typed chat messages (finished text turns only), the system message first."""
    out = [ChatMessage.of_text("system", system)] if system else []
    for message in history:
        if message.get("status") in ("pending", "error") or message.get("role") not in ("user", "assistant", "system"):
            continue
        text = text_of(message)
        if text:
            # earlier thinking goes back with its turn; the chat template keeps or drops it
            reasoning = reasoning_of(message) if message["role"] == "assistant" else ""
            out.append(ChatMessage.of_text(message["role"], text, reasoning=reasoning or None))
    return tuple(out)


def _content(text: str, reasoning: str = "", reasoning_ms: int | None = None) -> list[dict[str, Any]]:
    """A reply's content parts: its thinking (a ``reasoning`` part, with how long it took) before its text."""
    parts: list[dict[str, Any]] = []
    if reasoning:
        part: dict[str, Any] = {"type": "reasoning", "text": {"value": reasoning, "annotations": []}}
        if reasoning_ms is not None:
            part["duration_ms"] = reasoning_ms
        parts.append(part)
    if text:
        parts.append({"type": "text", "text": {"value": text, "annotations": []}})
    return parts


def reasoning_of(message: dict[str, Any]) -> str:
    """The thinking saved with a message (its ``reasoning`` parts), or ""."""
    return "".join(
        (p.get("text") or {}).get("value", "") for p in message.get("content") or []
        if isinstance(p, dict) and p.get("type") == "reasoning" and isinstance(p.get("text"), dict)
    )


def _thread_assistant(thread: dict[str, Any]) -> dict[str, Any]:
    entries = thread.get("assistants") or []
    return entries[0] if entries and isinstance(entries[0], dict) else {}


def _thread_model(entry: dict[str, Any]) -> dict[str, Any]:
    model = entry.get("model")
    if isinstance(model, str):
        return {"id": model}
    return model if isinstance(model, dict) else {}


def usage_fields(usage: Usage) -> dict[str, Any]:
    """A run's / message's ``usage`` (OpenAI's names, as Jan stores them)."""
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(message, code) of a failure, as a run records it; front ends may pass their own mapping."""
    return str(exc) or type(exc).__name__, getattr(exc, "code", None)


class _Stop(Exception):
    """The run was cut off (``reason``: client disconnected / cancelled)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


#: ``await on_delta(piece, kind)`` for each new piece of text (``kind``: ``"text"``, or
#: ``"reasoning"`` for the model's thinking); raising ``ConnectionError`` means the listener (an
#: HTTP client) is gone and stops the run.
OnDelta = Callable[[str, str], Awaitable[None]]


async def _ignore(_piece: str, _kind: str = "text") -> None:
    return None


class RunService:
    """Prepares, executes, remembers and cancels runs. ``describe_error`` maps a failure to the
    (message, code) recorded in the message and the run."""

    def __init__(self, manager: ExtensionManager, models: ModelService, chat: ChatService, *,
                 describe_error: Callable[[BaseException], tuple[str, str | None]] = describe_error):
        self.manager = manager
        self.models = models
        self.chat = chat
        self.describe_error = describe_error
        self._runs: OrderedDict[str, Run] = OrderedDict()

    # -- stores ------------------------------------------------------------------
    def conversations(self) -> ConversationalExtension:
        return require(self.manager, ConversationalExtension, "stores threads", "conversational")

    def assistants(self) -> AssistantExtension:
        return require(self.manager, AssistantExtension, "stores assistants", "conversational")

    # -- the registry -----------------------------------------------------------
    def get(self, thread_id: str, run_id: str) -> Run | None:
        """A run of this service in that thread, or None."""
        run = self._runs.get(run_id)
        return run if run is not None and run.thread_id == thread_id else None

    def _remember(self, run: Run) -> None:
        self._runs[run.id] = run
        while len(self._runs) > KEEP_RUNS:
            oldest = next((k for k, r in self._runs.items() if not r.active), None)
            if oldest is None:
                break
            self._runs.pop(oldest)

    async def cancel(self, run: Run, timeout: float = 30) -> None:
        """Ask a run in progress to stop and wait (at most ``timeout`` s) until it is saved."""
        run.cancel_requested.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run.finished.wait(), timeout)

    # -- starting a run -----------------------------------------------------------
    async def start(self, req: RunRequest) -> Run:
        """Everything up to the pending reply: checks (which raise before anything is written),
        the additional messages, the pending assistant message, the title. Execute it with
        :meth:`execute`."""
        store = self.conversations()
        thread = await store.get_thread(req.thread_id)
        entry = _thread_assistant(thread)
        thread_model = _thread_model(entry)

        assistant_id = req.assistant_id or entry.get("assistant_id") or DEFAULT_ASSISTANT
        try:
            assistant = await self.assistants().get_assistant(assistant_id)
        except NotFoundError:
            if req.assistant_id:
                raise
            assistant = {"id": assistant_id, "model": "*", "instructions": "", "parameters": {}}

        model_id = req.model or thread_model.get("id")
        if not model_id and assistant.get("model") not in (None, "", "*"):
            model_id = assistant["model"]
        if not model_id:
            loaded = await self.models.loaded_model_ids()
            model_id = loaded[0] if loaded else None
        if not model_id:
            raise RequestError("No model for this run: pass 'model', set the thread's or the assistant's model, "
                               "or load a model", param="model", code="model_required")
        target = await self.models.resolve(model_id)
        model = target.model

        if req.instructions is not None:
            instructions = req.instructions
        elif isinstance(entry.get("instructions"), str) and entry["instructions"]:
            instructions = entry["instructions"]
        else:
            instructions = assistant.get("instructions") or ""
        if req.additional_instructions:
            instructions = f"{instructions}\n\n{req.additional_instructions}" if instructions \
                else req.additional_instructions

        sampling = merge_options(req.sampling, SamplingOptions.from_mapping(thread_model.get("parameters")),
                                 SamplingOptions.from_mapping(assistant.get("parameters")),
                                 SamplingOptions.from_mapping(model.get("parameters")))

        for extra in req.additional_messages:
            await store.create_message(req.thread_id, dict(extra))
        history = await store.list_messages(req.thread_id, order="asc")
        if req.last_messages:
            history = history[-req.last_messages:]
        messages = history_messages(history, instructions)
        if not any(m.role != "system" for m in messages):
            raise RequestError("The thread has no messages to answer", param="thread_id", code="empty_thread")

        run = Run(req.thread_id, assistant["id"], model["id"], instructions, sampling.given(), req.metadata or {})
        run.chat_request = ChatRequest(model=model["id"], messages=messages, response_format=req.response_format,
                                       sampling=sampling)
        bus = self.manager.bus
        last_user = next((m for m in reversed(history) if m.get("role") == "user"), None)
        if last_user is not None:
            bus.emit_nowait(MessageSent(thread_id=req.thread_id, message=last_user))
        run.message = await store.create_message(req.thread_id, {
            "role": "assistant", "content": [], "status": "pending", "assistant_id": assistant["id"],
            "metadata": {"run_id": run.id, "model": model["id"]}, "run_id": run.id,
        })
        self._remember(run)
        bus.emit_nowait(MessageResponse(thread_id=req.thread_id, message=run.message))
        await self._after_first_exchange(store, thread, assistant, model, history)
        return run

    async def _after_first_exchange(self, store: ConversationalExtension, thread: dict[str, Any],
                                    assistant: dict[str, Any], model: dict[str, Any],
                                    history: list[dict[str, Any]]) -> None:
        """Title a new thread after its first user message; record the assistant/model a bare thread used."""
        patch: dict[str, Any] = {}
        if (thread.get("title") or "").strip() in DEFAULT_TITLES:
            first_user = next((m for m in history if m.get("role") == "user" and text_of(m).strip()), None)
            if first_user is not None:
                patch["title"] = title_from(text_of(first_user))
        if not thread.get("assistants"):
            patch["assistants"] = [{"assistant_id": assistant["id"], "assistant_name": assistant.get("name") or "",
                                    "model": {"id": model["id"], "settings": {}, "parameters": {},
                                              "engine": model.get("engine") or "llama.cpp"}}]
        if patch:
            try:
                await store.update_thread(thread["id"], patch)
            except Exception as exc:  # noqa: BLE001 - the run goes on
                log.warning("could not update thread %s after its first exchange: %s", thread["id"], exc)

    # -- executing it ------------------------------------------------------------------
    async def execute(self, run: Run, on_delta: OnDelta = _ignore, *,
                      listener_gone: Callable[[], bool] = lambda: False) -> None:
        """Stream the reply into the thread. ``on_delta`` hears each piece; ``listener_gone()``
        true (checked per piece) stops the run as "client disconnected". Never raises but
        ``CancelledError`` (the reply is saved as ``stopped`` first)."""
        await _Execution(self, run, on_delta, listener_gone).generate()


class _Execution:
    """Generates the reply of one run and keeps its message in the store up to date."""

    def __init__(self, service: RunService, run: Run, on_delta: OnDelta, listener_gone: Callable[[], bool]):
        self.service = service
        self.run = run
        self.on_delta = on_delta
        self.listener_gone = listener_gone
        self.store = service.conversations()
        self.bus = service.manager.bus
        self.text = ""
        self.reasoning = ""
        self._reasoning_started: float | None = None
        self.reasoning_ms: int | None = None
        self._pieces = 0
        self._saver: asyncio.Task | None = None
        self._last_save = 0.0

    def _update_listeners(self) -> bool:
        count = getattr(self.bus, "subscriber_count", None)
        return True if count is None else count(MessageUpdate) > 0

    def _message_now(self, status: str) -> dict[str, Any]:
        return {**(self.run.message or {}), "content": self._parts(), "status": status}

    def _parts(self) -> list[dict[str, Any]]:
        return _content(self.text, self.reasoning, self.reasoning_ms)

    def _thinking_done(self) -> None:
        if self._reasoning_started is not None and self.reasoning_ms is None:
            self.reasoning_ms = int((time.monotonic() - self._reasoning_started) * 1000)

    async def _save(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.store.update_message(self.run.thread_id, self.run.message["id"], patch)
        except Exception as exc:  # noqa: BLE001 - e.g. the thread was deleted meanwhile
            log.warning("run %s: could not save message %s: %s", self.run.id, self.run.message["id"], exc)
            return None

    def _maybe_save(self) -> None:
        now = time.monotonic()
        if now - self._last_save < SAVE_INTERVAL or (self._saver is not None and not self._saver.done()):
            return
        self._last_save = now
        self._saver = asyncio.ensure_future(self._save({"content": self._parts(), "status": "pending"}))

    async def generate(self) -> None:
        run = self.run
        run.status = "in_progress"
        run.started_at = run.started_at or int(time.time())
        self._last_save = time.monotonic()
        status, error, cancelled = "ready", None, False
        stream = self.service.chat.stream(run.chat_request)
        try:
            async with stream:
                async for delta in stream:
                    if delta.usage is not None:
                        run.usage = usage_fields(delta.usage)
                    if delta.choice != 0:
                        continue
                    if delta.reasoning:
                        if self._reasoning_started is None:
                            self._reasoning_started = time.monotonic()
                        self.reasoning += delta.reasoning
                        try:
                            await self.on_delta(delta.reasoning, "reasoning")
                        except ConnectionError as exc:
                            log.debug("run %s: listener gone: %s", run.id, exc)
                            raise _Stop("client disconnected") from None
                    piece = delta.content
                    if piece or delta.tool_calls or delta.finish_reason:
                        self._thinking_done()
                    if piece:
                        self.text += piece
                        self._pieces += 1
                        if self._update_listeners():  # the whole message per token: only when heard
                            self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, delta=piece,
                                                               message=self._message_now("pending")))
                        try:
                            await self.on_delta(piece, "text")
                        except ConnectionError as exc:  # writing to the listener failed: it is gone
                            log.debug("run %s: listener gone: %s", run.id, exc)
                            raise _Stop("client disconnected") from None
                    if delta.finish_reason:
                        run.finish_reason = delta.finish_reason
                    if run.finish_reason is None:  # once finished, only the usage is left
                        if run.cancel_requested.is_set():
                            raise _Stop("cancelled")
                        if self.listener_gone():
                            raise _Stop("client disconnected")
                        self._maybe_save()
        except _Stop as stop:
            status, run.stop_reason = "stopped", stop.reason
        except asyncio.CancelledError:
            status, run.stop_reason, cancelled = "stopped", "cancelled", True
        except Exception as exc:  # noqa: BLE001 - recorded in the message and the run
            status, error = "error", self.service.describe_error(exc)
            log.info("run %s failed: %s", run.id, error[0])
        finish = asyncio.ensure_future(self._finish(status, error))
        try:
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            cancelled = True
            await asyncio.wait([finish])
        if cancelled:
            raise asyncio.CancelledError

    async def _usage_so_far(self) -> dict[str, Any]:
        """Usage of a reply cut off before the engine reported it: its text re-tokenized (a close count)."""
        try:
            target = await self.service.models.resolve(self.run.model_id)
            completion = len(await target.engine.tokenize(target.model, self.text, add_special=False))
        except Exception:  # noqa: BLE001 - an estimate is all this is
            completion = self._pieces
        return {"prompt_tokens": None, "completion_tokens": completion, "total_tokens": None, "estimated": True}

    async def _finish(self, status: str, error: tuple[str, str | None] | None) -> None:
        run = self.run
        if self._saver is not None:
            await asyncio.wait([self._saver])
        metadata = dict((run.message or {}).get("metadata") or {})
        metadata.update({"run_id": run.id, "model": run.model_id})
        if run.finish_reason:
            metadata["finish_reason"] = run.finish_reason
        if run.usage is None and status == "stopped" and self.text:
            run.usage = await self._usage_so_far()
        if run.usage:
            metadata["usage"] = run.usage
        if error is not None:
            metadata["error"], metadata["error_code"] = error
        if status == "stopped":
            metadata["stop_reason"] = run.stop_reason
        self._thinking_done()
        # The run's outcome is settled before the message is written, so whoever sees the final
        # message also sees the finished run.
        run.ended_at = int(time.time())
        if status == "ready":
            run.status = "incomplete" if run.finish_reason == "length" else "completed"
        elif status == "stopped":
            run.status = "cancelled"
            self.bus.emit_nowait(InferenceStopped(model_id=run.model_id, request_id=run.id,
                                                  thread_id=run.thread_id, reason=run.stop_reason or "cancelled"))
        else:
            run.status = "failed"
            run.last_error = {"code": error[1] or "server_error", "message": error[0]}
        saved = await self._save({"content": self._parts(), "status": status, "metadata": metadata})
        run.message = saved or {**self._message_now(status), "metadata": metadata}
        self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, message=run.message))
        run.finished.set()
