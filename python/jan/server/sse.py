"""Server-sent events, the way OpenAI streams: ``data: {json}\\n\\n`` … ``data: [DONE]\\n\\n``."""

from __future__ import annotations

import json

from aiohttp import web

from jan.json_text import utf8_json

# One encoder for every chunk: json.dumps with options builds a new JSONEncoder per call, a few
# microseconds of each streamed token on the event loop. Strict JSON: NaN/Infinity raise.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def close_unframed(request: web.Request, response: web.StreamResponse) -> None:
    """Mark a streamed answer of unknown length to an HTTP/1.0 request ``Connection: close``: HTTP/1.0 has no
    chunked encoding, so the body ends only when the connection does (aiohttp closes it then, and this header says
    so; a ``keep-alive`` one had told the client to wait for more on a connection that was about to end). HTTP/1.1
    streams are chunked and keep aiohttp's own choice. Every streamed route (SSE, Ollama's NDJSON) calls this
    before ``prepare``."""
    if request.version < (1, 1):
        response.headers["Connection"] = "close"
        response.force_close()


class SSEStream:
    """A prepared streaming response. Errors after the first byte are sent as an
    ``error`` event (the status line is already gone), then the stream ends.

    A chunk sent with ``hold=True`` (one that ends a choice: what follows it comes at once — a usage
    chunk, ``[DONE]``) waits for the next write and goes out with it: each write is a ``send()`` on the
    socket, and a stream's last chunks, ``[DONE]`` and the end of the chunked body in one write save two
    system calls (and two client wake-ups) per request."""

    def __init__(self, request: web.Request):
        self.request = request
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        close_unframed(request, self.response)
        self.started = False
        self._held = b""

    async def start(self) -> None:
        if not self.started:
            await self.response.prepare(self.request)
            self.started = True

    async def send(self, data: dict, event: str | None = None, *, hold: bool = False) -> None:
        text = _encode(data)
        await self.start()
        head = f"event: {event}\n" if event else ""
        payload = self._held + utf8_json(f"{head}data: {text}\n\n")
        if hold:
            self._held = payload
            return
        self._held = b""
        await self.response.write(payload)

    async def done(self) -> None:
        await self.start()
        held, self._held = self._held, b""
        await self.response.write_eof(held + b"data: [DONE]\n\n")

    async def error(self, body: dict) -> None:
        await self.send(body, event="error", hold=True)
        await self.end()

    async def end(self) -> None:
        """End the stream (with any held chunk)."""
        await self.start()
        held, self._held = self._held, b""
        await self.response.write_eof(held)
