"""``jan.ModelPool``: several models loaded by id, with an LRU bound and an idle keep-alive.

``jan.Engine`` is the old name of the same class, kept as an alias for a release.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from jan.errors import ModelNotFoundError
from jan.engine.model import Model


@dataclass
class _Entry:
    model: Model
    options: dict
    loaded_at: float
    last_used: float
    keep_alive: float | None = None  # this model's own idle limit (seconds, inf: forever); None: the engine's


class ModelPool:
    """Holds loaded models by id (a pool of loaded models, not an engine: each model runs its own).

    ``max_loaded`` bounds how many stay loaded: loading one more unloads the
    least recently used (idle ones first). ``keep_alive`` (seconds) unloads a
    model that has had no request for that long; ``None`` keeps models
    loaded until unloaded. :meth:`set_keep_alive` gives one model its own
    limit (as Ollama's per-request ``keep_alive`` does). Thread-safe.
    """

    def __init__(self, *, max_loaded: int | None = None, keep_alive: float | None = None,
                 reap_interval: float = 1.0, **default_options):
        if max_loaded is not None and max_loaded < 1:
            raise ValueError("max_loaded: must be >= 1")
        if keep_alive is not None and keep_alive < 0:
            raise ValueError("keep_alive: must be >= 0 seconds")
        self.max_loaded = max_loaded
        self.keep_alive = keep_alive
        self.default_options = default_options
        self._models: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._reap_interval = reap_interval
        self._reaper: threading.Thread | None = None
        if keep_alive is not None:
            self._start_reaper()

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None and not self._closed.is_set():
                self._reaper = threading.Thread(target=self._reap_loop, args=(self._reap_interval,),
                                                name="jan-keep-alive", daemon=True)
                self._reaper.start()

    def load(self, model_id: str, path: str, **options) -> Model:
        """Load (or return the already loaded) model under ``model_id``."""
        with self._lock:
            entry = self._models.get(model_id)
            if entry is not None and entry.model.path == str(path) and entry.options == options:
                return self._touch(model_id)
        if entry is not None:
            self.unload(model_id)
        opts = {**self.default_options, **options}
        model = Model(path, model_id=model_id, **opts)  # slow: outside the lock
        evicted = []
        with self._lock:
            now = time.monotonic()
            self._models[model_id] = _Entry(model, options, now, now)
            while self.max_loaded is not None and len(self._models) > self.max_loaded:
                victim = self._pick_victim(exclude=model_id)
                evicted.append(self._models.pop(victim).model)
        for m in evicted:
            m.close()
        return model

    def _pick_victim(self, exclude: str) -> str:
        candidates = [mid for mid in self._models if mid != exclude]  # oldest use first
        idle = [mid for mid in candidates if not self._models[mid].model.busy]
        return (idle or candidates)[0]

    def get(self, model_id: str) -> Model:
        """The loaded model; marks it as used. Raises ModelNotFoundError."""
        with self._lock:
            return self._touch(model_id)

    def _touch(self, model_id: str) -> Model:
        entry = self._models.get(model_id)
        if entry is None:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.last_used = time.monotonic()
        self._models.move_to_end(model_id)
        return entry.model

    def set_keep_alive(self, model_id: str, seconds: float | None) -> None:
        """How long this loaded model stays loaded once idle, from its last use on: ``seconds``
        (0: unload as soon as no request runs, ``math.inf``: until unloaded), or ``None`` for the
        pool's ``keep_alive`` again. Counts as a use. Raises ModelNotFoundError if not loaded."""
        if seconds is not None and (math.isnan(seconds) or seconds < 0):
            raise ValueError("keep_alive: must be >= 0 seconds")
        with self._lock:
            entry = self._models.get(model_id)
            if entry is None:
                raise ModelNotFoundError(f"model '{model_id}' is not loaded")
            entry.keep_alive = seconds
            entry.last_used = time.monotonic()
        if seconds is not None and not math.isinf(seconds):
            self._start_reaper()

    def _limit(self, entry: _Entry) -> float | None:
        limit = entry.keep_alive if entry.keep_alive is not None else self.keep_alive
        return None if limit is None or math.isinf(limit) else limit

    def unload(self, model_id: str) -> None:
        with self._lock:
            entry = self._models.pop(model_id, None)
        if entry is None:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.model.close()

    def unload_when_idle(self, model_id: str) -> bool:
        """Unload the model now if no request runs on it (True); else once the last one ends (False):
        its keep-alive becomes 0, and the reaper unloads it when idle — running requests are never
        cancelled (Ollama's ``keep_alive: 0``; :meth:`unload` cancels them). Raises ModelNotFoundError
        if it is not loaded."""
        with self._lock:
            entry = self._models.get(model_id)
            if entry is None:
                raise ModelNotFoundError(f"model '{model_id}' is not loaded")
            idle = not entry.model.busy
            if idle:
                del self._models[model_id]
            else:
                entry.keep_alive = 0.0
        if idle:
            entry.model.close()
        else:
            self._start_reaper()
        return idle

    def is_loaded(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._models

    def loaded(self) -> list[str]:
        """Ids of loaded models, least recently used first."""
        with self._lock:
            return list(self._models)

    def status(self) -> dict[str, dict]:
        """Per model: path, slots busy/total, queue depth, memory, idle time, keep-alive expiry."""
        now = time.monotonic()
        with self._lock:
            entries = list(self._models.items())
        out = {}
        for mid, e in entries:
            m = e.model.metrics()
            idle = 0.0 if e.model.busy else now - e.last_used
            limit = self._limit(e)
            out[mid] = {
                "id": mid,
                "path": e.model.path,
                "state": "loaded",
                "slots_busy": m.get("slots_busy", 0),
                "slots_total": m.get("slots_total", 0),
                "queue_depth": m.get("queue_depth", 0),
                "memory_bytes": e.model.info.size_bytes + e.model.projector_memory_bytes,
                "projector_memory_bytes": e.model.projector_memory_bytes,
                "capabilities": e.model.capabilities,
                "kv_cache_bytes": e.model.kv_cache_bytes,
                "draft_model": e.model.draft_model,
                "draft_kv_cache_bytes": e.model.draft_kv_cache_bytes,
                "n_ctx": e.model.n_ctx,
                "adaptive_threads": e.model.adaptive_threads,
                "idle_seconds": idle,
                "expires_in": None if limit is None else max(0.0, limit - idle),
                "options": dict(e.options),  # the load options it was loaded with
                "metrics": m,
            }
        return out

    def _reap_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            self.reap_idle()

    def reap_idle(self) -> list[str]:
        """Unload models idle longer than their keep-alive; returns their ids."""
        now = time.monotonic()
        expired = []
        with self._lock:
            for mid, e in list(self._models.items()):
                limit = self._limit(e)
                if limit is None:
                    continue
                if e.model.busy:
                    e.last_used = now  # a long generation counts as use
                elif now - e.last_used >= limit:
                    expired.append(self._models.pop(mid).model)
        for m in expired:
            m.close()
        return [m.id for m in expired]

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            models = [e.model for e in self._models.values()]
            self._models.clear()
        for m in models:
            m.close()

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: The old name of :class:`ModelPool`, kept for a release.
Engine = ModelPool
