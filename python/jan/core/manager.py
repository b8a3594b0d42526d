"""The extension manager: lifecycle, persistence and lookup of extensions.

Finding them is :mod:`jan.core.discovery`, their load order :mod:`jan.core.dependencies`;
mounting their HTTP routes is the server's (``jan.server.mount``).

Why not pluggy: pluggy calls hooks (one call fanned out to every plugin, or the first
result), which is not what jan's extensions need — async ``on_load``/``on_unload`` with
timeouts, enabling and disabling at runtime with persisted state, dependency order with
cycle reports, API-version checks, and one chosen implementation per typed interface
(preferred, then priority). Wrapping pluggy would add a layer and remove none of that code;
entry-point discovery, the part it does share, is 30 lines of ``importlib.metadata``.

Inspired by VS Code's extension host: extensions are found through a
registry (the ``jan.extensions`` entry-point group), activated in dependency
order, and a broken one is recorded and skipped while the rest of jan runs.

Files (in the data folder)::

    extensions/extensions.json          {"version": 1,
                                         "extensions": {"<name>": {"enabled": true, "version": "1.0.0"}},
                                         "preferred": {"conversational": "<name>", "inference:llama.cpp": "<name>"}}
    settings/<name>/settings.json       the values a user set for that extension

Both are written atomically (temp file + fsync + ``os.replace``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from jan.errors import JanError
from jan.json_text import json_type_name
from .held import Held
from .bounded import HookTimeoutError, call_bounded, wait_bounded
from .dependencies import dependency_order
from .discovery import Candidate, entry_point_candidates, instantiate
from .events import ExtensionFailed, ExtensionLoaded, ExtensionUnloaded, LocalEventBus
from .exceptions import (ExtensionError, ExtensionLoadingError, ExtensionNotFoundError, SettingsSchemaError,
                         describe_failed, describe_loading)
from .extension import BUILTIN_PRIORITY, Extension, ExtensionContext, RouteSpec, SubAppSpec
from .fs import LocalFileSystem, set_aside
from .interfaces.base import ExtensionInterface
from .interfaces.inference import InferenceExtension
from .interfaces.modules import EventBus
from .settings import ExtensionSettings, JsonSettingsStore
from .version import API_VERSION, check_api

__all__ = ["ENTRY_POINT_GROUP", "Admission", "ExtensionManager", "ExtensionRecord", "ExtensionState"]

logger = logging.getLogger("jan.core.manager")

T = TypeVar("T")

#: The entry-point group jan discovers extensions in.
ENTRY_POINT_GROUP = "jan.extensions"
#: Built-in extensions are jan's own entry points into this package.
BUILTIN_MODULE_PREFIX = "jan.extensions."
BUILTIN_DIST = "jan"

STATE_FILE = "extensions/extensions.json"
STATE_VERSION = 1

#: What the host does with the routes and sub-applications of an extension whose ``on_load`` succeeded, before it
#: counts as loaded: ``await admit(name, routes, subapps)`` is None once they are served, or why they cannot be
#: (see :meth:`ExtensionManager.set_admission`).
Admission = Callable[[str, list[RouteSpec], list[SubAppSpec]], Awaitable["str | None"]]

#: ids of the managers whose lock the current context holds (re-entry detection).
_BUSY: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("jan_core_manager_busy", default=frozenset())

_NAME_RE = re.compile(r"^(@[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def declaration_problem(extension: Any) -> str | None:
    """What is wrong with an extension's declared class attributes (``version``, ``description``, ``depends_on``,
    ``priority``, ``enabled_by_default``; ``requires_api`` is :func:`check_api`'s, state ``incompatible``), or
    None. One of the wrong type was taken as given: ``depends_on = "base"`` became the dependencies ``b``, ``a``, ``s``, ``e``; a ``priority`` of
    ``"high"`` a TypeError in every choice between implementations of its interface (a 500 naming nobody);
    ``version = 3`` a number where the API promises text."""

    def said(value: Any) -> str:
        return f"{value!r} (of type {type(value).__name__})"

    version, description = getattr(extension, "version", None), getattr(extension, "description", "")
    depends_on = getattr(extension, "depends_on", ())
    priority, enabled = getattr(extension, "priority", 0), getattr(extension, "enabled_by_default", True)
    if version is not None and not isinstance(version, str):
        return f"invalid declaration: version must be text such as '1.0.0', not {said(version)}"
    if not isinstance(description, str):
        return f"invalid declaration: description must be text, not {said(description)}"
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, (tuple, list, frozenset, set)) \
            or not all(isinstance(d, str) for d in depends_on):
        return f"invalid declaration: depends_on must be a tuple of extension names, not {said(depends_on)}"
    if isinstance(priority, bool) or not isinstance(priority, (int, float)):
        return f"invalid declaration: priority must be a number, not {said(priority)}"
    if not isinstance(enabled, bool):
        return f"invalid declaration: enabled_by_default must be true or false, not {said(enabled)}"
    return None


class ExtensionState:
    """Values of :attr:`ExtensionRecord.state`."""

    #: on_load succeeded; the extension is active.
    LOADED = "loaded"
    #: enabled and being loaded now (its on_load runs, or it waits for a dependency's); the rest of jan
    #: does not wait for it. Ends loaded, or failed when ``on_load`` raises or passes the load timeout.
    LOADING = "loading"
    #: turned off by the user (persisted in extensions.json).
    DISABLED = "disabled"
    #: could not be imported, created or loaded, or a dependency is missing/failed/cyclic; ``error`` says why.
    FAILED = "failed"
    #: its ``requires_api`` does not accept this jan's API version; ``error`` says so.
    INCOMPATIBLE = "incompatible"
    #: enabled and fine, but not loaded right now (before ``start()`` or after ``stop()``).
    UNLOADED = "unloaded"


@dataclass
class ExtensionRecord:
    """What the manager knows about one extension (a snapshot; ``list()`` returns fresh ones)."""

    name: str
    version: str | None
    types: tuple[str, ...]
    enabled: bool
    state: str
    error: str | None = None
    description: str = ""
    depends_on: tuple[str, ...] = ()
    requires_api: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``types`` and ``depends_on`` as lists)."""
        data = asdict(self)
        data["types"] = list(self.types)
        data["depends_on"] = list(self.depends_on)
        return data


