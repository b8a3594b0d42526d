"""OpenAI Responses: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}`` (``GET ...?stream=true``
replays a background stream), ``POST /v1/responses/{id}/cancel``, ``GET /v1/responses/{id}/input_items``,
``POST /v1/responses/input_tokens``.

HTTP only: :mod:`jan.server.dialects.responses` parses and formats, the chat service
answers, a :class:`~jan.server.dialects.responses_run.ResponseRun` generates each response in
its own task, :class:`~jan.server.dialects.responses_store.ResponsesStore` keeps stored ones
as Jan threads. Errors keep OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from jan.core import ConversationalExtension, NotFoundError
from jan.errors import ContextOverflowError, MediaError, not_found_message
from jan.templates.grammar import GrammarError
from jan.server.disconnect import WAIT_SHUTDOWN, client_gone, unless_disconnected, unless_stopping
from jan.server.document_inputs import read_body_documents
from jan.server.dialects import responses as wire
from jan.server.dialects.conversation_locks import ConversationHold
from jan.server.dialects.responses_run import STREAM_KEPT_S, InConversation, ResponseRun
from jan.server.dialects.responses_store import UNFINISHED, StoredResponse, stopped_response
from jan.server.errors import APIError, context_error, prompt_param, storage_error, to_api_error
from jan.server.item_lists import check_include, item_page, read_page_query
from jan.services.kept_items import off_loop_if_many
from jan.server.jsonio import json_response, json_response_built
from jan.server.keys import MANAGER, MEDIA_FETCHER, SERVICES, SHUTTING_DOWN
from jan.server.media_fetch import fetch_body_images
from jan.server.resolve import service
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.route_state import (CONVERSATION_LOCKS, RUNS, STORE, STREAMS, UNSAVED_ENDS, UNSAVED_ENDS_KEPT,
                                    UPLOADS)
from jan.server.routes.files import upload_image
from jan.server.streaming import Event, relay, started
from jan.server.validation import body_step, no_fields, parse_body, query_choice, query_int
from jan.services import ChatService
from jan.services.documents import read_documents
from jan.services.errors import failure_kind, require
from jan.services.media_check import check_images
from jan.services.media_workers import off_loop_for
from jan.services.streams import DeltaStream
from jan.services.types import ChatDelta, ChatMessage, ChatRequest
from jan.store.leases import LEASE_DIR_NAME, Leases

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

# (STORE, RUNS, STREAMS: jan.server.route_state, which sets them up at start; this module loads on first use)
EXTRA_BODIES[("POST", "/v1/responses")] = wire.ResponsesRequest
EXTRA_BODIES[("POST", "/v1/responses/input_tokens")] = wire.InputTokensRequest


def _chat(request: web.Request) -> ChatService:
    return request.app[SERVICES].chat


def _response_id(request: web.Request) -> str:
    response_id = request.match_info["response_id"]
    if not wire.valid_response_id(response_id):
        raise APIError(404, not_found_message("response", response_id), code="not_found")
    return response_id


def _failed(exc: BaseException) -> dict[str, Any]:
    """The ``error`` of a response that failed with ``exc``: OpenAI's code as an Assistants run's ``last_error`` has
    it (one mapping, by the kind of failure: :func:`~jan.services.errors.failure_kind`), never read off the HTTP
    status (a full queue is a 503, yet ``rate_limit_exceeded``: the client's to retry); the message the HTTP error's."""
    return {"code": failure_kind(exc), "message": to_api_error(exc).message}


def _leases(app: web.Application) -> Leases:
    """The leases of the data folder (:mod:`jan.store.leases`): a stored response being generated is leased by the
    process generating it, so that another process serving the same data folder tells it from one a server left
    unfinished when it stopped (its lease dropped with it, however it ended)."""
    return Leases(app[STORE].folder.parent / LEASE_DIR_NAME)


def _running_elsewhere(app: web.Application, response_id: str) -> bool:
    """Whether another live process (a second server on this data folder) is generating the response."""
    leases = _leases(app)
    return leases.is_live(response_id) and not leases.holds(response_id)


async def _stored(request: web.Request, response_id: str) -> dict[str, Any]:
    """A stored response object; one left unfinished by a server that stopped reads as failed (one another server
    on this data folder is generating reads as it stands on disk), and one whose end this server could not save as
    failed with the error its client was told."""
    response = (await request.app[STORE].get(response_id)).response
    if (response.get("status") in UNFINISHED and response_id not in request.app[RUNS]
            and not await asyncio.to_thread(_running_elsewhere, request.app, response_id)):
        # (a server that stopped since this one started: its start sweeps it so on disk, end_unfinished)
        return stopped_response(response, request.app[UNSAVED_ENDS].get(response_id))
    return response


def _end_not_saved(app: web.Application, run: ResponseRun) -> None:
    """Remember why the end of ``run`` was not saved (:data:`~jan.server.route_state.UNSAVED_ENDS`), when it was not:
    its record stays as it began, and a GET of it says so rather than that the server stopped."""
    error = (run.final or {}).get("error") if run.store_error is not None else None
    if not error:
        return
    ends = app[UNSAVED_ENDS]
    ends.pop(run.id, None)
    ends[run.id] = error
    while len(ends) > UNSAVED_ENDS_KEPT:  # (the oldest first: a dict keeps its insertion order)
        del ends[next(iter(ends))]


def _elsewhere_error(response_id: str, what: str) -> APIError:
    return APIError(400, f"Cannot {what} response '{response_id}' here: another jan process serving this data folder "
                         "is generating it; do it through that server, or once it has finished.",
                    code="invalid_state")


async def _previous(app: web.Application, response_id: str | None) -> StoredResponse | None:
    """The stored response ``previous_response_id`` names (None without one); a 400 for one that is unknown or
    still running."""
    if response_id is None:
        return None
    try:
        if not wire.valid_response_id(response_id):
            raise NotFoundError(response_id)
        previous = await app[STORE].get(response_id)
    except NotFoundError:
        raise APIError(400, f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                       code="previous_response_not_found") from None
    if response_id in app[RUNS] or (previous.response.get("status") in UNFINISHED
                                    and await asyncio.to_thread(_running_elsewhere, app, response_id)):
        raise APIError(400, f"Previous response with id '{response_id}' is still in progress; continue it once it "
                            "has finished", param="previous_response_id", code="previous_response_in_progress")
    return previous


def _conversation_id(app: web.Application, body: wire._Prompt) -> str | None:
    """The thread of the conversation ``conversation`` names (None without one); a 400 with
    ``previous_response_id`` too, or for an id that is none (OpenAI's words)."""
    conversation_id = body.conversation_id
    if conversation_id is None:
        return None
    if body.previous_response_id is not None:
        raise APIError(400, "Mutually exclusive parameters: Ensure you are only providing one of: "
                            "'previous_response_id' or 'conversation'.", param="conversation",
                       code="mutually_exclusive_parameters")
    from jan.server.dialects.conversations import valid_conversation_id

    if not valid_conversation_id(conversation_id):
        raise APIError(400, f"Invalid 'conversation': {conversation_id[:80]!r}. Expected an ID that begins with "
                            "'conv_' followed by letters and digits.", param="conversation", code="invalid_value")
    # the conversation is a thread: without a conversation store, a 503 now
    require(app[MANAGER], ConversationalExtension, "stores conversations", "conversational")
    return conversation_id


async def _conversation_history(app: web.Application, conversation_id: str | None,
                                ) -> tuple[list[ChatMessage], list[str]]:
    """The conversation's items as chat turns, read as a ``previous_response_id``'s are (the store's one reading),
    and their ids (the response's ``input_items`` list them first); a 404 for a conversation that is not there."""
    if conversation_id is None:
        return [], []
    from jan.server.dialects.conversations_store import ConversationStore

    try:
        return await ConversationStore(app[STORE]).history(conversation_id)
    except NotFoundError:
        raise APIError(404, not_found_message("conversation", conversation_id), param="conversation",
                       code="not_found") from None


async def _history(app: web.Application, previous: StoredResponse | None) -> list[ChatMessage]:
    """The stored conversation ``previous`` continues, as chat turns (none without one)."""
    if previous is None:
        return []
    try:
        return await app[STORE].history(previous)
    except NotFoundError as exc:
        raise APIError(400, str(exc), param="previous_response_id", code="previous_response_not_found") from None


async def resolve_references(app: web.Application, body: Any, previous: StoredResponse | None,
                             conversation: str | None = None, field: str = "input") -> None:
    """In place of each ``item_reference`` of ``input`` (``field``: a conversation's ``items``), the stored item it
    names (a 400 for one not stored): an item of the ``conversation`` first, then of a stored response."""
    if wire.item_references(body, field):
        store = app[STORE]

        async def find(item_id: str) -> dict[str, Any] | None:
            if conversation is not None:
                from jan.server.dialects.conversations_store import ConversationStore

                with contextlib.suppress(NotFoundError):
                    return await ConversationStore(store).item(conversation, item_id)
            return await store.find_item(item_id, previous, wire.valid_response_id)

        await wire.resolve_item_references(body, find, field)


async def _no_item_again(app: web.Application, body: wire._Prompt, previous: StoredResponse | None) -> None:
    """OpenAI's 400 for an input item (sent with its id, or an ``item_reference``) that the responses
    ``previous_response_id`` continues hold already: the model would read it twice, and it would be listed twice
    under one id (the response's ``input_items`` list the chain before its own input)."""
    given = [(i, item.id) for i, item in enumerate(body.input if isinstance(body.input, list) else ())
             if isinstance(getattr(item, "id", None), str)]
    if previous is None or not given:
        return
    output = previous.response.get("output")
    held = {item["id"] for item in [*await listed_input_items(app, previous), *(output if isinstance(output, list)
                                                                                  else ())]
            if isinstance(item, dict) and isinstance(item.get("id"), str)}
    for index, item_id in given:
        if item_id in held:
            raise APIError(400, f"Duplicate item found with id {item_id[:80]}. Remove duplicate items from your input "
                                "and try again.", param=f"input[{index}]", code="invalid_value")


def response_values(response: dict[str, Any]) -> int:
    """About how many JSON values a response object holds: its output text's logprobs (each token with its
    alternatives and their bytes) are what grows with a long reply."""
    values = 0
    for item in response.get("output") or ():
        for part in item.get("content") or () if isinstance(item, dict) else ():
            for lp in part.get("logprobs") or () if isinstance(part, dict) else ():
                values += 8 * (2 + len(lp.get("top_logprobs") or ()) if isinstance(lp, dict) else 1)
    return values


@dataclass
class PreparedResponse:
    """A response request read, before it generates: what ``POST /v1/responses`` and a batch's ``/v1/responses``
    line both make of a body (:func:`prepare_response`), then generate with :func:`response_run`."""

    body: wire.ResponsesRequest
    previous: StoredResponse | None
    conversation: str | None  # the conversation's (its thread's) id
    history: list[ChatMessage]
    history_ids: list[str]  # the ids of the conversation's items read (none without one)
    inputs: list[ChatMessage]  # the turns ``input`` made (documents read as text: what a stored one keeps)
    chat_request: ChatRequest
    started: bool = False  # its run has started (a failure is then the response's)
    #: The conversation held for this response (one at a time: jan.server.dialects.conversation_locks); its run
    #: releases it once its items are in it, :meth:`release` where no run starts.
    hold: ConversationHold | None = None

    def release(self) -> None:
        """Let the next response into the conversation (none held, or released already: nothing)."""
        if self.hold is not None:
            self.hold.release()

    async def let_go(self) -> None:
        """:meth:`release`, waiting until the conversation is free (its claim on disk gone)."""
        if self.hold is not None:
            await self.hold.let_go()

    def named(self, exc: BaseException) -> BaseException:
        """Media or a schema refused: said of the Responses field that carried it."""
        if isinstance(exc, GrammarError):
            return wire.schema_error(exc, self.body, self.chat_request)
        return wire.media_error(exc, self.body, len(self.history)) if isinstance(exc, MediaError) else exc


async def prepare_response(app: web.Application, body: wire.ResponsesRequest,
                           image_of: Callable[[str, str], Awaitable[tuple[bytes, str]]],
                           wait_for_conversation: bool = False) -> PreparedResponse:
    """The typed chat request of a Responses ``body``: its stored conversation (``previous_response_id``), item
    references, images (fetched; ``file_id`` ones read with ``image_of(file_id, param)``) and documents read; a 4xx
    in OpenAI's shape for what is wrong with it. No HTTP request here: a batch's lines come this way too.

    Its ``conversation`` is held from here (:attr:`PreparedResponse.hold`): while another response (of any process
    sharing the data folder) or an Assistants run holds it, OpenAI's 400 ``conversation_locked``, or with ``wait_for_conversation`` (queued work) a wait for it. The
    caller releases it where no run starts (:meth:`PreparedResponse.release`); a failure here releases it."""
    if body.background and not body.store:
        raise APIError(400, "background responses must be stored (store: true)", param="background")
    conversation = _conversation_id(app, body)
    if conversation is None:
        return await _prepared(app, body, image_of, None, None)
    locks = app[CONVERSATION_LOCKS]
    hold = await (locks.wait_take(conversation) if wait_for_conversation else locks.take(conversation))
    try:
        return await _prepared(app, body, image_of, conversation, hold)
    except BaseException:
        # (let go at once, then answered once it is free: refused while its lease file was still being removed,
        # the client's next write to the conversation found it held)
        await hold.let_go()
        raise


async def _prepared(app: web.Application, body: wire.ResponsesRequest,
                    image_of: Callable[[str, str], Awaitable[tuple[bytes, str]]], conversation: str | None,
                    hold: ConversationHold | None) -> PreparedResponse:
    if body.store or body.previous_response_id:
        # Stored responses are threads: without a conversation store, a 503 now rather than a failed response later.
        require(app[MANAGER], ConversationalExtension, "stores conversations", "conversational")
    previous = await _previous(app, body.previous_response_id)
    in_conversation, history_ids = await _conversation_history(app, conversation)
    history = await _history(app, previous) + in_conversation
    await resolve_references(app, body, previous, conversation)
    await _no_item_again(app, body, previous)
    await fetch_body_images(body, app[MEDIA_FETCHER])
    await wire.resolve_file_images(body, image_of)  # input_image file_id
    await read_body_documents(body, app.get(UPLOADS), app[MEDIA_FETCHER])  # input_file by id, URL
    inputs = await body_step(wire.input_messages, body.input)  # (these grow with the body: off the loop for a big one)
    chat_request = await body_step(wire.to_chat_request, body, history, inputs)
    prepared = PreparedResponse(body, previous, conversation, history, history_ids, inputs, chat_request, hold=hold)
    try:  # documents as the text the model reads, now: the stored input keeps that text for later turns
        chat_request = await read_documents(chat_request)
    except MediaError as exc:
        raise prepared.named(exc) from None
    prepared.chat_request = chat_request
    prepared.inputs = list(chat_request.messages[len(chat_request.messages) - len(inputs):])
    return prepared


async def response_run(app: web.Application, prepared: PreparedResponse, stream: DeltaStream[ChatDelta],
                       deltas: AsyncIterator[ChatDelta], gone: Callable[[], bool] = lambda: False,
                       model_id: str | None = None) -> ResponseRun:
    """The run that generates ``prepared`` from ``deltas`` (``stream``, or it started), stored when its body says
    so; not started. ``gone()``: whether the client it answers left (then it stops, cancelled). ``model_id``: the
    model's id resolved already (a background response's, answered before its stream starts and knows it)."""
    body = prepared.body
    input_items = await body_step(wire.input_items, body.input)
    conversation = None
    if prepared.conversation:
        from jan.server.dialects.conversations import kept_turns
        from jan.server.dialects.conversations_store import ConversationStore

        # the conversation keeps each input item as the response lists it (its id, its kind): one item, one id
        kept = kept_turns(input_items, prepared.inputs, await body_step(wire.input_sources, body.input))
        conversation = InConversation(app[STORE], prepared.conversation, kept,
                                      ConversationStore(app[STORE]).item_ids, prepared.history_ids,
                                      release=prepared.release, let_go=prepared.let_go)
    # the model's id once resolved, not an alias the body named it by: OpenAI's Responses API echoes the model it
    # resolved ("gpt-4o" answers "gpt-4o-2024-08-06"), as chat completions do (and jan's)
    return ResponseRun(wire.new_id("resp"), body, lambda: stream.model or model_id or body.model, deltas,
                       store=app[STORE] if body.store else None,
                       previous=prepared.previous, inputs=prepared.inputs, input_items=input_items,
                       error_of=lambda exc: _failed(prepared.named(exc)), streamed=body.stream,
                       conversation=conversation, client_gone=gone)


@routes.post("/v1/responses")
@routes.post("/responses")  # (without /v1, as llama-server serves it)
@prompt_param("input")
async def create_response(request: web.Request) -> web.StreamResponse:
    """Create a response; ``stream: true`` sends the typed event stream, ``background: true``
    answers at once (poll with GET, stop with cancel). Stored (``store``, the default) unless
    ``store: false``; ``previous_response_id`` continues a stored one; ``conversation`` (``conv_...``, or
    ``{"id": ...}``) reads that conversation's items first and adds the input and output to it once it ends."""
    body = await parse_body(request, wire.ResponsesRequest)
    prepared = await prepare_response(request.app, body, functools.partial(upload_image, request))
    mcp = None
    try:
        mcp = await _mcp_session(request, prepared)
        return await _create(request, prepared, mcp)
    except Exception as exc:
        if mcp is None or prepared.started:
            raise
        raise _with_calls_run(exc, prepared, mcp) from None
    finally:
        if mcp is not None and not mcp.handed_over:  # (refused or failed before its run began: the run closes it)
            await mcp.close()
        if not prepared.started:  # (refused before its run began: the conversation is free again once answered)
            await prepared.let_go()  # (let go at once, before its first await: a cancel cuts only the wait)


def _with_calls_run(exc: Exception, prepared: PreparedResponse, mcp: Any) -> Exception:
    """A refusal of a response that was not made, after the MCP calls its input approved ran (their result
    overflowed the context): the error says which ran (``responses_mcp.calls_run``)."""
    from jan.server.dialects import responses_mcp

    ran = responses_mcp.calls_run(mcp)
    if not ran:
        return exc
    err = context_error(exc, "input") if isinstance(exc, ContextOverflowError) else to_api_error(prepared.named(exc))
    return APIError(err.status, f"{err.message.rstrip('.')}. {ran}", type=err.type, param=err.param, code=err.code,
                    headers=err.headers, details=err.details)


async def _mcp_session(request: web.Request, prepared: PreparedResponse) -> Any:
    """The MCP servers the request's ``mcp`` tools name, connected and listed, the approved calls run (the chat
    request then offers their tools); None without such tools."""
    body = prepared.body
    if not any(isinstance(t, wire.McpTool) for t in body.tools or ()):
        if any(isinstance(i, wire.McpItem) and i.type == "mcp_approval_response"
               for i in (body.input if isinstance(body.input, list) else ())):
            raise APIError(400, "input: an mcp_approval_response needs the mcp tool of its server in tools",
                           param="input", code="invalid_value")
        return None
    from jan.core import ToolRegistry
    from jan.server.dialects import responses_mcp
    from jan.services import mcp_use

    context = await _context_items(request.app, prepared.previous, prepared.conversation)
    uses = responses_mcp.server_uses(body, request.app[MEDIA_FETCHER].allowlist.allows_url, context)
    approved = responses_mcp.approvals(body, context, uses)
    # (a client gone while the servers are reached: the handler is cancelled, and prepare closes what it opened)
    session = await mcp_use.prepare(uses, ToolRegistry(request.app[MANAGER]), approved)
    try:
        prepared.chat_request = responses_mcp.with_tools(body, prepared.chat_request, session)
    except BaseException:
        await session.close()
        raise
    return session


async def _context_items(app: web.Application, previous: StoredResponse | None,
                         conversation: str | None) -> list[dict[str, Any]]:
    """The stored items a response reads before its input: those of the responses ``previous_response_id``
    continues (their input items and outputs) or of its conversation (where a server's ``mcp_list_tools`` says it
    was listed for this conversation)."""
    items: list[dict[str, Any]] = []
    if previous is not None:
        output = previous.response.get("output")
        items += [*await listed_input_items(app, previous), *(output if isinstance(output, list) else ())]
    if conversation is not None:
        from jan.server.dialects.conversations_store import ConversationStore

        with contextlib.suppress(NotFoundError):  # (deleted meanwhile: the response fails on adding its items)
            items += await ConversationStore(app[STORE]).items(conversation, images=False)
    return items


async def _create(request: web.Request, prepared: PreparedResponse, mcp: Any) -> web.StreamResponse:
    body = prepared.body
    chat_request, inputs = prepared.chat_request, prepared.inputs
    model_id = None
    if body.background:
        # A background response is answered before its prompt is made (the model may still be loading): a model
        # that is not there or cannot generate is a 4xx now (OpenAI's), and a damaged image a 400 naming its input
        # as in the foreground, not an answered id that fails (and that the store, refusing the image too, would
        # then not keep: a 404 to the client polling it).
        try:  # (what the model cannot take, images without a projector, is refused here as well)
            # (its id: the answer, queued, names the model as the response will, not an alias the body gave)
            model_id = await _chat(request).answering_model(chat_request)
            await off_loop_for(chat_request, check_images, inputs, len(chat_request.messages) - len(inputs))
        except (MediaError, GrammarError) as exc:  # (a schema no grammar can be made of: its Responses field)
            raise prepared.named(exc) from None
    stream = _chat(request).stream(chat_request)

    # setup errors are a plain 4xx (and nothing is stored), except for a background response: it fails
    try:
        deltas = stream if body.background else await started(request, stream, body.model)
    except (MediaError, GrammarError) as exc:
        raise prepared.named(exc) from None
    if mcp is not None:
        from jan.services import mcp_use

        # the MCP calls the model makes run here, and it goes on with their results (jan.services.mcp_use)
        deltas = mcp_use.rounds(_chat(request).stream, chat_request, deltas, mcp, new_id=wire.new_id)
        mcp.handed_over = True
    # A foreground stream stops with its client, asked after each delta: deltas with no event to send write nothing
    # that would notice (a background response goes on: it is polled, or streamed again; a foreground one not
    # streamed is watched while it is awaited, below, as every dialect's whole answer is)
    streamed_here = body.stream and not body.background
    run = await response_run(request.app, prepared, stream, deltas,
                             gone=(lambda: client_gone(request)) if streamed_here else (lambda: False),
                             model_id=model_id)
    leases = _leases(request.app)
    if body.store:
        # leased before its record is written, until it has ended and been saved: another process on this data
        # folder reads its unfinished record as running, not as left behind by a server that stopped
        with contextlib.suppress(OSError):  # (a data folder that holds no lock file keeps no response either)
            await asyncio.to_thread(leases.take, run.id)
    if request.app[SHUTTING_DOWN].is_set():
        # (checked with no await before the run is registered: a response made once the stop has cancelled the
        # running ones would generate while the extensions stop, and its task outlive the app)
        leases.release_soon(run.id)
        await stream.aclose()
        raise APIError(503, "The server is shutting down; no response starts now. Try again once it is back.",
                       type="server_error", code="server_shutdown")
    runs = request.app[RUNS]
    runs[run.id] = run
    request.app[STREAMS].add(run)

    def done() -> None:
        runs.pop(run.id, None)
        _end_not_saved(request.app, run)
        prepared.release()  # (the run released it as it ended; a task cancelled before it ran did not)
        # (its lease file removed in a worker thread, not on the event loop: nothing here waits for it, the record
        # is whole already, and the id is this response's alone)
        leases.release_soon(run.id)

    run.start(on_done=done)
    prepared.started = True  # (what goes wrong from here is the response's: said in it)
    if body.store:
        # A stored response whose record the disk refused (full, read-only) never began: answered as every other
        # write of the data folder the disk refuses (507 insufficient_storage, ...), not as a 200 "failed"
        # response (or stream) whose id no GET finds. (Its first event waits for the record anyway.)
        await run.stored()
        refused = storage_error(run.store_error) if run.store_error is not None else None
        if refused is not None:
            await run.wait()  # (it ended at once: nothing was generated)
            raise refused
    if body.stream:
        return await relay(request, _events(run, body.background), _error_event(run))
    if body.background:
        # The id answered must survive a crash from now on: the response is on disk before the answer.
        await run.stored()
        return json_response(run.snapshot() if run.done else run.snapshot("queued"))
    try:
        # (at a shutdown the app cancels the response: it is answered cancelled, as it is saved)
        answer = await unless_disconnected(request, run.wait(), body.model, at_shutdown=False)
        refused = storage_error(run.store_error) if run.store_error is not None else None
        if refused is not None:  # its stored copy (or its conversation's turn) could not be written: no 200 over it
            raise refused
        return await json_response_built(lambda: answer, values=response_values(answer))
    finally:
        if not run.done:  # the client went away: a foreground response stops with it
            await run.cancel()


async def _events(run: ResponseRun, background: bool, after: int = -1) -> AsyncIterator[Event]:
    try:
        async for event in run.events(after):
            yield event["type"], event
    finally:
        if not background and not run.done:
            await run.cancel()


def _error_event(run: ResponseRun):
    def event(err: APIError) -> Event:
        data = run.encoder.event("error", code=err.code or err.type, message=err.message, param=err.param)
        return "error", data
    return event


@routes.post("/v1/responses/input_tokens")
@routes.post("/responses/input_tokens")
@prompt_param("input")
async def count_input_tokens(request: web.Request) -> web.Response:
    """Count the input tokens of a response request, as the model's chat template and vocabulary make them.

    The prompt is the one ``POST /v1/responses`` would make of the same body (``instructions``, the conversation
    ``previous_response_id`` continues, ``input``, ``tools``...): the same typed request and rendering, nothing
    generated or stored."""
    body = await parse_body(request, wire.InputTokensRequest)
    conversation = _conversation_id(request.app, body)
    if body.previous_response_id:  # the conversation is a thread: without a conversation store, a 503
        service(request, ConversationalExtension, "stores conversations", "conversational")
    previous = await _previous(request.app, body.previous_response_id)
    history = await _history(request.app, previous) + (await _conversation_history(request.app, conversation))[0]
    await resolve_references(request.app, body, previous, conversation)
    await _no_item_again(request.app, body, previous)
    await fetch_body_images(body, request.app[MEDIA_FETCHER])
    await wire.resolve_file_images(body, functools.partial(upload_image, request))  # input_image file_id
    await read_body_documents(body, request.app.get(UPLOADS), request.app[MEDIA_FETCHER])
    chat_request = await body_step(wire.to_chat_request, body, history,
                                   await body_step(wire.input_messages, body.input))
    chat_request = await _with_mcp_tools(request, body, chat_request, previous, conversation)
    try:
        # (counting loads the model first where it is not loaded: told at once at a stop, as /tokenize is)
        counted = await unless_stopping(request, _chat(request).count(chat_request), WAIT_SHUTDOWN)
    except MediaError as exc:  # said of the body's field, as a response request's
        raise wire.media_error(exc, body, len(history)) from None
    except GrammarError as exc:  # (a tool's ``tools[i].parameters``, ``text.format.schema``)
        raise wire.schema_error(exc, body, chat_request) from None
    return json_response({"object": "response.input_tokens", "input_tokens": counted})


async def _with_mcp_tools(request: web.Request, body: wire.InputTokensRequest, chat_request: ChatRequest,
                          previous: StoredResponse | None, conversation: str | None) -> ChatRequest:
    """``chat_request`` offering the tools of the body's ``mcp`` tools as the response's prompt would: the tools of
    the listing its context (or input) holds of a server, else of the server listed now (bounded, as a response's;
    one that cannot be listed offers none, as a response goes on without it). No call runs: the results of the
    calls the input approves are not counted (they are known only once the response runs them)."""
    if not any(isinstance(t, wire.McpTool) for t in body.tools or ()):
        return chat_request
    from jan.core import ToolRegistry
    from jan.server.dialects import responses_mcp
    from jan.services import mcp_use

    context = await _context_items(request.app, previous, conversation)
    uses = responses_mcp.server_uses(body, request.app[MEDIA_FETCHER].allowlist.allows_url, context)
    session = await mcp_use.prepare(uses, ToolRegistry(request.app[MANAGER]), offered_only=True)
    try:
        return responses_mcp.with_tools(body, chat_request, session)
    finally:
        await session.close()


def _query_bool(request: web.Request, name: str) -> bool:
    return query_choice(request, name, "false", ("true", "false")) == "true"  # what the SDKs send for a boolean


def _starting_after(request: web.Request) -> int:
    # (any integer below 0 is "from the first event", as it always was)
    return query_int(request, "starting_after", -1)


def _not_streamable(why: str) -> APIError:
    return APIError(400, f"This response cannot be streamed because {why}.", param="stream", code="invalid_value")


@routes.get("/v1/responses/{response_id}")
async def get_response(request: web.Request) -> web.StreamResponse:
    """A stored response (or one still running: as it stands). ``stream=true``: the stream of a background
    response created with ``stream: true``, its events after ``starting_after`` (a ``sequence_number``) replayed,
    then followed live until it ends; kept while it runs and for a while after (``STREAM_KEPT_S``), in memory."""
    response_id = _response_id(request)
    stream, after = _query_bool(request, "stream"), _starting_after(request)
    check_include(request)
    run = request.app[RUNS].get(response_id)
    if stream:
        run = request.app[STREAMS].get(response_id) or run
        if run is not None and run.replayable:
            return await relay(request, _events(run, True, after), _error_event(run))
        response = run.snapshot() if run is not None else await _stored(request, response_id)
        if not response.get("background"):
            raise _not_streamable("it was not created with background=true")
        if run is not None:
            raise _not_streamable("it was not created with stream=true")
        if response.get("status") in UNFINISHED and await asyncio.to_thread(_running_elsewhere, request.app,
                                                                             response_id):
            # (its events are in that process's memory: "not kept" read as lost, and "once it has finished" is no
            # better here, where they never were)
            raise APIError(400, f"Cannot stream response '{response_id}' here: another jan process serving this "
                                "data folder is generating it, and only that server has its events; stream it "
                                "from there.", param="stream", code="invalid_state")
        # ended over STREAM_KEPT_S ago, or before a restart, or never streamed: no events to replay
        raise _not_streamable(f"its events are not kept (a background response created with stream=true is "
                              f"streamed while it runs and for {int(STREAM_KEPT_S // 60)} minutes after it ends, "
                              "until the server stops)")
    if run is not None:
        answer = run.snapshot()
    else:
        answer = await _stored(request, response_id)
    return await json_response_built(lambda: answer, values=response_values(answer))


@routes.delete("/v1/responses/{response_id}")
async def delete_response(request: web.Request) -> web.Response:
    """Forget a stored response (its conversation stays a thread in Jan)."""
    response_id = _response_id(request)
    run = request.app[RUNS].get(response_id)
    if run is not None:
        await run.cancel()
    elif await asyncio.to_thread(_running_elsewhere, request.app, response_id):
        raise _elsewhere_error(response_id, "delete")  # (its end, saved there, would write it again)
    request.app[STREAMS].forget(response_id)
    await request.app[STORE].delete(response_id)
    request.app[UNSAVED_ENDS].pop(response_id, None)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


@routes.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: web.Request) -> web.Response:
    """Stop a response that is still being generated; it ends ``cancelled``."""
    response_id = _response_id(request)
    run = request.app[RUNS].get(response_id)
    stored = await _stored(request, response_id) if run is None else {}
    await no_fields(request)
    if run is None:
        if stored.get("status") in UNFINISHED:  # (read as it stands: another process generates it)
            raise _elsewhere_error(response_id, "cancel")
    else:
        # A cancel that comes after the last token, while the response's end is saved, finds it ended some other
        # way: answered as a cancel a moment later is, not as a 200 with a response that was not cancelled.
        stored = await run.cancel()
    if stored.get("status") != "cancelled":
        raise APIError(400, f"Cannot cancel a response that is {stored.get('status')}; only a response "
                            "in progress can be cancelled", code="invalid_state")
    return json_response(stored)


@routes.get("/v1/responses/{response_id}/input_items")
async def list_input_items(request: web.Request) -> web.Response:
    """The response's input items (``order`` ``desc`` by default, ``after``/``before`` ids, ``limit`` 1-100)."""
    response_id = _response_id(request)
    check_include(request)
    order, limit = read_page_query(request)
    items = await listed_input_items(request.app, await request.app[STORE].get(response_id))
    # (a long history's page is cut in a worker thread)
    return json_response(await off_loop_if_many(len(items), lambda: item_page(request, items, order, limit,
                                                                              what="input item")))


async def listed_input_items(app: web.Application, stored: StoredResponse) -> list[dict[str, Any]]:
    """What a response's ``input_items`` lists, oldest first: the items the model read before its input, then its
    input. OpenAI's: a conversation's items "are prepended to input_items" (those the response read that the
    conversation still holds, with their ids there), and a response continued by ``previous_response_id`` lists
    the responses it continues, each one's input items and output, before its own. A response of the chain that
    was deleted ends it there (what it held is no longer stored)."""
    from jan.server.dialects.conversations_store import ConversationStore
    from jan.server.dialects.responses_store import is_conversation_thread

    chain, seen = [stored], {stored.id}
    while isinstance(earlier := chain[-1].response.get("previous_response_id"), str) and earlier not in seen:
        seen.add(earlier)
        try:
            if not wire.valid_response_id(earlier):
                break
            chain.append(await app[STORE].get(earlier))
        except NotFoundError:
            break
    first, items = chain[-1], []
    if first.history and is_conversation_thread(first.thread_id):
        with contextlib.suppress(NotFoundError):  # (the conversation deleted: its items are not there to list)
            held = {item["id"]: item for item in await ConversationStore(app[STORE]).items(first.thread_id)}
            items += [held[item_id] for item_id in first.history if item_id in held]
    for entry in reversed(chain):
        items += entry.input_items
        output = entry.response.get("output")
        if entry is not stored and isinstance(output, list):
            items += [item for item in output if isinstance(item, dict) and isinstance(item.get("id"), str)]
    return items
