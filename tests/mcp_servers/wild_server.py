"""A misbehaving MCP server, raw JSON-RPC over stdio, one request at a time (as a simple server is written):
``python wild_server.py [--exit-after-call] [--junk-at-start]``.

Tools: ``echo(text)``; names jan must change to fit a tool-call name and that meet once changed (``a.b`` beside
``a_b``, two non-ASCII names, two long names alike in their first 64 characters) and one listed twice; ``grow``
adds a tool ``grown``, and a prompt and a resource, and says so with ``notifications/*/list_changed``
(before its answer); ``junk`` writes lines that are no JSON-RPC to stdout before its answer; ``hang`` never
answers, nor anything after it (it ignores cancellation, as a server blocked in a call does); ``big(chars)`` answers
in one JSON-RPC line of that many characters and more; ``endless`` writes one line that never ends; ``badref`` and
``nothing`` have parameters schemas no grammar can be made of (a ``$ref`` to nothing, a ``false`` property).

``--exit-after-call`` exits after answering its first call (a server that does one job per process);
``--junk-at-start`` writes a banner to stdout before its first answer.
"""

from __future__ import annotations

import json
import sys
import time

EXIT_AFTER_CALL = "--exit-after-call" in sys.argv
JUNK_AT_START = "--junk-at-start" in sys.argv
OBJECT = {"type": "object", "properties": {}}
LONG = "x" * 70
TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "a.b", "description": "dotted", "inputSchema": OBJECT},
    {"name": "a_b", "description": "plain", "inputSchema": OBJECT},
    {"name": "検索", "description": "search", "inputSchema": OBJECT},
    {"name": "取得", "description": "fetch", "inputSchema": OBJECT},
    {"name": LONG + "_one", "description": "long one", "inputSchema": OBJECT},
    {"name": LONG + "_two", "description": "long two", "inputSchema": OBJECT},
    {"name": "echo", "description": "listed twice", "inputSchema": OBJECT},
    {"name": "grow", "inputSchema": OBJECT},
    {"name": "junk", "inputSchema": OBJECT},
    {"name": "hang", "inputSchema": OBJECT},
    {"name": "big", "inputSchema": {"type": "object", "properties": {"chars": {"type": "integer"}}}},
    {"name": "endless", "inputSchema": OBJECT},
    {"name": "badref", "description": "a $ref that resolves to nothing", "inputSchema": {
        "type": "object", "properties": {"p": {"$ref": "#/$defs/Missing"}}, "required": ["p"]}},
    {"name": "nothing", "description": "a property no value matches", "inputSchema": {
        "type": "object", "properties": {"p": False}}},
]
PROMPTS: list = []
RESOURCES: list = []


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def call(name: str, arguments: dict) -> dict:
    if name == "hang":
        time.sleep(3600)
    if name == "big":
        return {"content": [{"type": "text", "text": "y" * int(arguments.get("chars", 0))}]}
    if name == "endless":
        while True:  # (blocks once the pipe is full, until its reader takes more)
            sys.stdout.write("z" * 1_000_000)
            sys.stdout.flush()
    if name == "grow":
        TOOLS.append({"name": "grown", "inputSchema": OBJECT})
        PROMPTS.append({"name": "grown_prompt"})
        RESOURCES.append({"uri": "note://grown", "name": "grown"})
        for kind in ("tools", "prompts", "resources"):
            send({"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"})
    if name == "junk":
        sys.stdout.write("progress: 50%\n{\"half\": \n")
        sys.stdout.flush()
    text = arguments.get("text") if name == "echo" else f"{name} done"
    return {"content": [{"type": "text", "text": str(text)}]}


for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    method, params = request.get("method"), request.get("params") or {}
    if "id" not in request:
        continue  # a notification (cancellation included: ignored)
    if method == "initialize":
        if JUNK_AT_START:
            sys.stdout.write("Welcome to the wild server!\n")
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {"listChanged": True}, "prompts": {"listChanged": True},
                                   "resources": {"listChanged": True}},
                  "serverInfo": {"name": "wild", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "prompts/list":
        result = {"prompts": PROMPTS}
    elif method == "resources/list":
        result = {"resources": RESOURCES}
    elif method == "tools/call":
        result = call(params.get("name"), params.get("arguments") or {})
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": f"no method {method}"}})
        continue
    send({"jsonrpc": "2.0", "id": request["id"], "result": result})
    if EXIT_AFTER_CALL and method == "tools/call":
        sys.exit(0)