@dataclass(eq=False)
class _Entry:
    name: str
    source: str
    instance: Extension | None = None
    broken: str | None = None  # import/construct/name problem: permanent for this process
    incompatible: str | None = None
    error: str | None = None  # transient failure (on_load, dependency, cycle)
    error_kind: str | None = None  # "load" | "dependency" | "cycle"
    ctx: ExtensionContext | None = None
    settings: ExtensionSettings | None = None
    dist_version: str | None = None
    loading: asyncio.Task[None] | None = None  # its load (waiting for dependencies, then on_load), while it runs
    begun: int = 0  # when its latest load began, counted: its place in the load order
    #: the entry point's name that provided it, when that is the extension's own name (None: registered, or an
    #: entry point named otherwise): such an entry point keeps the name against one named otherwise
    named_by_entry_point: bool = False

    @property
    def loaded(self) -> bool:
        return self.ctx is not None

    @property
    def pending(self) -> bool:
        """Being loaded now: neither loaded nor failed yet."""
        return self.loading is not None and self.ctx is None and self.error is None

    @property
    def depends_on(self) -> tuple[str, ...]:
        if self.instance is None:
            return ()
        deps = self.instance.depends_on
        return (deps,) if isinstance(deps, str) else tuple(deps or ())


def _is_builtin(candidate: Candidate) -> bool:
    """Whether an entry point is one of jan's own (a module in ``jan.extensions`` of the ``jan`` distribution)."""
    return candidate.source.split(" = ", 1)[-1].startswith(BUILTIN_MODULE_PREFIX) and (
        "(" not in candidate.source or f"({BUILTIN_DIST} " in candidate.source)


def _load_level(ext: Extension) -> int:
    """The log level of an extension's loaded and unloaded lines: DEBUG for jan's own (seven lines at every start
    that say nothing a user did; ``jan serve``'s start is what it serves, where, and the models), INFO for a
    third-party one, which the user installed and wants to see taken up."""
    builtin = type(ext).__module__.startswith(BUILTIN_MODULE_PREFIX) and ext.priority == BUILTIN_PRIORITY
    return logging.DEBUG if builtin else logging.INFO


