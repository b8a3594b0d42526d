"""A model as the API shows it (``GET /v1/models``' items): its model.json with OpenAI's fields and Jan's, plus the
engine's view of it (state, capabilities, llama-server's ``meta``, ...). No web framework here: the routes answer
with it, and the CLI without a server shows the same object from the same services (``jan models list --json``)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from jan.core import LocalInferenceExtension
from jan.core.engine_answers import model_state
from jan.server.dialects import ollama_models
from jan.services.abilities import model_abilities
from jan.store._util import as_seconds


async def api_model(manager: Any, services: Any, model: dict[str, Any]) -> dict[str, Any]:
    """A model.json as the API shows it: OpenAI's fields plus Jan's, plus the engine's view (``manager``: the
    extension manager whose engine is asked; ``services``: :class:`jan.services.Services`, whose model service
    names its aliases and files). Secrets (a remote model's API key) never leave the server."""
    out = dict(model)
    out.pop("mmproj_named", None)  # (the load check's note of a projector name that is no file: no API field)
    settings = out.get("settings")
    if isinstance(settings, dict) and settings.get("api_key"):
        out["settings"] = {**settings, "api_key": "********"}
    out.setdefault("object", "model")
    out.setdefault("owned_by", (model.get("metadata") or {}).get("author") or "jan")
    out["created"] = created_seconds(model)
    facts = await model_facts(manager, services, model)
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
    aliases, tags = services.models.names_of(model["id"])
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


async def model_facts(manager: Any, services: Any, model: dict[str, Any]) -> ModelFacts:
    try:
        engine = manager.get_inference(model.get("engine") or "llama.cpp")
        status = await model_state(engine, model["id"])  # (an engine that cannot tell fails no listing)
    except LookupError:
        engine, status = None, {"status": "unavailable"}
    path, abilities, missing = model.get("file_path"), None, False
    if isinstance(engine, LocalInferenceExtension):  # (a remote model has no GGUF to read)
        with contextlib.suppress(Exception):  # a model not downloaded (yet): listed without the file's facts
            files = await services.models.with_weights(model)  # (its projector too)
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
