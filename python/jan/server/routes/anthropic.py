"""Anthropic Messages: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``; and Anthropic's
``GET /v1/models`` and ``GET /v1/models/{id}``, which share their paths with OpenAI's (``routes/models.py``
hands over a request of Anthropic's SDK, told by its ``anthropic-version`` header; ``routes/files.py`` answers
Anthropic's Files API itself, in the shapes of the dialect module).

HTTP only: the body is parsed by :mod:`jan.server.dialects.anthropic` into the typed chat
request, the chat service answers, the dialect module formats. Errors on these routes
(including the key check's 401 and unknown routes under them) leave in Anthropic's shape.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from jan.errors import ContextOverflowError, MediaError
from jan.templates.grammar import GrammarError
from jan.server.dialects import anthropic as wire
from jan.server.dialects.anthropic_threads import Turn
from jan.server.disconnect import WAIT_SHUTDOWN, raise_if_ended, unless_disconnected, unless_stopping
from jan.server.document_inputs import read_body_documents
from jan.server.dialect_errors import ANTHROPIC_SHARED_PATHS
from jan.server.errors import APIError
from jan.server.jsonio import json_response
from jan.server.keys import MEDIA_FETCHER, SERVICES
from jan.server.media_fetch import fetch_body_images
from jan.server.resolve import model_and_engine, model_extension
from jan.server.routes.docs import DIALECT_ERRORS, EXTRA_BODIES
from jan.server.route_state import THREADS, UPLOADS
from jan.server.routes.files import upload_image
from jan.server.streaming import Event, relay, started
from jan.server.validation import parse_body, query_int
from jan.services import ChatAggregator, ChatService
from jan.services.streams import DeltaStream
from jan.services.types import ChatRequest

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

# Anthropic's error shape and status on /v1/messages (threads' refusals carry error.details, which the SDK branches
# on), and on the paths it shares with OpenAI's SDK for Anthropic's: registered by jan.server.dialect_errors, so that
# an error before this module is imported (a 401, a 404) has it too.
DIALECT_ERRORS["/v1/messages"] = ("AnthropicError", {
    "type": "object", "required": ["type", "error"], "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"],
                  "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                                 "details": {"type": "object", "required": ["error_code"],
                                             "properties": {"error_code": {"type": "string"}}}}}}})


def from_anthropic_sdk(request: web.Request) -> bool:
    """Whether a request on a path both dialects serve (``/v1/models``, ``/v1/files``) is Anthropic's."""
    return wire.from_anthropic_sdk(request.headers)


#: The paths OpenAI's and Anthropic's SDKs share: each answers in the dialect of the SDK that asks.
SHARED_PATHS = ANTHROPIC_SHARED_PATHS
EXTRA_BODIES[("POST", "/v1/messages")] = wire.MessagesRequest
EXTRA_BODIES[("POST", "/v1/messages/count_tokens")] = wire.CountTokensRequest
# (THREADS, the message threads held as Jan threads: jan.server.route_state, which sets them up at start)


def _chat(request: web.Request) -> ChatService:
    return request.app[SERVICES].chat


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    """Create a message (Anthropic); ``stream: true`` sends Anthropic's named events.

    With ``mcp_servers`` (the MCP connector) on a ``thread``: the servers and their ``mcp_toolset`` configs
    (``enabled``, ``defer_loading``, pinned ``tools``) are the request's own, per turn as in Anthropic's API (sent
    with each turn that uses them; a turn without them offers none of their tools); what the conversation's messages
    chose (a ``tool_reference`` that loaded a deferred tool, an ``mcp_tool_listing`` sent back, a system message's
    ``tool_addition`` / ``tool_removal`` of a server's tools) carries to the thread's later turns, as a replay sends
    those messages again (:class:`jan.server.dialects.anthropic.McpChoices`)."""
    body = await parse_body(request, wire.MessagesRequest)
    wire.check_thinking_budget(body, request.headers.get("anthropic-beta", ""))
    await fetch_body_images(body, request.app[MEDIA_FETCHER])
    await wire.resolve_file_images(body, functools.partial(upload_image, request))  # image blocks' file sources
    await read_body_documents(body, request.app.get(UPLOADS), request.app[MEDIA_FETCHER])  # file and url sources
    # With `thread`, the conversation the server holds: a `continue` is in flight until its answer is sent.
    async with request.app[THREADS].turn(body) as turn:
        try:
            return await _answer(request, body, turn)
        except (MediaError, GrammarError, ContextOverflowError) as exc:
            raise said_of_body(exc, body, turn.chat_request) from None


