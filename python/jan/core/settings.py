"""Extension settings: a JSON store on disk and a validated, observable view.

Each extension's settings live in ``<data>/settings/<extension>/settings.json``
as a JSON object of the values a user set; defaults come from the
extension's ``settings_schema``, which is either

* a pydantic model class (fields with defaults and constraints), or
* a JSON schema dict of ``"type": "object"`` with ``properties`` (each with a
  ``default``); see :mod:`jan.core._jsonschema` for the keywords checked, or
* ``None``: any JSON object is accepted.

A pydantic validator that checks the world rather than the value (a folder
that must exist) checks only the values being set: ``info.context["given"]``
holds their keys (:data:`GIVEN`). A stored value whose folder is gone for now
(an unmounted disk) is kept, and its use says what is wrong; dropped, it would
be lost from the file at the next change of another setting.

Unknown keys are rejected unless a JSON schema sets ``additionalProperties``.
Values are checked strictly by their declared type, as JSON: ``"yes"`` is no
boolean, ``"16"`` no integer, ``5`` no string (pydantic's strict mode on the
values' JSON; the JSON schema check never converted). Settings are JSON
everywhere they come from (the settings file, the HTTP API), and a value
converted by a guess is a setting the user did not mean. Bad values raise
:class:`~jan.core.SettingsValidationError` naming the extension and the field,
and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ._jsonschema import schema_problems, validate as _validate_json
from .exceptions import PathOutsideDataFolderError, SettingsSchemaError, SettingsValidationError
from .fs import LocalFileSystem, set_aside
from .interfaces.modules import EventBus, FileSystem, SettingsStore, Unsubscribe

__all__ = ["GIVEN", "ExtensionSettings", "JsonSettingsStore", "SettingsCallback", "given_now", "is_pydantic_model"]

logger = logging.getLogger("jan.core.settings")

#: The key of pydantic's validation context holding the keys of the values being set now (a frozenset; empty when
#: stored values are read back).
GIVEN = "given"


def given_now(info: Any) -> bool:
    """Whether the field a pydantic validator is checking (``info``: its ``ValidationInfo``) is being set now, not read
    back from the settings file: where a check of the world (a folder exists) belongs."""
    context = getattr(info, "context", None)
    return isinstance(context, dict) and getattr(info, "field_name", None) in context.get(GIVEN, ())


#: ``callback(changes)`` with ``{key: new value}`` of the keys whose value changed.
SettingsCallback = Callable[[dict[str, Any]], Any]


def is_pydantic_model(obj: Any) -> bool:
    """Whether ``obj`` is a pydantic (v2) model class, without importing pydantic."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)


class JsonSettingsStore(SettingsStore):
    """:class:`SettingsStore` writing ``settings/<namespace>/settings.json`` in a data folder.

    Also reads the list-of-descriptors format of Jan's desktop app
    (``[{"key": ..., "controllerProps": {"value": ...}}, ...]``); it always
    writes a plain object.
    """

    def __init__(self, data_folder: str | Path | FileSystem):
        self.fs = data_folder if isinstance(data_folder, FileSystem) else LocalFileSystem(data_folder)

    def _rel(self, namespace: str) -> str:
        return f"settings/{namespace}/settings.json"

    def location(self, namespace: str) -> str:
        return str(self.fs.resolve(self._rel(namespace)))

    def read(self, namespace: str) -> dict[str, Any]:
        data = self.fs.read_json(self._rel(namespace), default=None)
        if data is None:
            return {}
        if isinstance(data, list):  # Jan desktop's format
            try:
                return {item["key"]: (item.get("controllerProps") or {}).get("value") for item in data}
            except (TypeError, KeyError, AttributeError) as exc:
                raise ValueError(f"{self.location(namespace)}: unrecognized settings list") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{self.location(namespace)}: settings must be a JSON object")
        return data

    def write(self, namespace: str, values: dict[str, Any]) -> None:
        self.fs.write_json(self._rel(namespace), values)

    def lock(self, namespace: str) -> contextlib.AbstractContextManager[None]:
        """The data folder's lock of this settings file, the one :class:`jan.store.DataFolder`'s settings store
        takes for it too: a server and another process (a script on the same folder) exclude each other."""
        if not isinstance(self.fs, LocalFileSystem):
            return contextlib.nullcontext()
        return self.fs.lock(self._rel(namespace))

    def set_aside(self, namespace: str) -> Path | None:
        """Rename an unreadable settings file out of the way (kept for the user to inspect)."""
        return set_aside(self.fs.resolve(self._rel(namespace)))


