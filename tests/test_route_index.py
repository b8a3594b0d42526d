"""Route modules imported on their first request (``jan.server.route_index``; resident memory at start, issue 16).

The index is checked against the modules themselves (it can never drift from the routes they declare), and a real
``jan serve`` in a fresh interpreter shows that after start, ``/v1/models`` and a chat completion none of the lazily
loaded modules is imported, while every one of their routes answers from the start: 404s and 405s in the dialect's
own error shape before its module loads, and a first request that loads it and is answered by it."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest
from aiohttp import web

import jan.server.routes
from jan.server import route_index, route_state

#: The route modules ``jan serve`` imports at start: chat, completions, embeddings, models, health, the API docs.
EAGER = {"openai", "models", "health", "docs"}


def test_the_index_is_exactly_the_routes_its_modules_declare_in_their_order():
    declared = []
    for name in route_index.LAZY_MODULES:
        module = importlib.import_module(f"jan.server.routes.{name}")
        for route in module.routes:
            assert isinstance(route, web.RouteDef), (name, route)  # a static or view route has no stand-in
            assert not route.kwargs, (name, route)  # the stand-in is registered without them
            declared.append((name, route.method, route.path))
    assert list(route_index.LAZY_ROUTES) == declared


def test_every_route_module_is_imported_at_start_or_indexed():
    modules = {info.name for info in pkgutil.iter_modules(jan.server.routes.__path__)}
    assert modules == EAGER | set(route_index.LAZY_MODULES)
    assert not EAGER & set(route_index.LAZY_MODULES)


def test_no_two_routes_share_a_method_and_path():
    from jan.server.routes import docs, health, models, openai

    keys = [(r.method, r.path) for table in (openai.routes, models.routes, health.routes, docs.routes)
            for r in table] + [(method, path) for _, method, path in route_index.LAZY_ROUTES]
    assert len(keys) == len(set(keys))


def test_a_stand_in_hands_over_to_its_modules_own_handler():
    from jan.server.routes import threads

    stand_in = next(r.handler for r in route_index.lazy_table() if (r.method, r.path) == ("GET", "/v1/threads"))
    assert route_index.target(stand_in) is threads.list_threads
    assert route_index.target(threads.list_threads) is threads.list_threads  # any other handler: itself


def test_the_batch_runners_name_their_dialects_as_their_modules_do():
    for dialect, id_prefix, module_name, class_name in route_state.BATCH_RUNNERS:
        module = importlib.import_module(module_name)
        assert (module.DIALECT, module.ID_PREFIX) == (dialect, id_prefix)
        assert isinstance(getattr(module, class_name), type)


#: What ``jan serve`` must not have imported until a request needs it.
LAZY = tuple(f"jan.server.routes.{name}" for name in route_index.LAZY_MODULES) + (
    "jan.server.dialects.anthropic", "jan.server.dialects.responses", "jan.server.dialects.ollama_schemas",
    "jan.server.dialects.ollama_requests", "jan.server.dialects.llamacpp", "jan.server.dialects.openai_batches",
    "jan.server.dialects.anthropic_batches", "jan.services.runs", "jan.services.tool_loop", "jan.downloads",
    "jan.extensions.mcp.server", "jan.services.transcription")

SERVE = r"""
import json, os, sys, threading, urllib.error, urllib.request
from jan.testing.server import free_port, wait_for_health

port = free_port()
out = {}

def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")

def loaded():
    return sorted(m for m in LAZY if m in sys.modules)

def report():
    try:
        if not wait_for_health(port):
            os._exit(3)
        out["at_start"] = loaded()
        out["models"] = call("GET", "/v1/models")[0]
        chat = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        out["chat"] = call("POST", "/v1/chat/completions", chat)[0]
        out["after_chat"] = loaded()
        # errors before a dialect's module loads are in its shape: a 405 of Anthropic's, an unknown /api/ route's 404,
        # llama-server's 405
        out["messages_405"] = call("GET", "/v1/messages")
        out["api_404"] = call("GET", "/api/nothing")
        out["llamacpp_405"] = call("GET", "/completion")
        # the JSON-415 rule holds on a lazily loaded route before its module loads (in Anthropic's shape there)
        out["messages_415"] = call("POST", "/v1/messages", {"model": "m"}, {"Content-Type": "text/plain"})
        out["after_errors"] = loaded()
        # a first request loads its module and is answered by it, with the path's match info
        out["thread_404"] = call("GET", "/v1/threads/thread_nope")
        out["threads"] = call("GET", "/v1/threads")[0]
        out["after_threads"] = loaded()
        spec = call("GET", "/openapi.json")[1]
        out["doc"] = spec["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        out["summary"] = spec["paths"]["/v1/threads"]["get"]["summary"]
    except BaseException as exc:
        out["error"] = repr(exc)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)

threading.Thread(target=report, daemon=True).start()
sys.argv = ["jan", "serve", "--port", str(port), "--data-folder", DATA, "-m", MODEL, "--parallel", "2",
            "--ctx-size", "256", "--threads", "1", "--log-level", "warning", "--no-extensions"]
from jan.cli import main
main()
"""


@pytest.mark.timeout(360)
def test_serve_imports_the_other_routes_on_their_first_request_only(tmp_path, stories_path):
    prelude = f"LAZY = {LAZY!r}\nDATA = {str(tmp_path / 'data')!r}\nMODEL = {str(stories_path)!r}\n"
    done = subprocess.run([sys.executable, "-c", prelude + SERVE], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert seen["at_start"] == [] and (seen["models"], seen["chat"]) == (200, 200)
    assert seen["after_chat"] == []
    status, body = seen["messages_405"]
    assert status == 405 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body = seen["api_404"]
    assert status == 404 and set(body) == {"error"} and isinstance(body["error"], str)
    status, body = seen["llamacpp_405"]
    assert status == 405 and body["error"]["code"] == 405 and body["error"]["type"] == "invalid_request_error"
    status, body = seen["messages_415"]
    assert status == 415 and body["type"] == "error", body
    assert seen["after_errors"] == []
    status, body = seen["thread_404"]
    assert status == 404 and "thread_nope" in body["error"]["message"]
    assert seen["threads"] == 200
    assert "jan.server.routes.threads" in seen["after_threads"]
    assert "jan.server.routes.anthropic" not in seen["after_threads"]
    assert seen["doc"] == {"$ref": "#/components/schemas/MessagesRequest"}
    assert seen["summary"] != "GET /v1/threads"  # the handler's own docstring
