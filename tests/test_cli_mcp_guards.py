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


def test_an_edit_the_running_server_would_not_see_is_refused(tmp_path):
    # `jan mcp add/remove` edit a data folder; with $JAN_DATA_FOLDER naming another folder than the one the jan
    # server answering at the URL works on, the server would never see the edit: refused before it is made (it was
    # made, then warned of), naming both folders; none when they are the same folder.
    from api_helpers import running

    served = tmp_path / "served"
    with running(served) as srv:
        other = cli_env(tmp_path / "here", local=False, JAN_API_URL=srv.base_url)
        same = cli_env(served, local=False, JAN_API_URL=srv.base_url)
        fails(jan("mcp", "add", "notes", sys.executable, "server.py", env=other), str(served), str(tmp_path / "here"),
              "--data-folder")
        assert not (tmp_path / "here").exists()
        ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=same))
        fails(jan("mcp", "remove", "notes", env=other), str(served), str(tmp_path / "here"))
        assert list(json.loads((served / "mcp.json").read_text())["mcpServers"]) == ["notes"]
        for args in (("remove", "notes"), ("add", "notes", sys.executable, "server.py")):
            fine = ok(jan("mcp", *args, env=same))
            assert "warning" not in fine.stderr, fine.stderr

@pytest.mark.parametrize("target, why", [("http://", "has no host"), ("http://[::1/mcp", "is not a URL"),
                                         ("http://h:99999/mcp", "Port out of range"), ("   ", "names no program")])
def test_an_entry_that_can_never_start_is_refused_as_typed_not_as_the_files_fault(tmp_path, target, why):
    # Before: "jan: error: <data>/mcp.json: server 'web': Value error, 'url' 'http://' has no host": the file named
    # as if it were damaged (it is fine, and left as it was) and pydantic's prefix on jan's own sentence.
    data = tmp_path / "jan"
    env = cli_env(data)
    ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=env))
    before = (data / "mcp.json").read_bytes()
    err = fails(jan("mcp", "add", "web", target, env=env), "COMMAND_OR_URL", why)
    assert "mcp.json" not in err and "Value error" not in err, err
    assert (data / "mcp.json").read_bytes() == before


def test_a_header_given_as_curl_writes_it_is_kept_as_its_name_and_value(tmp_path):
    """`jan mcp add --header "Authorization: Bearer abc=="` (curl's and Claude Code's form; a base64 key ends with
    "=") was split at its first "=": a header named "Authorization: Bearer abc" with the value "=", kept in mcp.json
    and sent as written. Now that form is read as curl reads it, and a name that is no HTTP token is refused, from the
    command line (naming --header) and in mcp.json alike (the entry is invalid, as every other mistake in it is)."""
    import json

    from click.testing import CliRunner

    from jan.cli import main
    from jan.extensions.mcp.config import parse_entry

    data = tmp_path / "d"
    env = {"JAN_DATA_FOLDER": str(data), "JAN_LOCAL": "1"}
    runner = CliRunner()
    url = "http://127.0.0.1:9/mcp"
    added = runner.invoke(main, ["mcp", "add", "web", url, "--header", "Authorization: Bearer abc==",
                                 "--header", "X-Key=a=b"], env=env)
    assert added.exit_code == 0, added.output
    saved = json.loads((data / "mcp.json").read_text())["mcpServers"]["web"]
    assert saved["headers"] == {"Authorization": "Bearer abc==", "X-Key": "a=b"}
    for header in ("Bad Name=1", "A=b\nc", ": x"):
        refused = runner.invoke(main, ["mcp", "add", "other", url, "--header", header], env=env)
        assert refused.exit_code == 1 and "--header" in refused.stderr, (header, refused.output)
    assert "other" not in json.loads((data / "mcp.json").read_text())["mcpServers"]
    with pytest.raises(ValueError, match="'headers': 'Authorization: Bearer abc' is no header name"):
        parse_entry({"url": url, "headers": {"Authorization: Bearer abc": "="}})
