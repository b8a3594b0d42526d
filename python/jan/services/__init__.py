"""Services: the one typed path from a front end's request to the engines and back.

Front ends (HTTP dialects in :mod:`jan.server`, the CLI, Python callers) build the typed
requests of :mod:`jan.services.types` and call these services; nothing here imports a web
framework. Build them all with ``Services.from_manager(manager)``.

Names are imported lazily so that ``jan.services.types`` (which ``jan.core``'s interfaces
name in annotations) never drags the services in.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChatService": "jan.services.chat",
    "ChatAggregator": "jan.services.chat",
    "CompletionAggregator": "jan.services.completions",
    "CompletionService": "jan.services.completions",
    "EmbeddingService": "jan.services.embeddings",
    "ModelService": "jan.services.models",
    "Target": "jan.services.models",
    "Services": "jan.services.container",
    "open_services": "jan.services.container",
    "Run": "jan.services.runs",
    "RunRequest": "jan.services.runs",
    "RunService": "jan.services.runs",
    "DeltaStream": "jan.services.streams",
    "RequestError": "jan.services.errors",
    "ServiceUnavailableError": "jan.services.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jan.services' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
