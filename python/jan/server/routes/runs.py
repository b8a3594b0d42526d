"""Runs over HTTP: ``POST /v1/threads/{thread_id}/runs`` and friends, in OpenAI's assistant shapes.

HTTP only: the body is parsed into a :class:`jan.services.runs.RunRequest`; what a run does
(history, precedence, tools and approval, saving, titles, events) is :mod:`jan.services.runs`.

``POST /v1/threads/runs``                      create a thread and run it (OpenAI's createThreadAndRun)
``POST .../runs``                              start a run: the run at once (poll it), or ``stream`` for SSE
``GET  .../runs``                              the thread's runs, newest first (OpenAI's list parameters)
``GET  .../runs/{run_id}``                     a run (also one of an earlier process: runs are saved)
``POST .../runs/{run_id}/cancel``              stop a run in progress, or one waiting for the user
``POST .../runs/{run_id}/control``             end the thinking of the turn it is making (llama-server's body)
``POST .../runs/{run_id}/submit_tool_outputs`` approve / deny / answer the pending tool calls; the run goes on
``POST .../runs/{run_id}/resume``              continue a run ``interrupted`` by a stop of jan
``GET  .../runs/{run_id}/events?after=N``      replay a run's stream from event N + 1, then follow it live
``GET  .../runs/{run_id}/steps``               the run's steps, newest first (OpenAI's list parameters)
``GET  .../runs/{run_id}/steps/{step_id}``     one step (the object its ``thread.run.step.*`` events carry)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal, Union

from aiohttp import web
from pydantic import Field, model_validator

from jan.server.disconnect import client_gone
from jan.server.errors import APIError
from jan.errors import not_found_message
from jan.json_text import utf8_json
from jan.server.jsonio import json_response
from jan.server.keys import SERVICES
from jan.server.openai_wire import response_format_of
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.threads import (MessageCreate, ThreadCreate, _Strict, check_thread_formats, from_openai_sdk,
                                      list_query, message_fields, message_inputs, message_object, page_of,
                                      thread_fields, thread_object)
from jan.server.schemas import (INT32_MAX, Metadata, Int32Count, NamedToolChoice, ReasoningEffort, ResponseFormat, Seed, Stop,
                                ToolResources,
                                bounded)
from jan.server.sse import SSEStream
from jan.server.validation import body_step, no_fields, parse_body, query_int
from jan.services.run_steps import RunStep, openai_last_error
from jan.services.runs import FINAL_STATUSES, INTERRUPTED, PartialReply, Run, RunRequest, run_record, usage_fields
from jan.services.tool_loop import PendingCall, ToolDecision
from jan.services.types import SamplingOptions, Usage

routes = web.RouteTableDef()

#: The body fields that are sampling options (request layer of the precedence rule).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                   "presence_penalty", "frequency_penalty", "seed", "stop", "max_tokens", "max_completion_tokens",
                   "ignore_eos")
#: OpenAI's least ``max_prompt_tokens`` (its API answers a smaller one with a 400 naming the field).
MIN_PROMPT_TOKENS = 256


class TruncationStrategy(_Strict):
    """``auto``: a thread longer than the model's context loses its oldest turns (jan.services.fit);
    ``last_messages``: only the thread's last ``last_messages`` messages are sent."""

    type: str = Field("auto", pattern="^(auto|last_messages)$")
    last_messages: Int32Count | None = None

    @model_validator(mode="after")
    def _count_given(self) -> "TruncationStrategy":
        if self.type == "last_messages" and self.last_messages is None:
            raise ValueError("last_messages: required when type is 'last_messages'")
        return self


