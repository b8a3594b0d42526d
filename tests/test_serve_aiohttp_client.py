"""``jan serve``'s outgoing requests through aiohttp's client, which a real ``jan serve`` loads at its first use (the
package is registered with its ``__init__`` deferred, ``jan.server.aiohttp_import``): image URLs, pulls, remote
models and the ``fetch_url`` tool all work when several of them are the client's first use at once, and the server
stops cleanly while a first use waits on its upstream. Tests that run the server in this process cannot see this:
pytest imported aiohttp whole long before."""

from __future__ import annotations

import asyncio
import io
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from api_helpers import AppThread, parse_sse, until
from jan.testing.server import free_port, wait_for_health

NOTE = "the fetched words"


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 12), (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


class Upstream(AppThread):
    """An image host (``/img/photo.png``), a note (``/note.txt``), a model file to pull (``/stories260K.gguf``), an
    OpenAI-compatible model that calls its first tool once and then answers with the tool's result (``/v1``), and
    ``/slow/...``, which answers nothing until its client hangs up (each arrival put in ``arrivals``, each hang-up
    in ``departures``)."""

    def __init__(self, gguf: Path):
        super().__init__()
        self.gguf = gguf
        self.png = _png()
        self.arrivals: queue.Queue[str] = queue.Queue()
        self.departures: queue.Queue[str] = queue.Queue()

    def routes(self, router) -> None:
        async def photo(_request):
            return web.Response(body=self.png, content_type="image/png")

        async def note(_request):
            return web.Response(text=NOTE)

        async def gguf(_request):
            return web.FileResponse(self.gguf)

        async def models(_request):
            return web.json_response({"object": "list", "data": [{"id": "caller", "object": "model"}]})

        async def chat(request):
            body = await request.json()
            results = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
            if results or not body.get("tools"):
                delta = {"role": "assistant", "content": f"the tool said: {results[-1] if results else ''}"}
                finish = "stop"
            else:
                call = {"name": body["tools"][0]["function"]["name"],
                        "arguments": json.dumps({"url": f"{self.base}/note.txt"})}
                delta = {"role": "assistant",
                         "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": call}]}
                finish = "tool_calls"
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for chunk_delta, reason in ((delta, None), ({}, finish)):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "caller",
                         "choices": [{"index": 0, "delta": chunk_delta, "finish_reason": reason}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            return response

        async def slow(request):
            self.arrivals.put(request.path)
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            self.departures.put(request.path)
            return web.Response(status=504)

        router.add_get("/img/photo.png", photo)
        router.add_get("/note.txt", note)
        router.add_get("/stories260K.gguf", gguf)
        router.add_get("/v1/models", models)
        router.add_post("/v1/chat/completions", chat)
        router.add_route("*", "/slow/{tail:.*}", slow)


def _remote(data: Path, model_id: str, base_url: str, upstream_model: str) -> None:
    folder = data / "models" / model_id
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"id": model_id, "engine": "openai", "settings": {
        "base_url": base_url, "model": upstream_model}}))


class Serve:
    """``python -m jan.cli serve`` on ``port`` over ``data`` (its output in ``data/../serve-<port>.log``)."""

    def __init__(self, data: Path, port: int, *args: str):
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = data.parent / f"serve-{port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "jan.cli", "serve", "--port", str(port),
                                          "--data-folder", str(data), "--threads", "1", "--ctx-size", "512",
                                          "--parallel", "4", *args], stdout=log, stderr=subprocess.STDOUT)
        if not wait_for_health(port):
            self.stop()
            raise AssertionError(f"jan serve did not start: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGINT (Ctrl-C), as a user stops it; its exit status (generous bound: a busy 2-core machine)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"jan serve did not stop within 120 s of SIGINT: {self.output()[-3000:]}") from None


def _start(tmp: Path, upstream: Upstream, vision_model: Path, stories_path: Path) -> Serve:
    data = tmp / "data"
    port = free_port()
    _remote(data, "remote-self", f"http://127.0.0.1:{port}/v1", "stories260K")  # this server, as its own upstream
    _remote(data, "remote-caller", f"{upstream.base}/v1", "caller")
    _remote(data, "remote-slow", f"{upstream.base}/slow/v1", "caller")
    (data / "settings" / "tools").mkdir(parents=True)
    (data / "settings" / "tools" / "settings.json").write_text(json.dumps({"fetch_enabled": True}))
    return Serve(data, port, "-m", str(stories_path), "-m", str(vision_model), "--allow-media-from",
                 f"{upstream.base}/", "--log-level", "warning")


@pytest.fixture(scope="module")
def upstream(stories_path):
    with Upstream(stories_path) as host:
        yield host


def _image_chat(base: str, url: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", timeout=300, json={
        "model": "vision-chat", "max_tokens": 3, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]}]})