# -- schema adapters ----------------------------------------------------------
class _AnySchema:
    #: the extension whose settings these are (named by every error), set by :func:`_adapt`
    namespace = ""

    def __init__(self) -> None:
        self.source = None

    def defaults(self) -> dict[str, Any]:
        return {}

    def json_schema(self) -> dict[str, Any] | None:
        return None

    def validate(self, overrides: dict[str, Any], given: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Any]:
        errors = []
        for key, value in overrides.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                errors.append({"field": key, "message": f"is not JSON-serializable ({type(value).__name__})"})
        if errors:
            raise _error(errors, self.namespace)
        return copy.deepcopy(overrides), None


class _JsonSchema(_AnySchema):
    def __init__(self, schema: dict[str, Any]):
        if schema.get("type", "object") != "object":
            raise SettingsSchemaError("a settings JSON schema must describe an object (\"type\": \"object\")")
        problems = schema_problems(schema)
        if problems:
            raise SettingsSchemaError("; ".join(problems))
        self.source = schema
        self.props: dict[str, Any] = dict(schema.get("properties") or {})
        for key, prop in self.props.items():  # a default its own schema refuses: no value of the user's mends that
            if isinstance(prop, dict) and "default" in prop:
                wrong = _validate_json(prop["default"], prop, key)
                if wrong:
                    raise SettingsSchemaError(f"the default of {key!r} ({json.dumps(prop['default'], default=repr)}) "
                                              f"does not match its own schema: {wrong[0][1]}")

    def defaults(self) -> dict[str, Any]:
        return {k: copy.deepcopy(p["default"]) for k, p in self.props.items() if isinstance(p, dict) and "default" in p}

    def json_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self.source)

    def validate(self, overrides: dict[str, Any], given: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Any]:
        merged = {**self.defaults(), **copy.deepcopy(overrides)}
        schema = self.source
        if self.props and "additionalProperties" not in schema:
            schema = {**schema, "additionalProperties": False}
        problems = _validate_json(merged, schema)
        if problems:
            raise _error([{"field": f or "(settings)", "message": m} for f, m in problems], self.namespace)
        return merged, None


class _PydanticSchema(_AnySchema):
    def __init__(self, model: type):
        self.source = model
        self.model = model
        try:  # what the settings API shows; a model pydantic cannot describe is refused now, not at every GET
            model.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - pydantic raises several kinds
            raise SettingsSchemaError(f"the pydantic model {model.__name__} has no JSON schema: "
                                      f"{type(exc).__name__}: {exc}") from None
        self.keys: dict[str, str] = {}  # input key -> field name
        for name, info in model.model_fields.items():
            self.keys[info.alias or name] = name
            self.keys.setdefault(name, name)
        self.by_alias = any(info.alias and info.alias != name for name, info in model.model_fields.items())

    def defaults(self) -> dict[str, Any]:
        try:
            return self.validate({})[0]
        except SettingsValidationError:
            return {}

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    def validate(self, overrides: dict[str, Any], given: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Any]:
        from pydantic import ValidationError

        unknown = [k for k in overrides if k not in self.keys]
        if unknown and self.model.model_config.get("extra") != "allow":
            raise _error([{"field": k, "message": "is not a known setting"} for k in unknown], self.namespace)
        from pydantic_core import PydanticSerializationError, to_jsonable_python

        try:
            # a value a Python caller gives as its declared type (a Path, an Enum member, a datetime) in its JSON form
            text = json.dumps(to_jsonable_python(overrides), allow_nan=False)
        except (TypeError, ValueError, PydanticSerializationError):
            raise _error([{"field": k, "message": f"is not a JSON value ({type(v).__name__})"}
                          for k, v in overrides.items() if not _is_json(v)] or
                         [{"field": "(settings)", "message": "is not JSON"}], self.namespace) from None
        try:
            # Strict, and from JSON: a boolean is true/false (not "yes", 1 or "on"), a number is a number (not
            # "16"), a string is a string (not 5); what JSON has no type for (an enum, a path, a date) is read
            # from its string as usual. Lax mode guessed, and stored the guess.
            instance = self.model.model_validate_json(text, strict=True, 
                                                       context={GIVEN: frozenset(self.keys.get(k, k) for k in given)})
        except ValidationError as exc:
            raise _error(
                [
                    {"field": ".".join(str(p) for p in e.get("loc", ())) or "(settings)", "message": e.get("msg", "")}
                    for e in exc.errors()
                ],
                self.namespace,
            ) from None
        return instance.model_dump(mode="json", by_alias=self.by_alias), instance


