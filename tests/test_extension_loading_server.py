"""The server with an extension whose ``on_load`` hangs: it serves at once; the hung extension shows as loading,
then failed; requests for what it provides are a 503 in each dialect's error shape, never a hang or a 500.

In-process (aiohttp's test server on this test's loop), so the test can wait on the manager's events.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jan.core import Extension, ExtensionFailed, ExtensionLoaded, ExtensionManager, LocalEventBus
from jan.server.app import create_app
from jan.server.config import ServerConfig

from test_extension_lifecycle_bounds import BOUND, Gate, watch

GATE: dict[str, Gate] = {}


def _answer(who: str):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"from": who})

    return handler


class Hung(Extension):
    """Would provide the model and conversation stores; its on_load waits until the test releases it."""

    name = "hung"
    requires_api = ">=1,<2"
    extension_types = ("model", "conversational")  # declared: what it would provide is known while it loads

    async def on_load(self, ctx):
        ctx.add_route("GET", "/v1/hung-route", _answer("hung"))
        await GATE["hung"].hang()


class NeedsHung(Extension):
    name = "needs-hung"
    requires_api = ">=1,<2"
    depends_on = ("hung",)


class Independent(Extension):
    name = "independent"
    requires_api = ">=1,<2"

    async def on_load(self, ctx):
        ctx.add_route("GET", "/v1/independent", _answer("independent"))


def _manager(tmp_path, **bounds: Any) -> ExtensionManager:
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False, **bounds)
    for ext in (Hung, NeedsHung, Independent):
        manager.register(ext)
    return manager


async def _client(tmp_path, manager: ExtensionManager) -> TestClient:
    config = ServerConfig(data_folder=tmp_path / "data", n_threads=1)
    app = await asyncio.wait_for(create_app(config, manager=manager), BOUND)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _records(client: TestClient) -> dict[str, dict]:
    resp = await client.get("/v1/extensions")
    assert resp.status == 200
    return {r["name"]: r for r in (await resp.json())["data"]}


async def test_the_server_serves_while_an_extension_hangs_in_on_load(tmp_path):
    GATE["hung"] = gate = Gate()
    # start() returns at once; the trivial load is waited for (no time bound to meet on a busy machine), the
    # hung one never settles: the server is then made while it is still loading
    manager = _manager(tmp_path, load_timeout=None, load_wait=0)
    await manager.start()
    assert await manager.settle(BOUND, names={"independent"})
    client = await _client(tmp_path, manager)
    try:
        recs = await _records(client)
        assert recs["hung"]["state"] == "loading" and recs["hung"]["error"] is None
        assert recs["needs-hung"]["state"] == "loading"
        assert recs["independent"]["state"] == "loaded"
        resp = await client.get("/v1/independent")
        assert resp.status == 200 and await resp.json() == {"from": "independent"}

        # What the loading extension provides: 503, each dialect in its own shape, saying why.
        resp = await client.get("/v1/threads/thread_abc")
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "extension_unavailable"
        assert "'hung' is still loading" in body["error"]["message"]
        resp = await client.post("/v1/messages", json={"model": "m", "max_tokens": 5,
                                                       "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"anthropic-version": "2023-06-01"})
        body = await resp.json()
        assert resp.status == 503 and body["type"] == "error", body
        assert "'hung' is still loading" in body["error"]["message"]
        resp = await client.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        body = await resp.json()
        assert resp.status == 503 and "'hung' is still loading" in body["error"], body
        resp = await client.get("/v1/models")
        assert resp.status == 503

        # Once its on_load fails, the records say so; what depended on it failed too.
        failed = watch(manager, ExtensionFailed, "needs-hung")
        gate.release.set()
        await failed
        recs = await _records(client)
        assert recs["hung"]["state"] == "failed" and recs["hung"]["error"] == "on_load failed: RuntimeError: released"
        assert recs["needs-hung"]["state"] == "failed" and "'hung'" in recs["needs-hung"]["error"]
        resp = await client.get("/v1/threads/thread_abc")
        body = await resp.json()
        assert resp.status == 503 and "failed to load" in body["error"]["message"]
        assert (await client.get("/v1/hung-route")).status == 404
    finally:
        gate.release.set()
        await asyncio.wait_for(client.close(), BOUND)


async def test_a_load_past_its_timeout_shows_as_failed_with_a_clear_error(tmp_path):
    GATE["hung"] = gate = Gate()
    manager = _manager(tmp_path, load_timeout=0.5, load_wait=0.1)
    failed = watch(manager, ExtensionFailed, "hung")
    loaded = watch(manager, ExtensionLoaded, "independent")
    client = await _client(tmp_path, manager)
    try:
        await failed
        await loaded
        recs = await _records(client)
        assert recs["hung"]["state"] == "failed"
        assert recs["hung"]["error"] == "on_load did not finish within 0.5 s"
        assert recs["independent"]["state"] == "loaded"
    finally:
        gate.release.set()
        await asyncio.wait_for(client.close(), BOUND)


async def test_disabling_a_hung_extension_over_http_stops_its_load(tmp_path):
    GATE["hung"] = gate = Gate()
    manager = _manager(tmp_path, load_timeout=None, load_wait=0.1)
    client = await _client(tmp_path, manager)
    try:
        await asyncio.wait_for(gate.entered.wait(), BOUND)
        resp = await client.post("/v1/extensions/hung/disable")
        record = await resp.json()
        assert resp.status == 200 and record["state"] == "disabled" and gate.cancelled.is_set()
        recs = await _records(client)
        assert recs["needs-hung"]["state"] == "failed"
        assert recs["needs-hung"]["error"] == "depends on 'hung', which was disabled"
        resp = await client.get("/v1/threads/thread_abc")
        assert resp.status == 503 and "still loading" not in (await resp.json())["error"]["message"]
    finally:
        gate.release.set()
        await asyncio.wait_for(client.close(), BOUND)
