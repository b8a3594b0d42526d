"""Runs: ``POST /v1/threads/{thread_id}/runs`` answers a thread with a model, saving the reply as a message.

What a run does
    1. Picks the assistant (``assistant_id`` > the thread's ``assistants[0]``
       > ``jan``) and the model (request ``model`` > thread
       ``assistants[0].model.id`` > the assistant's ``model`` unless ``"*"`` >
       the first model loaded in an engine).
    2. Appends ``additional_messages``, then renders the thread's history
       (``ready``/``stopped`` messages with text; ``pending`` and ``error``
       ones are skipped) as an OpenAI chat request, with the instructions
       (request ``instructions`` > thread ``assistants[0].instructions`` >
       the assistant's, plus ``additional_instructions``) as the system
       message, and calls the engine's ``chat()`` — the engine renders the
       model's chat template.
    3. Sampling parameters, key by key: **request > thread
       (``assistants[0].model.parameters``) > assistant (``parameters``) >
       model.json ``parameters`` > engine defaults**. The effective values are
       in the run's ``parameters``.
    4. The assistant message is created at once with status ``pending``,
       rewritten with the text so far at most every 0.5 s while tokens arrive
       (so a crash loses at most that much, and the file is not rewritten per
       token), then finished as ``ready`` (``metadata.finish_reason`` says
       ``stop`` or ``length``), ``stopped`` (cut off; ``metadata.stop_reason``,
       and ``metadata.usage`` counted from the saved text, marked
       ``"estimated": true``) or ``error`` (the error text in
       ``metadata.error``, its code in ``metadata.error_code``).
    5. A thread still titled ``New Thread`` (or untitled) is renamed after its
       first user message (about 40 characters, cut at a word). A thread
       without assistants records the assistant and model used.
    6. Events: ``MessageSent`` (the user message being answered),
       ``MessageResponse`` (the pending reply), ``MessageUpdate`` (each new
       piece of text, then the final message), ``InferenceStopped`` (cut off).

Errors found before anything is written (unknown thread/assistant/model,
a bad body, an empty thread) are plain 4xx responses. Once the reply exists,
a failure (model load, context overflow, ...) makes the message ``error`` and
the run ``failed`` with ``last_error``.

Runs live in the server's memory only (the messages are the durable
record): ``GET /v1/threads/{thread_id}/runs/{run_id}`` knows the runs of this
process, ``POST .../runs/{run_id}/cancel`` stops one in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import weakref
from collections import OrderedDict
from typing import Any, Union

from aiohttp import web
from pydantic import Field

from jan.core import (
    ConversationalExtension,
    InferenceExtension,
    InferenceStopped,
    MessageResponse,
    MessageSent,
    MessageUpdate,
    NotFoundError,
)
from jan.server.errors import APIError, to_api_error
from jan.server.keys import BUS, MANAGER, SERVICES
from jan.server.openai_wire import response_format_of, usage_dict
from jan.services.types import ChatMessage, ChatRequest, SamplingOptions
from jan.server.resolve import model_and_engine
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.threads import MessageCreate, _Strict, assistant_store, conversations, message_fields
from jan.server.schemas import ResponseFormat, Stop
from jan.server.sse import SSEStream
from jan.server.validation import parse_body

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

#: Seconds between rewrites of a reply that is still streaming.
SAVE_INTERVAL = 0.5
#: Finished runs remembered for ``GET .../runs/{run_id}``, per server.
KEEP_RUNS = 256
DEFAULT_TITLES = ("", "New Thread")
TITLE_LENGTH = 40
DEFAULT_ASSISTANT = "jan"

#: Keys of the parameter layers (thread, assistant, model.json) that reach the engine.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                 "presence_penalty", "frequency_penalty", "seed", "stop", "max_tokens", "ignore_eos", "logit_bias")


class TruncationStrategy(_Strict):
    type: str = Field("auto", pattern="^(auto|last_messages)$")
    last_messages: int | None = Field(default=None, ge=1)


class RunCreate(_Strict):
    """Body of ``POST /v1/threads/{thread_id}/runs``: OpenAI's run fields plus llama.cpp sampling extras."""

    assistant_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None
    truncation_strategy: TruncationStrategy | None = None
    response_format: Union[ResponseFormat, str, None] = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    typical_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: Stop = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    ignore_eos: bool | None = None


EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs")] = RunCreate


# -- the runs of one server ------------------------------------------------------
class Run:
    """One run's state; :meth:`to_dict` is OpenAI's ``thread.run`` plus Jan's fields."""

    def __init__(self, thread_id: str, assistant_id: str, model_id: str, instructions: str,
                 parameters: dict[str, Any], metadata: dict[str, Any]):
        self.id = f"run_{uuid.uuid4().hex[:24]}"
        self.thread_id = thread_id
        self.assistant_id = assistant_id
        self.model_id = model_id
        self.instructions = instructions
        self.parameters = parameters
        self.metadata = metadata
        self.created_at = int(time.time())
        self.started_at: int | None = None
        self.ended_at: int | None = None
        self.status = "queued"
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.last_error: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.cancel_requested = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def active(self) -> bool:
        return self.status in ("queued", "in_progress")

    def to_dict(self, *, with_message: bool = False) -> dict[str, Any]:
        out = {
            "id": self.id,
            "object": "thread.run",
            "created_at": self.created_at,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": self.status,
            "started_at": self.started_at,
            "expires_at": None,
            "cancelled_at": self.ended_at if self.status == "cancelled" else None,
            "failed_at": self.ended_at if self.status == "failed" else None,
            "completed_at": self.ended_at if self.status in ("completed", "incomplete") else None,
            "required_action": None,
            "last_error": self.last_error,
            "incomplete_details": {"reason": "max_completion_tokens"} if self.status == "incomplete" else None,
            "model": self.model_id,
            "instructions": self.instructions,
            "tools": [],
            "metadata": self.metadata,
            "usage": self.usage,
            "temperature": self.parameters.get("temperature"),
            "top_p": self.parameters.get("top_p"),
            "max_completion_tokens": self.parameters.get("max_tokens"),
            "max_prompt_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None},
            "response_format": "auto",
            "tool_choice": "none",
            "parallel_tool_calls": False,
            # Jan's additions
            "parameters": self.parameters,
            "finish_reason": self.finish_reason,
            "message_id": self.message["id"] if self.message else None,
        }
        if with_message:
            out["message"] = self.message
        return out


_registries: "weakref.WeakKeyDictionary[web.Application, OrderedDict[str, Run]]" = weakref.WeakKeyDictionary()


def _runs(app: web.Application) -> OrderedDict[str, Run]:
    runs = _registries.get(app)
    if runs is None:
        runs = _registries[app] = OrderedDict()
    return runs


def _remember(app: web.Application, run: Run) -> None:
    runs = _runs(app)
    runs[run.id] = run
    while len(runs) > KEEP_RUNS:
        oldest = next((k for k, r in runs.items() if not r.active), None)
        if oldest is None:
            break
        runs.pop(oldest)


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


def _content(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"value": text, "annotations": []}}] if text else []


