"""At a terminal, jan's own styling (dim notes, bold headings, the yellow tool-call line, dimmed thinking) is left
out under ``NO_COLOR`` (no-color.org) and ``TERM=dumb`` (a terminal that prints escape codes as text).

Before: `jan threads show` and `jan chat`'s notes used click.secho, which drops styles only when stdout is no
terminal, so ``TERM=dumb`` got raw ``ESC[1m``s and ``NO_COLOR`` was honoured by the thinking alone."""

from __future__ import annotations

import pytest

from test_cli_helpers import JAN, PtyProcess, cli_env

ESC = b"\x1b["


@pytest.fixture
def thread_id(data):
    from jan.store import DataFolder

    thread = DataFolder(data).threads.create("A story", messages=[
        {"role": "user", "content": "Once upon a time"}, {"role": "assistant", "content": "there was a dog."}])
    return thread["id"]


def terminal_env(data, setting: str) -> dict[str, str]:
    env = cli_env(data)
    env.pop("NO_COLOR")  # cli_env sets it for every other test
    env["TERM"] = "xterm"
    if setting == "NO_COLOR":
        env["NO_COLOR"] = "1"
    elif setting == "TERM=dumb":
        env["TERM"] = "dumb"
    return env


def at_a_terminal(argv: list[str], env: dict[str, str], *, keys: str | None = None, until: str) -> bytes:
    term = PtyProcess([*JAN, *argv], env)
    try:
        if keys is not None:
            term.expect("> ", timeout=120)
            term.send(keys)
        term.expect(until, timeout=120)
        if keys is not None:
            term.expect("> ", timeout=120)  # the next prompt: reading again
            term.send("\x04")  # Ctrl-D: leave
        assert term.wait(60) == 0
        return term.output
    finally:
        term.close()


@pytest.mark.parametrize("setting", ["styled", "NO_COLOR", "TERM=dumb"])
def test_threads_show_is_plain_under_no_color_and_a_dumb_terminal(data, thread_id, setting):
    out = at_a_terminal(["threads", "show", thread_id], terminal_env(data, setting), until="there was a dog")
    assert b"A story" in out
    # the control: the same command at a terminal that takes styles does style it (so the pty is a terminal)
    assert (ESC in out) == (setting == "styled"), out


@pytest.mark.parametrize("setting", ["styled", "NO_COLOR", "TERM=dumb"])
def test_chat_notes_are_plain_under_no_color_and_a_dumb_terminal(data, stories_path, setting):
    out = at_a_terminal(["chat", str(stories_path), "--no-save"], terminal_env(data, setting), keys="/model\r",
                        until="model: stories260K")
    note = out[out.index(b"/model"):]
    assert (ESC in note) == (setting == "styled"), note


@pytest.mark.parametrize("setting", ["styled", "NO_COLOR", "TERM=dumb"])
def test_tables_are_plain_under_no_color_and_a_dumb_terminal(data, thread_id, setting):
    """A listing at a terminal is rich's table, whose bold headers rich leaves in under NO_COLOR (it drops colors
    only): `jan threads list` (and every listing, and the import's progress bar: one rich_console) wrote ESC[1m."""
    out = at_a_terminal(["threads", "list"], terminal_env(data, setting), until=thread_id)
    assert b"A story" in out
    assert (ESC in out) == (setting == "styled"), out
