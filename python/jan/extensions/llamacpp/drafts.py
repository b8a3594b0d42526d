"""Which draft model a local model loads with: its own (model.json ``settings.draft_model``), else the server's
(``jan serve --model-draft``) — a default, which a model opts out of with ``settings.draft_model`` empty or null,
or ``settings.speculative`` "none"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jan.engine.params import speculative_mode


def opts_out(settings: Mapping[str, Any]) -> bool:
    """Whether a model.json's ``settings`` refuse the server's draft model."""
    if "draft_model" in settings and not settings["draft_model"]:
        return True  # "" or null: no draft model, not even the server's
    try:
        return settings.get("speculative") is not None and speculative_mode(settings["speculative"]) == "none"
    except ValueError:
        return False  # a bad value is the load's own error, naming it


def without_draft(opts: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``opts`` without the server's draft model, and without the server's ``speculative`` "draft" that would need
    it (a model.json's own ``speculative`` stays: it is the model's to get right)."""
    out = {k: v for k, v in opts.items() if k != "draft_model"}
    if settings.get("speculative") is None and isinstance(out.get("speculative"), str) \
            and out["speculative"].lower() == "draft":
        del out["speculative"]
    return out


def lora_options(model: Mapping[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``opts`` with the LoRA adapters ``model`` loads with, as :func:`draft_options` picks a draft model: the
    model.json's own ``settings.lora`` (paths resolved by the model service into ``lora_paths``; an empty list or
    null: none, not even the server's), else the server's (``jan serve --lora``); and whether they are the
    server's (a default, dropped for a model its adapters do not fit)."""
    settings = model.get("settings") or {}
    settings = settings if isinstance(settings, Mapping) else {}
    if "lora" in settings:
        own = model.get("lora_paths") or settings["lora"]
        out = {k: v for k, v in opts.items() if k != "lora"}
        if own:
            out["lora"] = own
        return out, False
    return opts, bool(opts.get("lora"))


def draft_options(model: Mapping[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The load options ``opts`` (the engine's layers: model.json over the server's flags) with the draft model
    ``model`` loads with, and whether that is the server's (a default to drop where it cannot draft)."""
    settings = model.get("settings") or {}
    settings = settings if isinstance(settings, Mapping) else {}
    if model.get("draft_model_path"):  # the model's own (resolved by the model service) wins
        return {**opts, "draft_model": str(model["draft_model_path"])}, False
    if "draft_model" not in opts:
        return opts, False
    if opts_out(settings):
        return without_draft(opts, settings), False
    return opts, True