def said_of_body(exc: MediaError | GrammarError | ContextOverflowError, body: wire.MessagesRequest,
                 chat_request: ChatRequest) -> Exception:
    """A failure of a Messages request as said of its body (the route's and a batch item's): media and schemas
    of the field that sent them, not of the typed message they became; a conversation too long in the words agents
    match to compact it."""
    if isinstance(exc, MediaError):
        return wire.media_error(exc, body, chat_request)
    if isinstance(exc, GrammarError):
        return wire.schema_error(exc, body, chat_request)
    return APIError(400, wire.too_long_message(exc), param="messages", code="context_length_exceeded")


async def collect_message(stream: DeltaStream, body: wire.MessagesRequest, message_id: str) -> dict:
    """The stream aggregated (what ChatService.complete does) into Anthropic's ``message``, keeping the stop
    sequence that ended it."""
    aggregator, stop = ChatAggregator(), None
    async with stream:
        async for delta in stream:
            aggregator.add(delta)
            if delta.choice == 0 and delta.finish_reason is not None:
                stop = delta.stop if delta.stop in (body.stop_sequences or ()) else None
    result = aggregator.result(stream.model or body.model or "")
    # the model's id, not an alias the body named it by: Anthropic's API echoes the model it resolved an alias to
    # ("claude-sonnet-4-5" answers "claude-sonnet-4-5-20250929"), as OpenAI's chat completions do (and jan's)
    return wire.message_from_result(result, message_id, result.model or body.model or "", stop,
                                    omit_thinking=wire.thinking_omitted(body))


async def _mcp_session(request: web.Request, body: wire._Prompt, held: Any = None) -> Any:
    """The servers of ``mcp_servers`` connected and their tools listed (:mod:`jan.services.mcp_use`, the path the
    Responses API's ``mcp`` tools take); None without servers. A server that cannot be reached is a 400.
    ``held``: a thread's MCP choices of its earlier turns (:class:`~jan.server.dialects.anthropic.McpChoices`)."""
    if not body.mcp_servers:
        return None
    from jan.core import ToolRegistry
    from jan.server.dialects import anthropic_mcp
    from jan.server.keys import MANAGER
    from jan.services import mcp_use

    uses = anthropic_mcp.server_uses(body, request.app[MEDIA_FETCHER].allowlist.allows_url, held)
    # (a client gone while the servers are reached: the handler is cancelled, and prepare closes what it opened)
    session = await mcp_use.prepare(uses, ToolRegistry(request.app[MANAGER]))
    try:
        anthropic_mcp.check_listed(session, uses)
    except BaseException:
        await session.close()
        raise
    return session


def _mcp_id(prefix: str) -> str:
    return f"mcptoolu_{secrets.token_hex(12)}"


async def _answer(request: web.Request, body: wire.MessagesRequest, turn: Turn) -> web.StreamResponse:
    await turn.read_documents()  # before the turn is answered and held: a thread keeps their text
    mcp = await _mcp_session(request, body, turn.mcp_held)
    try:
        return await _answer_with(request, body, turn, mcp)
    finally:
        if mcp is not None and not mcp.handed_over:  # (refused or failed before its rounds began: they close it)
            await mcp.close()


async def _answer_with(request: web.Request, body: wire.MessagesRequest, turn: Turn, mcp: Any) -> web.StreamResponse:
    chat_request = turn.chat_request
    if mcp is not None:  # (the servers' tools offered after the request's own; a tool_choice may name one)
        from jan.server.dialects import anthropic_mcp

        chat_request = anthropic_mcp.offer(chat_request, body, mcp)
        # (a thread holds the turn's messages and reply with its calls named as the servers' tools are offered)
        turn.inputs = chat_request.messages[len(chat_request.messages) - len(turn.inputs):] if turn.inputs else ()
        turn.mcp_names = {owner: name for name, owner in mcp.owners.items()}
    chat = _chat(request)
    message_id = wire.new_message_id()
    stop_sequences = body.stop_sequences or ()
    stream = chat.stream(chat_request)
    if not body.stream and mcp is None:
        # The stream aggregated (what ChatService.complete does), keeping the stop string that ended it;
        # cancelled (the engine's slot freed) when the client goes away first.
        async def collect() -> dict:
            return await turn.commit(await collect_message(stream, body, message_id))

        return json_response(await unless_disconnected(request, collect(), body.model))
    deltas: Any = await started(request, stream, body.model)
    if mcp is not None:
        from jan.server.dialects import anthropic_mcp
        from jan.services import mcp_use

        # the model's calls of the servers' tools run here, and it goes on with their results (mcp_use)
        deltas = anthropic_mcp.events_only(mcp_use.rounds(chat.stream, chat_request, deltas, mcp, new_id=_mcp_id))
        mcp.handed_over = True

    async def events() -> AsyncIterator[Event]:
        encoder = wire.MessageStream(message_id, stream.model or body.model or "", stop_sequences,  # (its id)
                                     omit_thinking=wire.thinking_omitted(body))
        begun = False
        try:
            async for delta in deltas:
                # (a delta with no event, thinking not shown, writes nothing that would notice a client gone or a stop)
                raise_if_ended(request)
                if not begun:  # message_start tells the prompt's size, which the first delta knows
                    begun = True
                    for event in encoder.start(getattr(delta, "prompt_tokens", None),
                                               getattr(delta, "cached_tokens", None)):
                        yield event
                for event in encoder.feed(delta):
                    yield event
        finally:
            await deltas.aclose()
        if not begun:
            for event in encoder.start():
                yield event
        for event in encoder.finish():
            yield event

    if not body.stream:  # (with MCP servers: the events folded into the message, blocks in their order)
        from jan.server.dialects import anthropic_mcp

        async def whole() -> dict:
            return await turn.commit(await anthropic_mcp.message_of_events(events()))

        return json_response(await unless_disconnected(request, whole(), body.model))
    return await relay(request, turn.stream(events()), lambda err: ("error", wire.error_body(err.status, err.message)))