def _layer(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        return {}
    return {k: v for k, v in params.items() if k in SAMPLING_KEYS and v is not None}


def effective_parameters(request: dict[str, Any], thread: dict[str, Any], assistant: dict[str, Any],
                         model: dict[str, Any]) -> dict[str, Any]:
    """request > thread > assistant > model.json; what is left out is the engine's default."""
    merged = {**_layer(model), **_layer(assistant), **_layer(thread), **_layer(request)}
    if isinstance(merged.get("max_tokens"), int) and merged["max_tokens"] <= 0:
        merged.pop("max_tokens")  # Jan writes -1/0 for "no limit"
    if merged.get("stop") == []:
        merged.pop("stop")
    return merged


def history_messages(history: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """The thread as OpenAI chat messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in history:
        if message.get("status") in ("pending", "error") or message.get("role") not in ("user", "assistant", "system"):
            continue
        text = text_of(message)
        if text:
            out.append({"role": message["role"], "content": text})
    return out


async def _first_loaded_model(request: web.Request) -> str | None:
    for engine in request.app[MANAGER].engines().values():
        with contextlib.suppress(Exception):
            loaded = await engine.loaded_models()
            if loaded:
                return loaded[0]
    return None


def _thread_assistant(thread: dict[str, Any]) -> dict[str, Any]:
    entries = thread.get("assistants") or []
    return entries[0] if entries and isinstance(entries[0], dict) else {}


def _thread_model(entry: dict[str, Any]) -> dict[str, Any]:
    model = entry.get("model")
    if isinstance(model, str):
        return {"id": model}
    return model if isinstance(model, dict) else {}


class _Stop(Exception):
    """The run was cut off (``reason``: client disconnected / cancelled)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# -- the run itself ----------------------------------------------------------------
class RunExecution:
    """Generates the reply of one run and keeps its message in the store up to date."""

    def __init__(self, request: web.Request, run: Run, store: ConversationalExtension,
                 engine: InferenceExtension, model: dict[str, Any], chat_request: ChatRequest):
        self.request = request
        self.run = run
        self.store = store
        self.engine = engine
        self.model = model
        self.chat_request = chat_request
        self.bus = request.app[BUS]
        self.text = ""
        self._pieces = 0
        self._saver: asyncio.Task | None = None
        self._last_save = 0.0

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def _update_listeners(self) -> bool:
        count = getattr(self.bus, "subscriber_count", None)
        return True if count is None else count(MessageUpdate) > 0

    def _message_now(self, status: str) -> dict[str, Any]:
        return {**(self.run.message or {}), "content": _content(self.text), "status": status}

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
        self._saver = asyncio.ensure_future(self._save({"content": self.text, "status": "pending"}))

    async def generate(self, on_delta) -> None:
        """Stream the reply; ``on_delta(text)`` is awaited for each new piece. Never raises but CancelledError."""
        run = self.run
        run.status = "in_progress"
        run.started_at = run.started_at or int(time.time())
        self._last_save = time.monotonic()
        status, error, cancelled = "ready", None, False
        stream = self.request.app[SERVICES].chat.stream(self.chat_request)
        try:
            async with stream:
                async for delta in stream:
                    if delta.usage is not None:
                        run.usage = usage_dict(delta.usage)
                    if delta.choice != 0:
                        continue
                    piece = delta.content
                    if piece:
                        self.text += piece
                        self._pieces += 1
                        if self._update_listeners():  # the whole message per token: only when heard
                            self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, delta=piece,
                                                               message=self._message_now("pending")))
                        try:
                            await on_delta(piece)
                        except ConnectionError as exc:  # writing to the client failed: it is gone
                            log.debug("run %s: client disconnected: %s", run.id, exc)
                            raise _Stop("client disconnected") from None
                    if delta.finish_reason:
                        run.finish_reason = delta.finish_reason
                    if run.finish_reason is None:  # once finished, only the usage is left
                        if run.cancel_requested.is_set():
                            raise _Stop("cancelled")
                        if self.client_gone():
                            raise _Stop("client disconnected")
                        self._maybe_save()
        except _Stop as stop:
            status, run.stop_reason = "stopped", stop.reason
        except asyncio.CancelledError:
            status, run.stop_reason, cancelled = "stopped", "cancelled", True
        except Exception as exc:  # noqa: BLE001 - recorded in the message and the run
            api_error = to_api_error(exc)
            status, error = "error", api_error
            log.info("run %s failed: %s", run.id, api_error.message)
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
            completion = len(await self.engine.tokenize(self.model, self.text, add_special=False))
        except Exception:  # noqa: BLE001 - an estimate is all this is
            completion = self._pieces
        return {"prompt_tokens": None, "completion_tokens": completion, "total_tokens": None, "estimated": True}

    async def _finish(self, status: str, error) -> None:
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
            metadata["error"] = error.message
            metadata["error_code"] = error.code
        if status == "stopped":
            metadata["stop_reason"] = run.stop_reason
        saved = await self._save({"content": self.text, "status": status, "metadata": metadata})
        run.message = saved or {**self._message_now(status), "metadata": metadata}
        run.ended_at = int(time.time())
        if status == "ready":
            run.status = "incomplete" if run.finish_reason == "length" else "completed"
        elif status == "stopped":
            run.status = "cancelled"
            self.bus.emit_nowait(InferenceStopped(model_id=run.model_id, request_id=run.id,
                                                  thread_id=run.thread_id, reason=run.stop_reason or "cancelled"))
        else:
            run.status = "failed"
            run.last_error = {"code": error.code or "server_error", "message": error.message}
        self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, message=run.message))
        run.finished.set()


