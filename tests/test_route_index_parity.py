"""What a lazily loaded route (``jan.server.route_index``: its module imported on its first request) must keep of the
route it stands for, whether its module was loaded yet or not: who owns it when an extension's route clashes with
it, and a stop of jan that finds the run service not made yet (no run route loaded, or one still loading)."""

from __future__ import annotations

import asyncio

import pytest

from jan.core import Extension, ExtensionManager, LocalEventBus
from jan.server.app import create_app
from jan.server.config import ServerConfig
from jan.server.keys import SERVICES
from jan.server.route_index import LAZY_ROUTES
from jan.services.errors import ServiceUnavailableError

BOUND = 60


async def _handler(request):  # never reached: the clashing extensions are refused
    raise AssertionError("refused extensions are not served")


def _clashing(name: str, method: str, path: str) -> type[Extension]:
    async def on_load(self, ctx):
        ctx.add_route(method, path, _handler)

    return type(f"Ext_{name}", (Extension,), {"name": name, "requires_api": ">=1,<2", "on_load": on_load})


async def _app(tmp_path, extensions=()):
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), only_builtin=True, load_wait=None)
    for ext in extensions:
        manager.register(ext)
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=tmp_path / "data", n_threads=1),
                                            manager=manager), BOUND)
    app.freeze()  # (as a runner does: its signals can be sent)
    await asyncio.wait_for(app.startup(), BOUND)
    return app, manager


#: One route of each lazily loaded module (the first it declares; /static's path has a colon of its own).
ONE_PER_MODULE = {module: (method, path) for module, method, path in reversed(LAZY_ROUTES)}


async def test_an_extension_clashing_with_a_lazily_loaded_route_is_told_jan_serves_it(tmp_path):
    # The stand-in's name is "lazy:<module>:<method> <path>"; read as an extension's handler name it said the route
    # was "already served by extension 'lazy'".
    extensions = [_clashing(f"clash_{module}", method, path) for module, (method, path) in ONE_PER_MODULE.items()]
    app, manager = await _app(tmp_path, extensions)
    try:
        records = {r.name: r for r in manager.list()}
        for module, (method, path) in ONE_PER_MODULE.items():
            record = records[f"clash_{module}"]
            assert record.state == "failed", (module, record)
            assert "already served by jan (built-in)" in record.error, (module, record.error)
    finally:
        await app.shutdown()
        await app.cleanup()


async def test_a_stop_before_any_run_was_made_still_refuses_a_run_made_after_it(tmp_path):
    # A request on a runs route whose module is still loading (a worker import) when jan stops makes the run service
    # after the stop's interrupt: that service must be stopping, its run refused (503), as when every route module
    # was imported at start — never a run started while the extensions stop.
    from jan.services.runs import RunRequest

    app, _ = await _app(tmp_path)
    try:
        assert not app[SERVICES].has_runs  # nothing to recover at start: not made
        await asyncio.wait_for(app.shutdown(), BOUND)
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            await asyncio.wait_for(app[SERVICES].runs.start(RunRequest(thread_id="thread_late")), BOUND)
    finally:
        await app.cleanup()


