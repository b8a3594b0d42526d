"""The MCP host extension and the tool registry against real MCP servers (stdio and streamable HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from jan.core import ExtensionManager, McpHost, NotFoundError, ToolRegistry
from jan.extensions.mcp import McpHostExtension, edit_config
from jan.extensions.tools import BuiltinToolsExtension
from local_site import answer, serve_app
from loop_helpers import note_on_loop
from mcp_helpers import http_notes_server, notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(300)


async def started(data, *extensions):
    manager = ExtensionManager(data, discover_entry_points=False)
    for ext in extensions or (McpHostExtension(), BuiltinToolsExtension()):
        manager.register(ext)
    await manager.start()
    return manager


@pytest.fixture
async def notes(tmp_path):
    """A started manager with the notes MCP server (stdio) configured as ``notes``: ``(manager, data folder)``."""
    data = tmp_path / "data"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path), tmp_path / "starts.txt")})
    manager = await started(data)
    try:
        yield manager, data
    finally:
        await manager.stop()


async def test_stdio_server_tools_are_listed_and_called(notes):
    manager, _ = notes
    host = manager.get(McpHost)
    [status] = await host.list_servers()
    assert status.state == "stopped" and status.transport == "stdio"  # lazy: nothing started yet
    registry = ToolRegistry(manager)
    names = {t.name for t in await registry.list_tools(servers={"notes"})}  # a listing naming it waits for it
    assert {"notes__read_note", "notes__add", "current_time"} <= names
    outcome = await registry.call("notes__read_note", json.dumps({"name": "shopping.txt"}))
    assert not outcome.result.is_error and outcome.result.as_text() == "eggs, milk, bread\n"
    assert outcome.duration_ms >= 0
    bad = await registry.call("notes__read_note", json.dumps({"name": "../../etc/passwd"}))
    assert bad.result.is_error
    wrong = await registry.call("notes__add", '{"a": "x"}')  # schema: b missing, a not an int
    assert wrong.result.is_error and "Invalid arguments" in wrong.result.as_text()
    status = await host.server("notes")
    assert status.state == "running"
    assert {t["name"] for t in status.tools} >= {"read_note", "list_notes"}
    assert [p["name"] for p in status.prompts] == ["summarize"]


async def test_http_server_tools(tmp_path):
    root = notes_folder(tmp_path)
    data = tmp_path / "data"
    with http_notes_server(root, tmp_path / "http.log") as url:
        write_mcp_config(data, {"web": {"url": url, "headers": {"X-Test": "1"}}})
        manager = await started(data)
        try:
            registry = ToolRegistry(manager)
            outcome = await registry.call("web__add", {"a": 2, "b": 40})
            assert outcome.result.as_text() == "42" and not outcome.result.is_error
            [status] = await manager.get(McpHost).list_servers()
            assert status.transport == "http" and status.state == "running" and "X-Test" not in json.dumps(status.to_dict())
        finally:
            await manager.stop()


async def test_timeout_crash_restart_and_flood(notes, tmp_path):
    manager, _ = notes
    stamp = tmp_path / "starts.txt"
    registry = ToolRegistry(manager, max_output_chars=1000)
    slow = await registry.call("notes__slow", {"seconds": 30}, timeout=1)
    assert slow.result.is_error and "did not answer" in slow.result.as_text()
    # the event loop was never blocked: other work ran meanwhile
    assert (await registry.call("current_time", {})).result.is_error is False

    crashed = await registry.call("notes__crash", {})
    assert crashed.result.is_error and "stopped" in crashed.result.as_text()
    status = await manager.get(McpHost).server("notes", connect=False)
    assert status.state == "failed"
    again = await registry.call("notes__add", {"a": 1, "b": 1})  # restarted on next use (after a backoff)
    assert again.result.as_text() == "2"
    assert len(stamp.read_text().split()) == 2
    assert (await manager.get(McpHost).server("notes", connect=False)).restarts == 1

    flood = await registry.call("notes__flood", {"chars": 200_000})
    assert flood.result.truncated and len(flood.result.as_text()) < 1200


async def test_enable_disable_and_config_edits(notes, tmp_path):
    manager, data = notes
    root = tmp_path / "notes"
    host = manager.get(McpHost)
    registry = ToolRegistry(manager)
    assert "notes__add" in {t.name for t in await registry.list_tools(servers={"notes"})}
    status = await host.set_enabled("notes", False)
    assert status.state == "disabled" and not status.enabled
    assert json.loads((data / "mcp.json").read_text())["mcpServers"]["notes"]["disabled"] is True
    assert "notes__add" not in {t.name for t in await registry.list_tools()}
    assert (await registry.call("notes__add", {"a": 1, "b": 2})).result.is_error
    await host.set_enabled("notes", True)
    assert "notes__add" in {t.name for t in await registry.list_tools(servers={"notes"})}
    with pytest.raises(NotFoundError):
        await host.server("nope")
    # a second server appears when the file changes
    await asyncio.to_thread(edit_config, data, lambda s: s.update(more=stdio_entry(root)))
    assert {s.name for s in await host.list_servers()} == {"notes", "more"}


async def test_a_rewrite_in_the_same_tick_of_the_same_size_is_read(tmp_path):
    """mcp.json replaced (as jan's edits and most editors save: a new file renamed over it) within one tick of the
    file system's clock, by a file of the same size: its mtime and size are those of the file read before (set here,
    as a fast machine does), and only its inode tells the change."""
    data = tmp_path / "data"
    path = write_mcp_config(data, {"one": {"command": "/bin/aaa", "disabled": True}})
    manager = await started(data, McpHostExtension())
    try:
        host = manager.get(McpHost)
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/aaa")]
        before = path.stat()
        fresh = path.with_name("mcp.json.new")
        fresh.write_text(path.read_text().replace("/bin/aaa", "/bin/bbb"), encoding="utf-8")
        os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick
        os.replace(fresh, path)
        assert (path.stat().st_mtime_ns, path.stat().st_size) == (before.st_mtime_ns, before.st_size)
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/bbb")]
    finally:
        await manager.stop()


async def test_an_edit_in_place_in_the_same_tick_of_the_same_size_is_read(tmp_path):
    """mcp.json written over in place (as an editor that saves in place does: the same inode) within the tick of the
    file system's clock it was read in, by text of the same size: device, inode, mtime and size are those of the file
    read before, and only its bytes tell the change. Its mtime is set a minute ahead, as the tick the host read it in
    (on a busy machine the start alone may take longer than a tick)."""
    data = tmp_path / "data"
    path = write_mcp_config(data, {"one": {"command": "/bin/aaa", "disabled": True}})
    ahead = time.time_ns() + 60_000_000_000
    os.utime(path, ns=(ahead, ahead))
    manager = await started(data, McpHostExtension())
    try:
        host = manager.get(McpHost)
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/aaa")]
        before = path.stat()
        with open(path, "r+b") as f:  # the same file, written over
            text = f.read().replace(b"/bin/aaa", b"/bin/bbb")
            f.seek(0)
            f.write(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/bbb")]
    finally:
        await manager.stop()


async def test_mcp_json_is_looked_at_and_read_off_the_event_loop(tmp_path, monkeypatch):
    """Each use of the host looks whether mcp.json changed (a stat, and within a tick of its mtime a read and hash of
    its bytes) and reads it again when it did: file work that ran on the event loop, where a slow disk stalled every
    request. Every such call is noted where it runs on a loop's thread: none may."""
    from jan import file_stamps
    from jan.extensions.mcp import extension

    on_loop = note_on_loop(monkeypatch,
                           ((file_stamps, "stamp"), (file_stamps, "_digest"), (extension, "read_config")))
    data = tmp_path / "data"
    path = write_mcp_config(data, {"one": {"command": "/bin/aaa", "disabled": True}})
    ahead = time.time_ns() + 60_000_000_000  # (unsettled: every look hashes the bytes too)
    os.utime(path, ns=(ahead, ahead))
    manager = await started(data, McpHostExtension())
    try:
        host = manager.get(McpHost)
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/aaa")]
        path.write_text(path.read_text(encoding="utf-8").replace("/bin/aaa", "/bin/bbb"), encoding="utf-8")
        os.utime(path, ns=(ahead, ahead))
        assert [(s.name, s.target) for s in await host.list_servers()] == [("one", "/bin/bbb")]
        assert (await host.server("one", connect=False)).target == "/bin/bbb"
        await host.list_tools()
    finally:
        await manager.stop()
    assert on_loop == [], on_loop


