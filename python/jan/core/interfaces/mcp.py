"""Hosting MCP (Model Context Protocol) servers: what ``/v1/mcp/servers`` and ``jan mcp`` show and switch."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import ExtensionInterface, ExtensionType

__all__ = ["McpHost", "McpServerState", "McpServerStatus"]


class McpServerState:
    """Values of :attr:`McpServerStatus.state`."""

    #: configured and enabled, not started yet (servers start lazily, on first use).
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    #: the last start or connection failed; ``error`` says why, the next use retries after a backoff.
    FAILED = "failed"
    #: turned off in the configuration (``"disabled": true``).
    DISABLED = "disabled"


@dataclass(frozen=True)
class McpServerStatus:
    """One configured server as the host sees it now.

    ``transport`` is ``"stdio"`` or ``"http"``; ``target`` the command line
    or URL (secrets in ``env``/``headers`` are never included). ``tools``,
    ``prompts`` and ``resources`` are JSON-ready dicts (``name``,
    ``description``, plus ``input_schema`` and the name jan gives the tool,
    ``tool_name``, for tools; ``uri``/``mime_type`` for resources), known
    once the server has run. ``restarts`` counts starts after a crash.
    ``rejected``: the items of its listings left out as invalid MCP, each
    ``{"kind": "tool"|"prompt"|"resource", "index", "name", "reason"}`` (the
    others are offered: one malformed tool does not cost the server's others).
    """

    name: str
    transport: str
    target: str
    enabled: bool
    state: str
    error: str | None = None
    restarts: int = 0
    tools: tuple[dict[str, Any], ...] = ()
    prompts: tuple[dict[str, Any], ...] = ()
    resources: tuple[dict[str, Any], ...] = ()
    rejected: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``object: "mcp.server"``)."""
        return {"object": "mcp.server", "name": self.name, "transport": self.transport, "target": self.target,
                "enabled": self.enabled, "state": self.state, "error": self.error, "restarts": self.restarts,
                "tools": list(self.tools), "prompts": list(self.prompts), "resources": list(self.resources),
                "rejected": list(self.rejected), **self.extra}


class McpHost(ExtensionInterface):
    """Runs the MCP servers the user configured and offers their tools.

    Servers come only from the user's configuration file in the data folder,
    never from a request. Unknown names raise :class:`jan.core.NotFoundError`.
    """

    extension_type: ClassVar[str] = ExtensionType.MCP

    @abstractmethod
    async def list_servers(self) -> list[McpServerStatus]:
        """Every configured server, without starting any."""

    @abstractmethod
    async def server(self, name: str, *, connect: bool = True) -> McpServerStatus:
        """One server; with ``connect`` an enabled server is started (if needed) so its listings are fresh."""

    @abstractmethod
    async def set_enabled(self, name: str, enabled: bool) -> McpServerStatus:
        """Enable or disable a configured server (saved in the configuration); disabling stops it."""