@routes.post("/v1/messages/count_tokens")
async def count_tokens(request: web.Request) -> web.Response:
    """The prompt's token count as the model's chat template and vocabulary make it."""
    body = await parse_body(request, wire.CountTokensRequest)
    await fetch_body_images(body, request.app[MEDIA_FETCHER])
    await wire.resolve_file_images(body, functools.partial(upload_image, request))
    await read_body_documents(body, request.app.get(UPLOADS), request.app[MEDIA_FETCHER])
    # a thread's `continue` counts the held conversation with the new turn (jan's; the SDK sends no `thread` here)
    chat_request = await request.app[THREADS].prompt(body)
    # with mcp_servers: the servers reached and their tools counted as /v1/messages offers them (its one path)
    mcp = await _mcp_session(request, body, await request.app[THREADS].mcp_held(body) if body.mcp_servers else None)
    try:
        if mcp is not None:
            from jan.server.dialects import anthropic_mcp

            chat_request = anthropic_mcp.offer(chat_request, body, mcp)
        # (counting loads the model first where it is not loaded: told at once at a stop, as /tokenize is)
        counted = await unless_stopping(request, _chat(request).count(chat_request), WAIT_SHUTDOWN)
    except (MediaError, GrammarError) as exc:  # said of the body's field, as /v1/messages says it
        raise said_of_body(exc, body, chat_request) from None
    finally:
        if mcp is not None:
            await mcp.close()
    return json_response({"input_tokens": counted})


# -- models: called by routes/models.py for a request from Anthropic's SDK ---------------------------------
def _lifecycle(request: web.Request) -> list[str] | None:
    # the SDK writes a list as lifecycle[]=a&lifecycle[]=b; a hand-written query may say lifecycle=a
    stages = request.query.getall("lifecycle[]", []) + request.query.getall("lifecycle", [])
    for stage in stages:
        if stage not in wire.LIFECYCLES:
            raise APIError(400, f"lifecycle: must be one of {', '.join(wire.LIFECYCLES)}, not {stage!r}",
                           param="lifecycle")
    return stages or None


async def list_models(request: web.Request) -> web.Response:
    """Anthropic's model list: ``limit`` (1-1000, 20), ``after_id``/``before_id`` cursors, ``lifecycle``."""
    limit = query_int(request, "limit", wire.MODELS_DEFAULT_LIMIT, 1, wire.MODELS_MAX_LIMIT)
    query = request.query
    models = await model_extension(request).list_models()
    lifecycle = _lifecycle(request)
    windows = {m["id"]: (await model_facts(request, m)).context_window for m in models}
    return json_response(wire.model_page(models, context_windows=windows, limit=limit,
                                             after_id=query.get("after_id") or None,
                                             before_id=query.get("before_id") or None, lifecycle=lifecycle))


async def get_model(request: web.Request) -> web.Response:
    """One model as Anthropic's ``ModelInfo`` (an unknown one: Anthropic's 404)."""
    model, _ = await model_and_engine(request, request.match_info["model_id"])
    return json_response(wire.model_info(model, (await model_facts(request, model)).context_window))


async def model_facts(request: web.Request, model: dict):
    """The model's facts as ``/v1/models`` knows them (imported here: that module imports this one)."""
    from jan.server.routes.models import model_facts as facts

    return await facts(request, model)
