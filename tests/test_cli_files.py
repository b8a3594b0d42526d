"""`jan files` (list, show, upload, download, delete), on the data folder and through a running server, and
`jan serve --max-upload-bytes`: driven as a user drives them, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest
from api_helpers import post_form

from test_cli_helpers import JAN, cli_env, fails, jan, ok

#: Bytes no text decoding would keep as they are.
BINARY = bytes(range(256)) * 300


def _upload_id(result: subprocess.CompletedProcess) -> str:
    file_id = ok(result).stdout.strip()
    assert file_id.startswith("file-"), result.stdout
    return file_id


def _listed(env, *args: str) -> list[dict]:
    return json.loads(ok(jan("files", "list", "--json", *args, env=env)).stdout)


def _check_the_commands(env, tmp_path, *, where: str) -> None:
    """Every command, as a user uses them, where ``env`` points (the data folder or a server)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n", encoding="utf-8")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(BINARY)
    notes_id = _upload_id(jan("files", "upload", notes, env=env))
    blob_id = _upload_id(jan("files", "upload", blob, "--purpose", "assistants", "--name", "données.bin", env=env))

    # list: newest first, a table or JSON, one purpose's
    assert [f["id"] for f in _listed(env)] == [blob_id, notes_id]
    assert [f["id"] for f in _listed(env, "--purpose", "assistants")] == [blob_id]
    assert _listed(env, "--purpose", "vision") == []
    lines = ok(jan("files", "list", env=env)).stdout.splitlines()
    assert lines[0].split() == ["ID", "FILENAME", "PURPOSE", "SIZE", "CREATED"]
    assert lines[1].split()[:3] == [blob_id, "données.bin", "assistants"] and "75.0 KiB" in lines[1]
    assert lines[2].split()[:4] == [notes_id, "notes.txt", "user_data", "11"]
    empty = jan("files", "list", "--purpose", "vision", env=env)
    assert ok(empty).stdout == "" and "no files uploaded for vision" in empty.stderr

    # show: the file object
    shown = json.loads(ok(jan("files", "show", blob_id, "--json", env=env)).stdout)
    assert (shown["id"], shown["object"], shown["bytes"], shown["filename"], shown["purpose"]) == \
        (blob_id, "file", len(BINARY), "données.bin", "assistants")
    text = ok(jan("files", "show", notes_id, env=env)).stdout
    assert f"id:        {notes_id}" in text and "filename:  notes.txt" in text and "expires:   never" in text

    # download: the bytes as uploaded, to a file (replaced whole) or to a pipe
    out = tmp_path / "out" / "copy.bin"
    out.parent.mkdir()
    out.write_bytes(b"an older copy")
    ok(jan("files", "download", blob_id, "-o", out, env=env))
    assert out.read_bytes() == BINARY
    assert [p.name for p in out.parent.iterdir()] == ["copy.bin"]  # no temporary file left beside it
    piped = subprocess.run([*JAN, "files", "download", notes_id], env=env, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    assert piped.returncode == 0 and piped.stdout == b"some notes\n", piped.stderr

    # an id given wrong (cut short when copied, a character mistyped) names the one meant, as threads' and models' do
    for given in (blob_id[:-1], blob_id[:-1] + ("A" if blob_id[-1] != "A" else "B")):
        for command in ("show", "delete", "download"):
            fails(jan("files", command, given, "-o" if command == "download" else "--json",
                      *([str(tmp_path / "x.bin")] if command == "download" else []), env=env),
                  f"file '{given}' {where}", f"did you mean '{blob_id}'?", "(see `jan files list`)")
    assert "did you mean" not in fails(jan("files", "show", "file-nothing-like-it", env=env), where)

    # delete: gone for every command after it
    assert ok(jan("files", "delete", notes_id, env=env)).stdout.strip() == f"{notes_id}: deleted"
    assert [f["id"] for f in _listed(env)] == [blob_id]
    fails(jan("files", "show", notes_id, env=env), notes_id, where)
    fails(jan("files", "delete", notes_id, env=env), notes_id, where)
    missing = tmp_path / "never.bin"
    fails(jan("files", "download", notes_id, "-o", missing, env=env), notes_id, where)
    assert not missing.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "notes.txt", "out"]
    # (nor a download of an id given wrong: no x.bin)
    deleted = json.loads(ok(jan("files", "delete", blob_id, "--json", env=env)).stdout)
    assert deleted == {"id": blob_id, "object": "file", "deleted": True}
    assert _listed(env) == []


