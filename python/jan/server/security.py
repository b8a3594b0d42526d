"""What every request passes before a handler sees it: Host, Origin, Content-Type, API key, CORS.

* **Host.** A ``Host`` that is not ``host[:port]`` (``127.0.0.1:80@evil.example``,
  ``a, b``, two Host headers) is a 400. When bound to loopback, only Hosts
  naming the loopback interface (or ``--allowed-host``) are served: a page on
  another origin that re-binds its DNS name to 127.0.0.1 still sends its own
  name as Host, and is refused (403).
* **Cross-site requests.** A state-changing request (POST, PUT, PATCH,
  DELETE) whose ``Origin`` is neither this server's own origin nor a
  ``--cors-origin`` gets 403, with or without an API key; a body sent to one
  of jan's own routes must be ``application/json`` (415 otherwise), which a
  cross-site page cannot send without a CORS preflight.
* **API key.** ``Authorization: Bearer KEY`` or ``x-api-key: KEY``, compared in
  constant time. Open without it: the web page's shell (``/``, ``/favicon.ico``,
  ``/static/*``; the page asks for the key itself), ``/health`` and ``/v1/health`` (status only:
  the loaded models are listed only to a request with the key) and CORS
  preflights. ``/docs`` and ``/openapi.json`` need the key: they describe the
  installed extensions and the exact version.
* **CORS.** Preflights for allowed origins are answered here; every other
  response to an allowed origin — errors and streamed (SSE) ones included —
  gets ``Access-Control-Allow-Origin`` from an ``on_response_prepare`` hook,
  which runs for every response just before its headers are sent.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Collection

from aiohttp import web
from yarl import URL

from jan.loopback import is_loopback_host
from jan.server.config import ServerConfig
from jan.server.errors import APIError, json_error
from jan.server.validation import require_json_content_type

OPEN_PATHS = ("/", "/favicon.ico", "/health", "/v1/health")
OPEN_PREFIXES = ("/static/",)
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
CORS_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, X-Api-Key, Content-Type, OpenAI-Organization, OpenAI-Project, X-Stainless-*, *"

# host[:port]: a DNS name / IPv4 address, or an IPv6 address in brackets; a decimal port.
_HOST_RE = re.compile(r"^(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}))|\[(?P<ip6>[0-9A-Fa-f:.]{2,45})\])"
                      r"(?::(?P<port>[0-9]{1,5}))?$")


def is_open(path: str) -> bool:
    """Paths served without the API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(lower-cased name, port)`` of a ``Host`` header value, or ``None`` if it is not ``host[:port]``."""
    m = _HOST_RE.match(value.strip())
    if m is None:
        return None
    port = int(m["port"]) if m["port"] else None
    if port is not None and port > 65535:
        return None
    if m["ip6"] is not None:
        try:
            ipaddress.IPv6Address(m["ip6"])
        except ValueError:
            return None
        return m["ip6"].lower(), port
    return m["name"].lower().rstrip("."), port


def host_allowlist_middleware(config: ServerConfig):
    extra = {h.lower() for h in config.allowed_hosts}

    @web.middleware
    async def middleware(request: web.Request, handler):
        hosts = request.headers.getall("Host", [])
        if len(hosts) > 1:
            return json_error(APIError(400, "The request has more than one Host header", code="invalid_host"))
        parsed = parse_host(hosts[0]) if hosts else None
        if hosts and parsed is None:
            return json_error(APIError(400, "The Host header must be host[:port]", code="invalid_host"))
        if config.bound_to_loopback:
            name = parsed[0] if parsed else ""
            if not (is_loopback_host(name) or name in extra):
                return json_error(APIError(403, f"Host '{name}' is not allowed (DNS rebinding protection); "
                                                "use --allowed-host to permit it", code="host_not_allowed"))
        return await handler(request)

    return middleware


def cors_origin(value: str) -> str:
    """An allowed CORS origin as a browser's ``Origin`` header spells it, which is matched exactly: ``*``, ``null``,
    or ``scheme://host[:port]``, its scheme and host in lower case and a trailing ``/`` dropped
    (``http://Localhost:3000/`` is ``http://localhost:3000``). ValueError for a value that is no origin
    (``localhost:3000``, a URL with a path): kept as given, it matched no request, and the browser's calls failed
    with nothing said why."""
    from urllib.parse import urlsplit

    if value in ("*", "null"):
        return value
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or not url.scheme or not url.hostname or url.path not in ("", "/") or url.query or url.fragment \
            or url.username or url.password:
        raise ValueError(f"{value!r} is no origin: give scheme://host[:port] as a browser sends it "
                         "(http://localhost:3000), or '*' for any")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{url.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def cors_allowed_origin(config: ServerConfig) -> Callable[[str | None], str | None]:
    """``allowed(origin)`` -> the ``Access-Control-Allow-Origin`` value for it, or ``None``. The configured origins
    are read as :func:`cors_origin` reads them (a ValueError for one that is none: the server does not start)."""
    origins = {cors_origin(value) for value in config.cors_origins}
    any_origin = "*" in origins

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if any_origin:
            return "*" if not config.api_key else origin
        return origin if origin in origins else None

    return allowed


def _same_origin(request: web.Request, origin: str) -> bool:
    """Whether ``origin`` is this server as the client reached it (the web page's own requests)."""
    try:
        url = URL(origin)
    except ValueError:
        return False
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        return False
    host = parse_host(request.headers.get("Host", ""))
    if host is None:
        return False
    default = 443 if url.scheme == "https" else 80
    origin_host = url.host.lower().strip("[]")
    return origin_host == host[0] and (url.port or default) == (host[1] or default)


def cross_site_middleware(config: ServerConfig, own_handlers: Collection[object]):
    """403 for state-changing requests from a foreign ``Origin``; 415 for non-JSON bodies to jan's own routes.

    ``own_handlers`` are the handlers of jan's route tables; extensions' routes choose their own body types.
    """
    allowed = cors_allowed_origin(config)
    own = set(own_handlers)

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method in STATE_CHANGING:
            origin = request.headers.get("Origin")
            # Browsers send Origin on every cross-origin POST (also "null" from sandboxed frames and files).
            if origin is not None and allowed(origin) is None and not _same_origin(request, origin):
                return json_error(APIError(403, f"Origin '{origin}' may not change anything here; "
                                                "use --cors-origin to permit it", code="origin_not_allowed"))
            if request.match_info.handler in own and request.body_exists:  # an empty body is no body
                try:
                    require_json_content_type(request)
                except APIError as exc:
                    return json_error(exc)
        return await handler(request)

    return middleware


def cors_middleware(config: ServerConfig):
    """Answers CORS preflights; the headers of every other response come from :func:`cors_on_prepare`."""
    allowed = cors_allowed_origin(config)

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            origin = request.headers.get("Origin")
            allow = allowed(origin)
            if allow is None:
                return json_error(APIError(403, f"Origin '{origin}' is not allowed", code="cors_origin_not_allowed"))
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": allow,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", CORS_HEADERS),
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            })
        return await handler(request)

    return middleware


