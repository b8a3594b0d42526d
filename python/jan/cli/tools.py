"""Tools for ``jan chat``: the user's MCP servers and built-in tools, hosted in this process.

``jan chat --tool NAME`` / ``--mcp SERVER`` offers tools to the model; each call the model
makes is shown and run only after the user answers ``y`` (the CLI's approval policy is
"always ask"). The servers come from ``<data>/mcp.json``, as for ``jan serve``; they run in
a private event loop thread and stop when the chat ends.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from jan.cli.common import CLIError, did_you_mean

#: Model turns per user message before the model must answer.
MAX_STEPS = 8
#: Seconds one tool call may take.
CALL_TIMEOUT = 60.0


class ChatTools:
    """The chosen tools (``specs`` for the chat request) and a way to call them."""

    def __init__(self, data_folder, tool_names: tuple[str, ...], servers: tuple[str, ...]):
        from jan.core import ExtensionManager, ToolRegistry
        from jan.core.tools import server_names
        from jan.extensions.mcp import McpHostExtension
        from jan.extensions.tools import BuiltinToolsExtension

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jan-chat-tools", daemon=True)
        self._thread.start()
        self.manager = ExtensionManager(data_folder, discover_entry_points=False)
        self.manager.register(McpHostExtension())
        self.manager.register(BuiltinToolsExtension())
        self._run(self.manager.start())
        self.registry = ToolRegistry(self.manager)
        # the servers this chat uses are waited for (a bounded time); no other is started
        wanted = set(servers) | server_names(tool_names)
        available = {t.name: t for t in self._run(self.registry.list_tools(servers=wanted))}
        chosen = {}
        for name in tool_names:
            if name not in available:
                self.close()
                raise CLIError(f"no tool named '{name}'{did_you_mean(name, available)} "
                               f"(available: {', '.join(sorted(available)) or 'none'})")
            chosen[name] = available[name]
        for server in servers:
            found = {n: t for n, t in available.items() if t.source == f"mcp:{server}"}
            if not found:
                why = self._why_no_tools(server)
                self.close()
                raise CLIError(f"MCP server '{server}' offers no tools{why} (see `jan mcp list`)")
            chosen.update(found)
        self.tools = chosen

    def _why_no_tools(self, server: str) -> str:
        """Why ``server`` gave this chat no tools, for its error: not configured, disabled, or failed (its
        start's error, which says what the server wrote on stderr); empty when there is nothing more to say."""
        from jan.core import McpHost

        try:
            host = self.manager.get(McpHost)
            statuses = {s.name: s for s in self._run(host.list_servers(), timeout=30)}
        except Exception:  # noqa: BLE001 - the error is told without the why, never hidden by it
            return ""
        status = statuses.get(server)
        if status is None:
            meant = did_you_mean(server, statuses)
            return f": it is not configured in mcp.json{'; ' + meant[2:] if meant else ''}"
        if not status.enabled:
            return ": it is disabled"
        return f": {status.error}" if status.error else ""

    def _run(self, coro: Any, timeout: float | None = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    def call(self, name: str, arguments: str) -> tuple[str, bool, int]:
        """Run one call; returns ``(output text, is_error, duration_ms)`` (errors are results the model reads)."""
        tool = self.tools.get(name)
        if tool is None:
            return f"The tool {name} is not available in this chat.", True, 0
        outcome = self._run(self.registry.call(name, arguments, timeout=CALL_TIMEOUT, tool=tool),
                            timeout=CALL_TIMEOUT + 30)
        return outcome.result.as_text(), outcome.result.is_error, outcome.duration_ms

    def close(self) -> None:
        try:
            self._run(self.manager.stop(), timeout=30)
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
