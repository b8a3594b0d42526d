"""Anthropic's MCP connector (``mcp_servers``, beta ``mcp-client-2025-04-04`` / ``mcp-client-2025-11-20``), mapped
to :mod:`jan.services.mcp_use`, the one path that also serves the Responses API's ``mcp`` tools.

Wire shapes only: which servers a request names and which of their tools the model may call
(:func:`server_uses`: ``tool_configuration`` or the newer ``mcp_toolset`` entries of ``tools``; a URL only where
``--allow-media-from`` allows it, as a media URL, else a 400 naming the field), a server that could not be reached
(:func:`check_listed`: a 400, as Anthropic's), and the answer's content blocks (:func:`message_of_events`: the
streamed events, ``mcp_tool_use`` / ``mcp_tool_result`` blocks among them, folded into the whole message). The
connector has no approval flow: every call runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from jan.server.dialects import anthropic as wire
from jan.services.errors import RequestError
from jan.services.mcp_use import McpServerUse, McpSession


def server_uses(body: wire.MessagesRequest, allows_url: Callable[[str], bool]) -> list[McpServerUse]:
    """The servers of ``body.mcp_servers``; ``allows_url(url)``: whether this server may connect to ``url``."""
    toolsets = {t.mcp_server_name: t for t in body.tools or () if isinstance(t, wire.McpToolset)}
    uses = []
    for index, server in enumerate(body.mcp_servers or ()):
        where = f"mcp_servers[{index}]"
        if not server.url.lower().startswith(("http://", "https://")):
            raise RequestError(f"{where}.url: expected an http(s):// URL", param=f"{where}.url")
        if not allows_url(server.url):
            # connecting is a fetch on the client's behalf: refused unless the server was started to allow it
            raise RequestError(f"{where}.url: this server connects to no MCP server URL it was not allowed (start "
                               "it with --allow-media-from naming the URL's prefix)", param=f"{where}.url")
        headers = {"Authorization": f"Bearer {server.authorization_token}"} if server.authorization_token else {}
        allowed: frozenset[str] | None = None
        denied: frozenset[str] = frozenset()
        config = server.tool_configuration
        if config is not None:
            if config.enabled is False:
                allowed = frozenset()
            elif config.allowed_tools is not None:
                allowed = frozenset(config.allowed_tools)
        toolset = toolsets.get(server.name)
        if toolset is not None:
            default = toolset.default_config.enabled if toolset.default_config else None
            configs = toolset.configs or {}
            on = frozenset(name for name, c in configs.items() if c.enabled is True)
            off = frozenset(name for name, c in configs.items() if c.enabled is False)
            if default is False:  # (only the tools a config turns on)
                allowed = on if allowed is None else allowed & on
            else:
                denied = off
        # (no approval in Anthropic's connector: every call runs)
        uses.append(McpServerUse(server.name, server.url, headers, allowed, denied_tools=denied,
                                 default_approval=False, param=f"{where}.name"))
    return uses


def check_listed(session: McpSession, uses: list[McpServerUse]) -> None:
    """A 400 naming the server whose tools could not be listed (Anthropic answers an unreachable server so)."""
    from jan.services.mcp_use import McpListed

    for event in session.events:
        if isinstance(event, McpListed) and event.error:
            index = next(i for i, u in enumerate(uses) if u.server_label == event.server_label)
            raise RequestError(f"mcp_servers[{index}]: could not connect to MCP server '{event.server_label}': "
                               f"{event.error}", param=f"mcp_servers[{index}].url")


def events_only(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The answer's deltas and MCP calls, without the servers' listings (Anthropic's connector shows none)."""
    from jan.services.mcp_use import McpListed

    async def kept() -> AsyncIterator[Any]:
        try:
            async for item in items:
                if not isinstance(item, McpListed):
                    yield item
        finally:
            await items.aclose()

    return kept()


async def message_of_events(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The whole ``message`` the streamed events add up to (an answer with MCP calls is made of several model
    turns, and their blocks interleave with the calls': the stream's encoder orders them, once)."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    async for name, data in events:
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                block["text"] += delta["text"]
            elif kind == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop":
            if data["index"] in partial:
                text = partial.pop(data["index"])
                message["content"][data["index"]]["input"] = wire._tool_input(text)
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message.get("usage", {}), **data["usage"]}
        elif name == "error":
            from jan.services.errors import GenerationCancelledError

            raise GenerationCancelledError()
    return message


__all__ = ["server_uses", "check_listed", "events_only", "message_of_events"]
