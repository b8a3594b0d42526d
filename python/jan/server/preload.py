"""``jan serve --model X``: X is a model id in the data folder or a path to a GGUF file."""

from __future__ import annotations

import asyncio
import logging
import os

from jan.core import ExtensionManager, ModelExtension
from jan.core.guarded import get_guarded
from jan.errors import ModelLoadError, ModelNotFoundError
from jan.local_files import meant_file, not_a_regular_file
from jan.services.models import ModelService, closest_model_id
from jan.store import AlreadyExistsError, slugify_id

log = logging.getLogger("jan.server")


def _looks_like_path(spec: str) -> bool:
    """A ``--model`` that names a file rather than an id (what ``jan run`` takes for a path, too)."""
    return spec.lower().endswith(".gguf") or os.sep in spec or "/" in spec or spec.startswith(("~", "."))


async def resolve_model(models: ModelExtension, spec: str) -> dict:
    """The model.json for a model id, or for a GGUF path (imported by reference on first use).

    A spec that is a path (or looks like one) is told as a file: "no such file", "is a directory", or why
    llama.cpp could not load it; never as an invalid model id."""
    expanded = os.path.expanduser(spec)
    if os.path.isfile(expanded):
        path = os.path.abspath(expanded)
        listed = await models.list_models()
        for model in listed:
            settings = model.get("settings") or {}
            if settings.get("llama_model_path") == path:
                return model
        # `jan models import FILE` (a symlink by default) then `jan serve -m FILE`, as the README shows: the model
        # whose weights are this very file (linked, or the path spelled another way) is that model, not a conflict
        find = getattr(models, "model_file", None)
        for model in listed if find is not None else ():
            if _same_file(await find(model["id"]), path):
                return model
        try:
            return await models.import_model(path, mode="reference")
        except AlreadyExistsError as exc:
            # the id the file's name gives is a model of another file (one imported as a copy, one /api/create
            # made): said with what to do, not as a bare "already exists" a first start cannot act on
            model_id = getattr(exc, "existing", None) or getattr(exc, "id", None) or slugify_id(
                os.path.splitext(os.path.basename(path))[0])
            damaged = await _damaged(models, model_id)
            if damaged:  # not "another file": that model's model.json cannot be read, so which file is unknown
                raise ModelLoadError(f"{spec}: {damaged} (`jan models rm {model_id}` removes that model), or import "
                                     f"this file under another id first (jan models import {spec} --id NAME)") \
                    from None
            raise ModelLoadError(f"{spec}: the data folder's model '{model_id}' is another file; start that one by "
                                 f"its id (-m {model_id}), or import this file under another id first (jan models "
                                 f"import {spec} --id NAME)") from None
        except ValueError as exc:
            # The model manager names the request field ("path: ..."), which means nothing on a command line.
            message = str(exc)
            message = message[len("path: "):] if message.startswith("path: ") else message
            raise ModelLoadError(message) from None
    kind = not_a_regular_file(expanded)
    if kind is not None:  # a folder, /dev/null, a FIFO: there, but no model file ("no such file" would be wrong)
        raise ModelNotFoundError(f"{spec} is {kind}, not a GGUF file")
    if _looks_like_path(spec):
        # `-m stories260K.gguf` where no such file is here: most often the model's id with its file's suffix
        # (the path looked for; the file beside it meant, else the model id meant)
        near = await asyncio.to_thread(meant_file, expanded)
        raise ModelNotFoundError(f"no such file: {expanded}" + (f": did you mean {near!r}?" if near else
                                                                 await _guess(models, spec)))
    try:
        return await models.get_model(spec)
    except ModelNotFoundError as exc:
        if getattr(exc, "damaged", None):  # the id is a model, whose model.json is damaged: its words say what to do
            raise ModelNotFoundError(str(exc)) from None
        raise ModelNotFoundError(f"'{spec}' is neither a model id in the data folder nor a GGUF file"
                                 f"{await _guess(models, spec)}") from None


async def _damaged(models: ModelExtension, model_id: str) -> str | None:
    """The store's words for ``model_id`` when its model.json is damaged ("model 'x' is damaged (...): repair or
    remove models/x/model.json"), else None."""
    try:
        await models.get_model(model_id)
    except ModelNotFoundError as exc:
        return str(exc) if getattr(exc, "damaged", None) else None
    except Exception:  # noqa: BLE001 - a hint only
        return None
    return None


def _same_file(candidate: str | None, path: str) -> bool:
    try:
        return candidate is not None and os.path.samefile(candidate, path)
    except OSError:  # a model whose file went missing meanwhile: not this one
        return False


async def _guess(models: ModelExtension, spec: str) -> str:
    """``: did you mean 'ID'?`` where a model of the data folder is the one ``spec`` likely meant (the rule every
    request's and command's "not found" follows, :func:`~jan.services.models.closest_model_id`), else ``""``."""
    try:
        meant = closest_model_id(spec, [m.get("id") for m in await models.list_models()])
    except Exception:  # noqa: BLE001 - a hint only: none where the list cannot be read
        return ""
    return f": did you mean {meant!r}? (model ids are exact)" if meant else ""


async def preload_models(manager: ExtensionManager, specs: list[str]) -> list[dict]:
    if not specs:
        return []
    # jan does not wait for slow extensions at start; models asked for on the command line wait for theirs
    await manager.settle(names=(*manager.loading_providers("model"), *manager.loading_providers("inference")))
    models = get_guarded(manager, ModelExtension)  # a third party's failure named, as a request's is
    resolver = ModelService(manager)
    loaded = []
    resident = {}  # model id -> its engine, for those the engine lists as loaded once their load ended
    for spec in specs:
        target = await resolver.resolve((await resolve_model(models, spec))["id"])
        await target.engine.load_model(target.model)
        model = target.model
        log.info("model %s loaded", model["id"])
        loaded.append(model)
        if model["id"] in await target.engine.loaded_models():
            resident[model["id"]] = target.engine
    # an engine that keeps fewer models loaded than were given (its max_loaded_models setting; `jan serve`
    # refuses more --model than its own --max-loaded-models) unloaded the first ones to load the later ones
    gone = [mid for mid, engine in resident.items() if mid not in await engine.loaded_models()]
    if gone:
        log.warning("model(s) %s unloaded again at start to make room for the models given after them (more "
                    "models given than may stay loaded at once); each loads again on its first request",
                    ", ".join(gone))
    return loaded
