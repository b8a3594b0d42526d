"""Anthropic's MCP connector (``mcp_servers``, beta ``mcp-client-2025-04-04`` / ``mcp-client-2025-11-20``), mapped
to :mod:`jan.services.mcp_use`, the one path that also serves the Responses API's ``mcp`` tools.

Wire shapes only: which servers a request names and which of their tools the model may call
(:func:`server_uses`: ``tool_configuration`` or the newer ``mcp_toolset`` entries of ``tools``, a deferred tool once
a ``tool_reference`` names it; a URL only where ``--allow-media-from`` allows it, as a media URL, else a 400 naming
the field), the servers' tools offered with the request's and a ``tool_choice`` naming one (:func:`offer`, for
``/v1/messages`` and ``count_tokens`` alike), a server that could not be reached
(:func:`check_listed`: a 400, as Anthropic's), and the answer's content blocks (:func:`message_of_events`: the
streamed events, ``mcp_tool_use`` / ``mcp_tool_result`` blocks among them, folded into the whole message). The
connector has no approval flow: every call runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from jan.server.dialects import anthropic as wire
from jan.services.errors import RequestError
from jan.services.mcp_use import McpServerUse, McpSession
from jan.services.types import ChatMessage, ChatRequest, NamedToolChoice


def server_uses(body: wire._Prompt, allows_url: Callable[[str], bool],
                held: wire.McpChoices | None = None) -> list[McpServerUse]:
    """The servers of ``body.mcp_servers``; ``allows_url(url)``: whether this server may connect to ``url``;
    ``held``: a thread's choices of its earlier turns (:class:`~jan.server.dialects.anthropic.McpChoices`: the tools
    references loaded, listings pinned, tool changes), which a replay's messages would carry."""
    toolsets = {t.mcp_server_name: t for t in body.tools or () if isinstance(t, wire.McpToolset)}
    choices = wire.mcp_choices(body, held)
    referenced, changes, listings = choices.referenced, choices.changes, dict(choices.listings)
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
        # a listing pinned by the toolset, else the last one an earlier answer carried (an mcp_tool_listing block
        # sent back): exactly its tools, as Anthropic's uses it instead of asking the server again
        pinned = (tuple(t.name for t in toolset.tools) if toolset is not None and toolset.tools is not None
                  else listings.get(server.name))
        if pinned is not None:
            names = frozenset(pinned)
            allowed = names if allowed is None else allowed & names
        if toolset is not None:
            # a tool's own config, else the default one; a deferred tool is offered once a tool search found it (a
            # tool_reference naming it, by its name or <server>__<name>), else never (jan has no tool search of its
            # own: Anthropic's model does not see one either until a search finds it)
            default = toolset.default_config or wire.McpToolConfig()
            configs = toolset.configs or {}
            found = {name.removeprefix(f"{server.name}__") for name in referenced}
            if default.enabled is False:  # (only the tools a config turns on)
                on = frozenset(name for name in configs if _offered(name, configs, default, found))
                allowed = on if allowed is None else allowed & on
            elif default.defer_loading is True:  # (the tools a config does not defer, and the ones found)
                on = frozenset(name for name in {*configs, *found} if _offered(name, configs, default, found))
                allowed = on if allowed is None else allowed & on
            else:
                denied = frozenset(name for name in configs if not _offered(name, configs, default, found))
        allowed, denied = _changed(allowed, denied, [(added, tool) for added, name, tool in changes
                                                     if name == server.name])
        # (no approval in Anthropic's connector: every call runs)
        uses.append(McpServerUse(server.name, server.url, headers, allowed, denied_tools=denied,
                                 default_approval=False, param=f"{where}.name"))
    return uses


def _changed(allowed: frozenset[str] | None, denied: frozenset[str], changes: list[tuple[bool, str | None]]
             ) -> tuple[frozenset[str] | None, frozenset[str]]:
    """``allowed`` / ``denied`` after the system messages' ``tool_addition`` / ``tool_removal`` of the server's tools
    (a tool by name; None: the whole toolset), in message order: an added tool is offered whatever its config said
    (as a ``tool_definition`` addition is), a removed one not; a toolset removed offers none but the ones added
    after, and one added again offers its configured tools again."""
    off, added, removed = False, set(), set()
    for add, tool in changes:
        if tool is None:
            off, added, removed = (False, added, set()) if add else (True, set(), removed)
        elif add:
            added.add(tool)
            removed.discard(tool)
        else:
            removed.add(tool)
            added.discard(tool)
    if off:
        return frozenset(added), frozenset()
    if allowed is not None:
        allowed = (allowed | added) - removed
    return allowed, (denied | removed) - added


def _offered(name: str, configs: dict[str, wire.McpToolConfig], default: wire.McpToolConfig,
             found: set[str]) -> bool:
    config = configs.get(name) or wire.McpToolConfig()
    enabled = config.enabled if config.enabled is not None else default.enabled
    deferred = config.defer_loading if config.defer_loading is not None else default.defer_loading
    return enabled is not False and (deferred is not True or name in found)


