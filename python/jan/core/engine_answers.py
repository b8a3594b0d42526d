"""An engine's answers about its models (``loaded_models``, ``model_status``) as the listings read them: bounded,
checked, and a failure costing only that engine.

``GET /v1/models``, ``/health``, Ollama's ``/api/ps`` and ``GET /v1/system`` ask every engine in turn. One third-party
engine whose ``model_status`` raised, hung or answered ``None`` failed them all (a 500 for every model of every
engine, ``/health`` included, which then blamed no one or the ``monitoring`` extension); now its models read as
``failed`` with the reason, or it lists none, and the log names the engine and its extension.
"""

from __future__ import annotations

import logging
from typing import Any

from .bounded import call_bounded
from .interfaces.inference import ModelState

__all__ = ["STATUS_TIMEOUT", "engine_label", "loaded_ids", "model_state"]

log = logging.getLogger("jan.core.engines")

#: Seconds an engine may take to tell its loaded models or one model's status before a listing goes on without it.
STATUS_TIMEOUT = 10.0


def engine_label(engine: Any) -> str:
    """``the engine 'x' (extension 'y')``: what a message about ``engine`` names (its extension where it has one)."""
    label = f"the engine '{getattr(engine, 'engine_name', None) or type(engine).__name__}'"
    extension = getattr(engine, "name", None)
    return f"{label} (extension '{extension}')" if isinstance(extension, str) and extension else label


async def loaded_ids(engine: Any) -> list[str]:
    """``engine.loaded_models()``; ``[]`` (logged) when it raises, takes past :data:`STATUS_TIMEOUT` or answers
    anything but a list of ids."""
    try:
        ids = await call_bounded(engine.loaded_models, timeout=STATUS_TIMEOUT,
                                 what=f"{engine_label(engine)}'s loaded_models()")
    except Exception as exc:  # noqa: BLE001 - one broken engine must not fail every listing
        log.warning("%s: loaded_models() failed: %s: %s", engine_label(engine), type(exc).__name__, exc)
        return []
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        log.warning("%s: loaded_models() answered %r, not a list of model ids", engine_label(engine), ids)
        return []
    return list(ids)


async def model_state(engine: Any, model_id: str) -> dict[str, Any]:
    """``engine.model_status(model_id)`` as a dict; ``{"id", "status": "failed", "error"}`` (logged) when it raises,
    takes past :data:`STATUS_TIMEOUT` or answers no mapping."""
    try:
        status = await call_bounded(engine.model_status, model_id, timeout=STATUS_TIMEOUT,
                                    what=f"{engine_label(engine)}'s model_status()")
        if not isinstance(status, dict):
            raise TypeError(f"it answered {type(status).__name__}, not a dict")
        return status
    except Exception as exc:  # noqa: BLE001 - one broken engine must not fail every listing
        log.warning("%s: model_status(%r) failed: %s: %s", engine_label(engine), model_id, type(exc).__name__, exc)
        return {"id": model_id, "status": ModelState.FAILED,
                "error": f"{engine_label(engine)} could not tell the model's status ({type(exc).__name__})"}
