"""Shared pieces of the server tests: a real server on 127.0.0.1 with real models."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread


def start_server(tmp: Path, models: list[Path], **config) -> ServerThread:
    cfg = ServerConfig(data_folder=tmp / "data", models=[str(m) for m in models],
                       **{"n_ctx": 512, "n_parallel": 4, "n_threads": 1, **config})
    return ServerThread(cfg).__enter__()


def slot_server_fixtures(n_parallel: int):
    """The module-scoped fixtures ``folder`` (the --slot-save-path) and ``server`` (stories260K with ``n_parallel``
    slots saved there by POST /slots/{id}) of the slot tests; a module takes them as ``folder, server = ...``.
    No host-memory prompt cache: a prompt's reused tokens can only be its slot's own."""

    @pytest.fixture(scope="module", name="folder")
    def folder(tmp_path_factory):
        return tmp_path_factory.mktemp("slots")

    @pytest.fixture(scope="module", name="server")
    def server(tmp_path_factory, stories_path, folder):
        srv = start_server(tmp_path_factory.mktemp("srv"), [stories_path], n_parallel=n_parallel, cache_ram_mib=0,
                           slot_save_path=str(folder))
        yield srv
        srv.stop()

    return folder, server


def slot_action(server: ServerThread, id_slot, name: str, body=None) -> httpx.Response:
    """POST /slots/{id_slot}?action={name} (save, restore, erase) with ``body`` as JSON."""
    return httpx.post(f"{server.base_url}/slots/{id_slot}?action={name}", json=body, timeout=120)


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


def post_read_whole(base_url: str, path: str, body: dict, timeout: float) -> tuple[bytearray, threading.Thread]:
    """POST ``body`` to ``path`` over a plain socket (no client library between: what the server writes is what the
    client gets, up to its close) and read the answer on a thread: ``(answer, reader)``, ``answer`` growing as bytes
    come, ``reader`` ended once the server closed the connection. ``timeout`` bounds each socket wait."""
    host, port = base_url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    answer = bytearray()

    def read() -> None:
        with sock:
            while more := sock.recv(65536):
                answer.extend(more)

    sock.sendall(http_post(path, body))
    reader = threading.Thread(target=read)
    reader.start()
    return answer, reader


def sse_events(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in body.decode().split("\n") if line.startswith("data: ")]
