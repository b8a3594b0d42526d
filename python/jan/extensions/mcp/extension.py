"""The built-in MCP host: the servers of ``<data>/mcp.json`` as jan tools.

Servers start on first use (listing tools for a run, a call, or
``GET /v1/mcp/servers/{name}``), are restarted with a backoff after a crash
(on the next use), and stop when the extension unloads (jan stopping).
The file is re-read when it changes: new servers appear, removed ones are
stopped, changed ones restart on next use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from jan.core import McpHost, McpServerStatus, NotFoundError, Tool, ToolProvider
from jan.extensions._builtin import BuiltinExtension
from jan.errors import not_found_message
from jan.file_stamps import SmallFileWatch

from .config import McpConfigError, config_path, edit_config, read_config

if TYPE_CHECKING:
    from .server import McpServer

# The MCP client (.server: the protocol, processes) is imported when mcp.json names a server, not at start: most
# sessions configure none (resident memory at start, issue 16).

log = logging.getLogger("jan.extensions.mcp")

#: Seconds a listing waits for one server that is still starting before it goes on without that server's tools.
#: Below jan.core.tools.LIST_TIMEOUT, past which the registry would drop every MCP server's tools at once.
LIST_WAIT = 20.0


class McpClientError(ImportError):
    """The MCP client (:mod:`.server`: the ``mcp`` SDK under it) could not be imported: no server of mcp.json can run.
    Raised by each use of the host that needs one (an :class:`~jan.core.ExtensionCallError` naming this extension at
    the API: a 500); each tries the import again."""


def _mcp_server_class() -> type[McpServer]:
    try:
        from .server import McpServer
    except (Exception, SystemExit) as exc:  # (a SystemExit raised on the loop would end jan)
        raise McpClientError(f"MCP servers cannot run: the MCP client could not be loaded "
                             f"({type(exc).__name__}: {exc})") from exc
    return McpServer


class McpSettings(BaseModel):
    start_timeout: float = Field(30.0, gt=0, le=600, description="Seconds a server may take to start")


class McpHostExtension(BuiltinExtension, ToolProvider, McpHost):
    """Hosts the MCP servers the user configured and offers their tools (named ``<server>__<tool>``)."""

    name = "mcp"
    description = "MCP servers from <data>/mcp.json as tools for assistants (GET /v1/mcp/servers)"
    settings_schema = McpSettings

    def __init__(self) -> None:
        self._servers: dict[str, McpServer] = {}
        #: mcp.json as last read (its stamp, and its bytes' hash while an edit in place could keep the stamp)
        self._watch = SmallFileWatch()
        self._config_error: str | None = None
        self._problems: dict[str, str] = {}  # why each invalid entry of mcp.json is not a server, by name
        self._file_error: str | None = None  # why mcp.json as a whole cannot be read now (None: it was read)
        self._data_folder: Path | None = None
        self._stopping: set[asyncio.Task] = set()  # servers being stopped after a config change
        self._looking = asyncio.Lock()  # one look at mcp.json at a time (_sync)

    async def on_load(self, ctx) -> None:  # noqa: ANN001
        self._data_folder = ctx.data_folder
        try:
            await self._sync()
        except McpClientError as exc:  # the host loads all the same: each use tries again, and says why it fails
            log.error("%s", exc)

    async def on_unload(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(s.stop() for s in servers), *self._stopping, return_exceptions=True)

    # -- configuration --------------------------------------------------------------
    @property
    def config_error(self) -> str | None:
        """Why ``mcp.json`` could not be read (``None`` when it is fine)."""
        return self._config_error

    @property
    def file_error(self) -> str | None:
        """Why ``mcp.json`` as a whole could not be read at the last look (the servers listed are those read
        before), or ``None``."""
        return self._file_error

    @property
    def invalid_entries(self) -> dict[str, str]:
        """Why each invalid entry of ``mcp.json`` is no server, by name (none while the file cannot be read: what it
        holds is unknown then)."""
        return {} if self._file_error is not None else dict(self._problems)

    async def _sync(self) -> None:
        """Re-read ``mcp.json`` if it changed since the last look; adds, drops and updates servers. The look (a
        ``stat``, and within a tick of an edit a read and hash of the file) and the read are file work: done in a
        worker thread, one look at a time (the watch has one owner), never on the event loop a slow disk would
        stall."""
        assert self._data_folder is not None
        async with self._looking:
            read = await asyncio.to_thread(self._look, self._data_folder)
            if read is not None:
                self._apply(*read)

    def _look(self, data_folder: Path) -> tuple | None:
        """In a worker thread: ``None`` when ``mcp.json`` is as last read; else what :meth:`_apply` takes (the look,
        the configs and problems read, the server class, or the error that kept the file from being read)."""
        path = config_path(data_folder)
        # (device, inode, mtime in ns, size, and the bytes while within a tick of the mtime): a rewrite within one
        # tick of the file system's clock, of the same size (another server's command in the place of one), keeps
        # mtime and size; jan's edits and editors that save by replacing give the file a new inode, an editor that
        # saves in place keeps it, and only the bytes tell
        look = self._watch.changed(path)
        if look is None:
            return None
        try:
            configs, problems = read_config(data_folder)
        except McpConfigError as exc:
            return look, None, {}, None, exc
        # Before the file is taken as read: a client that cannot be imported leaves the servers as they were, and
        # the next look reads the file (and tries the import) again, as if it were the first (McpClientError).
        server_class = _mcp_server_class() if configs else None
        return look, configs, problems, server_class, None

    def _apply(self, look, configs, problems, server_class, error: McpConfigError | None) -> None:  # noqa: ANN001
        """On the loop: the servers as ``mcp.json`` now says (:meth:`_look` read it)."""
        assert self._data_folder is not None
        self._watch.seen(look)
        if error is not None:
            self._config_error = self._file_error = str(error)
            log.warning("%s", error)
            return  # keep the servers we have
        self._file_error = None
        # An invalid entry costs only itself: the others run, and a server it named keeps running as it was.
        self._config_error = "; ".join(problems.values()) or None
        self._problems = problems
        if problems:
            log.warning("%s", self._config_error)
        logs = self._data_folder / "logs" / "mcp"
        for name in list(self._servers):
            if name not in configs and name not in problems:
                self._stop_later(self._servers.pop(name))
        for name, config in configs.items():
            server = self._servers.get(name)
            if server is None:
                self._servers[name] = server_class(name, config, logs)
            elif server.config.launch_key() != config.launch_key() or server.config.disabled != config.disabled:
                self._servers[name] = server_class(name, config, logs)
                self._stop_later(server)
            else:
                server.config = config

    def _stop_later(self, server: McpServer) -> None:
        task = asyncio.ensure_future(server.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _server(self, name: str) -> McpServer:
        await self._sync()
        server = self._servers.get(name)
        if server is None and self._file_error is not None:
            # Whether the unreadable file names it is unknown: "not found" would send the user looking for a typo,
            # and a problem remembered from an earlier read of the file may no longer be true.
            raise McpConfigError(self._file_error)
        if server is None and name in self._problems:
            # It is in the file, so "not found" would send the user looking for a typo: say what is wrong with it.
            raise McpConfigError(self._problems[name])
        if server is None:
            raise NotFoundError(not_found_message("MCP server", name, str(config_path(self._data_folder or "."))),
                                resource="mcp_server", id=name)
        return server

    # -- ToolProvider -----------------------------------------------------------------
    async def list_tools(self, *, servers: Collection[str] | None = None) -> list[Tool]:
        """Tools of every enabled server, each server listed on its own.

        A listing answers at once with what is known: a running server's tools, and those a server listed before
        (they route to a restart if called). A server not started yet is started in the background (a later
        listing has its tools; ``GET /v1/mcp/servers`` shows it ``starting``), never waited for, so one that hangs
        in its handshake holds up no listing.

        ``servers`` names the servers the caller is about to use (a run's, a call's): only those are started, and
        each is waited for, separately, at most :data:`LIST_WAIT` seconds from its start's beginning (not at all
        when it is being retried after a failure); a server not named is neither started nor waited for."""
        await self._sync()
        enabled = [s for s in self._servers.values() if not s.config.disabled]
        named = set(servers) if servers is not None else None

        async def tools_of(server: McpServer) -> list[Tool]:
            if server.running:
                return list(server.tools)
            # Not named by the run: it must not wait on (or start) this server. Tools known from an earlier run
            # still route to a restart if called.
            if named is not None and server.name not in named:
                return list(server.tools)
            # A server that failed lately is not tried again (nor waited for) by a listing: every run start lists
            # tools, and a server that cannot start would be tried, and logged, at each. A call of one of its
            # tools, or GET /v1/mcp/servers/{name}, tries it; a listing after the backoff does too.
            if server.backing_off:
                return list(server.tools)
            start = server.start_soon()
            if named is None:  # a plain listing: what is known now
                return list(server.tools)
            wait = server.listing_wait(LIST_WAIT)
            done = (await asyncio.wait({start}, timeout=wait))[0] if wait > 0 else {start} if start.done() else set()
            if not done:
                log.info("MCP server %s is still starting: this listing goes on without it", server.name)
                return list(server.tools)  # known from an earlier run (none for a first start): route to a restart
            if not start.cancelled() and start.exception() is not None:
                log.debug("%s", start.exception())  # (the server logged the failure once, as its kind)
            return list(server.tools)

        listings = await asyncio.gather(*(tools_of(s) for s in enabled))
        return [tool for tools in listings for tool in tools]

    # -- McpHost ---------------------------------------------------------------------
    async def list_servers(self) -> list[McpServerStatus]:
        await self._sync()
        return [s.status() for s in self._servers.values()]

    async def server(self, name: str, *, connect: bool = True) -> McpServerStatus:
        server = await self._server(name)
        if connect and not server.config.disabled:
            try:
                await server.ensure_started(backoff=False)  # (asked by hand: at once, not after its backoff)
            except RuntimeError:
                pass  # the status says why
        return server.status()

    async def set_enabled(self, name: str, enabled: bool) -> McpServerStatus:
        await self._server(name)  # 404 (or why its entry is invalid) before touching the file

        def edit(servers: dict) -> None:
            entry = servers.get(name)
            if not isinstance(entry, dict):  # removed from the file since (or made no entry): as the check says
                raise NotFoundError(not_found_message("MCP server", name, str(config_path(self._data_folder or "."))),
                                    resource="mcp_server", id=name)
            if enabled:
                entry.pop("disabled", None)
            else:
                entry["disabled"] = True

        assert self._data_folder is not None
        await asyncio.to_thread(edit_config, self._data_folder, edit)
        old = self._servers.get(name)
        await self._sync()
        if old is not None and old is not self._servers.get(name):
            await old.stop()
        return (await self._server(name)).status()  # (the file may have changed under the edit: say so, never a KeyError)
