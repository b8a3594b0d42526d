"""The files a local model.json names beside its weights — ``settings.draft_model`` (speculative decoding's
draft) and ``settings.mmproj`` (the multimodal projector) — judged before they are stored and before a load
reads the main weights: a missing or wrong file fails every request, and only after the weights were read."""

from __future__ import annotations

import os

from jan.errors import ModelSettingError
from jan.extensions.models.gguf_info import PROJECTOR_ARCHITECTURE, check_projector, gguf_architecture, gguf_scalars
from jan.store.models import check_gguf

#: model.json ``settings`` that name a companion file.
COMPANIONS = ("draft_model", "mmproj")


def companion_problem(key: str, path: str) -> str | None:
    """Why the file at ``path`` cannot be the model's ``key`` (one of :data:`COMPANIONS`), or None when it can.
    Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return f"no file at '{path}'"
    if key == "mmproj":
        try:
            check_projector(path)
        except ValueError as exc:
            return str(exc)
        return None
    return _model_problem(path, "not a model that can draft")


def lora_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be a LoRA adapter (missing, no GGUF, or a GGUF whose ``general.type`` is not
    "adapter": a model's weights named by mistake), or None when it may be. Whether it fits the model is the load's
    to judge (llama.cpp compares its tensors). Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return f"no file at '{path}'"
    try:
        check_gguf(path)
        kind = gguf_scalars(path, {"general.type"}).get("general.type")
    except (OSError, ValueError) as exc:
        return str(exc)
    if kind != "adapter":
        said = f'"{kind}"' if isinstance(kind, str) else "not given"
        return f"'{path}' is not a LoRA adapter GGUF (its general.type is {said}, not \"adapter\"; llama.cpp's " \
               "convert_lora_to_gguf.py makes one)"
    return None


def weights_problem(path: str) -> str | None:
    """Why the file at ``path`` (an absolute ``settings.llama_model_path``) cannot be a model's weights, or None.
    Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return f"no file at '{path}'"
    return _model_problem(path, "not a model (set it as settings.mmproj)")


def _model_problem(path: str, as_projector: str) -> str | None:
    """Why the file at ``path`` is no GGUF model (a projector: ``as_projector`` says what it is not), or None."""
    try:
        check_gguf(path)
        arch = gguf_architecture(path)
    except (OSError, ValueError) as exc:
        return str(exc)
    if arch == PROJECTOR_ARCHITECTURE:
        return f"{path} is a multimodal projector (mmproj), {as_projector}"
    return None


def climbs_out(name: str) -> bool:
    """Whether a relative file name from a model.json leaves the model's folder (``../other/w.gguf``), which the
    store does not follow (:meth:`jan.store.models.ModelStore.model_file`)."""
    norm = os.path.normpath(name)
    return os.path.isabs(norm) or norm == os.pardir or norm.startswith(os.pardir + os.sep)


def check_companions(model: dict) -> None:
    """:class:`~jan.errors.ModelSettingError` naming the setting (``settings.draft_model``) when a companion file
    the model.json names, as the model service resolved it (``draft_model_path``, ``mmproj_path``), is missing or
    no such GGUF. Blocking; called before a load, so a bad one costs no read of the weights."""
    settings = model.get("settings") or {}
    for key, resolved in (("draft_model", "draft_model_path"), ("mmproj", "mmproj_path")):
        name = settings.get(key) if isinstance(settings, dict) else None
        if not isinstance(name, str) or not name:
            continue
        path = model.get(resolved)
        why = companion_problem(key, str(path)) if path else f"no file at '{name}' (nor in the model's folder)"
        if why is not None:
            raise ModelSettingError(f"settings.{key}: {why}", param=f"settings.{key}", code="invalid_value")
