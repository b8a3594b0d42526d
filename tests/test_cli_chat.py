"""`jan chat` at a terminal (a pseudo-terminal): streaming, commands, Ctrl-C, saving threads."""

from __future__ import annotations

import json
import subprocess
import termios

import pytest

from test_cli_helpers import JAN, PtyProcess, cli_env, fails, jan, ok

PROMPT = r">>> "


def threads_on_disk(data):
    out = []
    for folder in sorted((data / "threads").iterdir()):
        if (folder / "thread.json").is_file():
            thread = json.loads((folder / "thread.json").read_text())
            messages = [json.loads(line) for line in (folder / "messages.jsonl").read_text().splitlines() if line]
            out.append((thread, messages))
    return sorted(out, key=lambda t: t[0]["created"])


def text_of(message):
    return "".join(part["text"]["value"] for part in message["content"])


@pytest.fixture
def chat(data, stories_path):
    procs = []

    def start(*extra: str) -> PtyProcess:
        proc = PtyProcess([*JAN, "chat", str(stories_path), "--ctx-size", "32768", "--threads", "1", *extra],
                          cli_env(data))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


def test_chat_streams_answers_handles_commands_and_saves_threads(chat, data):
    term = chat("--temperature", "0", "--max-tokens", "24")
    term.expect("/help for commands")
    term.expect(PROMPT)
    term.sendline("Hello there")
    # the terminal echoes the line; the streamed answer follows, then the next prompt
    answer = term.expect(rb"(?s)Hello there\r?\n(.+?)>>> ")
    streamed = answer.group(1).decode().replace("\r\n", "\n").strip()
    assert streamed
    term.sendline("/help")
    term.expect("/system")
    term.expect(PROMPT)
    term.sendline("/system You write short stories.")
    term.expect("system prompt set")
    term.expect(PROMPT)
    term.sendline("line one \\")  # a trailing backslash continues the message
    term.expect(r"\.\.\. ")
    term.sendline("line two")
    term.expect(PROMPT)
    term.sendline("/save First chat")
    term.expect(r"saved as thread (thread_\w+)")
    term.expect(PROMPT)
    term.sendline("/new")
    term.expect("new conversation")
    term.expect(PROMPT)
    term.sendline('"""')  # a triple-quoted block
    term.expect(r"\.\.\. ")
    term.sendline("block one")
    term.sendline('block two"""')
    term.expect(PROMPT)
    term.sendline("/nonsense")
    term.expect("unknown command /nonsense")
    term.sendline("/exit")
    assert term.wait() == 0

    (first, first_messages), (second, second_messages) = threads_on_disk(data)
    assert first["title"] == "First chat"
    assert first["assistants"][0]["model"]["id"] == "stories260K"
    assert first["assistants"][0]["instructions"] == "You write short stories."
    assert [m["role"] for m in first_messages] == ["user", "assistant", "user", "assistant"]
    assert text_of(first_messages[0]) == "Hello there"
    assert text_of(first_messages[1]).strip() == streamed
    assert text_of(first_messages[2]) == "line one \nline two"
    assert [text_of(m) for m in second_messages if m["role"] == "user"] == ["block one\nblock two"]
    assert all(m["status"] == "ready" for m in first_messages + second_messages)


def test_ctrl_c_stops_the_answer_not_the_program(chat, data):
    # --ignore-eos and a big budget: an answer that takes seconds, so Ctrl-C lands while it streams
    term = chat("--temperature", "0", "--ignore-eos", "--max-tokens", "30000")
    term.expect(PROMPT)
    term.sendline("Tell me a long story")
    term.expect(rb"Tell me a long story\r?\n")
    term.expect(rb"[a-z]+ [a-z]+ [a-z]+ [a-z]+ [a-z]+")  # words are streaming in
    term.send(b"\x03")  # Ctrl-C
    term.expect(r"\[answer stopped\]", timeout=30)
    term.expect(PROMPT)
    assert term.alive()
    (thread, messages), = threads_on_disk(data)  # the partial answer was saved, marked stopped
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["status"] == "stopped" and text_of(messages[1])
    assert messages[1]["metadata"]["finish_reason"] == "cancelled"
    # the program goes on: another question, then Ctrl-C at the prompt leaves
    term.sendline("/model")
    term.expect("model: stories260K")
    term.expect(PROMPT)
    term.send(b"\x03")
    assert term.wait() == 0
    modes = termios.tcgetattr(term.fd)[3]  # the terminal is left as it was found: echo, line editing
    assert modes & termios.ECHO and modes & termios.ICANON


