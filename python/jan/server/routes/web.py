"""The chat page: ``/`` serves ``jan/web/index.html``, ``/static/<file>`` its scripts and styles.

Plain files, no build step. They are open (no API key): the page asks the
user for the key itself when the API answers 401. Every response carries a
strict Content-Security-Policy (scripts and styles from this origin only, no
inline script, no plugins, no framing) as a second line of defence behind
the page's own rule of never putting model text into HTML.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import mimetypes
import re
from pathlib import Path

from aiohttp import web

from jan.server.keys import CONFIG

routes = web.RouteTableDef()

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


def web_root() -> Path:
    """The folder with the page's files, in a wheel and in an editable install alike."""
    try:
        root = Path(str(importlib.resources.files("jan") / "web"))
        if (root / "index.html").is_file():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "web"


#: What a page file's path may look like: short plain names only. Anything else (a 256-character name,
#: a NUL byte, a backslash, a dotfile, ``..``) is a 404 before the file system is asked.
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
MAX_PARTS = 8


def _asset(name: str) -> Path:
    """A file directly in (or below) the web folder; 404 for anything else (no ``..``, no dotfiles)."""
    root = web_root().resolve()
    parts = [p for p in name.split("/") if p]
    if not parts or len(parts) > MAX_PARTS or not all(_PART.match(p) for p in parts):
        raise web.HTTPNotFound()
    try:
        path = (root / Path(*parts)).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (OSError, ValueError):  # whatever the file system says about an odd name, it is not a page file
        found = False
    if not found:
        raise web.HTTPNotFound()
    return path


def _file_response(request: web.Request, path: Path, *, cache: str) -> web.Response:
    stat = path.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {"Cache-Control": cache, "ETag": etag, **SECURITY_HEADERS}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    content_type = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.Response(body=path.read_bytes(), headers={"Content-Type": content_type, **headers})


async def _served(request: web.Request, name: str, *, cache: str) -> web.Response:
    """The page file ``name`` (:func:`_asset`, :func:`_file_response`), found, stat'ed and read in a worker thread:
    a slow disk (a network home folder, a cold cache) holds up this request only, not every other one."""
    return await asyncio.to_thread(lambda: _file_response(request, _asset(name), cache=cache))


def _on_ollama_port(request: web.Request) -> bool:
    """Whether the request came in on ``jan serve --ollama-port`` (Ollama's port, not jan's own). On a port that is
    both (``--ollama-port`` = ``--port``), jan's own: the chat page must stay reachable, and Ollama clients find a
    server by any 200 at ``/`` (``HEAD /`` in Ollama's own client; most use ``/api/version`` or ``/api/tags``)."""
    config = request.app[CONFIG]
    port = config.ollama_port
    if not port or port == config.port:
        return False
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return isinstance(sockname, tuple) and len(sockname) >= 2 and sockname[1] == port


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The chat page; on Ollama's port, Ollama's "Ollama is running" (clients check it to find a server)."""
    if _on_ollama_port(request):
        return web.Response(text="Ollama is running")
    return await _served(request, "index.html", cache="no-cache")


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.Response:
    """The page's icon."""
    return await _served(request, "favicon.svg", cache="max-age=86400")


@routes.get("/static/{name:.+}")
async def static(request: web.Request) -> web.Response:
    """The page's scripts, styles and icons."""
    # no-cache: the browser revalidates, so an upgraded jan never runs a stale script
    return await _served(request, request.match_info["name"], cache="no-cache")
