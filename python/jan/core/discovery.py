"""Finding extensions: entry points and registered objects, turned into Extension instances.

Nothing is loaded here; the manager decides what to do with what was found (and records
what could not be imported or created).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import types as _types
from dataclasses import dataclass
from typing import Any, Callable

from .exceptions import ExtensionError
from .extension import Extension

__all__ = ["Candidate", "entry_point_candidates", "instantiate"]

logger = logging.getLogger("jan.core.manager")


@dataclass
class Candidate:
    """Something that may become an extension: a registered object, or an entry point to import."""

    obj: Any
    name: str | None
    source: str
    dist_version: str | None = None
    load: Callable[[], Any] | None = None  # entry point loader (imports)


def entry_point_candidates(group: str) -> list[Candidate]:
    """The entry points of ``group``, by name, each once (a distribution on sys.path twice counts once)."""
    try:
        eps = importlib.metadata.entry_points(group=group)
    except Exception:  # pragma: no cover - broken metadata on sys.path
        logger.exception("could not read the %s entry points", group)
        return []
    found = []
    seen: set[tuple[str, str]] = set()
    # a distribution's name and version from one parse of its METADATA: each ``dist.name`` and ``dist.version``
    # parses the whole file again (jan's own has the README in it, ~2.5 ms a parse), and the built-in extensions'
    # seven entry points asked 14 times, most of what discovery took at each start (issue 16)
    facts: dict[int, tuple[str | None, str | None]] = {}  # by id(): the distributions live as long as ``eps``
    shadowed: dict[str, list[str]] = {}  # by normalized name: each distribution's copies looked for once
    for ep in sorted(eps, key=lambda e: e.name):
        if (ep.name, ep.value) in seen:  # the same dist on sys.path twice
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        if dist is not None and id(dist) not in facts:
            meta = dist.metadata
            facts[id(dist)] = (meta["Name"], meta["Version"]) if meta is not None else (None, None)
            if facts[id(dist)][0]:
                shadowed[_normalized(facts[id(dist)][0])] = _shadowed_copies(*facts[id(dist)], group)
        dist_name, dist_version = facts[id(dist)] if dist is not None else (None, None)
        source = f"entry point {ep.name} = {ep.value}" + (f" ({dist_name} {dist_version})" if dist_name else "")
        others = shadowed.get(_normalized(dist_name)) if dist_name else None
        if others:
            source += f"; also installed, never imported: {', '.join(others)}"
        found.append(Candidate(obj=None, name=ep.name, source=source, dist_version=dist_version,
                               load=ep.load if _well_formed(ep) else _malformed(ep.value)))
    return found


def _normalized(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def _shadowed_copies(name: str, version: str | None, group: str) -> list[str]:
    """The copies (``"0.1.0 at /path"``) of the distribution ``name`` (``version`` the one imported) that Python
    never imports, where one with ``group`` entry points is installed more than once (site-packages and a ``--user``
    or ``--target`` folder): ``importlib.metadata.entry_points`` drops them without a word -- an upgrade that "did
    nothing". A copy that declares no ``group`` entry point is none of discovery's business."""
    try:
        # ``distributions(name=)`` (public) finds the copies by their folders' names, normalized as the packaging
        # spec says, in sys.path order (the first is the one imported): no other distribution's METADATA read, and
        # no private attribute relied on (``_normalized_name``, which a Python upgrade could drop silently)
        copies: list[Any] = []
        for dist in importlib.metadata.distributions(name=name):
            if all(str(d.locate_file("")) != str(dist.locate_file("")) for d in copies):  # (a folder twice)
                copies.append(dist)
        if len(copies) > 1:
            copies = [d for d in copies if any(ep.group == group for ep in d.entry_points)]
        others = [f"{d.version} at {d.locate_file('')}" for d in copies[1:]]
    except Exception:  # pragma: no cover - broken metadata on sys.path: a note only
        logger.debug("could not list the copies of %s", name, exc_info=True)
        return []
    if others:
        logger.warning("extension package %s %s is installed more than once: %s shadowed (never imported); "
                       "uninstall it", name, version, ", ".join(others))
    return others


def _well_formed(ep: importlib.metadata.EntryPoint) -> bool:
    """Whether ``ep``'s value reads as ``module:object``: ``ep.load()`` of one that does not (``pkg:Cls:x``,
    ``pkg/mod:Cls``) failed with ``AttributeError: 'NoneType' object has no attribute 'group'``, which says nothing."""
    pattern = getattr(importlib.metadata.EntryPoint, "pattern", None)
    return pattern is None or bool(pattern.match(ep.value))


def _malformed(value: str) -> Callable[[], Any]:
    def load() -> Any:
        raise ExtensionError(f"the entry point's value {value!r} is not 'module:object' (a dotted module path, then "
                             "':' and the extension's class or factory)")
    return load


def instantiate(obj: Any) -> Extension:
    """An Extension from an instance, an Extension subclass, a synchronous factory, or a module
    defining ``extension``/``create_extension``; ``ExtensionError`` otherwise."""
    if isinstance(obj, Extension):
        return obj
    if isinstance(obj, _types.ModuleType):
        for attr in ("extension", "create_extension"):
            if hasattr(obj, attr):
                return instantiate(getattr(obj, attr))
        raise ExtensionError(f"module {obj.__name__} defines neither `extension` nor `create_extension`")
    if isinstance(obj, type):
        if issubclass(obj, Extension):
            return obj()
        raise ExtensionError(f"{obj.__module__}.{obj.__qualname__} is not a subclass of jan.core.Extension")
    if callable(obj):
        result = obj()
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ExtensionError("extension factories must be synchronous (do async work in on_load)")
        if isinstance(result, Extension):
            return result
        raise ExtensionError(f"factory {getattr(obj, '__qualname__', obj)!r} returned {type(result).__name__}, not an Extension")
    raise ExtensionError(f"{obj!r} is not an Extension, an Extension class, a factory or a module")
