"""Model resolution: a request's model id (or none) to its model.json and the engine that serves it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jan.core import ExtensionManager, InferenceExtension, LocalInferenceExtension, ModelExtension, ModelState
from jan.engine.model import check_load_option
from jan.engine.params import sampling_params
from jan.errors import ModelNotFoundError
from jan.services.errors import RequestError, require
from jan.services.types import LoadOptions, SamplingOptions

__all__ = ["ModelService", "Target", "check_parameters", "check_settings", "unload_now"]

#: What :meth:`ModelService.with_weights` adds to a model.json: its weights, projector and draft model files.
_WEIGHT_KEYS = ("file_path", "mmproj_path", "draft_model_path")

DEFAULT_ENGINE = "llama.cpp"


#: model.json ``settings`` a local engine reads as text (file names, templates) besides the load options.
_TEXT_SETTINGS = ("llama_model_path", "mmproj", "draft_model", "chat_template", "prompt_template")


def check_settings(settings: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
    """Check a local model's model.json ``settings`` (only ``keys`` of them when given) as loading the
    model reads them — :meth:`LoadOptions.from_model_settings`, then the engine's own
    :func:`jan.engine.model.check_load_option` — so a value that would fail every load of the model is
    refused before it is stored. :class:`RequestError` naming the field (``settings.ctx_len``)."""
    for key in settings if keys is None else keys:
        value = settings.get(key)
        if value is None:
            continue  # not set (a PATCH's null removes the key)
        param = f"settings.{key}"
        if key in _TEXT_SETTINGS:
            if not isinstance(value, str):
                raise RequestError(f"{param}: expected a string, got {value!r}", param=param, code="invalid_value")
            continue
        try:
            for name, option in LoadOptions.from_model_settings({key: value}).given().items():
                check_load_option(name, option)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"{param}: {_detail(exc)}", param=param, code="invalid_value") from None


def check_parameters(parameters: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
    """Check model.json ``parameters`` (only ``keys`` of them when given) as every request reads them —
    :meth:`SamplingOptions.from_mapping`, then the engine's :func:`jan.engine.params.sampling_params` —
    so a value that would fail every request to the model is refused before it is stored.
    :class:`RequestError` naming the field (``parameters.temperature``). Keys that are no sampling
    option (``stream``, ...) are not read by requests and pass."""
    for key in parameters if keys is None else keys:
        value = parameters.get(key)
        if value is None:
            continue
        param = f"parameters.{key}"
        try:
            sampling_params(**SamplingOptions.from_mapping({key: value}).given())
        except (TypeError, ValueError) as exc:
            raise RequestError(f"{param}: {_detail(exc)}", param=param, code="invalid_value") from None


def _detail(exc: BaseException) -> str:
    """The engine's message without its own field name (the caller names the model.json field)."""
    text = str(exc) or type(exc).__name__
    head, sep, rest = text.partition(": ")
    return rest if sep and " " not in head else text


async def unload_now(engine: InferenceExtension, model_id: str) -> bool:
    """Unload ``model_id`` from ``engine`` if it is loaded or being loaded (a load in progress is
    waited for, then undone: the engine's ``unload_model``); requests running on it end as cancelled.
    True when it was unloaded. For the admin's stop, delete and the like; a client's "done with it"
    (Ollama's ``keep_alive: 0``) waits for running requests instead (``unload_when_idle``)."""
    if model_id not in await engine.loaded_models():
        status = await engine.model_status(model_id)
        if status.get("status") != ModelState.LOADING:
            return False
    try:
        await engine.unload_model(model_id)
    except ModelNotFoundError:  # the load failed, or another stop came first
        return False
    return True


@dataclass(frozen=True)
class Target:
    """A resolved model: its model.json dict (with ``file_path`` for local weights) and its engine."""

    model: dict[str, Any]
    engine: InferenceExtension

    @property
    def id(self) -> str:
        return self.model["id"]


