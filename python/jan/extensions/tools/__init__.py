"""Built-in tools for assistants: current time, reading files under an allowed folder, fetching a URL (off by default)."""

from jan.extensions.tools.extension import BuiltinToolsExtension, BuiltinToolsSettings

__all__ = ["BuiltinToolsExtension", "BuiltinToolsSettings"]
