"""The chat page's files over HTTP: served at / and /static/, open without the API key, nothing else reachable."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from jan.server.config import ServerConfig
from jan.server.routes.web import web_root
from jan.testing.server import ServerThread

PAGE_FILES = ("index.html", "app.js", "markdown.js", "style.css", "favicon.svg")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("web-static")
    with ServerThread(ServerConfig(data_folder=data, api_key="sekret")) as srv:
        yield srv


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw_get(base_url: str, path: str) -> int:
    """A GET with the path exactly as written (no client-side normalisation of ``..``)."""
    host, port = base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_page_files_ship_in_the_package():
    root = web_root()
    for name in PAGE_FILES:
        assert (root / name).is_file(), f"{name} missing from {root}"


def test_index_is_served_open_with_a_strict_csp(keyed_server):
    status, headers, body = get(keyed_server.base_url + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b'<script type="module" src="/static/app.js">' in body


@pytest.mark.parametrize("name, content_type", [
    ("app.js", "text/javascript"), ("markdown.js", "text/javascript"), ("style.css", "text/css"),
    ("favicon.svg", "image/svg+xml"),
])
def test_static_files_are_open_with_their_types(keyed_server, name, content_type):
    status, headers, body = get(f"{keyed_server.base_url}/static/{name}")
    assert status == 200, body[:200]
    assert headers["Content-Type"].startswith(content_type)
    assert body == (web_root() / name).read_bytes()


def test_favicon_and_revalidation(keyed_server):
    status, headers, _ = get(keyed_server.base_url + "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    status, headers, _ = get(keyed_server.base_url + "/static/app.js")
    status2, _, body = get(keyed_server.base_url + "/static/app.js", {"If-None-Match": headers["ETag"]})
    assert status2 == 304 and body == b""


def test_the_api_itself_still_needs_the_key(keyed_server):
    status, headers, _ = get(keyed_server.base_url + "/v1/models")
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    status, _, _ = get(keyed_server.base_url + "/v1/models", {"Authorization": "Bearer sekret"})
    assert status == 200


@pytest.mark.parametrize("path", [
    "/static/", "/static/nope.js", "/static/../routes/web.py", "/static/%2e%2e/server/app.py",
    "/static/..%2fserver%2fapp.py", "/static/.hidden", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
])
def test_nothing_outside_the_web_folder(keyed_server, path):
    assert raw_get(keyed_server.base_url, path) in (401, 404)
