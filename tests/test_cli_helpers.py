"""Helpers for the CLI tests: run `jan` as a user would (a subprocess, or a pseudo-terminal),
and a small HTTP file server on 127.0.0.1 that can drop or stall a download.

(No tests here; the module name lets it live among the CLI's test files.)
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiohttp import web

JAN = [sys.executable, "-m", "jan.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(data: Path, *, local: bool = True, **extra: str) -> dict[str, str]:
    """Environment for a `jan` subprocess: its own data folder and HOME; local unless told otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAN_")}
    env.update(JAN_DATA_FOLDER=str(data), HOME=str(data.parent), PYTHONUNBUFFERED="1", NO_COLOR="1")
    if os.environ.get("JAN_TEST_MODELS"):
        env["JAN_TEST_MODELS"] = os.environ["JAN_TEST_MODELS"]
    if local:
        env["JAN_LOCAL"] = "1"
    env.update(extra)
    return env


def jan(*args: str, env: dict[str, str], input: str | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*JAN, *map(str, args)], env=env, input=input, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def fails(result: subprocess.CompletedProcess, *needles: str) -> str:
    """A clear failure: non-zero exit, no traceback, and stderr ends with one 'jan: error:' line holding
    every needle (progress lines may come before it)."""
    assert result.returncode != 0, f"expected failure; stdout: {result.stdout}"
    err = result.stderr.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("jan: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    err = errors[0]
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


# --------------------------------------------------------------------------- a read-only folder


def read_only_prefix(folder: Path) -> list[str] | None:
    """A command prefix that runs with ``folder`` read-only (a read-only bind mount when root, where permission
    bits do not bind; the bits otherwise), or None when neither can be had here."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o555)
        return []
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{folder}' '{folder}' && "
                            f"! touch '{folder}/.probe' 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{folder}' '{folder}' && exec \"$@\"", "sh"]


def restore_writable(folder: Path) -> None:
    """Undo :func:`read_only_prefix`'s permission bits (a mount ends with its command)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)


# --------------------------------------------------------------------------- Ctrl-C


def sigint_as_at_a_terminal() -> None:
    """For a child process (``preexec_fn``): Ctrl-C at its default, as a command typed at a terminal has it.

    A test run started in the background of a non-interactive shell (``pytest &``, ``nohup``) inherits
    SIGINT ignored; Python then installs no KeyboardInterrupt handler, and a child `jan` rightly leaves
    Ctrl-C alone. The Ctrl-C tests are about a user at a terminal, so their children start from that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --------------------------------------------------------------------------- a pseudo-terminal


class PtyProcess:
    """A command on a pseudo-terminal, like a person at a terminal: `send` keys, `expect` output."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # child: becomes the session leader with the pty as its terminal
            try:
                sigint_as_at_a_terminal()
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.mark = 0  # expect() searches output after this offset
        self.status: int | None = None

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            raise EOFError
        self.output += data
        return True

    def expect(self, pattern: str | bytes, timeout: float = 60) -> re.Match:
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self.mark)
            if match:
                self.mark = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n"
                                     f"{self.output.decode(errors='replace')[-3000:]}")
            try:
                self._read(min(remaining, 0.5))
            except EOFError:
                match = regex.search(self.output, self.mark)
                if match:
                    self.mark = match.end()
                    return match
                raise AssertionError(f"the program ended before {pattern!r}; output:\n"
                                     f"{self.output.decode(errors='replace')[-3000:]}") from None

    def send(self, text: str | bytes) -> None:
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def sendline(self, text: str) -> None:
        self.send(text + "\r")

    def alive(self) -> bool:
        if self.status is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.status = os.waitstatus_to_exitcode(status)
        return False

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError("the program did not exit; output so far:\n"
                                     f"{self.output.decode(errors='replace')[-3000:]}")
            try:
                self._read(0.1)
            except EOFError:
                time.sleep(0.05)
        return self.status

    def close(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        try:
            os.close(self.fd)
        except OSError:
            pass


# --------------------------------------------------------------------------- a file server


class FileServer:
    """Serves one file over HTTP on 127.0.0.1 (Range requests included), in a thread.

    ``mode``: ``"ok"``; ``"drop"`` - the first response sends half the file, then the connection
    is cut; ``"stall"`` - the first response sends half the file, then waits until :meth:`release`;
    ``"no_range"`` - Range headers are ignored (the whole file, 200), as some servers do.
    ``requests`` records each request's Range header (``None`` without one).
    """

    def __init__(self, data: bytes, name: str = "stories260K.gguf", mode: str = "ok"):
        self.data = data
        self.name = name
        self.mode = mode
        self.requests: list[str | None] = []
        self.half_sent = threading.Event()
        self._release: asyncio.Event | None = None
        self.port = free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        assert self._ready.wait(30), "file server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def release(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get(f"/{self.name}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        range_header = request.headers.get("Range")
        first = not self.requests
        self.requests.append(range_header)
        size = len(self.data)
        start = 0
        if range_header and self.mode != "no_range":
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            start = int(match.group(1))
            if start >= size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        body = self.data[start:]
        response = web.StreamResponse(status=206 if start else 200)
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["ETag"] = '"stories-v1"'
        response.content_length = len(body)
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await response.prepare(request)
        if first and self.mode in ("drop", "stall"):
            half = size // 2
            await response.write(body[:half])
            await asyncio.sleep(0.2)  # let the client take the bytes in
            self.half_sent.set()
            if self.mode == "stall":
                try:
                    await asyncio.wait_for(self._release.wait(), 60)
                except asyncio.TimeoutError:
                    pass
            request.transport.close()  # cut the connection mid-body
            return response
        for offset in range(0, len(body), 64 * 1024):
            await response.write(body[offset:offset + 64 * 1024])
        await response.write_eof()
        return response


def leaf_commands(group=None, path: tuple[str, ...] = ()):
    """Every command of ``jan`` (or of ``group``) that is no group, as ``("models list", command)`` pairs, in the
    order ``--help`` lists them."""
    import click

    from jan.cli import main

    group = group or main
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command
