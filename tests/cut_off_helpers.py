"""Requests to a test server, and generations the server cuts off (its model stopped while it generates):
what tests of every dialect's answer to a cut-off generation share. Waits are bounded, never timed."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
from api_helpers import until
from dialect_helpers import named_events

WAIT_S = 120  # generous: a busy 2-core machine
MODEL = "stories260K"
#: Tokens of a generation the test stops (or lets go) long before it ends: minutes of stories260K on this 2-core
#: machine, tens of seconds on a fast core (its steps slow as the context fills). 1500 ended in under a second on a
#: fast core (stories260K makes 3,000-10,000 tokens/s there), short of what a busy client does before its stop.
LONG = 8000
#: The context (each slot's) of a server whose generations the tests cut off or hold: LONG tokens fit after the prompt
#: (a smaller one ends the generation at the context instead, sooner).
LONG_N_CTX = LONG + 64
ONCE = [{"role": "user", "content": "Once"}]


def request(srv, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """``(status, headers, parsed JSON body)`` of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            raw, status, got = resp.read(), resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, exc.headers
    return status, got, json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()


def post(srv, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, data = request(srv, "POST", path, body, headers)
    return status, data


async def stop_model(session: aiohttp.ClientSession, srv) -> None:
    """``POST /v1/models/{id}/stop``: the model is unloaded now, its running generations end ``cancelled``."""
    async with session.post(f"{srv.base_url}/v1/models/{MODEL}/stop", json={}) as resp:
        assert resp.status == 200, await resp.text()


async def start_model(session: aiohttp.ClientSession, srv) -> None:
    async with session.post(f"{srv.base_url}/v1/models/{MODEL}/start", json={}) as resp:
        assert resp.status == 200, await resp.text()


async def cut_off_stream(srv, path: str, body: dict, first: bytes) -> list[tuple[str, dict]]:
    """Stream ``body``; once the line holding ``first`` (a text delta) came, stop the model; the stream's events."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        try:
            async with session.post(srv.base_url + path, json={**body, "stream": True}) as resp:
                assert resp.status == 200, await resp.text()
                head = b""
                while first not in head:  # generating now
                    line = await resp.content.readline()
                    assert line, head
                    head += line
                await stop_model(session, srv)
                return named_events(head + await resp.read())
        finally:
            await start_model(session, srv)


async def busy(session: aiohttp.ClientSession, srv) -> bool:
    async with session.get(srv.base_url + "/metrics") as resp:
        text = await resp.text()
    return any(line.startswith(f'jan_slots_busy{{model="{MODEL}"}}') and float(line.split()[-1]) >= 1
               for line in text.splitlines())


async def cut_off_whole(srv, path: str, body: dict) -> tuple[int, Any]:
    """Send ``body`` (not streamed); once the model is generating it, stop the model; the answer."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        async def send() -> tuple[int, Any]:
            async with session.post(srv.base_url + path, json=body) as resp:
                return resp.status, await resp.json()

        answer = asyncio.create_task(send())
        await stop_once_generating(srv, "the model never got the request", answer)
        return await answer


async def stop_once_generating(srv, what: str, answer: asyncio.Task | None = None) -> None:
    """Once the model is generating (a busy slot), stop it (its generations end ``cancelled``), then start it
    again for the next test; ``what`` names what never came, ``answer`` a request that must not end before."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        try:
            deadline = time.monotonic() + WAIT_S
            while not await busy(session, srv):
                assert answer is None or not answer.done(), answer.result()
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.05)
            await stop_model(session, srv)
        finally:
            await start_model(session, srv)


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


#: The context a server started for :func:`only_slot_held` needs: the blocker's LONG tokens fit (with the tests'
#: default 512 it ended at the context within a fraction of a second, before the requests it was to block).
HOLD_N_CTX = LONG_N_CTX


class HeldSlot:
    """A long streamed completion holding a one-slot server's only slot (generating) until :meth:`release` (it
    cancels it: closed, the stream ends the generation) or the end of a ``with`` block; ``stream`` is its response
    (read it to its end to let the generation end by itself)."""

    def __init__(self, srv, max_tokens: int = LONG):
        assert srv.config.n_ctx >= HOLD_N_CTX, "start the server with n_ctx=HOLD_N_CTX: the blocker must not end early"
        self.stream = until(lambda: _open_stream(srv, max_tokens), "the slot is free for the blocker", WAIT_S)
        self.stream.readline()  # the first event: the only slot is generating now

    def release(self) -> None:
        self.stream.close()

    def __enter__(self) -> HeldSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _open_stream(srv, max_tokens: int):
    """The blocker's streamed completion, or None while the slot is still taken (an earlier test's last request may
    not have left it yet when its answer arrived: a 503 with ``max_queue=0``)."""
    try:
        return urllib.request.urlopen(urllib.request.Request(
            srv.base_url + "/v1/completions", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"model": MODEL, "prompt": "Once", "max_tokens": max_tokens, "stream": True,
                             "ignore_eos": True}).encode()), timeout=WAIT_S)
    except urllib.error.HTTPError as exc:
        if exc.code != 503:
            raise
        return None


def only_slot_held(srv, max_tokens: int = LONG) -> HeldSlot:
    """The one way the tests hold a one-slot server's only slot: ``with only_slot_held(srv):`` (or keep it and call
    :meth:`HeldSlot.release`). With ``max_queue=0``, every other generation request is refused as queue-full while
    it is held. Start the server with ``n_ctx=HOLD_N_CTX``; ``max_tokens`` smaller than :data:`LONG` for a blocker
    that ends by itself."""
    return HeldSlot(srv, max_tokens)
