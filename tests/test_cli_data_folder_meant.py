"""Which data folder a `jan` command works on, decided once (:class:`jan.cli.common.Connection`): ``--data-folder``,
else ``$JAN_DATA_FOLDER``, else the jan server running here (its ``/health`` says its folder), else ``~/jan``.

Before: `jan mcp add` with a server running on another folder edited ``~/jan/mcp.json`` and warned afterwards;
`jan bench MODEL_ID` made ``~/jan`` to say the server's model is not there; and every read-only command run without
a server (`jan models list`, `jan threads show`, `jan extensions list`, ...) made ``~/jan`` as it looked. Each
test runs `jan` with ``HOME`` a temporary folder, so a stray ``~/jan`` shows."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
from test_cli_helpers import cli_env, fails, jan, ok

pytestmark = pytest.mark.timeout(300)

BENCH = ("-p", "8", "-n", "2", "-r", "1", "-t", "1")


def no_folder_env(home: Path, **extra: str) -> dict[str, str]:
    """A `jan` environment with ``HOME`` set to ``home`` and no ``$JAN_DATA_FOLDER``: the default is ``home/jan``."""
    env = cli_env(home / "jan", local=False)
    env.pop("JAN_DATA_FOLDER")
    return {**env, **extra}


@pytest.fixture()
def served(tmp_path, stories_path):
    """(server, its data folder holding stories260K, HOME for the client): a jan server on another folder."""
    from api_helpers import running

    folder = tmp_path / "served"
    ok(jan("models", "import", str(stories_path), "--data-folder", str(folder), env=cli_env(tmp_path / "unused")))
    home = tmp_path / "home"
    home.mkdir()
    with running(folder) as srv:
        yield srv, folder, home
    assert not (tmp_path / "unused").exists()


def mcp_names(folder: Path) -> list[str]:
    path = folder / "mcp.json"
    return list(json.loads(path.read_text())["mcpServers"]) if path.exists() else []


def listed_by(srv) -> set[str]:
    with urllib.request.urlopen(f"{srv.base_url}/v1/mcp/servers", timeout=30) as resp:
        return {s["name"] for s in json.loads(resp.read())["data"]}


def test_health_tells_its_data_folder_only_to_a_request_with_the_key(tmp_path):
    from api_helpers import running

    with running(tmp_path / "keyed", api_key="sekrit") as srv:
        with urllib.request.urlopen(f"{srv.base_url}/health", timeout=30) as resp:
            assert "data_folder" not in json.loads(resp.read())
        keyed = urllib.request.Request(f"{srv.base_url}/health", headers={"Authorization": "Bearer sekrit"})
        with urllib.request.urlopen(keyed, timeout=30) as resp:
            assert json.loads(resp.read())["data_folder"] == str((tmp_path / "keyed").resolve())


def test_mcp_add_and_remove_edit_the_running_servers_folder(served):
    srv, folder, home = served
    env = no_folder_env(home, JAN_API_URL=srv.base_url)
    added = ok(jan("mcp", "add", "notes", sys.executable, "server.py", env=env))
    assert str(folder / "mcp.json") in added.stdout and "warning" not in added.stderr, added
    assert mcp_names(folder) == ["notes"] and "notes" in listed_by(srv)
    removed = ok(jan("mcp", "remove", "notes", env=env))
    assert "warning" not in removed.stderr, removed.stderr
    assert mcp_names(folder) == [] and "notes" not in listed_by(srv)
    assert not (home / "jan").exists()


def test_bench_of_a_model_id_loads_it_from_the_running_servers_folder(served):
    srv, _, home = served
    out = ok(jan("bench", "stories260K", *BENCH, env=no_folder_env(home, JAN_API_URL=srv.base_url)))
    assert "stories260K" in out.stdout and "tg2" in out.stdout
    assert not (home / "jan").exists()


@pytest.mark.parametrize("args", [("mcp", "add", "notes", sys.executable, "server.py"), ("mcp", "remove", "x"),
                                  ("bench", "stories260K", *BENCH)], ids=lambda a: " ".join(a[:2]))
def test_jan_data_folder_naming_another_folder_than_the_servers_is_refused_naming_both(served, tmp_path, args):
    # what the command did in $JAN_DATA_FOLDER the server (whose folder every API command works on) never sees:
    # refused before anything is made or changed, saying which two folders and how to choose
    srv, folder, home = served
    other = tmp_path / "other"
    env = no_folder_env(home, JAN_API_URL=srv.base_url, JAN_DATA_FOLDER=str(other))
    fails(jan(*args, env=env), str(folder), str(other), "--data-folder", "$JAN_DATA_FOLDER")
    assert not other.exists() and not (home / "jan").exists()
    assert mcp_names(folder) == []


def test_data_folder_flag_still_works_on_that_folder_with_a_server_running(served, tmp_path):
    srv, folder, home = served
    other = tmp_path / "other"
    env = no_folder_env(home, JAN_API_URL=srv.base_url)
    ok(jan("mcp", "add", "notes", sys.executable, "server.py", "--data-folder", str(other), env=env))
    assert mcp_names(other) == ["notes"] and mcp_names(folder) == []
    assert not (home / "jan").exists()


READ_ONLY = [("models", "list"), ("models", "show", "x"), ("models", "rm", "x"), ("threads", "list"),
             ("threads", "show", "x"), ("threads", "export", "x"), ("files", "list"), ("files", "show", "x"),
             ("files", "delete", "x"), ("files", "download", "x", "-o", "OUT"), ("mcp", "list"), ("mcp", "remove", "x"),
             ("extensions", "list"), ("extensions", "disable", "x"), ("extensions", "enable", "x"), ("info",),
             ("bench", "x", *BENCH), ("chat", "x"), ("chat", "x.gguf"), ("chat", "--thread", "x"), ("run", "x", "hi")]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_a_command_that_only_reads_makes_no_data_folder(tmp_path, args):
    # no server: it works on ~/jan, which is not there; nothing to read (or remove) there is no reason to make it
    home = tmp_path / "home"
    home.mkdir()
    args = tuple(str(tmp_path / "out") if a == "OUT" else a for a in args)
    result = jan(*args, env=no_folder_env(home, JAN_LOCAL="1"))
    assert "Traceback" not in result.stderr, result.stderr
    if args[1:2] in (("list",), ()):  # a listing of nothing is empty, not an error
        ok(result)
    else:
        fails(result, "x")
    assert not (home / "jan").exists()


def test_a_url_given_that_does_not_answer_stays_an_error_after_the_folder_was_asked_for(tmp_path, monkeypatch):
    # the folder's choice asks the server first (and takes "none" for an answer); the command's own ask must still
    # be told "no jan server answers", not "work locally" from the first ask's cached result
    from jan.cli.common import CLIError, Connection
    from jan.testing.server import free_port

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("JAN_DATA_FOLDER", raising=False)
    conn = Connection(url=f"http://127.0.0.1:{free_port()}", url_explicit=True, api_key=None, data_folder=None,
                      data_explicit=False, local=False)
    assert conn.data_folder == (tmp_path / "jan").resolve()
    with pytest.raises(CLIError, match="no jan server answers"):
        conn.server()
    with pytest.raises(CLIError, match="no jan server answers"):
        conn.server()


def test_run_of_a_gguf_file_makes_no_data_folder(tmp_path, stories_path):
    # `jan run` keeps nothing (no thread): where there is no data folder it answers without making one (it made ~/jan
    # with its whole layout and default assistant); where there is one, it runs on it as before
    home = tmp_path / "home"
    home.mkdir()
    env = no_folder_env(home, JAN_LOCAL="1")
    answer = ok(jan("run", str(stories_path), "Once upon a time", "--raw", "--temp", "0", "-n", "8", env=env))
    assert answer.stdout.strip()
    fails(jan("run", "nosuch", "hi", env=env), "nosuch", str(home / "jan"))
    assert not (home / "jan").exists()
    ok(jan("models", "import", str(stories_path), env=env))
    again = ok(jan("run", "stories260K", "Once upon a time", "--raw", "--temp", "0", "-n", "8", env=env))
    assert again.stdout == answer.stdout


def test_extensions_list_writes_nothing_in_the_data_folder(tmp_path):
    """`jan extensions list` (local) wrote extensions.json into the user's data folder, and set a damaged one aside
    as extensions.json.corrupt-<time>: a listing now changes nothing there, and still lists the built-in ones."""
    data = tmp_path / "jan"
    data.mkdir()
    env = cli_env(data)
    first = ok(jan("extensions", "list", env=env))
    assert "llamacpp" in first.stdout and sorted(p.name for p in data.iterdir()) == []
    (data / "extensions").mkdir()
    (data / "extensions" / "extensions.json").write_text("{oops")
    again = ok(jan("extensions", "list", env=env))
    assert "llamacpp" in again.stdout and "extensions.json is unreadable" in again.stderr, again.stderr
    assert [p.name for p in (data / "extensions").iterdir()] == ["extensions.json"]
    assert (data / "extensions" / "extensions.json").read_text() == "{oops"
