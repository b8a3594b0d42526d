"""The CLI's output options, the same in every command, by kind:

* every command that prints a result takes ``--json`` (one JSON document on stdout; errors still one ``jan: error:``
  line on stderr with a non-zero status), of the same shape with or without a server. Before, ``models rm``,
  ``threads rm``, ``models start/stop``, ``extensions enable/disable``, ``mcp add/remove`` and ``run`` had none, and
  ``extensions list --json`` had no ``"object": "extension"`` without a server;
* every option that takes one of some words takes them in any case and by their common other names, and says the
  choices (with those names) when refused: ``jan threads export --format md`` was refused;
* ``jan chat`` whose stdout is no terminal (``jan chat | tee log``) writes only the answers there: its ``>>> ``
  prompt and notes went into the log.
"""

from __future__ import annotations

import json
import shlex
import sys

import click
import pytest
from api_helpers import running
from test_cli_helpers import JAN, PtyProcess, cli_env, fails, jan, leaf_commands, ok


pytestmark = pytest.mark.timeout(600)

#: Commands that print no result a script parses as JSON, and why: they must not be taken for ones left without it.
NO_JSON = {
    "chat": "a conversation at a terminal (or piped: the answers, one after another)",
    "serve": "a server; its stdout is its log",
    "help": "help text",
    "bench": "-o json / -o jsonl (llama-bench's formats)",
    "threads export": "--format json",
    "files download": "the file's bytes",
}


def test_every_command_that_prints_a_result_takes_json():
    missing = [name for name, command in leaf_commands() if name not in NO_JSON
               and not any("--json" in getattr(p, "opts", ()) for p in command.params)]
    assert missing == []


def test_every_option_of_words_takes_other_names_and_any_case():
    from jan.cli.common import Words

    plain = [f"{name} {param.opts[0]}" for name, command in leaf_commands() for param in command.params
             if isinstance(param.type, click.Choice) and not isinstance(param.type, Words)]
    assert plain == []


@pytest.mark.parametrize("command, args, name, value", [
    ("threads export", ["thread_x", "--format", "md"], "fmt", "markdown"),
    ("threads export", ["thread_x", "-f", "JSON"], "fmt", "json"),
    ("bench", ["m", "-o", "markdown"], "fmt", "md"),
    ("bench", ["m", "-o", "ndjson"], "fmt", "jsonl"),
    ("bench", ["m", "-fa", "ON"], "flash_attn", ["on"]),
    ("serve", ["--log-level", "warn"], "log_level", "warning"),
    ("serve", ["-ctk", "F16"], "cache_type_k", "f16"),
    ("models import", [__file__, "--mode", "hardlink"], "mode", "link"),
    ("models import", [__file__, "--mode", "Ref"], "mode", "reference"),
    ("files upload", [__file__, "--purpose", "fine_tune"], "purpose", "fine-tune"),
    ("files list", ["--purpose", "Batch"], "purpose", "batch"),
])
def test_words_are_taken_by_their_other_names(command, args, name, value):
    leaf = dict(leaf_commands())[command]
    ctx = leaf.make_context(command, list(args))
    assert ctx.params[name] == value


def test_a_word_that_is_none_says_the_choices_with_their_other_names(tmp_path):
    env = cli_env(tmp_path / "jan")
    for args, said in [(["threads", "export", "thread_x", "--format", "txt"], "'txt' is not one of markdown (md), json"),
                       (["bench", "m", "-o", "xml"], "md (markdown), csv, json, jsonl (ndjson), sql"),
                       (["bench", "m", "-fa", "yes"], "'yes' is not one of on (1), off (0), auto (-1)"),
                       (["serve", "--log-level", "loud"], "debug, info, warning (warn), error")]:
        result = jan(*args, env=env)
        assert result.returncode == 2 and said in result.stderr, result.stderr


def _import_two(data, stories_path):
    env = cli_env(data)
    for model_id in ("one", "two"):
        ok(jan("models", "import", stories_path, "--id", model_id, env=env))
    return env


