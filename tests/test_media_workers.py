"""Prompts with images are made on worker threads of their own (jan.services.media_workers), at most one per core at
a time: on the event loop's shared worker threads, a few image requests at once took every one of them, and a
request that needs one for a moment (listing models, a text chat's prompt) waited behind the pictures.

The image requests here are held inside their decoding (on an event) while the other requests are asked: they must
be answered all the same, and the held ones finish once let go."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import urllib.request

import jan
from jan.services.media_workers import MEDIA_WORKERS
from server_helpers import start_server

#: asyncio's default executor: min(32, cpu count + 4) threads. One image request more than that was enough to
#: leave none for anyone else.
SHARED_WORKERS = min(32, (os.cpu_count() or 1) + 4)


def _png() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 20), (90, 30, 200)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _call(server, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:  # (a request left waiting fails here)
        return response.status, json.loads(response.read())


def test_image_requests_leave_the_shared_workers_to_others(tmp_path, vision_pair, monkeypatch):
    gate = threading.Event()
    arrived = threading.Condition()
    threads_seen: list[str] = []
    prepare = jan.engine.model.Model.prepare_media

    def held(self, items):
        with arrived:
            threads_seen.append(threading.current_thread().name)
            arrived.notify_all()
        gate.wait(300)
        return prepare(self, items)

    monkeypatch.setattr(jan.engine.model.Model, "prepare_media", held)
    server = start_server(tmp_path, [vision_pair[0]], n_parallel=2)
    results: list[int] = []
    image = {"model": "vision-chat", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _png()}}]}]}

    def ask() -> None:
        results.append(_call(server, "/v1/chat/completions", image)[0])

    askers = [threading.Thread(target=ask) for _ in range(SHARED_WORKERS + 1)]
    try:
        for t in askers:
            t.start()
        with arrived:  # every media worker is held (the other image requests wait for one)
            assert arrived.wait_for(lambda: len(threads_seen) >= MEDIA_WORKERS, timeout=120), threads_seen
        assert _call(server, "/v1/models")[0] == 200
        assert _call(server, "/v1/chat/completions", {"model": "vision-chat", "max_tokens": 1, "messages": [
            {"role": "user", "content": "Hello"}]})[0] == 200
        assert len(threads_seen) == MEDIA_WORKERS  # at most one per core at a time
    finally:
        gate.set()
        for t in askers:
            t.join(300)
        server.stop()
    assert results == [200] * len(askers)
    assert all(name.startswith("jan-media") for name in threads_seen), threads_seen
    assert len(threads_seen) >= len(askers)

