"""A misbehaving MCP server (``tests/mcp_servers/wild_server.py``, raw JSON-RPC) against the MCP host.

Each test is one kind of misbehaviour, and what a user or model is owed for it: every tool reachable under a
distinct name, listings that follow the server's ``list_changed``, a server that ends between calls restarted
before the next, one that writes junk to stdout told by name, one wedged in a call replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jan.core import ExtensionManager, McpHost, ToolRegistry
from jan.extensions.mcp import McpHostExtension
from jan.extensions.mcp.server import tool_names
from mcp_helpers import write_mcp_config

pytestmark = pytest.mark.timeout(300)

WILD_SERVER = Path(__file__).parent / "mcp_servers" / "wild_server.py"


def wild_entry(*flags: str, **extra) -> dict:
    return {"command": sys.executable, "args": [str(WILD_SERVER), *flags], **extra}


async def started(data: Path, servers: dict) -> ExtensionManager:
    write_mcp_config(data, servers)
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    await manager.start()
    return manager


def test_names_changed_to_fit_stay_distinct():
    long = "y" * 80
    names = tool_names("srv", ["a.b", "a_b", "検索", "取得", long + "1", long + "2", "plain"])
    assert len(set(names.values())) == len(names)
    assert names["a_b"] == "srv__a_b" and names["plain"] == "srv__plain"  # a name that fits is kept as it is
    assert names["a.b"].startswith("srv__a_b_")
    assert all(len(n) <= 64 for n in names.values())
    # stable: a name does not depend on the listing's order
    assert tool_names("srv", list(reversed(list(names)))) == names


async def test_every_tool_is_reachable_under_its_own_name(tmp_path):
    manager = await started(tmp_path / "data", {"wild": wild_entry()})
    try:
        status = await manager.get(McpHost).server("wild")
        assert status.state == "running", status
        jan_names = {t["name"]: t["tool_name"] for t in status.tools}
        assert len(set(jan_names.values())) == len(jan_names) == 10  # all but the second "echo"
        assert [(r["name"], r["reason"]) for r in status.rejected] == [("echo", "a second tool of the same name")]
        registry = ToolRegistry(manager)
        listed = {t.name for t in await registry.list_tools(servers={"wild"})}
        assert set(jan_names.values()) <= listed
        for mcp_name in ("a.b", "a_b", "検索", "取得", "x" * 70 + "_one", "x" * 70 + "_two"):
            outcome = await registry.call(jan_names[mcp_name], {})
            assert outcome.result.as_text() == f"{mcp_name} done", mcp_name
    finally:
        await manager.stop()