def _deferred(body: wire._Prompt, server: str, tool: str) -> bool:
    """Whether ``body``'s toolset for ``server`` defers ``tool`` (for a refusal that says why it is not offered)."""
    for toolset in body.tools or ():
        if isinstance(toolset, wire.McpToolset) and toolset.mcp_server_name == server:
            config = (toolset.configs or {}).get(tool) or wire.McpToolConfig()
            default = toolset.default_config or wire.McpToolConfig()
            return (config.defer_loading if config.defer_loading is not None else default.defer_loading) is True
    return False


def offer(chat_request: ChatRequest, body: wire._Prompt, session: McpSession) -> ChatRequest:
    """``chat_request`` with the servers' tools offered after the request's own, and a ``tool_choice`` that names
    one of theirs (by its name on its server, or the name the model knows it by) made to force it. A 400 for a
    name no offered tool has, one that two servers' tools have, a forced choice with no tool at all, and (as
    Anthropic's) a request whose every tool is deferred."""
    tools = (*chat_request.tools, *session.specs)
    # (the request's tools, offered or deferred, and the ones a tool change defined: what tool_set let through)
    known = {t.name for t in chat_request.tools} | {t.name for t in body.custom_tools or ()} | {
        name for jan_name, (_, tool) in session.owners.items() for name in (jan_name, tool)}
    for name in sorted(wire.referenced_tools(body) - known):
        if not any(_deferred(body, u.name, name.removeprefix(f"{u.name}__")) for u in body.mcp_servers or ()):
            raise RequestError(f"Tool reference '{name}' has no corresponding tool definition (in tools or the MCP "
                               "servers' tools)", param="messages")
    choice = chat_request.tool_choice
    if isinstance(choice, NamedToolChoice) and choice.name not in {t.name for t in chat_request.tools}:
        named = sorted(name for name, (label, tool) in session.owners.items() if choice.name in (name, tool))
        if len(named) > 1:
            servers = ", ".join(f"'{session.owners[n][0]}'" for n in named)
            raise RequestError(f"tool_choice.name: '{choice.name}' names a tool of more than one MCP server "
                               f"({servers}); give the tool's name as the model knows it ('{named[0]}')",
                               param="tool_choice.name")
        if not named:
            deferred = [u.name for u in body.mcp_servers or () if _deferred(body, u.name, choice.name)]
            why = (f" (deferred by the mcp_toolset of '{deferred[0]}', and no tool_reference loaded it: jan has no "
                   "tool search of its own)" if deferred else "")
            raise RequestError(f"tool_choice.name: no tool named '{choice.name}' in tools nor among the tools the "
                               f"MCP servers offer{why}", param="tool_choice.name")
        choice = NamedToolChoice(named[0])
    if not tools:
        if any(_deferred_any(t) or getattr(t, "defer_loading", None) for t in body.tools or ()):
            raise RequestError("All tools have defer_loading set. At least one tool must be non-deferred.",
                               param="tools")
        if choice == "required" or isinstance(choice, NamedToolChoice):
            raise RequestError(f"tool_choice: '{body.tool_choice.type}' needs tools, and the MCP servers offer none",
                               param="tool_choice")
    return dataclasses.replace(chat_request, tools=tools, tool_choice=choice,
                               messages=_calls_named(chat_request.messages, body, session))


def _calls_named(messages: tuple[ChatMessage, ...], body: wire._Prompt, session: McpSession
                 ) -> tuple[ChatMessage, ...]:
    """``messages`` with the calls of ``mcp_tool_use`` blocks sent back named as the session offers their tools:
    a conversion names them ``<server>__<tool>`` plainly (it runs before the servers are listed), which is no tool
    offered where two of a server's tools meet once named (``a.b`` and ``a_b``, two non-ASCII names: they get distinct
    names, jan.extensions.mcp.server.tool_names), and one name for both."""
    used = {block.id: (block.server_name, block.name) for message in body.messages
            if isinstance(message, wire.MessageParam) and not isinstance(message.content, str)
            for block in message.content if isinstance(block, wire.McpToolUseBlock)}
    if not used:
        return messages
    out = []
    for message in messages:
        if message.role == "tool" and message.tool_call_id in used:  # (a result named by its call, as it)
            out.append(dataclasses.replace(message, name=session.name_of(*used[message.tool_call_id])))
            continue
        calls = tuple(dataclasses.replace(call, name=session.name_of(*used[call.id])) if call.id in used else call
                      for call in message.tool_calls)
        out.append(message if calls == message.tool_calls else dataclasses.replace(message, tool_calls=calls))
    return tuple(out)


def _deferred_any(toolset: Any) -> bool:
    if not isinstance(toolset, wire.McpToolset):
        return False
    configs = [toolset.default_config, *(toolset.configs or {}).values()]
    return any(c is not None and c.defer_loading is True for c in configs)


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


__all__ = ["server_uses", "offer", "check_listed", "events_only", "message_of_events"]
