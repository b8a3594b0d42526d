"""The shapes a chat-format parser produces: streamed deltas and the final result."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CallDelta", "OutputDelta", "ParsedCall", "ParsedOutput", "Snapshot"]


@dataclass(frozen=True)
class CallDelta:
    """A piece of tool call ``index``: ``id`` and ``name`` come once (when it starts), ``arguments`` in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class OutputDelta:
    """What one piece of model output adds: answer text, thinking text, tool-call pieces."""

    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[CallDelta, ...] = ()


@dataclass
class ParsedCall:
    """One tool call; ``arguments`` is JSON text (the model's own, or built from its XML/keyword form)."""

    id: str
    name: str
    arguments: str


@dataclass
class ParsedOutput:
    """A whole output split up. ``content``/``reasoning`` are ``None`` when empty."""

    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ParsedCall] = field(default_factory=list)


@dataclass
class Snapshot:
    """What a re-parsing parser has decided about the output so far.

    Each snapshot extends the previous one: ``content``/``reasoning`` and each
    call's ``arguments`` only grow, calls are only appended. ``calls`` holds
    ``(name, arguments so far)`` pairs. ``named``: the text ends inside the markup of one more call whose name
    is written whole but none of its arguments: not a call yet (the markup may still break, or turn out to be
    text), but the call an output cut off there made, with empty arguments (OpenAI's shape of a cut call).
    """

    content: str = ""
    reasoning: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    named: str = ""