def test_ctrl_d_leaves_and_threads_resume(chat, data, stories_path):
    term = chat("--temperature", "0", "--max-tokens", "8")
    term.expect(PROMPT)
    term.sendline("First question")
    term.expect(PROMPT)
    term.send(b"\x04")  # Ctrl-D
    assert term.wait() == 0
    (thread, _), = threads_on_disk(data)
    # --thread continues it (stdin not a terminal here: no prompts, same commands)
    ok(jan("chat", stories_path, "--thread", thread["id"], "--temp", "0", "-n", "8",
           env=cli_env(data), input="Second question\n"))
    (thread2, messages), = threads_on_disk(data)
    assert thread2["id"] == thread["id"]
    assert [text_of(m) for m in messages if m["role"] == "user"] == ["First question", "Second question"]


def test_chat_without_a_model_uses_the_only_one(data, stories_path):
    env = cli_env(data)
    fails(jan("chat", env=env, input="Hi\n"), "no models yet")
    ok(jan("models", "import", stories_path, "--id", "only-one", env=env))
    ok(jan("chat", "--temp", "0", "-n", "6", "--no-save", env=env, input="Hi\n/save Kept\n"))
    (thread, messages), = threads_on_disk(data)
    assert thread["title"] == "Kept" and thread["assistants"][0]["model"]["id"] == "only-one"
    assert len(messages) == 2
    ok(jan("models", "import", stories_path, "--id", "second", env=env))
    fails(jan("chat", env=env, input="Hi\n"), "which model?", "only-one", "second")


def test_local_chat_adds_no_turn_to_a_thread_a_run_holds(data, stories_path):
    """`jan chat --thread` without a server adds its turns through the run service, as the server adds a message:
    refused while a run holds the thread (here one a server left waiting for approval), the thread untouched."""
    from jan.services.run_records import save_record

    env = cli_env(data)
    ok(jan("chat", stories_path, "--temp", "0", "-n", "4", env=env, input="First question\n"))
    (thread, before), = threads_on_disk(data)
    save_record(data, {"id": "run_waitingforapproval", "object": "thread.run", "thread_id": thread["id"],
                       "assistant_id": "jan", "model": "stories260K", "instructions": "", "parameters": {},
                       "metadata": {}, "status": "requires_action", "step": 0, "pending": [
                           {"id": "call_1", "type": "function", "function": {"name": "current_time", "arguments": "{}"}}]})
    result = jan("chat", stories_path, "--thread", thread["id"], "--temp", "0", "-n", "4", env=env,
                 input="Second question\n")
    assert "could not save the conversation" in result.stderr and "run_waitingforapproval" in result.stderr, \
        result.stderr
    (_, after), = threads_on_disk(data)
    assert after == before