class RunCreate(_Strict):
    """Body of ``POST /v1/threads/{thread_id}/runs``: OpenAI's run fields plus llama.cpp sampling extras."""

    assistant_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = None
    stream: bool | None = False
    metadata: Metadata | None = None
    truncation_strategy: TruncationStrategy | None = None
    reasoning_effort: ReasoningEffort | None = Field(default=None, description=(
        "How hard a reasoning model thinks ('none' turns thinking off); default: the assistant's, else the model's"))
    response_format: Union[Literal["auto"], ResponseFormat, None] = Field(default=None, description=(
        "'auto' (the default: the thread's, else the assistant's) or a response format as chat completions take it"))
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    min_p: float | None = bounded("min_p")
    typical_p: float | None = bounded("typical_p")
    repeat_penalty: float | None = bounded("repeat_penalty")
    repeat_last_n: int | None = bounded("repeat_last_n")
    presence_penalty: float | None = bounded("presence_penalty")
    frequency_penalty: float | None = bounded("frequency_penalty")
    seed: Seed | None = None
    stop: Stop = None
    max_tokens: Int32Count | None = None
    max_completion_tokens: Int32Count | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=MIN_PROMPT_TOKENS, le=INT32_MAX, description=(
        "The prompt tokens all the run's model turns together may use (at least 256, as OpenAI): each turn's "
        "prompt is shortened to what is left (truncation_strategy), and the run ends 'incomplete' (reason "
        "'max_prompt_tokens') when even the shortest does not fit"))
    ignore_eos: bool | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, description=(
        "Tools of this run (overrides the thread's and the assistant's): {'type': 'function', 'function': "
        "{'name'}, 'require_approval'} or {'type': 'mcp', 'server_label', 'allowed_tools', 'require_approval'}"))
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = Field(default=None, description=(
        "For the run's first model turn: 'auto', 'none', 'required' or {'type': 'function', 'function': {'name'}}"))
    tool_policy: dict[str, Any] | None = Field(default=None, description=(
        "{'auto_approve': [tool names or patterns], 'max_steps': n, 'timeout': seconds, 'tool_choice': first turn's}"))
    parallel_tool_calls: bool | None = Field(default=None, description="Whether one model turn may call several tools")
    background: bool = Field(default=False, description=(
        "Streamed, keep running when the client goes away (re-attach with GET .../runs/{run_id}/events); a run not "
        "streamed always goes on without its client. Either is queued work: when the model is busy it waits for "
        "room rather than fail"))


class ThreadAndRunCreate(RunCreate):
    """Body of ``POST /v1/threads/runs``: a run's fields plus the ``thread`` to create and run (OpenAI's
    createThreadAndRun)."""

    thread: ThreadCreate | None = Field(default=None, description=(
        "The new thread, as POST /v1/threads takes it: messages, metadata (and Jan's title, assistants, id)"))
    tool_resources: ToolResources | None = Field(default=None, exclude=True)  # (only an empty one: not kept)


class ToolOutput(_Strict):
    """An answer to one pending call: OpenAI's ``output``, or Jan's ``approve`` (``false`` denies; ``reason`` is told)."""

    tool_call_id: str
    output: str | None = None
    approve: bool | None = None
    reason: str | None = Field(default=None, max_length=2000)


class SubmitToolOutputs(_Strict):
    """Body of ``POST .../runs/{run_id}/submit_tool_outputs``."""

    tool_outputs: list[ToolOutput]
    stream: bool = False


class ResumeRun(_Strict):
    """Body of ``POST .../runs/{run_id}/resume``."""

    stream: bool = False


EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs")] = RunCreate
EXTRA_BODIES[("POST", "/v1/threads/runs")] = ThreadAndRunCreate
EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")] = SubmitToolOutputs
EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs/{run_id}/resume")] = ResumeRun


