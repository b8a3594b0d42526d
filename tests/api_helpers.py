"""Helpers for the HTTP API tests: a real server on 127.0.0.1, JSON calls, SSE parsing, a server subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread, free_port


def config(data: Path, *models: Path | str, **kwargs: Any) -> ServerConfig:
    """A test server config: loopback, one thread per model, no third-party extensions."""
    opts: dict[str, Any] = {"n_ctx": 512, "n_parallel": 2, "n_threads": 1, "enable_extensions": True}
    opts.update(kwargs)
    return ServerConfig(data_folder=Path(data), models=[str(m) for m in models], **opts)


@contextlib.contextmanager
def running(data: Path, *models: Path | str, **kwargs: Any):
    with ServerThread(config(data, *models, **kwargs)) as srv:
        yield srv


class AppThread:
    """An aiohttp application (a fake upstream: a model hub, an image host) served on 127.0.0.1 from its own
    thread and event loop, while the ``with`` block runs. Subclasses add their routes in :meth:`routes`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.routes(app.router)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()  # (its app cleaned up by __exit__ first; left open: "unclosed event loop" at exit)


@contextlib.contextmanager
def http_serving(handler):
    """Serve an ``http.server`` request handler on 127.0.0.1 in a thread; yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Client:
    """A thin JSON client over one aiohttp session; returns ``(status, body)``."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None, *, raw_path: bool = False) -> tuple[int, Any]:
        from yarl import URL

        url = URL(self.base + path, encoded=True) if raw_path else self.base + path
        kwargs = {} if body is None else {"json": body}
        async with self.session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text

    async def get(self, path: str, **kw) -> tuple[int, Any]:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw) -> tuple[int, Any]:
        return await self.call("POST", path, {} if body is None else body, **kw)

    async def patch(self, path: str, body: Any, **kw) -> tuple[int, Any]:
        return await self.call("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw) -> tuple[int, Any]:
        return await self.call("DELETE", path, **kw)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, data = await self.call(method, path, body)
        assert got == status, (method, path, got, data)
        return data


def post_json(base_url: str, path: str, body: Any, *, timeout: float = 300, method: str = "POST") -> tuple[int, Any]:
    """POST (or ``method``) ``body`` as JSON; (status, the answer's JSON), errors included. ``timeout``: a guard
    against a hung test, never a measure."""
    req = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_json(base_url: str, path: str, *, timeout: float = 120) -> tuple[int, Any]:
    """GET ``path``; (status, the answer's JSON), errors included. ``timeout``: a guard against a hung test."""
    try:
        with urllib.request.urlopen(base_url + path, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def png_bytes(size: tuple[int, int] = (22, 14), color: tuple[int, int, int] = (90, 30, 160)) -> bytes:
    """A small real PNG (Pillow), ``size`` pixels (width, height) of one ``color``."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def post_form(base_url: str, fields: dict[str, str], *, with_file: bool = True, filename: str = "x.txt",
              content: bytes = b"x", path: str = "/v1/files") -> tuple[int, dict]:
    """A ``multipart/form-data`` POST written by hand (the Files API's upload: ``fields`` as plain parts, then the
    file part), so a test controls every byte; (status, JSON body), errors included."""
    boundary = "jan-test-boundary"
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    if with_file:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(base_url + path, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """``[(event name or None, data)]`` from an SSE body; ``data`` is parsed JSON or the raw string."""
    events = []
    for block in text.split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if not data:
            continue
        raw = "\n".join(data)
        try:
            events.append((name, json.loads(raw)))
        except json.JSONDecodeError:
            events.append((name, raw))
    return events


async def post_streamed_run(session: aiohttp.ClientSession, base_url: str, thread_id: str,
                            max_tokens: int) -> aiohttp.ClientResponse:
    """Start a long streamed run (``ignore_eos``: it goes on until ``max_tokens``) and return its open response."""
    return await session.post(f"{base_url}/v1/threads/{thread_id}/runs",
                              json={"stream": True, "max_tokens": max_tokens, "ignore_eos": True})


class RunStream:
    """Follows a streamed run's SSE lines: the run's id, the reply's message id and its text so far."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.message_id: str | None = None
        self.text = ""

    def feed(self, raw: bytes) -> str:
        """Take one line of the response body; returns it decoded and stripped."""
        line = raw.decode().strip()
        if line.startswith("data: {") and '"thread.run"' in line and self.run_id is None:
            self.run_id = parse_sse(line)[0][1]["id"]
        if line.startswith("data: {") and '"thread.message.delta"' in line:
            delta = parse_sse(line)[0][1]
            self.message_id = delta["id"]
            self.text += delta["delta"]["content"][0]["text"]["value"]
        return line


def message_text(message: dict[str, Any]) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p["type"] == "text")


def summed_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Model turns' usages added up, as a run reports its own (OpenAI's: "over the course of the run")."""
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(u["prompt_tokens_details"]["cached_tokens"]
                                                           for u in usages)},
            "completion_tokens_details": {"reasoning_tokens": sum(u["completion_tokens_details"]["reasoning_tokens"]
                                                                  for u in usages)}}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, strictly parsed (a torn line fails the test)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def saved_text(data: Path, thread_id: str, message_id: str) -> str:
    """The text of a message as its thread's file holds it now ("" while it is not there); a torn last
    line (a write in progress) counts as not there yet."""
    try:
        lines = (data / "threads" / thread_id / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("id") == message_id:
            return message_text(message)
    return ""


def files_outside(root: Path) -> set[str]:
    """Every path under ``root``'s parent that is not inside ``root`` (to prove nothing escaped)."""
    parent = root.parent
    out = set()
    for dirpath, dirnames, filenames in os.walk(parent):
        if Path(dirpath) == root or root in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full != root:
                out.add(str(full))
    return out