def _adapt(schema: Any, namespace: str) -> _AnySchema:
    """The schema's adapter; raises :class:`SettingsSchemaError` naming the extension (``namespace``) for a schema
    that is none, or one no value could be checked against."""
    adapter: _AnySchema
    try:
        if schema is None:
            adapter = _AnySchema()
        elif isinstance(schema, dict):
            adapter = _JsonSchema(schema)
        elif is_pydantic_model(schema):
            adapter = _PydanticSchema(schema)
        else:
            raise SettingsSchemaError(f"it must be a pydantic model class, a JSON schema dict or None, not {schema!r}")
    except SettingsSchemaError as exc:
        raise SettingsSchemaError(f"extension {namespace!r} has an invalid settings schema: {exc}") from None
    adapter.namespace = namespace
    return adapter


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _require_strict_json(values: Mapping[str, Any], namespace: str) -> None:
    """Settings are stored as JSON: ``NaN``/``Infinity`` (which JSON has no words for) are refused by name."""
    errors = []
    for key, value in values.items():
        try:
            json.dumps(value, allow_nan=False, default=lambda o: None)  # other types: the schema's business
        except ValueError:
            errors.append({"field": key, "message": "must be a finite number (NaN and Infinity are not JSON)"})
    if errors:
        raise _error(errors, namespace)