def object_of(record: dict[str, Any], *, with_message: bool = False) -> dict[str, Any]:
    """OpenAI's ``thread.run`` plus Jan's fields, from a run's record (:func:`jan.services.runs.run_record`).

    A run a stop of jan cut off (``interrupted`` in jan's record, resumable) is ``incomplete`` on the wire, with
    ``incomplete_details: {"reason": "interrupted"}``: OpenAI has no status for it, and its SDK's polling helpers
    (``runs.poll``, ``create_and_poll``, ``submit_tool_outputs_and_poll``) wait for one of their terminal statuses
    — an unknown ``interrupted`` would have them poll for ever. ``POST .../resume`` takes such a run."""
    status = "incomplete" if record["status"] == INTERRUPTED else record["status"]
    interrupted = record["status"] == INTERRUPTED
    params = record.get("parameters") or {}
    ended = record.get("ended_at")
    pending = record.get("pending") or []
    tools = record.get("tools") or []
    out = {
        "id": record["id"],
        "object": "thread.run",
        "created_at": record.get("created_at"),
        "thread_id": record["thread_id"],
        "assistant_id": record.get("assistant_id"),
        "status": status,
        "started_at": record.get("started_at"),
        # as OpenAI's: a run waiting for its tool outputs expires (status "expired") unless they come by then
        "expires_at": record.get("expires_at") if status == "requires_action" else None,
        "cancelled_at": ended if status == "cancelled" else None,
        "failed_at": ended if status == "failed" else None,
        "completed_at": ended if status in ("completed", "incomplete") and not interrupted else None,
        "required_action": {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": pending}}
        if status == "requires_action" and pending else None,
        # OpenAI's codes only (jan's own is in the message); an older jan's record kept jan's own code here
        "last_error": openai_last_error(record.get("last_error")),
        # an older jan's record has no reason: its only limit then was max_completion_tokens
        "incomplete_details": {"reason": INTERRUPTED if interrupted
                               else record.get("incomplete_reason") or "max_completion_tokens"}
        if status == "incomplete" else None,
        "model": record.get("model"),
        "instructions": record.get("instructions"),
        "tools": tools,
        "metadata": record.get("metadata") or {},
        # every model turn's, summed (OpenAI's "over the course of the run"); so far, while the run goes on. A
        # terminal run always tells one, as OpenAI's (zero when no turn used any: an older jan's record had none)
        "usage": record.get("usage") or (usage_fields(Usage()) if status in FINAL_STATUSES else None),
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "max_completion_tokens": params.get("max_tokens"),
        "max_prompt_tokens": record.get("max_prompt_tokens"),
        "reasoning_effort": record.get("reasoning_effort"),
        "truncation_strategy": ({"type": "last_messages", "last_messages": record["last_messages"]}
                                if record.get("last_messages") else {"type": "auto", "last_messages": None}),
        "response_format": _format_object(record.get("response_format")),
        "tool_choice": record.get("tool_choice_request") if record.get("tool_choice_request") is not None
        else ("auto" if tools else "none"),
        "parallel_tool_calls": bool(tools) and record.get("parallel_tool_calls") is not False,
        # Jan's additions
        "parameters": params,
        "finish_reason": record.get("finish_reason"),
        "message_id": record.get("message_id"),
        "step": record.get("step", 0),
        "background": bool(record.get("background")),
        # tool entries that give the run nothing now (an MCP server disabled or down): it goes on without them
        "warnings": list(record.get("warnings") or ()),
    }
    if with_message or "message" in record:
        out["message"] = _message_or_none(record.get("message"))
    return out


def _message_or_none(message: dict[str, Any] | None) -> dict[str, Any] | None:
    return message_object(message) if message else None


def _format_object(fmt: dict[str, Any] | None) -> Any:
    """The response format a run used (its record's), in OpenAI's shape; ``"auto"`` when it had none."""
    if not isinstance(fmt, dict) or not fmt.get("type"):
        return "auto"
    if fmt["type"] == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name") or "response",
                                                       "schema": fmt.get("schema") or {}, "strict": fmt.get("strict")}}
    return {"type": fmt["type"]}


def run_object(run: Run, *, with_message: bool = False) -> dict[str, Any]:
    """A run as the API shows it."""
    out = object_of(run_record(run), with_message=with_message)
    out["events"] = len(run.events)
    if with_message:
        out["message"] = _message_or_none(run.message)
    return out


def step_object(step: RunStep) -> dict[str, Any]:
    """OpenAI's ``thread.run.step``, as the stream's ``thread.run.step.*`` events carry it and the steps routes
    answer: the step's record, its ``usage`` null while it is ``in_progress`` (OpenAI's)."""
    out = step.to_record()
    if step.open:
        out["usage"] = None
    return out


#: The stream's events whose data is a thread message (``thread.message.delta`` carries a delta), and those of them
#: that tell its end.
_ENDED_MESSAGE_EVENTS = ("thread.message.completed", "thread.message.incomplete")
_MESSAGE_EVENTS = ("thread.message.created", "thread.message.in_progress", *_ENDED_MESSAGE_EVENTS)


