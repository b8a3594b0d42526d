"""Find a request's model and the engine that serves it — always through the extension manager."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jan.core import InferenceExtension, ModelExtension
from jan.errors import ModelNotFoundError
from jan.server.errors import APIError
from jan.server.keys import MANAGER


def model_extension(request: web.Request) -> ModelExtension:
    return request.app[MANAGER].get(ModelExtension)


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
