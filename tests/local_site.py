"""A local aiohttp site for tests that need a web server of their own (a page, an upstream, an MCP endpoint)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, **runner_options) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields its base URL (``http://127.0.0.1:PORT``, no slash) and
    cleans the site up when the block ends. ``runner_options`` go to :class:`aiohttp.web.AppRunner`."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def answer(**response_options):
    """A handler answering every request with one ``web.Response(**response_options)``."""
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(**response_options)
    return handler
