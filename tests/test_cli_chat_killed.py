"""`jan chat` killed mid-answer (``kill -9``, a crash) or told to stop (SIGHUP: the terminal closed; SIGTERM) keeps
what the user typed: the message is in the thread before the answer is shown, as a run and the web page store it.
It was saved only when the turn ended, so a ``kill -9`` during the answer lost the message with the answer.
(Through a server: tests/test_cli.py.)"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess

import pytest

from test_cli_helpers import JAN, jan, ok

PROMPT = "Tell me a long story"


def killed_mid_answer(model: str, env: dict[str, str], signum: int) -> tuple[int, bytes]:
    """Start `jan chat MODEL` (an answer that goes on and on), send :data:`PROMPT`, wait (bounded) for the first
    streamed chunk of the answer on stdout, send ``signum``; (exit status, what it wrote on stdout)."""
    chat = subprocess.Popen([*JAN, "chat", model, "--temperature", "0", "--ignore-eos", "--max-tokens", "30000"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chat.stdin.write(PROMPT.encode() + b"\n")
        chat.stdin.flush()
        ready, _, _ = select.select([chat.stdout], [], [], 120)
        assert ready, "no answer began within 120 s"
        seen = os.read(chat.stdout.fileno(), 65536)
        assert seen, chat.stderr.read().decode()
        chat.send_signal(signum)
        out, err = chat.communicate(timeout=120)  # (stdin stays open: the signal alone ends the chat)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait(10)
    return chat.returncode, seen + out


def stored_turns(env: dict[str, str]) -> tuple[str, list[dict]]:
    threads = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    assert len(threads) == 1, threads
    thread_id = threads[0]["id"]
    return thread_id, json.loads(ok(jan("threads", "export", thread_id, "-f", "json", env=env)).stdout)["messages"]


def kept(message: dict) -> str:
    """How a message was kept, from its API shape (`jan threads export -f json` gives the thread API's objects, with or
    without a server): ``ready`` (whole, or cut by the token limit), ``stopped`` (cut by a stop), ``pending``."""
    reason = (message.get("incomplete_details") or {}).get("reason")
    return {"in_progress": "pending"}.get(message["status"]) or ("stopped" if reason == "run_cancelled" else "ready")


def text_of(message: dict) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p.get("type") == "text")


def test_a_chat_killed_mid_answer_keeps_the_users_message(env, stories_path):
    code, _ = killed_mid_answer(str(stories_path), env, signal.SIGKILL)
    assert code == -signal.SIGKILL
    thread_id, stored = stored_turns(env)
    # the message, ready (nothing pending: no run recovery needed), and no half-written answer
    assert [(m["role"], kept(m)) for m in stored] == [("user", "ready")]
    assert text_of(stored[0]) == PROMPT
    # the next chat on the thread shows it and goes on from it
    resumed = ok(jan("chat", stories_path, "--thread", thread_id, "--temperature", "0", "-n", "4", env=env, input="Go on\n"))
    assert f"resumed thread {thread_id} (1 messages)" in resumed.stderr + resumed.stdout
    _, stored = stored_turns(env)
    assert [(m["role"], kept(m)) for m in stored] == [("user", "ready"), ("user", "ready"),
                                                          ("assistant", "ready")]
    assert text_of(stored[0]) == PROMPT and text_of(stored[1]) == "Go on"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_chat_told_to_stop_mid_answer_keeps_the_message_and_the_answer_so_far(env, stories_path, signum):
    code, shown = killed_mid_answer(str(stories_path), env, signum)
    assert code == 128 + signum
    _, stored = stored_turns(env)
    # as Ctrl-C keeps a stopped answer: the message once, the answer so far stopped
    assert [(m["role"], kept(m)) for m in stored] == [("user", "ready"), ("assistant", "stopped")]
    assert text_of(stored[0]) == PROMPT
    answer = text_of(stored[1])
    assert answer
    if signum == signal.SIGTERM:  # (SIGHUP silences the output: the terminal is gone)
        assert shown.decode(errors="replace").startswith(answer)
