"""Mistakes in mcp.json and ``jan mcp add`` are told as what they are: an entry given twice, an entry that is there
but invalid (a 400 naming what is wrong, never "not found" nor a 500), relative paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from api_helpers import Client, running
from jan.extensions.mcp.config import read_config

pytestmark = pytest.mark.timeout(300)

WILD_SERVER = Path(__file__).parent / "mcp_servers" / "wild_server.py"


def entry_text(*flags: str) -> str:
    return json.dumps({"command": sys.executable, "args": [str(WILD_SERVER), *flags]})


def test_a_server_configured_twice_runs_neither_entry(tmp_path):
    (tmp_path / "mcp.json").write_text(
        f'{{"mcpServers": {{"w": {entry_text()}, "other": {entry_text()}, "w": {entry_text("--junk-at-start")}}}}}',
        encoding="utf-8")
    servers, problems = read_config(tmp_path)
    assert set(servers) == {"other"}
    assert "configured twice" in problems["w"]


async def test_the_api_tells_why_an_entry_is_invalid(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mcp.json").write_text(
        f'{{"mcpServers": {{"w": {entry_text()}, "w": {entry_text()}, "bad": {{"command": 5}}, "ok": {entry_text()}}}}}',
        encoding="utf-8")
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            listing = await api.ok("GET", "/v1/mcp/servers")
            assert [s["name"] for s in listing["data"]] == ["ok"]
            assert "'w' is configured twice" in listing["config_error"] and "'bad'" in listing["config_error"]
            for name, why in (("w", "configured twice"), ("bad", "valid string")):
                for method, path in (("GET", f"/v1/mcp/servers/{name}"), ("POST", f"/v1/mcp/servers/{name}/enable"),
                                     ("POST", f"/v1/mcp/servers/{name}/disable")):
                    status, body = await api.call(method, path)
                    assert status == 400, (method, path, status, body)
                    assert body["error"]["code"] == "invalid_mcp_config" and why in body["error"]["message"]
            status, body = await api.call("POST", "/v1/mcp/servers/nope/enable")
            assert status == 404 and body["error"]["code"] == "not_found"
            assert (await api.ok("POST", "/v1/mcp/servers/ok/disable"))["state"] == "disabled"
            assert (await api.ok("POST", "/v1/mcp/servers/ok/disable"))["state"] == "disabled"  # twice: the same
            assert (await api.ok("POST", "/v1/mcp/servers/ok/enable"))["enabled"] is True


async def test_jan_mcp_add_keeps_relative_paths_meaning_what_they_meant(tmp_path):
    """`jan mcp add w python wild_server.py` in the server's folder: the file is there, not where jan will run, so
    the entry starts the server in that folder, and it runs from a jan started anywhere."""
    import shutil

    from jan.core import ExtensionManager, McpHost
    from jan.extensions.mcp import McpHostExtension
    from test_cli_helpers import cli_env, fails, jan, ok

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(WILD_SERVER, project / "wild_server.py")
    data = tmp_path / "data"
    env = cli_env(data)
    added = ok(jan("mcp", "add", "w", sys.executable, "wild_server.py", env=env, cwd=project))
    assert str(project) in added.stdout
    ok(jan("mcp", "add", "absolute", sys.executable, str(WILD_SERVER), env=env, cwd=project))
    fails(jan("mcp", "add", "ftp", "ftp://example.com/mcp", env=env), "http:// or https://")
    config = json.loads((data / "mcp.json").read_text())["mcpServers"]
    assert config["w"]["cwd"] == str(project)
    assert "cwd" not in config["absolute"]  # nothing relative: the entry is as typed
    assert "ftp" not in config

    manager = ExtensionManager(data, discover_entry_points=False)  # (this test runs in another folder)
    manager.register(McpHostExtension())
    await manager.start()
    try:
        status = await manager.get(McpHost).server("w")
        assert status.state == "running", status.error
    finally:
        await manager.stop()


@pytest.mark.parametrize("text, why", [('{"broken', "is not valid JSON"), ('{"mcpServers": []}', "must be an object")])
def test_an_mcp_json_that_cannot_be_read_says_what_to_do_and_is_kept(tmp_path, text, why):
    """`jan mcp add`/`remove` onto an mcp.json that is no JSON (or whose mcpServers is no object) refuse, rightly,
    but said only "... is not valid JSON: <parser's words>", not what to do, where a file that cannot be read or is
    not UTF-8 says "repair or remove it". The file stays as it was."""
    from test_cli_helpers import cli_env, jan

    data = tmp_path / "data"
    data.mkdir()
    (data / "mcp.json").write_text(text, encoding="utf-8")
    env = cli_env(data)
    for args in (["mcp", "add", "x", sys.executable, str(WILD_SERVER)], ["mcp", "remove", "x"], ["mcp", "list"]):
        result = jan(*args, env=env)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result
        assert why in result.stderr and "repair or remove it" in result.stderr, (args, result.stderr)
    assert (data / "mcp.json").read_text(encoding="utf-8") == text
