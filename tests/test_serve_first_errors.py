"""The errors a new user meets first when starting `jan serve`, each one line that says what to do, never a
traceback nor ``[Errno N]``: the port taken (most often by a `jan serve` started before), a --host that is no
address here, a port that needs rights, and a data folder that cannot be made or written."""

from __future__ import annotations

import errno
import socket

import pytest

from test_cli_helpers import cli_env, free_port, jan, read_only_prefix, restore_writable


def _last_line(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@pytest.mark.parametrize("flag", ["--port", "--ollama-port"])
def test_a_port_in_use_says_what_holds_it_and_which_flag_to_change(tmp_path, busy_port, flag):
    env = cli_env(tmp_path / "jan", local=False)
    args = ["--port", str(busy_port)] if flag == "--port" else ["--port", str(free_port()), flag, str(busy_port)]
    last = _last_line(jan("serve", *args, env=env))
    assert last.startswith(f"jan: error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"), last
    assert "`jan serve` already running" in last and f"another port with {flag}" in last, last
    assert "while attempting to bind" not in last  # asyncio's own words, said once by the system's


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_a_host_that_is_no_address_here_says_to_give_one(tmp_path, host):
    last = _last_line(jan("serve", "--host", host, "--port", str(free_port()), env=cli_env(tmp_path / "jan")))
    assert last.startswith(f"jan: error: cannot listen on {host}:") and "give --host an address" in last, last


def test_a_port_that_needs_rights_says_to_pick_a_higher_one():
    from jan.cli.serve import _listen_hint

    hint = _listen_hint(OSError(errno.EACCES, "Permission denied"), "--ollama-port")
    assert "below 1024" in hint and "--ollama-port 1024 or above" in hint


def test_a_data_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path):
    """Before: `jan serve: [Errno 30] Read-only file system: '/…/jan'`, where every other command said "cannot
    open the data folder" and where to give another."""
    parent = tmp_path / "ro"
    parent.mkdir()
    prefix = read_only_prefix(parent)
    if prefix is None:
        pytest.skip("no way to make a folder read-only here (neither a read-only mount nor permission bits)")
    import subprocess

    from test_cli_helpers import JAN

    folder = parent / "jan"
    try:
        result = subprocess.run([*prefix, *JAN, "serve", "--port", str(free_port()), "--data-folder", str(folder)],
                                env=cli_env(folder, local=False), capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
    finally:
        restore_writable(parent)
    last = _last_line(result)
    assert last.startswith(f"jan: error: cannot open the data folder {folder}: "), last
    assert "--data-folder" in last and "$JAN_DATA_FOLDER" in last, last
    assert not folder.exists()


@pytest.mark.parametrize("args, said", [
    (("-m", "storis260K"), "jan: error: 'storis260K' is neither a model id in the data folder nor a GGUF file: "
                           "did you mean 'stories260K'? (model ids are exact)"),
    (("--default-model", "Stories260K"), "jan: error: --default-model 'Stories260K' is no model in {data} nor one "
                                         "given with --model; did you mean 'stories260K'? (model ids are exact)"),
    (("-m", "stories260K.gguf"), "jan: error: no such file: stories260K.gguf: did you mean 'stories260K'? "
                                 "(model ids are exact)"),
], ids=["--model", "--default-model", "--model-file-name"])
def test_a_model_id_given_wrong_at_start_names_the_model_meant(tmp_path, stories_path, args, said):
    """Every request and command said "did you mean" for an id off by case or a typo; `jan serve`'s own
    --model and --default-model, the first ids a new user types, said only "not found"."""
    data = tmp_path / "jan"
    env = cli_env(data)
    assert jan("models", "import", str(stories_path), env=env).returncode == 0
    last = _last_line(jan("serve", "--port", str(free_port()), *args, env=cli_env(data, local=False)))
    assert last == said.format(data=data), last


def test_a_model_file_whose_id_is_another_files_model_says_what_to_do(tmp_path, stories_path):
    """`jan serve -m FILE` imports FILE by reference under the id its name gives; where the data folder's model of
    that id is another file (imported as a copy, made by Ollama's /api/create), the start said only "model 'x'
    already exists", which a first start cannot act on."""
    data = tmp_path / "jan"
    env = cli_env(data)
    assert jan("models", "import", str(stories_path), "--mode", "copy", env=env).returncode == 0
    last = _last_line(jan("serve", "--port", str(free_port()), "-m", str(stories_path), env=cli_env(data, local=False)))
    assert last == (f"jan: error: {stories_path}: the data folder's model 'stories260K' is another file; start that "
                    f"one by its id (-m stories260K), or import this file under another id first (jan models import "
                    f"{stories_path} --id NAME)"), last


@pytest.mark.parametrize("by", ["id", "path", "default"])
def test_a_model_whose_model_json_is_damaged_is_told_so_at_start(tmp_path, stories_path, by):
    """`jan serve -m ID` of a model whose model.json is damaged said "'ID' is neither a model id in the data folder
    nor a GGUF file", and `-m FILE` of its very file "the data folder's model 'ID' is another file; start that one by
    its id (-m ID)", which fails as said above, and --default-model ID "is no model in <folder>". Each now says the
    model.json is damaged and what to repair or remove."""
    data = tmp_path / "jan"
    assert jan("models", "import", str(stories_path), env=cli_env(data)).returncode == 0
    (data / "models" / "stories260K" / "model.json").write_text("{not json")
    flag, spec = ("--default-model", "stories260K") if by == "default" else (
        "-m", "stories260K" if by == "id" else str(stories_path))
    last = _last_line(jan("serve", "--port", str(free_port()), flag, spec, env=cli_env(data, local=False)))
    assert "model 'stories260K' is damaged" in last and "repair or remove models/stories260K/model.json" in last, last
    assert "neither a model id" not in last and "another file" not in last, last
    assert (data / "models" / "stories260K" / "model.json").read_text() == "{not json"


def test_a_model_file_imported_as_a_link_starts_by_its_path(tmp_path, stories_path):
    """The README's first steps, `jan models import FILE` (a symlink, the default) and then `jan serve -m FILE`,
    stopped the start with "the data folder's model 'stories260K' is another file": only a model imported by
    reference was known by its path. The model whose weights are that very file is the one started."""
    import httpx

    from server_helpers import start_server

    data = tmp_path / "data"
    assert jan("models", "import", str(stories_path), env=cli_env(data)).returncode == 0
    srv = start_server(tmp_path, [stories_path])
    try:
        models = httpx.get(srv.base_url + "/v1/models", timeout=60).json()["data"]
    finally:
        srv.stop()
    assert [m["id"] for m in models] == ["stories260K"], models
    assert sorted(p.name for p in (data / "models").iterdir()) == ["stories260K"]  # no second import
