"""`jan mcp add/remove` refuse what they cannot do as asked: ``--url`` (no API changes a server's MCP servers:
only mcp.json starts programs, so they would edit this machine's folder instead of that server's) and a server
name holding ``__`` (the separator of ``<server>__<tool>``)."""

from __future__ import annotations

import json
import sys

import pytest
from test_cli_helpers import cli_env, fails, jan, ok

pytestmark = pytest.mark.timeout(300)


def test_add_and_remove_refuse_url_and_leave_every_folder_alone(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data, local=False)
    for args in (("add", "notes", sys.executable, "server.py"), ("remove", "notes")):
        fails(jan("mcp", *args, "--url", "http://127.0.0.1:9", env=env), "--url", "cannot be changed over its API",
              "--data-folder")
    assert not data.exists()  # no folder made, no mcp.json written


def test_a_server_name_with_double_underscore_is_refused(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data)
    fails(jan("mcp", "add", "a__b", sys.executable, "server.py", env=env), "a__b", "without '__'")
    assert not (data / "mcp.json").exists()
    ok(jan("mcp", "add", "a_b", sys.executable, "server.py", env=env))
    assert list(json.loads((data / "mcp.json").read_text())["mcpServers"]) == ["a_b"]


def test_an_edit_the_running_server_does_not_see_is_told(tmp_path):
    # `jan mcp add/remove` edit this machine's data folder; a jan server answering at the URL that was started on
    # another folder never sees the edit: a warning says so (the edit itself stands), and none when it does see it.
    from api_helpers import running

    served = tmp_path / "served"
    with running(served) as srv:
        other = cli_env(tmp_path / "here", local=False, JAN_API_URL=srv.base_url)
        same = cli_env(served, local=False, JAN_API_URL=srv.base_url)
        added = ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=other))
        assert "does not list 'notes'" in added.stderr and "--data-folder" in added.stderr, added.stderr
        assert "Traceback" not in added.stderr
        assert list(json.loads((tmp_path / "here" / "mcp.json").read_text())["mcpServers"]) == ["notes"]
        ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=same))
        removed = ok(jan("mcp", "remove", "notes", env=other))
        assert "still lists 'notes'" in removed.stderr, removed.stderr
        for args in (("remove", "notes"), ("add", "notes", sys.executable, "server.py")):
            fine = ok(jan("mcp", *args, env=same))
            assert "warning" not in fine.stderr, fine.stderr