def _error(errors: list[dict[str, Any]], namespace: str = "") -> SettingsValidationError:
    """The error of ``errors``, its message naming the extension (``namespace``) and the first setting at fault:
    the same words from the settings API, a settings file's problems and the log."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    whose = f"extension {namespace!r}: " if namespace else ""
    return SettingsValidationError(
        f"{whose}invalid setting {first['field']!r}: {first['message']}{more}", field=first["field"], errors=errors
    )


# -- the validated view ---------------------------------------------------------
class ExtensionSettings:
    """The settings of one extension: validated values, persisted, with change callbacks.

    ``get``/``[]``/``all()`` read effective values (defaults overlaid with
    what the user set). ``set``/``update`` validate first, then write the
    store atomically, then call the ``on_change`` callbacks with the values
    that changed, and emit :class:`~jan.core.events.SettingsChanged` on the
    bus. Callbacks may be sync or async (async ones are scheduled on the
    running loop); a failing callback is logged and never undoes the change.
    """

    def __init__(
        self,
        namespace: str,
        schema: Any = None,
        store: SettingsStore | None = None,
        *,
        bus: EventBus | None = None,
        data_folder: str | Path | None = None,
    ):
        if store is None:
            if data_folder is None:
                raise TypeError("ExtensionSettings needs a store or a data_folder")
            store = JsonSettingsStore(data_folder)
        self.namespace = namespace
        self._store = store
        self._bus = bus
        self._schema = _adapt(schema, namespace)
        self._callbacks: tuple[SettingsCallback, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._overrides: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._model: Any = None
        self._error: SettingsValidationError | None = None
        #: What reading the stored file left out (an unreadable file; invalid values dropped), for the settings API:
        #: logged only, a user who hand-edited the file saw their values silently gone.
        self._file_problems: list[dict[str, Any]] = []
        self._ignored: list[dict[str, Any]] = []
        #: the stored values this schema ignores, as the file has them (a setting of a newer version of the
        #: extension, a hand edit's wrong type): kept in the file by a change of other settings (:meth:`_commit`)
        self._unused: dict[str, Any] = {}
        #: why the stored file could not be read (it is there: a write would replace values never seen), or None
        self._unreadable: OSError | None = None
        #: the stored file is no JSON object (a hand edit's typo): left in place, set aside by the change that
        #: replaces it (:meth:`_commit`)
        self._damaged = False
        self.reload()

    def __repr__(self) -> str:
        return f"ExtensionSettings({self.namespace!r}, {self._values!r})"

    # reading -------------------------------------------------------------------
    @property
    def schema(self) -> Any:
        """The schema as given (a pydantic model class, a JSON schema dict, or ``None``)."""
        return self._schema.source

    def json_schema(self) -> dict[str, Any] | None:
        """The schema as JSON schema (for a settings UI); ``None`` without a schema."""
        return self._schema.json_schema()

    def defaults(self) -> dict[str, Any]:
        """Every default value the schema declares."""
        return self._schema.defaults()

    def get(self, key: str, default: Any = None) -> Any:
        """The effective value of ``key`` (a copy), or ``default`` if it has none."""
        if key in self._values:
            return copy.deepcopy(self._values[key])
        return default

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(key)
        return copy.deepcopy(self._values[key])

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def all(self) -> dict[str, Any]:
        """Every effective value (a deep copy)."""
        return copy.deepcopy(self._values)

    @property
    def user_values(self) -> dict[str, Any]:
        """Only the values a user set (what is stored on disk)."""
        return copy.deepcopy(self._overrides)

    @property
    def model(self) -> Any:
        """The validated pydantic model instance when the schema is a pydantic model, else ``None``."""
        return self._model

    @property
    def error(self) -> SettingsValidationError | None:
        """Why the current values are invalid (e.g. a required setting without a value), or ``None``."""
        return self._error

    @property
    def problems(self) -> list[dict[str, Any]]:
        """What was left out of the stored values when they were read: ``{"field", "message"}`` per invalid value
        ignored (``field`` None for a file that could not be read at all). Empty once a change is saved."""
        return copy.deepcopy(self._file_problems + self._ignored)

    def check(self) -> None:
        """Raise :class:`SettingsValidationError` if the current values are not valid."""
        if self._error is not None:
            raise self._error

    # writing -------------------------------------------------------------------
    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The effective values if ``values`` were set on top of the current ones; raises if invalid. Writes nothing."""
        _require_strict_json(values, self.namespace)
        effective, _ = self._schema.validate({**self._overrides, **dict(values)}, frozenset(values))
        return effective

    def set(self, key: str, value: Any) -> dict[str, Any]:
        """Set one value; see :meth:`update`."""
        return self.update({key: value})

    def update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and store several values at once (all or none); return ``{key: new}`` of what changed."""
        if not isinstance(values, Mapping):
            raise TypeError("settings values must be a mapping")
        _require_strict_json(values, self.namespace)
        return self._notified(*self._update_stored(values))

    def reset(self, *keys: str) -> dict[str, Any]:
        """Forget the user's values of ``keys`` (every key if none), back to defaults; returns what changed."""
        return self._notified(*self._reset_stored(keys))

    async def update_off_loop(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`update` for code on the event loop (a route): the file's lock, its read and its write in a worker
        thread, so that a lock another process holds (up to its 30 s timeout) or a slow disk holds up no other
        request; the callbacks and the event after it on the loop, where :meth:`update` runs them."""
        if not isinstance(values, Mapping):
            raise TypeError("settings values must be a mapping")
        _require_strict_json(values, self.namespace)
        return self._notified(*await asyncio.to_thread(self._update_stored, values))

    async def reset_off_loop(self, *keys: str) -> dict[str, Any]:
        """:meth:`reset` for code on the event loop, as :meth:`update_off_loop`."""
        return self._notified(*await asyncio.to_thread(self._reset_stored, keys))

    def _update_stored(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._lock():
            previous = self._fresh()
            candidate = {**self._overrides, **copy.deepcopy(dict(values))}
            effective, model = self._schema.validate(candidate, frozenset(values))
            # Store what validation made of the values (pydantic's form of them: an int given a float field is 2.0).
            stored = {k: copy.deepcopy(effective.get(k, candidate[k])) for k in candidate}
            return self._commit(stored, effective, model, previous, unused_dropped=frozenset(values))

    def _reset_stored(self, keys: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._lock():
            previous = self._fresh()
            remaining = {} if not keys else {k: v for k, v in self._overrides.items() if k not in keys}
            effective, model = self._schema.validate(remaining)
            return self._commit(remaining, effective, model, previous,
                                unused_dropped=frozenset(keys) if keys else frozenset(self._unused))

    def _notified(self, changes: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
        if changes:
            self._notify(changes, before)
        return changes

    def reload(self) -> None:
        """Re-read the stored values; an unreadable file is left in place and invalid values are dropped, each with a
        warning and in :attr:`problems` (defaults stand in)."""
        try:
            stored = self._store.read(self.namespace)
        except PathOutsideDataFolderError:
            raise
        except OSError as exc:
            # There but unreadable (a folder in its place, no permission, an I/O error): defaults, told as a problem
            # of the file, and left where it is (it may be whole: not set aside as damaged). The extension loads; a
            # change is refused by the write, naming the file. (It failed the extension's load with a traceback.)
            self._unreadable = exc
            self._damaged = False
            why = f"{exc.filename or self._store_location()}: {exc.strerror or exc}"
            logger.warning("settings of %s cannot be read, using defaults: %s", self.namespace, why)
            self._file_problems = [{"field": None,
                                    "message": f"the stored settings cannot be read ({why}); defaults are used"}]
            stored = {}
        except ValueError as exc:
            # Left where it is, as the data folder's every damaged file (README): a read moved it aside, so a user's
            # hand edit with one typo vanished at the next start and its other values with it. The change that
            # replaces it keeps its bytes beside it (_commit).
            logger.warning("settings of %s are unreadable, using defaults (the file is left as it is): %s",
                           self.namespace, exc)
            message = (f"the stored settings are unreadable ({exc}); defaults are used; the file is left as it is "
                       "until a change replaces it (its bytes then kept beside it as settings.json.corrupt-<n>)")
            self._file_problems = [{"field": None, "message": message}]
            self._damaged = True
            self._unreadable = None
            stored = {}
        else:
            self._file_problems = []
            self._unreadable = None
            self._damaged = False
        self._load(stored)

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        lock = getattr(self._store, "lock", None)  # (a store written before SettingsStore.lock has none)
        return lock(self.namespace) if callable(lock) else contextlib.nullcontext()

    def _fresh(self) -> dict[str, Any]:
        """Read the stored values again before a change (the caller holds the store's lock) and return the effective
        values from before: a change is made to the file as it is now, so a value another process (or a hand edit)
        stored since this one read it is kept, not written over from this copy, and its change is told with this
        one. Refuses a change while the file cannot be read: written, it would replace values nobody has seen (a
        file without read permission in a writable folder)."""
        previous = self._values
        self.reload()
        if self._unreadable is not None:
            exc = self._unreadable
            raise type(exc)(exc.errno, f"{exc.strerror or exc}: the settings of {self.namespace!r} cannot be read, "
                                       "so they are not changed", exc.filename)
        return previous

    def _store_location(self) -> str:
        location = getattr(self._store, "location", None)
        return location(self.namespace) if callable(location) else self.namespace

    def set_schema(self, schema: Any) -> None:
        """Replace the schema (e.g. with choices known only at load time) and revalidate the stored values."""
        self._schema = _adapt(schema, self.namespace)
        self._load(self._overrides)

    def on_change(self, callback: SettingsCallback) -> Unsubscribe:
        """Call ``callback(changes)`` after each successful change; returns an unsubscribe function.

        The manager removes every callback when the extension unloads (so an
        extension may register here freely); code outside the extension
        should subscribe to :class:`~jan.core.events.SettingsChanged` on the bus.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._callbacks = (*self._callbacks, callback)

        def unsubscribe() -> None:
            self._callbacks = tuple(c for c in self._callbacks if c is not callback)

        return unsubscribe

    def clear_callbacks(self) -> None:
        """Remove every ``on_change`` callback (the manager does this when an extension unloads)."""
        self._callbacks = ()

    # internals -----------------------------------------------------------------------
    def _load(self, stored: dict[str, Any]) -> None:
        overrides = dict(stored)
        self._error = None
        self._ignored = []
        for _ in range(len(overrides) + 1):
            try:
                effective, model = self._schema.validate(overrides)
            except SettingsValidationError as exc:
                bad = {str(e["field"]).split(".")[0].split("[")[0] for e in exc.errors} & set(overrides)
                if not bad:  # not caused by a stored value (e.g. a required setting unset)
                    self._error = exc
                    effective, model = {**self._schema.defaults(), **overrides}, None
                    break
                logger.warning(
                    "ignoring invalid stored settings of %s: %s (%s)",
                    self.namespace,
                    ", ".join(sorted(bad)),
                    exc,
                )
                for key in sorted(bad):
                    why = "; ".join(str(e["message"]) for e in exc.errors
                                    if str(e["field"]).split(".")[0].split("[")[0] == key) or "invalid value"
                    self._ignored.append({"field": key, "message": f"stored value ignored: {why}"})
                overrides = {k: v for k, v in overrides.items() if k not in bad}
            else:
                break
        self._overrides = overrides
        self._unused = {k: v for k, v in stored.items() if k not in overrides}
        self._values = effective
        self._model = model

    def _commit(self, stored: dict[str, Any], effective: dict[str, Any], model: Any,
                previous: dict[str, Any], unused_dropped: frozenset[str] = frozenset(),
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Store the values; (what changed: ``{key: new}``, ``{key: old}``), to be told by :meth:`_notified` (on the
        caller's thread: the loop's, for :meth:`update_off_loop`). A damaged file it replaces is kept beside it.
        The stored values this schema ignores stay in the file as they were, but those in ``unused_dropped`` (the
        keys the change sets or resets): a change of one setting dropped them all, a newer version's settings
        (the user going back a version) and a hand edit's typo alike, with no copy kept."""
        if self._damaged:
            aside = getattr(self._store, "set_aside", None)
            moved = aside(self.namespace) if aside is not None else None
            if moved is not None:
                logger.warning("the unreadable settings file of %s is replaced; its bytes are kept as %s",
                               self.namespace, moved)
        unused = {k: v for k, v in self._unused.items() if k not in unused_dropped and k not in stored}
        self._store.write(self.namespace, {**unused, **stored})
        self._damaged = False
        self._overrides, self._values, self._model, self._error = stored, effective, model, None
        self._unused = unused
        # the file now holds the valid values, and the ignored ones it kept (still told as ignored)
        self._file_problems, self._ignored = [], [i for i in self._ignored if i["field"] in unused]
        keys = set(previous) | set(effective)
        changes = {k: copy.deepcopy(effective.get(k)) for k in sorted(keys) if previous.get(k) != effective.get(k)}
        return changes, {k: copy.deepcopy(previous.get(k)) for k in changes}

    def _notify(self, changes: dict[str, Any], previous: dict[str, Any]) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for callback in self._callbacks:
            try:
                result = callback(copy.deepcopy(changes))
            except (Exception, SystemExit):  # an extension's sys.exit() must not end jan
                logger.exception("settings callback %r of %s failed", callback, self.namespace)
                continue
            if inspect.isawaitable(result):
                if loop is None:
                    if inspect.iscoroutine(result):
                        result.close()
                    logger.warning("async settings callback %r skipped: no running event loop", callback)
                    continue
                task = loop.create_task(self._guard(result, callback))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self._bus is not None:
            from .events import SettingsChanged

            self._bus.emit_nowait(SettingsChanged(extension=self.namespace, changes=changes, previous=previous))

    async def _guard(self, awaitable: Any, callback: SettingsCallback) -> None:
        try:
            await awaitable
        except (Exception, SystemExit):  # inside the task: a SystemExit leaving it would stop the loop
            logger.exception("settings callback %r of %s failed", callback, self.namespace)

    async def drain(self) -> None:
        """Wait for async callbacks scheduled by earlier changes."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
