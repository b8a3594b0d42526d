"""Every HTTP request the server answers, counted by route, method and status: ``/metrics``'
``jan_http_requests_total{method, route, status}``.

Prometheus practice for a request counter (its client libraries' and exporters' ``http_requests_total``): one
counter of every request, labelled by the route's *template* (``/v1/threads/{thread_id}/messages``, never the path a
client sent: ids would make a series each), the method and the status code answered. llama-server counts no
requests (its ``llamacpp:`` counters are tokens and decodes, its ``requests_processing``/``requests_deferred``
gauges); jan's per-model ``jan_generations_total`` counts what its engines were given (each choice of ``n``, each turn
of a run or a tool loop), which is no count of requests. Counted here, outside every other middleware but the
request id's, each dialect's requests are counted alike: refusals (a bad key's 401, a 404, a dialect's 400) and
streams (their status as sent) included. A request whose client left before it was answered counts as ``499``
(nginx's "client closed request"); one that failed with no answer at all as ``500``. Requests aiohttp refuses
before the app sees them (a malformed request line) are not counted. A path that no route matches is counted as
the route ``unmatched``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

__all__ = ["CLIENT_CLOSED", "HttpRequestCounts", "UNMATCHED"]

#: The route label of a request that no route matched (a 404, a 405 of a path that is there otherwise).
UNMATCHED = "unmatched"
#: The status counted for a request whose client left before it was answered (nginx's).
CLIENT_CLOSED = 499


class HttpRequestCounts:
    """``(method, route, status) -> requests answered``: filled by :attr:`middleware`, read by ``/metrics``. Touched
    on the event loop only (no lock)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    @staticmethod
    def route_of(request: web.Request) -> str:
        """The template of the route that matched ``request`` (``/v1/threads/{thread_id}``), or :data:`UNMATCHED`."""
        match_info = request.match_info
        route = getattr(match_info, "route", None)
        resource = getattr(route, "resource", None) if route is not None else None
        if resource is None or getattr(match_info, "http_exception", None) is not None:
            return UNMATCHED
        return resource.canonical

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # (raised past the error middlewares: its own status)
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.counts[(request.method, self.route_of(request), str(status))] += 1

    def samples(self) -> list[tuple[tuple[str, str, str], int]]:
        """The counts as ``((method, route, status), n)``, in a stable order."""
        return sorted(self.counts.items())
