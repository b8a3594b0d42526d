"""``/v1/mcp/servers`` (the MCP servers of ``<data>/mcp.json``) and ``/v1/tools`` (every tool a run may use).

``GET  /v1/mcp/servers``                  every configured server (none is started by listing)
``GET  /v1/mcp/servers/{name}``           one server, started if enabled, with its tools, prompts and resources
``POST /v1/mcp/servers/{name}/enable``    turn a configured server on (saved in ``mcp.json``)
``POST /v1/mcp/servers/{name}/disable``   turn it off and stop it
``GET  /v1/tools``                        ``{"object": "list", "data": [{"type": "function", "function": {...},
                                          "source": ...}]}``: what an assistant's ``tools`` may name

Servers are added only by editing ``mcp.json`` (or ``jan mcp add``): no
request can make jan start a program.
"""

from __future__ import annotations

from aiohttp import web

from jan.core import ExtensionNotFoundError, McpHost, ToolRegistry
from jan.core.guarded import get_guarded
from jan.server.jsonio import json_response
from jan.server.keys import MANAGER
from jan.server.resolve import service
from jan.server.validation import no_fields

routes = web.RouteTableDef()


def _host(request: web.Request) -> McpHost:
    return service(request, McpHost, "hosts MCP servers", "mcp")


@routes.get("/v1/mcp/servers")
async def list_servers(request: web.Request) -> web.Response:
    """The configured MCP servers with their state (``config_error`` says why ``mcp.json`` could not be read, or
    what is wrong with its entries; ``invalid``: each invalid entry, ``{"name", "error"}``; ``file_error``: why the
    file as a whole could not be read, the servers listed being those read before). ``jan mcp list`` shows the
    same from this as from the file."""
    host = _host(request)
    servers = await host.list_servers()
    invalid = getattr(host, "invalid_entries", None) or {}
    body = {"object": "list", "data": [s.to_dict() for s in servers],
            "config_error": getattr(host, "config_error", None),
            "invalid": [{"name": name, "error": why} for name, why in invalid.items()],
            "file_error": getattr(host, "file_error", None)}
    return json_response(body)


@routes.get("/v1/mcp/servers/{name}")
async def get_server(request: web.Request) -> web.Response:
    """One server; an enabled one is started so its tools, prompts and resources are listed."""
    status = await _host(request).server(request.match_info["name"], connect=True)
    return json_response(status.to_dict())


@routes.post("/v1/mcp/servers/{name}/enable")
async def enable_server(request: web.Request) -> web.Response:
    """Turn a configured server on (it starts on first use)."""
    await no_fields(request)
    status = await _host(request).set_enabled(request.match_info["name"], True)
    return json_response(status.to_dict())


@routes.post("/v1/mcp/servers/{name}/disable")
async def disable_server(request: web.Request) -> web.Response:
    """Turn a configured server off; it stops at once."""
    await no_fields(request)
    status = await _host(request).set_enabled(request.match_info["name"], False)
    return json_response(status.to_dict())


@routes.get("/v1/tools")
async def list_tools(request: web.Request) -> web.Response:
    """Every tool the enabled tool providers offer now, at once: an MCP server not started yet is started in the
    background and waited for by no listing. ``mcp_servers`` tells each enabled server's state (``starting``: its
    tools come with a later listing; ``failed``: ``error`` says why) and the items it listed that were left out as
    invalid (``rejected``)."""
    manager = request.app[MANAGER]
    tools = await ToolRegistry(manager).list_tools()
    body = {"object": "list", "data": [{**t.spec(), "source": t.source} for t in tools]}
    try:
        host = get_guarded(manager, McpHost)  # (its failure named, as every route's)
    except ExtensionNotFoundError:  # no MCP host enabled: there is no server to tell about
        host = None
    if host is not None:
        body["mcp_servers"] = [{"name": s.name, "state": s.state, "error": s.error, "rejected": list(s.rejected)}
                               for s in await host.list_servers() if s.enabled]
    return json_response(body)