class ExtensionManager(Held):
    """Finds, orders, loads and unloads extensions; answers "who implements X".

    ``bus`` defaults to a new :class:`~jan.core.LocalEventBus`. ``discover_entry_points=False``
    limits the manager to objects given to :meth:`register` (tests); ``only_builtin=True`` discovers
    only jan's own entry points (the built-in extensions; ``jan serve --no-extensions``).
    ``load_timeout`` bounds each ``on_load`` (seconds; ``None``: no bound); an extension past it is failed.
    ``unload_timeout`` bounds each ``on_unload`` with the extension's cleanups; one past it is left behind.
    ``load_wait`` is how long :meth:`start` and :meth:`enable` wait for the loads they begin (``None``, the
    default: until all settled, as a library or a CLI command wants before it uses them); loads still running
    then go on in the background, state ``"loading"``, so that one extension whose ``on_load`` hangs does not
    hold up a server (``jan serve`` waits :data:`jan.server.app.SERVE_LOAD_WAIT` for third-party extensions,
    and always for jan's own: :meth:`builtin_names`).

    Typical use::

        manager = ExtensionManager(data_folder)
        await manager.start()
        store = manager.get(ConversationalExtension)
        engine = manager.get_inference(model["engine"])
        ...
        await manager.stop()
    """

    held = "the loaded extensions, their tasks and the event bus"

    def __init__(
        self,
        data_folder: str | Path,
        bus: EventBus | None = None,
        *,
        discover_entry_points: bool = True,
        only_builtin: bool = False,
        entry_point_group: str = ENTRY_POINT_GROUP,
        api_version: str = API_VERSION,
        load_timeout: float | None = 60.0,
        unload_timeout: float | None = 15.0,
        load_wait: float | None = None,
        read_only: bool = False,
    ):
        self.fs = LocalFileSystem(data_folder)
        #: a manager that only lists (`jan extensions list`): it records nothing in extensions.json (new extensions
        #: are enabled by default all the same) and leaves a damaged one where it is (a listing wrote the file, or
        #: set the user's aside)
        self.read_only = read_only
        #: what a read-only manager found wrong with extensions.json, left in place (None: nothing): its listing
        #: shows every extension as the defaults have it, which the CLI says why
        self.state_problem: str | None = None
        self.data_folder: Path = self.fs.root
        self.bus: EventBus = bus if bus is not None else LocalEventBus()
        self.settings_store = JsonSettingsStore(self.fs)
        self.api_version = api_version
        self.entry_point_group = entry_point_group
        self.discover_entry_points = discover_entry_points
        self.only_builtin = only_builtin
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout
        self.load_wait = load_wait
        self._pending: list[Candidate] = []
        self._entries: dict[str, _Entry] = {}
        self._load_order: list[str] = []
        self._config: dict[str, Any] = {}
        self._config_loaded = False
        self._told_config: set[str] = set()  # the problems of extensions.json already logged
        self._discovered = False
        self._started = False
        self._lock: asyncio.Lock | None = None
        self._begun = itertools.count()
        self._admit: Admission | None = None

    def __repr__(self) -> str:
        return f"<ExtensionManager {str(self.data_folder)!r} loaded={self._load_order}>"

    async def __aenter__(self) -> "ExtensionManager":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # registration and discovery --------------------------------------------------
    def register(self, extension: Any, *, name: str | None = None) -> None:
        """Add an extension explicitly (built-ins wired by hand, tests), before :meth:`start`.

        ``extension`` may be anything an entry point may name: an
        :class:`Extension` instance or subclass, a factory returning one, or
        a module with an ``extension`` / ``create_extension`` attribute.
        ``name`` labels it in records if creating it fails. Explicit
        registrations win over entry points with the same name.
        """
        if self._discovered:
            raise ExtensionError("register() extensions before discover()/start()")
        label = name or getattr(extension, "name", None) or getattr(extension, "__name__", None) or repr(extension)
        self._pending.append(Candidate(obj=extension, name=name, source=f"registered {label}"))

    def discover(self) -> None:
        """Import and create every registered and entry-point extension (once; :meth:`start` calls it).

        Nothing is loaded yet. Problems are recorded per extension.
        """
        if self._discovered:
            return
        self._discovered = True
        pending = list(self._pending)
        if self.discover_entry_points:
            found = entry_point_candidates(self.entry_point_group)
            pending.extend(c for c in found if not self.only_builtin or _is_builtin(c))
        for item in pending:
            self._add_candidate(item)
        self._load_config()
        if not self.read_only:
            self._sync_config()

    def _add_candidate(self, item: Candidate) -> None:
        hint = item.name
        try:
            obj = item.load() if item.load is not None else item.obj
        except (Exception, SystemExit) as exc:  # a module that calls sys.exit() on import ("needs foo") ends no jan
            self._add_broken(hint or "?", item, f"import failed: {type(exc).__name__}: {exc}", exc)
            return
        try:
            instance = instantiate(obj)
        except (Exception, SystemExit) as exc:
            label = hint or getattr(obj, "name", None) or getattr(obj, "__name__", None) or "?"
            self._add_broken(str(label), item, f"could not be created: {type(exc).__name__}: {exc}", exc)
            return
        name = instance.name or hint or ""
        if not instance.name:
            instance.name = name  # type: ignore[misc]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self._add_broken(str(name) or "?", item, f"invalid extension name {name!r}", None)
            return
        problem = declaration_problem(instance)
        if problem is not None:
            self._add_broken(name, item, problem, None)
            return
        if hint and hint != name and item.load is not None:
            logger.info("entry point %r provides the extension %r", hint, name)
        own_name = item.load is not None and hint == name
        taken = self._entries.get(name)
        if taken is not None and (taken.broken or taken.named_by_entry_point or not own_name
                                  or taken.source.startswith("registered ")):
            # listed (failed, saying who has the name), not only logged: an installed extension missing from
            # `jan extensions list` with no word of why is a mystery to its user
            self._add_broken(name, item, f"not loaded: the extension name {name!r} is already taken by {taken.source}",
                             None, duplicate=True)
            return
        if not instance.version and item.dist_version:
            instance.version = item.dist_version  # type: ignore[misc]
        entry = _Entry(name=name, source=item.source, instance=instance, dist_version=item.dist_version,
                       named_by_entry_point=own_name)
        if taken is not None:
            # an entry point named as the extension it provides (as the docs ask) keeps that name against one named
            # otherwise that came first (entry points come sorted by their names): `zzz-hello = ...` claiming
            # "hello" must not push the real `hello` (or a built-in, say `llamacpp`) out
            del self._entries[name]
            self._add_broken(name, Candidate(obj=None, name=None, source=taken.source),
                             f"not loaded: the extension name {name!r} is already taken by {item.source}",
                             None, duplicate=True, dist_version=taken.dist_version)
        entry.incompatible = check_api(instance.requires_api, self.api_version)
        if entry.incompatible:
            logger.warning("extension %s is incompatible: %s", name, entry.incompatible)
        self._entries[name] = entry

    def _add_broken(self, name: str, item: Candidate, message: str, exc: BaseException | None, *,
                     duplicate: bool = False, dist_version: str | None = None) -> None:
        logger.error("extension %s (%s): %s", name, item.source, message, exc_info=exc)
        if name in self._entries or duplicate:
            name = f"{name} ({item.source})"
        self._entries[name] = _Entry(name=name, source=item.source, broken=message,
                                     dist_version=dist_version or item.dist_version)

    # extensions.json -----------------------------------------------------------------
    def _load_config(self) -> None:
        if self._config_loaded:
            return
        self._config_loaded = True
        self._config = self._read_config()

    def _update_config(self, change: Callable[[dict[str, Any]], bool | None]) -> None:
        """Apply ``change`` to extensions.json as it is on disk now, under its lock, and save it (unless ``change``
        returns False). Written from this process's copy, a change another process made since it was read (the
        CLI disabling an extension beside a running server) was lost at this one's next change."""
        # (the data folder's lock of the file: another process, a `jan extensions --local` beside a server, is
        # excluded; a read-only folder, where the write fails on its own, holds it in this process only)
        with self.fs.lock(STATE_FILE):
            fresh = self._read_config()
            if change(fresh) is False:
                return
            self._config = fresh
            self._save_config()

    def _left_in_place(self, why: str) -> bool:
        """A read-only manager's answer to a damaged extensions.json (``why``: what is wrong with it): left where it
        is, logged and kept in :attr:`state_problem` for the listing to tell; False for a manager that serves,
        which sets the file aside instead."""
        if not self.read_only:
            return False
        self.state_problem = (f"{self.fs.resolve(STATE_FILE)} {why}: left in place; extensions are listed as "
                              "the defaults have them (enabled) until it is repaired or removed")
        logger.warning("%s", self.state_problem)
        return True

    def _read_config(self) -> dict[str, Any]:
        try:
            data = self.fs.read_json(STATE_FILE, default=None)
        except ValueError as exc:
            if not self._left_in_place(f"is unreadable ({exc})"):
                moved = set_aside(self.fs.resolve(STATE_FILE))
                logger.warning("%s is unreadable (%s); set aside as %s, starting from defaults", STATE_FILE, exc,
                               moved)
            data = None
        except OSError as exc:
            # there but not readable as the file (one larger than any extensions.json, a named pipe or a folder in
            # its place): as damaged as one that does not parse, set aside, not read whole or waited on; a failed
            # move (no permission) still starts jan, from the defaults (the discover it ended, with a traceback)
            if not self._left_in_place(f"cannot be read ({exc.strerror or exc})"):
                try:
                    moved = set_aside(self.fs.resolve(STATE_FILE))
                except OSError:
                    moved = None
                logger.warning("%s cannot be read (%s); set aside as %s, starting from defaults", STATE_FILE,
                               exc.strerror or exc, moved)
            data = None
        if data is not None and not (isinstance(data, dict) and isinstance(data.get("extensions", {}), dict)):
            if not self._left_in_place("has an unexpected shape"):
                moved = set_aside(self.fs.resolve(STATE_FILE))
                logger.warning("%s has an unexpected shape; set aside as %s", STATE_FILE, moved)
            data = None
        data = dict(data or {})
        data.setdefault("version", STATE_VERSION)
        for problem in _config_problems(data):
            if problem not in self._told_config:  # (read at start and again at each change: told once)
                self._told_config.add(problem)
                logger.warning("%s: %s", STATE_FILE, problem)
        data["extensions"] = {k: dict(v) for k, v in (data.get("extensions") or {}).items() if isinstance(v, dict)}
        prefs = data.get("preferred")
        data["preferred"] = ({k: v for k, v in prefs.items() if isinstance(v, str)} if isinstance(prefs, dict)
                             else {})
        return data

    def _save_config(self) -> None:
        self.fs.write_json(STATE_FILE, self._config)

    def _sync_config(self) -> None:
        """Record newly discovered extensions in extensions.json (enabled by default), and each one's version.
        What is new is judged on this process's copy, so that a start with nothing new takes no lock and writes
        nothing; it is then added to the file as it is on disk now, under its lock (:meth:`_update_config`)."""
        if self.fs.exists(STATE_FILE) and not self._config_additions(self._config):
            return

        def add(config: dict[str, Any]) -> None:
            for name, fields in self._config_additions(config).items():
                config["extensions"].setdefault(name, {}).update(fields)

        try:
            self._update_config(add)
        except OSError as exc:  # a read-only data folder must not stop jan (a missing entry is its default)
            logger.warning("could not write %s: %s", STATE_FILE, exc)

    def _config_additions(self, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per extension, what ``config`` lacks for it: ``enabled`` (its default) for one it does not list, and its
        ``version`` where that changed."""
        out: dict[str, dict[str, Any]] = {}
        for name, entry in self._entries.items():
            if entry.broken or entry.instance is None:
                continue
            item = config["extensions"].get(name)
            fields: dict[str, Any] = {}
            if item is None:
                fields["enabled"] = bool(entry.instance.enabled_by_default)
            version = entry.instance.version
            if version and (item or {}).get("version") != version:
                fields["version"] = version
            if fields:
                out[name] = fields
        return out

    def _is_enabled(self, entry: _Entry) -> bool:
        item = self._config.get("extensions", {}).get(entry.name)
        if isinstance(item, dict) and isinstance(item.get("enabled"), bool):
            return item["enabled"]
        return bool(entry.instance.enabled_by_default) if entry.instance is not None else True

    def _set_enabled(self, name: str, enabled: bool) -> None:
        self._update_config(lambda config: config["extensions"].setdefault(name, {}).update(enabled=enabled))

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Discover, then load every enabled, compatible extension in dependency order.

        Extensions load concurrently, each once the extensions it depends on are loaded, so one whose
        ``on_load`` hangs holds up only its dependents. ``start`` returns once every load settled, or
        after ``load_wait`` seconds, whichever comes first: loads still running then go on in the
        background (state ``"loading"``) and end loaded or failed within ``load_timeout``.

        Never raises because of an extension: failures are recorded (see
        :meth:`list`) and ``ExtensionFailed`` is emitted.
        """
        self.discover()
        async with self._locked():
            if self._started:
                return
            self._started = True
            for entry in self._entries.values():
                if entry.broken or entry.incompatible:
                    state = ExtensionState.FAILED if entry.broken else ExtensionState.INCOMPATIBLE
                    error = entry.broken or entry.incompatible or ""
                    await self._emit(ExtensionFailed(name=entry.name, version=_version(entry), error=error, state=state))
            loads = await self._reconcile(retry=set(self._entries))
        await self._wait(loads, self.load_wait)

    async def stop(self) -> None:
        """Stop the loads still running, then unload every loaded extension, dependents before their dependencies.

        Extensions that do not depend on each other unload side by side, so one whose ``on_unload`` hangs
        (bounded by ``unload_timeout``) holds up only the extensions it depends on.
        """
        async with self._locked():
            await self._cancel_loads([e for e in self._entries.values() if e.loading is not None])
            unloads: dict[str, asyncio.Task[None]] = {}
            for name in reversed(list(self._load_order)):
                dependents = [t for other, t in unloads.items() if name in self._entries[other].depends_on]
                unloads[name] = asyncio.create_task(self._unload_after(self._entries[name], dependents),
                                                    name=f"jan-unload-{name}")
            if unloads:
                await asyncio.wait(unloads.values())
            # The handlers the bus runs in tasks of their own (emit_nowait: the unloads' events, a thread deleted as
            # jan stopped...) end here too, bounded as an unload's: left pending, the loop that closes after the stop
            # would destroy them midway ("Task was destroyed but it is pending!"). (A bus of the host's may have no
            # drain: its handlers are its own.)
            drain = getattr(self.bus, "drain", None)
            if drain is not None:
                await wait_bounded(drain(), timeout=self.unload_timeout, what="the event handlers still running")
            self._started = False

    async def _unload_after(self, entry: _Entry, dependents: list[asyncio.Task[None]]) -> None:
        if dependents:
            await asyncio.wait(dependents)
        await self._unload(entry)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (and :meth:`stop` did not since)."""
        return self._started

    def builtin_names(self) -> tuple[str, ...]:
        """The names of jan's own extensions (ranked :data:`BUILTIN_PRIORITY`): their loads are bounded and
        quick, and what they provide (models, engines, threads) is what a server must have before it answers."""
        return tuple(n for n, e in self._entries.items()
                     if e.instance is not None and e.instance.priority == BUILTIN_PRIORITY)

    def set_admission(self, admit: Admission | None) -> None:
        """Let a host (the server) take each extension's routes and sub-applications as its load ends, before it
        counts as loaded, so that no extension is ever loaded without them being served. ``await admit(name,
        routes, subapps)`` returns None once they are served, or why they cannot be (a route another serves):
        the load then fails with that error, as when ``on_load`` raises. ``None`` removes the host's hook."""
        self._admit = admit

    @property
    def admission(self) -> Admission | None:
        """The host's admission hook (:meth:`set_admission`), if one is set."""
        return self._admit

    async def settle(self, timeout: float | None = None, *, names: Iterable[str] | None = None) -> bool:
        """Wait until no extension (of ``names``, if given) is loading, at most ``timeout`` seconds; whether none is.

        Each load ends within ``load_timeout``, so this is bounded by that when ``timeout`` is None.
        """
        wanted = None if names is None else set(names)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            loads = [e.loading for n, e in self._entries.items()
                     if e.loading is not None and (wanted is None or n in wanted)]
            if not loads:
                return True
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(loads, timeout=left)

    async def enable(self, name: str) -> ExtensionRecord:
        """Enable an extension (persisted); if the manager is started, load it (and dependents waiting for it).

        Enabling retries an extension that failed. Waits for the load as :meth:`start` does (at most
        ``load_wait`` seconds) and returns its record: ``state`` says whether it loaded, failed, or is
        still loading.
        """
        self.discover()
        entry = self._entry(name)
        async with self._locked():
            # (extensions.json's lock and write in a worker: another process holding the lock, up to its 30 s,
            # stalls this call only, not every other request of a server on the same loop)
            await asyncio.to_thread(self._set_enabled, name, True)
            if entry.loading is None:
                entry.error = entry.error_kind = None
            loads = await self._reconcile(retry={name}) if self._started else []
        if entry.loading is not None and entry.loading not in loads:
            loads.append(entry.loading)
        await self._wait(loads, self.load_wait)
        return self.record(name)

    async def disable(self, name: str) -> ExtensionRecord:
        """Disable an extension (persisted); if loaded, unload it, after unloading the loaded extensions that depend on it.

        A load of it still running is stopped, and so are those of extensions waiting for it.
        """
        self.discover()
        entry = self._entry(name)
        async with self._locked():
            await asyncio.to_thread(self._set_enabled, name, False)  # (off the loop, as in enable)
            why = f"depends on {name!r}, which was disabled"
            await self._withdraw(entry, lambda dep: self._mark(dep, why, "dependency"))
            entry.error = entry.error_kind = None
        return self.record(name)

    async def refuse(self, name: str, why: str) -> ExtensionRecord:
        """Unload an extension the host could not accept (e.g. its route clashes with another's) and mark it failed.

        The server calls this for clashes it finds while mounting routes: failing one extension, with
        an error naming the clash, instead of stopping jan or leaving a route silently unused. Loaded
        extensions depending on it are unloaded first and marked failed too. Enabling it retries.
        """
        self.discover()
        entry = self._entry(name)
        async with self._locked():
            because = f"depends on {name!r}, which failed to load ({why})"
            await self._withdraw(entry, lambda dep: self._fail(dep, because, "dependency"))
            await self._fail(entry, why, "load")
        return self.record(name)

    async def _withdraw(self, entry: _Entry, dependent_done: Callable[[_Entry], Any]) -> None:
        """Stop ``entry``'s load or unload it, with the extensions depending on it first; ``dependent_done(dep)``
        then records why each dependent is gone."""
        name = entry.name
        waiting = [e for e in self._entries.values()
                   if e.loading is not None and e is not entry and name in self._transitive_deps(e.name)]
        await self._cancel_loads([*waiting, *([entry] if entry.loading is not None else [])])
        for dep in waiting:
            await _maybe_await(dependent_done(dep))
        if entry.loaded:
            for other in reversed(list(self._load_order)):
                if other != name and name in self._transitive_deps(other):
                    await self._unload(self._entries[other])
                    await _maybe_await(dependent_done(self._entries[other]))
            await self._unload(entry)

    @staticmethod
    def _mark(entry: _Entry, message: str, kind: str) -> None:
        entry.error, entry.error_kind = message, kind

    async def _cancel_loads(self, entries: list[_Entry]) -> None:
        """Stop these loads (each ``on_load`` is cancelled, what it registered removed) and wait until they ended."""
        tasks = [e.loading for e in entries if e.loading is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a cancelled on_load is abandoned after a grace, the cleanups by unload_timeout
            await asyncio.wait(tasks)
        for e in entries:
            if e.loading is not None and e.loading.done():
                e.loading = None

    async def _wait(self, loads: list[asyncio.Task[None]], timeout: float | None) -> None:
        if loads:
            await asyncio.wait(loads, timeout=timeout)

    @asynccontextmanager
    async def _locked(self):  # type: ignore[no-untyped-def]
        # The context variable is inherited by the tasks on_load runs in, so
        # re-entry from an extension is detected instead of deadlocking.
        if id(self) in _BUSY.get():
            raise ExtensionError("start/stop/enable/disable cannot be called from an extension's on_load/on_unload")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = _BUSY.set(_BUSY.get() | {id(self)})
            try:
                yield
            finally:
                _BUSY.reset(token)

    # the loading algorithm -----------------------------------------------------------------------
    def _transitive_deps(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self._entries[name].depends_on) if name in self._entries else []
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            if dep in self._entries:
                stack.extend(self._entries[dep].depends_on)
        return seen

    def _order(self, names: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """Topological order of ``names`` (stable), cycle members with messages, and names blocked behind a cycle."""
        wanted = set(names)
        return dependency_order(names, {n: [d for d in self._entries[n].depends_on if d in wanted] for n in names})

    async def _reconcile(self, retry: set[str]) -> list[asyncio.Task[None]]:
        """Begin loading every enabled extension that is neither loaded, loading nor failed; returns the loads begun.

        Each load is a task that first waits for the loads of the extensions it depends on (begun before
        it, in dependency order), so independent extensions never wait for each other.
        """
        names = [
            n
            for n, e in self._entries.items()
            if e.instance is not None and not e.broken and not e.incompatible and self._is_enabled(e)
        ]
        for n in names:
            e = self._entries[n]
            if not e.loaded and e.loading is None and (n in retry or e.error_kind in ("dependency", "cycle")):
                e.error = e.error_kind = None
        order, cycles, blocked = self._order(names)
        for n, message in cycles.items():
            await self._fail(self._entries[n], message, "cycle")
        begun: list[asyncio.Task[None]] = []
        for n in order + blocked:
            e = self._entries[n]
            if e.loaded or e.error or e.loading is not None:
                continue
            # created under the lock: the task inherits _BUSY, so on_load cannot re-enter start/enable
            e.loading = asyncio.create_task(self._load_when_ready(e, cycles), name=f"jan-load-{n}")
            e.begun = next(self._begun)
            begun.append(e.loading)
        return begun

    async def _load_when_ready(self, entry: _Entry, cycles: dict[str, str]) -> None:
        this = asyncio.current_task()
        try:
            while True:  # a dependency's load may be stopped and begun again while this one waits
                waiting = [t for d in entry.depends_on
                           if (other := self._entries.get(d)) is not None and (t := other.loading) is not None
                           and t is not this]
                if not waiting:
                    break
                await asyncio.wait(waiting)
            problem = self._dependency_problem(entry, cycles)
            if problem:
                await self._fail(entry, problem, "dependency")
            else:
                await self._load(entry)
        except Exception as exc:  # noqa: BLE001 - a load never ends as an unretrieved task error
            logger.error("extension %s: loading failed", entry.name, exc_info=exc)
            if entry.error is None and not entry.loaded:
                await self._fail(entry, f"{type(exc).__name__}: {exc}", "load")
        finally:
            if entry.loading is this:
                entry.loading = None

    def _dependency_problem(self, entry: _Entry, cycles: dict[str, str]) -> str | None:
        for dep in entry.depends_on:
            other = self._entries.get(dep)
            if other is not None and other.loaded:
                continue
            if other is None:
                why = "is not installed"
            elif other.broken:
                why = "failed to import"
            elif other.incompatible:
                why = "is incompatible with this jan"
            elif not self._is_enabled(other):
                why = "is disabled"
            elif dep in cycles:
                why = "is in a dependency cycle"
            else:
                why = "failed to load" + (f" ({other.error})" if other.error else "")
            return f"depends on {dep!r}, which {why}"
        return None

    async def _fail(self, entry: _Entry, message: str, kind: str) -> None:
        entry.error, entry.error_kind = message, kind
        logger.error("extension %s not loaded: %s", entry.name, message)
        await self._emit(ExtensionFailed(name=entry.name, version=_version(entry), error=message, state=ExtensionState.FAILED))

    async def _emit(self, event: Any) -> None:
        # Handlers are extensions' code: one that hangs must not stop a load, an unload or the lock with it.
        await wait_bounded(self.bus.emit(event), timeout=self.unload_timeout, what=f"the handlers of {event!r}")

    def _settings_for(self, entry: _Entry) -> ExtensionSettings:
        if entry.settings is None:
            entry.settings = self._new_settings(entry)
        return entry.settings

    def _new_settings(self, entry: _Entry) -> ExtensionSettings:
        assert entry.instance is not None
        # (reads the extension's settings file: see _settings_off_loop)
        return ExtensionSettings(entry.name, entry.instance.settings_schema, self.settings_store, bus=self.bus)

    async def _settings_off_loop(self, entry: _Entry) -> ExtensionSettings:
        """:meth:`_settings_for` for code on the event loop: the first use of an extension's settings reads its
        file (and adapts its schema), done in a worker thread so that a slow disk, a network folder or a pipe in the
        file's place holds up no other request. Made at once by two callers, the first one's are kept (callbacks
        are registered on that one)."""
        if entry.settings is None:
            made = await asyncio.to_thread(self._new_settings, entry)
            if entry.settings is None:
                entry.settings = made
        return entry.settings

    async def _load(self, entry: _Entry) -> bool:
        ext = entry.instance
        assert ext is not None
        ctx: ExtensionContext | None = None
        try:
            settings = await self._settings_off_loop(entry)
            settings.check()
            ctx = ExtensionContext(self, ext, settings)
            ext._ctx = ctx
            await call_bounded(ext.on_load, ctx, timeout=self.load_timeout, what=f"extension {entry.name}: on_load")
            ctx._routes_frozen = True  # what it contributes is read now, once
            ctx._provide_self()
            refused = await self._admit(entry.name, list(ctx._routes), list(ctx._subapps)) if self._admit else None
        except asyncio.CancelledError:  # disabled, refused or stopped while loading: nothing of it stays
            await self._discard(entry, ctx)
            raise
        except Exception as exc:
            if isinstance(exc, HookTimeoutError):
                message = f"on_load did not finish within {self.load_timeout:g} s"
            elif ctx is None:
                message = f"{type(exc).__name__}: {exc}"
            else:
                message = f"on_load failed: {type(exc).__name__}: {exc}"
            # A worded error (jan's own: a data folder with a file in a folder's place, a bad setting) is its
            # message, said once below; its traceback (one per extension that met it) only buried it. Anything
            # else is a fault of the extension, kept with its traceback for its author.
            logger.error("extension %s failed to load", entry.name, exc_info=None if isinstance(exc, JanError) else exc)
            await self._discard(entry, ctx)
            await self._fail(entry, message, "load")
            return False
        if refused is not None:  # the host would not serve its routes: failed whole, as a half-served one would surprise
            await self._discard(entry, ctx)
            await self._fail(entry, refused, "load")
            return False
        entry.ctx = ctx
        entry.error = entry.error_kind = None
        # Loads overlap, so they end in any order; the load order stays the order they began in (dependency
        # order, then registration order), which ranks providers (see get) and mounts routes the same every run.
        later = [i for i, n in enumerate(self._load_order) if self._entries[n].begun > entry.begun]
        self._load_order.insert(later[0] if later else len(self._load_order), entry.name)
        logger.log(_load_level(ext), "extension %s %s loaded", entry.name, ext.version or "")
        await self._emit(ExtensionLoaded(name=entry.name, version=_version(entry)))
        return True

    async def _discard(self, entry: _Entry, ctx: ExtensionContext | None) -> None:
        """Undo a load that did not succeed: its registrations, cleanups, settings callbacks and contributed schema."""
        ext = entry.instance
        if ctx is not None:
            await ctx._close(self.unload_timeout)
            if ctx._schema_contributed:
                entry.settings = None  # read again from the class's schema and the stored values when next needed
        if entry.settings is not None:
            entry.settings.clear_callbacks()
        if ext is not None:
            ext._ctx = None

    async def _unload(self, entry: _Entry) -> None:
        ctx, ext = entry.ctx, entry.instance
        if ctx is None or ext is None:
            return
        entry.ctx = None
        if entry.name in self._load_order:
            self._load_order.remove(entry.name)
        try:
            await call_bounded(ext.on_unload, timeout=self.unload_timeout, what=f"extension {entry.name}: on_unload")
        except Exception as exc:
            logger.error("extension %s: on_unload failed: %s: %s", entry.name, type(exc).__name__, exc, exc_info=exc)
        finally:
            await ctx._close(self.unload_timeout)  # its cleanups run even when on_unload hung
            if entry.settings is not None:
                entry.settings.clear_callbacks()
            ext._ctx = None
        logger.log(_load_level(ext), "extension %s unloaded", entry.name)
        await self._emit(ExtensionUnloaded(name=entry.name, version=_version(entry)))

    # records ------------------------------------------------------------------------------
    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ExtensionNotFoundError(f"no extension named {name!r} is installed")
        return entry

    def _state(self, entry: _Entry) -> str:
        if entry.broken:
            return ExtensionState.FAILED
        if entry.incompatible:
            return ExtensionState.INCOMPATIBLE
        if entry.loaded:
            return ExtensionState.LOADED
        if not self._is_enabled(entry):
            return ExtensionState.DISABLED
        if entry.error:
            return ExtensionState.FAILED
        if entry.pending:
            return ExtensionState.LOADING
        return ExtensionState.UNLOADED

    def record(self, name: str) -> ExtensionRecord:
        """The record of one extension; raises :class:`ExtensionNotFoundError` for unknown names."""
        self.discover()
        entry = self._entry(name)
        ext = entry.instance
        types: dict[str, None] = dict.fromkeys(ext.extension_types if ext is not None else ())
        if entry.ctx is not None:
            for p in entry.ctx._provided:
                types.update(dict.fromkeys(p.types))
            if entry.ctx._engines:
                types.setdefault("inference", None)
        requires = ext.requires_api if ext is not None else None
        return ExtensionRecord(
            name=entry.name,
            version=_version(entry),
            types=tuple(types),
            enabled=self._is_enabled(entry),
            state=self._state(entry),
            error=entry.broken or entry.incompatible or entry.error,
            description=(ext.description if ext is not None else "") or "",
            depends_on=entry.depends_on,
            requires_api=requires if isinstance(requires, str) else None,
            source=entry.source,
        )

    def list(self) -> list[ExtensionRecord]:
        """Records of every known extension, sorted by name."""
        self.discover()
        return [self.record(n) for n in sorted(self._entries)]

    def is_loaded(self, name: str) -> bool:
        """Whether the extension called ``name`` is loaded now."""
        entry = self._entries.get(name)
        return entry is not None and entry.loaded

    @property
    def load_order(self) -> list[str]:
        """Names of the loaded extensions in the order their loads began (dependencies first)."""
        return list(self._load_order)

    # lookup ---------------------------------------------------------------------------------
    def get_extension(self, name: str) -> Extension:
        """The loaded extension object called ``name``; raises :class:`ExtensionNotFoundError` otherwise."""
        entry = self._entry(name)
        if entry.pending:
            raise ExtensionLoadingError(f"extension {name!r} is not loaded yet: {describe_loading((name,))}",
                                        loading=(name,))
        if not entry.loaded or entry.instance is None:
            error = entry.broken or entry.incompatible or entry.error
            failed = ((name, error),) if error and self._is_enabled(entry) else ()
            raise ExtensionNotFoundError(f"extension {name!r} is not loaded ({self._state(entry)}"
                                         + (f": {error})" if error else ")"), failed=failed)
        return entry.instance

    def _ranked(self, candidates: list[tuple[str, int, Any]], preference_key: str) -> list[Any]:
        preferred = self._config.get("preferred", {}).get(preference_key)
        position = {n: i for i, n in enumerate(self._load_order)}
        ranked = sorted(
            candidates,
            key=lambda c: (c[0] != preferred, -c[1], -position.get(c[0], -1)),
        )
        out: list[Any] = []
        for _, _, obj in ranked:
            if not any(obj is o for o in out):
                out.append(obj)
        return out

    def get_all(self, extension_type: str | type[T]) -> list[T]:
        """Every loaded implementation of an interface, best first (see :meth:`get`)."""
        type_name, cls = _type_key(extension_type)
        candidates = []
        for name in self._load_order:
            ctx = self._entries[name].ctx
            assert ctx is not None
            for p in ctx._provided:
                if type_name in p.types and (cls is None or isinstance(p.obj, cls)):
                    candidates.append((name, p.priority, p.obj))
        return self._ranked(candidates, type_name)

    def get(self, extension_type: str | type[T]) -> T:
        """The implementation of an interface to use, given as its class or its ``extension_type`` string.

        Choice rule, when several loaded extensions implement it:

        1. the extension named in ``extensions.json`` ``"preferred"`` for that
           type (see :meth:`set_preferred`);
        2. otherwise the highest ``priority`` (built-ins use -100, others 0);
        3. otherwise the one loaded last, so an extension that depends on
           another to wrap it wins over what it wraps.

        Raises :class:`ExtensionNotFoundError` if none is loaded.
        """
        found = self.get_all(extension_type)
        if not found:
            type_name, _ = _type_key(extension_type)
            failed = self.failed_providers(type_name)
            loading = self.loading_providers(type_name)
            if loading:
                raise ExtensionLoadingError(f"no loaded extension provides {type_name!r} yet: {describe_loading(loading)}",
                                            loading=loading, failed=failed)
            message = f"no loaded extension provides {type_name!r}"
            raise ExtensionNotFoundError(message + (f": {describe_failed(failed)}" if failed else ""), failed=failed)
        return found[0]

    def provider_of(self, implementation: Any) -> tuple[str, str | None] | None:
        """``(name, distribution)`` of the loaded extension that provides ``implementation`` (the extension object
        itself or one it handed to ``ctx.provide``), the distribution as ``"jan-foo 1.2"`` when an installed package's
        entry point brought it (None for one registered in code); None when no loaded extension provides it. What an
        error of that object's names (:mod:`jan.core.guarded`)."""
        for name in self._load_order:
            entry = self._entries[name]
            if entry.ctx is not None and any(p.obj is implementation for p in entry.ctx._provided):
                dist = re.match(r"entry point [^()]* \(([^()]+)\)", entry.source) if entry.source.startswith("entry point ") else None
                return name, dist.group(1) if dist else None
        return None

    def failed_providers(self, type_name: str) -> tuple[tuple[str, str], ...]:
        """``(name, error)`` of each enabled extension that implements ``type_name`` but is not loaded because it
        failed (its ``on_load`` raised, a dependency failed, it is incompatible): the real cause to report where
        that service is asked for, instead of "enable it"."""
        out = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            if entry.loaded or entry.instance is None or not self._is_enabled(entry):
                continue
            error = entry.incompatible or entry.error
            if error and type_name in entry.instance.extension_types:
                out.append((name, error))
        return tuple(out)

    def loading_providers(self, type_name: str, engine_name: str | None = None) -> tuple[str, ...]:
        """Names of the extensions still loading that declare ``type_name`` (what they register in ``on_load``
        is unknown until it returns); with ``engine_name``, those that are that engine or declare engines
        without naming one."""
        out = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            if not entry.pending or entry.instance is None or type_name not in entry.instance.extension_types:
                continue
            own = getattr(entry.instance, "engine_name", None) if engine_name is not None else None
            if engine_name is None or not own or own == engine_name:
                out.append(name)
        return tuple(out)

    def failed_extensions(self) -> list[ExtensionRecord]:
        """Records of the enabled extensions that failed (to import, to load, or are incompatible)."""
        return [r for r in self.list() if r.enabled and r.state in (ExtensionState.FAILED, ExtensionState.INCOMPATIBLE)]

    def engines(self) -> dict[str, InferenceExtension]:
        """Every registered engine name with the engine :meth:`get_inference` would return."""
        names: dict[str, None] = {}
        for name in self._load_order:
            ctx = self._entries[name].ctx
            assert ctx is not None
            names.update(dict.fromkeys(n for n, _, _ in ctx._engines))
        return {n: self.get_inference(n) for n in names}

    def get_inference(self, engine_name: str) -> InferenceExtension:
        """The inference engine registered as ``engine_name`` (``model.json``'s ``engine``).

        Same choice rule as :meth:`get`, with the preference key
        ``"inference:<engine_name>"``. Raises :class:`ExtensionNotFoundError`.
        """
        candidates = []
        for name in self._load_order:
            ctx = self._entries[name].ctx
            assert ctx is not None
            candidates.extend((name, prio, engine) for n, engine, prio in ctx._engines if n == engine_name)
        found = self._ranked(candidates, f"inference:{engine_name}")
        if not found:
            known = sorted({n for ctx in self._contexts() for n, _, _ in ctx._engines})
            failed = self.failed_providers("inference")
            loading = self.loading_providers("inference", engine_name)
            if loading:
                raise ExtensionLoadingError(f"no inference engine {engine_name!r} is loaded yet: {describe_loading(loading)}",
                                            loading=loading, failed=failed)
            raise ExtensionNotFoundError(
                f"no inference engine {engine_name!r} is loaded (loaded engines: {', '.join(known) or 'none'})"
                + (f"; {describe_failed(failed)}" if failed else ""), failed=failed)
        return found[0]

    def set_preferred(self, key: str | type, name: str | None) -> None:
        """Choose which extension answers :meth:`get` for ``key`` (an extension type, or
        ``"inference:<engine>"`` for :meth:`get_inference`); ``None`` removes the choice. Persisted."""
        type_name = key if isinstance(key, str) else _type_key(key)[0]
        self.discover()
        if name is not None:
            self._entry(name)

        def choose(config: dict[str, Any]) -> None:
            if name is not None:
                config["preferred"][type_name] = name
            else:
                config["preferred"].pop(type_name, None)

        self._update_config(choose)

    def _contexts(self) -> list[ExtensionContext]:
        return [self._entries[n].ctx for n in self._load_order if self._entries[n].ctx is not None]  # type: ignore[misc]

    # settings ---------------------------------------------------------------------------------
    def settings(self, name: str) -> ExtensionSettings:
        """The settings of an extension (loaded or not), e.g. for a settings API; on the event loop,
        :meth:`settings_off_loop`."""
        return self._settings_for(self._settings_entry(name))

    async def settings_off_loop(self, name: str) -> ExtensionSettings:
        """:meth:`settings` for code on the event loop (a route): an extension not loaded has not read its settings
        file yet, and reads it in a worker thread, as a load does."""
        return await self._settings_off_loop(self._settings_entry(name))

    async def stored_settings_off_loop(self, name: str) -> tuple[ExtensionSettings, str | None]:
        """The settings of an extension for reading and resetting (on the event loop, as :meth:`settings_off_loop`),
        and ``None``; or, for one whose schema is unknown or unusable (it failed to import, its ``settings_schema``
        is not a schema: it failed to load), its stored values without a schema (``schema`` None, no defaults) and
        why: what the user stored is theirs to see and remove with no code of the extension's. A change needs
        the schema (:meth:`settings_off_loop`). :class:`ExtensionNotFoundError` for an unknown name, and for an entry
        jan named itself (an extension whose name another has, or whose name is invalid): it has no settings of its
        own."""
        self.discover()
        entry = self._entry(name)
        if entry.instance is not None:
            try:
                return await self._settings_off_loop(entry), None
            except SettingsSchemaError as exc:
                why = str(exc)
        else:
            why = f"extension {name!r} failed to import; its settings schema is unknown"
        if not _NAME_RE.match(entry.name):
            raise ExtensionNotFoundError(f"{why}; its entry has no settings of its own")
        # (not kept on the entry: a schema known later, as a load's, would not be used)
        return await asyncio.to_thread(ExtensionSettings, entry.name, None, self.settings_store, bus=self.bus), why

    def _settings_entry(self, name: str) -> _Entry:
        self.discover()
        entry = self._entry(name)
        if entry.instance is None:
            raise ExtensionNotFoundError(f"extension {name!r} failed to import; its settings schema is unknown")
        return entry

    # HTTP routes ----------------------------------------------------------------------------------
    def routes(self) -> list[RouteSpec]:
        """Routes contributed by loaded extensions, in load order."""
        return [r for ctx in self._contexts() for r in ctx._routes]

    def subapps(self) -> list[SubAppSpec]:
        """Sub-applications contributed by loaded extensions, in load order."""
        return [s for ctx in self._contexts() for s in ctx._subapps]

    def loading_routes(self) -> list[RouteSpec]:
        """Routes the extensions still loading have contributed so far (their ``on_load`` runs on): a request for
        one of them meanwhile is for something on its way, not for something that does not exist."""
        return [r for ctx in self._loading_contexts() for r in ctx._routes]

    def loading_subapps(self) -> list[SubAppSpec]:
        """Sub-applications the extensions still loading have contributed so far (see :meth:`loading_routes`)."""
        return [s for ctx in self._loading_contexts() for s in ctx._subapps]

    def _loading_contexts(self) -> list[ExtensionContext]:
        # an extension's context exists from the start of its on_load; it is its entry's once loaded
        contexts = [e.instance._ctx for e in self._entries.values() if e.pending and e.instance is not None]
        return [c for c in contexts if c is not None]

    def route_handler(self, extension: str, method: str, path: str) -> Callable[..., Any] | None:
        """The handler ``extension`` contributes for ``method path`` right now (None while it is not
        loaded): what the server's mounted routes call, so disabling and re-enabling an extension
        takes effect without remounting."""
        entry = self._entries.get(extension)
        if entry is None or entry.ctx is None:
            return None
        for r in entry.ctx._routes:
            if r.method == method and r.path == path:
                return r.handler
        return None


# -- helpers --------------------------------------------------------------------------------
async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


def _version(entry: _Entry) -> str | None:
    if entry.instance is not None and entry.instance.version:
        return str(entry.instance.version)
    return entry.dist_version


def _type_key(extension_type: Any) -> tuple[str, type | None]:
    if isinstance(extension_type, str):
        return extension_type, None
    if isinstance(extension_type, type) and issubclass(extension_type, ExtensionInterface):
        t = extension_type.__dict__.get("extension_type") or extension_type.extension_type
        if not t:
            raise TypeError(f"{extension_type.__name__} has no extension_type")
        return t, extension_type
    raise TypeError(f"expected an extension type string or interface class, not {extension_type!r}")


def _config_problems(data: dict[str, Any]) -> list[str]:
    """What in an extensions.json (an object, its ``extensions`` one) is not of the type jan writes there, each
    naming its field: such a value is refused (the extension's default is used, a preference is dropped) and told,
    where before ``"enabled": "yes"`` was taken silently as the default (and ``"enabled": "false"`` as on)."""
    problems = []
    for name, item in (data.get("extensions") or {}).items():
        if not isinstance(item, dict):
            problems.append(f"extensions.{name} is {json_type_name(item)}, not an object: left out (its defaults apply)")
            continue
        if "enabled" in item and not isinstance(item["enabled"], bool):
            problems.append(f"extensions.{name}.enabled is {item['enabled']!r} ({json_type_name(item['enabled'])}), "
                            "not true or false: refused, the extension's default applies")
        if "version" in item and not isinstance(item["version"], (str, type(None))):
            problems.append(f"extensions.{name}.version is {item['version']!r} ({json_type_name(item['version'])}), "
                            "not a string: refused")
    prefs = data.get("preferred")
    if prefs is not None and not isinstance(prefs, dict):
        problems.append(f"preferred is {json_type_name(prefs)}, not an object: refused, no extension is preferred")
    for key, name in (prefs.items() if isinstance(prefs, dict) else ()):
        if not isinstance(name, str):
            problems.append(f"preferred.{key} is {name!r} ({json_type_name(name)}), not an extension's name: "
                            "refused")
    return problems
