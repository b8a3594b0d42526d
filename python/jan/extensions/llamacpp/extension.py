"""The built-in local inference engine: jan's native llama.cpp engine behind the InferenceExtension interface."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

import jan
from jan.errors import ModelClosedError
from jan.core import (
    LocalInferenceExtension,
    LocalModel,
    ModelFailed,
    ModelInit,
    ModelReady,
    ModelState,
    ModelStopped,
)
from jan.engine.kv_cache import is_embedding_metadata
from jan.engine.model import LOAD_RANGES, unmet_prerequisite
from jan.engine.params import SPECULATIVE_OPTIONS
from jan.engine.registry import Turn
from jan.core.interfaces.inference import Claim
from jan.core.locks import KeyedLocks
from jan.extensions._builtin import BuiltinExtension
from jan.file_stamps import file_version
from jan.errors import (BadRequestError, LoraAdapterError, ModelFileError, ModelNotFoundError, ModelSettingError,
                        ServerDefault)
from jan.extensions.llamacpp.drafts import draft_options, lora_options, without_draft
from jan.services.companions import check_companions, in_model_json
from jan.services.errors import RequestError
from jan.services.models import check_model_kind, check_prerequisites, check_settings, gguf_header, model_json_typos
from jan.services.types import LOAD_DEFAULTS, LoadOptions, resolve_load
from jan.services.worker_pool import on_own_thread, undone_if_abandoned
from jan.templates import TemplateError, resolve_template

log = logging.getLogger("jan.llamacpp")
T = TypeVar("T")
E = TypeVar("E", bound=Exception)

#: Seconds the extension's stop waits for loads still on their threads (within the manager's 15 s per on_unload).
LOAD_STOP_WAIT_S = 10.0


def _all_set(events: list[threading.Event], timeout: float) -> bool:
    """Whether every one of ``events`` is set within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    return all(event.wait(max(0.0, deadline - time.monotonic())) for event in events)


#: Entries each per-model note table keeps (:func:`_note`): a failed load's error, why a draft or the server's LoRA
#: adapters were left out — more than the models any data folder holds, so only ids long gone are dropped.
_NOTES_KEPT = 256
K = TypeVar("K")


def _note(table: dict[K, str], key: K, value: str) -> str:
    """Note ``value`` under ``key`` as the newest of ``table`` (insertion order), dropping the oldest past
    :data:`_NOTES_KEPT`; returns ``value``. The tables outlive their models (a deleted model's id is never asked
    for again), so without a bound each created-and-deleted model that failed grew the server by one entry."""
    table.pop(key, None)
    table[key] = value
    while len(table) > _NOTES_KEPT:
        del table[next(iter(table))]
    return value


#: Tries of a tokenize (or detokenize) whose model was closed before it held it (:meth:`LlamaCppExtension._held`).
HELD_ATTEMPTS = 3


class LlamaCppSettings(BaseModel):
    """Load options for every local model (a model.json's settings and ``jan serve`` flags win);
    the defaults are jan's one table, :data:`jan.services.types.LOAD_DEFAULTS`."""

    # the bounds jan.Model and model.json take (llama.cpp's 256 sequences), not a tighter cap of the CLI's own
    n_parallel: int = Field(LOAD_DEFAULTS.n_parallel, **LOAD_RANGES["n_parallel"].field(), description="Requests each model serves at once (slots)")
    n_ctx: int | None = Field(None, ge=64, description="Context tokens per request; default: the model's, up to 4096")
    n_threads: int | None = Field(None, ge=1, le=LOAD_RANGES["n_threads"].le,
                                  description="Generation threads; default: about the physical cores (at most 512)")
    adaptive_threads: Literal["exact", "always", "off"] = Field(
        LOAD_DEFAULTS.adaptive_threads,
        description="Fewer threads while other processes keep cores busy: where output stays the same "
                    "(exact), on every step (always), or never (off)")
    n_gpu_layers: Annotated[int, Field(**LOAD_RANGES["n_gpu_layers"].field())] | Literal["auto", "all"] = Field(
        LOAD_DEFAULTS.n_gpu_layers,
        description="Layers to offload to the GPU: a count, -1 or 'all' for all of them, 'auto' for as many as the "
                    "GPUs' free memory holds (none without a GPU)")
    max_queue: int = Field(LOAD_DEFAULTS.max_queue, ge=0, description="Requests that may wait for a slot before 503")
    max_loaded_models: int | None = Field(None, ge=1, description="Least recently used models unload past this")
    keep_alive: float | None = Field(None, ge=0, description="Seconds an idle model stays loaded (none: forever)")


