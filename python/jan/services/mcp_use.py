"""MCP tools a request names (OpenAI Responses' ``{"type": "mcp", ...}``, Anthropic's ``mcp_servers``), run by the
server within one answer.

No HTTP here: a dialect maps its wire shapes to :class:`McpServerUse` and the events below. For each server the
request names, :func:`prepare` connects (a client-given ``server_url``: a fresh :class:`McpServer` of the MCP
extension's, over streamable HTTP; a ``server_label`` alone: the server of that name in ``mcp.json``) and lists its
tools (:class:`McpListed`), unless an earlier answer of the conversation listed them. :func:`rounds` then drives the
generation: the model's calls of those tools are put through the run tool loop's own pieces
(:class:`~jan.services.tool_loop.ToolPolicy`, :func:`~jan.services.tool_loop.triage`,
:func:`~jan.services.tool_loop.run_calls`), their results fed back and the model goes on, or the answer stops with
:class:`McpApprovalAsked` for a call that needs the user. Every connect, listing and call is bounded; a failing
server is an error in its event, never a failed request. Closing the generator closes the sessions it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jan.core import Tool, ToolImage
from jan.services.errors import RequestError
from jan.services.tool_loop import (DEFAULT_MAX_STEPS, PendingCall, ToolEntry, ToolPolicy, _schema_problem,
                                    run_calls, triage, whole_arguments)
from jan.services.tool_images import result_parts
from jan.services.untrusted import UntrustedTextPart
from jan.services.types import (ChatDelta, ChatMessage, ChatRequest, NamedToolChoice, Part, TextPart, ToolCall,
                                ToolSpec)

log = logging.getLogger("jan.services.mcp_use")

#: Seconds a server gets to connect and list its tools; a call's bound is the tool loop's timeout.
CONNECT_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class McpServerUse:
    """One MCP server a request lets the model use."""

    server_label: str
    server_url: str | None = None  # None: the mcp.json server named ``server_label``
    headers: dict[str, str] = field(default_factory=dict)
    allowed_tools: frozenset[str] | None = None  # None: all its tools
    #: Tool names that need (``always``) or need no (``never``) approval; ``default`` for the others.
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()
    default_approval: bool = True  # OpenAI's default: every call asks
    #: Tools an earlier answer listed (``mcp_list_tools``): not listed (nor emitted) again.
    listed: tuple[dict[str, Any], ...] | None = None
    #: The request's field that names the server (what a 400 about it names).
    param: str = ""
    #: Tools the model may not call even so (Anthropic's ``mcp_toolset`` turning some of all off).
    denied_tools: frozenset[str] = frozenset()

    def allows(self, tool: str) -> bool:
        return (self.allowed_tools is None or tool in self.allowed_tools) and tool not in self.denied_tools

    def needs_approval(self, tool: str) -> bool:
        if tool in self.never:
            return False
        return True if tool in self.always else self.default_approval


@dataclass(frozen=True)
class McpListed:
    """A server's tools listed (``error`` set: it could not be reached or listed)."""

    server_label: str
    tools: tuple[dict[str, Any], ...]
    error: str | None = None


@dataclass(frozen=True)
class McpCallStarted:
    id: str
    server_label: str
    name: str
    arguments: str
    #: The model turn of the answer that made the call (its step): the calls of one turn (parallel calls) share it,
    #: so a store reads them back as the one turn the model wrote (jan.services.kept_items); ``None``: a call of a
    #: turn of its own (one a user approved, run before the answer).
    turn: int | None = None


@dataclass(frozen=True)
class McpCallDone:
    id: str
    server_label: str
    name: str
    arguments: str
    output: str | None
    error: str | None
    #: The output as the model reads it where it holds images (its text and its images, in order:
    #: :func:`jan.services.tool_images.result_parts`); ``()``: ``output`` as text. ``output`` is what the client
    #: is told (an ``mcp_call``'s ``output`` is text: an image is its note there).
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class McpApprovalAsked:
    id: str
    server_label: str
    name: str
    arguments: str


McpEvent = McpListed | McpCallStarted | McpCallDone | McpApprovalAsked


@dataclass(frozen=True)
class ApprovedCall:
    """A call an earlier answer put to the user, and their answer (``mcp_approval_response``)."""

    id: str
    server_label: str
    name: str
    arguments: str
    approve: bool
    reason: str | None = None