def _sse_text(event: str, data: Any, seq: int | None = None, *, sdk: bool = False) -> bytes:
    if isinstance(data, RunStep):
        data = step_object(data)
    if isinstance(data, dict) and data.get("object") == "thread.run" and event.startswith("thread.run.") \
            and not event.startswith("thread.run.step"):
        data = object_of(data)
    if event in _MESSAGE_EVENTS and isinstance(data, dict):
        data = message_object(data, sdk=sdk)
        if event in _ENDED_MESSAGE_EVENTS and data["status"] in ("completed", "incomplete"):
            # named for the wire's status: a reply the token limit cut (stored "ready") is OpenAI's incomplete one
            event = f"thread.message.{data['status']}"
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    head = f"id: {seq}\n" if seq is not None else ""
    return utf8_json(f"{head}event: {event}\ndata: {payload}\n\n")


async def _serve_leg(request: web.Request, run: Run, *, stream: bool, after: int,
                     continued: PartialReply | None = None,
                     prelude: tuple[tuple[str, Any], ...] = ()) -> web.StreamResponse:
    """Run one leg in its own task and answer: the run as JSON at once, or its events as SSE from event ``after + 1``.

    Not streamed, the leg goes on whatever the client does, as OpenAI's runs (poll ``GET .../runs/{run_id}``,
    cancel with ``POST .../cancel``): a client that waited for the end would be cut off by its own timeout, and
    its retries would each start a run. Streamed, a client that goes away stops the run, unless it is a
    ``background`` run, which goes on (re-attach with ``GET .../events?after=N``). ``prelude``: events streamed
    before the run's own, without an SSE ``id`` (they are not the run's, and ``.../events`` does not replay them).
    """
    runs = request.app[SERVICES].runs
    run.detached = not stream
    detached = run.background or not stream
    gone = (lambda: False) if detached else (lambda: client_gone(request))
    # (the leg makes itself the run's task once it runs: RunService.execute)
    task = runs.launch(run, listener_gone=gone, continued=continued)
    if not stream:
        return json_response(run_object(run))
    sse = SSEStream(request)
    try:
        await _write_events(sse, run, after, prelude)
    except ConnectionError:
        if not run.background:
            runs.stop(run, "client disconnected")
    if not run.background:
        await _wait_leg(task)
    return sse.response


async def _wait_leg(task: asyncio.Task) -> None:
    """Wait for a leg (which may end cancelled by ``.../cancel``); if this handler is cancelled, so is the leg."""
    try:
        await asyncio.wait([task])
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _write_events(sse: SSEStream, run: Run, after: int, prelude: tuple[tuple[str, Any], ...] = ()) -> None:
    """Stream the run's events numbered above ``after`` (after ``prelude``'s) until the current leg is over."""
    # Events that are in together go out in one write (one send() on the socket, one client wake-up); the
    # leg's last ones with the end of the body.
    sdk = from_openai_sdk(sse.request)  # (its messages' metadata as OpenAI's SDKs type it)
    await sse.start()
    if prelude:
        await sse.response.write(b"".join(_sse_text(event, data, sdk=sdk) for event, data in prelude))
    cursor = after
    while True:
        batch = await run.next_events(cursor)
        text = b"".join(_sse_text(event, data, seq, sdk=sdk) for seq, event, data in batch)
        if batch:
            cursor = batch[-1][0]
        if run.leg_over(cursor):
            await sse.response.write_eof(text)
            return
        if text:
            await sse.response.write(text)


