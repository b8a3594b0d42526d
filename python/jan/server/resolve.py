"""Find a request's model and the engine that serves it — always through the extension manager."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from jan.core import InferenceExtension, ModelExtension
from jan.server.keys import MANAGER, SERVICES
from jan.services.errors import require

T = TypeVar("T")


def service(request: web.Request, interface: type[T], provides: str, builtin: str) -> T:
    """The enabled extension implementing ``interface`` (503 naming the built-in to enable when none is)."""
    return require(request.app[MANAGER], interface, provides, builtin)


def model_extension(request: web.Request) -> ModelExtension:
    return service(request, ModelExtension, "manages models", "models")


async def model_and_engine(request: web.Request, model_id: str | None) -> tuple[dict[str, Any], InferenceExtension]:
    """The model.json and engine of ``model_id`` by the services' one rule (404/400/503 on failure)."""
    target = await request.app[SERVICES].models.resolve(model_id)
    return target.model, target.engine
