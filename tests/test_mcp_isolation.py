"""One MCP server cannot hold up the others: a server hung in its handshake loses only its own tools (a run
naming another server, and GET /v1/tools, get that server's tools while it still hangs); a server removed or
disabled by editing mcp.json is stopped (its process ends), one whose command changed is restarted on next use."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest
from api_helpers import Client, running
from jan.core import ExtensionManager, McpHost, ToolRegistry
from jan.extensions.mcp import McpHostExtension, edit_config
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config
from run_helpers import wait_for_run

pytestmark = pytest.mark.timeout(600)

HELD_SERVER = Path(__file__).parent / "mcp_servers" / "held_server.py"


async def _file_text(path: Path) -> str:
    """The text of ``path`` once it exists (the servers write theirs whole)."""
    for _ in range(2400):  # 120 s at most (a busy machine starts Python slowly)
        if path.exists() and path.read_text().strip():
            return path.read_text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never written")


@pytest.fixture
def held(tmp_path, monkeypatch):
    """``(entry, gate)``: an mcp.json entry for a server that hangs in its handshake until ``gate`` exists.
    The start timeout is lifted so the handshake stays hung for the whole test, whatever the machine's speed."""
    import jan.extensions.mcp.server as mcp_server

    monkeypatch.setattr(mcp_server, "START_TIMEOUT", 3600.0)
    gate = tmp_path / "gate"
    yield {"command": sys.executable, "args": [str(HELD_SERVER), str(gate)]}, gate
    gate.touch()  # lets the held server go, whatever happened


async def test_a_server_hung_in_its_handshake_holds_up_no_other(tmp_path, held, tool_model, monkeypatch):
    import jan.extensions.mcp.extension as mcp_extension

    monkeypatch.setattr(mcp_extension, "LIST_WAIT", 2.0)  # GET /v1/tools gives up on the held server sooner
    entry, gate = held
    data = tmp_path / "data"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path)), "held": entry})
    with running(data, tool_model, n_ctx=2048) as srv:
        async with Client(srv.base_url) as api:
            assert (await api.ok("GET", "/v1/mcp/servers/notes"))["state"] == "running"
            # GET /v1/tools starts the held server too; it lists the notes server's tools while that one hangs
            listed = {t["function"]["name"] for t in (await api.ok("GET", "/v1/tools"))["data"]}
            assert {"notes__list_notes", "notes__add", "current_time"} <= listed
            assert not any(name.startswith("held__") for name in listed)
            held_pid = int(await _file_text(gate.with_name("gate.pid")))
            servers = {s["name"]: s for s in (await api.ok("GET", "/v1/mcp/servers"))["data"]}
            assert servers["held"]["state"] == "starting" and servers["notes"]["state"] == "running"

            assistant = await api.ok("POST", "/v1/assistants", {"model": "qwen3-tools"})

            async def new_thread() -> str:
                thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                              "messages": [{"role": "user", "content": "Hi"}]})
                return thread["id"]

            tid = await new_thread()
            run = await api.ok("POST", f"/v1/threads/{tid}/runs", {
                "tools": [{"type": "mcp", "server_label": "notes", "allowed_tools": ["add"],
                           "require_approval": "never"}],
                "tool_choice": "required", "max_tokens": 60, "temperature": 0, "background": True})
            assert [t["function"]["name"] for t in run["tools"] if t.get("type") == "function"] == ["notes__add"], run
            assert not run.get("warnings"), run
            await api.post(f"/v1/threads/{tid}/runs/{run['id']}/cancel")  # (it may have ended already)
            await wait_for_run(api, tid, run["id"])
            # the held server was still in its handshake all along
            servers = {s["name"]: s for s in (await api.ok("GET", "/v1/mcp/servers"))["data"]}
            assert servers["held"]["state"] == "starting"
            assert psutil.pid_exists(held_pid) and not gate.exists()

            # a run naming the held server goes on without its tools and says it is still starting
            tid = await new_thread()
            run = await api.ok("POST", f"/v1/threads/{tid}/runs", {
                "tools": [{"type": "mcp", "server_label": "held"}, {"type": "mcp", "server_label": "notes",
                                                                    "allowed_tools": ["add"]}],
                "max_tokens": 4, "background": True})
            assert [t["function"]["name"] for t in run["tools"] if t.get("type") == "function"] == ["notes__add"], run
            assert any("'held' is still starting" in str(w) for w in run["warnings"]), run
            await api.post(f"/v1/threads/{tid}/runs/{run['id']}/cancel")
            await wait_for_run(api, tid, run["id"])

            # disabling it in the file cuts its handshake off: its process ends (the gate never opened)
            await asyncio.to_thread(edit_config, data, lambda s: s["held"].update(disabled=True))
            servers = {s["name"]: s for s in (await api.ok("GET", "/v1/mcp/servers"))["data"]}
            assert servers["held"]["state"] == "disabled" and servers["notes"]["state"] == "running"
            await _wait_gone(held_pid)
            assert _gone(held_pid) and not gate.exists()


async def started(data: Path) -> ExtensionManager:
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    await manager.start()
    return manager


async def _pid_after_start(registry: ToolRegistry, stamp: Path, starts: int) -> int:
    assert (await registry.call("notes__add", {"a": 1, "b": 1})).result.as_text() == "2"
    pids = (await _file_text(stamp)).split()
    assert len(pids) == starts
    return int(pids[-1])


def _gone(pid: int) -> bool:
    """Whether a process is gone (a zombie nobody reaped yet counts: it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _wait_gone(pid: int) -> None:
    """Waits for the process to end (a generous bound: a busy machine may be slow to stop it)."""
    for _ in range(1200):  # 60 s at most
        if _gone(pid):
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["removed", "disabled"])
async def test_a_server_removed_or_disabled_in_the_file_is_stopped(tmp_path, how):
    data, stamp = tmp_path / "data", tmp_path / "starts.txt"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path), stamp)})
    manager = await started(data)
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager)
        pid = await _pid_after_start(registry, stamp, 1)
        if how == "removed":
            await asyncio.to_thread(edit_config, data, lambda s: s.pop("notes"))
            assert await host.list_servers() == []  # the host notices the edit
        else:
            await asyncio.to_thread(edit_config, data, lambda s: s["notes"].update(disabled=True))
            [status] = await host.list_servers()
            assert status.state == "disabled"
        await _wait_gone(pid)
        assert _gone(pid)
    finally:
        await manager.stop()


async def test_a_server_whose_command_changed_restarts_on_next_use(tmp_path):
    data, stamp = tmp_path / "data", tmp_path / "starts.txt"
    root = notes_folder(tmp_path)
    write_mcp_config(data, {"notes": stdio_entry(root, stamp)})
    manager = await started(data)
    try:
        registry = ToolRegistry(manager)
        old = await _pid_after_start(registry, stamp, 1)
        await asyncio.to_thread(edit_config, data, lambda s: s["notes"].update(env={"JAN_TEST": "1"}))
        await manager.get(McpHost).list_servers()  # the host notices the edit: the old process is stopped
        await _wait_gone(old)
        new = await _pid_after_start(registry, stamp, 2)  # and the new command starts on next use
        assert new != old
    finally:
        await manager.stop()