class _Server:
    """One used server's connection and tools, for this answer."""

    def __init__(self, use: McpServerUse):
        self.use = use
        self.tools: dict[str, Tool] = {}  # by MCP name
        self._own: Any = None  # an McpServer this answer started (closed with it)

    async def connect(self, registry: Any) -> None:
        use = self.use
        if use.server_url is None:
            from jan.services.tool_loop import _list_tools  # (the runs' listing: only the servers named start)

            prefix = f"{use.server_label}__"
            found = [t for t in await _list_tools(registry, {use.server_label})
                     if t.name.startswith(prefix) and hasattr(t, "mcp_name")]
            if not found and not await _configured(registry, use.server_label):
                # (the request's mistake, as a run's entry naming no configured server: a 400, not a failed item)
                raise RequestError(f"{use.param or 'server_label'}: no MCP server '{use.server_label}' is "
                                   "configured (mcp.json), and the tool gives no server_url",
                                   param=use.param or None, code="unknown_mcp_server")
            self.tools = {t.mcp_name: t for t in found}
            return
        from jan.extensions.mcp.config import McpServerConfig

        config = McpServerConfig(url=use.server_url, headers=dict(use.headers) or None, timeout=CALL_TIMEOUT_S)
        server = _remote_server_class()(use.server_label, config, _NO_LOG_FOLDER)
        self._own = server
        try:
            await server.ensure_started()
        except RuntimeError:
            # OpenAI's connector falls back to the older HTTP+SSE transport, whose servers refuse a streamable-HTTP
            # POST to their .../sse URL (404, 405): tried once more so
            if not (server.refused_post or "").startswith(("404", "405")):
                raise
            await server.stop()
            server.sse = True
            await server.ensure_started()
        self.tools = {t.mcp_name: t for t in server.tools}

    async def close(self) -> None:
        if self._own is not None:
            server, self._own = self._own, None
            with contextlib.suppress(Exception):
                await server.stop()


#: Where McpServer would open a stdio server's stderr log: never, for an HTTP server (none is made: a folder made
#: here, with a file per server name a request gave, was left behind for every name ever given).
_NO_LOG_FOLDER = Path(os.devnull)


def _remote_server_class() -> type:
    """The MCP extension's server, for a URL a request gives: streamable HTTP, or HTTP+SSE once ``sse`` is set."""
    from jan.core import McpServerState
    from jan.extensions.mcp.server import McpServer

    class RemoteServer(McpServer):
        sse = False

        @property
        def refused_post(self) -> str | None:
            return self._http_error

        def _failed(self, message: str) -> None:
            # a request's server, for this answer only: its failure is the answer's item, not a configured server's
            # warning pointing at GET /v1/mcp/servers (which does not list it), and a retry (the SSE fallback) does
            # not back off
            self.state, self.error = McpServerState.FAILED, message
            log.info("MCP server %s (%s) of a request: %s", self.name, self.config.url, message)

        def _check_alive(self, mcp_name: str) -> None:
            """(no probe of a server after a timed-out call: the session ends with the answer)"""

        def _transport(self, errlog: Any) -> Any:
            if not self.sse:
                return super()._transport(errlog)
            from mcp.client.sse import sse_client

            return sse_client(self.config.url, headers=dict(self.config.headers or {}), timeout=CONNECT_TIMEOUT_S)

    return RemoteServer


async def _configured(registry: Any, name: str) -> bool:
    from jan.services.tool_loop import _mcp_servers

    servers = await _mcp_servers(registry)
    return bool(servers) and name in servers


def _listed_tools(use: McpServerUse) -> dict[str, Tool]:
    """The tools an earlier answer's listing of ``use``'s server holds (``use.listed``), by MCP name, named as the
    server's own are (:func:`jan.extensions.mcp.server.tool_names`), not callable: what a prompt offers of them."""
    from jan.extensions.mcp.server import tool_names

    listed = [t for t in use.listed or () if isinstance(t, dict) and isinstance(t.get("name"), str)]
    names = tool_names(use.server_label, [t["name"] for t in listed])
    tools: dict[str, Tool] = {}
    for entry in listed:
        # (a listing is kept as it was sent: a conversation's item may hold any JSON; a description that is no
        # string was a 400 naming 'description', a field of no request, on every count of the conversation)
        schema, description = entry.get("input_schema"), entry.get("description")
        tools[entry["name"]] = _ListedTool(names[entry["name"]], description if isinstance(description, str) else "",
                                           schema if isinstance(schema, dict) else {"type": "object", "properties": {}})
    return tools


