"""Import aiohttp's server without its client, for ``jan serve``'s resident memory (issue 16).

``import aiohttp`` runs the package's ``__init__``, which imports the whole HTTP client with the server: the
connector, cookie jar, tracing, client requests and websockets, aiohappyeyeballs, and two OpenSSL contexts made at
import (the system's CA bundle loaded into each). A server that never makes an outgoing request carries all of it:
4.2 MiB of ``jan serve``'s resident memory on stories260K (``benchmarks/bench_memory.py``; 172 modules against 152
for the server's own). ``aiohttp.web`` and the modules it imports only use the package for its ``__path__`` and
``__version__`` (``aiohttp.http`` puts it in the ``Server`` header), so :func:`defer_client` puts the package in
``sys.modules`` without running its ``__init__`` yet: a module object from aiohttp's own import spec, with
``__version__`` read from the source of that ``__init__`` (what running it will set), whose module ``__getattr__``
(PEP 562) runs the real ``__init__`` in place on the first name it does not hold, and before a name is set or
deleted on it. From then on the package is the one ``import aiohttp`` would have made: ``aiohttp.ClientSession``,
``from aiohttp import ClientTimeout``, ``dir(aiohttp)``, an extension's ``import aiohttp`` all work, loading the
client the first time anything asks for it (the image-URL fetcher, the downloader, a remote model, the ``fetch_url``
tool). Only reading the package's ``__dict__`` itself (``vars(aiohttp)``) before that shows less: what the server
imported. No library offers this (aiohttp has no server-only import), hence this module.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import threading
import types
from collections.abc import Callable
from importlib.machinery import ModuleSpec

__all__ = ["defer_client", "load_client"]

#: The deferred package's completion while it waits to run (None: aiohttp was not deferred, or is whole now).
_complete: Callable[[], None] | None = None

#: ``__version__ = "3.14.5"`` at the start of a line of the package's ``__init__`` (aiohttp's first line).
_VERSION = re.compile(r"""^__version__\s*=\s*(['"])([^'"\\\n]+)\1[ \t]*(?:#.*)?$""", re.MULTILINE)


def _source_version(spec: ModuleSpec) -> str | None:
    """The version the package's own ``__init__`` will assign: its one top-level ``__version__ = "..."`` literal,
    or None where there is no source to read or no single such line. Not the installed distribution's metadata: an
    aiohttp imported from elsewhere than the one pip recorded (``PYTHONPATH``, a vendored or bundled copy) has
    another version, or none (a frozen application), and ``aiohttp.__version__`` and the ``Server`` header would
    then name a version that is not the code's, and change at the first client use."""
    get_source = getattr(spec.loader, "get_source", None)
    if get_source is None:
        return None
    try:
        source = get_source(spec.name)
    except (ImportError, OSError, ValueError):  # (unreadable; a ValueError: not decodable as text)
        return None
    found = _VERSION.findall(source or "")
    return found[0][1] if len(found) == 1 else None


def defer_client() -> bool:
    """Register aiohttp's package in ``sys.modules`` with its ``__init__`` run on first use of one of its names.

    Call before the first ``import aiohttp`` (``jan serve`` does, before importing its server). Returns ``True``
    when the package was deferred, ``False`` when aiohttp was already imported (then nothing changes), is not
    installed as a regular package, or its ``__init__`` has no source telling its version (then ``import aiohttp``
    imports it as usual). Thread-safe: the first name looked up from any thread runs ``__init__`` once,
    other threads wait for it; an exception from ``__init__`` propagates to the lookup that ran it and leaves the
    package deferred, so the next lookup tries again (as a failed ``import aiohttp`` would be retried).
    """
    if "aiohttp" in sys.modules:
        return False
    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    version = _source_version(spec)
    if version is None:
        return False
    package = importlib.util.module_from_spec(spec)
    package.__version__ = version
    lock = threading.RLock()
    loading = threading.local()

    def complete() -> None:
        """Run the real ``__init__`` in the package (once); ours are replaced by its own ``__getattr__``/``__dir__``."""
        with lock:
            if package.__dict__.get("__getattr__") is not deferred_getattr:
                return  # done by another thread while this one waited
            loading.active = True
            try:
                spec.loader.exec_module(package)
            finally:
                loading.active = False
            if package.__dict__.get("__getattr__") is deferred_getattr:  # an __init__ without its own
                del package.__dict__["__getattr__"]
                del package.__dict__["__dir__"]
            package.__class__ = types.ModuleType  # a plain module from here on, as ``import aiohttp`` makes it
            global _complete
            _complete = None

    def deferred_getattr(name: str) -> object:
        if getattr(loading, "active", False):
            # a name asked for while ``__init__`` runs, before it defines it: what a partly imported module says
            raise AttributeError(f"partially initialized module 'aiohttp' has no attribute {name!r}")
        if name.isidentifier() and importlib.util.find_spec(f"aiohttp.{name}") is not None:
            # a submodule (``from aiohttp import web`` asks for it as a name first): import just it, as the
            # import system would, without the rest of the package. A lookup fails only as the real package's
            # would, with an AttributeError (``hasattr``, ``getattr(aiohttp, name, None)`` and ``pickle`` looking
            # for a name in every module catch only that): ``aiohttp.worker`` without gunicorn installed is no
            # ModuleNotFoundError, and a dotted name (``"web.x"``) imports nothing.
            try:
                return importlib.import_module(f"aiohttp.{name}")
            except Exception as exc:
                raise AttributeError(f"module 'aiohttp' has no attribute {name!r} ({type(exc).__name__}: {exc})",
                                     name=name, obj=package) from exc
        complete()
        try:
            return package.__dict__[name]
        except KeyError:
            return getattr(package, name)  # through the real __init__'s own __getattr__ (its lazy gunicorn workers)

    def deferred_dir() -> list[str]:
        complete()
        return dir(package)

    class DeferredPackage(types.ModuleType):
        """The package's class until its ``__init__`` ran. A name set or deleted on it (a test's or a plugin's
        ``aiohttp.ClientSession = Traced``) is set after ``__init__`` ran, as it would be on a package imported
        whole: set before, the later run of ``__init__`` would have put the original back. The import system
        setting a submodule imported alone as the package's attribute (``aiohttp.web``) is no such use."""

        def __setattr__(self, name: str, value: object) -> None:
            submodule = isinstance(value, types.ModuleType) and value.__name__ == f"aiohttp.{name}"
            if not submodule and not getattr(loading, "active", False):
                complete()
            types.ModuleType.__setattr__(self, name, value)  # (complete() made it a plain module: no super())

        def __delattr__(self, name: str) -> None:
            if not getattr(loading, "active", False):
                complete()
            types.ModuleType.__delattr__(self, name)

    package.__getattr__ = deferred_getattr
    package.__dir__ = deferred_dir
    package.__class__ = DeferredPackage
    sys.modules["aiohttp"] = package
    global _complete
    _complete = complete
    return True


async def load_client() -> None:
    """Have aiohttp's deferred client imported in a worker thread: its ``__init__`` (~0.15 s of imports) run by the
    first lookup of a client name on the event loop would hold every other request meanwhile. Await it before a
    coroutine's first use of the client (``aiohttp.ClientSession``, ``aiohttp.ClientError``); nothing to do when
    aiohttp was not deferred or is whole already. What ``__init__`` raises is raised here (and the next call tries
    again)."""
    complete = _complete
    if complete is not None:
        await asyncio.to_thread(complete)