def test_a_small_file_settled_a_tick_past_its_mtime_is_not_read_again(tmp_path, monkeypatch):
    # once a look is a tick past the mtime, any later write gives the file another stamp: the bytes are not hashed
    from jan import file_stamps

    path = tmp_path / "mcp.json"
    path.write_text("{}", encoding="utf-8")
    old = time.time_ns() - 2 * file_stamps.MTIME_TICK_NS
    os.utime(path, ns=(old, old))
    watch = file_stamps.SmallFileWatch()
    look = watch.changed(path)
    assert look is not None and look.settled
    watch.seen(look)
    monkeypatch.setattr(file_stamps, "_digest", lambda p: pytest.fail("hashed a settled file"))
    assert watch.changed(path) is None
    path.write_text("[]", encoding="utf-8")  # a write now: a new mtime
    monkeypatch.undo()
    assert watch.changed(path) is not None


async def test_bad_config_is_reported_not_fatal(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mcp.json").write_text("{not json", encoding="utf-8")
    manager = await started(data)
    try:
        assert await manager.get(McpHost).list_servers() == []
        assert "not valid JSON" in manager.get_extension("mcp").config_error
        assert {t.name for t in await ToolRegistry(manager).list_tools()} == {"current_time"}
    finally:
        await manager.stop()


async def test_builtin_read_file_stays_in_its_folder(tmp_path):
    root = notes_folder(tmp_path)
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    data = tmp_path / "data"
    manager = await started(data, BuiltinToolsExtension())
    try:
        registry = ToolRegistry(manager)
        assert {t.name for t in await registry.list_tools()} == {"current_time"}  # read_file is off until a folder is set
        manager.settings("tools").set("files_folder", str(root))
        tools = {t.name for t in await registry.list_tools()}
        assert "read_file" in tools and "fetch_url" not in tools
        assert (await registry.call("read_file", {"path": "todo.txt"})).result.as_text() == "call the plumber\n"
        for escape in ("../secret.txt", str(tmp_path / "secret.txt")):
            assert (await registry.call("read_file", {"path": escape})).result.is_error
    finally:
        await manager.stop()


async def test_builtin_fetch_url_is_off_until_enabled(tmp_path):
    from aiohttp import web

    from jan.extensions.tools.extension import MAX_READ_BYTES

    app = web.Application()
    app.router.add_get("/page", answer(text="<b>hello</b>"))
    app.router.add_get("/big", answer(body=b"x" * (MAX_READ_BYTES + 1000)))
    app.router.add_get("/gone", answer(status=404, text="no"))
    async with serve_app(app) as base:
        manager = await started(tmp_path / "data", BuiltinToolsExtension())
        try:
            registry = ToolRegistry(manager)
            assert "fetch_url" not in {t.name for t in await registry.list_tools()}  # reaching the network: opt-in
            manager.settings("tools").set("fetch_enabled", True)
            assert "fetch_url" in {t.name for t in await registry.list_tools()}
            page = (await registry.call("fetch_url", {"url": f"{base}/page"})).result
            assert not page.is_error and page.as_text() == "HTTP 200\n\n<b>hello</b>"  # text, as it came
            big = (await registry.call("fetch_url", {"url": f"{base}/big"})).result
            assert big.as_text().count("x") <= MAX_READ_BYTES
            assert (await registry.call("fetch_url", {"url": f"{base}/gone"})).result.is_error
            assert (await registry.call("fetch_url", {"url": "file:///etc/passwd"})).result.is_error
        finally:
            await manager.stop()