async def _prepare(request: web.Request, thread_id: str, body: RunCreate):
    """Everything that can fail with a plain 4xx before the reply message exists."""
    store = conversations(request)
    thread = await store.get_thread(thread_id)
    entry = _thread_assistant(thread)
    thread_model = _thread_model(entry)

    assistant_id = body.assistant_id or entry.get("assistant_id") or DEFAULT_ASSISTANT
    assistants = assistant_store(request)
    try:
        assistant = await assistants.get_assistant(assistant_id)
    except NotFoundError:
        if body.assistant_id:
            raise
        assistant = {"id": assistant_id, "model": "*", "instructions": "", "parameters": {}}

    model_id = body.model or thread_model.get("id")
    if not model_id and assistant.get("model") not in (None, "", "*"):
        model_id = assistant["model"]
    if not model_id:
        model_id = await _first_loaded_model(request)
    if not model_id:
        raise APIError(400, "No model for this run: pass 'model', set the thread's or the assistant's model, "
                            "or load a model", param="model", code="model_required")
    model, engine = await model_and_engine(request, model_id)

    if body.instructions is not None:
        instructions = body.instructions
    elif isinstance(entry.get("instructions"), str) and entry["instructions"]:
        instructions = entry["instructions"]
    else:
        instructions = assistant.get("instructions") or ""
    if body.additional_instructions:
        instructions = f"{instructions}\n\n{body.additional_instructions}" if instructions else body.additional_instructions

    request_params = body.model_dump(include=set(SAMPLING_KEYS), exclude_none=True)
    if body.max_completion_tokens is not None:
        request_params["max_tokens"] = body.max_completion_tokens
    parameters = effective_parameters(request_params, thread_model.get("parameters") or {},
                                      assistant.get("parameters") or {}, model.get("parameters") or {})
    return store, thread, entry, assistant, model, engine, instructions, parameters


