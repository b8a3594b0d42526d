"""An MCP server written as raw JSON-RPC over stdio, so that it can answer what the SDK's servers never would:
``python raw_server.py [--big CHARS] [--injected TEXT]``.

``tools/list`` holds valid tools (``echo(text)``, ``big()``, ``odd()``) and malformed ones: one whose
``inputSchema`` is not an object, one without a name, one that is not even an object. ``prompts/list`` and
``resources/list`` hold a valid item and a malformed one each.

``echo`` answers its text; ``big`` a text of ``--big`` characters (a numbered line after another, so that it
takes as many tokens as real text would); ``odd`` a text block, a block of a content type no MCP version has,
and an image whose data is not base64.

``--injected TEXT`` adds ``note(text)`` (it answers its text), whose description and schema strings (a property's
description, title, default and examples) end in ``TEXT``: a server that writes chat-template markup into its tool
list. ``text`` is one of an enum, so that a forced call of it is short.
"""

from __future__ import annotations

import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--big", type=int, default=32_000)
parser.add_argument("--injected", default=None)
options = parser.parse_args()

EMPTY = {"type": "object", "properties": {}}
TOOLS = [
    {"name": "echo", "description": "Answer the text given",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "bad_schema", "description": "Its input schema is a string", "inputSchema": "not a schema"},
    {"description": "A tool without a name", "inputSchema": EMPTY},
    "not a tool",
    {"name": "big", "description": "A long text", "inputSchema": EMPTY},
    {"name": "odd", "description": "Content of kinds jan does not know", "inputSchema": EMPTY},
]
if options.injected is not None:
    TOOLS.append({"name": "note", "description": "Write a note." + options.injected, "inputSchema": {
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string", "description": "The note." + options.injected,
                                "title": "Text" + options.injected, "default": "hi" + options.injected,
                                "examples": ["hi" + options.injected], "enum": ["hi", "bye"]}}}})
PROMPTS = [{"name": "summarize", "description": "Summarize"}, {"description": "A prompt without a name"}]
RESOURCES = [{"uri": "note://one", "name": "one"}, {"name": "no uri"}]


def big_text(chars: int) -> str:
    lines = []
    size = 0
    k = 0
    while size < chars:
        line = f"line {k}: the lighthouse keeper counted {k * 7} gulls and {k * 3} boats before noon.\n"
        lines.append(line)
        size += len(line)
        k += 1
    return "".join(lines)[:chars]


def call(name: str, arguments: dict) -> dict:
    if name in ("echo", "note"):
        return {"content": [{"type": "text", "text": str(arguments.get("text", ""))}], "isError": False}
    if name == "big":
        return {"content": [{"type": "text", "text": big_text(options.big)}]}
    if name == "odd":
        return {"content": [{"type": "text", "text": "before"}, {"type": "hologram", "frames": 3},
                            {"type": "image", "data": "***not base64***", "mimeType": "image/png"},
                            {"type": "text", "text": "after"}]}
    raise KeyError(name)


def answer(request: dict) -> dict | None:
    method, params = request.get("method"), request.get("params") or {}
    if "id" not in request:
        return None  # a notification
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
                  "serverInfo": {"name": "raw", "version": "1"}}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "prompts/list":
        result = {"prompts": PROMPTS}
    elif method == "resources/list":
        result = {"resources": RESOURCES}
    elif method == "tools/call":
        try:
            result = call(params.get("name"), params.get("arguments") or {})
        except KeyError:
            return {"jsonrpc": "2.0", "id": request["id"],
                    "error": {"code": -32602, "message": f"no tool {params.get('name')!r}"}}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


for line in sys.stdin:
    if not line.strip():
        continue
    reply = answer(json.loads(line))
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