class LlamaCppExtension(BuiltinExtension, LocalInferenceExtension):
    name = "llamacpp"
    description = "Local GGUF models on jan's native llama.cpp engine"
    settings_schema = LlamaCppSettings
    engine_name = "llama.cpp"

    def __init__(self) -> None:
        self.engine: jan.ModelPool | None = None
        self._overrides: dict[str, Any] = {}
        # per model id while a load, unload or stop holds or waits for it (a dict kept one for every id ever asked
        # for, a typo's too, for the life of the server)
        self._load_locks: KeyedLocks[asyncio.Lock] = KeyedLocks()
        self._loading: set[str] = set()  # ids being loaded now (a held lock may be an unload's)
        # per model id while it is loaded (each holds its model, closed or not, and its compiled template: kept for
        # every model ever loaded — a created and deleted one's too — they grew the server by one per model id)
        self._lent: dict[str, LocalModel] = {}
        self._loaded_json: dict[str, dict[str, Any]] = {}
        # the notes below are kept per model id (or file pair) after the model is gone — a failed load's error is its
        # status until it loads — each table the newest _NOTES_KEPT (_note): made-and-deleted models grew them
        self._failures: dict[str, str] = {}
        #: (model file, draft file) versions and cache types -> why that draft cannot draft for that model (the engine's error)
        self._cannot_draft: dict[tuple, str] = {}
        #: model id -> why it runs without the server's default draft model
        self._draft_skipped: dict[str, str] = {}
        #: model id -> why it runs without the server's LoRA adapters (jan serve --lora)
        self._lora_skipped: dict[str, str] = {}
        #: one event per load still on its thread, set as it ends (the extension's stop waits for them)
        self._load_threads: set[threading.Event] = set()

    # -- lifecycle -----------------------------------------------------
    async def on_load(self, ctx) -> None:
        self._ctx = ctx
        self.engine = self._new_engine()

    def _new_engine(self, max_loaded: int | None = None, keep_alive: float | None = None) -> jan.ModelPool:
        """The registry of loaded models; unset limits come from the extension's settings."""
        s = self._ctx.settings
        return jan.ModelPool(max_loaded=max_loaded if max_loaded is not None else s.get("max_loaded_models"),
                          keep_alive=keep_alive if keep_alive is not None else s.get("keep_alive"))

    async def on_unload(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await asyncio.to_thread(engine.close)
        # A load still reading its weights (its client answered 503 as the server's stop began, or gone) cannot be
        # cut short: the closed pool makes it close the model it made and end. It is waited for, so that the stop
        # ends with no model left half made and the process never exits with llama.cpp still loading on a thread.
        loads = list(self._load_threads)
        if loads and not await asyncio.to_thread(_all_set, loads, LOAD_STOP_WAIT_S):
            log.warning("a model load still running after %.0f s was left to end on its own at the stop",
                        LOAD_STOP_WAIT_S)

    def set_defaults(self, **overrides: Any) -> None:
        """Load options from the command line (``jan serve --n-parallel ...``); model.json settings still win."""
        self._overrides = {k: v for k, v in overrides.items() if v is not None}

    def server_defaults(self) -> dict[str, Any]:
        """The load options every model loads with unless its model.json says otherwise (:meth:`set_defaults`)."""
        return dict(self._overrides)

    def set_residency(self, *, max_loaded: int | None, keep_alive: float | None) -> None:
        """How many models stay loaded and for how long when idle (``jan serve --max-loaded-models
        --keep-alive``); overrides the extension's settings. Call before any model is loaded."""
        old, self.engine = self.engine, self._new_engine(max_loaded, keep_alive)
        if old is not None:
            old.close()

    def load_options(self, model: dict[str, Any]) -> LoadOptions:
        """model.json ``settings`` > command-line flags > this extension's settings > the defaults."""
        s = self._ctx.settings
        settings = LoadOptions(n_parallel=s.get("n_parallel"), n_ctx=s.get("n_ctx"), n_threads=s.get("n_threads"),
                               adaptive_threads=s.get("adaptive_threads"), n_gpu_layers=s.get("n_gpu_layers"),
                               max_queue=s.get("max_queue"))
        return resolve_load(LoadOptions.from_model_settings(model.get("settings")),
                            LoadOptions.from_mapping(self._overrides), settings)

    # -- models --------------------------------------------------------
    @staticmethod
    def _model_file(model: dict[str, Any]) -> str:
        """The weights, as the model service resolved them into ``file_path`` (this engine never
        opens the data folder)."""
        if model.get("file_path"):
            return str(model["file_path"])
        raise ModelFileError(f"model '{model['id']}' has no weights file on disk; download or import it first")

    async def load_model(self, model: dict[str, Any]) -> None:
        await self._ensure_loaded(model)

    async def _ensure_loaded(self, model: dict[str, Any], *, claim: bool = False) -> jan.Model:
        """The model, loaded if need be. ``claim`` (a request is about to be submitted to it): the pool
        holds it for that request from here on, so that a load of another model cannot unload it before
        the request is submitted (atomic with the look-up: a claim made after it could come too late)."""
        engine = self._engine()
        # the request's place in line, taken before it waits on the lock below: the pool serves loads waiting
        # for room, and the models they unload, in the order requests came (not the order they got past it)
        with engine.turn(model["id"]) as turn:
            return await self._ensure_loaded_in_turn(engine, model, claim, turn)

    async def _ensure_loaded_in_turn(self, engine: jan.ModelPool, model: dict[str, Any], claim: bool,
                                     turn: Turn) -> jan.Model:
        model_id = model["id"]
        if self._loaded_json.get(model_id) == model:
            # unloaded meanwhile, or on its way out for a load that came first: loaded again below, in line
            with contextlib.suppress(ModelNotFoundError):
                return engine.get(model_id, claim=claim, turn=turn)
        lock = self._load_lock(model_id)
        async with lock:
            if self._loaded_json.get(model_id) == model:
                with contextlib.suppress(ModelNotFoundError):
                    return engine.get(model_id, claim=claim, turn=turn)
            bus = self._ctx.bus
            self._loading.add(model_id)
            await bus.emit(ModelInit(model_id=model_id, engine=self.engine_name))
            try:
                _check_stored_settings(model, self._overrides)
                path = self._model_file(model)
                opts = self.load_options(model).given()
                if any(k in opts for k in SPECULATIVE_OPTIONS) and await asyncio.to_thread(_embeds, opts, path):
                    # the server's speculative defaults (jan serve --spec-type, --draft-max...) are for the models
                    # that generate; jan.Model refuses them for one that embeds (a model.json's own were refused
                    # where they were written)
                    own = model.get("settings") or {}
                    opts = {k: v for k, v in opts.items() if k not in SPECULATIVE_OPTIONS or k in own}
                if model.get("mmproj_path"):  # resolved by the model service, like file_path
                    opts["mmproj"] = str(model["mmproj_path"])
                # the files model.json names beside the weights, before the weights are read
                await asyncio.to_thread(check_companions, model)
                opts, shared = draft_options(model, opts)
                opts, shared_lora = lora_options(model, opts)
                # the server's options that need what this model loads without (--image-min-tokens for a model with
                # no projector): defaults for the models that have it (a model.json's own were refused above)
                own = model.get("settings") or {}
                while (unmet := unmet_prerequisite(opts)) is not None and unmet[0] not in own:
                    opts = {k: v for k, v in opts.items() if k != unmet[0]}
                loaded = await self._load_with_lora(engine, model, path, opts, shared, shared_lora, claim=claim,
                                                    turn=turn)
            except Exception as exc:
                error = _setting_named(exc, model, self._overrides)
                _note(self._failures, model_id, str(error))
                await bus.emit(ModelFailed(model_id=model_id, engine=self.engine_name, error=str(error)))
                if error is exc:
                    raise
                raise error from None
            finally:
                self._loading.discard(model_id)
            self._failures.pop(model_id, None)
            self._forget_unloaded()
            self._loaded_json[model_id] = model
            self._lent.pop(model_id, None)
            await bus.emit(ModelReady(model_id=model_id, engine=self.engine_name))
            return loaded

    def _forget_unloaded(self) -> None:
        """Let go of what is kept per loaded model (its model.json, its lent model) for those no longer loaded:
        unloaded by the pool to make room, by keep_alive, or deleted. Called at each load (the pool's evictions
        happen within them), so what is kept never outnumbers the loaded models by more than the loads since."""
        engine = self.engine
        if engine is None:
            return
        for kept in (self._lent, self._loaded_json):
            for model_id in [m for m in kept if m not in self._loading and not engine.is_loaded(m)]:
                kept.pop(model_id, None)

    async def _load_with_lora(self, engine: jan.ModelPool, model: dict[str, Any], path: str, opts: dict[str, Any],
                              shared: bool, shared_lora: bool, *, claim: bool, turn: Turn) -> jan.Model:
        """:meth:`_load`; the server's LoRA adapters (``jan serve --lora``, ``shared_lora``) that this model cannot
        use (another architecture, other shapes: :class:`~jan.LoraAdapterError`) are left out — the model loads
        without them, said once in the log and in its status (``lora_skipped``). A model.json's own adapters that
        do not fit are the load's error (a 400 naming ``settings.lora``)."""
        model_id = model["id"]
        try:
            loaded = await self._load(engine, model, path, opts, shared, claim=claim, turn=turn)
        except LoraAdapterError as exc:
            if not shared_lora:
                raise ModelSettingError(f"settings.{exc}{in_model_json(model)}", param="settings.lora",
                                        code="invalid_value") from None
            if self._lora_skipped.get(model_id) != str(exc):
                log.warning("model '%s' loads without the server's LoRA adapters: %s", model_id, exc)
                _note(self._lora_skipped, model_id, str(exc))
            return await self._load(engine, model, path, {k: v for k, v in opts.items() if k != "lora"}, shared,
                                    claim=claim, turn=turn)
        self._lora_skipped.pop(model_id, None)
        return loaded

    async def _load(self, engine: jan.ModelPool, model: dict[str, Any], path: str, opts: dict[str, Any],
                    shared: bool, *, claim: bool, turn: Turn) -> jan.Model:
        """Load the model with ``opts``. A draft model that cannot draft for it (another vocabulary: the engine's
        own rule, cpp/draft_model.cpp; or heads that cannot hold the KV cache types the model is loaded with, which
        the draft's own cache shares) is remembered per pair of files and cache types, so that no later load reads
        the weights only to fail again: the server's default draft model (``shared``) is then left out — the model
        loads without it, said once in the log and in the model's status (``draft_model_skipped``) — and the
        model's own is a 400 naming ``settings.draft_model``."""
        model_id, settings = model["id"], model.get("settings") or {}
        draft = opts.get("draft_model")
        pair = await asyncio.to_thread(_file_pair, path, draft) if draft else None
        if pair is not None:  # (the cache types decide whether the draft's heads can hold its cache)
            pair = (*pair, *(opts.get(k) for k in ("cache_type_k", "cache_type_v", "flash_attn")))
        why = self._cannot_draft.get(pair) if pair else None
        if why is None:
            try:
                loaded = await self._on_load_thread(model_id, functools.partial(
                    engine.load, model_id, path, claim=claim, turn=turn, **opts), claimed=claim)
            except ValueError as exc:
                if pair is None or not _is_draft_mismatch(exc):
                    raise
                why = _note(self._cannot_draft, pair, str(exc))
            else:
                self._draft_skipped.pop(model_id, None)
                return loaded
        if not shared:
            raise ModelSettingError(f"settings.{why}{in_model_json(model)}", param="settings.draft_model",
                                    code="invalid_value")
        if self._draft_skipped.get(model_id) != why:  # once per model, not on every load of it
            log.warning("model '%s' loads without the server's draft model: %s", model_id, why)
            _note(self._draft_skipped, model_id, why)
        return await self._on_load_thread(model_id, functools.partial(
            engine.load, model_id, path, claim=claim, turn=turn, **without_draft(opts, settings)), claimed=claim)

    async def _on_load_thread(self, model_id: str, load: Callable[[], T], *, claimed: bool = False) -> T:
        """``load()`` on a thread of its own (it may wait minutes for room), noted until it ends (:meth:`on_unload`
        waits for it: an await cancelled leaves the thread to finish). ``claimed``: ``load()`` claims the model for
        the request awaiting it; when that await is cancelled (its client left while the load waited for room) the
        claim the finished load still takes is given back (:meth:`_give_back_claim`)."""
        ended = threading.Event()
        self._load_threads.add(ended)

        def run() -> T:
            try:
                return load()
            finally:
                ended.set()
                self._load_threads.discard(ended)

        on_thread = functools.partial(on_own_thread, f"jan-load-{model_id}")
        if not claimed:
            return await on_thread(run)
        return await undone_if_abandoned(on_thread, run, undo=lambda loaded: self._give_back_claim(model_id, loaded))

    def _give_back_claim(self, model_id: str, loaded: Any) -> None:
        """The claim a hand-out took on ``loaded`` for a request that will not be submitted (its client left, or it
        was refused before it): given back, so that a load waiting for room (or a ``keep_alive`` 0) need not wait
        out the pool's claim grace for nobody."""
        engine = self.engine
        if engine is not None:
            engine.release_claim(model_id, loaded)

    def _engine(self) -> jan.ModelPool:
        if self.engine is None:
            raise ModelClosedError("the llama.cpp engine is not running (its extension is stopped)")  # a 503
        return self.engine

    def _load_lock(self, model_id: str) -> asyncio.Lock:
        return self._load_locks(model_id)

    async def lora_adapters(self, model: dict[str, Any], adapters: Any = None) -> list[dict[str, Any]]:
        """The model's LoRA adapters as llama-server's ``GET /lora-adapters`` lists them (id, path, scale,
        task_name, prompt_prefix), the model loaded first if need be (llama-server's one model always is). With
        ``adapters`` (``POST /lora-adapters``: ``[{"id": ..., "scale": ...}]``, those not listed at 0) their default
        scales are set first, for requests submitted afterwards; a :class:`~jan.BadRequestError` naming ``lora``
        for an id the model lacks, one given twice or a scale that is no finite number."""
        loaded = await self._ensure_loaded(model)
        if adapters is not None:
            loaded.lora_adapters = adapters
        return loaded.lora_adapters

    async def slot_action(self, model: dict[str, Any], action: str, id_slot: int, path: str | None = None
                          ) -> dict[str, Any]:
        """llama-server's ``POST /slots/{id}?action=save|restore|erase`` on the model (loaded first if need be, as
        llama-server's one model always is): :meth:`jan.Model.slot_action`, off the event loop (a busy slot's action
        waits for its request to end)."""
        loaded = await self._ensure_loaded(model)
        return await asyncio.to_thread(loaded.slot_action, action, id_slot, path)

    async def slots_info(self, model_id: str) -> list | None:
        """llama-server's ``GET /slots`` of the model: :meth:`jan.Model.slots_info`, off the event loop (it waits for
        the engine's current step); None while it is not loaded (nothing is loaded to answer)."""
        loaded = self.engine.peek(model_id) if self.engine is not None else None
        if loaded is None:
            return None
        try:
            return await asyncio.to_thread(loaded.slots_info)
        except (ModelClosedError, BadRequestError):  # (unloaded meanwhile; an embedding model: no generation slots)
            return None

    async def unload_model(self, model_id: str) -> None:
        """Unload now: requests running on the model end as ``cancelled`` (an admin's stop). A load in
        progress is waited for first and then undone, so a stop during a load does not leave the model
        loaded; ModelNotFoundError when it is not loaded (or its load failed)."""
        engine = self._engine()
        async with self._load_lock(model_id):  # after a load in progress
            if not engine.is_loaded(model_id):
                raise ModelNotFoundError(f"model '{model_id}' is not loaded")
            await asyncio.to_thread(engine.unload, model_id)
            self._loaded_json.pop(model_id, None)
            self._lent.pop(model_id, None)
        await self._ctx.bus.emit(ModelStopped(model_id=model_id, engine=self.engine_name, reason="requested"))

    async def unload_when_idle(self, model_id: str) -> bool:
        """Unload once no request runs on the model (now, if none does: True) without cancelling any —
        Ollama's ``keep_alive: 0``; :meth:`unload_model` is the stop that cancels. A load in progress is
        waited for first. ModelNotFoundError when it is not loaded."""
        engine = self._engine()
        async with self._load_lock(model_id):
            now = await asyncio.to_thread(engine.unload_when_idle, model_id)
            if now:
                self._loaded_json.pop(model_id, None)
                self._lent.pop(model_id, None)
        if now:
            await self._ctx.bus.emit(ModelStopped(model_id=model_id, engine=self.engine_name, reason="keep_alive"))
        return now

    async def loaded_models(self) -> list[str]:
        return self._engine().loaded() if self.engine else []

    async def set_keep_alive(self, model_id: str, seconds: float | None) -> None:
        """How long this loaded model stays loaded once idle, in seconds (0: unload when idle, ``math.inf``: until
        unloaded), overriding ``keep_alive`` for it (Ollama's per-request ``keep_alive``); ``None``: the server's
        ``keep_alive`` again (``jan serve --keep-alive``, else this extension's setting, else until unloaded).
        Raises ModelNotFoundError if the model is not loaded."""
        self._engine().set_keep_alive(model_id, seconds)

    async def model_status(self, model_id: str) -> dict[str, Any]:
        if self.engine is None or not self.engine.is_loaded(model_id):
            if model_id in self._loading:
                return {"id": model_id, "status": ModelState.LOADING}
            if model_id in self._failures:
                return {"id": model_id, "status": ModelState.FAILED, "error": self._failures[model_id]}
            return {"id": model_id, "status": ModelState.UNLOADED}
        status = self.engine.status().get(model_id, {})
        return {
            "id": model_id,
            "status": ModelState.READY,
            "n_ctx": status.get("n_ctx"),
            # the default context the fit to free memory shrank n_ctx from, or None
            "n_ctx_fitted_from": status.get("n_ctx_fitted_from"),
            "n_parallel": status.get("slots_total"),
            "active_requests": status.get("slots_busy", 0),
            "queue_depth": status.get("queue_depth", 0),
            "memory_bytes": status.get("memory_bytes"),  # the weights
            "ftype": status.get("ftype"),  # their type as llama.cpp names it ("Q4_K - Medium")
            "kv_cache_bytes": status.get("kv_cache_bytes"),
            # what the KV size and the drafting follow: the cache types and the requests' default speculative mode
            "cache_type_k": status.get("cache_type_k"),
            "cache_type_v": status.get("cache_type_v"),
            "speculative": status.get("speculative"),
            # "exact" / "always" / "off"; the counts in use are in metrics (n_threads, n_threads_batch)
            "adaptive_threads": status.get("adaptive_threads"),
            "draft_model": status.get("draft_model"),  # speculative decoding's draft GGUF, or None
            # why the server's draft model (--model-draft) is not drafting for this one, or None
            "draft_model_skipped": self._draft_skipped.get(model_id),
            "draft_kv_cache_bytes": status.get("draft_kv_cache_bytes", 0),
            "draft_memory_bytes": status.get("draft_memory_bytes", 0),  # the draft model's weights
            # its LoRA adapters: id, path, scale (the default now), task_name, prompt_prefix
            "lora": status.get("lora", []),
            # why the server's LoRA adapters (--lora) are not loaded with this one, or None
            "lora_skipped": self._lora_skipped.get(model_id),
            "n_gpu_layers": status.get("n_gpu_layers", 0),  # layers offloaded (-1: all; "auto" as it was resolved)
            "offload": status.get("offload"),  # why "auto" chose them, or None
            "expires_in": status.get("expires_in"),  # seconds until unloaded when idle; None: never
            "projector_memory_bytes": status.get("projector_memory_bytes", 0),
            # tokens one image may take on a dynamic-resolution projector (None: the projector's own bounds)
            "image_min_tokens": status.get("image_min_tokens"),
            "image_max_tokens": status.get("image_max_tokens"),
            "capabilities": status.get("capabilities", {}),
            "metrics": status.get("metrics", {}),
            "chat_template": await self._chat_template_status(model_id),
        }

    async def _chat_template_status(self, model_id: str) -> dict[str, Any] | None:
        model = self._loaded_json.get(model_id)
        if model_id not in self._lent and model is not None and not self.engine.get(model_id).embedding_only:
            with contextlib.suppress(Exception):  # a broken template override shows up when chatting
                await self._acquire(model, claim=False)  # a status read submits nothing
        return self.chat_template_info(model_id)

    #: How ``/metrics`` labels this engine's models (``engine``): generated by this machine's engine.
    metrics_label = "local"

    def metrics(self) -> dict[str, dict]:
        """Per loaded model: the engine's counters (for /metrics)."""
        return {mid: s["metrics"] for mid, s in self.engine.status().items()} if self.engine else {}

    # -- lending models to the services ---------------------------------------
    async def acquire(self, model: dict[str, Any]) -> LocalModel:
        return await self._acquire(model, claim=True)  # the caller submits a request to it next

    async def _acquire(self, model: dict[str, Any], *, claim: bool) -> LocalModel:
        loaded = await self._ensure_loaded(model, claim=claim)
        lent = self._lent.get(model["id"])
        if lent is None or lent.model is not loaded:
            try:
                made = await asyncio.to_thread(self._lend, model, loaded)
            except BaseException:  # refused (its template), or its client left: no request follows the claim
                if claim:
                    self._give_back_claim(model["id"], loaded)
                raise
            lent = self._lent.get(model["id"])
            # requests that came together after a load each lent it meanwhile: the first one lent is kept, so that
            # the load has one template (whose first chat tells of a stand-in once: services.local.render_chat)
            if lent is None or lent.model is not loaded:
                lent = made
                self._lent[model["id"]] = lent
        if not claim:
            return lent
        # the request's own hand-out: its claim ends as its work begins (LocalModel.hold), or is given back at once
        # where it never begins (refused, or its client gone, before its submit: LocalModel.give_back)
        return replace(lent, claim=Claim(loaded, functools.partial(self._give_back_claim, model["id"],
                                                                               loaded)))

    def chat_template_info(self, model_id: str) -> dict[str, Any] | None:
        """The chat template a loaded model chats with: ``{"name", "fallback"}`` (``fallback``: why
        it stands in for the model's own, or None); None before the model was first lent."""
        lent = self._lent.get(model_id)
        if lent is None or self.engine is None or not self.engine.is_loaded(model_id):
            return None
        return {"name": lent.template.name, "fallback": lent.template.fallback}

    @staticmethod
    def _lend(model: dict[str, Any], loaded: jan.Model) -> LocalModel:
        """Blocking (compiles the template): the model with its chat template."""
        settings = model.get("settings") or {}
        texts = loaded.info.special_texts
        bos, eos = texts.get("bos", ""), texts.get("eos", "")
        # Jan's model.json always carries a prompt_template: it only stands in when the
        # GGUF has no template of its own; an explicit chat_template overrides.
        override = settings.get("chat_template")
        try:
            template = resolve_template(loaded.metadata, override, fallback=settings.get("prompt_template"),
                                        bos_token=bos, eos_token=eos)
        except TemplateError as exc:
            # only the model.json's own templates raise (the file's is skipped with a warning): name the
            # field, as a PATCH setting it is refused (jan.services.models.check_model_and_file)
            key = "chat_template" if isinstance(override, str) and override.strip() else "prompt_template"
            error = TemplateError(f"settings.{key}: {exc}")
            error.param, error.code = f"settings.{key}", "invalid_value"
            raise error from None
        end_of_turn: tuple[str, ...] = ()
        if template.name == "chatml" and not _ends_turn_with_token(loaded, "<|im_end|>"):
            # ChatML stands in for a missing template: the model may spell the end of turn as text.
            end_of_turn = ("<|im_end|>", "<|im_start|>")
        return LocalModel(loaded, template, end_of_turn)

    async def tokenize(self, model: dict[str, Any], text: str, *, add_special: bool = True,
                       parse_special: bool = False) -> list[int]:
        # megabytes of text take seconds: never on the event loop
        return await self._held(model, lambda loaded: loaded.tokenize(text, add_special=add_special,
                                                                      parse_special=parse_special))

    async def detokenize(self, model: dict[str, Any], tokens: list[int]) -> str:
        # as llama-server's /detokenize answers: special tokens spelled (the inverse of a tokenize that parsed them)
        return await self._held(model, lambda loaded: loaded.spell(tokens))

    async def token_pieces(self, model: dict[str, Any], tokens: list[int]) -> list[bytes]:
        """Each token's bytes, as they are: a byte token holds part of a UTF-8 character, which text would lose."""
        return await self._held(model, lambda loaded: [loaded.token_to_bytes(t, special=True) for t in tokens])

    async def _held(self, model: dict[str, Any], work: Callable[[jan.Model], T]) -> T:
        """``work`` on the loaded model, in a worker thread, holding it (:meth:`jan.Model.hold`, as no request the pool
        handed it out for: ``begins=False``) so that it is not unloaded while the work runs. A model closed between
        its hand-out and the hold (another client's keep_alive 0, a load making room: nothing claims it for this
        work, which waits in no line) is loaded again and the work done then: before, /tokenize, /detokenize and a
        native prompt's token pieces answered 503 "closed (unloaded)"."""
        for _ in range(HELD_ATTEMPTS - 1):
            with contextlib.suppress(ModelClosedError):
                return await self._held_once(model, work)
        return await self._held_once(model, work)

    async def _held_once(self, model: dict[str, Any], work: Callable[[jan.Model], T]) -> T:
        loaded = await self._ensure_loaded(model)

        def run() -> T:
            with loaded.hold(begins=False):
                return work(loaded)
        return await asyncio.to_thread(run)


#: (model id, ``settings.key``) of each typo :func:`_tell_typos` logged: once per process, not at every load.
_TYPOS_TOLD: set[tuple[str, str]] = set()


def _tell_typos(model: dict[str, Any]) -> None:
    """Log a model.json key that is a likely typo of one jan reads (``settings.ctx_lenn``), once per model and key: a
    hand-edited file is never refused for it (another app's keys stay), but the setting was silently not applied, the
    model loading with its default (a PATCH refuses the same key, and ``jan models show`` tells it)."""
    for param, said in model_json_typos(model):
        if (str(model.get("id")), param) not in _TYPOS_TOLD:
            _TYPOS_TOLD.add((str(model.get("id")), param))
            log.warning("model '%s': %s", model.get("id"), said)


def _embeds(opts: Mapping[str, Any], path: str) -> bool:
    """Whether a load with ``opts`` makes a model that only embeds, as :class:`jan.Model` decides it: the
    ``embedding`` option, else the GGUF header (blocking: reads it)."""
    if opts.get("embedding") is not None:
        return bool(opts["embedding"])
    header = gguf_header(path)
    return bool(header) and is_embedding_metadata(header)


def _check_stored_settings(model: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
    """:class:`ModelSettingError` naming the model and the field (``settings.ctx_len``) for a model.json setting
    that every load of it would fail on, judged as a PATCH setting it is (:func:`jan.services.models.check_settings`).
    A model.json edited by hand skips that check: without this one, ``"ctx_len": -5`` was refused as ``n_ctx``, an
    option the client never sent, and ``"chat_template": 5`` failed every chat with a 500."""
    settings = model.get("settings") or {}
    _tell_typos(model)
    try:
        check_settings(settings)
        check_model_kind(model)  # a draft model, sampling... on a model that embeds only: refused, not left unread
        check_prerequisites(model, None, defaults)  # image_min_tokens with no projector...: refused, not left unread
    except RequestError as exc:
        if exc.advice is not None and exc.reason is not None:  # (kept as data: jan run names the setting its flag)
            raise ModelSettingError("", param=exc.param, code=exc.code or "invalid_value").advise(
                exc.reason, exc.advice, f"{exc.tail}{in_model_json(model)}", named=exc.named) from None
        raise ModelSettingError(f"{exc}{in_model_json(model)}", param=exc.param,
                                code=exc.code or "invalid_value") from None


def _setting_named(exc: Exception, model: dict[str, Any], defaults: dict[str, Any] | None = None) -> Exception:
    """A load option refused at load (a :class:`~jan.errors.BadRequestError` naming it: one the file cannot use,
    ``cache_type_v``; one contradicting another's default, ``draft_min``; a context too big, ``n_ctx``) that came
    from the model.json: the same error naming its field (``settings.cache_type_v``, ``settings.ctx_len``), as a
    PATCH setting it is refused. One that came from the server's defaults for every model (``defaults``: ``jan
    serve``'s flags) says so, and names no field of the request, which never sent it (a request's 400 named
    ``draft_min`` after ``jan serve --draft-min 20``). Any other error as it is."""
    option = getattr(exc, "param", None)
    # the option's model.json key: n_ctx is settings.ctx_len (LoadOptions.MODEL_JSON_KEYS)
    key = next((k for k, o in LoadOptions.MODEL_JSON_KEYS.items() if o == option), option)
    if isinstance(exc, ModelFileError):
        return _companion_named(exc, model, defaults)
    if not isinstance(exc, BadRequestError):
        return exc
    text = str(exc)
    if key in (model.get("settings") or {}):
        if exc.advice is not None and exc.named and exc.reason is not None:
            # an error that advises a setting keeps it as data (a front end names it its own way): the field is
            # named in place of the option, and the advice names the setting as the model.json does (ctx_len, not
            # the engine's n_ctx), the rest as it was
            return ModelSettingError("", param=f"settings.{key}", code=exc.code).advise(
                exc.reason, replace(exc.advice, name=None), exc.tail, named=True)
        if text.startswith(f"{option}: "):  # else the draft model's, which says whose it is
            text = f"settings.{key}: {text.removeprefix(f'{option}: ')}"
        return ModelSettingError(text, param=f"settings.{key}", code=exc.code)
    if option in (defaults or {}):
        return _given_by_server(ModelSettingError, model, option, defaults, exc, code=exc.code)
    return exc


def _given_by_server(kind: type[E], model: dict[str, Any], option: str, defaults: dict[str, Any],
                     exc: Exception, **extra: Any) -> E:
    """``exc`` as an error of ``kind`` saying the server gave ``option`` to every model (its message:
    :class:`~jan.errors.ServerDefault`, which ``jan serve`` says naming its flag)."""
    given = ServerDefault(str(model.get("id")), option, defaults[option], exc)
    error = kind(given.said(), **extra)
    error.given_by_server = given
    return error


#: The model.json settings naming a file beside the weights that llama.cpp reads at load (``draft_model: ...``,
#: ``lora[1]: ...`` begin its errors).
_COMPANION_SETTINGS = ("draft_model", "mmproj", "lora")


def _companion_named(exc: ModelFileError, model: dict[str, Any], defaults: dict[str, Any] | None = None
                     ) -> ModelFileError:
    """A file beside the weights that llama.cpp could not read (a truncated draft model, projector or adapter:
    checked whole only by the load) as the same error naming who gave it: the model.json's field, ``param`` and
    message (``settings.draft_model: ...``), as a missing one is named, or the server's default for every model
    (``jan serve --model-draft``: no field of the request, ``param`` None), as a load option of the server's is
    named (:func:`_setting_named`). It was told as the model's own file (``param`` "model") under the engine's
    option name. Any other file error (the weights') as it is."""
    head, sep, rest = str(exc).partition(": ")
    option = head.split("[", 1)[0]  # (lora[1])
    if not sep or option not in _COMPANION_SETTINGS:
        return exc
    if option in (model.get("settings") or {}):
        named = type(exc)(f"settings.{head}: {rest}{in_model_json(model)}")
        named.param = f"settings.{option}"  # type: ignore[attr-defined]  (to_api_error's param)
    elif option in (defaults or {}):
        named = _given_by_server(type(exc), model, option, defaults or {}, exc)
        named.param = None  # type: ignore[attr-defined]
    else:
        return exc
    return named


def _is_draft_mismatch(exc: ValueError) -> bool:
    """Whether a load failed because its draft model cannot draft for it: the engine's words (cpp/draft_model.cpp),
    or KV cache types the draft's heads cannot hold (jan.Model's check of the draft, whose cache has the model's
    types: a q8_0 cache for a model of 64-wide heads, a draft of 8-wide ones) — either way the draft, not the model,
    is what cannot be used."""
    text = str(exc)
    if isinstance(exc, ModelSettingError) and exc.code == "unsupported_cache_type":
        return text.startswith("draft_model:")
    return text.startswith("draft_model:") and ("cannot draft for" in text or "is not a decoder-only model" in text)


def _file_pair(path: str, draft: str) -> tuple | None:
    """The two files' versions (:func:`jan.file_stamps.file_version`: a file replaced is judged anew); None when one
    cannot be read."""
    try:
        return file_version(path), file_version(draft)
    except (OSError, ValueError):
        return None


def _ends_turn_with_token(model: jan.Model, text: str) -> bool:
    ids = model.tokenize(text, add_special=False, parse_special=True)
    return len(ids) == 1 and model.is_eog(ids[0])