def _sse_text(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


@routes.post("/v1/threads/{thread_id}/runs")
async def create_run(request: web.Request) -> web.StreamResponse:
    """Answer a thread: generate the assistant's reply with the thread's history and save it as a message.

    ``stream: true`` answers with server-sent events in OpenAI's assistant
    stream shape: ``thread.run.created``, ``thread.run.in_progress``,
    ``thread.message.created``, ``thread.message.in_progress``, one
    ``thread.message.delta`` per piece of text (``{"id", "object":
    "thread.message.delta", "delta": {"content": [{"index": 0, "type":
    "text", "text": {"value", "annotations"}}]}}``), then
    ``thread.message.completed`` (or ``.incomplete``) with the saved message
    and ``thread.run.completed`` / ``.incomplete`` / ``.cancelled`` /
    ``.failed`` with the run (its ``message`` included), then
    ``event: done`` / ``data: [DONE]``. Without ``stream`` the answer is the
    finished run with its ``message``.

    **Client disconnect: the run stops.** When the client goes away mid-run
    (streaming or not), generation is cancelled at the next token, which
    frees the engine's slot, and the text generated so far is saved with
    status ``stopped`` (``metadata.stop_reason: "client disconnected"``);
    ``InferenceStopped`` is emitted. ``POST .../runs/{run_id}/cancel`` does
    the same on purpose (``stop_reason: "cancelled"``).
    """
    body = await parse_body(request, RunCreate)
    thread_id = request.match_info["thread_id"]
    store, thread, entry, assistant, model, engine, instructions, parameters = await _prepare(request, thread_id, body)

    for extra in body.additional_messages or []:
        await store.create_message(thread_id, message_fields(extra))
    history = await store.list_messages(thread_id, order="asc")
    truncation = body.truncation_strategy
    if truncation is not None and truncation.type == "last_messages" and truncation.last_messages:
        history = history[-truncation.last_messages:]
    messages = history_messages(history, instructions)
    if not any(m["role"] != "system" for m in messages):
        raise APIError(400, "The thread has no messages to answer", param="thread_id", code="empty_thread")

    run = Run(thread_id, assistant["id"], model["id"], instructions, parameters, body.metadata or {})
    fmt = None
    if isinstance(body.response_format, ResponseFormat):
        fmt = response_format_of(body.response_format)
    chat_request = ChatRequest(model=model["id"], messages=tuple(ChatMessage.of_text(m["role"], m["content"])
                                                                 for m in messages),
                               response_format=fmt, sampling=SamplingOptions.from_mapping(parameters))

    bus = request.app[BUS]
    last_user = next((m for m in reversed(history) if m.get("role") == "user"), None)
    if last_user is not None:
        bus.emit_nowait(MessageSent(thread_id=thread_id, message=last_user))
    run.message = await store.create_message(thread_id, {
        "role": "assistant", "content": [], "status": "pending", "assistant_id": assistant["id"],
        "metadata": {"run_id": run.id, "model": model["id"]}, "run_id": run.id,
    })
    _remember(request.app, run)
    bus.emit_nowait(MessageResponse(thread_id=thread_id, message=run.message))
    await _after_first_exchange(store, thread, entry, assistant, model, history)

    execution = RunExecution(request, run, store, engine, model, chat_request)
    if not body.stream:
        async def ignore(_piece: str) -> None:
            return None

        await execution.generate(ignore)
        return web.json_response(run.to_dict(with_message=True))

    sse = SSEStream(request)
    response = sse.response
    message_id = run.message["id"]

    async def send(event: str, data: Any) -> None:
        await sse.start()
        await response.write(_sse_text(event, data))

    async def on_delta(piece: str) -> None:
        await send("thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": {
            "content": [{"index": 0, "type": "text", "text": {"value": piece, "annotations": []}}]}})

    try:
        await send("thread.run.created", run.to_dict())
        run.status, run.started_at = "in_progress", int(time.time())
        await send("thread.run.in_progress", run.to_dict())
        await send("thread.message.created", run.message)
        await send("thread.message.in_progress", run.message)
    except ConnectionError:
        pass  # generate() notices the closed transport and stops at once
    await execution.generate(on_delta)
    with contextlib.suppress(ConnectionError):
        final = run.message
        await send("thread.message.completed" if final.get("status") == "ready" else "thread.message.incomplete", final)
        await send(f"thread.run.{run.status}", run.to_dict(with_message=True))
        await send("done", "[DONE]")
        await response.write_eof()
    return response


async def _after_first_exchange(store: ConversationalExtension, thread: dict[str, Any], entry: dict[str, Any],
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


def _find_run(request: web.Request) -> Run:
    run = _runs(request.app).get(request.match_info["run_id"])
    if run is None or run.thread_id != request.match_info["thread_id"]:
        raise APIError(404, f"No run '{request.match_info['run_id']}' in this thread (runs are kept in memory "
                            "by the server that ran them)", param="run_id", code="not_found")
    return run


@routes.get("/v1/threads/{thread_id}/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    """Retrieve a run of this server (with its message once finished)."""
    run = _find_run(request)
    return web.json_response(run.to_dict(with_message=not run.active))


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    """Stop a run in progress: its reply is saved with what it has, status ``stopped``."""
    run = _find_run(request)
    if not run.active:
        raise APIError(400, f"Run '{run.id}' is already {run.status}", param="run_id", code="run_not_active")
    run.cancel_requested.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(run.finished.wait(), 30)
    return web.json_response(run.to_dict(with_message=not run.active))