class ModelService:
    """Finds models and their engines through the extension manager — the one model→engine rule."""

    def __init__(self, manager: ExtensionManager, *, default_model: str | None = None):
        self.manager = manager
        self._transient: dict[str, dict[str, Any]] = {}
        #: The model of requests that name none (``jan serve --default-model``); else the only loaded one.
        self.default_model = default_model

    def add_transient(self, model: dict[str, Any]) -> None:
        """Make ``model`` (a model.json dict) known to this process only, in front of the data
        folder's: a .gguf file given by path (with ``file_path``), or a model.json with settings
        overridden for this process (the CLI's ``--ctx-size``)."""
        self._transient[model["id"]] = dict(model)

    def model_extension(self) -> ModelExtension:
        """The enabled model manager; :class:`ServiceUnavailableError` when none is."""
        return require(self.manager, ModelExtension, "manages models", "models")

    def engine_for(self, model: dict[str, Any]) -> InferenceExtension:
        """The engine named by ``model["engine"]`` (llama.cpp when unset); :class:`RequestError` when
        no enabled extension provides it."""
        name = model.get("engine") or DEFAULT_ENGINE
        try:
            return self.manager.get_inference(name)
        except LookupError:
            raise RequestError(f"No enabled extension provides the engine '{name}' for model '{model['id']}'",
                               param="model", code="engine_unavailable") from None

    def check_model(self, model: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
        """Check a model.json before it is stored, as the request path will read it: its ``engine``
        must be one an enabled extension provides, its ``parameters`` and (for a local engine) its
        ``settings`` must be values every request can use. ``changed``: the top-level fields a PATCH
        sets, with ``settings.KEY``/``parameters.KEY`` for merged keys (None: check everything).
        :class:`RequestError` naming the field."""
        changed = None if changed is None else set(changed)
        settings = model.get("settings") or {}
        parameters = model.get("parameters") or {}
        engine_changed = changed is None or "engine" in changed
        engine: InferenceExtension | None = None
        try:
            engine = self.engine_for(dict(model))
        except RequestError as exc:
            if engine_changed:
                raise RequestError(str(exc).replace(f" for model '{model.get('id')}'", ""), param="engine",
                                   code="engine_unavailable") from None
            # else the engine it had stays; its extension is off now, which the user may change later

        def keys(field: str) -> Iterable[str] | None:
            if engine_changed:
                return None  # a new model or another engine: every value is read anew
            return [k.split(".", 1)[1] for k in changed if k.startswith(field + ".")]

        if not isinstance(parameters, Mapping) or not isinstance(settings, Mapping):
            return  # not objects: the store refuses them with its own message
        check_parameters(parameters, keys("parameters"))
        local = isinstance(engine, LocalInferenceExtension) if engine is not None \
            else (model.get("engine") or DEFAULT_ENGINE) == DEFAULT_ENGINE
        if local:
            check_settings(settings, keys("settings"))

    async def get(self, model_id: str) -> dict[str, Any]:
        """The model.json of ``model_id``; ``ModelNotFoundError`` when there is none."""
        if model_id in self._transient:
            return dict(self._transient[model_id])
        try:
            return await self.model_extension().get_model(model_id)
        except (ModelNotFoundError, KeyError):
            raise ModelNotFoundError(f"The model '{model_id}' does not exist") from None

    async def resolve(self, model_id: str | None) -> Target:
        """The model (``None``: the default model if one is configured, else the only loaded model) and its engine.

        Raises ``ModelNotFoundError``, :class:`RequestError` (no model given and not exactly one
        loaded; engine not enabled) or :class:`ServiceUnavailableError`.
        """
        if not model_id:
            model_id = await self.default_model_id()
        whole = getattr(self.model_extension(), "model_with_weights", None)
        if whole is not None and model_id not in self._transient:
            try:  # the model.json and its files from one read, the path of every request
                model = await whole(model_id)
            except (ModelNotFoundError, KeyError):
                raise ModelNotFoundError(f"The model '{model_id}' does not exist") from None
            return Target(model, self.engine_for(model))
        model = await self.get(model_id)
        engine = self.engine_for(model)
        if isinstance(engine, LocalInferenceExtension):
            model = await self.with_weights(model)
        return Target(model, engine)

    async def with_weights(self, model: dict[str, Any]) -> dict[str, Any]:
        """The model.json with ``file_path``: its weights as the model manager resolves them (resolved
        once, here, so a local engine never looks into the data folder itself), ``mmproj_path``
        for a model with a multimodal projector and ``draft_model_path`` for one with a draft model."""
        if model.get("file_path"):
            return model
        whole = getattr(self.model_extension(), "model_with_weights", None)
        if whole is not None and model.get("id") not in self._transient:
            try:  # one read of the model.json for all three files, not one each
                resolved = await whole(model["id"])
            except (ModelNotFoundError, KeyError):
                pass  # not in the data folder: the per-file lookups below say what they find
            else:
                return {**model, **{key: resolved[key] for key in _WEIGHT_KEYS if resolved.get(key)}}
        find = getattr(self.model_extension(), "model_file", None)
        path = await find(model["id"]) if find is not None else None
        find_mmproj = getattr(self.model_extension(), "mmproj_file", None)
        mmproj = await find_mmproj(model["id"]) if find_mmproj is not None else None
        if mmproj:
            model = {**model, "mmproj_path": str(mmproj)}
        find_draft = getattr(self.model_extension(), "draft_model_file", None)
        draft = await find_draft(model["id"]) if find_draft is not None else None
        if draft:
            model = {**model, "draft_model_path": str(draft)}
        return {**model, "file_path": str(path)} if path else model

    async def loaded_model_ids(self) -> list[str]:
        """Every engine's loaded models (an engine that fails to answer counts as none)."""
        ids: list[str] = []
        for engine in self.manager.engines().values():
            with contextlib.suppress(Exception):
                ids += [m for m in await engine.loaded_models() if m not in ids]
        return ids

    async def default_model_id(self) -> str:
        """The one rule for a request that names no model: the configured default, else the only loaded model."""
        if self.default_model:
            return self.default_model
        loaded = await self.loaded_model_ids()
        if len(loaded) == 1:
            return loaded[0]
        detail = "none is loaded" if not loaded else f"{len(loaded)} are loaded: {', '.join(sorted(loaded))}"
        raise RequestError("Name a model: 'model' may be left out only when exactly one model is loaded or a "
                           f"default model is configured ({detail})", param="model", code="model_required")
