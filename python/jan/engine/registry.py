"""``jan.ModelPool``: several models loaded by id, with an LRU bound and an idle keep-alive.

``jan.Engine`` is the old name of the same class, kept as an alias for a release.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from jan.errors import ModelClosedError, ModelNotFoundError, QueueFullError
from jan.engine.model import Model

#: Seconds a load waits, by default, for a loaded model to finish its running requests so that it can
#: be unloaded to make room (as Ollama's load timeout, 5 minutes): a long generation must be able to end.
ROOM_TIMEOUT_S = 300.0
#: How often a waiting load looks again at whether a loaded model went idle: the engine tells the pool
#: nothing when a request ends (``Model.busy`` is a cheap read of its counters), so the wait polls.
_ROOM_POLL_S = 0.1
#: Seconds a model handed out with ``claim=True`` stays held for the request its caller is about to submit, at
#: most: the claim ends as soon as that request is submitted (it is then busy), and this bounds callers that
#: never submit one (a request refused before its submit), which hold the model from loads of others that long.
#: Rendering the template, tokenizing a long prompt and encoding images come between the hand-out and the submit;
#: one slower than this may find the model unloaded (a 503 the client may retry, never a cut-off answer).
CLAIM_GRACE_S = 10.0


class ModelPoolBusyError(QueueFullError):
    """A model could not be loaded: the pool is at ``max_loaded`` and every loaded model kept running (or
    queued) requests for the whole ``room_timeout``. Never unloading a busy model is what keeps their requests
    whole; the client may try again once they end (the server's 503 with ``Retry-After``, as a full queue)."""


@dataclass
class _Entry:
    model: Model
    options: dict
    loaded_at: float
    last_used: float
    keep_alive: float | None = None  # this model's own idle limit (seconds, inf: forever); None: the engine's
    # hand-outs (claim=True) whose requests were not submitted yet: the model's requests_total must reach
    # claim_base + claims for all of them to be in (then the model is busy, or done with them)
    claims: int = 0
    claim_base: int = 0
    claim_until: float = 0.0  # monotonic time the claims lapse at, submitted or not


class ModelPool:
    """Holds loaded models by id (a pool of loaded models, not an engine: each model runs its own).

    ``max_loaded`` bounds how many stay loaded: loading one more unloads the
    least recently used idle one. A model with running or queued requests is
    never unloaded to make room (nor when its keep-alive expires, nor to be
    loaded again with other options): the load waits until one is idle, up to
    ``room_timeout`` seconds, then raises :class:`ModelPoolBusyError`; the
    loaded models keep serving meanwhile. Only :meth:`unload` (and
    :meth:`close`) cancel running requests. ``keep_alive`` (seconds) unloads a
    model that has had no request for that long; ``None`` keeps models
    loaded until unloaded. :meth:`set_keep_alive` gives one model its own
    limit (as Ollama's per-request ``keep_alive`` does). Thread-safe.
    """

    def __init__(self, *, max_loaded: int | None = None, keep_alive: float | None = None,
                 reap_interval: float = 1.0, room_timeout: float = ROOM_TIMEOUT_S, **default_options):
        if max_loaded is not None and max_loaded < 1:
            raise ValueError("max_loaded: must be >= 1")
        if keep_alive is not None and keep_alive < 0:
            raise ValueError("keep_alive: must be >= 0 seconds")
        if math.isnan(room_timeout) or room_timeout < 0:
            raise ValueError("room_timeout: must be >= 0 seconds")
        self.max_loaded = max_loaded
        self.keep_alive = keep_alive
        self.room_timeout = room_timeout
        self.default_options = default_options
        self._models: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        # loads waiting for room wait on this; it is notified whenever a model leaves or joins the pool
        self._changed = threading.Condition(self._lock)
        # ids being loaded now: their room is taken already (the bound counts them), and a second load
        # of the same id waits for the first instead of loading a copy
        self._pending: set[str] = set()
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

    def load(self, model_id: str, path: str, *, claim: bool = False, **options) -> Model:
        """Load (or return the already loaded) model under ``model_id``.

        ``claim``: the caller is about to submit a request to it (a server handing the model to a request):
        it is held as if that request were running until one is submitted, or :data:`CLAIM_GRACE_S` pass —
        otherwise a load of another model could unload it in between, and the request would fail.

        When the pool is full, the least recently used idle model is unloaded first; while every loaded
        model has requests running or queued, this waits (at most ``room_timeout`` seconds, then
        :class:`ModelPoolBusyError`) rather than cut them off. A model loaded under the same id with other
        options is replaced the same way, once its own requests end."""
        deadline = time.monotonic() + self.room_timeout
        with self._changed:
            while True:
                if self._closed.is_set():
                    raise ModelClosedError(f"model '{model_id}' cannot be loaded: the model pool is closed")
                entry = self._models.get(model_id)
                if entry is not None and entry.model.path == str(path) and entry.options == options:
                    return self._touch(model_id, claim)
                freed = None if model_id in self._pending else self._make_room(model_id, entry)
                if freed is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if entry is not None and self._in_use(entry):
                        why = (f"it is loaded with other options and its running requests went on for "
                               f"{self.room_timeout:g} s (they are never cut off to load it again)")
                    else:
                        why = (f"{self.max_loaded} model(s) may be loaded at once and every loaded one kept "
                               f"running requests for {self.room_timeout:g} s (they are never cut off to make room)")
                    raise ModelPoolBusyError(f"model '{model_id}' cannot be loaded now: {why}; try again when they end")
                self._changed.wait(min(_ROOM_POLL_S, remaining))
            self._pending.add(model_id)
        try:
            for m in freed:
                m.close()  # idle: nothing is cancelled
            opts = {**self.default_options, **options}
            model = Model(path, model_id=model_id, **opts)  # slow: outside the lock
        except BaseException:
            with self._changed:
                self._pending.discard(model_id)
                self._changed.notify_all()  # the room it held is free again
            raise
        with self._changed:
            self._pending.discard(model_id)
            self._changed.notify_all()
            closed = self._closed.is_set()
            if not closed:
                now = time.monotonic()
                self._models[model_id] = _Entry(model, options, now, now)
                if claim:
                    self._claim(self._models[model_id], now)
        if closed:  # closed while loading: nobody would ever unload it
            model.close()
            raise ModelClosedError(f"model '{model_id}' cannot be loaded: the model pool is closed")
        return model

    def _make_room(self, model_id: str, replaced: _Entry | None) -> list[Model] | None:
        """Under the lock: take out of the pool the models that must go before ``model_id`` loads (the
        old copy it replaces, and the least recently used idle ones past ``max_loaded``) and return
        them, to be closed outside the lock; None, leaving the pool as it is, while a model that must go
        has requests running or queued (unloading it would end them as cancelled)."""
        going = []
        if replaced is not None:
            if self._in_use(replaced):
                return None
            going.append(model_id)
        if self.max_loaded is not None:
            # loads in progress count: their room was taken when they started
            need = len(self._models) - len(going) + len(self._pending) + 1 - self.max_loaded
            if need > 0:
                idle = [mid for mid in self._models  # least recently used first
                        if mid != model_id and not self._in_use(self._models[mid])]
                if len(idle) < need:
                    return None
                going += idle[:need]
        freed = [self._models.pop(mid).model for mid in going]
        if freed:
            self._changed.notify_all()
        return freed

    def get(self, model_id: str, *, claim: bool = False) -> Model:
        """The loaded model; marks it as used (``claim``: held for a request about to be submitted, as
        :meth:`load`'s). Raises ModelNotFoundError."""
        with self._lock:
            return self._touch(model_id, claim)

    def _touch(self, model_id: str, claim: bool = False) -> Model:
        entry = self._models.get(model_id)
        if entry is None:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.last_used = time.monotonic()
        if claim:
            self._claim(entry, entry.last_used)
        self._models.move_to_end(model_id)
        return entry.model

    @staticmethod
    def _submitted(model: Model) -> int:
        return model.metrics().get("requests_total", 0)

    def _claim(self, entry: _Entry, now: float) -> None:
        if "requests_total" not in entry.model.metrics():
            return  # no generation engine (an embedding model): no submit would ever end the claim
        if entry.claims == 0 or now >= entry.claim_until:
            entry.claims, entry.claim_base = 0, self._submitted(entry.model)
        entry.claims += 1
        entry.claim_until = now + CLAIM_GRACE_S

    def _in_use(self, entry: _Entry) -> bool:
        """Under the lock: whether unloading the model now would fail a request — one running or queued, or
        one it was handed out for (``claim``) and not submitted yet."""
        if entry.model.busy:
            return True
        if entry.claims:
            if time.monotonic() < entry.claim_until and self._submitted(entry.model) < entry.claim_base + entry.claims:
                return True
            entry.claims = 0  # all submitted (and ended), or lapsed
        return False

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
        """Unload now: requests running on the model end as ``cancelled`` (an admin's stop);
        :meth:`unload_when_idle` lets them finish."""
        with self._changed:
            entry = self._models.pop(model_id, None)
            self._changed.notify_all()  # a load waiting for room may go ahead
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
            # running requests only, not hand-outs (claims): this is a client's explicit "unload", and a claim
            # whose request failed before its submit would hold the model for CLAIM_GRACE_S
            idle = not entry.model.busy
            if idle:
                del self._models[model_id]
                self._changed.notify_all()
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
                elif self._in_use(e):
                    continue  # handed out for a request not submitted yet
                elif now - e.last_used >= limit:
                    expired.append(self._models.pop(mid).model)
            if expired:
                self._changed.notify_all()
        for m in expired:
            m.close()
        return [m.id for m in expired]

    def close(self) -> None:
        """Unload every model (running requests end as ``cancelled``: the pool is shutting down); loads
        waiting for room fail with ModelClosedError now rather than at their timeout."""
        with self._changed:
            self._closed.set()
            models = [e.model for e in self._models.values()]
            self._models.clear()
            self._changed.notify_all()
        for m in models:
            m.close()

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: The old name of :class:`ModelPool`, kept for a release.
Engine = ModelPool
