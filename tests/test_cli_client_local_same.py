"""Commands with a local mode (reading the data folder) and a client mode (asking a running server) show the same
thing: one formatter for both. Before, `jan mcp list` against a server left out mcp.json's invalid entries (local
mode showed each as "invalid" with why) and said nothing of a file it could not read."""

from __future__ import annotations

import json
import sys

import pytest
from api_helpers import running
from test_cli_helpers import cli_env, fails, jan, ok

pytestmark = pytest.mark.timeout(300)


def test_mcp_list_shows_invalid_entries_the_same_in_both_modes(tmp_path):
    data = tmp_path / "jan"
    data.mkdir()
    (data / "mcp.json").write_text(json.dumps({"mcpServers": {
        "good": {"command": sys.executable, "args": ["-c", "pass"], "disabled": True},
        "bad": {"command": 5}, "odd": {"command": "echo", "disabled": "yes"}}}), encoding="utf-8")
    local_json = json.loads(ok(jan("mcp", "list", "--json", env=cli_env(data))).stdout)
    local = ok(jan("mcp", "list", env=cli_env(data)))
    with running(data) as srv:
        env = cli_env(data, local=False)
        client_json = json.loads(ok(jan("mcp", "list", "--json", "--url", srv.base_url, env=env)).stdout)
        client = ok(jan("mcp", "list", "--url", srv.base_url, env=env))

    def shown(servers):
        return [(s["name"], s["state"], s.get("error"), s["enabled"]) for s in servers]

    assert shown(client_json) == shown(local_json)
    assert [s[0] for s in shown(local_json)] == ["good", "bad", "odd"]
    # the errors are told after the table (on stderr), where they widen no row of it
    def errors(result):
        return [line for line in result.stderr.splitlines() if line.startswith(("jan: bad: ", "jan: odd: "))]

    assert "invalid" in client.stdout and "'disabled'" not in client.stdout
    assert any("'disabled'" in e for e in errors(client)) and any("valid string" in e for e in errors(client))
    assert client.stdout == local.stdout and errors(client) == errors(local)


def test_mcp_list_tells_an_unreadable_mcp_json_in_both_modes(tmp_path):
    data = tmp_path / "jan"
    data.mkdir()
    (data / "mcp.json").write_text("{not json", encoding="utf-8")
    local = fails(jan("mcp", "list", env=cli_env(data)), "not valid JSON")
    with running(data) as srv:
        client = fails(jan("mcp", "list", "--url", srv.base_url, env=cli_env(data, local=False)), "not valid JSON")
    assert client == local


def test_files_list_warns_of_a_damaged_file_in_both_modes(tmp_path):
    """Before: `jan files list` told a damaged file.json (why a file is missing) only in local mode: the server's
    list said nothing of it."""
    data = tmp_path / "jan"
    note = tmp_path / "note.txt"
    note.write_text("hello")
    env = cli_env(data)
    kept = ok(jan("files", "upload", str(note), env=env)).stdout.strip()
    damaged = ok(jan("files", "upload", str(note), env=env)).stdout.strip()
    meta = next(p for p in (data / "files").rglob("*.json") if damaged in str(p.parent.name))
    meta.write_text("{torn", encoding="utf-8")
    local = ok(jan("files", "list", "--json", env=env))
    assert [f["id"] for f in json.loads(local.stdout)] == [kept]
    assert "damaged file" in local.stderr and damaged in local.stderr
    assert meta.read_text(encoding="utf-8") == "{torn"  # (left in place: a listing moves nothing)
    with running(data) as srv:
        client = ok(jan("files", "list", "--json", "--url", srv.base_url, env=cli_env(data, local=False)))
    assert [f["id"] for f in json.loads(client.stdout)] == [kept]
    assert "damaged file" in client.stderr and damaged in client.stderr


def test_models_show_tells_the_file_in_both_modes(tmp_path, stories_path):
    """`jan models show` told the weights file (and a missing one) only without a server: through one the same
    model had no `file` line though the server's model object names it."""
    import shutil

    data = tmp_path / "jan"
    shutil.copyfile(stories_path, tmp_path / "gone.gguf")
    for source, model_id in ((stories_path, "stories"), (tmp_path / "gone.gguf", "gone")):
        ok(jan("models", "import", source, "--id", model_id, "--mode", "reference", env=cli_env(data)))
    (tmp_path / "gone.gguf").unlink()
    local = {m: ok(jan("models", "show", m, env=cli_env(data))).stdout.splitlines() for m in ("stories", "gone")}
    assert f"file:     {stories_path}" in local["stories"], local
    assert "file:     (missing: pull or import it again)" in local["gone"], local
    with running(data) as srv:
        env = cli_env(data, local=False, JAN_API_URL=srv.base_url)
        for model_id, lines in local.items():
            served = ok(jan("models", "show", model_id, env=env)).stdout.splitlines()
            assert [line for line in served if not line.startswith("state:")] == lines, (model_id, served)
