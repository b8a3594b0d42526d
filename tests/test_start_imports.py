"""What is imported before it is used: a server that has loaded its model, and a library user's ``jan.Model``, carry
none of the libraries that only some requests need. Each is resident memory (Jinja with jan's sandbox ~2.5 MiB,
numpy ~4 MiB, psutil 0.8 MiB; see "Where the resident memory goes" in ``benchmarks/FINDINGS.md``) that a server
holds for nothing until such a request comes, and the kind of regression one module-level import brings back.

Each check runs in a fresh interpreter: this test process has imported everything long before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Libraries loaded on first use only: chat templates (jinja2), /metrics (prometheus_client), /v1/system and
#: fitting a context to free memory (psutil), embeddings as arrays (numpy), images (PIL), PDFs (pypdf), MCP hosts
#: (mcp), the CLI's terminal output (rich), and aiohttp's HTTP client (image URLs, downloads, remote models: its
#: package is registered by ``jan serve`` with its ``__init__`` deferred, ``jan.server.aiohttp_import``), and Lark's
#: translator of tools' text grammars (``jan.templates.lark_gbnf``: a chat without such a tool never needs it). The
#: other commands' modules (``jan.cli.models`` with ``jan.cli.inference`` and ``jan.cli.progress``) are never a
#: server's: its start's models line once imported them for two helpers, ~1.8 MiB after a chat. The remote-model
#: extension's OpenAI wire format and SSE parser wait for a remote model's first request (~0.2 MiB).
ON_FIRST_USE = ("jinja2", "prometheus_client", "psutil", "numpy", "PIL", "pypdf", "mcp", "rich", "aiohttp.client",
                "aiohttp.connector", "jan.templates.lark_gbnf", "lark", "jan.cli.models", "jan.cli.inference",
                "jan.cli.progress", "jan.extensions.remote.wire", "jan.extensions.remote.sse")

SERVE = r"""
import json, os, sys, threading, urllib.request
from jan.testing.server import free_port, wait_for_health

port = free_port()

def report():
    if not wait_for_health(port):
        os._exit(3)
    before = {m: m in sys.modules for m in ON_FIRST_USE}
    body = json.dumps({"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body.encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=120).read()
    after = {m: m in sys.modules for m in ON_FIRST_USE}
    sys.stdout.write(json.dumps({"loaded": before, "after_chat": after}) + "\n")
    sys.stdout.flush()
    os._exit(0)

threading.Thread(target=report, daemon=True).start()
sys.argv = ["jan", "serve", "--port", str(port), "--data-folder", DATA, "-m", MODEL, "--parallel", "2",
            "--ctx-size", "256", *THREADS, "--log-level", "warning"]
from jan.cli import main
main()
"""

LIBRARY = r"""
import json, sys
import jan
model = jan.Model(MODEL, n_ctx=256, n_parallel=1, **THREADS)
model.generate([1], max_tokens=2)
sys.stdout.write(json.dumps({m: m in sys.modules for m in ON_FIRST_USE}) + "\n")
"""


def _run(script: str, **names: object) -> dict:
    prelude = "".join(f"{name} = {value!r}\n" for name, value in {"ON_FIRST_USE": ON_FIRST_USE, **names}.items())
    done = subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


#: Threads given, and left to jan (one per physical core: read from Linux's sysfs, not through psutil, which a server
#: would then carry for its whole life for that one count; other systems ask psutil).
THREAD_CHOICES = [pytest.param(True, id="threads-given"),
                  pytest.param(False, id="threads-default", marks=pytest.mark.skipif(
                      not sys.platform.startswith("linux"), reason="physical cores are read from sysfs on Linux only"))]


@pytest.mark.timeout(360)
@pytest.mark.parametrize("threads_given", THREAD_CHOICES)
def test_a_server_with_its_model_loaded_has_imported_nothing_it_has_not_used(tmp_path, stories_path, threads_given):
    seen = _run(SERVE, DATA=str(tmp_path / "data"), MODEL=str(stories_path),
                THREADS=["--threads", "1"] if threads_given else [])
    assert [m for m, loaded in seen["loaded"].items() if loaded] == []
    # the first chat renders the chat template: Jinja comes with it, and only it
    assert [m for m, loaded in seen["after_chat"].items() if loaded] == ["jinja2"]


@pytest.mark.timeout(360)
@pytest.mark.parametrize("threads_given", THREAD_CHOICES)
def test_a_library_model_with_its_context_given_has_imported_nothing_it_has_not_used(stories_path, threads_given):
    seen = _run(LIBRARY, MODEL=str(stories_path), THREADS={"n_threads": 1} if threads_given else {})
    assert [m for m, loaded in seen.items() if loaded] == []