@routes.post("/v1/threads/{thread_id}/runs")
async def create_run(request: web.Request) -> web.StreamResponse:
    """Answer a thread: generate the assistant's reply with the thread's history and save it as a message.

    ``stream: true`` answers with server-sent events in OpenAI's assistant
    stream shape: ``thread.run.created``, ``thread.run.queued`` (the run
    waits for its model: loading, every slot busy), ``thread.run.in_progress``
    (the engine started its turn: ``started_at``), ``thread.run.step.created`` and ``thread.run.step.in_progress`` (the
    reply's ``message_creation`` step), ``thread.message.created``,
    ``thread.message.in_progress`` (told with the reply's first piece, or as
    a turn that wrote none ends: a turn that only calls tools is no message,
    only its ``tool_calls`` step, as OpenAI's; a run cancelled before its turn
    wrote anything — still waiting for the model — has no message and no
    step at all, as OpenAI's: it ends ``thread.run.cancelled``), one
    ``thread.message.delta`` per piece of text (``{"id", "object":
    "thread.message.delta", "delta": {"content": [{"index": 0, "type":
    "text", "text": {"value", "annotations"}}]}}``), then
    ``thread.message.completed`` (or ``.incomplete``: a reply cut by a token
    limit, stopped or failed) with the saved message (``status``
    ``completed`` or ``incomplete``, with ``incomplete_details``),
    ``thread.run.step.completed`` (``.cancelled``, ``.failed``) and
    ``thread.run.completed`` / ``.incomplete`` / ``.cancelled`` /
    ``.failed`` with the run (its ``message`` included), then
    ``event: done`` / ``data: [DONE]``. Every event carries an SSE ``id``
    (its number in the run's stream). Without ``stream`` the answer is the
    run at once (``queued``), as OpenAI's: it goes on server-side
    whatever the client does; poll ``GET .../runs/{run_id}`` (the SDK's
    ``runs.poll``, ``create_and_poll``) for its end (the finished run has
    its ``message``), or ``POST .../cancel`` it. The steps are kept with the
    run: ``GET .../runs/{run_id}/steps`` lists the objects the step events
    carried.

    **Tools.** When the assistant (or the thread, or the run's ``tools``)
    lists tools, the model may call them. The calls stream as they are
    generated, as OpenAI's: their ``tool_calls`` step is created with no
    calls, then each piece is a ``thread.run.step.delta`` (``delta:
    {"step_details": {"type": "tool_calls", "tool_calls": [{"index", "id",
    "type": "function", "function": {"name", "arguments", "output":
    null}}]}}``: a call's first delta its id and name, the next ones pieces
    of its arguments). Allowlisted calls run at once
    (``thread.run.step.completed`` with their outputs; the thread keeps a
    ``tool`` message per result, listed with ``?all=true``) and the model
    continues; otherwise the run's leg ends in ``requires_action``
    (``thread.run.requires_action``; its ``tool_calls`` step stays in
    progress), and ``POST .../submit_tool_outputs`` continues it (the step
    completes with every output). See ``docs/tools.md``.

    **Token limits** cover the whole run (every model turn, tool loops
    included). ``max_completion_tokens`` (or ``max_tokens``) is what all the
    turns together may generate: each turn gets what the earlier ones left
    (``usage.completion_tokens``); the reply it cuts off ends the run
    ``incomplete``, ``incomplete_details: {"reason":
    "max_completion_tokens"}``, and so does a turn with nothing left, which
    is not started (its reply ``stopped`` and empty, ``metadata.stop_reason:
    "max_completion_tokens"``). ``max_prompt_tokens`` (at least 256, as
    OpenAI; a smaller one is a 400 naming it) is a budget the turns' prompts
    draw on (what they used is ``usage.prompt_tokens``): each prompt is
    shortened to what is left with the run's ``truncation_strategy`` (the
    oldest turns dropped; ``last_messages`` too). When even the shortest
    prompt does not fit, that turn is not started: its reply message ends
    ``stopped``, empty, with ``metadata.stop_reason: "max_prompt_tokens"``
    (``thread.message.incomplete``) and the run ``incomplete`` with
    ``{"reason": "max_prompt_tokens"}``.

    **Usage** is the whole run's, as OpenAI's: ``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``,
    ``prompt_tokens_details.cached_tokens`` and
    ``completion_tokens_details.reasoning_tokens`` (as
    ``/v1/chat/completions`` tells them) summed over every model turn
    (tool loops and ``submit_tool_outputs`` legs included; kept across a
    restart and a resume); a run that ends before any turn used tokens
    (failed, cancelled) tells zero usage. Each assistant message the run
    writes holds its own turn's usage in ``metadata.usage``; a
    ``thread.run.step.completed`` event's ``usage`` is that of the turn that
    made its tool calls.

    **A streamed run stops with its client.** When the client of a
    streamed run goes away mid-run, generation is cancelled at the next
    token, which frees the engine's slot, and the text generated so far is
    saved with status ``stopped`` (``metadata.stop_reason: "client
    disconnected"``); ``InferenceStopped`` is emitted. ``POST
    .../runs/{run_id}/cancel`` does the same on purpose (``stop_reason:
    "cancelled"``), from any client — and from any jan process sharing the
    data folder: the process running the run hears of it within a fraction
    of a second, and the answer is the run once it ended. A ``background:
    true`` run (and every run not streamed) goes on without its client;
    ``GET .../runs/{run_id}/events?after=N`` re-attaches. Both are queued
    work: they wait for room in a busy model rather than fail.

    **One run at a time.** While another run holds the thread (``queued``,
    ``in_progress`` or ``requires_action``) the answer is a 400 with
    ``code: "run_active"`` naming it, and nothing is written; an
    ``interrupted`` run does not hold its thread (resuming it is refused
    while another run does).

    **Expiry.** A run waiting in ``requires_action`` carries ``expires_at``
    (10 minutes on, as OpenAI's); outputs not submitted by then find it
    ``expired`` (its ``tool_calls`` step too), its thread free again.
    """
    body = await parse_body(request, RunCreate)
    req = run_request(body, request.match_info["thread_id"], await _additional_messages(request, body))
    run = await request.app[SERVICES].runs.start(req)
    return await _serve_leg(request, run, stream=body.stream, after=-1)