def test_removals_print_the_apis_deletions_under_json_in_both_modes(tmp_path, stories_path):
    data = tmp_path / "jan"
    env = _import_two(data, stories_path)
    local = ok(jan("models", "rm", "one", "--json", env=env))
    assert json.loads(local.stdout) == [{"id": "one", "object": "model", "deleted": True}]
    # an id that fails ends the command (its error on stderr) after the array of those removed before it
    failed = jan("models", "rm", "two", "nosuch", "--json", env=env)
    fails(failed, "nosuch")
    assert json.loads(failed.stdout) == [{"id": "two", "object": "model", "deleted": True}]
    env = _import_two(data, stories_path)
    ok(jan("run", "one", "hi", "-n", "2", env=env))  # (no thread: run keeps nothing)
    ok(jan("chat", "one", "-n", "2", input="hello\n", env=env))
    ok(jan("chat", "one", "-n", "2", input="hello again\n", env=env))
    threads = [t["id"] for t in json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)]
    assert len(threads) == 2
    local_thread = json.loads(ok(jan("threads", "rm", threads[0], "--json", env=env)).stdout)
    assert local_thread == [{"id": threads[0], "object": "thread.deleted", "deleted": True}]
    with running(data) as srv:
        server = cli_env(data, local=False)
        served = json.loads(ok(jan("models", "rm", "one", "--json", "--url", srv.base_url, env=server)).stdout)
        served_thread = json.loads(ok(jan("threads", "rm", threads[1], "--json", "--url", srv.base_url,
                                          env=server)).stdout)
        started = json.loads(ok(jan("models", "start", "two", "--json", "--url", srv.base_url, env=server)).stdout)
        stopped = json.loads(ok(jan("models", "stop", "two", "--json", "--url", srv.base_url, env=server)).stdout)
        # an error under --json: one line on stderr, status 1, as without it
        fails(jan("models", "start", "nosuch", "--json", "--url", srv.base_url, env=server), "nosuch")
    assert served == [{"id": "one", "object": "model", "deleted": True}]
    assert served_thread == [{"id": threads[1], "object": "thread.deleted", "deleted": True}]
    assert (started["id"], started["object"], started["state"]) == ("two", "model", "ready")
    assert (stopped["id"], stopped["state"]) == ("two", "unloaded")
    # the text stays as it was
    assert ok(jan("models", "rm", "two", env=env)).stdout == "removed two\n"


def test_extension_switches_print_the_record_under_json_in_both_modes(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data)
    local = json.loads(ok(jan("extensions", "disable", "tools", "--json", env=env)).stdout)
    listed = {r["name"]: r for r in json.loads(ok(jan("extensions", "list", "--json", env=env)).stdout)}
    assert local["object"] == "extension" and local["name"] == "tools" and local["enabled"] is False
    assert listed["tools"]["object"] == "extension"  # (GET /v1/extensions' shape, without a server too)
    with running(data) as srv:
        server = cli_env(data, local=False)
        served = json.loads(ok(jan("extensions", "enable", "tools", "--json", "--url", srv.base_url,
                                   env=server)).stdout)
        served_list = json.loads(ok(jan("extensions", "list", "--json", "--url", srv.base_url, env=server)).stdout)
    assert served["object"] == "extension" and served["name"] == "tools" and served["enabled"] is True
    assert set(served) == set(local)
    assert [sorted(r) for r in served_list] == [sorted(r) for r in listed.values()]


def test_mcp_add_and_remove_under_json(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data)
    added = json.loads(ok(jan("mcp", "add", "notes", sys.executable, "-c", "pass", "--json", env=env)).stdout)
    listed = json.loads(ok(jan("mcp", "list", "--json", env=env)).stdout)
    assert listed == [added] and added["name"] == "notes" and added["transport"] == "stdio"
    removed = json.loads(ok(jan("mcp", "remove", "notes", "--json", env=env)).stdout)
    assert removed == {"name": "notes", "deleted": True}
    # a command's own argument spelled like jan's option: after `--`
    ok(jan("mcp", "add", "tool", "--", sys.executable, "--json", env=env))
    entry = json.loads((data / "mcp.json").read_text(encoding="utf-8"))["mcpServers"]["tool"]
    assert entry["args"] == ["--json"]


