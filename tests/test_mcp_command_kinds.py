"""An mcp.json ``command`` that names something there but no program (a folder, a file without execute permission)
is told as what it is, not as "No such file or directory" (which sends the user looking for a typo in a path they
can see)."""

from __future__ import annotations

import json
import sys

import pytest
from api_helpers import Client, running
from jan.extensions.mcp.server import guarded_command

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the command is checked where guarded")]


def test_guarded_command_tells_a_folder_and_a_file_that_does_not_run(tmp_path):
    script = tmp_path / "server.py"
    script.write_text("print('hi')\n")
    script.chmod(0o644)
    with pytest.raises(PermissionError, match="not executable"):
        guarded_command(str(script), [], None, None)
    with pytest.raises(PermissionError, match="not executable"):
        guarded_command("./server.py", [], None, str(tmp_path))  # relative to the entry's cwd
    with pytest.raises(IsADirectoryError, match="a folder, not a program"):
        guarded_command(str(tmp_path), [], None, None)
    with pytest.raises(FileNotFoundError):
        guarded_command(str(tmp_path / "missing"), [], None, None)
    script.chmod(0o755)
    assert guarded_command(str(script), ["--x"], None, None)[1][-2:] == [str(script), "--x"]


def test_a_cwd_that_is_no_folder_is_told_as_the_cwd(tmp_path):
    """Before: a missing 'cwd' was taken silently and each start failed as "No such file or directory" of the
    program (a folder the user can see, or a program that is there)."""
    with pytest.raises(NotADirectoryError, match=r"'cwd' is no folder to start in \(no such folder: .*gone"):
        guarded_command(sys.executable, [], None, str(tmp_path / "gone"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a regular file, not a folder"):
        guarded_command(sys.executable, [], None, str(tmp_path / "file"))
    assert guarded_command(sys.executable, [], None, str(tmp_path))  # made later: it starts


async def test_the_api_says_why_such_a_server_did_not_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    script = tmp_path / "server.py"
    script.write_text("print('hi')\n")
    script.chmod(0o644)
    (data / "mcp.json").write_text(json.dumps({"mcpServers": {
        "plain": {"command": str(script)}, "folder": {"command": str(tmp_path)}}}), encoding="utf-8")
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            for name, why in (("plain", "not executable"), ("folder", "a folder, not a program")):
                server = await api.ok("GET", f"/v1/mcp/servers/{name}")
                assert server["state"] == "failed" and why in server["error"], server
                assert "No such file" not in server["error"]


def test_jan_mcp_add_writes_through_a_linked_mcp_json(tmp_path):
    from test_cli_helpers import cli_env, jan, ok

    data = tmp_path / "jan"
    data.mkdir()
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "mcp.json").write_text('{"mcpServers": {}}\n', encoding="utf-8")
    (data / "mcp.json").symlink_to(dotfiles / "mcp.json")
    ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=cli_env(data)))
    assert (data / "mcp.json").is_symlink()
    assert list(json.loads((dotfiles / "mcp.json").read_text(encoding="utf-8"))["mcpServers"]) == ["notes"]


@pytest.mark.parametrize("entry, why", [
    ({"url": "http://127.0.0.1:99999/mcp"}, "Port out of range"), ({"url": "http://h:abc/mcp"}, "is not a URL"),
    ({"url": "http://[::1/mcp"}, "is not a URL"), ({"url": "http:///mcp"}, "has no host"),
    ({"command": "   "}, "names no program"), ({"command": "echo\0"}, "names no program")])
def test_an_entry_that_can_never_start_is_invalid_in_the_file(tmp_path, entry, why):
    # told where the file is read ("invalid", with the entry), not as a failure at each start
    from jan.extensions.mcp.config import read_config

    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {"bad": entry, "good": {"command": "echo"}}}),
                                       encoding="utf-8")
    servers, problems = read_config(tmp_path)
    assert list(servers) == ["good"] and why in problems["bad"], problems
    assert "Value error" not in problems["bad"], problems  # our validator's sentence, not pydantic's wrapping of it


@pytest.mark.parametrize("entry, field", [
    ({"command": "echo", "disabled": "yes"}, "disabled"), ({"command": "echo", "disabled": 1}, "disabled"),
    ({"command": "echo", "timeout": "30"}, "timeout"), ({"command": "echo", "args": [1]}, "args.0"),
    ({"command": "echo", "env": {"A": 1}}, "env.A"), ({"url": "http://h/mcp", "headers": {"X": True}}, "headers.X")])
def test_an_entry_value_of_another_type_is_invalid_not_converted(tmp_path, entry, field):
    """Before: pydantic's lax mode took "yes" and 1 as true, "30" as 30 seconds, 1 as the argument "1"."""
    from jan.extensions.mcp.config import read_config

    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {"bad": entry, "good": {"command": "echo"}}}),
                                       encoding="utf-8")
    servers, problems = read_config(tmp_path)
    assert list(servers) == ["good"] and f"server 'bad': {field!r}: " in problems["bad"], problems