async def _additional_messages(request: web.Request, body: RunCreate) -> tuple[dict[str, Any], ...]:
    """The body's ``additional_messages`` as the store takes them, linked images and attached documents read into
    them (as a message added to the thread has them: :func:`message_inputs`)."""
    return tuple([await message_inputs(request, message_fields(m), f"additional_messages[{k}].")
                  for k, m in enumerate(body.additional_messages or ())])


def run_request(body: RunCreate, thread_id: str, additional_messages: tuple[dict[str, Any], ...]) -> RunRequest:
    """A validated run body as the run service takes it."""
    truncation = body.truncation_strategy
    return RunRequest(
        thread_id=thread_id, assistant_id=body.assistant_id, model=body.model,
        instructions=body.instructions, additional_instructions=body.additional_instructions,
        additional_messages=additional_messages,
        metadata=body.metadata,
        last_messages=truncation.last_messages if truncation is not None and truncation.type == "last_messages" else None,
        max_prompt_tokens=body.max_prompt_tokens, reasoning_effort=body.reasoning_effort,
        response_format=response_format_of(body.response_format) if isinstance(body.response_format, ResponseFormat)
        else None,
        sampling=SamplingOptions.from_mapping(body.model_dump(include=set(SAMPLING_FIELDS), exclude_none=True)),
        tools=tuple(body.tools) if body.tools is not None else None,
        tool_choice=body.tool_choice.model_dump() if isinstance(body.tool_choice, NamedToolChoice) else body.tool_choice,
        tool_policy=body.tool_policy, parallel_tool_calls=body.parallel_tool_calls, background=body.background)


# Registered before /v1/threads/{thread_id} (app.py adds this module's routes first): on an aiohttp that
# matches in registration order, POST /v1/threads/runs would otherwise modify a thread named "runs".
@routes.post("/v1/threads/runs")
async def create_thread_and_run(request: web.Request) -> web.StreamResponse:
    """Create a thread and run it in one request (OpenAI's createThreadAndRun): the answer is the run.

    The body is a run's (as ``POST /v1/threads/{thread_id}/runs`` takes it) plus ``thread``: the new
    thread as ``POST /v1/threads`` takes it (``messages``, ``metadata``; Jan's ``title``, ``assistants``).
    The run starts as on an existing thread, ``stream`` and ``background`` included; a streamed answer
    begins with ``thread.created`` (the new thread), then the run's events. A body that is refused (a 4xx:
    a bad field, an unknown assistant or model, a thread with nothing to answer) leaves no thread behind.
    """
    body = await parse_body(request, ThreadAndRunCreate)
    # every body check before a write (thousands of messages: off the loop, as they were validated)
    fields = await body_step(thread_fields, body.thread or ThreadCreate(), where="thread.")
    await check_thread_formats((body.thread or ThreadCreate()).assistants, where="thread.")
    await request.app[SERVICES].runs.check_thread_models(fields.get("assistants"), where="thread.")
    for k, message in enumerate(fields.get("messages") or ()):
        await message_inputs(request, message, f"thread.messages[{k}].")
    req = run_request(body, "", await _additional_messages(request, body))
    # the thread exists for the run only: refused by the run service's own checks, it is removed again
    thread, run = await request.app[SERVICES].runs.start_on_new_thread(fields, req)
    return await _serve_leg(request, run, stream=body.stream, after=-1, prelude=(("thread.created", thread_object(thread)),))