def _anthropic_image(base: str, url: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/messages", timeout=300, json={
        "model": "vision-chat", "max_tokens": 3, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": url}}, {"type": "text", "text": "What is it?"}]}]})


def _remote_chat(base: str, model: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", timeout=300, json={
        "model": model, "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]})


def _pull(base: str, url: str) -> list:
    response = httpx.post(f"{base}/v1/models/pull", timeout=300, json={"url": url, "id": "pulled"})
    assert response.status_code == 200, response.text
    return [payload for _event, payload in parse_sse(response.text) if isinstance(payload, dict)]


def _fetch_run(base: str) -> tuple[dict, list[dict]]:
    response = httpx.post(f"{base}/v1/threads/runs", timeout=300, json={
        "model": "remote-caller", "tools": [{"type": "function", "function": {"name": "fetch_url"}}],
        "tool_policy": {"auto_approve": ["fetch_url"]}, "thread": {"messages": [{"role": "user", "content": "Go"}]}})
    assert response.status_code == 200, response.text
    run = response.json()
    path = f"{base}/v1/threads/{run['thread_id']}"

    def finished():
        got = httpx.get(f"{path}/runs/{run['id']}", timeout=60).json()
        return got if got["status"] not in ("queued", "in_progress") else None

    run = until(finished, "the fetch_url run to finish", 300)
    messages = httpx.get(f"{path}/messages", params={"all": "true", "order": "asc"}, timeout=60).json()["data"]
    return run, messages


def _text(message: dict) -> str:
    return "".join(part["text"]["value"] for part in message["content"] if part["type"] == "text")


@pytest.mark.timeout(900)
def test_every_first_use_of_the_client_at_once(tmp_path, upstream, vision_pair, stories_path):
    """The image fetcher (two dialects), the downloader, two remote models and the ``fetch_url`` tool each open the
    client for the first time, all at once: each works as it does once the client is loaded, and the ``Server``
    header names the same aiohttp before and after."""
    server = _start(tmp_path, upstream, vision_pair[0], stories_path)
    try:
        server_header = httpx.get(f"{server.base}/health", timeout=60).headers["Server"]
        photo = f"{upstream.base}/img/photo.png"
        calls = {"image": lambda: _image_chat(server.base, photo),
                 "anthropic_image": lambda: _anthropic_image(server.base, photo),
                 "remote_self": lambda: _remote_chat(server.base, "remote-self"),
                 "remote_caller": lambda: _remote_chat(server.base, "remote-caller"),
                 "pull": lambda: _pull(server.base, f"{upstream.base}/stories260K.gguf"),
                 "fetch_run": lambda: _fetch_run(server.base)}
        results: dict[str, object] = {}
        start = threading.Barrier(len(calls))

        def call(name):
            start.wait(timeout=60)
            try:
                results[name] = calls[name]()
            except (httpx.HTTPError, AssertionError) as exc:  # (told by the assertions below)
                results[name] = exc

        threads = [threading.Thread(target=call, args=(name,)) for name in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        assert set(results) == set(calls), server.output()[-3000:]

        for name in ("image", "anthropic_image", "remote_self", "remote_caller"):
            assert results[name].status_code == 200, (name, results[name].text)
        assert results["image"].json()["usage"]["prompt_tokens"] > 20  # the image's tokens are in the prompt
        assert results["remote_caller"].json()["choices"][0]["message"]["content"] == "the tool said: "
        assert results["pull"][-1]["state"] == "completed", results["pull"][-1]
        assert httpx.get(f"{server.base}/v1/models/pulled", timeout=60).status_code == 200
        run, messages = results["fetch_run"]
        assert run["status"] == "completed", run
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
        assert _text(messages[2]) == f"HTTP 200\n\n{NOTE}"
        assert _text(messages[3]) == f"the tool said: HTTP 200\n\n{NOTE}"

        import aiohttp

        assert server_header.endswith(f"aiohttp/{aiohttp.__version__}")
        assert httpx.get(f"{server.base}/health", timeout=60).headers["Server"] == server_header
    finally:
        status = server.stop()
    assert status == 0, server.output()[-3000:]
    assert "Traceback" not in server.output() and "Unclosed" not in server.output(), server.output()[-3000:]


@pytest.mark.timeout(900)
def test_a_stop_while_first_uses_wait_on_their_upstreams(tmp_path, upstream, vision_pair, stories_path):
    """Ctrl-C while an image fetch and a remote model's request, each the client's first use, wait on upstreams
    that answer nothing: the server stops (exit 0), closes both connections and leaves no client session open."""
    server = _start(tmp_path, upstream, vision_pair[0], stories_path)
    answers: dict[str, object] = {}

    def ask(name, call):
        try:
            answers[name] = call().status_code
        except httpx.HTTPError as exc:  # the server went away mid-request
            answers[name] = type(exc).__name__

    slow_image = f"{upstream.base}/slow/x.png"
    threads = [threading.Thread(target=ask, args=("image", lambda: _image_chat(server.base, slow_image))),
               threading.Thread(target=ask, args=("remote", lambda: _remote_chat(server.base, "remote-slow")))]
    try:
        for thread in threads:
            thread.start()
        arrived = sorted([upstream.arrivals.get(timeout=300), upstream.arrivals.get(timeout=300)])
        assert arrived[0].startswith("/slow/v1/") and arrived[1] == "/slow/x.png", arrived
    finally:
        status = server.stop()
        for thread in threads:
            thread.join(120)
    assert status == 0, server.output()[-3000:]
    assert set(answers) == {"image", "remote"}
    output = server.output()
    assert "Traceback" not in output and "Unclosed" not in output, output[-3000:]
    # the stop closed both upstream connections (each slow handler saw its client go)
    assert sorted([upstream.departures.get(timeout=120), upstream.departures.get(timeout=120)]) == arrived
