"""The tool registry: every enabled :class:`ToolProvider`'s tools, called with a timeout and a size limit.

The registry holds no tools itself; it asks the extension manager for the
providers each time, so enabling or disabling an extension (or an MCP
server) changes the tools at once. Names are unique: when two providers
offer the same name, the higher-ranked provider (the manager's order) wins
and the other is logged and left out.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jan.json_text import loads_json
from ._jsonschema import validate
from .bounded import call_bounded
from .exceptions import ExtensionNotFoundError, NotFoundError
from .interfaces.tools import TOOL_NAME_RE, Tool, ToolImage, ToolJson, ToolProvider, ToolResult, ToolText

if TYPE_CHECKING:  # pragma: no cover
    from .manager import ExtensionManager

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DEFAULT_TOOL_TIMEOUT",
    "ToolCallOutcome",
    "ToolNotFoundError",
    "ToolRegistry",
    "checked_tools",
    "limit_result",
    "provider_tools",
    "server_names",
]

log = logging.getLogger("jan.core.tools")

#: Seconds a tool call may take unless the caller says otherwise.
DEFAULT_TOOL_TIMEOUT = 60.0
#: Characters of tool output kept (text and serialized JSON together); the rest is cut.
DEFAULT_MAX_OUTPUT_CHARS = 32_000
#: Bytes of one image part kept; larger images are replaced by a note.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
#: Seconds one provider may take to list its tools before it is skipped for that listing.
LIST_TIMEOUT = 30.0


class ToolNotFoundError(NotFoundError):
    """No enabled provider offers a tool of this name."""

    def __init__(self, name: str):
        super().__init__(f"No tool named '{name}' is available", resource="tool", id=name)


@dataclass(frozen=True)
class ToolCallOutcome:
    """A finished call: its result and how long it took (milliseconds, wall clock)."""

    name: str
    result: ToolResult
    duration_ms: int


def limit_result(result: ToolResult, max_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> ToolResult:
    """``result`` with its text/JSON cut to ``max_chars`` characters in all and oversized images dropped.

    An image counts as the note a model reads for it (:meth:`ToolResult.as_text`): a result of fifty thousand
    small images was fifty thousand notes, 1.3 million characters, none of them counted; those past the limit are
    left out now, with one note saying how many."""
    left = max_chars
    parts: list[Any] = []
    truncated = result.truncated
    images_left_out = 0
    for part in result.parts:
        if isinstance(part, ToolImage):
            if len(part.data) > MAX_IMAGE_BYTES:
                note = f"[image {part.mime_type} of {len(part.data)} bytes left out: over the limit]"
                part = ToolText(note)
                truncated = True
            else:
                note = ToolResult((part,)).as_text()
            if len(note) > left:
                images_left_out += 1
                truncated = True
                left = 0
                continue
            parts.append(part)
            left -= len(note)
            continue
        text = part.text if isinstance(part, ToolText) else json.dumps(part.data, ensure_ascii=False)
        if len(text) <= left:
            parts.append(part)
            left -= len(text)
            continue
        truncated = True
        if left > 0:
            parts.append(ToolText(text[:left] + f"\n[... cut: the output exceeded {max_chars} characters]"))
        left = 0
    if images_left_out:
        parts.append(ToolText(f"[{images_left_out} image(s) left out: the output exceeded {max_chars} characters]"))
    if not truncated:
        return result
    return ToolResult(tuple(parts), is_error=result.is_error, truncated=True)


def server_names(tool_names: Iterable[str]) -> set[str]:
    """The MCP servers tool names name (``<server>__<tool>``)."""
    return {name.split("__", 1)[0] for name in tool_names if "__" in name}


def _takes_servers(provider: ToolProvider) -> bool:
    """Whether ``provider.list_tools`` takes ``servers=`` (an MCP host)."""
    try:
        return "servers" in inspect.signature(provider.list_tools).parameters
    except (TypeError, ValueError):
        return False


def _unusable(tool: Any) -> str | None:
    """Why a provider's listed ``tool`` cannot be offered to a model (None when it can)."""
    if not isinstance(tool, Tool):
        return f"{type(tool).__name__} {tool!r:.80} is not a jan.core.Tool"
    if not isinstance(tool.name, str) or not TOOL_NAME_RE.match(tool.name):
        return f"its name {tool.name!r:.80} is not a tool name (letters, digits, _ and -, at most 64)"
    if not isinstance(tool.parameters, dict):
        return f"its parameters are {type(tool.parameters).__name__}, not a JSON schema object"
    try:
        json.dumps(tool.spec(), allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - a spec() that raises, or a value JSON has no word for
        return f"its spec is not JSON: {type(exc).__name__}: {exc}"
    return None


def checked_tools(provider: Any, listing: Iterable[Any]) -> list[Tool]:
    """The items of ``provider``'s listing that are tools a model can be offered; each other one is logged (naming
    the provider) and left out, so that one malformed tool costs only itself: left in, it failed every listing
    (``GET /v1/tools``, every run's) of every provider's tools with a 500."""
    tools: list[Tool] = []
    for tool in listing:
        why = _unusable(tool)
        if why is None:
            tools.append(tool)
        else:
            log.warning("tool provider %r: a tool left out: %s", provider, why)
    return tools


def _result_problem(result: ToolResult) -> str | None:
    """Why a tool's ``result`` cannot be stored or shown to a model (None when it can): every part one of jan's
    parts, JSON data that JSON can write (``NaN`` and sets are not JSON), image data bytes."""
    parts = result.parts
    if not isinstance(parts, (tuple, list)):
        return f"its parts are {type(parts).__name__}, not a tuple of ToolText/ToolJson/ToolImage"
    for part in parts:
        if isinstance(part, ToolText):
            if not isinstance(part.text, str):
                return f"a ToolText holds {type(part.text).__name__}, not text"
        elif isinstance(part, ToolJson):
            try:
                json.dumps(part.data, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return f"its data is not JSON: {exc}"
        elif isinstance(part, ToolImage):
            if not isinstance(part.data, (bytes, bytearray)) or not isinstance(part.mime_type, str):
                return "a ToolImage needs bytes data and a text mime_type"
        else:
            return f"a part is {type(part).__name__} {part!r:.60}, not a ToolText, ToolJson or ToolImage"
    return None


async def provider_tools(provider: Any, servers: Collection[str] | None = None) -> list[Tool]:
    """``provider``'s listing (``servers=``: passed on, to an MCP host) within :data:`LIST_TIMEOUT`, its malformed
    tools left out (:func:`checked_tools`). ``call_bounded``, not ``wait_for``: ``wait_for`` waits for a provider
    that swallows its cancellation, which held every listing (``GET /v1/tools``, every run's) without end."""
    listing = await call_bounded(lambda: provider.list_tools() if servers is None else provider.list_tools(
        servers=servers), timeout=LIST_TIMEOUT, what=f"tool provider {provider!r}'s listing")
    return checked_tools(provider, listing)


def parse_arguments(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    """A call's arguments as a dict; raises ``ValueError`` for text that is not a JSON object."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    value = loads_json(arguments)
    if not isinstance(value, dict):
        raise ValueError("tool arguments must be a JSON object")
    return value


class ToolRegistry:
    """Tools of every enabled :class:`ToolProvider`, looked up through ``manager``.

    ``max_output_chars`` bounds what a call returns (see :func:`limit_result`).
    """

    def __init__(self, manager: "ExtensionManager", *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS):
        self.manager = manager
        self.max_output_chars = max_output_chars

    def providers(self) -> list[ToolProvider]:
        """Enabled providers, best-ranked first."""
        try:
            return list(self.manager.get_all(ToolProvider))
        except ExtensionNotFoundError:
            return []

    async def list_tools(self, *, servers: Collection[str] | None = None) -> list[Tool]:
        """Every available tool, each name once. A provider that fails or hangs is skipped (and logged).

        It answers at once with what is known: an MCP server still starting offers its tools to a later listing
        (``GET /v1/mcp/servers`` tells its state). ``servers``: the MCP servers the caller is about to use (a run's,
        a call's); a provider hosting them waits for those (a bounded time), and starts no other."""

        async def one(provider: ToolProvider) -> list[Tool]:
            try:
                return await provider_tools(provider, servers if _takes_servers(provider) else None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken provider must not hide the others
                log.warning("tool provider %r could not list its tools: %s", provider, exc)
                return []

        listings = await asyncio.gather(*(one(p) for p in self.providers()))
        seen: dict[str, Tool] = {}
        for tools in listings:
            for tool in tools:
                if tool.name in seen:
                    log.info("tool %s from %s hidden by the one from %s", tool.name, tool.source, seen[tool.name].source)
                    continue
                seen[tool.name] = tool
        return list(seen.values())

    async def get(self, name: str) -> Tool:
        """The tool called ``name`` (waiting for the MCP server its name names, ``<server>__<tool>``, to start);
        raises :class:`ToolNotFoundError`."""
        for tool in await self.list_tools(servers=server_names([name])):
            if tool.name == name:
                return tool
        raise ToolNotFoundError(name)

    async def call(self, name: str, arguments: str | dict[str, Any] | None, *,
                   timeout: float | None = DEFAULT_TOOL_TIMEOUT, tool: Tool | None = None) -> ToolCallOutcome:
        """Call a tool and always return an outcome: problems become error results the model can read.

        ``arguments`` is the model's JSON text (or a dict). Unknown tools,
        arguments that are not a JSON object or do not match the tool's
        schema, exceptions, and running past ``timeout`` seconds all give
        ``result.is_error``. Cancelling the caller cancels the call.
        """
        started = time.monotonic()

        def done(result: ToolResult) -> ToolCallOutcome:
            return ToolCallOutcome(name, limit_result(result, self.max_output_chars),
                                   int((time.monotonic() - started) * 1000))

        try:
            args = parse_arguments(arguments)
        except ValueError as exc:
            return done(ToolResult.error(f"Invalid arguments for {name}: {exc}"))
        if tool is None:
            try:
                tool = await self.get(name)
            except ToolNotFoundError as exc:
                return done(ToolResult.error(str(exc)))
        problems = validate(args, tool.parameters) if isinstance(tool.parameters, dict) else []
        if problems:
            where, message = problems[0]
            return done(ToolResult.error(f"Invalid arguments for {name}: {where or 'arguments'}: {message}"))
        try:
            # call_bounded, not wait_for: a tool that swallows its cancellation held wait_for (and the run, or the
            # CLI chat) past its timeout until it chose to end, forever for one that never does; it is left behind
            result = await call_bounded(lambda: tool.call(args, timeout=timeout), timeout=timeout,
                                        what=f"the tool {name} (from {tool.source or '?'})")
        except asyncio.TimeoutError:
            return done(ToolResult.error(f"The tool {name} did not answer within {timeout:g} seconds"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model is told, the run goes on
            log.info("tool %s failed: %s", name, exc)
            return done(ToolResult.error(f"The tool {name} failed: {exc}"))
        if not isinstance(result, ToolResult):
            result = ToolResult((ToolJson(result),)) if not isinstance(result, str) else ToolResult.text(result)
        # An author's result (a set, a datetime, NaN, a bare string part) raised out of the size limit or later
        # out of the message store: the whole run failed, and the CLI chat with it. It is the tool's error now.
        problem = _result_problem(result)
        if problem is not None:
            log.warning("tool %s (from %s) returned an unusable result: %s", name, tool.source or "?", problem)
            origin = f" (from {tool.source})" if tool.source else ""
            return done(ToolResult.error(f"The tool {name}{origin} returned a result jan cannot use: {problem}"))
        return done(result)