@routes.get("/v1/threads/{thread_id}/runs")
async def list_runs(request: web.Request) -> web.Response:
    """List a thread's runs, newest first by default (``limit``/``order``/``after``/``before`` as every list);
    ``problems`` lists its damaged run records (left where they are, left out of the list), as the thread and
    message lists do their damaged files."""
    q = list_query(request, default_order="desc")
    runs = request.app[SERVICES].runs
    records = await runs.list_runs(request.match_info["thread_id"])
    return json_response({**page_of([object_of(r) for r in records], q),
                          "problems": runs.problems(request.match_info["thread_id"])})


async def _find_run(request: web.Request) -> Run:
    run = await request.app[SERVICES].runs.load(request.match_info["thread_id"], request.match_info["run_id"])
    if run is None:
        raise _no_run(request.match_info)
    return run


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(request: web.Request) -> web.StreamResponse:
    """Answer a run in ``requires_action``: approve, deny or give the output of each pending tool call; the run goes on.

    Every pending call (``required_action.submit_tool_outputs.tool_calls``)
    must be answered: ``{"tool_call_id", "approve": true}`` runs the tool,
    ``{"tool_call_id", "approve": false, "reason"?}`` tells the model the
    user denied it, ``{"tool_call_id", "output": "..."}`` gives the result
    (client tools). ``stream`` answers with the continuing run's events;
    without it the answer is the run at once (``in_progress``: the approved
    tools and the model's next turn run on server-side; poll the run).
    """
    body = await parse_body(request, SubmitToolOutputs)
    run = await _find_run(request)
    decisions = []
    for item in body.tool_outputs:
        if item.output is None and item.approve is None:
            raise APIError(400, f"Give 'output' or 'approve' for '{item.tool_call_id}'", param="tool_outputs",
                           code="invalid_value")
        decisions.append(ToolDecision(PendingCall(item.tool_call_id, "", ""), approve=bool(item.approve),
                                      output=item.output, reason=item.reason))
    after = len(run.events) - 1
    # claimed with the answers; the leg runs the approved calls, then the model's next turn
    await request.app[SERVICES].runs.submit(run, decisions)
    return await _serve_leg(request, run, stream=body.stream, after=after)


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/resume")
async def resume_run(request: web.Request) -> web.StreamResponse:
    """Continue an ``interrupted`` run (jan stopped while it ran): its partial answer is kept and completed."""
    body = await parse_body(request, ResumeRun)
    run = await _find_run(request)
    after = len(run.events) - 1
    partial = await request.app[SERVICES].runs.resume(run)
    return await _serve_leg(request, run, stream=body.stream, after=after, continued=partial)


@routes.get("/v1/threads/{thread_id}/runs/{run_id}/events")
async def run_events(request: web.Request) -> web.StreamResponse:
    """Re-attach to a run's stream: its events numbered above ``after`` (default -1: all), then live ones.

    The stream ends when the run stops generating (finished, or waiting in
    ``requires_action``). Events are kept while the server runs.
    """
    after = query_int(request, "after", -1)  # (any integer below -1 is -1, as it always was)
    run = await _find_run(request)
    own = await request.app[SERVICES].runs.followable(run)
    sse = SSEStream(request)
    with contextlib.suppress(ConnectionError):
        if own:
            await _write_events(sse, run, max(-1, after))
        else:  # (a record from disk: no events, and none will come here; its status may still read as running)
            await sse.start()
            await sse.response.write_eof()
    return sse.response


async def _steps(request: web.Request) -> list[RunStep]:
    info = request.match_info
    steps = await request.app[SERVICES].runs.steps(info["thread_id"], info["run_id"])
    if steps is None:
        raise _no_run(info)
    return steps


def _no_run(info) -> APIError:
    return APIError(404, not_found_message("run", info["run_id"], f"thread {info['thread_id']!r}"), param="run_id",
                    code="not_found")


