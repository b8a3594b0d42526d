"""``/v1/models``: the models in the data folder with their engine state; start and stop."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jan.errors import ModelNotFoundError
from jan.server.disconnect import unless_stopping
from jan.server.jsonio import json_response, json_response_built
from jan.server.keys import MANAGER, SERVICES
from jan.server.resolve import model_and_engine, model_extension
from jan.server.validation import no_fields
from jan.server import route_index
from jan.server.dialect_errors import from_anthropic_sdk
from jan.services.models import unload_now
from jan.server.model_view import ModelFacts, api_model, model_facts as facts_of

routes = web.RouteTableDef()

#: About how many JSON values one model of the list holds (its model.json's settings and parameters, its state):
#: what sizes the list for :func:`json_response_built`.
MODEL_VALUES = 64


async def with_state(request: web.Request, model: dict[str, Any]) -> dict[str, Any]:
    """:func:`jan.server.model_view.api_model` of this server's engines and services."""
    return await api_model(request.app[MANAGER], request.app[SERVICES], model)


async def model_facts(request: web.Request, model: dict[str, Any]) -> ModelFacts:
    """:func:`jan.server.model_view.model_facts` of this server's engines and services."""
    return await facts_of(request.app[MANAGER], request.app[SERVICES], model)


@routes.get("/v1/models")
@routes.get("/models")  # as llama-server serves it
async def list_models(request: web.Request) -> web.Response:
    """Models in the data folder (model.json fields) with their engine state; ``problems`` lists the damaged
    model.json files set aside (a model missing from ``data`` for that reason is named there, as
    ``/v1/threads`` does for threads). Anthropic's SDK gets its own list (``routes/anthropic.py``)."""
    if from_anthropic_sdk(request.headers) and request.path == "/v1/models":
        anthropic = await route_index.load("anthropic")  # (on first use, off the loop: issue 16)
        return await anthropic.list_models(request)
    extension = model_extension(request)
    models = await extension.list_models()
    problems = getattr(extension, "problems", None)
    data = [await with_state(request, m) for m in models]
    listed = {"object": "list", "data": data, "problems": problems("models/") if callable(problems) else [],
              # folders a killed pull or import left without a model.json (a resumable .part):
              # the disk they take, and the id DELETE /v1/models/{id} removes them by
              "leftovers": await request.app[SERVICES].models.leftovers()}
    # (a data folder of thousands of models is written off the event loop)
    return await json_response_built(lambda: listed, values=len(data) * MODEL_VALUES)


@routes.get("/v1/models/{model_id:.+}")
async def get_model(request: web.Request) -> web.Response:
    """One model with its engine state; Anthropic's ``ModelInfo`` for Anthropic's SDK."""
    if from_anthropic_sdk(request.headers):
        anthropic = await route_index.load("anthropic")  # (on first use, off the loop: issue 16)
        return await anthropic.get_model(request)
    model, _ = await model_and_engine(request, request.match_info["model_id"])
    return json_response(await with_state(request, model))


@routes.post("/v1/models/{model_id:.+}/start")
async def start_model(request: web.Request) -> web.Response:
    """Load a model in its engine."""
    model, engine = await model_and_engine(request, request.match_info["model_id"])
    await no_fields(request, f" (a model's load settings are its model.json's: PATCH /v1/models/{model['id']} with "
                             "{\"settings\": {...}} before it starts)")
    await unless_stopping(request, engine.load_model(model))
    return json_response(await with_state(request, model))


@routes.post("/v1/models/{model_id:.+}/stop")
async def stop_model(request: web.Request) -> web.Response:
    """Unload a model now: requests running on it end as ``cancelled`` (an admin's stop; Ollama's
    ``keep_alive: 0`` instead waits for them). A load in progress is waited for, then undone, so the
    answer's ``state`` is the final one (``unloaded``)."""
    model_id = request.match_info["model_id"]
    try:
        model, engine = await model_and_engine(request, model_id)
    except ModelNotFoundError:  # its model.json damaged or removed while it is loaded: the loaded copy still stops
        await no_fields(request)
        if await request.app[SERVICES].models.unload_unlisted(model_id):
            return json_response({"id": model_id, "object": "model", "state": "unloaded"})
        raise
    await no_fields(request)
    await unload_now(engine, model["id"])
    return json_response(await with_state(request, model))
