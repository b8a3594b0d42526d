"""What a GGUF file says about itself, for filling in a new model.json."""

from __future__ import annotations

import os
from typing import Any

import jan


def describe_gguf(path: str) -> dict[str, Any]:
    """model.json fields read from the file (vocab-only load: no weights are read)."""
    with jan.Model(path, vocab_only=True) as m:
        meta = m.metadata
        arch = meta.get("general.architecture", "")
        n_ctx_train = int(meta.get(f"{arch}.context_length", "0") or 0)
        embedding = bool(meta.get(f"{arch}.pooling_type")) or "bert" in arch
    # ctx_len is left out on purpose: the engine default (the model's own, capped)
    # or the server's --ctx-size applies until the user sets one for this model.
    settings: dict[str, Any] = {}
    if embedding:
        settings["embedding"] = True
    return {
        "name": meta.get("general.name") or os.path.splitext(os.path.basename(path))[0],
        "settings": settings,
        "metadata": {
            "author": meta.get("general.author") or meta.get("general.organization") or "",
            "tags": [t for t in (arch, "embedding" if embedding else "") if t],
            "size": os.path.getsize(path),
            "architecture": arch,
            "context_length": n_ctx_train,
        },
    }