@routes.get("/v1/threads/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(request: web.Request) -> web.Response:
    """List a run's steps, newest first by default (``limit``/``order``/``after``/``before`` as every list).

    A model turn that writes a message is a ``message_creation`` step (``step_details.message_creation.message_id``:
    the reply it wrote) and the calls a turn made a ``tool_calls`` step (each call's ``function.output`` once it has
    one; Jan adds ``approved_by`` and ``duration_ms``); a turn that only called tools has its ``tool_calls`` step
    alone, as OpenAI's. A ``tool_calls`` step stays ``in_progress`` while the run waits for ``submit_tool_outputs``.
    Steps end as their run does: ``completed``, ``cancelled`` (a run cancelled, or ``interrupted`` by a stop of jan)
    or ``failed`` (the run's ``last_error``). ``usage`` is null while a step is in progress, then its model turn's (a
    calling turn's in its ``tool_calls`` step, zero in a ``message_creation`` step of that turn): the steps' usage
    adds up to the run's. These are the objects the run's stream
    carried (``thread.run.step.*``), kept with the run, so they are listed after a restart too.
    """
    q = list_query(request, default_order="desc")
    return json_response(page_of([step_object(step) for step in await _steps(request)], q))


@routes.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def get_run_step(request: web.Request) -> web.Response:
    """Retrieve one step of a run."""
    step_id = request.match_info["step_id"]
    step = next((s for s in await _steps(request) if s.id == step_id), None)
    if step is None:
        raise APIError(404, not_found_message("step", step_id, f"run {request.match_info['run_id']!r}"),
                       param="step_id", code="not_found")
    return json_response(step_object(step))


@routes.get("/v1/threads/{thread_id}/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    """Retrieve a run (with its message once finished); runs are saved, so this works after a restart."""
    run = await _find_run(request)
    return json_response(run_object(run, with_message=not run.active))


class RunModify(_Strict):
    """Body of ``POST /v1/threads/{thread_id}/runs/{run_id}``: OpenAI's "modify run" changes only ``metadata``."""

    metadata: Metadata | None = None


@routes.post("/v1/threads/{thread_id}/runs/{run_id}")
@routes.patch("/v1/threads/{thread_id}/runs/{run_id}")  # as a thread's, message's and assistant's
async def modify_run(request: web.Request) -> web.Response:
    """Replace a run's ``metadata`` (``null``: emptied; left out: the run as it is), running or ended, as a thread's
    or a message's is; ``run_held_elsewhere`` (400) for a run another jan process sharing the data folder runs."""
    body = await parse_body(request, RunModify)
    run = await _find_run(request)
    if "metadata" in body.model_fields_set:
        run = await request.app[SERVICES].runs.modify(run, body.metadata or {})
    return json_response(run_object(run, with_message=not run.active))


class RunControl(_Strict):
    """``POST .../runs/{run_id}/control``: llama-server's control body, of a run's model turn."""

    action: Literal["reasoning_end"]


EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/runs/{run_id}/control")] = RunControl


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/control")
async def control_run(request: web.Request) -> web.Response:
    """Act on the model turn a run is making (jan's; the body and answers are llama-server's
    ``/v1/chat/completions/control``): ``{"action": "reasoning_end"}`` ends its thinking at the next token, and the
    model answers in the same message. ``{"success": true}``, or ``{"success": false, "message"}`` when the run is
    making no turn here or its model does not think."""
    body = await parse_body(request, RunControl)
    run = await _find_run(request)
    outcome = request.app[SERVICES].runs.end_reasoning(run)
    if body.action == "reasoning_end" and outcome in ("ended", "pending"):
        return json_response({"success": True})
    why = {"not_armed": "the run's model does not think (its chat format has no thinking), or its engine cannot "
                        "end a thinking",
           "finished": f"run '{run.id}' is making no model turn now (it is {run.status})"}[outcome]
    return json_response({"success": False, "message": why})


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    """Stop a run in progress (its reply is saved with what it has, status ``stopped``; a run that wrote nothing yet,
    waiting for its model, keeps no reply, as OpenAI's) or one waiting for the user."""
    run = await _find_run(request)
    await no_fields(request)
    if not run.active and run.status not in ("requires_action", "interrupted"):
        raise _not_active(run)
    # (a run another jan process sharing the data folder runs is asked to stop there: the answer is its record's)
    run = await request.app[SERVICES].runs.cancel(run)
    if run.status in FINAL_STATUSES and run.status != "cancelled":
        # it ended otherwise before the cancel reached it (a cancel after its last token, while its end was saved):
        # answered as the same cancel a moment later is, not as a 200 with a run that was not cancelled
        raise _not_active(run)
    return json_response(run_object(run, with_message=not run.active))


def _not_active(run: Run) -> APIError:
    return APIError(400, f"Run '{run.id}' is already {run.status}", param="run_id", code="run_not_active")
