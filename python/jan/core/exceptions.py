"""Errors raised by ``jan.core`` (all subclasses of :class:`jan.errors.JanError`)."""

from __future__ import annotations

from typing import Any

from jan.errors import JanError

__all__ = [
    "ExtensionCallError",
    "ExtensionError",
    "ExtensionLoadingError",
    "ExtensionNotFoundError",
    "LockTimeoutError",
    "NotFoundError",
    "PathOutsideDataFolderError",
    "SettingsSchemaError",
    "SettingsValidationError",
]


class ExtensionError(JanError):
    """Something went wrong with an extension (loading, a hook, a bad registration)."""


class ExtensionCallError(ExtensionError, RuntimeError):
    """An extension broke its interface's contract: one of its methods raised an exception of its own (not a
    :class:`~jan.errors.JanError`, not a ``ValueError``), or returned what the interface does not promise (``None``
    for a list, a string for a dict). Its fault, not the client's: every front end answers a 500 ``extension_error``
    naming the extension and the method (the cause goes to the log, as it may hold what a client must not see).

    ``extension`` is the extension's name (None when no loaded extension provided it), ``method`` the interface
    method (``ConversationalExtension.list_threads``). A message engine's failure is its subclass
    :class:`jan.services.engine_output.ExtensionEngineError`."""

    http_status = 500
    code = "extension_error"

    def __init__(self, message: str, *, extension: str | None = None, method: str | None = None):
        super().__init__(message)
        self.extension = extension
        self.method = method


class ExtensionNotFoundError(ExtensionError, LookupError):
    """No loaded extension provides what was asked for (a name, a type, an engine).

    ``failed`` lists ``(name, error)`` of the enabled extensions that would provide it but failed to load
    (the message says so too): "enable it" is the wrong advice for an extension that is enabled already.
    """

    def __init__(self, message: str, *, failed: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.failed = tuple(failed)


class ExtensionLoadingError(ExtensionNotFoundError):
    """What was asked for is not there yet: an enabled extension that would provide it is still loading.

    ``loading`` names those extensions. Asking again later may succeed (a server answers 503); the load
    either finishes or fails within the manager's load timeout.
    """

    def __init__(self, message: str, *, loading: tuple[str, ...], failed: tuple[tuple[str, str], ...] = ()):
        super().__init__(message, failed=failed)
        self.loading = tuple(loading)


def describe_loading(loading: tuple[str, ...]) -> str:
    """``loading`` (:attr:`ExtensionLoadingError.loading`) in words: "'models' is still loading; try again shortly"."""
    names = ", ".join(repr(n) for n in loading)
    return f"{names} {'is' if len(loading) == 1 else 'are'} still loading; try again shortly"


def describe_failed(failed: tuple[tuple[str, str], ...]) -> str:
    """``failed`` (:attr:`ExtensionNotFoundError.failed`) in words: "'models' is enabled but failed to load: ..."."""
    return "; ".join(f"{name!r} is enabled but failed to load: {error}" for name, error in failed)


class NotFoundError(JanError, KeyError):
    """A resource (thread, message, assistant, download, ...) does not exist.

    Implementations of the storage interfaces raise this (or a subclass) so
    the server can answer 404 without knowing the implementation.
    ``resource`` is the kind ("thread", "message", ...) and ``id`` its id.
    """

    def __init__(self, message: str, *, resource: str | None = None, id: str | None = None):
        super().__init__(message)
        self.resource = resource
        self.id = id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class LockTimeoutError(JanError, TimeoutError):
    """Waiting for a data-folder file's lock (another thread or process is writing it) took too long."""


class PathOutsideDataFolderError(JanError, ValueError):
    """A path given to a :class:`~jan.core.interfaces.FileSystem` would leave its root."""


class SettingsSchemaError(ExtensionError, TypeError):
    """An extension's settings schema (``settings_schema`` or ``ctx.contribute_settings``) is not one jan can use:
    not a pydantic model class, JSON schema object or None, or a JSON schema with an unknown ``type``, a
    property that is not a schema, a ``default`` its own schema refuses, ... The fault is the extension's, not
    the user's: no value can fix it (the settings API answers 409 naming the extension, its load fails)."""


class SettingsValidationError(JanError, ValueError):
    """Settings values that do not match the extension's settings schema.

    ``field`` names the first offending setting (dotted for nested values,
    e.g. ``"gpu.layers"``); ``errors`` lists every problem as
    ``{"field": ..., "message": ...}`` dicts.
    """

    def __init__(self, message: str, *, field: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors: list[dict[str, Any]] = list(errors or [])
        if field is None and self.errors:
            field = self.errors[0].get("field")
        self.field = field
