"""Output into a pipe whose reader has gone (`jan --help | head -0`, `jan models list | head -1` once head has what it
wants): status 0, no traceback nor error on stderr, whatever prints it. Before, what click prints as it parses the arguments (`jan
--help`, `jan --version`) ended with status 1 there (click's own answer to EPIPE), where the commands' output ended 0."""

from __future__ import annotations

import os
import subprocess

import pytest

from test_cli_helpers import JAN, cli_env


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models", "--help"], ["help", "models"],
                                  ["models", "list"], ["models", "list", "--json"], ["info"], ["info", "--json"]],
                         ids=" ".join)
def test_a_reader_gone_is_no_error(data, stories_path, args):
    from jan.store import DataFolder

    DataFolder(data).models.import_gguf(stories_path, mode="reference")  # (a listing with a row to write)
    read, write = os.pipe()
    os.close(read)  # (the reader is gone before anything is written: every write fails with EPIPE)
    try:
        result = subprocess.run([*JAN, *args], env=cli_env(data), stdout=write, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr
    for said in ("Traceback", "Exception ignored", "Broken pipe", "BrokenPipeError"):
        assert said not in result.stderr, result.stderr


def test_serve_goes_on_when_its_stdout_reader_goes(data, stories_path):
    """`jan serve | head -1` (or a script that reads the URL from the first line and closes the pipe): the server's
    next line (its models, or "shutting down") ended it with "jan: error: [Errno 32] Broken pipe", status 1. It goes on
    serving, and stops as it does otherwise."""
    import signal
    import urllib.request

    from jan.store import DataFolder

    DataFolder(data).models.import_gguf(stories_path, mode="reference")
    proc = subprocess.Popen([*JAN, "serve", "--port", "0", "--log-level", "warning"], env=cli_env(data, local=False),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        assert "jan is listening on " in line, line
        url = line.split("jan is listening on ", 1)[1].split()[0]
        proc.stdout.close()  # the reader goes
        for _ in range(3):  # (the models line comes after the first: a request or two later, it was written)
            with urllib.request.urlopen(f"{url}/v1/models", timeout=60) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGINT)  # "shutting down", into the closed pipe
        assert proc.wait(60) == 0
        err = proc.stderr.read()
        assert "Broken pipe" not in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stderr.close()


def test_a_piped_chat_whose_reader_goes_keeps_the_answer_as_stopped(data, stories_path):
    """`jan chat < prompts.txt | head`: the first answer's write found the reader gone, and the chat ended with the
    user's message saved and no reply at all (the exchange of a stopped answer, where Ctrl-C keeps the part shown).
    The answer is now kept as Ctrl-C keeps it (stopped), the chat ends there (no second prompt sent to no one), with
    status 0."""
    from jan.store import DataFolder

    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([*JAN, "chat", str(stories_path), "-n", "20", "--temp", "0"], env=cli_env(data),
                                input="hello\nsecond\n", stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
    folder = DataFolder(data)
    (thread,) = folder.threads.list().data
    messages = folder.messages.list(thread["id"]).data
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    assert messages[1]["status"] == "stopped", messages[1]  # (as a Ctrl-C leaves it)