def test_a_mistyped_chat_command_names_the_one_meant(data, stories_path):
    """`/modle x` was "unknown command /modle" alone, where a mistyped `jan` command or model id names the one
    meant. (Piped, a command that is none is a failure: the chat goes on, and ends with status 1.)"""
    env = cli_env(data)
    ok(jan("models", "import", stories_path, env=env))
    result = jan("chat", "stories260K", "-n", "2", "--no-save", env=env, input="/modle x\n/sytem hi\n/temp 5\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "jan: error: unknown command /modle: did you mean '/model'? /help lists them" in result.stderr, result.stderr
    assert "jan: error: unknown command /sytem: did you mean '/system'? /help lists them" in result.stderr, result.stderr
    assert "jan: error: unknown command /temp: /help lists them" in result.stderr, result.stderr


def test_a_failed_chat_commands_line_shows_control_characters_escaped(data, stories_path):
    """A failed command's error echoes what was typed: a NUL or an ESC sequence in it reached the terminal raw (an
    escape the terminal acts on). Shown escaped, in the command's name and in an argument alike; tab and newline
    are whitespace (a command's name ends at them)."""
    env = cli_env(data)
    ok(jan("models", "import", stories_path, env=env))
    result = jan("chat", "stories260K", "-n", "2", "--no-save", env=env,
                 input="/no\x00pe\n/x\x1b[31mred\n/model a\x07b\x9b\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("jan: error:")]
    assert len(errors) == 3, result.stderr
    assert errors[0].startswith("jan: error: unknown command /no\\x00pe: "), errors
    assert errors[1].startswith("jan: error: unknown command /x\\x1b[31mred: "), errors
    assert errors[2].startswith("jan: error: /model: could not switch to model 'a\\x07b\\x9b': "), errors
    assert not any(ch in result.stderr for ch in "\x00\x1b\x07\x9b"), result.stderr


@pytest.mark.parametrize("line,said", [
    ("/model nosuch", "/model: could not switch to model 'nosuch': model 'nosuch' not found"),
    ("/model missing.gguf", "/model: could not switch to model 'missing.gguf': no such file: missing.gguf"),
    ("/model NOTGGUF", "/model: could not switch to model 'NOTGGUF': NOTGGUF is not a GGUF file"),
    ("/image NOTGGUF", "/image: could not attach 'NOTGGUF': model 'stories260K' takes no images"),
    ("/save READONLY", "/save: could not save the conversation: "),
    ("/nonsense", "unknown command /nonsense: /help lists them"),
], ids=["model-id", "model-missing-file", "model-not-gguf", "image", "save", "unknown"])
def test_a_failed_chat_command_says_what_failed_and_piped_the_chat_exits_1(data, stories_path, tmp_path, line, said):
    """Every /command's failure is one `jan: error:` line saying which command failed and why (`/model x.gguf` said
    "MODEL: no such file", the name of `jan chat`'s argument, not of the command typed), and piped into `jan chat`
    the chat goes on to its end, then exits 1 as a shell script whose command failed does (it exited 0)."""
    from test_cli_helpers import read_only_prefix, restore_writable

    env = cli_env(data)
    ok(jan("models", "import", stories_path, env=env))
    other = tmp_path / "notes.txt"
    other.write_text("not a model")
    line = line.replace("NOTGGUF", str(other))
    said = said.replace("NOTGGUF", str(other))
    first = "Hello\n"
    if "READONLY" in line:
        line = "/save Kept"
        prefix = read_only_prefix(data / "threads")
        if prefix is None:
            pytest.skip("cannot make a folder read-only here (root)")
    else:
        prefix = None
    try:
        result = subprocess.run([*(prefix or []), *JAN, "chat", "stories260K", "-n", "2", "--no-save"], env=env,
                                cwd=tmp_path, input=f"{first}{line}\nOnce upon a time\n/model\n",
                                capture_output=True, text=True, timeout=120)
    finally:
        if prefix is not None:
            restore_writable(data / "threads")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "MODEL:" not in result.stderr, result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("jan: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"jan: error: {said}"), result.stderr
    # the chat went on after it, with its model (a note: on stderr, stdout being no terminal, where only answers go)
    assert "model: stories260K" in result.stderr and "model: stories260K" not in result.stdout


def test_a_piped_chat_whose_commands_all_worked_exits_0(data, stories_path):
    env = cli_env(data)
    ok(jan("models", "import", stories_path, env=env))
    result = ok(jan("chat", "stories260K", "-n", "2", env=env,
                    input="/help\n/system Be brief\nHello\n/save Kept\n/model stories260K\n/new\n/image -\n"))
    assert "jan: error" not in result.stderr, result.stderr


@pytest.mark.parametrize("space", [" ", "\t", "  ", " \t "], ids=["space", "tab", "two-spaces", "mixed"])
def test_a_chat_commands_argument_follows_any_whitespace(data, stories_path, space):
    """A command and its argument parted by a tab (pasted) or several spaces: `/system<TAB>Be brief` was the unknown
    command "/system\tbe brief" (its name taken up to the first space only)."""
    env = cli_env(data)
    result = ok(jan("chat", stories_path, "-n", "2", "--no-save", env=env,
                    input=f"/system{space}Be brief\n/system\n/model{space}{stories_path}\n"))
    assert "jan: error" not in result.stderr, result.stderr
    assert "system prompt: 'Be brief'" in result.stderr, result.stderr
