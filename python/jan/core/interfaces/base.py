"""What every extension interface shares."""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

__all__ = ["ExtensionInterface", "ExtensionType"]


class ExtensionType:
    """The ``extension_type`` strings of the interfaces jan defines.

    Plain strings so that a third-party interface can define its own type
    without editing this list.
    """

    CONVERSATIONAL = "conversational"
    ASSISTANT = "assistant"
    INFERENCE = "inference"
    MODEL = "model"
    MONITORING = "monitoring"
    TOOLS = "tools"
    MCP = "mcp"


class ExtensionInterface(ABC):
    """Base of the abstract interfaces that extensions implement.

    Each interface names its ``extension_type``. An implementation may be the
    :class:`~jan.core.Extension` object itself (``class MyStore(Extension,
    ConversationalExtension)``) or a separate object handed to
    :meth:`ExtensionContext.provide` / :meth:`ExtensionContext.register_engine`
    while the extension loads. The manager answers ``manager.get("conversational")``
    with one such object (see :meth:`ExtensionManager.get` for the choice).
    """

    extension_type: ClassVar[str] = ""

    @classmethod
    def interface_types(cls) -> tuple[str, ...]:
        """Every ``extension_type`` this class implements, most specific first."""
        seen: dict[str, None] = {}
        for klass in cls.__mro__:
            t = klass.__dict__.get("extension_type")
            if isinstance(t, str) and t and issubclass(klass, ExtensionInterface):
                seen.setdefault(t, None)
        return tuple(seen)
