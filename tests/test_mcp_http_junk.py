"""An MCP server by URL that answers no JSON-RPC (an HTML page, JSON of another shape, an SSE event of junk) fails to
start with that said, and jan's log holds one warning line for it, not the SDK's traceback (as if jan had failed)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from jan.core import ExtensionManager, McpHost
from jan.extensions.mcp import McpHostExtension
from local_site import answer, serve_app
from mcp_helpers import write_mcp_config

pytestmark = pytest.mark.timeout(300)


async def junk_sse(request):
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"event: message\ndata: {not json}\n\n")
    return response


@pytest.fixture
async def junk_site():
    app = web.Application()
    app.router.add_route("*", "/html", answer(text="<html>nope</html>", content_type="text/html"))
    app.router.add_route("*", "/shape", answer(text='{"jsonrpc": "2.0", "id": 999, "result": [1]}',
                                               content_type="application/json"))
    app.router.add_route("*", "/sse", junk_sse)
    async with serve_app(app) as base_url:
        yield base_url


async def test_junk_answers_fail_the_start_without_a_traceback(tmp_path, junk_site, caplog):
    data = tmp_path / "data"
    names = {"html": "Unexpected content type", "shape": "Failed to parse JSON response",
             "sse": "Failed to parse SSE message"}
    write_mcp_config(data, {name: {"url": f"{junk_site}/{name}", "timeout": 30} for name in names})
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    await manager.start()
    try:
        host = manager.get(McpHost)
        with caplog.at_level(logging.DEBUG):
            for name, why in names.items():
                status = await host.server(name, connect=True)
                assert status.state == "failed" and why in (status.error or ""), (name, status)
        sdk = [r for r in caplog.records if r.name.startswith("mcp.client")]
        assert not [r for r in sdk if r.exc_info or r.exc_text], [r.getMessage() for r in sdk if r.exc_info]
        told = [r.getMessage() for r in sdk if "answered no JSON-RPC" in r.getMessage()]
        assert told and all("\n" not in m for m in told), told
    finally:
        await manager.stop()
