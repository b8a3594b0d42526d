"""One configured MCP server: started lazily, watched, restarted with backoff after a crash, stopped on unload.

The SDK's ``Client`` is an async context manager whose task group must be
entered and left by the same task, so each server has an *owner task* that
holds the connection open until told to stop (or until the connection
breaks); calls from any other task go through the connected client.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

from typing_extensions import Self

from jan.core import McpServerState, McpServerStatus, Tool, ToolImage, ToolJson, ToolResult, ToolText
from jan.image_types import b64decode

from . import lenient
from .config import McpServerConfig

log = logging.getLogger("jan.extensions.mcp")

#: Seconds a server may take to start and answer its first listings.
START_TIMEOUT = 30.0
#: Seconds the owner task gets to close a connection (and stop the process) before it is cancelled.
STOP_TIMEOUT = 5.0
#: Backoff after consecutive failures: BACKOFF_BASE * 2**(n-1), at most BACKOFF_MAX seconds.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
#: Items kept from a server's listings (a server cannot flood jan with millions of tools).
MAX_LISTED = 500
#: Seconds a server gets to answer a listing after a call of it timed out, before it is taken for wedged.
PROBE_TIMEOUT = 10.0


def tool_name(server: str, tool: str) -> str:
    """The name jan gives an MCP tool: ``<server>__<tool>``, cut to OpenAI's 64-character function-name rule."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    return f"{server}__{clean}"[:64]


def tool_names(server: str, tools: list[str]) -> dict[str, str]:
    """The names jan gives a server's tools (by MCP name), each one distinct.

    :func:`tool_name` maps many MCP names to one (``a.b`` and ``a_b``, ``検索`` and ``取得``, two long names alike in
    their first 64 characters): the registry keeps one tool per name, so the others were hidden from every model,
    silently. A name that had to be changed to fit, and meets another, gets a suffix from its own MCP name's hash
    instead: stable across restarts and listing orders, and the tool whose name needed no change keeps it."""
    import hashlib

    plain = {tool: tool_name(server, tool) for tool in tools}
    taken: dict[str, int] = {}
    for name in plain.values():
        taken[name] = taken.get(name, 0) + 1
    out = {}
    for tool, name in plain.items():
        if taken[name] > 1 and name != f"{server}__{tool}":
            digest = hashlib.sha256(tool.encode("utf-8")).hexdigest()[:8]
            name = f"{name[:64 - 9]}_{digest}"
        out[tool] = name
    return out


#: Starts a stdio server so that it dies with jan (Linux): see the script.
ORPHAN_GUARD = Path(__file__).with_name("_orphan_guard.py")


def guarded_command(command: str, args: list[str], env: dict[str, str] | None,
                    cwd: str | None) -> tuple[str, list[str]]:
    """The command line that starts a stdio server: on Linux through :data:`ORPHAN_GUARD`, which has the kernel
    kill the server when jan dies however it dies (``PR_SET_PDEATHSIG``; the mcp SDK takes no spawn hook to set it
    on the child itself), then becomes the server. Elsewhere the command as it is.

    A command that is not there is the start's ``FileNotFoundError`` here, as a direct spawn would raise it: once
    the guard runs, the failure would only be a connection closed."""
    if cwd is not None:
        # the folder the entry starts in: told as that (the spawn said "No such file or directory" of the program,
        # or nothing, a path the user can see there); checked at each start, as the folder may be made later
        from jan.local_files import folder_problem

        problem = folder_problem(cwd)
        if problem:
            raise NotADirectoryError(errno.ENOTDIR, f"its 'cwd' is no folder to start in ({problem})", cwd)
    if not sys.platform.startswith("linux"):
        return command, args
    import shutil

    from mcp.client.stdio import get_default_environment

    path = (get_default_environment() | (env or {})).get("PATH")
    found = command if os.sep in command else shutil.which(command, path=path)
    if os.sep in command:
        target = Path(cwd or ".", command) if not os.path.isabs(command) else Path(command)
        # What is there, told as it is: "no such file" for a file the user can see sends them looking for a typo
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder, not a program", command)
        if target.is_file() and not os.access(target, os.X_OK):
            raise PermissionError(errno.EACCES, "not executable (no execute permission: chmod +x it, or give its "
                                                "interpreter as 'command' and it in 'args')", command)
        if not target.is_file():
            found = None
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    return sys.executable, ["-I", str(ORPHAN_GUARD), str(os.getpid()), command, *args]


