"""Typed application state (aiohttp ``web.AppKey``), so handlers never use string keys."""

from __future__ import annotations

import asyncio

from aiohttp import web

from jan.core import ExtensionManager, LocalEventBus
from jan.server.config import ServerConfig
from jan.server.media_fetch import MediaFetcher
from jan.services.container import Services

CONFIG = web.AppKey("config", ServerConfig)
MANAGER = web.AppKey("manager", ExtensionManager)
#: The typed services every route calls (built from the manager).
SERVICES = web.AppKey("services", Services)
#: Fetches images given by URL/path (an empty allowlist refuses them all).
MEDIA_FETCHER = web.AppKey("media_fetcher", MediaFetcher)
BUS = web.AppKey("bus", LocalEventBus)
STARTED_AT = web.AppKey("started_at", float)
#: Each model's phase totals at the last /metrics scrape (routes.health: llama-server's throughput gauges average
#: over the time between two scrapes).
METRIC_WINDOWS = web.AppKey("metric_windows", dict)
#: Every request answered, by method, route and status (``jan_http_requests_total``: jan.server.request_counts).
HTTP_REQUESTS = web.AppKey("http_requests", object)
# Set when the server starts shutting down: open streams end cleanly instead of being cut.
SHUTTING_DOWN = web.AppKey("shutting_down", asyncio.Event)
#: The chat completions being made that can be acted on (``reasoning_control``), by their reply's id.
LIVE_CONTROLS = web.AppKey("live_controls", dict)
