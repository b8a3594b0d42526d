"""`jan chat --mcp/--tool` asks y/n before each tool call; `jan mcp list|add|remove` edit mcp.json."""

from __future__ import annotations

import json
import sys

import pytest

from mcp_helpers import NOTES_SERVER, notes_folder, stdio_entry, write_mcp_config
from test_cli_chat import threads_on_disk
from test_cli_helpers import JAN, PtyProcess, cli_env, fails, jan, ok

pytestmark = pytest.mark.timeout(600)
PROMPT = r">>> "


def test_jan_mcp_add_list_remove(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data)
    ok(jan("mcp", "add", "notes", sys.executable, str(NOTES_SERVER), "--root", str(tmp_path), "--env", "A=1", env=env))
    ok(jan("mcp", "add", "web", "http://127.0.0.1:9/mcp", "--header", "X-Key=1", env=env))
    config = json.loads((data / "mcp.json").read_text())["mcpServers"]
    assert config["notes"] == {"command": sys.executable, "args": [str(NOTES_SERVER), "--root", str(tmp_path)],
                               "env": {"A": "1"}}
    assert config["web"] == {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "1"}}
    listed = json.loads(ok(jan("mcp", "list", "--json", env=env)).stdout)
    assert [(s["name"], s["transport"]) for s in listed] == [("notes", "stdio"), ("web", "http")]
    fails(jan("mcp", "add", "web", "http://127.0.0.1:9/other", env=env), "already exists")
    ok(jan("mcp", "remove", "web", env=env))
    fails(jan("mcp", "remove", "web", env=env), "no MCP server named 'web'")
    assert list(json.loads((data / "mcp.json").read_text())["mcpServers"]) == ["notes"]


def test_chat_asks_before_each_tool_call(tmp_path, tool_model):
    data = tmp_path / "jan"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path))})
    term = PtyProcess([*JAN, "chat", str(tool_model), "--threads", "1", "--ctx-size", "4096", "--temperature", "0",
                       "--max-tokens", "40", "--mcp", "notes", "--tool-choice", "notes__list_notes"], cli_env(data))
    try:
        term.expect(PROMPT, timeout=120)
        term.sendline("Which notes do I have?")
        term.expect(r"tool call: notes__list_notes")
        term.expect(r"Run notes__list_notes\? \[y/N\] ")
        term.sendline("y")
        term.expect(r"shopping\.txt")
        term.expect(PROMPT, timeout=120)
        term.sendline("And now?")
        term.expect(r"Run notes__list_notes\? \[y/N\] ")
        term.sendline("n")
        term.expect("denied")
        term.expect(PROMPT, timeout=120)
        term.send("\x04")  # Ctrl-D: leave
        term.expect("saved as thread", timeout=60)
    finally:
        term.close()
    [(thread, messages)] = threads_on_disk(data)
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant", "tool", "assistant"]
    approved, denied = messages[2], messages[6]
    assert approved["metadata"]["approved_by"] == "user" and not approved["metadata"]["is_error"]
    assert "shopping.txt" in approved["content"][0]["text"]["value"]
    assert denied["metadata"]["is_error"] and "denied" in denied["content"][0]["text"]["value"]
    assert messages[1]["metadata"]["tool_calls"][0]["function"]["name"] == "notes__list_notes"


def test_a_tool_choice_among_no_such_tools_is_refused(tmp_path, stories_path):
    # --tool-choice without tools, or naming a tool the chat was not given, was quietly dropped: the model answered
    # as if no choice had been made
    data = tmp_path / "jan"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path))})
    env = cli_env(data)
    for choice in ("required", "notes__list_notes"):
        fails(jan("chat", str(stories_path), "--tool-choice", choice, env=env, input="hi\n"),
              f"--tool-choice {choice} needs tools", "--tool", "--mcp")
    fails(jan("chat", str(stories_path), "--mcp", "notes", "--tool-choice", "notes__nope", env=env, input="hi\n"),
          "'notes__nope'", "notes__list_notes")
    # auto and none need no tools: nothing to refuse
    ok(jan("chat", str(stories_path), "--tool-choice", "none", "--max-tokens", "2", "--no-save", env=env, input="hi\n"))


def test_an_mcp_server_that_gives_no_tools_says_why(tmp_path, stories_path):
    data = tmp_path / "jan"
    write_mcp_config(data, {"broken": {"command": sys.executable, "args": ["-c", "raise SystemExit('no API key')"]}})
    env = cli_env(data)
    fails(jan("chat", str(stories_path), "--mcp", "broken", env=env, input="hi\n"), "'broken' offers no tools",
          "no API key")
    fails(jan("chat", str(stories_path), "--mcp", "absent", env=env, input="hi\n"), "'absent' offers no tools",
          "not configured")