def cors_on_prepare(config: ServerConfig):
    """An ``on_response_prepare`` hook: CORS headers on every response to an allowed origin, streamed or not."""
    allowed = cors_allowed_origin(config)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        allow = allowed(request.headers.get("Origin"))
        if allow is not None and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers.add("Vary", "Origin")

    return on_prepare


def key_matches(request: web.Request, expected: bytes) -> bool:
    """Whether the request carries the key, as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``.

    Both candidates are always compared (constant time, no early exit that tells which one was tried).
    """
    # aiohttp keeps a header's bytes that are not UTF-8 as surrogates: back to those bytes, a key that does not
    # match (a plain encode() raised, and the request was a 400 telling Python's codec error)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    bearer = token.strip().encode("utf-8", "surrogateescape") if scheme.lower() == "bearer" else b""
    x_api_key = request.headers.get("x-api-key", "").strip().encode("utf-8", "surrogateescape")
    by_bearer = hmac.compare_digest(bearer, expected)
    by_header = hmac.compare_digest(x_api_key, expected)
    return by_bearer or by_header


def authorized(request: web.Request, config: ServerConfig) -> bool:
    """True without ``--api-key``, else whether the request carries the key."""
    return not config.api_key or key_matches(request, config.api_key.encode())


MISSING_KEY = ("Missing API key: this server was started with --api-key; send the key as 'Authorization: Bearer "
               "KEY' or 'x-api-key: KEY'")


def api_key_middleware(config: ServerConfig):
    expected = (config.api_key or "").encode()

    @web.middleware
    async def middleware(request: web.Request, handler):
        if expected and not is_open(request.path) and request.method != "OPTIONS":
            if not key_matches(request, expected):
                sent = "Authorization" in request.headers or "x-api-key" in request.headers
                # without a key a new user's first curl has no idea a key is wanted, nor how it is sent (OpenAI's
                # own message says how, too)
                message = "Incorrect API key provided" if sent else MISSING_KEY
                return json_error(APIError(401, message, code="invalid_api_key"),
                                  headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware
