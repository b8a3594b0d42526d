"""What an extension's interface methods raise and return, checked once for every front end.

Every front end reaches the extensions that store and list things (conversations, assistants, the model catalogue,
the MCP host) through :func:`jan.services.errors.require`, which hands out the implementation in use wrapped by
:func:`guarded`. A third party's bug there was an anonymous 500 ``internal_error`` in every dialect (the log named no
extension); what it returned against its interface (``None`` for a list, a string for a dict) failed later in jan's
own code, as a 500 or even as the client's 400 (``dict(["x"])`` is a ``ValueError``). Each is now an
:class:`~jan.core.ExtensionCallError` naming the extension, its distribution and the interface method: a 500
``extension_error`` in every dialect's shape, one line from the CLI. What the interfaces let an implementation raise
keeps its meaning: a :class:`~jan.errors.JanError` (``NotFoundError`` is a 404, ...), a ``ValueError`` (the client's
400), and an ``OSError`` of a file (a full disk, a read-only data folder: told by its path, the operator's to fix).
A message engine's own calls are checked alike by :mod:`jan.services.engine_output`.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import re
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from jan.errors import JanError

from .exceptions import ExtensionCallError
from .interfaces.base import ExtensionInterface

__all__ = ["GuardedExtension", "get_guarded", "guarded", "provider_label"]

log = logging.getLogger("jan.core.extensions")

T = TypeVar("T")


def guarded(manager: Any, implementation: T, interface: type[T], *, only: tuple[str, ...] | None = None) -> T:
    """``implementation`` (what ``manager.get(interface)`` answered) with ``interface``'s methods checked (``only``:
    those of them): what they raise that the interface does not let them, and what they return against its
    annotations, is an :class:`ExtensionCallError` naming the extension that ``manager`` says provides it."""
    if isinstance(implementation, GuardedExtension) or not _contract(interface):
        return implementation
    return GuardedExtension(manager, implementation, interface, only)  # type: ignore[return-value]


def get_guarded(manager: Any, interface: type[T]) -> T:
    """``manager.get(interface)``, :func:`guarded` (its :class:`~jan.core.ExtensionNotFoundError` when none is loaded)."""
    return guarded(manager, manager.get(interface), interface)


def provider_label(manager: Any, implementation: Any) -> tuple[str, str | None]:
    """``("the extension 'x' (jan-x 1.0)", "x")``: what an error of ``implementation`` names (an engine's, ``the
    engine 'e' of the extension 'x'``), and its extension's name (None when no loaded extension provides it)."""
    engine = getattr(implementation, "engine_name", None)
    said = f"the engine {engine!r} of " if isinstance(engine, str) and engine else ""
    found = manager.provider_of(implementation) if hasattr(manager, "provider_of") else None
    if found is None:
        return (f"the engine {engine!r}" if said else f"the {type(implementation).__name__} in use"), None
    name, dist = found
    return said + f"the extension {name!r}" + (f" ({dist})" if dist else ""), name


@functools.cache
def _contract(interface: type) -> dict[str, tuple[Any, bool]]:
    """``{method: (its return annotation (None: not checked), whether it is async)}`` of ``interface``'s public
    methods, its bases' too."""
    out: dict[str, tuple[Any, bool]] = {}
    for klass in reversed(interface.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, ExtensionInterface)) or klass is ExtensionInterface:
            continue
        for name, fn in vars(klass).items():
            if name.startswith("_") or not inspect.isfunction(fn):
                continue
            try:
                hint = get_type_hints(fn).get("return")
            except Exception:  # noqa: BLE001 - an annotation that does not resolve is not checked, never a failure
                hint = None
            out[name] = (hint, inspect.iscoroutinefunction(fn))
    return out


def _theirs(exc: Exception) -> bool:
    """Whether ``exc`` is a failure of the extension's own rather than one its interface lets it raise."""
    if isinstance(exc, (JanError, ValueError)):
        return False
    # a full or read-only disk is the machine's, whoever wrote: its errno says so even where no file is named (a
    # write's flush), and it is answered as such (507), not as the extension's fault
    return not (isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _DISK_REFUSALS))


#: The errnos of a disk that refuses every writer alike (full, over quota, mounted read-only).
_DISK_REFUSALS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS})


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is what the annotation ``hint`` promises (containers one level of items deep)."""
    if hint is None or hint is Any or hint is type(None) or isinstance(hint, TypeVar):
        return True  # what a method that returns nothing returns is never read
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is types.UnionType:
        return any(_conforms(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and (not args or all(_conforms(v, args[0]) for v in value))
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return not args or all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args))
    if isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(hint, type):
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, hint)
    return True


def _what_it_is(value: Any, hint: Any) -> str:
    """``NoneType``, or ``a list holding str``: what a value that does not conform is, for the message."""
    if isinstance(value, (list, tuple)) and isinstance(get_origin(hint), type) and isinstance(value, get_origin(hint)):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        for i, item in enumerate(value):
            if args and not _conforms(item, args[min(i, len(args) - 1)]):
                return f"a {type(value).__name__} holding {type(item).__name__}"
    return type(value).__name__


def _hint_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", str(hint))


class GuardedExtension:
    """An interface implementation whose interface methods are checked (:func:`guarded`); anything else passes
    through. It reads as the implementation's class to ``isinstance``, and its methods keep their signatures."""

    __slots__ = ("_interface", "_manager", "_only", "_target")

    def __init__(self, manager: Any, target: Any, interface: type, only: tuple[str, ...] | None = None) -> None:
        object.__setattr__(self, "_manager", manager)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_interface", interface)
        object.__setattr__(self, "_only", only)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(store, ConversationalExtension) holds as it did unwrapped
        return type(self._target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        contract = _contract(self._interface)
        if name not in contract or not callable(value) or (self._only is not None and name not in self._only):
            return value
        return self._checked(f"{self._interface.__name__}.{name}", value, *contract[name])

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"

    def _checked(self, what: str, method: Any, hint: Any, is_async: bool) -> Any:
        def failed(exc: Exception) -> ExtensionCallError:
            label, name = provider_label(self._manager, self._target)
            log.error("%s failed in %s()", label, what, exc_info=exc)
            # its text stays out of the message (a client must not see what it may hold): a server's answer says
            # where the cause is, the CLI (whose user runs the extension) tells it
            return ExtensionCallError(f"{label} failed in {what}() with {type(exc).__name__}", extension=name,
                                      method=what)

        def conforming(result: Any) -> Any:
            if _conforms(result, hint):
                return result
            label, name = provider_label(self._manager, self._target)
            log.error("%s: %s() returned %.200r, not %s", label, what, result, _hint_text(hint))
            raise ExtensionCallError(f"{label}: {what}() returned {_what_it_is(result, hint)}, not {_hint_text(hint)}",
                                     extension=name, method=what)

        if not is_async:
            @functools.wraps(method)
            def call_sync(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = method(*args, **kwargs)
                except Exception as exc:
                    if not _theirs(exc):
                        raise
                    raise failed(exc) from exc
                return conforming(result)

            return call_sync

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
                if inspect.isawaitable(result):  # (an implementation written without async def is served too)
                    result = await result
            except Exception as exc:
                if not _theirs(exc):
                    raise
                raise failed(exc) from exc
            return conforming(result)

        return call
