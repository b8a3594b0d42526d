"""Tools a model may call: the :class:`Tool` interface and the :class:`ToolProvider` extension type.

A tool has a ``name`` (what the model calls, ``^[A-Za-z0-9_-]{1,64}$`` like
OpenAI function names), a ``description`` and ``parameters`` (a JSON schema
object). :meth:`Tool.call` takes the parsed arguments and returns a
:class:`ToolResult` made of parts (:class:`ToolText`, :class:`ToolJson`,
:class:`ToolImage`).

Extensions contribute tools by implementing :class:`ToolProvider` (the
extension object itself, or an object handed to ``ctx.provide``); the
:class:`jan.core.ToolRegistry` gathers every enabled provider's tools
through the extension manager.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from .base import ExtensionInterface, ExtensionType

__all__ = [
    "TOOL_NAME_RE",
    "Tool",
    "ToolImage",
    "ToolJson",
    "ToolPart",
    "ToolProvider",
    "ToolResult",
    "ToolText",
    "image_note",
]

#: What a tool name may look like (OpenAI's function-name rule).
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")



@dataclass(frozen=True)
class ToolText:
    """Plain text from a tool (never rendered as HTML by jan)."""

    text: str
    type: ClassVar[str] = "text"


@dataclass(frozen=True)
class ToolJson:
    """Structured data from a tool (any JSON value)."""

    data: Any
    type: ClassVar[str] = "json"


@dataclass(frozen=True)
class ToolImage:
    """An image from a tool: raw ``data`` bytes of ``mime_type`` (``image/png``, ...)."""

    data: bytes
    mime_type: str
    type: ClassVar[str] = "image"


ToolPart = Union[ToolText, ToolJson, ToolImage]


def image_note(mime_type: str, size: int) -> str:
    """What a model that cannot see a tool's image reads in its place."""
    return f"[image {mime_type}, {size} bytes]"


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced.

    ``is_error`` marks a result that reports a failure to the model (bad
    arguments, the tool's own error, a timeout) rather than raising: the
    model is told and may try again. ``truncated`` is set when jan cut the
    output to its size limit.
    """

    parts: tuple[ToolPart, ...] = ()
    is_error: bool = False
    truncated: bool = False

    @classmethod
    def text(cls, text: str, *, is_error: bool = False) -> "ToolResult":
        """A result of one text part."""
        return cls((ToolText(text),), is_error=is_error)

    @classmethod
    def error(cls, message: str) -> "ToolResult":
        """A failure the model is told about."""
        return cls((ToolText(message),), is_error=True)

    def as_text(self) -> str:
        """The result as the text a model reads: text parts as is, JSON serialized, images as a note."""
        pieces = []
        for part in self.parts:
            if isinstance(part, ToolText):
                pieces.append(part.text)
            elif isinstance(part, ToolJson):
                pieces.append(json.dumps(part.data, ensure_ascii=False))
            elif isinstance(part, ToolImage):
                pieces.append(image_note(part.mime_type, len(part.data)))
        return "\n".join(pieces)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"is_error", "truncated", "parts": [{"type": "text", "text"} | {"type": "json", "data"}
        | {"type": "image", "mime_type", "size"}]}`` (image bytes are not included)."""
        parts: list[dict[str, Any]] = []
        for part in self.parts:
            if isinstance(part, ToolText):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ToolJson):
                parts.append({"type": "json", "data": part.data})
            elif isinstance(part, ToolImage):
                parts.append({"type": "image", "mime_type": part.mime_type, "size": len(part.data)})
        return {"is_error": self.is_error, "truncated": self.truncated, "parts": parts}


class Tool(ABC):
    """One callable tool.

    Implementations set ``name``, ``description``, ``parameters`` and
    ``source`` (the provider's name, e.g. ``"builtin-tools"`` or
    ``"mcp:files"``) and implement :meth:`call`.
    """

    name: str = ""
    description: str = ""
    #: A JSON schema of the arguments object (``{"type": "object", "properties": ...}``).
    parameters: dict[str, Any] = {"type": "object", "properties": {}}  # noqa: RUF012 - read-only default
    source: str = ""

    @abstractmethod
    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        """Run the tool with ``arguments`` and return its result.

        ``timeout`` (seconds) is the caller's bound; implementations that
        talk to another process should pass it on. Callers also enforce it
        (and cancel the task running this coroutine), so implementations
        must let ``asyncio.CancelledError`` through and free what they hold.
        A failure the model should hear about is returned as
        ``ToolResult.error(...)``; raising is also fine: the registry turns
        the exception into an error result.
        """

    def spec(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry: ``{"type": "function", "function": {name, description, parameters}}``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} from {self.source!r}>"


class ToolProvider(ExtensionInterface):
    """An extension that contributes tools (built-in tools, an MCP host, ...)."""

    extension_type: ClassVar[str] = ExtensionType.TOOLS

    @abstractmethod
    async def list_tools(self) -> list[Tool]:
        """The tools this provider offers now (may start servers lazily; should not take long)."""