# -- without a server: the data folder ---------------------------------------------------------------------------
def test_the_commands_on_the_data_folder(env, data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _check_the_commands(env, work, where="not found in")
    assert (data / "files").is_dir()  # the data folder's own store, the one the server reads


def test_bad_arguments_are_usage_errors(env, tmp_path):
    # a missing file is the disk's state, not a usage error: exit 1 naming it (tests/test_cli_input_paths.py)
    fails(jan("files", "upload", tmp_path / "nope.txt", env=env), f"PATH: no such file: {tmp_path / 'nope.txt'}")
    (tmp_path / "a.txt").write_text("a")
    bad = jan("files", "upload", tmp_path / "a.txt", "--purpose", "homework", env=env)
    assert bad.returncode == 2 and "--purpose" in bad.stderr
    assert jan("files", "list", "--purpose", "homework", env=env).returncode == 2
    fails(jan("files", "show", "../../etc", env=env), "not found")  # an id that is none: never a path


def test_help_lists_the_files_commands(env):
    assert "  files" in ok(jan("--help", env=env)).stdout
    out = ok(jan("files", "--help", env=env)).stdout
    for name in ("list", "show", "upload", "download", "delete"):
        assert f"  {name}" in out


# -- through a server: `jan serve --max-upload-bytes` --------------------------------------------------------------
LIMIT = 128 * 1024  # above BINARY, the largest file the commands upload


@pytest.fixture
def served(tmp_path):
    """`jan serve --max-upload-bytes LIMIT` (no models) on a free port; (its URL, an env for commands that use it, the
    data folder). Up once it says where it listens."""
    data = tmp_path / "served"
    env = cli_env(data, local=False)
    proc = subprocess.Popen([*JAN, "serve", "--port", "0", "--max-upload-bytes", str(LIMIT), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()  # blocks until the server listens (or exits: an empty line)
        assert "jan is listening on " in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split("jan is listening on ", 1)[1].split()[0]
        yield url, {**env, "JAN_API_URL": url}, data
    finally:
        proc.kill()
        proc.wait(30)


def _raw_upload(url: str, content: bytes, purpose: str = "user_data") -> tuple[int, dict]:
    return post_form(url, {"purpose": purpose}, filename="x.bin", content=content)


def test_serve_max_upload_bytes_refuses_a_larger_upload(served):
    url, _, data = served
    status, file = _raw_upload(url, b"x" * LIMIT)
    assert status == 200 and file["bytes"] == LIMIT, file  # the limit itself is kept
    status, err = _raw_upload(url, b"x" * (LIMIT + 1))
    assert status == 413 and err["error"]["code"] == "file_too_large" and err["error"]["param"] == "file", err
    assert str(LIMIT) in err["error"]["message"]
    assert [p.name for p in (data / "files").iterdir() if not p.name.startswith(".")] == [file["id"]]


def test_the_commands_through_a_server(served, tmp_path):
    url, env, data = served
    work = tmp_path / "work"
    work.mkdir()
    _check_the_commands(env, work, where=f"not found on the server at {url}")
    # the CLI's upload over the server's limit: one line, the server's 413
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * (LIMIT * 2))
    err = fails(jan("files", "upload", big, env=env), "max_upload_bytes")
    assert "HTTP 413" in err and str(LIMIT) in err
    # (one larger than the server reads at all is refused by its length: still one line)
    huge = tmp_path / "huge.bin"
    huge.write_bytes(b"z" * (LIMIT + 2 * 1024 * 1024))
    fails(jan("files", "upload", huge, env=env), "max_upload_bytes")
    # the server's files and the data folder's are the same: an upload made without it is listed by it
    local = cli_env(data, local=True)
    (tmp_path / "offline.txt").write_text("written while offline")
    offline_id = _upload_id(jan("files", "upload", tmp_path / "offline.txt", env=local))
    assert [f["id"] for f in _listed(env)] == [offline_id]
    with urllib.request.urlopen(f"{url}/v1/files/{offline_id}/content", timeout=60) as resp:
        assert resp.read() == b"written while offline"


def test_serve_refuses_a_max_upload_bytes_that_is_no_size(tmp_path):
    env = cli_env(tmp_path / "data")
    for bad in ("0", "-1", "lots"):
        result = jan("serve", "--port", "0", "--max-upload-bytes", bad, env=env)
        assert result.returncode == 2 and "--max-upload-bytes" in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_the_server_config_default_is_the_stores():
    from jan.server.config import ServerConfig
    from jan.store.uploads import DEFAULT_MAX_UPLOAD_BYTES

    assert ServerConfig().max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 512 * 1024 * 1024
