"""An extension the server refuses while mounting leaves nothing on the router, ``web.View`` routes included.

Refusals other than a clash of paths (a malformed path, a route name already used, a sub-application that
cannot be built) were found only after some of its routes were added; aiohttp cannot remove a route, so
those stayed, and a ``web.View`` route kept answering. Every route, View or not, also answers 404 while
its extension is disabled, and a refused extension that was fixed loads again when enabled, served at once;
one enabled at runtime is checked and refused as at start.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jan.core import Extension, ExtensionManager, LocalEventBus
from jan.server.app import create_app
from jan.server.config import ServerConfig

BOUND = 60
#: Whether the "fixable" extension is fixed (its bad route gone).
FIXED: dict[str, bool] = {"fixable": False}


def _answer(who: str):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"from": who})

    return handler


def _view(who: str) -> type[web.View]:
    class Answer(web.View):
        async def get(self) -> web.Response:
            return web.json_response({"from": who, "view": True})

    return Answer


def _ext(name: str, load) -> type[Extension]:
    async def on_load(self, ctx):
        load(ctx)

    return type(f"Ext_{name.replace('-', '_')}", (Extension,),
                {"name": name, "requires_api": ">=1,<2", "on_load": on_load})


def _subapp(who: str):
    def factory() -> web.Application:
        sub = web.Application()
        sub.router.add_get("/who", _answer(who))
        return sub

    return factory


def _failing_factory() -> web.Application:
    raise OSError("no socket for the sub-app")


EXTENSIONS = [
    _ext("owner", lambda ctx: ctx.add_route("GET", "/v1/owned", _answer("owner"), name="owned")),
    _ext("bad-path", lambda ctx: (ctx.add_route("*", "/v1/bad-path-view", _view("bad-path")),
                                  ctx.add_route("GET", "/v1/bad-path/{unclosed", _answer("bad-path")))),
    _ext("taken-name", lambda ctx: (ctx.add_route("*", "/v1/taken-name-view", _view("taken-name")),
                                    ctx.add_route("GET", "/v1/taken-name", _answer("taken-name"), name="owned"))),
    _ext("bad-subapp", lambda ctx: (ctx.add_route("*", "/v1/bad-subapp-view", _view("bad-subapp")),
                                    ctx.add_subapp("/bad-subapp", _failing_factory))),
    _ext("clash", lambda ctx: (ctx.add_route("*", "/v1/clash-view", _view("clash")),
                               ctx.add_route("GET", "/v1/owned", _answer("clash")))),
    _ext("fixable", lambda ctx: (ctx.add_route("*", "/v1/fixable-view", _view("fixable")),
                                 None if FIXED["fixable"] else ctx.add_route("GET", "/v1/{oops", _answer("fixable")))),
    _ext("viewer", lambda ctx: ctx.add_route("*", "/v1/viewer", _view("viewer"))),
    _ext("sub-owner", lambda ctx: ctx.add_subapp("/shared-sub", _subapp("sub-owner"))),
    _ext("sub-dup", lambda ctx: (ctx.add_route("*", "/v1/sub-dup-view", _view("sub-dup")),
                                 ctx.add_subapp("/shared-sub", _subapp("sub-dup")))),
    _ext("sub-not-app", lambda ctx: (ctx.add_route("*", "/v1/sub-not-app-view", _view("sub-not-app")),
                                     ctx.add_subapp("/not-an-app", object))),
]

REFUSED = {"bad-path": "/v1/bad-path-view", "taken-name": "/v1/taken-name-view",
           "bad-subapp": "/v1/bad-subapp-view", "clash": "/v1/clash-view", "fixable": "/v1/fixable-view",
           "sub-dup": "/v1/sub-dup-view", "sub-not-app": "/v1/sub-not-app-view"}


async def _client(tmp_path) -> tuple[TestClient, ExtensionManager]:
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False, load_wait=None)
    for ext in EXTENSIONS:
        manager.register(ext)
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=tmp_path / "data", n_threads=1),
                                            manager=manager), BOUND)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, manager


async def _json(resp) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def _records(client: TestClient) -> dict[str, dict]:
    status, body = await _json(await client.get("/v1/extensions"))
    assert status == 200
    return {r["name"]: r for r in body["data"]}


async def test_a_refused_extension_leaves_no_route_behind(tmp_path):
    FIXED["fixable"] = False
    client, _ = await _client(tmp_path)
    try:
        recs = await _records(client)
        assert recs["owner"]["state"] == "loaded" and recs["viewer"]["state"] == "loaded"
        for name, view_path in REFUSED.items():
            assert recs[name]["state"] == "failed", (name, recs[name])
            assert (await client.get(view_path)).status == 404, name  # its View route was never added
        assert "/v1/bad-path/{unclosed" in recs["bad-path"]["error"]
        assert "'owned'" in recs["taken-name"]["error"]
        assert "no socket for the sub-app" in recs["bad-subapp"]["error"]
        assert "GET /v1/owned" in recs["clash"]["error"] and "'owner'" in recs["clash"]["error"]
        assert await _json(await client.get("/v1/owned")) == (200, {"from": "owner"})
        assert await _json(await client.get("/v1/viewer")) == (200, {"from": "viewer", "view": True})
        assert "/shared-sub" in recs["sub-dup"]["error"] and "'sub-owner'" in recs["sub-dup"]["error"]
        assert "not an aiohttp.web.Application" in recs["sub-not-app"]["error"]
        assert await _json(await client.get("/shared-sub/who")) == (200, {"from": "sub-owner"})
    finally:
        await asyncio.wait_for(client.close(), BOUND)


async def test_a_view_route_answers_404_while_its_extension_is_disabled(tmp_path):
    client, _ = await _client(tmp_path)
    try:
        status, record = await _json(await client.post("/v1/extensions/viewer/disable"))
        assert status == 200 and record["state"] == "disabled"
        assert (await client.get("/v1/viewer")).status == 404
        status, record = await _json(await client.post("/v1/extensions/viewer/enable"))
        assert status == 200 and record["state"] == "loaded"
        assert await _json(await client.get("/v1/viewer")) == (200, {"from": "viewer", "view": True})
    finally:
        await asyncio.wait_for(client.close(), BOUND)


async def test_a_refused_extension_once_fixed_is_served_as_soon_as_it_is_enabled(tmp_path):
    FIXED["fixable"] = False
    client, manager = await _client(tmp_path)
    try:
        assert (await _records(client))["fixable"]["state"] == "failed"
        FIXED["fixable"] = True
        status, record = await _json(await client.post("/v1/extensions/fixable/enable"))
        assert status == 200 and record["state"] == "loaded" and record["error"] is None
        # mounted although the router froze when the server started: no restart
        assert await _json(await client.get("/v1/fixable-view")) == (200, {"from": "fixable", "view": True})
        await manager.disable("fixable")
        assert (await client.get("/v1/fixable-view")).status == 404
    finally:
        FIXED["fixable"] = False
        await asyncio.wait_for(client.close(), BOUND)


async def test_an_extension_enabled_at_runtime_is_refused_whole_as_at_start(tmp_path):
    """What is refused at start is refused the same way when the extension loads later: its load fails with the
    reason and nothing of it answers (its View route added before the bad one included)."""
    FIXED["fixable"] = False
    client, manager = await _client(tmp_path)
    try:
        status, record = await _json(await client.post("/v1/extensions/taken-name/enable"))
        assert status == 200 and record["state"] == "failed" and "'owned'" in record["error"], record
        assert (await client.get("/v1/taken-name-view")).status == 404
        await manager.disable("owner")  # GET /v1/owned is free while it is off
        for name, view_path in REFUSED.items():
            if name in ("clash", "taken-name"):
                continue
            status, record = await _json(await client.post(f"/v1/extensions/{name}/enable"))
            assert status == 200 and record["state"] == "failed", (name, record)
            assert (await client.get(view_path)).status == 404, name
        recs = await _records(client)
        assert "/v1/bad-path/{unclosed" in recs["bad-path"]["error"]
        assert "no socket for the sub-app" in recs["bad-subapp"]["error"]
        assert "/shared-sub" in recs["sub-dup"]["error"] and "'sub-owner'" in recs["sub-dup"]["error"]
        assert "not an aiohttp.web.Application" in recs["sub-not-app"]["error"]

        # "clash" (GET /v1/owned) is served while "owner" is off; "owner" back on is then the one refused
        status, record = await _json(await client.post("/v1/extensions/clash/enable"))
        assert status == 200 and record["state"] == "loaded", record
        assert await _json(await client.get("/v1/owned")) == (200, {"from": "clash"})
        assert await _json(await client.get("/v1/clash-view")) == (200, {"from": "clash", "view": True})
        status, record = await _json(await client.post("/v1/extensions/owner/enable"))
        assert status == 200 and record["state"] == "failed"
        assert "GET /v1/owned" in record["error"] and "'clash'" in record["error"]
        assert await _json(await client.get("/v1/owned")) == (200, {"from": "clash"})
    finally:
        await asyncio.wait_for(client.close(), BOUND)
