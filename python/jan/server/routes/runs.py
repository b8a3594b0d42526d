"""Runs over HTTP: ``POST /v1/threads/{thread_id}/runs`` and friends, in OpenAI's assistant shapes.

HTTP only: the body is parsed into a :class:`jan.services.runs.RunRequest`; what a run does
(history, precedence, saving, titles, events) is :mod:`jan.services.runs`. Runs live in the
server's memory (the messages are the durable record): ``GET .../runs/{run_id}`` knows the
runs of this process, ``POST .../runs/{run_id}/cancel`` stops one in progress.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Union

from aiohttp import web
from pydantic import Field

from jan.server.errors import APIError
from jan.server.jsonio import json_response
from jan.server.keys import SERVICES
from jan.server.openai_wire import response_format_of
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.threads import MessageCreate, _Strict, message_fields
from jan.server.schemas import INT32_MAX, Int32Count, ResponseFormat, Seed, Stop
from jan.server.sse import SSEStream
from jan.server.validation import parse_body
from jan.services.runs import Run, RunRequest
from jan.services.types import SamplingOptions

routes = web.RouteTableDef()

#: The body fields that are sampling options (request layer of the precedence rule).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                   "presence_penalty", "frequency_penalty", "seed", "stop", "max_tokens", "max_completion_tokens",
                   "ignore_eos")


class TruncationStrategy(_Strict):
    type: str = Field("auto", pattern="^(auto|last_messages)$")
    last_messages: Int32Count | None = None


class RunCreate(_Strict):
    """Body of ``POST /v1/threads/{thread_id}/runs``: OpenAI's run fields plus llama.cpp sampling extras."""

    assistant_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = None
    stream: bool | None = False
    metadata: dict[str, Any] | None = None
    truncation_strategy: TruncationStrategy | None = None
    response_format: Union[ResponseFormat, str, None] = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    typical_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0, le=INT32_MAX)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=INT32_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: Seed | None = None
    stop: Stop = None
    max_tokens: Int32Count | None = None
    max_completion_tokens: Int32Count | None = None
    ignore_eos: bool | None = None


EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs")] = RunCreate


def run_object(run: Run, *, with_message: bool = False) -> dict[str, Any]:
    """OpenAI's ``thread.run`` plus Jan's fields."""
    out = {
        "id": run.id,
        "object": "thread.run",
        "created_at": run.created_at,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "status": run.status,
        "started_at": run.started_at,
        "expires_at": None,
        "cancelled_at": run.ended_at if run.status == "cancelled" else None,
        "failed_at": run.ended_at if run.status == "failed" else None,
        "completed_at": run.ended_at if run.status in ("completed", "incomplete") else None,
        "required_action": None,
        "last_error": run.last_error,
        "incomplete_details": {"reason": "max_completion_tokens"} if run.status == "incomplete" else None,
        "model": run.model_id,
        "instructions": run.instructions,
        "tools": [],
        "metadata": run.metadata,
        "usage": run.usage,
        "temperature": run.parameters.get("temperature"),
        "top_p": run.parameters.get("top_p"),
        "max_completion_tokens": run.parameters.get("max_tokens"),
        "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "response_format": "auto",
        "tool_choice": "none",
        "parallel_tool_calls": False,
        # Jan's additions
        "parameters": run.parameters,
        "finish_reason": run.finish_reason,
        "message_id": run.message["id"] if run.message else None,
    }
    if with_message:
        out["message"] = run.message
    return out


def _sse_text(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
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
    truncation = body.truncation_strategy
    runs = request.app[SERVICES].runs
    run = await runs.start(RunRequest(
        thread_id=request.match_info["thread_id"], assistant_id=body.assistant_id, model=body.model,
        instructions=body.instructions, additional_instructions=body.additional_instructions,
        additional_messages=tuple(message_fields(m) for m in body.additional_messages or ()),
        metadata=body.metadata,
        last_messages=truncation.last_messages if truncation is not None and truncation.type == "last_messages" else None,
        response_format=response_format_of(body.response_format) if isinstance(body.response_format, ResponseFormat)
        else None,
        sampling=SamplingOptions.from_mapping(body.model_dump(include=set(SAMPLING_FIELDS), exclude_none=True))))

    def client_gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    if not body.stream:
        await runs.execute(run, listener_gone=client_gone)
        return json_response(run_object(run, with_message=True))

    sse = SSEStream(request)
    response = sse.response
    message_id = run.message["id"]

    async def send(event: str, data: Any) -> None:
        await sse.start()
        await response.write(_sse_text(event, data))

    async def on_delta(piece: str, kind: str = "text") -> None:
        # thinking streams as "reasoning" parts (the type it is saved under), the answer as "text"
        await send("thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": {
            "content": [{"index": 0, "type": kind, "text": {"value": piece, "annotations": []}}]}})

    try:
        await send("thread.run.created", run_object(run))
        run.status, run.started_at = "in_progress", int(time.time())
        await send("thread.run.in_progress", run_object(run))
        await send("thread.message.created", run.message)
        await send("thread.message.in_progress", run.message)
    except ConnectionError:
        pass  # generate() notices the closed transport and stops at once
    await runs.execute(run, on_delta, listener_gone=client_gone)
    with contextlib.suppress(ConnectionError):
        final = run.message
        await send("thread.message.completed" if final.get("status") == "ready" else "thread.message.incomplete", final)
        await send(f"thread.run.{run.status}", run_object(run, with_message=True))
        await send("done", "[DONE]")
        await response.write_eof()
    return response


def _find_run(request: web.Request) -> Run:
    run = request.app[SERVICES].runs.get(request.match_info["thread_id"], request.match_info["run_id"])
    if run is None:
        raise APIError(404, f"No run '{request.match_info['run_id']}' in this thread (runs are kept in memory "
                            "by the server that ran them)", param="run_id", code="not_found")
    return run


@routes.get("/v1/threads/{thread_id}/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    """Retrieve a run of this server (with its message once finished)."""
    run = _find_run(request)
    return json_response(run_object(run, with_message=not run.active))


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    """Stop a run in progress: its reply is saved with what it has, status ``stopped``."""
    run = _find_run(request)
    if not run.active:
        raise APIError(400, f"Run '{run.id}' is already {run.status}", param="run_id", code="run_not_active")
    await request.app[SERVICES].runs.cancel(run)
    return json_response(run_object(run, with_message=not run.active))
