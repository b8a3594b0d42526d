"""Every ``jan`` command that writes a file the user names (``-o FILE``) writes it atomically: a hidden temporary file
beside it, fsynced and renamed over it (``jan.cli.common.write_output_file`` over ``jan.core.fs.atomic_writer``). A
failure or Ctrl-C midway leaves an existing file as it was and no temporary file behind; ``-o -`` is stdout."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
from click.testing import CliRunner

from jan.cli import files as files_cli
from jan.cli import main
from jan.cli import threads as threads_cli
from jan.cli.common import write_output_file
from jan.store import DataFolder

OLD = b"the old content, kept\n"


@pytest.fixture
def made(data, tmp_path):
    """A data folder with a thread and an uploaded file; returns the command lines (less ``-o``) of every command
    that writes a user-named file, with the module whose ``write_output_file`` it calls."""
    store = DataFolder(data)
    thread = store.threads.create("Pirates", messages=[{"role": "user", "content": "Tell me about pirates " * 200}])
    source = tmp_path / "notes.txt"
    source.write_bytes(b"0123456789" * 50_000)
    result = CliRunner().invoke(main, ["files", "upload", str(source), "--local", "--data-folder", str(data),
                                       "--json"])
    assert result.exit_code == 0, result.output
    file_id = json.loads(result.stdout)["id"]
    local = ["--local", "--data-folder", str(data)]
    return {
        "threads export markdown": (threads_cli, ["threads", "export", thread["id"], *local]),
        "threads export json": (threads_cli, ["threads", "export", thread["id"], "-f", "json", *local]),
        "files download": (files_cli, ["files", "download", file_id, *local]),
    }


COMMANDS = ["threads export markdown", "threads export json", "files download"]


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name != "out.txt")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_file_is_written_whole_and_dash_is_stdout(made, tmp_path, command):
    _module, args = made[command]
    out = tmp_path / "outdir"
    out.mkdir()
    target = out / "out.txt"
    target.write_bytes(OLD)
    os.chmod(target, 0o640)  # a user's permissions survive the replacement
    result = CliRunner().invoke(main, [*args, "-o", str(target)])
    assert result.exit_code == 0, result.output
    written = target.read_bytes()
    assert written != OLD and len(written) > 1000
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(out) == []
    piped = CliRunner().invoke(main, [*args, "-o", "-"])
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes == written
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(made, tmp_path, monkeypatch, command,
                                                                         failure):
    module, args = made[command]

    def half_then_fail(target, write, **kwargs):
        def wrapped(put):
            def put_half(data):
                put(bytes(data[: len(data) // 2]))  # some bytes are in the temporary file when it fails
                raise failure

            write(put_half)

        write_output_file(target, wrapped, **kwargs)

    monkeypatch.setattr(module, "write_output_file", half_then_fail)
    out = tmp_path / "outdir"
    out.mkdir()
    target = out / "out.txt"
    target.write_bytes(OLD)
    result = CliRunner().invoke(main, [*args, "-o", str(target)])
    assert result.exit_code != 0
    if isinstance(failure, OSError):
        assert result.exit_code == 1 and f"cannot write {target}" in result.output
    assert target.read_bytes() == OLD
    assert _leftovers(out) == []


def test_an_export_whose_serializer_fails_leaves_the_old_file(made, tmp_path, monkeypatch):
    _module, args = made["threads export markdown"]

    def broken(*args, **kwargs):  # (whatever the serializer is given)
        raise RuntimeError("serializer broke")

    monkeypatch.setattr(threads_cli, "to_markdown", broken)
    target = tmp_path / "out.txt"
    target.write_bytes(OLD)
    result = CliRunner().invoke(main, [*args, "-o", str(target)])
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert target.read_bytes() == OLD
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".out.txt")]


def test_a_new_output_file_gets_the_umask_mode(made, tmp_path):
    _module, args = made["threads export json"]
    target = tmp_path / "new.json"
    old_umask = os.umask(0o027)
    try:
        result = CliRunner().invoke(main, [*args, "-o", str(target)])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_file_inside_the_data_folder_is_refused(made, data, command):
    """``-o`` naming one of jan's own files (a thread's messages.jsonl, a model.json...) replaced it with the export
    and lost what it held: refused before anything is written, for every command that writes a user-named file."""
    _module, args = made[command]
    store = DataFolder(data)
    thread_id = store.threads.list().data[0]["id"]
    messages = next(p for p in (data / "threads" / thread_id).iterdir() if p.name.startswith("messages"))
    before = messages.read_bytes()
    for target in (messages, data / "exported.txt", data / "threads" / ".." / "x.md"):
        result = CliRunner().invoke(main, [*args, "-o", str(target)])
        assert result.exit_code == 1 and "inside jan's data folder" in result.output, result.output
    assert messages.read_bytes() == before and not (data / "exported.txt").exists() and not (data / "x.md").exists()