def _connection_lost(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    import anyio

    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream,
                            ConnectionError, EOFError))


class _WatchedRead:
    """A transport's read stream (the SDK's ``ReadStream``) that tells when it ends.

    A stdio server that exits between calls (one job per process, a crash while idle) ends its stdout, but nothing
    is waiting on it then: the SDK only fails the requests in flight, so the next call was sent to the dead server
    and failed ("stopped while running") though jan could have started it again first. Telling the end lets the
    owner close the connection at once, and the next use restarts the server."""

    def __init__(self, stream: Any, on_end: Any):
        self._stream = stream
        self._on_end = on_end

    async def receive(self) -> Any:
        import anyio

        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # the SDK reads optional extras (``last_context``) by getattr
        return getattr(self._stream, name)


class _WatchedTransport:
    """A transport (the SDK's async context manager of ``(read, write)`` streams) whose read stream is watched."""

    def __init__(self, transport: Any, on_end: Any):
        self._transport = transport
        self._on_end = on_end

    async def __aenter__(self) -> Any:
        read, write = await self._transport.__aenter__()
        return _WatchedRead(read, self._on_end), write

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self._transport.__aexit__(*exc_info)


#: Lines a server wrote to stdout that were no JSON-RPC: told once per start at warning level, then counted.
_JUNK_TOLD = 1
#: The SDK logs each such line as an error with a traceback that names no server; jan tells them by server instead.
_SDK_PARSE_ERROR = "Failed to parse JSONRPC message from server"


class _QuietParseErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _SDK_PARSE_ERROR


logging.getLogger("mcp.client.stdio").addFilter(_QuietParseErrors())

#: What the SDK's streamable HTTP client logs with a traceback (``logger.exception``) when a server answers with
#: something that is no JSON-RPC: the server's fault, not jan's, and told again in the failed start or call.
_SDK_HTTP_PARSE_ERRORS = ("Error parsing JSON response", "Error parsing SSE message")


