"""The interfaces (abstract base classes) of jan's extension API.

Extension types: :class:`ConversationalExtension`, :class:`AssistantExtension`,
:class:`InferenceExtension`, :class:`ModelExtension`, :class:`MonitoringExtension`,
:class:`ToolProvider` (tools a model may call, see :class:`Tool`).
Module interfaces they use: :class:`FileSystem`, :class:`SettingsStore`,
:class:`EventBus`. ``EXTENSION_INTERFACES`` and ``MODULE_INTERFACES`` list them.
"""

from __future__ import annotations

from .assistant import AssistantExtension
from .base import ExtensionInterface, ExtensionType
from .conversational import ConversationalExtension, SortOrder
from .inference import InferenceExtension, LocalInferenceExtension, LocalModel, ModelState
from .model import DownloadState, DownloadTask, ImportMode, ModelExtension
from .modules import EventBus, EventHandler, FileSystem, SettingsStore, Unsubscribe
from .mcp import McpHost, McpServerState, McpServerStatus
from .monitoring import MonitoringExtension
from . import tools as _tools
from .tools import TOOL_NAME_RE, Tool, ToolImage, ToolJson, ToolPart, ToolProvider, ToolResult, ToolText

#: Interfaces an extension implements, each with an ``extension_type``.
EXTENSION_INTERFACES: tuple[type[ExtensionInterface], ...] = (
    ConversationalExtension,
    AssistantExtension,
    InferenceExtension,
    LocalInferenceExtension,
    ModelExtension,
    MonitoringExtension,
    ToolProvider,
    McpHost,
)

#: Services core provides (abstract so they can be replaced or faked).
MODULE_INTERFACES: tuple[type, ...] = (FileSystem, SettingsStore, EventBus, DownloadTask, Tool)

__all__ = [
    "EXTENSION_INTERFACES",
    "MODULE_INTERFACES",
    "AssistantExtension",
    "ConversationalExtension",
    "DownloadState",
    "DownloadTask",
    "EventBus",
    "EventHandler",
    "ExtensionInterface",
    "ExtensionType",
    "FileSystem",
    "ImportMode",
    "InferenceExtension",
    "LocalInferenceExtension",
    "LocalModel",
    "ModelExtension",
    "McpHost",
    "McpServerState",
    "McpServerStatus",
    "ModelState",
    "MonitoringExtension",
    "SettingsStore",
    "SortOrder",
    "Unsubscribe",
    *_tools.__all__,
]
