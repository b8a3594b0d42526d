"""The files a local model.json names beside its weights — ``settings.draft_model`` (speculative decoding's
draft) and ``settings.mmproj`` (the multimodal projector) — judged before they are stored and before a load
reads the main weights: a missing or wrong file fails every request, and only after the weights were read."""

from __future__ import annotations

import os

from jan.errors import ModelSettingError
from jan.extensions.models.gguf_info import PROJECTOR_ARCHITECTURE, check_projector, gguf_architecture, gguf_scalars
from jan.gguf_extent import cut_short
from jan.local_files import not_a_regular_file
from jan.store.models import check_gguf

#: model.json ``settings`` that name a companion file.
COMPANIONS = ("draft_model", "mmproj")


#: What each companion file is called in its errors (as jan.Model's own errors call it).
_WHAT = {"draft_model": "draft model file", "mmproj": "projector file"}


def no_file(path: str, what: str) -> str:
    """Why no file is at ``path``: a directory (or another thing that is no regular file) said as such, as the
    library says it ("draft model file '/m' is a directory, not a GGUF file"), else that nothing is there."""
    kind = not_a_regular_file(path)
    return f"{what} '{path}' is {kind}, not a GGUF file" if kind else f"no file at '{path}'"


def short_file(path: str, what: str) -> str | None:
    """Why the GGUF at ``path`` cannot load whole (:func:`jan.gguf_extent.cut_short`: the bytes its tensor data
    lacks, a partial download), or None; one that cannot be read is said so."""
    try:
        return cut_short(path, what)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


def companion_problem(key: str, path: str) -> str | None:
    """Why the file at ``path`` cannot be the model's ``key`` (one of :data:`COMPANIONS`), or None when it can.
    Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return no_file(path, _WHAT[key])
    if key == "mmproj":
        try:
            check_projector(path)
        except ValueError as exc:
            return str(exc)
        return short_file(path, _WHAT[key])
    return _model_problem(path, "not a model that can draft", _WHAT[key]) or short_file(path, _WHAT[key])


def lora_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be a LoRA adapter (missing, no GGUF, or a GGUF whose ``general.type`` is not
    "adapter": a model's weights named by mistake), or None when it may be. Whether it fits the model is the load's
    to judge (llama.cpp compares its tensors). Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return no_file(path, "LoRA adapter file")
    try:
        check_gguf(path, "LoRA adapter file")
        kind = gguf_scalars(path, {"general.type"}).get("general.type")
    except (OSError, ValueError) as exc:
        return str(exc)
    if kind != "adapter":
        said = f'"{kind}"' if isinstance(kind, str) else "not given"
        return f"'{path}' is not a LoRA adapter GGUF (its general.type is {said}, not \"adapter\"; llama.cpp's " \
               "convert_lora_to_gguf.py makes one)"
    return short_file(path, "LoRA adapter file")


def weights_problem(path: str) -> str | None:
    """Why the file at ``path`` (an absolute ``settings.llama_model_path``) cannot be a model's weights, or None.
    Blocking: reads the file's header."""
    if not os.path.isfile(path):
        return no_file(path, "model file")
    return (_model_problem(path, "not a model (set it as settings.mmproj)", "model file")
            or short_file(path, "model file"))


def _model_problem(path: str, as_projector: str, what: str) -> str | None:
    """Why the file at ``path`` is no GGUF model (a projector: ``as_projector`` says what it is not; one cut short:
    ``what`` names it), or None."""
    try:
        check_gguf(path, what)
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


def in_model_json(model: dict) -> str:
    """What an error about a model.json's field adds to say whose file it is (a hand edit is found by it)."""
    return f" (in the model.json of model '{model.get('id')}')"


def check_companions(model: dict) -> None:
    """:class:`~jan.errors.ModelSettingError` naming the setting (``settings.draft_model``) and whose model.json
    it is when a companion file the model.json names, as the model service resolved it (``draft_model_path``,
    ``mmproj_path``), is missing, a directory or no such GGUF. Blocking; called before a load, so a bad one costs
    no read of the weights."""
    settings = model.get("settings") or {}
    for key, resolved in (("draft_model", "draft_model_path"), ("mmproj", "mmproj_path")):
        name = settings.get(key) if isinstance(settings, dict) else None
        if not isinstance(name, str) or not name:
            continue
        # (the store resolves no projector that is no file: an absolute name is still where to look, and a relative
        # one that names something in the model's folder, a folder, it gives as ``mmproj_named``)
        path = model.get(resolved) or (name if os.path.isabs(name) else None) or \
            (model.get("mmproj_named") if key == "mmproj" else None)
        if path:
            why = companion_problem(key, str(path))
        elif climbs_out(name):  # (the store resolves none there: said as draft_model's and lora's are)
            why = f"'{name}' climbs out of the model folder"
        else:
            why = f"no file at '{name}', nor in the model's folder"
        if why is not None:
            raise ModelSettingError(f"settings.{key}: {why}{in_model_json(model)}", param=f"settings.{key}",
                                    code="invalid_value")