def test_run_json_is_a_chat_completion_the_same_in_both_modes(tmp_path, stories_path):
    data = tmp_path / "jan"
    env = _import_two(data, stories_path)

    def answer(*extra: str, env) -> dict:
        result = ok(jan("run", "one", "Once upon a time", "-n", "6", "--temperature", "0", "--json", *extra,
                        env=env))
        document = json.loads(result.stdout)  # (nothing but the document on stdout)
        document.pop("created")
        return document

    local, raw = answer(env=env), answer("--raw", env=env)
    with running(data) as srv:
        server = cli_env(data, local=False)
        served = answer("--url", srv.base_url, env=server)
        served_raw = answer("--raw", "--url", srv.base_url, env=server)
    assert local == served and raw == served_raw
    assert local["object"] == "chat.completion" and raw["object"] == "text_completion"
    assert local["model"] == "one" and local["choices"][0]["finish_reason"] == "length"
    assert isinstance(local["choices"][0]["message"]["content"], str) and local["choices"][0]["message"]["content"]
    assert raw["choices"][0]["text"] and local["usage"]["completion_tokens"] == 6
    assert local["usage"]["total_tokens"] == local["usage"]["prompt_tokens"] + 6


def test_piped_chat_notes_go_to_stderr(tmp_path, stories_path):
    env = _import_two(tmp_path / "jan", stories_path)
    result = ok(jan("chat", "one", "-n", "3", "--temperature", "0", input="hello\n/system be brief\n/help\n",
                    env=env))
    assert "system prompt set" in result.stderr and "/new" in result.stderr
    assert "system prompt set" not in result.stdout and "/new" not in result.stdout
    assert result.stdout.strip()  # (the answer)


def test_chat_at_a_terminal_with_stdout_piped_writes_only_answers_there(tmp_path, stories_path):
    """`jan chat | tee log`: stdin and stderr a terminal, stdout not. The prompt and the banner went into the log."""
    env = _import_two(tmp_path / "jan", stories_path)
    log = tmp_path / "log.txt"
    line = " ".join(shlex.quote(a) for a in [*JAN, "chat", "one", "-n", "4", "--temperature", "0"])
    child = PtyProcess(["/bin/sh", "-c", f"exec {line} > {shlex.quote(str(log))}"], {**env, "TERM": "xterm"})
    try:
        child.expect(">>> ", timeout=120)
        child.sendline("hello")
        child.expect(">>> ", timeout=120)  # (the answer went to the file; the next prompt comes)
        child.send("\x04")
        assert child.wait(60) == 0
    finally:
        child.close()
    shown = child.output.decode(errors="replace")
    written = log.read_text(encoding="utf-8")
    assert "jan chat with one" in shown
    assert written.strip() and ">>>" not in written and "jan chat with" not in written
    assert "conversation saved" not in written


def test_progress_at_a_dumb_terminal_is_plain_lines(monkeypatch):
    from jan.cli.progress import DownloadBar

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert DownloadBar("x").fancy
    monkeypatch.setenv("NO_COLOR", "1")
    assert DownloadBar("x").fancy  # (NO_COLOR drops the styles only: the bar still redraws)
    monkeypatch.setenv("TERM", "dumb")
    assert not DownloadBar("x").fancy
    from jan.cli.common import stderr_redraws

    assert not stderr_redraws()  # (`jan bench`'s run counter, redrawn with \r, as the bar)


def test_models_and_threads_json_are_the_apis_objects_in_both_modes(tmp_path, stories_path):
    """Without a server, `models list/show/import --json` gave the model.json record (``created`` in milliseconds,
    no ``object``, ``owned_by``, ``capabilities``, ``state``...) and `threads show --json`/`export --format json`
    the stored messages (Jan's ``ready`` where a server says ``completed``, no ``run_id``...)."""
    data = tmp_path / "jan"
    env = cli_env(data)
    imported = json.loads(ok(jan("models", "import", stories_path, "--id", "one", "--json", env=env)).stdout)
    ok(jan("chat", "one", "-n", "2", input="hello\n", env=env))
    thread_id = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)[0]["id"]
    commands = [("models", "list", "--json"), ("models", "show", "one", "--json"), ("threads", "list", "--json"),
                ("threads", "show", thread_id, "--json"), ("threads", "export", thread_id, "--format", "json")]
    before = sorted(p for p in data.rglob("*") if ".locks" not in p.parts)
    local = [json.loads(ok(jan(*c, env=env)).stdout) for c in commands]
    # (a listing starts this process's engines and services to tell what a server tells, and writes nothing)
    assert sorted(p for p in data.rglob("*") if ".locks" not in p.parts) == before
    with running(data) as srv:
        server = cli_env(data, local=False)
        served = [json.loads(ok(jan(*c, "--url", srv.base_url, env=server)).stdout) for c in commands]
    assert local == served
    listed, shown = local[0][0], local[1]
    assert set(imported) - {"file_path"} == set(shown) - {"file_path"} and imported["created"] == shown["created"]
    assert listed["object"] == "model" and listed["state"] == "unloaded" and "capabilities" in listed
    assert listed["created"] < 10**11  # (seconds, as the API's)
    messages = local[3]["messages"]
    # (the reply cut at -n 2: OpenAI's incomplete, with its reason, where the data folder says "ready")
    assert [m["status"] for m in messages] == ["completed", "incomplete"] and "run_id" in messages[0]
    assert local[3] == local[4] and "tool_resources" in local[3]["thread"]


