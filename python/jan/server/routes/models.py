"""``/v1/models``: the models in the data folder with their engine state; start and stop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from jan.core import LocalInferenceExtension
from jan.core.engine_answers import model_state
from jan.errors import ModelNotFoundError
from jan.server.dialects import ollama_models
from jan.server.disconnect import unless_stopping
from jan.server.jsonio import json_response
from jan.server.keys import MANAGER, SERVICES
from jan.server.resolve import model_and_engine, model_extension
from jan.server.validation import no_fields
from jan.server import route_index
from jan.server.dialect_errors import from_anthropic_sdk
from jan.services.abilities import model_abilities
from jan.services.models import unload_now
from jan.store._util import as_seconds

routes = web.RouteTableDef()


async def with_state(request: web.Request, model: dict[str, Any]) -> dict[str, Any]:
    """A model.json as the API shows it: OpenAI's fields plus Jan's, plus the engine's view.
    Secrets (a remote model's API key) never leave the server."""
    out = dict(model)
    out.pop("mmproj_named", None)  # (the load check's note of a projector name that is no file: no API field)
    settings = out.get("settings")
    if isinstance(settings, dict) and settings.get("api_key"):
        out["settings"] = {**settings, "api_key": "********"}
    out.setdefault("object", "model")
    out.setdefault("owned_by", (model.get("metadata") or {}).get("author") or "jan")
    out["created"] = created_seconds(model)
    facts = await model_facts(request, model)
    status = facts.status
    out["state"] = status.get("status")
    if status.get("error"):
        out["error"] = status["error"]
    if status.get("chat_template"):
        # {"name", "fallback"}: "fallback" says why a stand-in (ChatML) is used instead of the model's own
        out["chat_template_in_use"] = status["chat_template"]
    if status.get("draft_model"):  # the GGUF drafting for it (speculative decoding)
        out["draft_model_in_use"] = status["draft_model"]
    if status.get("draft_model_skipped"):  # why the server's draft model (--model-draft) does not draft for it
        out["draft_model_skipped"] = status["draft_model_skipped"]
    if status.get("lora"):  # its LoRA adapters (id, path, scale: the default now), as GET /lora-adapters lists them
        out["lora_adapters"] = status["lora"]
    if status.get("lora_skipped"):  # why the server's LoRA adapters (--lora) are not loaded with it
        out["lora_skipped"] = status["lora_skipped"]
    out["capabilities"] = facts.capabilities
    # llama-server's: the other names requests may give the model (jan serve --alias) and its labels (--tags, else
    # the model.json's metadata.tags), lists always, empty where it has none
    aliases, tags = request.app[SERVICES].models.names_of(model["id"])
    stored = (model.get("metadata") or {}).get("tags") if isinstance(model.get("metadata"), dict) else None
    out["aliases"] = aliases
    out["tags"] = tags or ([t for t in stored if isinstance(t, str)] if isinstance(stored, list) else [])
    # llama-server's: its clients read the model's sizes here; null (as it tells a model still loading) for a model
    # without a GGUF to read them from (a remote one, a download not finished)
    out["meta"] = facts.meta
    if facts.weights_missing:  # (said only then: a client that never looks sees the model.json's fields as before)
        out["weights_missing"] = True
    return out


def created_seconds(model: dict[str, Any]) -> int:
    """The model.json's ``created`` in seconds (Jan writes milliseconds), 0 for a value that is no time (a
    hand-edited ``"created": "yesterday"``): one model.json's nonsense must not fail the list of every model."""
    try:
        seconds = as_seconds(model.get("created"))
    except (OverflowError, ValueError):  # inf, nan
        return 0
    return seconds if seconds is not None and seconds > 0 else 0


@dataclass(frozen=True)
class ModelFacts:
    """What the dialects' model lists say of a model besides its model.json: the engine's ``status``, its
    ``capabilities`` (the model service's one answer, as ``/api/show`` gives them) and the tokens its
    ``context_window`` holds (loaded: its n_ctx; else the GGUF's n_ctx_train; None: unknown); llama-server's
    ``meta`` of it (vocabulary, sizes, weights' type; None: no GGUF, a remote model)."""

    status: dict[str, Any]
    capabilities: list[str]
    context_window: int | None
    meta: dict[str, Any] | None = None
    #: a local engine's model whose weights file is not on disk (deleted, moved, a link to a file that is gone): the
    #: CLI's list says so, from a server as from the data folder
    weights_missing: bool = False


async def model_facts(request: web.Request, model: dict[str, Any]) -> ModelFacts:
    try:
        engine = request.app[MANAGER].get_inference(model.get("engine") or "llama.cpp")
        status = await model_state(engine, model["id"])  # (an engine that cannot tell fails no listing)
    except LookupError:
        engine, status = None, {"status": "unavailable"}
    path, abilities, missing = model.get("file_path"), None, False
    if isinstance(engine, LocalInferenceExtension):  # (a remote model has no GGUF to read)
        with contextlib.suppress(Exception):  # a model not downloaded (yet): listed without the file's facts
            files = await request.app[SERVICES].models.with_weights(model)  # (its projector too)
            path = files.get("file_path")
            missing = not path
            abilities = await asyncio.to_thread(model_abilities, files) if path else None  # (kept per file version)
    # on a worker: the header is read once per file version, and the capabilities read the template's format,
    # whose first detection renders the template (slow work, never on the event loop)
    return await asyncio.to_thread(_facts, model, path, status, abilities, missing)


def _facts(model: dict[str, Any], path: Any, status: dict[str, Any], abilities: Any, missing: bool) -> ModelFacts:
    gguf = ollama_models.gguf_details(path)
    return ModelFacts(status, ollama_models.capabilities(model, gguf, status, abilities),
                      ollama_models.context_window(gguf, status), ollama_models.llama_meta(gguf, status), missing)


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
    return json_response({"object": "list", "data": [await with_state(request, m) for m in models],
                          "problems": problems("models/") if callable(problems) else [],
                          # folders a killed pull or import left without a model.json (a resumable .part):
                          # the disk they take, and the id DELETE /v1/models/{id} removes them by
                          "leftovers": await request.app[SERVICES].models.leftovers()})


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
