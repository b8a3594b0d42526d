"""Third-party extensions whose routes clash are refused one by one while the server starts and serves.

A tiny distribution is written into tmp_path with three entry points: two that
add the same ``GET /v1/dup`` (the second in load order must fail, naming the
route and the extension that has it) and one that adds ``GET /v1/models``,
which a built-in route already serves (refused the same way, never shadowed
silently).
"""

from __future__ import annotations

import textwrap

import pytest

from extension_helpers import call, on_sys_path, records, write_distribution
from server_helpers import start_server

MODULE = textwrap.dedent('''
    from aiohttp import web

    from jan.core import Extension


    def _answer(who):
        async def handler(request):
            return web.json_response({"from": who})
        return handler


    class DupA(Extension):
        name = "dup-a"
        requires_api = ">=1,<2"

        async def on_load(self, ctx):
            ctx.add_route("GET", "/v1/dup", _answer("dup-a"))
            # a static path under a built-in's variable one (GET /v1/extensions/{name}): reached, no clash
            ctx.add_route("GET", "/v1/extensions/dup-a", _answer("dup-a"))


    class DupB(Extension):
        name = "dup-b"
        requires_api = ">=1,<2"
        depends_on = ("dup-a",)  # loads after dup-a: the clash is found on dup-b's route

        async def on_load(self, ctx):
            ctx.add_route("GET", "/v1/dup-b-own", _answer("dup-b"))
            ctx.add_route("GET", "/v1/dup", _answer("dup-b"))


    class Shadow(Extension):
        name = "shadows-models"
        requires_api = ">=1,<2"

        async def on_load(self, ctx):
            ctx.add_route("GET", "/v1/models", _answer("shadows-models"))
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("clash")
    site = tmp / "site"
    write_distribution(site, "jan-clash-demo", "0.0.1", {
        "dup-a": "jan_clash_demo:DupA",
        "dup-b": "jan_clash_demo:DupB",
        "shadows-models": "jan_clash_demo:Shadow",
    }, {"jan_clash_demo/__init__.py": MODULE})
    with on_sys_path(site, "jan_clash_demo"):
        srv = start_server(tmp, [stories_path])
        yield srv
        srv.stop()


def test_the_second_extension_with_the_same_route_fails_and_the_first_serves_it(server):
    recs = records(server)
    assert recs["dup-a"]["state"] == "loaded" and recs["dup-a"]["error"] is None
    assert recs["dup-b"]["state"] == "failed"
    assert "GET /v1/dup" in recs["dup-b"]["error"] and "'dup-a'" in recs["dup-b"]["error"]
    assert call(server, "GET", "/v1/dup") == (200, {"from": "dup-a"})
    assert call(server, "GET", "/v1/extensions/dup-a") == (200, {"from": "dup-a"})
    # None of the refused extension's routes is mounted, not even those that did not clash.
    assert call(server, "GET", "/v1/dup-b-own")[0] == 404


def test_a_route_a_built_in_serves_is_refused_not_silently_shadowed(server):
    rec = records(server)["shadows-models"]
    assert rec["state"] == "failed"
    assert "GET /v1/models" in rec["error"] and "built-in" in rec["error"]
    status, body = call(server, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
