"""``jan.ModelPool``: several models loaded by id, with an LRU bound and an idle keep-alive.

``jan.Engine`` is the old name of the same class, kept as an alias for a release.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from jan.engine.gguf_file import file_path
from jan.engine.model import _LOAD_OPTION_NAMES, LOAD_OPTION_DEFAULTS, Model, check_load_options
from jan.engine.params import (check_flag, check_seconds, model_id_text, option_refusal, speculative_mode,
                               type_refusal)
from jan.engine.preflight import check_load
from jan.errors import ModelClosedError, ModelNotFoundError, QueueFullError

log = logging.getLogger("jan.engine")

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


@dataclass(eq=False)
class Turn:
    """A request's place in the pool's arrival order (:meth:`ModelPool.turn`): taken when the request arrives,
    before anything it waits on, so that a load waiting for room and the hand-outs of the model it unloads are
    served in the order their requests came — not in the order they happened to reach the pool."""

    model_id: str
    seq: int


@dataclass
class _Entry:
    model: Model
    options: dict
    loaded_at: float
    last_used: float
    keep_alive: float | None = None  # this model's own idle limit (seconds, inf: forever); None: the engine's
    # hand-outs (claim=True) whose requests were not begun yet: the requests the model began (Model.activity:
    # generations submitted, embeddings and holds begun) must reach claim_base + claims for all of them to be in
    # (then the model is busy, or done with them)
    claims: int = 0
    claim_base: int = 0
    claim_until: float = 0.0  # monotonic time the claims lapse at, submitted or not
    # the turn (seq) of the earliest waiting load that unloads this model once it is idle: hand-outs for requests
    # that came after that load are refused meanwhile (they queue behind it), so a steady stream of them cannot
    # keep it busy forever; None: not on its way out
    drain_for: int | None = None


class ModelPool:
    """Holds loaded models by id (a pool of loaded models, not an engine: each model runs its own).

    ``max_loaded`` bounds how many stay loaded: loading one more unloads the
    least recently used idle one. A model with running or queued requests is
    never unloaded to make room (nor when its keep-alive expires, nor to be
    loaded again with other options): the load waits until one is idle, up to
    ``room_timeout`` seconds, then raises :class:`ModelPoolBusyError`. Loads
    waiting for room are served first come, first served (as Ollama's
    scheduler): the first one picks the least recently used model(s) to
    unload, which finish their running requests but are handed out no more to
    requests that came after it (:meth:`get` with ``claim`` refuses them,
    :meth:`load` queues them behind it, and they load the model again in their
    turn); the other loaded models keep serving. Only :meth:`unload` (and
    :meth:`close`) cancel running requests. ``keep_alive`` (seconds) unloads a
    model that has had no request for that long; ``None`` keeps models
    loaded until unloaded. :meth:`set_keep_alive` gives one model its own
    limit (as Ollama's per-request ``keep_alive`` does). Thread-safe.
    """

    def __init__(self, *, max_loaded: int | None = None, keep_alive: float | None = None,
                 reap_interval: float = 1.0, room_timeout: float = ROOM_TIMEOUT_S, **default_options):
        if max_loaded is not None and (isinstance(max_loaded, bool) or not isinstance(max_loaded, int)
                                       or max_loaded < 1):
            raise option_refusal("max_loaded", "max_loaded: must be an integer >= 1 (or None: no bound), got "
                                 f"{max_loaded!r}")
        # infinity means something for these two (forever: never unload when idle, wait as long as it takes)
        keep_alive = None if keep_alive is None else check_seconds("keep_alive", keep_alive)
        room_timeout = check_seconds("room_timeout", room_timeout)
        reap_interval = check_seconds("reap_interval", reap_interval, positive=True, finite=True)
        # a name neither the pool's nor a load option's, with the one it likely meant of either (max_loadd)
        unknown = sorted(set(default_options) - _LOAD_OPTION_NAMES)
        if unknown:
            from jan.near_names import with_guess

            names = sorted({"max_loaded", "keep_alive", "reap_interval", "room_timeout", *_LOAD_OPTION_NAMES})
            raise type_refusal(unknown[0], f"ModelPool() got unknown keyword argument(s): "
                               f"{', '.join(with_guess(n, names) for n in unknown)} (neither the pool's own nor a "
                               "load option of jan.Model)")
        # every load gets these: a bad one is refused now, not by each load
        check_load_options({**LOAD_OPTION_DEFAULTS, **default_options})
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
        # arrival order: turns not handed their model yet (seq -> model id), and the loads among them that wait
        # for room or for their turn (seq -> model id); the earliest waiting load is the one that makes room
        self._seqs = itertools.count()
        self._arrived: dict[int, str] = {}
        self._waiting: dict[int, str] = {}
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

    @contextlib.contextmanager
    def turn(self, model_id: str) -> Iterator[Turn]:
        """A request for ``model_id`` arrives: its place in line, for :meth:`get` and :meth:`load` (``turn=``).
        Take it before anything the request waits on (a server's own per-model lock): while it is held, a load
        that came later never unloads the model before it is handed out, and one that came earlier gets the
        room first. Without a turn, a request's place is the moment it calls :meth:`get` or :meth:`load`."""
        model_id_text(model_id, empty=True)  # (as load()'s: the pool's keys are model ids)
        with self._lock:
            self._check_open(model_id)
            turn = self._arrive(model_id)
        try:
            yield turn
        finally:
            with self._changed:
                self._leave(turn)

    def _arrive(self, model_id: str) -> Turn:
        turn = Turn(model_id, next(self._seqs))
        self._arrived[turn.seq] = model_id
        return turn

    def _leave(self, turn: Turn) -> None:
        """Under the lock: the turn was served (or gave up); a load waiting behind it may use its model now."""
        if self._arrived.pop(turn.seq, None) is not None:
            self._changed.notify_all()

    def load(self, model_id: str, path: str, *, claim: bool = False, turn: Turn | None = None, **options) -> Model:
        """Load (or return the already loaded) model under ``model_id``.

        ``claim``: the caller is about to submit a request to it (a server handing the model to a request):
        it is held as if that request were running until one is submitted, or :data:`CLAIM_GRACE_S` pass —
        otherwise a load of another model could unload it in between, and the request would fail.
        ``turn``: the request's place in line (:meth:`turn`); by default, now.

        When the pool is full, the least recently used idle model is unloaded first; while every loaded
        model has requests running or queued, this waits (at most ``room_timeout`` seconds, then
        :class:`ModelPoolBusyError`) rather than cut them off, and the model it will unload takes no request
        that came after this load. A model loaded under the same id with other options is replaced the same
        way, once its own requests end. A load of a model on its way out for an earlier load waits behind that
        one and loads it again. Loads that wait are served in the order they came.

        A load that cannot succeed — a bad option, a missing or damaged file (the weights, ``draft_model``,
        ``mmproj``), KV cache types the model cannot hold — raises before any model is unloaded for it
        (:func:`jan.engine.preflight.check_load`). One that fails after that anyway (out of memory, weights
        llama.cpp refuses) loads the models it unloaded for it again — same file, options and keep-alive — and
        then raises its own error unchanged (a model that cannot be loaded again is logged, not raised)."""
        # the pool's key: a model loaded under None or "" was kept under it while the Model took its file's name
        model_id_text(model_id)  # (a lone surrogate: refused here, not at the first log line or answer naming it)
        claim = check_flag("claim", claim)  # (claim="no" held the model as claimed)
        path = file_path(path, "path")  # str(None) was a file named 'None'
        self._check_open(model_id)  # before the file checks: a closed pool is the answer whatever the file
        if not self._holds(model_id, path, options):
            check_load(path, {**self.default_options, **options})  # slow (reads headers): outside the lock
        deadline = time.monotonic() + self.room_timeout
        with self._changed:
            mine = turn if turn is not None else self._arrive(model_id)
            self._check_turn(mine, model_id)
            try:
                got = self._wait_for_turn(model_id, path, options, claim, mine, deadline)
            finally:
                self._waiting.pop(mine.seq, None)
                self._undrain(mine.seq)
                if turn is None:
                    self._leave(mine)
                self._changed.notify_all()  # the next load in line goes ahead
            if isinstance(got, Model):
                return got
            self._pending.add(model_id)
        try:
            for _, e in got:
                e.model.close()  # idle: nothing is cancelled
            opts = {**self.default_options, **options}
            model = Model(path, model_id=model_id, **opts)  # slow: outside the lock
        except BaseException as exc:
            # What the checks before could not foresee (out of memory, weights llama.cpp refuses). Unloading only
            # after the new model loaded would spare this, but the room is made first on purpose: the bound stands
            # for memory, and both models at once is the peak it is there to prevent. So the models unloaded for
            # this load are loaded again instead (an interrupt, no Exception, does not wait for that).
            if not got or not isinstance(exc, Exception):
                with self._changed:
                    self._pending.discard(model_id)
                    self._changed.notify_all()  # the room it held is free again
            if got:  # say what it cost
                log.warning("loading model '%s' failed after %s unloaded to make room for it: %s", model_id,
                            ", ".join(f"'{mid}' was" for mid, _ in got), exc)
                if isinstance(exc, Exception):
                    self._restore(model_id, got)
            raise  # the load's own error, whatever became of the restore
        with self._changed:
            self._pending.discard(model_id)
            self._changed.notify_all()
            closed = self._closed.is_set()
            if not closed:
                now = time.monotonic()
                self._models[model_id] = _Entry(model, options, now, now)
                if claim:
                    self._claim(self._models[model_id], now)
                self._leave(mine)  # handed out: a load that came after it may unload it once it is idle
        if closed:  # closed while loading: nobody would ever unload it
            model.close()
            self._check_open(model_id)
        return model

    def _restore(self, model_id: str, unloaded: list[tuple[str, _Entry]]) -> None:
        """The load of ``model_id`` failed after ``unloaded`` left the pool to make room for it: load them again as
        they were (file, options, keep-alive, last use), one by one, so that a failed load costs no working model.

        The room that load held passes to them at once, under the lock: their ids are pending while they load, so
        that a request for one waits here for it (as for any load under way: no copy of its own, no error) and no
        other load takes the room meanwhile. One loaded again meanwhile by a request of its own is left as it is;
        one that cannot be loaded again (no room left, out of memory) is logged. Raises nothing but an interrupt."""
        with self._changed:
            self._pending.discard(model_id)
            room = math.inf if self.max_loaded is None else self.max_loaded - len(self._models) - len(self._pending)
            back: list[tuple[str, _Entry]] = []
            for mid, entry in reversed(unloaded):  # the most recently used first, should the room fall short
                if self._closed.is_set() or mid in self._models or mid in self._pending:
                    continue  # closed meanwhile, or loaded again by a request of its own
                if len(back) < room:
                    back.append((mid, entry))
                else:
                    log.error("model '%s', unloaded to make room for '%s', is not loaded again: the pool is full",
                              mid, model_id)
            self._pending.update(mid for mid, _ in back)
            self._changed.notify_all()  # the room the failed load held is taken by them, or free
        left = dict(back)
        try:
            for mid, entry in back:
                model = None
                try:
                    model = Model(entry.model.path, model_id=mid, **{**self.default_options, **entry.options})
                except Exception as exc:  # noqa: BLE001 - logged: the failed load's own error is the one raised
                    log.error("model '%s', unloaded to make room for '%s', could not be loaded again: %s", mid,
                              model_id, exc)
                with self._changed:
                    del left[mid]
                    self._pending.discard(mid)
                    self._changed.notify_all()  # a request waiting for it is handed it; a load, the room
                    closed = self._closed.is_set()
                    if model is not None and not closed:
                        entry.model, entry.loaded_at = model, time.monotonic()
                        entry.claims, entry.claim_until, entry.drain_for = 0, 0.0, None
                        self._models[mid] = entry
                        # the least recently used first, as it was among the models free to go
                        self._models.move_to_end(mid, last=False)
                if model is not None:
                    if closed:  # closed while loading: nobody would ever unload it
                        model.close()
                    else:
                        log.info("model '%s' loaded again after the load of '%s' it was unloaded for failed", mid,
                                 model_id)
        finally:
            if left:  # interrupted: the room stays with nobody
                with self._changed:
                    self._pending.difference_update(left)
                    self._changed.notify_all()

    def _check_open(self, model_id: str) -> None:
        """:class:`ModelClosedError` once the pool is closed: every call that hands out, loads, unloads or changes a
        model says so (a 503 the client may retry, as for a model unloaded under its request); the reads
        (:meth:`is_loaded`, :meth:`loaded`, :meth:`status`, :meth:`reap_idle`) answer for an empty pool, and
        :meth:`close` again does nothing. And the id itself first, as every such call takes it (a TypeError for no
        string, a BadRequestError for one holding a lone surrogate, which no answer naming it could encode)."""
        model_id_text(model_id, empty=True)
        if self._closed.is_set():
            raise ModelClosedError(f"model '{model_id}' is not available: the model pool is closed")

    @contextlib.contextmanager
    def using(self, model_id: str, path: str, **options) -> Iterator[Model]:
        """:meth:`load` the model and hold it (:meth:`Model.hold`) for the block: for a caller whose use is not
        one generation submitted at once — an embedding, tokenizing, several calls in a row — so that no load of
        another model unloads it before or while the block runs (one waits for the block to end; only
        :meth:`unload` and :meth:`close` stop it). Holds are served in line with loads, as :meth:`load` is."""
        model = self.load(model_id, path, claim=True, **options)
        with model.hold():  # ends the claim: from here the model is busy
            yield model

    def _holds(self, model_id: str, path: str, options: dict) -> bool:
        """Whether the model is loaded as asked (a load hands it out without loading anything)."""
        with self._lock:
            entry = self._models.get(model_id)
            return entry is not None and entry.model.path == path and entry.options == options

    @staticmethod
    def _check_turn(turn: Turn, model_id: str) -> None:
        if not isinstance(turn, Turn):  # (turn=5 was an AttributeError from deep in the wait)
            raise type_refusal("turn", f"turn: expected a place in line from ModelPool.turn(), got "
                               f"{type(turn).__name__}")
        if turn.model_id != model_id:
            raise option_refusal("turn", f"turn: taken for model '{turn.model_id}', not '{model_id}'")

    def _wait_for_turn(self, model_id: str, path: str, options: dict, claim: bool, turn: Turn,
                       deadline: float) -> Model | list[tuple[str, _Entry]]:
        """Under the lock: wait until the model is loaded and may be handed to ``turn`` (returned, handed out),
        or until this load is first in line and has room (the models to close before it loads, returned with
        their ids and entries: what it takes to load them again should the load fail)."""
        while True:
            self._check_open(model_id)
            entry = self._models.get(model_id)
            if (entry is not None and entry.model.path == path and entry.options == options
                    and not self._refused(entry, turn.seq)):
                model = self._touch(model_id, claim)
                self._leave(turn)
                return model
            if model_id in self._pending:
                # a load of this id is under way: wait for it rather than for room (no place in line is held,
                # and its turn, still out, keeps the model from a later load until it is handed out here)
                self._waiting.pop(turn.seq, None)
            else:
                if turn.seq not in self._waiting:
                    self._waiting[turn.seq] = model_id
                    self._changed.notify_all()  # it joins the line
                if min(self._waiting) == turn.seq:
                    freed = self._make_room(model_id, entry, turn.seq)
                    if freed is not None:
                        return freed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelPoolBusyError(f"model '{model_id}' cannot be loaded now: {self._why_busy(model_id, entry, turn)}; "
                                         f"try again when they end")
            self._changed.wait(min(_ROOM_POLL_S, remaining))

    def _why_busy(self, model_id: str, entry: _Entry | None, turn: Turn) -> str:
        if model_id in self._pending:
            return f"a load of it already under way did not end within {self.room_timeout:g} s"
        if min(self._waiting) != turn.seq:
            return (f"the loads ahead of it in line (first come, first served) were not all served within "
                    f"{self.room_timeout:g} s")
        if entry is not None and not self._refused(entry, turn.seq) and self._in_use(entry):
            return (f"it is loaded with other options and its running requests went on for "
                    f"{self.room_timeout:g} s (they are never cut off to load it again)")
        return (f"{self.max_loaded} model(s) may be loaded at once and every loaded one kept "
                f"running requests for {self.room_timeout:g} s (they are never cut off to make room)")

    def _refused(self, entry: _Entry, seq: int) -> bool:
        """Under the lock: whether the model is on its way out for a load that came before the request of turn
        ``seq`` (that request waits behind the load, then loads the model again)."""
        return entry.drain_for is not None and entry.drain_for in self._waiting and seq > entry.drain_for

    def _free(self, model_id: str, entry: _Entry, seq: int) -> bool:
        """Under the lock: whether the load of turn ``seq`` may unload this model now: nothing runs on it, and no
        request that came before that load is on its way to it (it was there first)."""
        if self._in_use(entry):
            return False
        return not any(s < seq and mid == model_id for s, mid in self._arrived.items())

    def _make_room(self, model_id: str, replaced: _Entry | None, seq: int) -> list[tuple[str, _Entry]] | None:
        """Under the lock, for the load first in line (turn ``seq``): take out of the pool the models that must
        go before ``model_id`` loads (the old copy it replaces, and the least recently used free ones past
        ``max_loaded``) and return them, to be closed outside the lock; None, leaving the pool as it is, while a
        model that must go is not free — those are marked to take no later request, so that they end."""
        going = []
        if replaced is not None:
            if not self._free(model_id, replaced, seq):
                self._drain([replaced], seq)
                return None
            going.append(model_id)
        if self.max_loaded is not None:
            # loads in progress count: their room was taken when they started
            need = len(self._models) - len(going) + len(self._pending) + 1 - self.max_loaded
            if need > 0:
                others = [(mid, e) for mid, e in self._models.items() if mid != model_id]  # least recently used first
                free = [mid for mid, e in others if self._free(mid, e, seq)]
                if len(free) < need:
                    # those on their way out already first (their refusals stand), then the least recently used
                    busy = sorted((e for mid, e in others if mid not in free), key=lambda e: e.drain_for is None)
                    self._drain(busy[:need - len(free)], seq)
                    return None
                going += free[:need]
        freed = [(mid, self._models.pop(mid)) for mid in going]
        if freed:
            self._changed.notify_all()
        return freed

    def _drain(self, entries: list[_Entry], seq: int) -> None:
        """Under the lock: these models go once idle, for the load of turn ``seq``; requests that came after it
        are no longer handed them."""
        for e in entries:
            # a mark stands only for a load still waiting that came earlier (it has the older claim to the room)
            if e.drain_for is None or e.drain_for not in self._waiting or e.drain_for > seq:
                e.drain_for = seq
                self._changed.notify_all()  # whoever watches the pool sees it go

    def _undrain(self, seq: int) -> None:
        """Under the lock: the load of turn ``seq`` is no longer waiting; the models it marked serve again (a load
        still waiting marks them again if it needs them)."""
        for e in self._models.values():
            if e.drain_for == seq:
                e.drain_for = None

    def get(self, model_id: str, *, claim: bool = False, turn: Turn | None = None) -> Model:
        """The loaded model; marks it as used (``claim``: held for a request about to be submitted, as
        :meth:`load`'s; ``turn``: that request's place in line, by default now). Raises ModelNotFoundError,
        also for a claim on a model on its way out for a load that came before the request: that request
        waits in line with :meth:`load` (which loads the model again in its turn)."""
        claim = check_flag("claim", claim)
        with self._changed:
            self._check_open(model_id)
            if turn is not None:
                self._check_turn(turn, model_id)
            entry = self._models.get(model_id)
            if claim and entry is not None and self._refused(entry, turn.seq if turn else next(self._seqs)):
                raise ModelNotFoundError(f"model '{model_id}' is being unloaded to make room for a load that came "
                                         f"first; load it again to wait for it in line")
            model = self._touch(model_id, claim)
            if turn is not None:
                self._leave(turn)
            return model

    def _touch(self, model_id: str, claim: bool = False) -> Model:
        entry = self._models.get(model_id)
        if entry is None:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.last_used = time.monotonic()
        if claim:
            self._claim(entry, entry.last_used)
        self._models.move_to_end(model_id)
        return entry.model

    def release_claim(self, model_id: str, model: Model) -> None:
        """Give back one claim a :meth:`load` or :meth:`get` with ``claim=True`` took on ``model`` (loaded under
        ``model_id``) for a request that will not be submitted after all: its client left while the load waited for
        room, or it was refused before its submit. Without this the model stayed held as if that request were coming
        for :data:`CLAIM_GRACE_S`, and each load waiting for room (and a ``keep_alive`` 0) waited that long for
        nobody. Nothing happens when that model is no longer loaded under ``model_id`` or holds no claim; a
        ``model_id`` that is no string, or a ``model`` that is no :class:`~jan.Model`, is a TypeError naming it (as
        every method that takes an id says; a wrong argument was a claim silently kept)."""
        model_id_text(model_id, empty=True)
        if not isinstance(model, Model):
            raise type_refusal("model", f"model: expected the jan.Model that load() or get() handed out, got "
                               f"{type(model).__name__}")
        with self._changed:
            entry = self._models.get(model_id)
            if entry is None or entry.model is not model or entry.claims == 0:
                return
            entry.claims -= 1
            self._changed.notify_all()  # a load waiting for room may go ahead now

    def _claim(self, entry: _Entry, now: float) -> None:
        if entry.claims == 0 or now >= entry.claim_until:
            entry.claims, entry.claim_base = 0, entry.model.activity()[0]
        entry.claims += 1
        entry.claim_until = now + CLAIM_GRACE_S

    def _in_use(self, entry: _Entry) -> bool:
        """Under the lock: whether unloading the model now would fail a request — one running or queued (a
        generation, an embedding, any :meth:`Model.hold`), or one it was handed out for (``claim``) and not begun
        yet. One snapshot of both: a request that begins between two reads would show as neither."""
        started, busy = entry.model.activity()
        if busy:
            return True
        if entry.claims:
            if time.monotonic() < entry.claim_until and started < entry.claim_base + entry.claims:
                return True
            entry.claims = 0  # all begun (and ended), or lapsed
        return False

    @staticmethod
    def _running(entry: _Entry) -> bool:
        """Under the lock: whether a request is queued or running on the model (``Model.busy``: the engine counts a
        request taken from its queue as queued until it holds its slot, so no moment shows it as neither; an
        embedding or a :meth:`Model.hold` counts from its start to its end)."""
        return entry.model.busy

    def set_keep_alive(self, model_id: str, seconds: float | None) -> None:
        """How long this loaded model stays loaded once idle, from its last use on: ``seconds``
        (0: unload as soon as no request runs, ``math.inf``: until unloaded), or ``None`` for the
        pool's ``keep_alive`` again. Counts as a use. Raises ModelNotFoundError if not loaded."""
        if seconds is not None:
            seconds = check_seconds("keep_alive", seconds)
        with self._lock:
            self._check_open(model_id)
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
            self._check_open(model_id)
            entry = self._models.pop(model_id, None)
            self._changed.notify_all()  # a load waiting for room may go ahead
        if entry is None:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.model.close()

    def unload_when_idle(self, model_id: str) -> bool:
        """Unload the model now if no request runs on it nor was handed it (True); else once the last one ends
        (False): its keep-alive becomes 0, and the reaper unloads it when idle — running requests are never
        cancelled (Ollama's ``keep_alive: 0``; :meth:`unload` cancels them). Raises ModelNotFoundError
        if it is not loaded."""
        with self._lock:
            self._check_open(model_id)
            entry = self._models.get(model_id)
            if entry is None:
                raise ModelNotFoundError(f"model '{model_id}' is not loaded")
            # running requests and hand-outs (claims) alike: a request handed the model before this unload is one
            # that runs on it (Ollama serves it), and closing the model between its hand-out and its submit failed
            # it with a 503. A claim whose request was refused before its submit defers the unload until it
            # lapses (CLAIM_GRACE_S), then the reaper unloads it; services hold the model (Model.hold) for work
            # that submits nothing (a render, an infill's tokens), which ends their claims at once
            idle = not self._in_use(entry)
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

    def peek(self, model_id: str) -> Model | None:
        """The loaded model, or None; unlike :meth:`get`, not counted as a use (a monitor polling ``GET /slots``
        does not keep an idle model loaded). A ``model_id`` that is no string is a TypeError naming it, as in every
        method that takes one (it was None: "not loaded", for an id that can never be)."""
        model_id_text(model_id, empty=True)
        with self._changed:
            entry = self._models.get(model_id)
            return entry.model if entry is not None else None

    def is_loaded(self, model_id: str) -> bool:
        model_id_text(model_id, empty=True)
        with self._lock:
            return model_id in self._models

    def loaded(self) -> list[str]:
        """Ids of loaded models, least recently used first."""
        with self._lock:
            return list(self._models)

    def status(self) -> dict[str, dict]:
        """Per model: path, slots busy/total, queue depth, memory, idle time, keep-alive expiry, and whether it is
        ``unloading`` (for a load waiting in line: it finishes its requests and takes no later one)."""
        now = time.monotonic()
        with self._lock:
            entries = list(self._models.items())
            # on its way out for a load waiting in line: it finishes what runs and takes no later request
            unloading = {mid for mid, e in entries if e.drain_for is not None and e.drain_for in self._waiting}
        out = {}
        for mid, e in entries:
            m = e.model.metrics()
            idle = 0.0 if e.model.busy else now - e.last_used
            limit = self._limit(e)
            out[mid] = {
                "id": mid,
                "path": e.model.path,
                "state": "loaded",
                "unloading": mid in unloading,
                "slots_busy": m.get("slots_busy", 0),
                "slots_total": m.get("slots_total", 0),
                "queue_depth": m.get("queue_depth", 0),
                "memory_bytes": e.model.info.size_bytes + e.model.projector_memory_bytes,
                "ftype": e.model.info.ftype,  # the weights' type as llama.cpp names it (llama-server's model_ftype)
                "projector_memory_bytes": e.model.projector_memory_bytes,
                # the projector's bounds on one image's tokens as loaded (None: its own, or no projector)
                "image_min_tokens": e.model.image_min_tokens,
                "image_max_tokens": e.model.image_max_tokens,
                "capabilities": e.model.capabilities,
                "kv_cache_bytes": e.model.kv_cache_bytes,
                **_speed_settings(e.model, e.options),
                "draft_model": e.model.draft_model,
                "draft_kv_cache_bytes": e.model.draft_kv_cache_bytes,
                "draft_memory_bytes": e.model.draft_memory_bytes,  # the draft model's weights
                "lora": e.model.lora_adapters,  # its LoRA adapters and their default scales now
                "n_ctx": e.model.n_ctx,
                # the default context the fit to free memory shrank n_ctx from (None: not shrunk, or n_ctx given)
                "n_ctx_fitted_from": _fitted_from(e.model),
                "adaptive_threads": e.model.adaptive_threads,
                "idle_seconds": idle,
                "expires_in": None if limit is None else max(0.0, limit - idle),
                "options": dict(e.options),  # the load options it was loaded with
                "n_gpu_layers": getattr(e.model, "n_gpu_layers", 0),  # as llama.cpp took them ("auto" resolved)
                "offload": getattr(getattr(e.model, "offload", None), "reason", None),
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
                if self._running(e):
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

    def __reduce__(self):
        # a copy shared the loaded models (and the reaper), so closing it unloaded the original's
        raise TypeError("a jan.ModelPool cannot be copied or pickled: it holds loaded models")

    def __repr__(self) -> str:
        # (the default <... object at 0x...> said nothing of what the pool holds)
        with self._lock:
            loaded = list(self._models)
        state = " closed" if self._closed.is_set() else ""
        return (f"<jan.ModelPool loaded={loaded!r} max_loaded={self.max_loaded!r} "
                f"keep_alive={self.keep_alive!r}{state}>")

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: The old name of :class:`ModelPool`, kept for a release.
Engine = ModelPool


def _fitted_from(model) -> int | None:
    """The default context ``model``'s fit to free memory shrank its ``n_ctx`` from; None when it was not shrunk."""
    fit = getattr(model, "context_fit", None)
    return fit.wanted if fit is not None and fit.fitted else None


def _speed_settings(model, options: dict) -> dict:
    """What ``model`` was loaded with that its KV size and drafting depend on, as the status tells it: its KV cache
    types (``cache_type_k``/``cache_type_v``; None for a model without a generation context, one that only embeds)
    and its requests' default ``speculative`` mode ("none", "ngram" or "draft"). The KV size alone did not say
    which types a model.json, a flag or the default had given it."""
    generates = not (getattr(model, "embedding_only", False) or getattr(model, "vocab_only", False))
    mode = options.get("speculative")
    if mode is None:
        mode = "draft" if getattr(model, "draft_model", None) else "none"
    return {"cache_type_k": str(options.get("cache_type_k") or "f16").lower() if generates else None,
            "cache_type_v": str(options.get("cache_type_v") or "f16").lower() if generates else None,
            "speculative": speculative_mode(mode) if generates else None}
