"""Run a real jan server on 127.0.0.1 in a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import replace

from jan.server.aiohttp_import import defer_client

# as ``jan serve`` does (a test of what a server imports sees the same process)
defer_client()

from aiohttp import web

from jan.server.app import create_app
from jan.server.config import ServerConfig
from jan.server.protocol import AppRunner

log = logging.getLogger("jan.testing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(port: int, *, bound: float = 240.0, host: str = "127.0.0.1") -> bool:
    """Wait until the jan server on ``port`` answers ``GET /health`` (a ``jan serve`` started in this process's
    other thread, or in another process): True once it does, False when ``bound`` seconds pass first. An answer
    with an error status (a server still loading) is waited past, as a refused connection is."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as resp:
                resp.read()
            return True
        except OSError:  # (refused, reset, timed out; an HTTPError is one too)
            time.sleep(0.1)
    return False


class ServerThread:
    """``with ServerThread(config) as srv: requests to srv.base_url``.

    The server runs its own event loop in a thread, so synchronous clients
    (the openai package, requests, subprocesses) can talk to it from the test.
    """

    def __init__(self, config: ServerConfig, *, extensions: Iterable[object] = (), shutdown_timeout: float = 5.0,
                 **runner_options):
        """``runner_options``: more keyword arguments for the app's runner, as aiohttp's ``web.AppRunner`` takes them
        (each connection's, e.g. ``lingering_time``: seconds a body answered before its end is still read)."""
        self.config = replace(config, port=config.port if config.port else free_port())
        if self.config.port == 1337:
            self.config.port = free_port()
        self.extensions = list(extensions)
        self.shutdown_timeout = shutdown_timeout
        self.runner_options = runner_options
        self.app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jan-test-server", daemon=True)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self._ready.wait(120)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise TimeoutError("the server did not start within 120 s")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        try:
            self._loop.run_until_complete(self._runner.cleanup())
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        """Close the loop as ``jan serve``'s ``asyncio.run`` closes its own after the app's cleanup: tasks still
        pending are cancelled and awaited (not destroyed midway when the loop closes), async generators closed. A
        task left is a fault of the app's cleanup (it owns every task that outlives a request, and waits for it):
        each is logged, named. (The executor's threads are not joined, as ``asyncio.run`` joins them: one a test
        left blocked would hold the test up for good.)"""
        loop = self._loop
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            log.warning("task left running by the app's cleanup: %r", task)
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=self.shutdown_timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _start(self) -> None:
        self.app = await create_app(self.config, extensions=self.extensions)
        self._runner = AppRunner(self.app, shutdown_timeout=self.shutdown_timeout, handle_signals=False,
                                 **self.runner_options)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()

    def call(self, coro, timeout: float = 60):
        """Run a coroutine on the server's loop (to reach its extensions from a test)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
