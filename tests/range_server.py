"""One file served on 127.0.0.1 with HTTP Range support, for the pull tests (nothing reaches the network)."""

from __future__ import annotations

import asyncio

from aiohttp import web


class FileServer:
    """Serves ``blob`` at :attr:`url` (an async context manager), answering ``Range: bytes=N-`` with a 206 (a 416
    past the end). ``requests``: each GET's Range header (None without one); ``sent``: body bytes written;
    ``asked``: set at the first request. Ways to misbehave: ``drop_first`` (the first connection drops halfway
    through the file), ``chunk``/``delay`` (write slowly), ``hold`` (the body waits until the server is left; the
    headers, with the size, come at once), ``hold_headers`` (the whole answer waits), ``pause_at`` (the first answer stops after that many body bytes, sets
    ``paused`` and waits until the server is left: a download that cannot end before the test acts on it)."""

    def __init__(self, blob: bytes, *, drop_first: bool = False, chunk: int = 1 << 16, delay: float = 0.0,
                 hold: bool = False, hold_headers: bool = False, etag: str = '"stories"',
                 pause_at: int | None = None):
        self.blob, self.drop_first, self.chunk, self.delay = blob, drop_first, chunk, delay
        self.hold, self.hold_headers, self.etag = hold, hold_headers, etag
        self.requests: list[str | None] = []
        self.sent = 0
        self.asked = asyncio.Event()
        self.pause_at = pause_at
        self.paused = asyncio.Event()
        self._release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range")
        self.requests.append(header)
        self.asked.set()
        if self.hold_headers:
            await self._release.wait()
        start = int(header.split("=")[1].split("-")[0]) if header else 0
        if header and start >= len(self.blob):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(self.blob)}"})
        resp = web.StreamResponse(status=206 if header else 200)
        resp.content_length = len(self.blob) - start
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["ETag"] = self.etag
        if header:
            resp.headers["Content-Range"] = f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}"
        await resp.prepare(request)
        if self.drop_first and len(self.requests) == 1:
            await resp.write(self.blob[: len(self.blob) // 2])
            await asyncio.sleep(0.05)
            request.transport.close()  # the connection drops in the middle of the file
            return resp
        if self.hold:
            await self._release.wait()
        pause_at = self.pause_at if len(self.requests) == 1 else None
        try:
            for offset in range(start, len(self.blob), self.chunk):
                if pause_at is not None and offset >= pause_at:
                    self.paused.set()
                    await self._release.wait()
                    pause_at = None
                await resp.write(self.blob[offset:offset + self.chunk])
                self.sent += min(self.chunk, len(self.blob) - offset)
                if self.delay:
                    await asyncio.sleep(self.delay)
        except ConnectionResetError:
            pass  # the downloader went away (cancelled)
        return resp

    async def __aenter__(self) -> "FileServer":
        app = web.Application()
        app.router.add_get("/files/{name}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/files/stories260K.gguf"
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        await self.runner.cleanup()
