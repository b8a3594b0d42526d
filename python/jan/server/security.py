"""API key, CORS and the Host-header allowlist.

The key (``Authorization: Bearer KEY`` or ``x-api-key: KEY``) is compared in constant
time. ``/health``, the web page and CORS preflights stay open (the page asks for the key
itself). When bound to
loopback, only requests whose Host names the loopback interface are served:
a web page on another origin that re-binds its DNS name to 127.0.0.1 still
sends its own name as Host, and is refused.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from jan.server.config import ServerConfig
from jan.server.errors import APIError, json_error

OPEN_PATHS = ("/health", "/", "/favicon.ico", "/docs", "/openapi.json")
OPEN_PREFIXES = ("/static/",)
CORS_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, X-Api-Key, Content-Type, OpenAI-Organization, OpenAI-Project, X-Stainless-*, *"


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:1337
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowlist_middleware(config: ServerConfig):
    extra = {h.lower() for h in config.allowed_hosts}

    @web.middleware
    async def middleware(request: web.Request, handler):
        if config.bound_to_loopback:
            name = _host_name(request.headers.get("Host", ""))
            if not (_is_loopback_name(name) or name in extra):
                return json_error(APIError(403, f"Host '{name}' is not allowed (DNS rebinding protection); "
                                                "use --allowed-host to permit it", code="host_not_allowed"))
        return await handler(request)

    return middleware


def cors_middleware(config: ServerConfig):
    origins = set(config.cors_origins)
    any_origin = "*" in origins

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if any_origin:
            return "*" if not config.api_key else origin
        return origin if origin in origins else None

    @web.middleware
    async def middleware(request: web.Request, handler):
        origin = request.headers.get("Origin")
        allow = allowed(origin)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if allow is None:
                return json_error(APIError(403, f"Origin '{origin}' is not allowed", code="cors_origin_not_allowed"))
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": allow,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", CORS_HEADERS),
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            })
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if allow is not None and not getattr(response, "prepared", False):
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Vary"] = "Origin"
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return middleware


def api_key_middleware(config: ServerConfig):
    expected = (config.api_key or "").encode()

    @web.middleware
    async def middleware(request: web.Request, handler):
        if expected and not _is_open(request.path) and request.method != "OPTIONS":
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            # Anthropic's clients (Claude Code) send the key as x-api-key instead of a Bearer token.
            x_api_key = request.headers.get("x-api-key")
            bearer_ok = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)
            x_api_key_ok = x_api_key is not None and hmac.compare_digest(x_api_key.strip().encode(), expected)
            if not (bearer_ok or x_api_key_ok):
                message = "Missing API key" if not header and x_api_key is None else "Incorrect API key provided"
                return json_error(APIError(401, message, code="invalid_api_key"),
                                  headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware
