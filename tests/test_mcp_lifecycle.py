"""MCP servers' lives: a stdio server dies with jan however jan dies (SIGKILL included, busy in a call or not); a
server that cannot start is logged once per kind of failure and tried again on use, not at every listing; a
server's name holds no ``__`` (it separates the server's name from its tool's)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from api_helpers import Client, ServerProcess, running
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(600)


def _gone(pid: int) -> bool:
    """Whether a process is gone (a zombie nobody reaped yet counts: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
async def test_a_stdio_server_busy_in_a_call_dies_with_a_killed_jan(tmp_path, tool_model):

    data = tmp_path / "data"
    root = notes_folder(tmp_path)
    write_mcp_config(data, {"notes": stdio_entry(root)})
    with ServerProcess(data, tool_model, n_ctx=2048) as proc:
        async with Client(proc.base_url) as api:
            assistant = await api.ok("POST", "/v1/assistants", {"model": "qwen3-tools", "tools": [
                {"type": "mcp", "server_label": "notes", "allowed_tools": ["wait_for_go"], "require_approval": "never"}]})
            thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                          "messages": [{"role": "user", "content": "Go?"}]})
            await api.ok("POST", f"/v1/threads/{thread['id']}/runs", {
                "tool_choice": {"type": "function", "function": {"name": "notes__wait_for_go"}}, "max_tokens": 60,
                "temperature": 0, "parallel_tool_calls": False, "background": True})
            for _ in range(2400):  # 120 s at most
                if (root / "waiting").exists() and (root / "waiting").read_text():
                    break
                await asyncio.sleep(0.05)
            server_pid = int((root / "waiting").read_text())  # the MCP server's own pid, inside the call
            assert not _gone(server_pid)
        proc.kill()
    for _ in range(1200):  # 60 s at most: the kernel kills it at once
        if _gone(server_pid):
            break
        await asyncio.sleep(0.05)
    assert _gone(server_pid), "the MCP server outlived the jan that started it"


async def test_a_server_that_cannot_start_is_told_once_and_tried_on_use(tmp_path, caplog):
    data = tmp_path / "data"
    write_mcp_config(data, {"broken": {"command": "/nonexistent/bin/xyz"}})
    caplog.set_level(logging.DEBUG, logger="jan.extensions.mcp")
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            for _ in range(3):  # every run start lists the tools: a listing in the backoff does not try it again
                await api.ok("GET", "/v1/tools")
            status = await api.ok("GET", "/v1/mcp/servers/broken")  # a use: tried again
            assert status["state"] == "failed" and "No such file or directory" in status["error"], status
            assert "/nonexistent/bin/xyz" in status["error"]
            assert "stderr" not in status["error"], status  # it never ran: no log of it to point at
            await api.ok("GET", "/v1/mcp/servers/broken")
    told = [r for r in caplog.records if r.name == "jan.extensions.mcp" and r.levelno >= logging.INFO]
    assert len(told) == 1 and told[0].levelno == logging.WARNING and "broken" in told[0].getMessage(), \
        [r.getMessage() for r in told]


async def test_asking_for_a_failed_servers_state_tries_it_at_once_not_after_its_backoff(tmp_path, monkeypatch):
    """The backoff spaces out the retries tool calls make on their own; GET /v1/mcp/servers/{name} is a person
    retrying by hand (maybe after mending the server), answered at once: it waited out the backoff first (up to
    30 s a GET, ~50 s for a few)."""
    from jan.extensions.mcp import server as mcp_server

    monkeypatch.setattr(mcp_server, "BACKOFF_BASE", 3600.0)  # a backoff no GET may wait out within the bound below
    monkeypatch.setattr(mcp_server, "BACKOFF_MAX", 3600.0)
    starts = tmp_path / "starts"
    script = tmp_path / "quits.py"
    script.write_text(f"open({str(starts)!r}, 'a').write('started\\n')\n")
    data = tmp_path / "data"
    write_mcp_config(data, {"quits": {"command": sys.executable, "args": [str(script)]}})
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            for _ in range(3):
                status = await asyncio.wait_for(api.ok("GET", "/v1/mcp/servers/quits"), 120)
                assert status["state"] == "failed", status
    assert starts.read_text().splitlines() == ["started"] * 3


def test_a_server_name_holds_no_double_underscore(tmp_path):
    from jan.extensions.mcp import McpConfigError, edit_config, load_config

    write_mcp_config(tmp_path, {"a__b": {"command": "x"}})
    with pytest.raises(McpConfigError, match="without '__'"):
        load_config(tmp_path)
    write_mcp_config(tmp_path, {"a_b": {"command": "x"}})
    with pytest.raises(McpConfigError, match="without '__'"):
        edit_config(tmp_path, lambda servers: servers.update({"c__d": {"command": "y"}}))
    assert list(load_config(tmp_path)) == ["a_b"]  # the file was left as it was


async def test_a_server_that_dies_at_start_says_why(tmp_path):
    # The SDK only sees the pipe close ("Connection closed"): the error quotes the last line the server wrote on
    # stderr (a traceback's exception, a missing module), or says it wrote nothing, and where its log is.
    data = tmp_path / "data"
    write_mcp_config(data, {
        "raises": {"command": sys.executable, "args": ["-c", "raise SystemExit('no config file at /x/y.toml')"]},
        "traceback": {"command": sys.executable, "args": ["-c", "import no_such_module_for_jan"]},
        "silent": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]},
    })
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            said = {name: (await api.ok("GET", f"/v1/mcp/servers/{name}")) for name in ("raises", "traceback", "silent")}
    for status in said.values():
        assert status["state"] == "failed", status
    assert "no config file at /x/y.toml" in said["raises"]["error"], said["raises"]
    assert "ModuleNotFoundError: No module named 'no_such_module_for_jan'" in said["traceback"]["error"], said
    assert "wrote nothing on stderr" in said["silent"]["error"], said["silent"]
    for name, status in said.items():
        assert str(data / "logs" / "mcp" / f"{name}.log") in status["error"], status


@pytest.mark.parametrize("named", ["function", "mcp"])
async def test_a_forced_tool_of_a_server_that_is_down_says_why(tmp_path, stories_path, named):
    # The run's 400 for a tool_choice whose tool is missing because its server failed names that failure (here,
    # what the server wrote on stderr), not only that the tool is not among the run's (none), which reads as a typo.
    data = tmp_path / "data"
    write_mcp_config(data, {"broken": {"command": sys.executable, "args": ["-c", "raise SystemExit('bad token')"]}})
    tool = ({"type": "function", "function": {"name": "broken__add"}} if named == "function"
            else {"type": "mcp", "server_label": "broken"})
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K", "tools": [tool]})
            thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Add"}]})
            status, body = await api.post(f"/v1/threads/{thread['id']}/runs", {
                "assistant_id": assistant["id"], "tool_choice": {"type": "function", "function": {"name": "broken__add"}}})
    assert status == 400, body
    error = body["error"]
    assert error["param"] == "tool_choice", error
    assert "MCP server 'broken' is not available" in error["message"] and "bad token" in error["message"], error
