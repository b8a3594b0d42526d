"""Real MCP servers for the tests (``tests/mcp_servers/notes_server.py``, written with the mcp SDK)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

NOTES_SERVER = Path(__file__).parent / "mcp_servers" / "notes_server.py"
#: A raw JSON-RPC server answering what the SDK's servers never would (malformed tools, unknown content, a long text).
RAW_SERVER = Path(__file__).parent / "mcp_servers" / "raw_server.py"


def notes_folder(tmp: Path) -> Path:
    root = tmp / "notes"
    root.mkdir(parents=True, exist_ok=True)
    (root / "shopping.txt").write_text("eggs, milk, bread\n", encoding="utf-8")
    (root / "todo.txt").write_text("call the plumber\n", encoding="utf-8")
    return root


def stdio_entry(root: Path, stamp: Path | None = None, **extra) -> dict:
    args = [str(NOTES_SERVER), "--root", str(root)]
    if stamp is not None:
        args += ["--stamp", str(stamp)]
    return {"command": sys.executable, "args": args, **extra}


def raw_entry(big: int = 32_000, injected: str | None = None) -> dict:
    """An mcp.json entry for :data:`RAW_SERVER`; its ``big`` tool answers ``big`` characters; with ``injected``, its
    ``note`` tool's description and schema strings end in that text."""
    extra = [] if injected is None else ["--injected", injected]
    return {"command": sys.executable, "args": [str(RAW_SERVER), "--big", str(big), *extra]}


def write_mcp_config(data_folder: Path, servers: dict) -> Path:
    """Write ``<data_folder>/mcp.json`` as jan's edits and most editors save: a new file renamed over it. (Written in
    place, a rewrite of the same size within one tick of the file system's clock looks unchanged to the host.)"""
    data_folder.mkdir(parents=True, exist_ok=True)
    path = data_folder / "mcp.json"
    fresh = path.with_name("mcp.json.new")
    fresh.write_text(json.dumps({"mcpServers": servers}, indent=2), encoding="utf-8")
    os.replace(fresh, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_notes_server(root: Path, log: Path, *, sse: bool = False) -> Iterator[str]:
    """The notes server over streamable HTTP (``sse``: the older HTTP+SSE transport) on 127.0.0.1; yields its URL."""
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(NOTES_SERVER), "--root", str(root), "--http", str(port),
                                 *(["--sse"] if sse else [])],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP MCP server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/" + ("sse" if sse else "mcp")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def notes_server_fixture(name: str, *, sse: bool = False):
    """A module-scoped fixture ``name``: the URL of a notes server of its own (:func:`http_notes_server`), started
    once per test module that uses it. A module takes it by importing it (``from mcp_helpers import notes_url``)."""

    @pytest.fixture(scope="module", name=name)
    def fixture(tmp_path_factory):
        tmp = tmp_path_factory.mktemp(name)
        with http_notes_server(notes_folder(tmp), tmp / f"{name}.log", sse=sse) as url:
            yield url

    return fixture


notes_url = notes_server_fixture("notes_url")
sse_url = notes_server_fixture("sse_url", sse=True)  # (the older HTTP+SSE transport)
hang_url = notes_server_fixture("hang_url")  # a notes server of its own: its hang tool blocks it


@pytest.fixture(scope="module")
def dead_url():
    """An MCP URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/mcp"


def forced_call(name: str, **extra) -> dict:
    """A run body that makes the model call the tool ``name`` (one call, greedy, a few tokens)."""
    return {"tool_choice": {"type": "function", "function": {"name": name}}, "parallel_tool_calls": False,
            "max_tokens": 60, "temperature": 0, **extra}


async def tool_thread(api, tools: list) -> str:
    """A thread of a new "Notes" assistant (the ``qwen3-tools`` model with ``tools``) holding one user question;
    ``api``: an ``api_helpers.Client``. Returns the thread's id."""
    assistant = await api.ok("POST", "/v1/assistants", {"name": "Notes", "model": "qwen3-tools", "tools": tools})
    thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                  "messages": [{"role": "user", "content": "What notes do I have?"}]})
    return thread["id"]
