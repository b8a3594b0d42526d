"""What an MCP server lists is read item by item, and a listing never waits for a server it does not need.

One malformed tool (a schema that is no object, no name), prompt or resource is left out and reported in the
server's status, the server's other tools stay usable; a tool result with a content block of a kind MCP does not
have keeps its other blocks. A plain listing (``GET /v1/tools``, ``ToolRegistry.list_tools()``) answers at once while
a server hangs in its handshake, showing that server ``starting``; a listing naming a server waits for it.
"""

from __future__ import annotations

import asyncio

import pytest
from api_helpers import Client, running
from jan.core import ExtensionManager, McpHost, ToolRegistry
from jan.extensions.mcp import McpHostExtension
from jan.extensions.tools import BuiltinToolsExtension
from mcp_helpers import notes_folder, raw_entry, stdio_entry, write_mcp_config
from test_mcp_isolation import held  # noqa: F401 - the fixture: a server hung in its handshake

pytestmark = pytest.mark.timeout(600)

#: Seconds a listing could wait for a server, lifted so that a listing that waits at all never answers in a test.
FOREVER = 3600.0


@pytest.fixture
def never_give_up(monkeypatch):
    import jan.extensions.mcp.extension as mcp_extension

    monkeypatch.setattr(mcp_extension, "LIST_WAIT", FOREVER)


async def started(data) -> ExtensionManager:
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    manager.register(BuiltinToolsExtension())
    await manager.start()
    return manager


async def test_one_malformed_item_costs_only_itself(tmp_path):
    data = tmp_path / "data"
    write_mcp_config(data, {"raw": raw_entry(big=500)})
    manager = await started(data)
    try:
        status = await manager.get(McpHost).server("raw")
        assert status.state == "running" and status.error is None, status
        assert [t["name"] for t in status.tools] == ["echo", "big", "odd"]
        rejected = {(r["kind"], r["index"]): r for r in status.rejected}
        assert set(rejected) == {("tool", 1), ("tool", 2), ("tool", 3), ("prompt", 1), ("resource", 1)}
        assert rejected["tool", 1]["name"] == "bad_schema" and "inputSchema" in rejected["tool", 1]["reason"]
        assert rejected["tool", 2]["name"] is None and "name" in rejected["tool", 2]["reason"]
        assert rejected["resource", 1]["name"] == "no uri" and "uri" in rejected["resource", 1]["reason"]
        assert [p["name"] for p in status.prompts] == ["summarize"]
        assert [r["uri"] for r in status.resources] == ["note://one"]
        assert status.to_dict()["rejected"] == list(status.rejected)

        registry = ToolRegistry(manager)
        names = {t.name for t in await registry.list_tools(servers={"raw"})}
        assert {"raw__echo", "raw__big", "raw__odd"} <= names and not any("bad" in n for n in names)
        echo = await registry.call("raw__echo", {"text": "still here"})
        assert not echo.result.is_error and echo.result.as_text() == "still here"
        # a block of no MCP type (and an image that is no base64) cost only themselves
        odd = await registry.call("raw__odd", {})
        assert not odd.result.is_error
        texts = [p.text for p in odd.result.parts]
        assert texts[0] == "before" and texts[-1] == "after"
        assert "'hologram' is no MCP content type" in texts[1] and "undecodable image" in texts[2]
        assert (await manager.get(McpHost).server("raw", connect=False)).state == "running"
    finally:
        await manager.stop()


async def test_a_plain_listing_answers_at_once_and_a_named_one_waits(tmp_path, held, never_give_up):  # noqa: F811
    entry, gate = held
    data = tmp_path / "data"
    write_mcp_config(data, {"held": entry, "notes": stdio_entry(notes_folder(tmp_path))})
    manager = await started(data)
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager)
        # Neither server has run: the listing starts both in the background and waits for neither (a listing that
        # waited would wait FOREVER for the held one, whose handshake never ends while the gate is shut).
        first = {t.name for t in await asyncio.wait_for(registry.list_tools(), 300)}
        assert "current_time" in first and not any(n.startswith("held__") for n in first)
        states = {s.name: s.state for s in await host.list_servers()}
        assert states["held"] == "starting", states
        # a listing naming a server waits for that one only
        named = {t.name for t in await asyncio.wait_for(registry.list_tools(servers={"notes"}), 300)}
        assert "notes__add" in named and not any(n.startswith("held__") for n in named)
        # a call by name waits for its own server, never for another
        outcome = await asyncio.wait_for(registry.call("notes__add", {"a": 2, "b": 3}), 300)
        assert outcome.result.as_text() == "5"
        assert {s.name: s.state for s in await host.list_servers()}["held"] == "starting"
        assert not gate.exists()
    finally:
        await manager.stop()