class _ListedTool(Tool):
    """A tool of an earlier listing: offered (its definition), never called (no server is connected)."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any]):
        self.name, self.description, self.parameters = name, description, parameters

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> Any:
        from jan.core import ToolResult

        return ToolResult.error("not connected: this tool was only offered, from an earlier listing")


def _listing(tool: Tool) -> dict[str, Any]:
    return {"name": tool.mcp_name, "description": tool.description or None,
            "input_schema": tool.parameters, "annotations": getattr(tool, "annotations", None)}


def jan_name(label: str, tool: str) -> str:
    from jan.extensions.mcp.server import tool_name

    return tool_name(label, tool)


def _distinct(name: str, label: str, tool: str, taken: Any) -> str:
    """``name`` made distinct from those ``taken`` by a suffix of its server's and tool's hash (stable across
    requests and listing orders, as :func:`jan.extensions.mcp.server.tool_names` makes a server's own distinct)."""
    import hashlib

    digest = hashlib.sha256(f"{label}\0{tool}".encode()).hexdigest()
    for size in (8, 16, 64):
        candidate = f"{name[:64 - size - 1]}_{digest[:size]}"
        if candidate not in taken:
            return candidate
    return candidate


@dataclass
class McpSession:
    """The servers of one answer, connected and listed (:func:`prepare`); :meth:`close` ends what it opened."""

    servers: list[_Server]
    events: list[McpEvent]
    #: Messages to add after the conversation (approved calls run: the call and its result).
    messages: list[ChatMessage] = field(default_factory=list)
    policy: ToolPolicy = field(default_factory=ToolPolicy)
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)  # jan name -> (label, MCP name)
    #: Set once :func:`rounds` owns it (closes it when the answer ends); before, whoever made it closes it.
    handed_over: bool = False

    def name_of(self, label: str, tool: str) -> str:
        """The name the model knows the server ``label``'s tool ``tool`` by (as listed: :func:`prepare`); one the
        session does not offer, its plain name, made distinct where a tool offered has it (labels ``a`` and
        ``a__b``, tools ``b__c`` and ``c``: one plain name), so a call of it never reads as the other's."""
        for name, owner in self.owners.items():
            if owner == (label, tool):
                return name
        name = jan_name(label, tool)
        return _distinct(name, label, tool, self.owners) if name in self.owners else name

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(ToolSpec(e.name, e.spec["function"].get("description"), e.spec["function"].get("parameters"))
                     for e in self.policy.entries.values())

    async def close(self) -> None:
        for server in self.servers:
            await server.close()


