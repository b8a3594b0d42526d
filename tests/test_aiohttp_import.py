"""``jan.server.aiohttp_import.defer_client``: aiohttp's server imported without its client, and the package made
whole, as ``import aiohttp`` would have made it, the first time anything asks it for a name it does not hold.

Each check runs in a fresh interpreter (this test process imported aiohttp long ago, where deferring is a no-op)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PRELUDE = r"""
import importlib.metadata, json, sys, threading
from jan.server.aiohttp_import import defer_client
out = {"deferred": defer_client()}
"""


def _run(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PRELUDE + script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_the_server_imports_without_the_client_and_the_package_completes_on_first_use():
    seen = _run(r"""
from aiohttp import web
from aiohttp.multipart import MultipartReader
import aiohttp.web_protocol
app = web.Application()
out["server_only"] = not any(m in sys.modules for m in ("aiohttp.client", "aiohttp.connector", "aiohttp.cookiejar"))
out["version"] = aiohttp.__version__ == importlib.metadata.version("aiohttp")
out["again"] = defer_client()
import aiohttp
session_class = aiohttp.ClientSession              # the first name the package does not hold: __init__ runs
from aiohttp import ClientTimeout, TCPConnector
import aiohttp.client
out["client"] = session_class is aiohttp.client.ClientSession and ClientTimeout is aiohttp.client.ClientTimeout
out["all"] = sorted(set(aiohttp.__all__) - set(dir(aiohttp)) - {"GunicornUVLoopWebWorker", "GunicornWebWorker"})
out["web_is_the_same"] = aiohttp.web is web and aiohttp.MultipartReader is MultipartReader
try:
    aiohttp.no_such_name
except AttributeError:
    out["missing"] = "AttributeError"
print(json.dumps(out))
""")
    assert seen == {"deferred": True, "server_only": True, "version": True, "again": False, "client": True,
                    "all": [], "web_is_the_same": True, "missing": "AttributeError"}


@pytest.mark.timeout(300)
def test_threads_asking_at_once_run_init_once_and_a_failing_init_is_retried():
    seen = _run(r"""
import aiohttp
loader = aiohttp.__spec__.loader
real_exec, runs = loader.exec_module, []
def exec_module(module):
    runs.append(threading.get_ident())
    if len(runs) == 1:
        raise RuntimeError("first run fails")
    real_exec(module)
loader.exec_module = exec_module
try:
    aiohttp.ClientSession
except RuntimeError as exc:
    out["first"] = str(exc)
start, got = threading.Barrier(8), []
def ask():
    start.wait(timeout=60)
    got.append(aiohttp.ClientSession)
threads = [threading.Thread(target=ask) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join(timeout=120)
import aiohttp.client
out["runs"] = len(runs)
out["same"] = len(got) == 8 and all(c is aiohttp.client.ClientSession for c in got)
print(json.dumps(out))
""")
    assert seen == {"deferred": True, "first": "first run fails", "runs": 2, "same": True}


@pytest.mark.timeout(300)
def test_jan_serve_defers_the_client_before_its_first_aiohttp_import():
    done = subprocess.run([sys.executable, "-c", "import sys, json\nimport jan.cli.serve, jan.server.app\n"
                           "print(json.dumps(['aiohttp.web' in sys.modules, 'aiohttp.client' in sys.modules]))"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, False]


@pytest.mark.timeout(300)
def test_nothing_changes_when_aiohttp_was_imported_first():
    done = subprocess.run([sys.executable, "-c", "import aiohttp, sys, json\n"
                           "from jan.server.aiohttp_import import defer_client\n"
                           "print(json.dumps([defer_client(), sys.modules['aiohttp'] is aiohttp, "
                           "'aiohttp.client' in sys.modules]))"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, True, True]
