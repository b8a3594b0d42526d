"""What a shell leaves to the command: the locale's output encoding, and a ``~`` it did not expand.

Before: under ``PYTHONIOENCODING=ascii`` (or a latin-1 locale) the first answer piece outside the encoding ended
`jan run`/`jan chat` with a UnicodeEncodeError's traceback, and `jan threads list` under latin-1 likewise; a path
option given as ``--opt=~/x`` (or quoted) was checked by click as the file ``~/x``, "does not exist", where the
option's value was expanded at all (`files upload`, `models import --mmproj`, `serve -md`)."""

from __future__ import annotations

import subprocess

import click
import pytest

from test_cli_helpers import JAN, jan, ok

# the tiny random-weight Llama writes words of many scripts from its 32,000-token vocabulary
ANSWER = ["run", "tiny", "--raw", "Hello", "-n", "24", "--temp", "0"]


@pytest.fixture
def tiny_env(env, tiny_random_path):
    ok(jan("models", "import", tiny_random_path, "--id", "tiny", env=env))
    return env


def raw_run(*args: str, env: dict[str, str], input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*JAN, *args], env=env, input=input, capture_output=True, timeout=300,
                          stdin=None if input is not None else subprocess.DEVNULL)


def test_a_non_ascii_answer_under_an_ascii_or_latin1_locale_is_written_not_a_traceback(tiny_env):
    utf8 = raw_run(*ANSWER, env=tiny_env)
    assert utf8.returncode == 0, utf8.stderr
    text = utf8.stdout.decode("utf-8")
    assert any(ord(ch) > 255 for ch in text)  # the case this test is about

    ascii_ = raw_run(*ANSWER, env={**tiny_env, "PYTHONIOENCODING": "ascii"})
    assert ascii_.returncode == 0 and b"Traceback" not in ascii_.stderr, ascii_.stderr
    assert ascii_.stdout == utf8.stdout  # UTF-8, as click writes an ASCII stream

    latin1 = raw_run(*ANSWER, env={**tiny_env, "PYTHONIOENCODING": "latin-1"})
    assert latin1.returncode == 0 and b"Traceback" not in latin1.stderr, latin1.stderr
    assert latin1.stdout == text.encode("latin-1", errors="replace")


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_every_kind_of_output_survives_a_narrow_encoding(tiny_env, encoding):
    env = {**tiny_env, "PYTHONIOENCODING": encoding}
    # ASCII reads and writes UTF-8 (PEP 540: such a locale is a misconfiguration); latin-1 keeps its own
    # encoding, a "?" for what it cannot hold
    said = "héllo ☃".encode("utf-8" if encoding == "ascii" else "latin-1", errors="replace")
    chat = raw_run("chat", "tiny", "-n", "16", "--temp", "0", env=env, input=said + b"\n")
    assert chat.returncode == 0 and b"Traceback" not in chat.stderr, chat.stderr
    for args in (["threads", "list"], ["threads", "list", "--json"], ["models", "list"]):
        result = raw_run(*args, env=env)
        assert result.returncode == 0 and b"Traceback" not in result.stderr, (args, result.stderr)
    thread_id = ok(jan("threads", "list", "--json", env=tiny_env)).stdout.split('"id": "')[1].split('"')[0]
    for args in (["threads", "show", thread_id], ["threads", "export", thread_id]):
        result = raw_run(*args, env=env)
        assert result.returncode == 0 and b"Traceback" not in result.stderr, (args, result.stderr)
        assert said in result.stdout


# --------------------------------------------------------------------------- ~ in paths


def _path_params():
    """(command path, parameter) for every parameter of every jan command that takes a path."""
    from jan.cli import main

    def walk(command: click.Command, ctx: click.Context, names: list[str]):
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), ctx, [*names, name])
            return
        for param in command.params:
            if isinstance(param.type, click.Path):
                yield " ".join(names), param

    with click.Context(main) as ctx:
        return list(walk(main, ctx, []))


def test_every_path_parameter_expands_a_leading_tilde_before_it_is_checked(tmp_path, monkeypatch):
    from jan.cli.common import PathParam

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "there.gguf").write_bytes(b"GGUF")
    (tmp_path / "folder").mkdir()
    params = _path_params()
    assert {name for name, _ in params} >= {"files upload", "files download", "models import", "run",
                                            "threads export", "serve"}
    for name, param in params:
        assert isinstance(param.type, PathParam), f"`jan {name}` {param.name}: a click.Path that keeps '~'"
        there = "there.gguf" if param.type.file_okay else "folder"
        value = param.type.convert(f"~/{there}", param, None)
        if isinstance(value, list):  # a list of paths in one value (serve's --lora a.gguf,b.gguf): this one
            assert len(value) == 1, (name, param.name, value)
            value = value[0]
        assert str(value) == str(tmp_path / there), (name, param.name, value)


def test_tilde_paths_a_shell_left_alone_work_end_to_end(env, data, test_image_path, stories_path):
    home = data.parent
    (home / "pic.jpeg").write_bytes(test_image_path.read_bytes())
    (home / "s.gguf").write_bytes(stories_path.read_bytes())
    uploaded = ok(jan("files", "upload", "--purpose=vision", "~/pic.jpeg", env=env))
    assert uploaded.stdout.startswith("file-")
    ok(jan("models", "import", "--id", "s", "~/s.gguf", env=env))
    # a projector given as --mmproj=~/...: judged as the file it names, not "File '~/s.gguf' does not exist"
    bad = jan("models", "import", "--id", "s2", "~/s.gguf", "--mmproj=~/s.gguf", env=env)
    assert bad.returncode == 1 and "not a multimodal projector" in bad.stderr and str(home / "s.gguf") in bad.stderr
    ok(jan("files", "download", uploaded.stdout.strip(), "--output=~/back.jpeg", env=env))
    assert (home / "back.jpeg").read_bytes() == test_image_path.read_bytes()