async def test_code_outside_a_lazy_module_loads_it_off_the_loop_as_a_stand_in_does(tmp_path, monkeypatch):
    # /v1/models as Anthropic's SDK asks it answers from the Anthropic routes' module: its first call imported it
    # on the loop every stream shares, where a stand-in imports in a worker (so do the batch runners' modules).
    import importlib
    import threading

    from aiohttp.test_utils import TestClient, TestServer

    from jan.server import route_index, route_state

    where: list[tuple[str, bool]] = []
    real_module, real_import = route_index._module, importlib.import_module

    def module(name):
        where.append((name, threading.current_thread() is threading.main_thread()))
        return real_module(name)

    def import_module(name, *args):
        where.append((name, threading.current_thread() is threading.main_thread()))
        return real_import(name, *args)

    monkeypatch.setattr(route_index, "_module", module)
    monkeypatch.setattr(route_index, "_loaded", {}, raising=False)
    app, _ = await _app(tmp_path)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        assert resp.status == 200 and "has_more" in await resp.json()  # Anthropic's page
        resp = await client.get("/v1/models/nope", headers={"anthropic-version": "2023-06-01"})
        assert resp.status == 404 and (await resp.json())["type"] == "error"  # Anthropic's error
        assert where and ("anthropic", False) in where and ("anthropic", True) not in where, where
        where.clear()
        monkeypatch.setattr(route_index.importlib, "import_module", import_module)
        runner = route_state._DeferredRunner(*route_state.BATCH_RUNNERS[0][::2], route_state.BATCH_RUNNERS[0][3],
                                             app, app[route_state.UPLOADS])
        made = await asyncio.wait_for(runner._made(), BOUND)  # what its first execute or finalize runs on
        assert type(made).__name__ == route_state.BATCH_RUNNERS[0][3]
        assert where[0] == (route_state.BATCH_RUNNERS[0][2], False), where  # (later look-ups find it imported)
    finally:
        await client.close()


def _answers(base: str, calls, workers: int) -> list[tuple[int, object, bool]]:
    """(status, JSON body or None, whether it carried a request id) of each call, made ``workers`` at once."""
    import concurrent.futures

    import httpx

    def one(call):
        method, path, headers = call
        resp = httpx.request(method, base + path, headers={"Authorization": "Bearer k", **headers}, timeout=120)
        try:
            body = resp.json()
        except ValueError:
            body = None
        return resp.status_code, body, "x-request-id" in resp.headers

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, calls))


def _without_request_id(body: object) -> object:
    return {k: v for k, v in body.items() if k != "request_id"} if isinstance(body, dict) else body


@pytest.mark.timeout(360)
def test_first_calls_at_once_answer_as_later_calls_do(tmp_path, stories_path):
    # A real jan serve, fresh interpreter: every lazily loaded module's first call at once (several to one module
    # too), each answered as the same call is once its module loaded: no 5xx, nothing stalled, the same status and
    # error body.
    import re
    import subprocess
    import sys
    import time

    import httpx

    from jan.testing.server import free_port

    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jan", "serve", "--port", str(port), "--data-folder",
                               str(tmp_path / "data"), "-m", str(stories_path), "--ctx-size", "256", "--threads", "1",
                               "--no-extensions", "--api-key", "k", "--log-level", "warning"],
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                httpx.get(base + "/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        # unknown ids (GET, DELETE) and empty JSON objects (POST, PATCH): an answer of the module's own, no model run
        calls = []
        for module, method, path in LAZY_ROUTES:
            if module == "ollama" and method == "POST" and path in ("/api/pull", "/api/push", "/api/create"):
                continue  # (these stream their progress: not the point here)
            headers = {"Content-Type": "application/json"} if method in ("POST", "PATCH") else {}
            calls.append((method, re.sub(r"\{[^}]+\}", "x_nope", path), headers))
        calls += [("GET", "/v1/threads/x_nope", {})] * 8  # one module's first calls at once
        first = _answers(base, calls, 32)
        later = _answers(base, calls, 4)
        for call, a, b in zip(calls, first, later):
            assert a[0] < 500 and a[2], (call, a)
            assert (a[0], a[2]) == (b[0], b[2]), (call, a, b)
            if a[0] >= 400:  # the same error, in the same (dialect's) shape; a made resource has its own id
                # (an Anthropic error body names its own request's id, as Anthropic's API does: each answer's own)
                assert _without_request_id(a[1]) == _without_request_id(b[1]), (call, a, b)
            else:
                assert type(a[1]) is type(b[1]) and (not isinstance(a[1], dict) or set(a[1]) == set(b[1])), (call, a, b)
    finally:
        server.terminate()
        server.wait(120)
        log.close()
