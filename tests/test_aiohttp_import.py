"""``jan.server.aiohttp_import.defer_client``: aiohttp's server imported without its client, and the package made
whole, as ``import aiohttp`` would have made it, the first time anything asks it for a name it does not hold.

Each check runs in a fresh interpreter (this test process imported aiohttp long ago, where deferring is a no-op)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PRELUDE = r"""
import importlib.metadata, json, sys, threading
from jan.server.aiohttp_import import defer_client
out = {"deferred": defer_client()}

def before_init(hook):  # hook() (which may raise) each time the deferred package's real __init__ is about to run
    loader = sys.modules["aiohttp"].__spec__.loader
    real_exec = loader.exec_module
    def exec_module(module):
        hook()
        real_exec(module)
    loader.exec_module = exec_module
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
runs = []
def record():
    runs.append(threading.get_ident())
    if len(runs) == 1:
        raise RuntimeError("first run fails")
before_init(record)
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


#: Names looked up on a package whose names load on first use: none of them is there, and the lookup must fail as
#: any module's does, with an AttributeError (``hasattr``, ``getattr``'s default and ``pickle``, which looks a
#: function's name up in every module of ``sys.modules``, catch only that): not an import of ``<package>.a`` that
#: fails with ModuleNotFoundError, nor an import of an optional dependency (aiohttp's gunicorn ``worker``).
LOOKUPS = r"""
import importlib.util, json
names = ["a.b", ".x", "web.nope", "server.nope", "__path__.x", "", "no_such_name"]
if importlib.util.find_spec("gunicorn") is None:
    names.append("worker")
seen = {}
for name in names:
    try:
        seen[name] = [getattr(PACKAGE, name, "default") == "default", hasattr(PACKAGE, name)]
    except Exception as exc:
        seen[name] = type(exc).__name__
print(json.dumps(seen))
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("setup", ["import jan.cli.serve, aiohttp as PACKAGE",  # the deferred package
                                   "import aiohttp as PACKAGE, jan.cli.serve",  # as it is once imported whole
                                   "import jan as PACKAGE"])  # jan's own engine names and submodules on first use
def test_a_name_a_package_lacks_is_an_attribute_error(setup):
    done = subprocess.run([sys.executable, "-c", setup + "\n" + LOOKUPS], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {name: [True, False] for name in seen}


VERSION = r"""
import json, sys
deferred = "aiohttp.client" not in sys.modules
import aiohttp, aiohttp.http
seen = [deferred, aiohttp.__version__, aiohttp.http.SERVER_SOFTWARE.rsplit("/", 1)[1]]
aiohttp.ClientSession  # the real __init__ runs: its own __version__ stands
seen.append(aiohttp.__version__)
print(json.dumps(seen))
"""


@pytest.mark.timeout(300)
def test_the_version_is_the_one_the_packages_code_says(tmp_path):
    """An aiohttp imported from elsewhere than the distribution pip recorded (PYTHONPATH, a vendored or bundled
    copy): ``aiohttp.__version__`` and the ``Server`` header said the recorded distribution's version (the copy's
    code says another; a bundle without metadata failed ``jan serve`` at its import), then changed at the first
    client use. A package whose version is no literal in its source is imported as usual."""
    from api_helpers import shadow_aiohttp

    for version, expected in (("3.0.0.post77", [True, "3.0.0.post77", "3.0.0.post77", "3.0.0.post77"]),
                              (None, [False, "3.0.1", "3.0.1", "3.0.1"])):
        folder = shadow_aiohttp(tmp_path / str(version), version)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-c", "import jan.cli.serve\n" + VERSION], capture_output=True,
                              text=True, timeout=240, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == expected, version


@pytest.mark.timeout(300)
def test_a_name_set_before_the_client_loads_is_kept():
    """``aiohttp.ClientSession = Traced`` (a test's or a plugin's patch) on the package before anything used its
    client: the later run of ``__init__`` put the original back, unlike on a package imported whole. A submodule
    imported alone (the server's) is still set without running it."""
    seen = _run(r"""
from aiohttp import web
out["server_only"] = "aiohttp.client" not in sys.modules
class Traced: pass
aiohttp = sys.modules["aiohttp"]
aiohttp.ClientSession = Traced
out["connector"] = aiohttp.TCPConnector.__module__
out["kept"] = aiohttp.ClientSession is Traced
del aiohttp.ClientTimeout
out["deleted"] = not hasattr(aiohttp, "ClientTimeout")
out["plain_module"] = type(aiohttp).__name__
print(json.dumps(out))
""")
    assert seen == {"deferred": True, "server_only": True, "connector": "aiohttp.connector", "kept": True,
                    "deleted": True, "plain_module": "module"}


@pytest.mark.timeout(300)
def test_load_client_runs_init_in_a_worker_thread_not_on_the_loop():
    seen = _run(r"""
import asyncio
import aiohttp
from jan.server import aiohttp_import
ran_on = []
before_init(lambda: ran_on.append(threading.current_thread() is threading.main_thread()))
async def main():
    await aiohttp_import.load_client()
    await aiohttp_import.load_client()  # whole now: nothing to do
    return aiohttp.ClientSession is __import__("aiohttp.client").client.ClientSession
out["whole"] = asyncio.run(main())
out["ran_on_main_thread"] = ran_on
print(json.dumps(out))
""")
    assert seen == {"deferred": True, "whole": True, "ran_on_main_thread": [False]}


def test_fetches_starting_at_once_open_one_client_session(monkeypatch):
    """The image fetcher opens its session after awaiting the client's import (``load_client``): fetches that start
    at once must still share one session (a second one was left unclosed, "Unclosed client session")."""
    import asyncio

    import aiohttp

    from jan.errors import MediaError
    from jan.server import media_fetch

    made = []
    real_session = aiohttp.ClientSession

    def counting_session(*args, **kwargs):
        made.append(real_session(*args, **kwargs))
        return made[-1]

    async def yielding_load_client():  # as the deferred import does: the loop runs other tasks meanwhile
        await asyncio.sleep(0)

    monkeypatch.setattr(media_fetch, "load_client", yielding_load_client)
    monkeypatch.setattr(aiohttp, "ClientSession", counting_session)

    async def main():
        fetcher = media_fetch.MediaFetcher(media_fetch.MediaAllowlist.parse(["http://127.0.0.1:9/allowed/"]))
        try:
            results = await asyncio.gather(*(fetcher._fetch("http://127.0.0.1:9/elsewhere.png", f"image{i}")
                                             for i in range(4)), return_exceptions=True)
        finally:
            await fetcher.close()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, MediaError) for r in results), results  # (not under the allowed prefix)
    assert len(made) == 1 and made[0].closed