# -- a server in another process (for SIGKILL) ---------------------------------------
SERVER_SCRIPT = """
import sys
from pathlib import Path
from aiohttp import web
from jan.server.app import create_app
from jan.server.config import ServerConfig

data, port, model, n_ctx = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
cfg = ServerConfig(data_folder=Path(data), port=port, models=[model], n_ctx=n_ctx, n_parallel=1, n_threads=1)
web.run_app(create_app(cfg), host="127.0.0.1", port=port, print=None, handle_signals=True)
"""


class ServerProcess:
    """``python -c SERVER_SCRIPT data port model n_ctx``: a real server we can SIGKILL."""

    def __init__(self, data: Path, model: Path | str, *, n_ctx: int = 512):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(data).parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(data), str(self.port), str(model),
                                      str(n_ctx)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"server did not start: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        if not self.log.closed:
            self.log.close()

    def terminate(self) -> None:
        """SIGTERM: the server's own graceful stop (``web.run_app`` handles it as ``jan serve`` does)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def shadow_aiohttp(folder: Path, version: str | None) -> Path:
    """A copy of the installed aiohttp package as ``folder/aiohttp`` (every file a symlink but ``__init__.py``, a copy
    whose ``__version__`` line says ``version``, or computes one when None: no literal to read), for a PYTHONPATH
    that imports aiohttp from elsewhere than the distribution pip recorded, as a vendored or bundled copy is.
    Returns ``folder``."""
    import re

    source = Path(aiohttp.__spec__.origin).parent
    target = Path(folder) / "aiohttp"
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name not in ("__init__.py", "__pycache__"):
            (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    line = f"__version__ = {version!r}" if version is not None else '__version__ = ".".join(["3", "0", "1"])'
    init, count = re.subn(r"^__version__ = .*$", line, (source / "__init__.py").read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, "aiohttp's __init__ has no __version__ line"
    (target / "__init__.py").write_text(init)
    return Path(folder)


def until(predicate: Callable[[], Any], what: str, wait_s: float = 120.0) -> Any:
    """``predicate()``'s first truthy value, asked every 50 ms; AssertionError naming ``what`` after ``wait_s``
    (generous: a busy 2-core machine)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {wait_s} s: {what}")
