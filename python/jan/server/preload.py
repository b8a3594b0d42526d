"""``jan serve --model X``: X is a model id in the data folder or a path to a GGUF file."""

from __future__ import annotations

import logging
import os

from jan.core import ExtensionManager, ModelExtension
from jan.errors import ModelNotFoundError
from jan.services.models import ModelService

log = logging.getLogger("jan.server")


async def resolve_model(models: ModelExtension, spec: str) -> dict:
    """The model.json for a model id, or for a GGUF path (imported by reference on first use)."""
    if os.path.isfile(os.path.expanduser(spec)):
        path = os.path.abspath(os.path.expanduser(spec))
        for model in await models.list_models():
            settings = model.get("settings") or {}
            if settings.get("llama_model_path") == path:
                return model
        return await models.import_model(path, mode="reference")
    try:
        return await models.get_model(spec)
    except ModelNotFoundError:
        raise ModelNotFoundError(f"'{spec}' is neither a model id in the data folder nor a GGUF file") from None


async def preload_models(manager: ExtensionManager, specs: list[str]) -> list[dict]:
    if not specs:
        return []
    models = manager.get(ModelExtension)
    resolver = ModelService(manager)
    loaded = []
    for spec in specs:
        target = await resolver.resolve((await resolve_model(models, spec))["id"])
        await target.engine.load_model(target.model)
        model = target.model
        log.info("model %s loaded", model["id"])
        loaded.append(model)
    return loaded
