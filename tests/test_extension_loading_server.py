"""The server with an extension whose ``on_load`` hangs: it serves at once; the hung extension shows as loading,
then failed; requests for what it provides are a 503 with ``Retry-After`` in each dialect's error shape, never a
hang or a 500. An extension that finishes loading after the server started is served at once, its routes behind
the same API key, CORS and error shapes as those mounted at start.

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
from jan.server.errors import APIError

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


async def _client(tmp_path, manager: ExtensionManager, **settings: Any) -> TestClient:
    config = ServerConfig(data_folder=tmp_path / "data", n_threads=1, **settings)
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

        # What the loading extension provides: 503, each dialect in its own shape, saying why and when to retry.
        resp = await client.get("/v1/threads/thread_abc")
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "extension_unavailable"
        assert "'hung' is still loading" in body["error"]["message"]
        assert_retry_after(resp)
        resp = await client.post("/v1/messages", json={"model": "m", "max_tokens": 5,
                                                       "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"anthropic-version": "2023-06-01"})
        body = await resp.json()
        assert resp.status == 503 and body["type"] == "error", body
        assert "'hung' is still loading" in body["error"]["message"]
        assert_retry_after(resp)
        resp = await client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "thread": {"type": "create"},
                                                       "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"anthropic-version": "2023-06-01"})
        body = await resp.json()  # a thread needs the conversation store: on its way, not missing (no 400)
        assert resp.status == 503 and "'hung' is still loading" in body["error"]["message"], body
        assert_retry_after(resp)
        resp = await client.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        body = await resp.json()
        assert resp.status == 503 and "'hung' is still loading" in body["error"], body
        assert_retry_after(resp)
        resp = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
        body = await resp.json()
        assert resp.status == 503 and "'hung' is still loading" in body["error"]["message"], body
        assert_retry_after(resp)
        resp = await client.get("/v1/models")
        assert resp.status == 503
        assert_retry_after(resp)
        # the route it added before it hung: on its way too, not an unknown route
        resp = await client.get("/v1/hung-route")
        body = await resp.json()
        assert resp.status == 503 and "'hung' is still loading" in body["error"]["message"], body
        assert_retry_after(resp)
        assert (await client.get("/v1/no-such-route")).status == 404

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
        assert "Retry-After" not in resp.headers  # failed: retrying does not help
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


def assert_retry_after(resp) -> None:
    """A 503 for something still loading says when to try again: whole seconds, as HTTP has it."""
    value = resp.headers.get("Retry-After", "")
    assert value.isdigit() and 0 < int(value) <= 60, dict(resp.headers)


KEY = "sk-late"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://page.example"
#: What the "late" extension's on_load waits for, and what its sub-application's on_startup sets.
LATE: dict[str, asyncio.Event] = {}


class Late(Extension):
    """Adds its routes and a sub-application, then waits until the test lets its load end (successfully)."""

    name = "late"
    requires_api = ">=1,<2"

    async def on_load(self, ctx):
        async def late(request: web.Request) -> web.Response:
            return web.json_response({"from": "late", "id": request.match_info.get("item")})

        async def broken(request: web.Request) -> web.Response:
            raise APIError(409, "late conflict", param="item", code="late_conflict")

        async def started(subapp: web.Application) -> None:
            LATE["sub_started"].set()

        def subapp() -> web.Application:
            sub = web.Application()
            sub.router.add_get("/who", _answer("late-sub"))
            sub.on_startup.append(started)
            return sub

        ctx.add_route("GET", "/v1/late", late)
        ctx.add_route("GET", "/v1/late/{item}", late)
        # a static path under a built-in's variable one (GET /v1/extensions/{name}): reached, as at start
        ctx.add_route("GET", "/v1/extensions/late-status", _answer("late"))
        ctx.add_route("POST", "/v1/late-broken", broken)
        ctx.add_route("POST", "/api/late-broken", broken)  # the Ollama dialect's error shape
        ctx.add_subapp("/late-sub", subapp)
        LATE["entered"].set()
        await LATE["release"].wait()


async def test_an_extension_that_loads_after_the_server_started_is_served_at_once(tmp_path):
    LATE.update(entered=asyncio.Event(), release=asyncio.Event(), sub_started=asyncio.Event())
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False,
                               load_timeout=None, load_wait=0)
    manager.register(Late)
    await manager.start()
    client = await _client(tmp_path, manager, api_key=KEY, cors_origins=[ORIGIN])
    try:
        await asyncio.wait_for(LATE["entered"].wait(), BOUND)
        recs = await _records_with(client, AUTH)
        assert recs["late"]["state"] == "loading"
        # while it loads: its routes (the sub-application's too) are on their way, behind the key all the same
        for path in ("/v1/late", "/v1/late/7", "/late-sub/who"):
            resp = await client.get(path, headers=AUTH)
            body = await resp.json()
            assert resp.status == 503 and body["error"]["code"] == "extension_unavailable", (path, body)
            assert "'late' is still loading" in body["error"]["message"]
            assert_retry_after(resp)
            assert (await client.get(path)).status == 401, path
        assert not LATE["sub_started"].is_set()

        loaded = watch(manager, ExtensionLoaded, "late")
        LATE["release"].set()
        await loaded
        assert LATE["sub_started"].is_set()  # its on_startup ran before it was served

        resp = await client.get("/v1/late", headers=AUTH)
        assert resp.status == 200 and await resp.json() == {"from": "late", "id": None}
        resp = await client.get("/v1/late/7", headers=AUTH)
        assert resp.status == 200 and await resp.json() == {"from": "late", "id": "7"}
        resp = await client.get("/late-sub/who", headers=AUTH)
        assert resp.status == 200 and await resp.json() == {"from": "late-sub"}
        resp = await client.get("/v1/extensions/late-status", headers=AUTH)
        assert resp.status == 200 and await resp.json() == {"from": "late"}
        resp = await client.get("/v1/extensions/late", headers=AUTH)  # jan's own route beside it still answers
        assert resp.status == 200 and (await resp.json())["state"] == "loaded"
        assert "restart_required" not in await resp.json()

        # the API key, CORS and the error shapes apply exactly as to the routes mounted at start
        for path in ("/v1/late", "/late-sub/who"):
            resp = await client.get(path)
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_api_key", path
            assert resp.headers.get("WWW-Authenticate") == "Bearer"
            resp = await client.get(path, headers={**AUTH, "Origin": ORIGIN})
            assert resp.status == 200 and resp.headers.get("Access-Control-Allow-Origin") == ORIGIN, path
        resp = await client.post("/v1/late-broken", headers={**AUTH, "Origin": "http://evil.example"})
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "origin_not_allowed"
        resp = await client.post("/v1/late-broken", headers=AUTH)
        assert resp.status == 409 and await resp.json() == {"error": {"message": "late conflict", "type":
                                                                      "invalid_request_error", "param": "item",
                                                                      "code": "late_conflict"}}
        resp = await client.post("/api/late-broken", headers=AUTH)
        assert resp.status == 409 and await resp.json() == {"error": "late conflict"}
        resp = await client.delete("/v1/late", headers=AUTH)
        assert resp.status == 405 and "GET" in resp.headers.get("Allow", "")
        assert (await client.get("/late-sub/nothing", headers=AUTH)).status == 404

        # disabled: gone (404); enabled again: served again, from a fresh load, without a restart
        resp = await client.post("/v1/extensions/late/disable", headers=AUTH)
        assert resp.status == 200 and (await resp.json())["state"] == "disabled"
        for path in ("/v1/late", "/late-sub/who", "/v1/extensions/late-status"):
            assert (await client.get(path, headers=AUTH)).status == 404, path
        LATE.update(entered=asyncio.Event(), sub_started=asyncio.Event())  # "release" stays set: loads at once
        loaded = watch(manager, ExtensionLoaded, "late")
        resp = await client.post("/v1/extensions/late/enable", headers=AUTH)
        assert resp.status == 200 and (await resp.json())["state"] in ("loading", "loaded")  # (load_wait=0)
        await loaded
        assert LATE["sub_started"].is_set()
        resp = await client.get("/v1/late/8", headers=AUTH)
        assert resp.status == 200 and await resp.json() == {"from": "late", "id": "8"}
        assert (await client.get("/late-sub/who", headers=AUTH)).status == 200
    finally:
        LATE["release"].set()
        await asyncio.wait_for(client.close(), BOUND)


async def _records_with(client: TestClient, headers: dict[str, str]) -> dict[str, dict]:
    resp = await client.get("/v1/extensions", headers=headers)
    assert resp.status == 200
    return {r["name"]: r for r in (await resp.json())["data"]}
