"""A real MCP server for jan's tests, written with the official SDK: a filesystem-style "notes" server.

Run ``python notes_server.py [--root DIR]`` for stdio, or add ``--http PORT`` for
streamable HTTP on 127.0.0.1 (with ``--sse`` too: the older HTTP+SSE transport). ``--stamp FILE`` appends the process id to FILE
at each start (tests count restarts with it).

Tools: ``list_notes``, ``read_note(name)``, ``add(a, b)``, ``slow(seconds)``
(sleeps: a hung server), ``hang()``, ``wait_for_go()`` (answers once a file ``go`` exists), ``crash()`` (the process exits mid-call) and
``flood(chars)`` (a huge answer), ``screenshot()`` (a caption and a 20x18 PNG: a tool result with an image).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from mcp.server.mcpserver import Image, MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--root", default=".")
parser.add_argument("--http", type=int, default=None)
parser.add_argument("--stamp", default=None)
parser.add_argument("--sse", action="store_true", help="with --http: the older HTTP+SSE transport (GET /sse)")
options = parser.parse_args()
ROOT = Path(options.root).resolve()

server = MCPServer("notes", instructions="Notes in a folder")


@server.tool()
def list_notes() -> str:
    """Names of the notes in the folder, one per line."""
    return "\n".join(sorted(p.name for p in ROOT.glob("*.txt")))


@server.tool()
def read_note(name: str) -> str:
    """The text of one note (a file name from list_notes)."""
    path = (ROOT / name).resolve()
    if not path.is_relative_to(ROOT) or not path.is_file():
        raise ValueError(f"no note called {name}")
    return path.read_text(encoding="utf-8")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def slow(seconds: float) -> str:
    """Sleep for a number of seconds without answering anything (blocks this server)."""
    time.sleep(seconds)
    return "woke up"


@server.tool()
def hang() -> str:
    """Never answer (sleeps two minutes)."""
    time.sleep(120)
    return "late"


@server.tool()
def wait_for_go() -> str:
    """Answer "go" once a file named go is in the folder (writes "waiting" there first; gives up after two minutes)."""
    (ROOT / "waiting").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + 120
    while not (ROOT / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "go" if (ROOT / "go").exists() else "no go"


@server.tool()
def crash() -> str:
    """End the server process at once."""
    os._exit(3)


@server.tool()
def flood(chars: int) -> str:
    """A long answer of the letter x."""
    return "x" * chars


@server.tool()
def screenshot() -> list:
    """A picture of the screen."""
    import io

    from PIL import Image as Picture

    out = io.BytesIO()
    Picture.new("RGB", (20, 18), (30, 90, 200)).save(out, "PNG")
    return ["the screen", Image(data=out.getvalue(), format="png")]


@server.prompt()
def summarize(name: str) -> str:
    """Ask for a summary of a note."""
    return f"Summarize the note {name}."


if __name__ == "__main__":
    if options.stamp:
        with open(options.stamp, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    if options.http and options.sse:
        server.run("sse", host="127.0.0.1", port=options.http)
    elif options.http:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    else:
        server.run()
