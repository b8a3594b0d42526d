"""Typed application state (aiohttp ``web.AppKey``), so handlers never use string keys."""

from __future__ import annotations

from aiohttp import web

from jan.core import ExtensionManager, LocalEventBus
from jan.server.config import ServerConfig

CONFIG = web.AppKey("config", ServerConfig)
MANAGER = web.AppKey("manager", ExtensionManager)
BUS = web.AppKey("bus", LocalEventBus)
STARTED_AT = web.AppKey("started_at", float)
