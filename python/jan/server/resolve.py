"""Find a request's model and the engine that serves it — always through the extension manager."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from jan.core import ExtensionNotFoundError, InferenceExtension, ModelExtension
from jan.errors import ModelNotFoundError
from jan.server.errors import APIError
from jan.server.keys import MANAGER

T = TypeVar("T")


def service(request: web.Request, interface: type[T], provides: str, builtin: str) -> T:
    """The enabled extension implementing ``interface`` (503 naming the built-in to enable when none is)."""
    try:
        return request.app[MANAGER].get(interface)
    except ExtensionNotFoundError:
        raise APIError(503, f"No enabled extension {provides} (enable '{builtin}')", type="server_error",
                       code="extension_unavailable") from None


def model_extension(request: web.Request) -> ModelExtension:
    return service(request, ModelExtension, "manages models", "models")


async def model_and_engine(request: web.Request, model_id: str) -> tuple[dict[str, Any], InferenceExtension]:
    try:
        model = await model_extension(request).get_model(model_id)
    except (ModelNotFoundError, KeyError):
        raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found") from None
    engine_name = model.get("engine") or "llama.cpp"
    try:
        engine = request.app[MANAGER].get_inference(engine_name)
    except LookupError:
        raise APIError(400, f"No enabled extension provides the engine '{engine_name}' for model '{model_id}'",
                       param="model", code="engine_unavailable") from None
    return model, engine
