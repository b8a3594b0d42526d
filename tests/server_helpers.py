"""Shared pieces of the server tests: a real server on 127.0.0.1 with real models."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread


def start_server(tmp: Path, models: list[Path], **config) -> ServerThread:
    cfg = ServerConfig(data_folder=tmp / "data", models=[str(m) for m in models],
                       **{"n_ctx": 512, "n_parallel": 4, "n_threads": 1, **config})
    return ServerThread(cfg).__enter__()


def post(server: ServerThread, path: str, body) -> httpx.Response:
    """POST ``body`` as JSON to ``path`` of ``server`` (a generous bound: a busy 2-core machine)."""
    return httpx.post(server.base_url + path, json=body, timeout=120)


def ok(server: ServerThread, path: str, body) -> dict | list:
    """POST as :func:`post`, asserting a 200; the answer's JSON."""
    response = post(server, path, body)
    assert response.status_code == 200, (path, response.text)
    return response.json()


def raw_request(base_url: str, request: bytes) -> bytes:
    """Send exact bytes and read the whole response (for SSE framing and odd requests)."""
    host, port = base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def http_post(path: str, body: dict | bytes, *, host: str = "127.0.0.1", headers: dict | None = None) -> bytes:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def sse_events(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in body.decode().split("\n") if line.startswith("data: ")]
