"""The `jan` command line, driven as a user drives it: subprocesses with real models."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_cli_helpers import JAN, PtyProcess, cli_env, fails, free_port, jan, ok

STORY = ", there was a little girl named Lily. She loved to play outside in the park. One day,"


# --------------------------------------------------------------------------- help, info


def test_help_lists_every_command_and_subcommands_have_help(env):
    out = ok(jan("--help", env=env)).stdout
    for name in ("serve", "run", "chat", "models", "threads", "files", "extensions", "mcp", "info", "bench"):
        assert f"  {name}" in out
    for args in (["models", "--help"], ["models", "pull", "--help"], ["threads", "export", "--help"],
                 ["bench", "--help"], ["chat", "-h"]):
        assert "Usage: " in ok(jan(*args, env=env)).stdout
    pull_help = ok(jan("models", "pull", "--help", env=env)).stdout
    assert "--sha256" in pull_help
    assert "hf://owner/repo[:QUANT]" in pull_help  # the README's whole-repository pull
    # --max-loaded-models, which the README documents, was the one serve option with no help text
    serve_help = ok(jan("serve", "--help", env=env)).stdout
    assert "least recently used" in serve_help
    assert ok(jan("--version", env=env)).stdout.strip().endswith("0.1.0")


def test_the_data_folder_options_help_says_its_default_as_the_readme_does():
    """README: a command's data folder is --data-folder, else $JAN_DATA_FOLDER, else that of the jan server running on
    this machine, else ~/jan. Every command's --help said "default ~/jan", which a user with a server on another
    folder took for the folder `jan mcp add` would edit."""
    import click

    from jan.cli import main

    ctx = click.Context(main, info_name="jan")
    command = main.get_command(ctx, "models").get_command(ctx, "list")
    option = next(p for p in command.params if p.name == "data_folder")
    assert "server running on this machine" in option.help and option.help.endswith("else ~/jan].")
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").split())
    assert "else `$JAN_DATA_FOLDER`, else that of the jan server running on this machine" in readme


def test_jan_help_names_every_subcommand_of_each_group():
    """`jan --help`'s one-line summaries are kept apart from the commands (so that it imports none of them): each
    group's summary names what its subcommands do. `threads` said "List, show and export", though `jan threads rm`
    deletes (the README lists it beside them)."""
    import click

    from jan.cli import COMMANDS, SUMMARIES, main

    ctx = click.Context(main, info_name="jan")
    said = {"rm": ("delete", "remove")}  # (the verb a summary spells a subcommand with)
    groups = 0
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if not isinstance(command, click.Group):
            continue
        groups += 1
        summary = SUMMARIES[name].lower()
        for sub in command.list_commands(ctx):
            assert any(verb in summary for verb in said.get(sub, (sub,))), (name, sub, SUMMARIES[name])
    assert groups >= 5


@pytest.mark.parametrize("args, said", [(("serv",), "No such command 'serv'. Did you mean 'serve'?"),
                                        (("modles", "list"), "No such command 'modles'. Did you mean 'models'?"),
                                        (("models", "lst"), "No such command 'lst'. Did you mean 'list'?"),
                                        (("xyz",), "No such command 'xyz'.")])
def test_a_mistyped_command_names_the_one_meant(env, args, said):
    """The top-level commands are imported on first use, so click had none registered to guess from: `jan serv`
    said "No such command" alone, where a group's own subcommands got "Did you mean"."""
    result = jan(*args, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: {said}", result.stderr


def test_python_dash_m_jan_is_the_jan_command(env):
    # `python -m jan` works where the console script is not on PATH (a venv used without activating it)
    done = subprocess.run([sys.executable, "-m", "jan", "--version"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("0.1.0")


def test_info_reports_build_devices_data_folder_and_server(env, data):
    text = ok(jan("info", env=env)).stdout
    for key in ("llama.cpp:", "backends:", "device:", "memory:", "data folder:", "server:"):
        assert key in text
    assert str(data) in text
    info = json.loads(ok(jan("info", "--json", env=env)).stdout)
    assert info["jan_version"] == "0.1.0"
    assert info["llama_cpp"]["commit"] and "CPU" in info["backends"]
    assert info["devices"] and info["memory"]["total"] > 0
    assert info["data_folder"]["path"] == str(data)
    assert info["server"]["up"] is False


# --------------------------------------------------------------------------- run


def test_run_raw_greedy_is_exact_and_only_the_answer_is_on_stdout(env, stories_path):
    result = ok(jan("run", stories_path, "--raw", "Once upon a time", "--temperature", "0", "--max-tokens", "30",
                    env=env))
    assert result.stdout == STORY + "\n"
    assert result.stderr == ""


def test_run_reads_the_prompt_from_stdin(env, stories_path):
    dash = ok(jan("run", stories_path, "-", "--raw", "--temp", "0", "-n", "30", env=env, input="Once upon a time"))
    piped = ok(jan("run", stories_path, "--raw", "--temp", "0", "-n", "30", env=env, input="Once upon a time"))
    assert dash.stdout == piped.stdout == STORY + "\n"


def test_run_chat_mode_seed_system_and_verbose_stats(env, stories_path):
    args = ["run", stories_path, "Tell me a story", "--system", "You tell stories.", "-n", "24",
            "--temperature", "1.0", "--seed", "7"]
    first = ok(jan(*args, env=env))
    second = ok(jan(*args, "--verbose", env=env))
    assert first.stdout.strip() and first.stdout == second.stdout  # the same seed, the same answer
    assert "<|im_" not in first.stdout  # ChatML fallback: turn markers are stops, never printed
    assert first.stderr == ""
    assert "answer: " in second.stderr and "t/s" in second.stderr


def test_run_errors_are_one_clear_line_with_a_non_zero_exit(env, tmp_path):
    fails(jan("run", "no-such-model", "hi", env=env), "no-such-model", "not found")
    fails(jan("run", str(tmp_path / "missing.gguf"), "hi", env=env), "no such file", "missing.gguf")
    not_gguf = tmp_path / "notes.txt"
    not_gguf.write_text("hello")
    fails(jan("run", str(not_gguf), "hi", env=env), "not a GGUF")
    fails(jan("run", "./nope/model.gguf", "hi", env=env), "no such file")
    usage = jan("run", env=env)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


def jan_bytes(*args: str | bytes, env: dict[str, str], input: bytes | None = None) -> subprocess.CompletedProcess:
    """`jan` with arguments and stdin as raw bytes (what a shell passes on: not always UTF-8)."""
    return subprocess.run([*JAN, *args], env=env, input=input, capture_output=True, timeout=120, check=False,
                          stdin=None if input is not None else subprocess.DEVNULL)


def exported_user_text(env: dict[str, str]) -> str:
    """The first message of the newest saved thread, as `jan threads export` gives it."""
    threads = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    exported = json.loads(ok(jan("threads", "export", threads[0]["id"], "--format", "json", env=env)).stdout)
    return exported["messages"][0]["content"][0]["text"]["value"]


def check_undecodable_input_is_replaced(model: str, env: dict[str, str]) -> None:
    """Bytes that are not UTF-8 in arguments and stdin become U+FFFD: answered, no traceback, whether stdin
    decodes with surrogateescape (a C locale) or strictly (PYTHONIOENCODING=utf-8:strict)."""
    def answered(result: subprocess.CompletedProcess) -> None:
        stderr = result.stderr.decode(errors="replace")
        assert result.returncode == 0 and "Traceback" not in stderr, stderr
        assert result.stdout.strip()

    answered(jan_bytes("run", model, b"\xff\xfe", "-n", "3", env=env))
    answered(jan_bytes("run", model, "hi", "--system", b"\xfe", "--stop", b"\xff", "-n", "3", env=env))
    for strict in ({}, {"PYTHONIOENCODING": "utf-8:strict"}):
        answered(jan_bytes("run", model, "-n", "3", env={**env, **strict}, input=b"hi \xff\n"))
        answered(jan_bytes("chat", model, "-n", "3", env={**env, **strict}, input=b"hi \xff\n"))
        assert exported_user_text(env) == "hi \ufffd"  # what the model was asked, as saved


def test_bytes_that_are_not_utf8_in_the_input_become_replacement_characters(env, stories_path):
    check_undecodable_input_is_replaced(str(stories_path), env)


# --------------------------------------------------------------------------- serve + server mode


@pytest.fixture
def served(tmp_path, stories_path):
    """`jan serve` in a subprocess on a free port with stories260K preloaded."""
    port = free_port()
    data = tmp_path / "served"
    env = cli_env(data, local=False)
    proc = subprocess.Popen([*JAN, "serve", "--port", str(port), "--threads", "1", "--ctx-size", "32768",
                             "--parallel", "1", "--model", str(stories_path), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    health = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                health = json.loads(resp.read())
                break
        except OSError:
            time.sleep(0.2)
    try:
        assert health is not None, f"jan serve did not come up: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, url, health, {**env, "JAN_API_URL": url}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_answers_health_then_exits_cleanly_on_sigint(served):
    proc, url, health, _ = served
    assert health["status"] == "ok" and health["models"] == ["stories260K"]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"listening on {url}" in out
    assert "shutting down" in out


def test_commands_use_the_running_server(served, stories_path, tmp_path):
    _, url, _, env = served
    # the same greedy text through the server as in-process
    result = ok(jan("run", "stories260K", "--raw", "Once upon a time", "--temp", "0", "-n", "30", env=env))
    assert result.stdout == STORY + "\n"
    listed = json.loads(ok(jan("models", "list", "--json", env=env)).stdout)
    assert [(m["id"], m["state"]) for m in listed] == [("stories260K", "ready")]
    assert "ready" in ok(jan("models", "list", env=env)).stdout
    assert ok(jan("models", "stop", "stories260K", env=env)).stdout.strip() == "stories260K: unloaded"
    assert ok(jan("models", "start", "stories260K", env=env)).stdout.strip() == "stories260K: ready"
    # a chat through the server is saved through /v1/threads
    ok(jan("chat", "stories260K", "--temp", "0", "-n", "8", env=env, input="Hello\n/save From the CLI\n"))
    threads = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    assert [t["title"] for t in threads] == ["From the CLI"]
    exported = json.loads(ok(jan("threads", "export", threads[0]["id"], "--format", "json", env=env)).stdout)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    # extensions through the server: the engine is loaded there, and can be switched at runtime
    records = {r["name"]: r for r in json.loads(ok(jan("extensions", "list", "--json", env=env)).stdout)}
    assert records["llamacpp"]["state"] == "loaded"
    assert ok(jan("extensions", "disable", "llamacpp", env=env)).stdout.strip() == "llamacpp: disabled"
    assert ok(jan("extensions", "enable", "llamacpp", env=env)).stdout.strip() == "llamacpp: enabled (loaded)"
    # server errors are one line, and an explicit --url that is down is an error
    fails(jan("run", "nope", "hi", env=env), "nope", "not found on the server")
    dead = f"http://127.0.0.1:{free_port()}"
    fails(jan("models", "list", "--url", dead, env=env), "no jan server answers", dead)
    # --local reads the same data folder directly, the models as the API shows them: the state of this process's
    # engine, which loaded none
    local = json.loads(ok(jan("models", "list", "--json", "--local", env=env)).stdout)
    assert [m["id"] for m in local] == ["stories260K"] and local[0]["state"] == "unloaded"


def test_an_extension_name_with_a_typo_through_the_server_names_the_one_meant(served):
    _, _, _, env = served
    fails(jan("extensions", "enable", "tool", env=env), "no extension named 'tool': did you mean 'tools'?")


def test_the_server_url_may_be_written_as_the_openai_base_url_or_without_a_scheme(served):
    """The README gives clients `http://127.0.0.1:1337/v1`; the same URL in --url or $JAN_API_URL (or
    `127.0.0.1:1337`, as curl takes it) answered "no jan server answers" with the server running."""
    _, url, _, env = served
    hostport = url.removeprefix("http://")
    for given in (f"{url}/v1", f"{url}/v1/", hostport, f"{hostport}/v1"):
        listed = json.loads(ok(jan("models", "list", "--json", "--url", given, env=env)).stdout)
        assert [(m["id"], m["state"]) for m in listed] == [("stories260K", "ready")], given
    through_env = {**env, "JAN_API_URL": f"{url}/v1"}
    assert ok(jan("run", "stories260K", "--raw", "Once upon a time", "--temp", "0", "-n", "30",
                  env=through_env)).stdout == STORY + "\n"
    assert "running at " + url in ok(jan("info", env=through_env)).stdout


def test_server_root():
    from jan.cli.common import server_root

    assert server_root("http://127.0.0.1:1337/v1") == "http://127.0.0.1:1337"
    assert server_root("HTTP://Host:1/V1/") == "HTTP://Host:1"
    assert server_root("localhost:1337") == "http://localhost:1337"
    assert server_root("https://proxy.example/jan") == "https://proxy.example/jan"  # a path of its own stays
    assert server_root("https://proxy.example/jan/v1") == "https://proxy.example/jan"


def test_bytes_that_are_not_utf8_in_the_input_become_replacement_characters_through_the_server(served):
    _, _, _, env = served
    check_undecodable_input_is_replaced("stories260K", env)


def test_ctrl_c_in_a_chat_through_the_server_cancels_the_generation(served):
    _, url, _, env = served
    term = PtyProcess([*JAN, "chat", "--temperature", "0", "--ignore-eos", "--max-tokens", "30000"], env)
    try:
        term.expect(">>> ")
        term.sendline("Tell me a long story")
        term.expect(rb"story\r?\n")
        term.expect(rb"[a-z]+ [a-z]+ [a-z]+ [a-z]+ [a-z]+")  # the answer streams in
        term.send(b"\x03")
        term.expect(r"\[answer stopped\]", timeout=30)
        term.expect(">>> ")
        term.sendline("/exit")
        assert term.wait() == 0
    finally:
        term.close()
    metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    assert 'jan_requests_cancelled_total{engine="local",model="stories260K"} 1.0' in metrics
    thread = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)[0]
    messages = json.loads(ok(jan("threads", "export", thread["id"], "-f", "json", env=env)).stdout)["messages"]
    # through the server: OpenAI's statuses (the data folder keeps ready / stopped)
    assert [(m["role"], m["status"]) for m in messages] == [("user", "completed"), ("assistant", "incomplete")]


def test_a_chat_whose_server_is_killed_mid_answer_keeps_what_the_user_saw(served):
    """`jan chat` through a server killed in the middle of its streamed answer lost the whole turn: the user's
    message and the part of the answer shown were in no thread. Now both are saved (in the data folder the server
    worked on, as it takes no more connections), the answer ``stopped`` as Ctrl-C leaves it, with one error line;
    and the next `jan chat --thread` goes on from them."""
    import os
    import select

    server, _, _, env = served
    chat = subprocess.Popen([*JAN, "chat", "stories260K", "--temperature", "0", "--ignore-eos", "--max-tokens",
                             "30000"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        chat.stdin.write(b"Tell me a long story\n")
        chat.stdin.flush()
        # the first chunk of the answer: waited on (bounded), then the server dies without a word
        ready, _, _ = select.select([chat.stdout], [], [], 120)
        assert ready, "no answer began within 120 s"
        seen = os.read(chat.stdout.fileno(), 65536)
        assert seen
        server.kill()
        server.wait(60)
        out, err = chat.communicate(b"", timeout=120)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait(10)
    shown = (seen + out).decode()
    result = subprocess.CompletedProcess(chat.args, chat.returncode, shown, err.decode())
    fails(result, "ended before its answer was complete")
    # (a note: on stderr, stdout being no terminal, where only the answer goes)
    assert "[answer cut off]" in result.stderr and "[answer cut off]" not in shown
    # the server is gone: the commands below read the data folder it worked on
    thread = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)[0]
    stored = json.loads(ok(jan("threads", "export", thread["id"], "-f", "json", env=env)).stdout)["messages"]
    # (the answer stopped, as a Ctrl-C leaves it: the export gives the thread API's statuses, with or without a server)
    assert [(m["role"], m["status"]) for m in stored] == [("user", "completed"), ("assistant", "incomplete")]
    assert stored[1]["incomplete_details"] == {"reason": "run_cancelled"}
    answer = stored[1]["content"][0]["text"]["value"]
    assert len(answer) >= len(seen.decode(errors="ignore").strip()) > 0 and shown.startswith(answer)
    assert stored[1]["metadata"]["stop_reason"] == "interrupted"
    # the next chat in the thread goes on from it (here in-process: no server runs)
    ok(jan("chat", "--thread", thread["id"], "--temperature", "0", "-n", "4", env=env, input="Go on\n"))
    stored = json.loads(ok(jan("threads", "export", thread["id"], "-f", "json", env=env)).stdout)["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["content"][0]["text"]["value"] == answer


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_a_chat_through_a_server_killed_mid_answer_keeps_the_users_message(served, signum):
    """`jan chat` through a server, killed (SIGKILL) or its terminal closed (SIGHUP) mid-answer: the server's
    thread holds the user's message (it was written only when the turn ended: kill -9 lost it), nothing left
    in progress; SIGHUP also keeps the answer so far, stopped as Ctrl-C keeps it."""
    from test_cli_chat_killed import PROMPT, killed_mid_answer

    _, url, _, env = served
    code, _ = killed_mid_answer("stories260K", env, signum)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum)
    thread = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)[0]
    stored = json.loads(ok(jan("threads", "export", thread["id"], "-f", "json", env=env)).stdout)["messages"]
    expected = [("user", "completed")] + ([] if signum == signal.SIGKILL else [("assistant", "incomplete")])
    assert [(m["role"], m["status"]) for m in stored] == expected  # (OpenAI's statuses, through the server)
    assert stored[0]["content"][0]["text"]["value"] == PROMPT


def test_api_key_is_sent_and_a_wrong_one_is_a_clear_error(tmp_path, stories_path):
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    with ServerThread(ServerConfig(data_folder=tmp_path / "keyed", api_key="s3cret", n_threads=1)) as server:
        env = cli_env(tmp_path / "keyed", local=False, JAN_API_URL=server.base_url)
        ok(jan("models", "import", stories_path, "--mode", "reference", "--api-key", "s3cret", env=env))
        listed = json.loads(ok(jan("models", "list", "--json", env={**env, "JAN_API_KEY": "s3cret"})).stdout)
        assert [m["state"] for m in listed] == ["unloaded"]  # from the server: it knows the engine state
        fails(jan("models", "list", env=env), "HTTP 401", "JAN_API_KEY")
        # --data-folder on the command line means "work on this folder", server or not
        other = tmp_path / "other"
        assert json.loads(ok(jan("models", "list", "--json", "--data-folder", other, env=env)).stdout) == []


def test_start_and_stop_need_a_server(env):
    fails(jan("models", "start", "x", env=env), "needs a running server", "jan serve")


# --------------------------------------------------------------------------- extensions


def test_extensions_list_disable_enable(env):
    records = json.loads(ok(jan("extensions", "list", "--json", env=env)).stdout)
    names = {r["name"] for r in records}
    assert {"llamacpp", "models", "conversational"} <= names
    assert "llamacpp" in ok(jan("extensions", "list", env=env)).stdout
    assert ok(jan("extensions", "disable", "llamacpp", env=env)).stdout.strip() == "llamacpp: disabled"
    records = {r["name"]: r for r in json.loads(ok(jan("extensions", "list", "--json", env=env)).stdout)}
    assert records["llamacpp"]["enabled"] is False
    ok(jan("extensions", "enable", "llamacpp", env=env))
    records = {r["name"]: r for r in json.loads(ok(jan("extensions", "list", "--json", env=env)).stdout)}
    assert records["llamacpp"]["enabled"] is True
    fails(jan("extensions", "enable", "no-such-extension", env=env), "no-such-extension")


def _readme_bench_not_taken() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    line = text[text.index("- not taken (refused as unknown options"):].split("Hugging Face")[0]
    words = [w for part in re.findall(r"`([^`]+)`", line) for w in part.split("/") if w.startswith("-")]
    assert "-fitt" in words and "-rpc" in words, words
    return words


@pytest.mark.parametrize("command, args", [("bench", [w, "1"]) for w in _readme_bench_not_taken()]
                         + [("serve", ["-fa", "on"]), ("serve", ["-mg", "0"]), ("run", ["-nkvo"]),
                            ("chat", ["-sm", "none"])])
def test_a_llama_cpp_option_a_command_does_not_take_is_refused_as_typed(tmp_path, stories_path, command, args):
    """README: llama-bench's options that `jan bench` does not take are "refused as unknown options, never ignored".
    click read such a word as short options run together: `-nkvo` was `-n kvo` ("'kvo' is not a whole number"),
    `-embd` "No such option '-e'", and `-mmp 0` / `-mg 0` were `-m mp` / `-m g`, a model to load (the error named
    '0', a model not found). Every command that takes llama.cpp's words (serve, run, chat, bench) names the word."""
    from click.testing import CliRunner

    from jan.cli import main

    given = [command, *([str(stories_path)] if command != "serve" else []), *args,
             "--data-folder", str(tmp_path / "d")]
    result = CliRunner().invoke(main, given)
    assert result.exit_code == 2, result.output
    assert f"No such option '{args[0]}'" in result.output, result.output
    assert not (tmp_path / "d").exists()  # refused before anything ran


@pytest.mark.parametrize("where", ["local", "server"])
def test_a_resumed_chat_says_which_lines_of_its_thread_were_damaged(where, request, tmp_path, stories_path):
    """`jan chat --thread` over a thread whose messages.jsonl has a damaged line: the line is named (as `jan threads
    show` names it), locally and through a server. It said "resumed thread ... (N messages)" alone, the skipped
    turns lost unsaid."""
    if where == "server":
        _, _, _, env = request.getfixturevalue("served")
        data = tmp_path / "served"
    else:
        data = tmp_path / "jan"
        env = cli_env(data)
    ok(jan("chat", "stories260K" if where == "server" else stories_path, "--temp", "0", "-n", "4", env=env,
           input="First question\n"))
    thread_id, = [p.name for p in (data / "threads").iterdir() if (p / "thread.json").is_file()]
    with open(data / "threads" / thread_id / "messages.jsonl", "ab") as f:
        f.write(b"{not a message\n")
    result = ok(jan("chat", "stories260K" if where == "server" else stories_path, "--thread", thread_id, "--temp",
                    "0", "-n", "4", env=env, input=""))
    assert f"jan: damaged file threads/{thread_id}/messages.jsonl (line 3 is not a JSON object" in result.stderr, \
        result.stderr
    assert "resumed thread" in result.stderr + result.stdout