async def prepare(uses: list[McpServerUse], registry: Any, approvals: list[ApprovedCall] = (), *,
                  offered_only: bool = False) -> McpSession:
    """Connect to and list the servers of ``uses`` (each bounded, concurrently), run the ``approvals`` approved.
    ``offered_only``: only the tools the model is offered are wanted (a prompt counted, nothing called): a server an
    earlier answer listed (``listed``) is not reached, its listing's tools are offered as it listed them."""
    servers = [_Server(use) for use in uses]
    session = McpSession(servers, [])
    try:
        # (all of them ended before a refusal is raised: none connects after the session closed)
        results = await asyncio.gather(*(_connect(s, registry, offered_only) for s in servers),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        # A server's tool whose schema no call grammar can be made of (a $ref that does not resolve, a `false`
        # property...) failed the whole request with a 400 naming a tools[i] the client never sent: it is left out
        # (not listed, not offered) and logged, as a run leaves it out (tool_loop.resolve_policy). Each check makes
        # a grammar: on a worker thread.
        unusable = await asyncio.to_thread(lambda: {
            (id(server), mcp_name): why for server in servers for mcp_name, tool in server.tools.items()
            if server.use.allows(mcp_name)
            and (why := _schema_problem({"function": {"parameters": tool.parameters}})) is not None})
        for server, error in zip(servers, results):
            use = server.use
            for mcp_name in [n for n in server.tools if (id(server), n) in unusable]:
                log.warning("MCP server '%s': its tool '%s' is left out: its parameters schema cannot be used (%s)",
                            use.server_label, mcp_name, unusable[id(server), mcp_name])
                del server.tools[mcp_name]
            if use.listed is None or error is not None:  # (the tools allowed_tools lets the model use, as OpenAI's)
                session.events.append(McpListed(use.server_label, tuple(
                    _listing(t) for name, t in server.tools.items() if use.allows(name)), error))
            for mcp_name, tool in server.tools.items():
                if not use.allows(mcp_name):
                    continue
                # (the tool's own name: distinct among the server's, where jan_name maps a.b and a_b, or two
                # non-ASCII names, to one, and the model could call only the last of them)
                name = getattr(tool, "name", None) or jan_name(use.server_label, mcp_name)
                if name in session.owners:
                    # another server's tool has the name (labels "a__b" and "a" with tools "c" and "b__c", two long
                    # labels alike in their first characters): the model could call only one of them, silently
                    name = _distinct(name, use.server_label, mcp_name, session.owners)
                spec = {"type": "function", "function": {"name": name, "description": tool.description or "",
                                                         "parameters": tool.parameters}}
                session.policy.entries[name] = ToolEntry(name, spec, tool, not use.needs_approval(mcp_name))
                session.owners[name] = (use.server_label, mcp_name)
        session.policy.timeout = CALL_TIMEOUT_S
        await _run_approved(session, approvals)
    except BaseException:
        await session.close()
        raise
    return session


async def _run_approved(session: McpSession, approvals: Sequence[ApprovedCall]) -> None:
    """Run the calls of ``approvals`` (a denied one is told so), each a turn of its own before the answer. A call of
    a tool the session does not offer (no longer listed, not allowed, a server not in the request) is an error
    result the model reads, never run: its plain name can be another server's tool's (labels ``a`` and ``a__b``,
    tools ``b__c`` and ``c``), which ran in its place."""
    for approval in approvals:
        name = session.name_of(approval.server_label, approval.name)
        call = PendingCall(approval.id, name, approval.arguments)
        if approval.approve and (approval.server_label, approval.name) not in session.owners.values():
            done = McpCallDone(approval.id, approval.server_label, approval.name, approval.arguments, None,
                               f"not run: the MCP server '{approval.server_label}' offers no tool "
                               f"'{approval.name}' (not listed, or not allowed)")
        else:
            done = await _run(session, call, approved=approval.approve, reason=approval.reason, by="user")
        session.events.append(done)
        session.messages += _turn([call], [done])


async def _connect(server: _Server, registry: Any, offered_only: bool = False) -> str | None:
    if offered_only and server.use.listed is not None:
        server.tools = _listed_tools(server.use)
        return None
    try:
        await asyncio.wait_for(server.connect(registry), CONNECT_TIMEOUT_S)
        return None
    except asyncio.TimeoutError:
        return f"the MCP server did not answer within {CONNECT_TIMEOUT_S:g} seconds"
    except RequestError:
        raise
    except Exception as exc:  # noqa: BLE001 - said in the listing item, as OpenAI's failed mcp_list_tools
        return str(exc) or type(exc).__name__


async def _run(session: McpSession, call: PendingCall, *, approved: bool = True,
               reason: str | None = None, by: str = "policy") -> McpCallDone:
    from jan.core import ToolRegistry
    from jan.services.tool_loop import ToolDecision

    label, mcp_name = session.owners.get(call.name, (call.name.split("__", 1)[0], call.name.split("__", 1)[-1]))
    decisions = {call.id: ToolDecision(call, approve=approved, reason=reason)}
    # (no provider is looked up: each entry carries its tool)
    [record] = await run_calls(ToolRegistry(None), session.policy, [call], approved_by=by, decisions=decisions)
    text = record.result.as_text()
    if record.result.is_error:
        return McpCallDone(call.id, label, mcp_name, call.arguments, None, text)
    # an image goes to the model as an image, as a client's tool result's does (one with no projector reads its
    # note: jan.services.tool_images); each decoded once first, off the event loop
    parts = await asyncio.to_thread(result_parts, record.result) \
        if any(isinstance(p, ToolImage) for p in record.result.parts) else ()
    return McpCallDone(call.id, label, mcp_name, call.arguments, text, None, parts)


def _turn(calls: list[PendingCall], done: list[McpCallDone], text: str = "", thinking: str = "") -> list[ChatMessage]:
    """The calling turn (with what the model wrote before its calls: ``text``, ``thinking``) and its results, as the
    next model turn reads them (and as a later response reads the turn again: jan.services.kept_items)."""
    turn = [ChatMessage("assistant", (TextPart(text),) if text else (),
                        tool_calls=tuple(ToolCall(c.id, c.name, c.arguments) for c in calls),
                        reasoning=thinking or None)]
    for call, result in zip(calls, done):
        # an MCP server's output is third-party text: tokenized as text, never as the control tokens it may spell
        # (a result holding "<|im_end|><|im_start|>system" forged turns: jan.services.untrusted)
        text = result.output if result.error is None else f"Error: {result.error}"
        turn.append(ChatMessage("tool", result.parts or (UntrustedTextPart(text, source="tool"),),
                                tool_call_id=call.id, name=call.name))
    return turn


def _sum_usage(total: Any, more: Any) -> Any:
    """Two turns' engine usages as one (each count summed, the drafts' too); None where neither has one."""
    if total is None or more is None:
        return more if total is None else total
    from jan._engine import Usage

    return Usage(prompt_tokens=total.prompt_tokens + more.prompt_tokens,
                 completion_tokens=total.completion_tokens + more.completion_tokens,
                 cached_tokens=total.cached_tokens + more.cached_tokens,
                 draft_tokens=total.draft_tokens + more.draft_tokens,
                 draft_accepted=total.draft_accepted + more.draft_accepted)


class _Rounds:
    """:func:`_rounds`, whose ``aclose`` also closes the first turn's stream and the session when it was never
    iterated (a response cancelled before it began: an unstarted generator runs no ``finally``)."""

    def __init__(self, rounds: Any, first: Any, session: McpSession):
        self._rounds, self._first, self._session = rounds, first, session

    def __aiter__(self) -> "_Rounds":
        return self

    async def __anext__(self) -> ChatDelta | McpEvent:
        return await self._rounds.__anext__()

    async def aclose(self) -> None:
        try:
            await self._rounds.aclose()
        finally:
            with contextlib.suppress(Exception):
                await self._first.aclose()
            await self._session.close()


def rounds(stream: Callable[[ChatRequest], AsyncIterator[ChatDelta]], request: ChatRequest,
           first: AsyncIterator[ChatDelta], session: McpSession, *,
           new_id: Callable[[str], str], max_steps: int = DEFAULT_MAX_STEPS) -> AsyncIterator[ChatDelta | McpEvent]:
    """:func:`_rounds`, closed whole (its streams, the session) by ``aclose``."""
    return _Rounds(_rounds(stream, request, first, session, new_id=new_id, max_steps=max_steps), first, session)


async def _rounds(stream: Callable[[ChatRequest], AsyncIterator[ChatDelta]], request: ChatRequest,
                  first: AsyncIterator[ChatDelta], session: McpSession, *,
                  new_id: Callable[[str], str], max_steps: int = DEFAULT_MAX_STEPS
                  ) -> AsyncIterator[ChatDelta | McpEvent]:
    """The answer's deltas (``first``: the first model turn's, already started on ``request``) and MCP events: the
    session's events first, then each turn's deltas; a turn that calls the session's tools runs them (or asks),
    and the next turn (``stream``) reads the results. The usage comes last, summed over the turns."""
    usage, reasoning_tokens = None, 0
    deltas: AsyncIterator[ChatDelta] | None = first
    try:
        for event in session.events:
            yield event
        messages = list(request.messages)
        offered = {spec.name for spec in request.tools or ()}
        # (the longest label first: labels "a" and "a__b" both begin "a__b__c")
        labels = sorted({label for label, _ in session.owners.values()}
                        | {s.use.server_label for s in session.servers if isinstance(s, _Server)}, key=len, reverse=True)

        def owner(name: str) -> tuple[str, str] | None:
            """The server and MCP name of a call of the session's: a tool it offers, or one named as a tool of one of
            its servers that none offers (not listed, not allowed, made up), which the model reads an error result
            of; ``None`` for any other (the client's own tools)."""
            if name in session.owners:
                return session.owners[name]
            if not name or name in offered:
                return None
            for label in labels:
                if name.startswith(label + "__") and len(name) > len(label) + 2:
                    return label, name[len(label) + 2:]
            return None

        for step in range(max_steps):
            assert deltas is not None
            calls: dict[int, list[str]] = {}  # index -> [id, name, arguments] of the session's tools' calls
            text, thinking = [], []  # what the model wrote this turn: the next turn reads it with its calls
            finish = None
            client_calls = False  # the turn called the client's own tools too: it answers them, the turn ends here
            try:
                async for delta in deltas:
                    if delta.usage is not None:
                        # every turn's thinking counts, the turns that ended in the session's tool calls too
                        usage = _sum_usage(usage, delta.usage)
                        reasoning_tokens += delta.reasoning_tokens
                        continue
                    if delta.choice != 0:
                        yield delta
                        continue
                    text.append(delta.content or "")
                    thinking.append(delta.reasoning or "")
                    theirs = []
                    for piece in delta.tool_calls:
                        if piece.index in calls or (piece.name and owner(piece.name) is not None):
                            held = calls.setdefault(piece.index, [piece.id or new_id("mcp"), piece.name or "", ""])
                            held[2] += piece.arguments
                        else:
                            theirs.append(piece)
                            client_calls = True
                    if delta.finish_reason is not None:
                        finish = delta.finish_reason
                    if calls and delta.finish_reason == "tool_calls" and not client_calls:
                        delta = dataclasses.replace(delta, finish_reason=None)
                    if delta.tool_calls and len(theirs) != len(delta.tool_calls):
                        delta = dataclasses.replace(delta, tool_calls=tuple(theirs))
                    if delta.content or delta.reasoning or delta.tool_calls or delta.finish_reason \
                            or delta.logprobs:
                        yield delta
            finally:
                with contextlib.suppress(Exception):
                    await deltas.aclose()
                deltas = None
            # a call whose arguments the token limit cut is not what the model meant to pass: never run (as a
            # run's: tool_loop.whole_arguments); one whose arguments are whole counts, its closing markup cut or not
            for call_id, name, arguments in [c for c in calls.values() if not whole_arguments(c[2])]:
                label, mcp_name = owner(name) or ("", name)
                yield McpCallStarted(call_id, label, mcp_name, arguments, step)
                yield McpCallDone(call_id, label, mcp_name, arguments, None,
                                  "not run: the call's arguments were cut off (the token limit ended the turn)")
            pending = [PendingCall(i, n, a) for i, n, a in calls.values() if whole_arguments(a)]
            if not pending or finish not in ("tool_calls", "stop", "length"):
                break
            if step == max_steps - 1:  # (told, not dropped: the model called past the rounds an answer may take)
                for call in pending:
                    label, mcp_name = owner(call.name) or ("", call.name)
                    yield McpCallStarted(call.id, label, mcp_name, call.arguments, step)
                    yield McpCallDone(call.id, label, mcp_name, call.arguments, None,
                                      f"not run: the response took its {max_steps} model turns")
                yield ChatDelta(finish_reason="stop")
                break
            # a call of a tool no server offers (named as one of theirs) runs nothing: an error result the model
            # reads, as a run's call of a tool it may not use (never asked about, never a crash)
            unknown = [c for c in pending if c.name not in session.policy.entries]
            auto, ask = triage(session.policy, [c for c in pending if c.name in session.policy.entries])
            auto = [c for c in pending if c in auto or c in unknown]  # (in the order the model wrote them)
            done = []
            # the turn's calls all start before any result (as the model wrote them: one turn, then the results
            # the next turn reads), so that an answer's blocks (Anthropic's mcp_tool_use, then each mcp_tool_result)
            # read back as that one turn, as the live loop's next turn reads it (_turn)
            for call in auto:
                label, mcp_name = owner(call.name) or ("", call.name)
                yield McpCallStarted(call.id, label, mcp_name, call.arguments, step)
            for call in auto:
                if call in unknown:
                    label, mcp_name = owner(call.name) or ("", call.name)
                    result = McpCallDone(call.id, label, mcp_name, call.arguments, None,
                                         f"not run: the MCP server '{label}' offers no tool '{mcp_name}'")
                else:
                    result = await _run(session, call)
                done.append(result)
                yield result
            for call in ask:
                label, mcp_name = session.owners[call.name]
                yield McpApprovalAsked(new_id("mcpr"), label, mcp_name, call.arguments)
            if ask or not auto or client_calls:
                if not client_calls:  # (else the turn's own tool_calls finish went out already)
                    yield ChatDelta(finish_reason="stop")
                break
            messages += _turn(auto, done, "".join(text), "".join(thinking))
            # later turns choose for themselves (a forced first call is not forced again), as a run's
            request = dataclasses.replace(request, messages=tuple(messages), tool_choice="auto")
            deltas = stream(request).__aiter__()
    finally:
        if deltas is not None:
            with contextlib.suppress(Exception):
                await deltas.aclose()
        await session.close()
    if usage is not None:
        yield ChatDelta(choice=-1, usage=usage, reasoning_tokens=reasoning_tokens)


def forced(request: ChatRequest, session: McpSession, label: str, tool: str) -> ChatRequest:
    """``request`` whose first turn must call ``tool`` of the server ``label`` (a ``tool_choice`` naming it)."""
    return dataclasses.replace(request, tool_choice=NamedToolChoice(session.name_of(label, tool)))
