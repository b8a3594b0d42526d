"""The built-in MCP host extension: MCP servers configured in ``<data>/mcp.json`` offer their tools to runs."""

from jan.extensions.mcp.config import McpConfigError, McpServerConfig, edit_config, load_config
from jan.extensions.mcp.extension import McpHostExtension

__all__ = ["McpConfigError", "McpHostExtension", "McpServerConfig", "edit_config", "load_config"]
