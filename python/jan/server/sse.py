"""Server-sent events, the way OpenAI streams: ``data: {json}\\n\\n`` … ``data: [DONE]\\n\\n``."""

from __future__ import annotations

import json

from aiohttp import web

# One encoder for every chunk: json.dumps with options builds a new JSONEncoder per call, a few
# microseconds of each streamed token on the event loop. Strict JSON: NaN/Infinity raise.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class SSEStream:
    """A prepared streaming response. Errors after the first byte are sent as an
    ``error`` event (the status line is already gone), then the stream ends."""

    def __init__(self, request: web.Request):
        self.request = request
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
            },
        )
        self.started = False

    async def start(self) -> None:
        if not self.started:
            await self.response.prepare(self.request)
            self.started = True

    async def send(self, data: dict, event: str | None = None) -> None:
        text = _encode(data)
        await self.start()
        head = f"event: {event}\n" if event else ""
        await self.response.write(f"{head}data: {text}\n\n".encode())

    async def done(self) -> None:
        await self.start()
        await self.response.write(b"data: [DONE]\n\n")
        await self.response.write_eof()

    async def error(self, body: dict) -> None:
        await self.send(body, event="error")
        await self.response.write_eof()