class _OneLineParseErrors(logging.Filter):
    """Those records as one warning line holding the exception's text, without its traceback (a server answering
    HTML or junk filled jan's log with tracebacks through the SDK, as if jan had failed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() in _SDK_HTTP_PARSE_ERRORS and record.exc_info:
            exc = record.exc_info[1]
            why = str(exc).splitlines()[0] if exc is not None and str(exc) else type(exc).__name__
            record.msg, record.args = f"MCP server answered no JSON-RPC: {record.getMessage()}: {why}", ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("mcp.client.streamable_http").addFilter(_OneLineParseErrors())


def _timed_out(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import REQUEST_TIMEOUT

    return isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT


def _result(call_result: Any) -> ToolResult:
    """An MCP tool's result (:class:`lenient.CallResult`: content blocks, structured content, error flag) as jan's
    :class:`ToolResult`."""
    parts: list[Any] = []
    for block in call_result.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(ToolText(block.text))
        elif kind == "image":
            try:
                # (strict, as every dialect reads base64: the lenient default dropped the characters that are not
                # base64 and made an "image" of what was left)
                parts.append(ToolImage(b64decode(block.data), block.mime_type))
            except (ValueError, TypeError):
                parts.append(ToolText(f"[undecodable image {getattr(block, 'mime_type', '')}]"))
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(ToolText(text if text is not None else f"[resource {resource.uri}]"))
        elif kind == "resource_link":
            parts.append(ToolText(f"[resource {block.uri}]"))
        else:
            parts.append(ToolText(f"[{kind} content]"))
    structured = getattr(call_result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(ToolJson(structured))
    return ToolResult(tuple(parts), is_error=bool(call_result.is_error))


class McpTool(Tool):
    """A tool of an MCP server, called through its :class:`McpServer`."""

    def __init__(self, server: McpServer, mcp_name: str, description: str, parameters: dict[str, Any],
                 name: str | None = None):
        self.server = server
        self.mcp_name = mcp_name
        self.name = name or tool_name(server.name, mcp_name)
        self.description = description
        self.parameters = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        self.source = f"mcp:{server.name}"

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        return await self.server.call_tool(self.mcp_name, arguments, timeout=timeout)


class McpServer:
    """A configured server and its connection (if started)."""

    def __init__(self, name: str, config: McpServerConfig, log_folder: Path):
        self.name = name
        self.config = config
        self.log_folder = log_folder
        self.state = McpServerState.DISABLED if config.disabled else McpServerState.STOPPED
        self.error: str | None = None
        self.restarts = 0
        self._failures = 0
        self._next_start = 0.0
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lost: asyncio.Event | None = None
        self._start_lock = asyncio.Lock()
        #: The owner task's cancel scope: how a stop cuts off a handshake (or a close) that does not end by itself.
        self._scope: Any = None
        self._ready: asyncio.Future[Any] | None = None
        #: A start begun for a listing (:meth:`start_soon`): listings wait on it with a bound, never cancel it.
        self._start_task: asyncio.Task[Any] | None = None
        self._start_began = 0.0  # (monotonic) when that task began
        self._ever_ran = False
        #: The last failure logged (:meth:`_failed`); None once the server runs.
        self._told: str | None = None
        #: A re-listing asked for by the server (``notifications/*/list_changed``), and whether another was asked
        #: for while it ran.
        self._relisting: asyncio.Task[None] | None = None
        self._relist_again = False
        self._junk = 0  # lines of stdout that were no JSON-RPC, this start
        self._http_error: str | None = None  # an HTTP server's last refusal (:meth:`_saw_response`)
        #: The probe after a call timed out or was cut off (:meth:`_check_alive`).
        self._probing: asyncio.Task[None] | None = None
        self.tools: list[McpTool] = []
        self.prompts: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        #: Items of its last listings left out as invalid MCP (a tool without a name, a schema that is no object).
        self.rejected: list[lenient.Rejected] = []

    # -- status -------------------------------------------------------------------
    def status(self) -> McpServerStatus:
        tools = tuple({"name": t.mcp_name, "tool_name": t.name, "description": t.description,
                       "input_schema": t.parameters} for t in self.tools)
        return McpServerStatus(name=self.name, transport=self.config.transport, target=self.config.target,
                               enabled=not self.config.disabled, state=self.state, error=self.error,
                               restarts=self.restarts, tools=tools, prompts=tuple(self.prompts),
                               resources=tuple(self.resources),
                               rejected=tuple(r.to_dict() for r in self.rejected),
                               extra={"timeout": self.config.timeout})

    @property
    def running(self) -> bool:
        return self._client is not None and self._lost is not None and not self._lost.is_set()

    # -- lifecycle ----------------------------------------------------------------
    def _transport(self, errlog: IO[str] | None) -> Any:
        """The SDK's transport to the server: a stdio server's stderr goes to ``errlog`` (None for an HTTP one)."""
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self.config.command:
            command, args = guarded_command(self.config.command, list(self.config.args), self.config.env,
                                            self.config.cwd)
            params = StdioServerParameters(command=command, args=args, env=self.config.env, cwd=self.config.cwd,
                                           encoding_error_handler="replace")
            return stdio_client(params, errlog=errlog)
        return self._http_transport(create_mcp_http_client, streamable_http_client)

    @contextlib.asynccontextmanager
    async def _http_transport(self, create_client: Any, connect: Any) -> Any:
        http = create_client(headers=dict(self.config.headers or {}))
        http.event_hooks["response"].append(self._saw_response)
        self._http_error = None
        # The SDK closes only an HTTP client it made itself: this one is closed here, or each start (a restart after
        # every failure) left its connection pool open.
        async with http, connect(self.config.url, http_client=http) as streams:
            yield streams

    async def _saw_response(self, response: Any) -> None:
        """The status of the server's last answer to a message (a POST): the SDK's error for one it refused says
        only "Server returned an error response", never which status (401: the headers lack a token...)."""
        if response.request.method == "POST":
            self._http_error = f"{response.status_code} {response.reason_phrase}".strip() \
                if response.status_code >= 400 else None

    def _http_said(self) -> str:
        """What an HTTP server's last refusal was, for an error (empty when it refused nothing)."""
        if self.config.command or not self._http_error:
            return ""
        hint = ""
        if self._http_error.startswith(("401", "403")):
            hint = ": check the credentials in its mcp.json entry's \"headers\""
        elif self._http_error.startswith(("404", "405")):
            hint = (": is the URL a streamable-HTTP MCP endpoint? jan does not speak the older HTTP+SSE transport, "
                    "whose servers take messages elsewhere (.../messages) than the .../sse URL they are known by")
        return f" (HTTP {self._http_error}{hint})"

    async def ensure_started(self, *, backoff: bool = True) -> Any:
        """The connected client, starting the server if needed; raises ``RuntimeError`` saying why it cannot run.

        ``backoff`` False starts a server that failed lately at once, without waiting out its backoff: a person
        asking for its state (``GET /v1/mcp/servers/{name}``) retries by hand, maybe after mending it; the backoff
        is for the automatic retries of tool calls, which would otherwise start a broken server at each call."""
        if self.config.disabled:
            raise RuntimeError(f"MCP server '{self.name}' is disabled")
        if self.running:
            return self._client
        async with self._start_lock:
            if self.running:
                return self._client
            await self._shutdown()  # a lost connection: let its owner finish
            wait = self._next_start - time.monotonic()
            if wait > 0 and backoff:  # crashed recently: back off (bounded, so callers are never stuck long)
                await asyncio.sleep(min(wait, BACKOFF_MAX))
            if self._ever_ran:
                self.restarts += 1
            self.state, self.error = McpServerState.STARTING, None
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            # A start that timed out stops waiting before its owner fails it: retrieve that failure (told by
            # _failed already), or asyncio logs "Future exception was never retrieved" when it is collected.
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._ready, self._scope = ready, None
            self._stop, self._lost = asyncio.Event(), asyncio.Event()
            self._owner = asyncio.create_task(self._own(ready, self._stop, self._lost), name=f"mcp:{self.name}")
            try:
                return await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT)
            except asyncio.TimeoutError:
                self._failed(f"did not start within {START_TIMEOUT:g} seconds")
                await self._shutdown()
                raise RuntimeError(f"MCP server '{self.name}' {self.error}") from None
            except Exception as exc:
                raise RuntimeError(f"MCP server '{self.name}' could not start: {self.error or exc}") from None

    def start_soon(self) -> asyncio.Task[Any]:
        """A task starting the server (the one already under way, if any).

        A listing waits on it for a bounded time and then goes on without this server's tools; the start itself
        goes on (to its own START_TIMEOUT). Cancelling a caller of :meth:`ensure_started` instead would leave its
        owner task half-started, and the next use would tear that start down and begin again."""
        if self._start_task is None or self._start_task.done():
            self._start_began = time.monotonic()
            self._start_task = asyncio.ensure_future(self.ensure_started())
            # its failure is the server's state (and logged once by _failed): retrieve it so asyncio does not warn
            self._start_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._start_task

    def listing_wait(self, bound: float) -> float:
        """Seconds a listing may still wait for the start under way (:meth:`start_soon`): ``bound`` counted from
        when that start began, so listings arriving while a server hangs do not each wait the whole bound again.
        None at all for a server that failed before (a hung or crashed one being retried): its start goes on in
        the background, and the tools it listed before are offered meanwhile."""
        if self._failures:
            return 0.0
        return max(0.0, self._start_began + bound - time.monotonic())

    def _failed(self, message: str) -> None:
        self.state, self.error = McpServerState.FAILED, message
        self._failures += 1
        self._next_start = time.monotonic() + min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self._failures - 1))
        # Once per kind of failure: a server that cannot start fails the same way at each use (every run start
        # lists tools), and a line per try would bury the log. A new failure, or one after it ran, is told again.
        if message != self._told:
            self._told = message
            log.warning("MCP server %s: %s (retried on its next use; GET /v1/mcp/servers/%s tells its state)",
                        self.name, message, self.name)
        else:
            log.debug("MCP server %s: %s (again)", self.name, message)

    @property
    def backing_off(self) -> bool:
        """Whether the server failed lately and its backoff has not run out: a listing leaves it be."""
        return self.state == McpServerState.FAILED and time.monotonic() < self._next_start

    async def _own(self, ready: asyncio.Future[Any], stop: asyncio.Event, lost: asyncio.Event) -> None:
        # What fails before the connection (the SDK that cannot be imported, a log folder that cannot be written)
        # fails this start as any other failure does, said: it ended this task unseen, and the start waited out
        # its whole timeout to say it "did not start within" it.
        errlog_path = self.log_folder / f"{self.name}.log"
        try:
            import anyio
            from mcp import Client
        except (Exception, SystemExit) as exc:  # (a SystemExit raised in this task would end jan's loop)
            self._not_started(ready, stop, lost, f"the MCP client could not be loaded ({type(exc).__name__}: {exc})")
            return
        # Only a process (a stdio server) has a stderr: an HTTP server's file stayed empty, and a request's own
        # servers (jan.services.mcp_use) left one such file for every name a client ever gave one.
        errlog: IO[str] | None = None
        if self.config.command:
            try:
                self.log_folder.mkdir(parents=True, exist_ok=True)
                # The server's stderr goes to a file: a chatty (or flooding) server can't fill a pipe jan must drain.
                errlog = open(errlog_path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                self._not_started(ready, stop, lost, f"its log file {errlog_path} could not be opened: {exc}")
                return
        # Where this start's stderr begins: a server that dies says why there (a traceback, "command not
        # found"), and the SDK only sees the pipe close ("Connection closed"), so a failure quotes its last line.
        said_from = errlog.tell() if errlog is not None else 0
        try:
            # Stopping cancels this scope (never the task): anyio cancellation lets the SDK finish its shielded
            # cleanup, which ends the process; a native task.cancel() can cut that short and leave it running.
            with anyio.CancelScope() as scope:
                self._scope = scope
                self._junk = 0
                transport = _WatchedTransport(self._transport(errlog), lost.set)
                async with Client(transport, read_timeout_seconds=START_TIMEOUT,
                                  message_handler=self._on_message) as client:
                    await self._refresh(client)
                    self._client = client
                    self._ever_ran = True
                    self.state, self.error, self._told = McpServerState.RUNNING, None, None
                    ready.set_result(client)
                    stopper = asyncio.ensure_future(stop.wait())
                    breaker = asyncio.ensure_future(lost.wait())
                    try:
                        await asyncio.wait([stopper, breaker], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopper.cancel()
                        breaker.cancel()
            if scope.cancelled_caught and not ready.done():
                ready.set_exception(RuntimeError("stopped while starting"))
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(RuntimeError("stopped while starting"))
            raise
        except BaseException as exc:  # noqa: BLE001 - an exception group from the SDK's task group, an OSError, ...
            message = _describe(exc) + self._http_said()
            if self.config.command and not isinstance(_innermost(exc), OSError):  # an OSError: it never ran
                message += _stderr_said(errlog_path, said_from)
            if not stop.is_set():
                self._failed(message)
            if not ready.done():
                ready.set_exception(RuntimeError(message))
        finally:
            self._client = None
            lost.set()
            for task in (self._relisting, self._probing):
                if task is not None:
                    task.cancel()
            if errlog is not None:
                errlog.close()
            if stop.is_set() and self.state != McpServerState.FAILED:
                self.state = McpServerState.DISABLED if self.config.disabled else McpServerState.STOPPED
            elif self.state == McpServerState.RUNNING:  # the connection broke
                self._failed("the connection to the server was lost"
                             + (_stderr_said(errlog_path, said_from) if self.config.command else ""))

    def _not_started(self, ready: asyncio.Future[Any], stop: asyncio.Event, lost: asyncio.Event, message: str) -> None:
        """A start that failed before it connected: failed (unless it was stopped), its waiter told why."""
        if not stop.is_set():
            self._failed(message)
        if not ready.done():
            ready.set_exception(RuntimeError(message))
        lost.set()

    async def _on_message(self, message: Any) -> None:
        """What the server sends unasked: ``list_changed`` notifications re-list (the tools a model is offered
        follow the server's), a line of stdout that is no JSON-RPC is told naming the server."""
        import mcp_types as types

        if isinstance(message, Exception):
            self._junk += 1
            level = logging.WARNING if self._junk <= _JUNK_TOLD else logging.DEBUG
            errors = getattr(message, "errors", None)  # a pydantic ValidationError holds the line it could not read
            line = errors()[0].get("input") if callable(errors) and errors() else None
            log.log(level, "MCP server %s wrote to stdout what is no JSON-RPC message (left out; a server must log "
                    "to stderr%s): %s", self.name, ", told once per start" if self._junk == _JUNK_TOLD else "",
                    repr(line)[:200] if isinstance(line, str) else _describe(message))
            return
        if isinstance(message, (types.ToolListChangedNotification, types.PromptListChangedNotification,
                                types.ResourceListChangedNotification)):
            self._relist()

    def _relist(self) -> None:
        """Re-read the server's listings in the background (never in the SDK's handler, which holds its reader);
        notifications arriving meanwhile make one more re-listing, not one each."""
        if self._relisting is not None and not self._relisting.done():
            self._relist_again = True
            return

        async def relist() -> None:
            while True:
                self._relist_again = False
                client = self._client
                if client is None:  # the connection ended: the next start lists afresh
                    return
                try:
                    await self._refresh(client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the last listing stays; the server is told by name
                    log.warning("MCP server %s: its listings changed but could not be read again: %s", self.name,
                                _describe(exc))
                if not self._relist_again:
                    return

        self._relisting = asyncio.ensure_future(relist())

    async def _refresh(self, client: Any) -> None:
        # Item by item (lenient.list_items): one malformed tool, prompt or resource is left out and told in the
        # status (``rejected``), never the server's whole listing.
        tools, rejected = await lenient.list_items(client, "tool", limit=MAX_LISTED)
        kept = lenient.absorb_tools(client, tools)
        names = {t.name for t in kept}
        rejected += [lenient.Rejected("tool", i, t.name, "invalid x-mcp-header annotations in its inputSchema")
                     for i, t in enumerate(tools) if t.name not in names]
        # A name listed twice names one tool to the server (MCP says names are unique): the first is kept.
        unique: dict[str, Any] = {}
        places = [i for i, t in enumerate(tools) if t.name in names]  # each kept tool's place in the listing
        for place, t in zip(places, kept):
            if t.name in unique:
                rejected.append(lenient.Rejected("tool", place, t.name, "a second tool of the same name"))
            else:
                unique[t.name] = t
        jan_names = tool_names(self.name, list(unique))
        listed = [McpTool(self, t.name, t.description or "", t.input_schema, jan_names[t.name])
                  for t in unique.values()]
        caps = client.server_capabilities
        # (kept apart until all is read: a re-listing while the server runs never shows half of one)
        prompts_now, resources_now = [], []
        if getattr(caps, "prompts", None) is not None:
            try:
                prompts, bad = await lenient.list_items(client, "prompt", limit=MAX_LISTED)
                prompts_now = [{"name": p.name, "description": p.description or "",
                                "arguments": [a.name for a in (p.arguments or [])]} for p in prompts]
                rejected += bad
            except Exception as exc:  # noqa: BLE001 - prompts are for show: the tools still run without them
                log.info("MCP server %s: its prompts could not be listed: %s", self.name, _describe(exc))
        if getattr(caps, "resources", None) is not None:
            try:
                resources, bad = await lenient.list_items(client, "resource", limit=MAX_LISTED)
                resources_now = [{"uri": str(r.uri), "name": r.name, "description": r.description or "",
                                  "mime_type": r.mime_type} for r in resources]
                rejected += bad
            except Exception as exc:  # noqa: BLE001 - as prompts
                log.info("MCP server %s: its resources could not be listed: %s", self.name, _describe(exc))
        self.tools, self.prompts, self.resources, self.rejected = listed, prompts_now, resources_now, rejected
        if rejected:
            log.warning("MCP server %s: %d listed item(s) left out as invalid (GET /v1/mcp/servers/%s tells which): %s",
                        self.name, len(rejected), self.name,
                        "; ".join(f"{r.kind} {r.index}{f' ({r.name})' if r.name else ''}: {r.reason}"
                                  for r in rejected[:5]))

    async def _shutdown(self) -> None:
        owner = self._owner
        if owner is None:
            return
        if self._stop is not None:
            self._stop.set()
        self._cut_start()  # a handshake under way never looks at the stop event
        if not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                # A close that does not finish: cancel its scope (the SDK still ends the process), and only if even
                # that does not end the task, the task itself.
                if self._scope is not None:
                    self._scope.cancel()
                try:
                    await asyncio.wait_for(asyncio.shield(owner), STOP_TIMEOUT)
                except asyncio.TimeoutError:
                    owner.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(owner, STOP_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the owner reports its own failures (state, log)
                log.debug("MCP server %s: its connection ended with %s", self.name, _describe(exc))
        self._owner = None

    def _cut_start(self) -> None:
        """Cancel the owner's scope if its start (the handshake) is still under way."""
        owner = self._owner
        if owner is not None and not owner.done() and self._scope is not None and \
                (self._ready is None or not self._ready.done()):
            self._scope.cancel()

    async def stop(self) -> None:
        """Close the connection and end the server's process (if it runs)."""
        # A start under way (a hung handshake, say) holds the start lock for up to START_TIMEOUT: cut it off rather
        # than wait, so removing/disabling a server or stopping jan is never held by it.
        if self._stop is not None and self._ready is not None and not self._ready.done():
            self._stop.set()
        self._cut_start()
        async with self._start_lock:
            await self._shutdown()
            self.state = McpServerState.DISABLED if self.config.disabled else McpServerState.STOPPED

    # -- calls --------------------------------------------------------------------
    async def call_tool(self, mcp_name: str, arguments: dict[str, Any], *, timeout: float | None) -> ToolResult:
        timeout = self.config.timeout if self.config.timeout is not None else timeout
        try:
            client = await self.ensure_started()
        except RuntimeError as exc:
            return ToolResult.error(str(exc))
        try:
            result = await lenient.call_tool(client, mcp_name, arguments, timeout)
        except asyncio.CancelledError:
            self._check_alive(mcp_name)  # cut off by the caller (the registry's bound, a cancelled run)
            raise
        except Exception as exc:  # noqa: BLE001
            if _timed_out(exc):
                self._check_alive(mcp_name)
                return ToolResult.error(f"The MCP server '{self.name}' did not answer {mcp_name} within "
                                        f"{timeout:g} seconds")
            if _connection_lost(exc):
                if self.state == McpServerState.RUNNING:
                    self._failed(f"the server stopped while running {mcp_name}")
                if self._lost is not None:
                    self._lost.set()  # the owner closes the connection; the next use restarts the server
                return ToolResult.error(f"The MCP server '{self.name}' stopped while running {mcp_name} "
                                        "(it will be restarted on next use)")
            return ToolResult.error(f"The MCP server '{self.name}' answered {mcp_name} with an error: {_describe(exc)}"
                                    f"{self._http_said()}")
        self._failures = 0
        return _result(result)


    def _check_alive(self, mcp_name: str) -> None:
        """After a call of ``mcp_name`` timed out (or was cut off), ask the server for its tools in the background;
        one that does not answer is taken for wedged and its connection closed, so that its next use restarts it.

        A server that handles one request at a time and is stuck in that call (blocked, ignoring the cancellation
        jan sends) answers nothing else: without this every later call of every one of its tools waited out its
        whole timeout, for as long as jan ran."""
        client, lost = self._client, self._lost
        if client is None or lost is None or (self._probing is not None and not self._probing.done()):
            return

        async def probe() -> None:
            try:
                # (a tools/list, not a ping: ping is gone from MCP as of 2026-07-28, a listing is in every version)
                await asyncio.wait_for(lenient.list_items(client, "tool", limit=1), PROBE_TIMEOUT)
            except asyncio.TimeoutError:
                if self._client is client and not lost.is_set():
                    self._failed(f"stopped answering: a call of {mcp_name} did not end and a listing went unanswered "
                                 f"for {PROBE_TIMEOUT:g} seconds (restarted on its next use)")
                    lost.set()
            except Exception as exc:  # noqa: BLE001 - an error answer is an answer; a lost connection tells itself
                log.debug("MCP server %s: listing after a cut-off call: %s", self.name, _describe(exc))

        self._probing = asyncio.ensure_future(probe())

#: How much of a failed server's stderr is read back for its error (its last line is quoted).
_STDERR_TAIL_BYTES = 8192


def _stderr_said(path: Path, offset: int) -> str:
    """What a stdio server wrote to its log (``path``, from ``offset``: this start's output) for its error: its
    last line and where the rest is, or that it wrote nothing there."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - _STDERR_TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return f" (the server wrote nothing on stderr; its log: {path})"
    return f"; the server's stderr ends with: {lines[-1][:300]} (all of it in {path})"


def _innermost(exc: BaseException) -> BaseException:
    """The first exception inside exception groups (the SDK's task groups raise them)."""
    group = getattr(builtins, "BaseExceptionGroup", ())
    while group and isinstance(exc, group) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups (the SDK's task groups raise them)."""
    exc = _innermost(exc)
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500]