async def test_get_tools_tells_pending_servers_and_rejected_items(tmp_path, held, never_give_up):  # noqa: F811
    entry, gate = held
    data = tmp_path / "data"
    write_mcp_config(data, {"held": entry, "raw": raw_entry(big=100)})
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            body = await api.ok("GET", "/v1/tools")  # (the client gives up long before FOREVER)
            assert "current_time" in {t["function"]["name"] for t in body["data"]}
            servers = {s["name"]: s for s in body["mcp_servers"]}
            assert servers["held"]["state"] == "starting" and servers["held"]["error"] is None
            raw = await api.ok("GET", "/v1/mcp/servers/raw")
            assert raw["state"] == "running" and len(raw["rejected"]) == 5
            body = await api.ok("GET", "/v1/tools")
            listed = {t["function"]["name"] for t in body["data"]}
            assert {"raw__echo", "raw__big", "raw__odd"} <= listed
            servers = {s["name"]: s for s in body["mcp_servers"]}
            assert servers["raw"]["state"] == "running" and servers["held"]["state"] == "starting"
            assert {(r["kind"], r["index"]) for r in servers["raw"]["rejected"]} >= {("tool", 1), ("tool", 2)}
            assert not gate.exists()


async def test_one_invalid_server_entry_costs_only_itself(tmp_path):
    import json

    from jan.extensions.mcp import McpConfigError, edit_config, load_config

    data = tmp_path / "data"
    write_mcp_config(data, {"good": raw_entry(big=100), "both": {"command": "x", "url": "http://127.0.0.1:1/mcp"},
                            "a__b": {"command": "y"}})
    with pytest.raises(McpConfigError):
        load_config(data)  # (the strict reading, for whoever wants the whole file right)
    manager = await started(data)
    try:
        host = manager.get(McpHost)
        assert [s.name for s in await host.list_servers()] == ["good"]
        problem = manager.get_extension("mcp").config_error
        assert "'both'" in problem and "'a__b'" in problem
        names = {t.name for t in await ToolRegistry(manager).list_tools(servers={"good"})}
        assert "good__echo" in names
        # the file can still be edited: the invalid entries are kept as they were, a new invalid one is refused
        status = await host.set_enabled("good", False)
        assert status.state == "disabled"
        saved = json.loads((data / "mcp.json").read_text())["mcpServers"]
        assert saved["good"]["disabled"] is True and saved["both"]["url"] and saved["a__b"] == {"command": "y"}
        with pytest.raises(McpConfigError, match="c__d"):
            edit_config(data, lambda servers: servers.update({"c__d": {"command": "z"}}))
    finally:
        await manager.stop()


async def test_an_sdk_without_the_raw_send_is_read_through_its_public_methods(tmp_path, monkeypatch):
    # lenient.send_raw goes through mcp 2.3's internals; a later SDK without them must still list and call
    # (whole-result validation again), never break
    from jan.extensions.mcp import lenient

    monkeypatch.setattr(lenient, "raw_supported", lambda client: False)
    data = tmp_path / "data"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path))})
    manager = await started(data)
    try:
        registry = ToolRegistry(manager)
        names = {t.name for t in await asyncio.wait_for(registry.list_tools(servers={"notes"}), 300)}
        assert "notes__add" in names
        outcome = await asyncio.wait_for(registry.call("notes__add", {"a": 2, "b": 3}), 300)
        assert not outcome.result.is_error and outcome.result.as_text() == "5"
    finally:
        await manager.stop()


def test_an_image_blocks_data_is_read_as_strict_base64():
    """An MCP image block's data is base64 read as every dialect reads it (jan.image_types.b64decode): line breaks
    skipped, anything else that is not base64 the note of an undecodable image. Python's lenient decoder dropped the
    characters that were not base64 and made an "image" of the rest ("@@@@abcd" was three bytes of it)."""
    from types import SimpleNamespace

    from jan.core import ToolImage, ToolText
    from jan.extensions.mcp.server import _result

    blocks = [SimpleNamespace(type="image", data=data, mime_type="image/png") for data in ("@@@@abcd", "iVBO\nRw0K")]
    parts = _result(SimpleNamespace(content=blocks, structured_content=None, is_error=False)).parts
    assert parts == (ToolText("[undecodable image image/png]"), ToolImage(b"\x89PNG\r\n", "image/png"))