def test_files_upload_reads_stdin_as_download_writes_stdout(tmp_path):
    """`jan files download ID -o -` wrote stdout; `jan files upload -` was "no such file: -"."""
    data = tmp_path / "jan"
    env = cli_env(data)
    refused = jan("files", "upload", "-", env=env, input="no name\n")
    assert refused.returncode == 2 and "--name is required with '-'" in refused.stderr
    body = "a line\nand \u00e9 another\n"
    file_id = ok(jan("files", "upload", "-", "--name", "notes.txt", env=env, input=body)).stdout.strip()
    assert ok(jan("files", "download", file_id, "-o", "-", env=env)).stdout == body
    with running(data) as srv:
        server = cli_env(data, local=False)
        served = json.loads(ok(jan("files", "upload", "-", "--name", "s.txt", "--json", "--url", srv.base_url,
                                   env=server, input=body)).stdout)
        assert ok(jan("files", "download", served["id"], "--url", srv.base_url, env=server)).stdout == body
    assert served["filename"] == "s.txt" and served["bytes"] == len(body.encode("utf-8"))


def test_piped_chat_keeps_the_models_thinking_off_stdout(tmp_path):
    """A thinking model's thinking went to a piped stdout with the answers (`jan run` keeps it off unless asked)."""
    from conftest import require_model
    from test_cli_reasoning import TEMPLATE

    from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

    require_model("vocab/ggml-vocab-qwen2.gguf")
    thinker = write_llama_from_vocab(tmp_path / "thinker.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2,
                                     n_ff=32, n_ctx=512, chat_template=TEMPLATE.read_text())
    env = cli_env(tmp_path / "jan")
    result = ok(jan("chat", str(thinker), "--think", "--temperature", "0", "--max-tokens", "6", "--ignore-eos",
                    "--threads", "1", env=env, input="Hello\n"))
    folder = next(p for p in (tmp_path / "jan" / "threads").iterdir() if (p / "messages.jsonl").is_file())
    reply = [json.loads(line) for line in (folder / "messages.jsonl").read_text().splitlines() if line][-1]
    thought = reply["content"][0]["text"]["value"]
    assert reply["content"][0]["type"] == "reasoning" and thought.strip()
    assert thought.strip() in result.stderr and thought.strip() not in result.stdout
    assert result.stderr.endswith("\n")


def test_pull_json_is_the_apis_model_in_both_modes(tmp_path, stories_path):
    from pathlib import Path

    from test_cli_helpers import FileServer

    data = tmp_path / "jan"
    env = cli_env(data)
    weights = Path(stories_path).read_bytes()
    with FileServer(weights) as files:
        local = json.loads(ok(jan("models", "pull", files.url, "--id", "here", "--json", env=env)).stdout)
        with running(data) as srv:
            served = json.loads(ok(jan("models", "pull", files.url, "--id", "there", "--json", "--url", srv.base_url,
                                       env=cli_env(data, local=False))).stdout)
    assert set(local) == set(served) and local["object"] == served["object"] == "model"
    assert (local["id"], served["id"]) == ("here", "there") and local["state"] == served["state"] == "unloaded"


def test_tool_choice_words_in_any_case():
    chat = dict(leaf_commands())["chat"]
    assert chat.make_context("chat", ["m", "--tool-choice", "Required"]).params["tool_choice"] == "required"
    assert chat.make_context("chat", ["m", "--tool-choice", "get_Weather"]).params["tool_choice"] == "get_Weather"
