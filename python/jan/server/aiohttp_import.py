"""Import aiohttp's server without its client, for ``jan serve``'s resident memory (issue 16).

``import aiohttp`` runs the package's ``__init__``, which imports the whole HTTP client with the server: the
connector, cookie jar, tracing, client requests and websockets, aiohappyeyeballs, and two OpenSSL contexts made at
import (the system's CA bundle loaded into each). A server that never makes an outgoing request carries all of it:
4.2 MiB of ``jan serve``'s resident memory on stories260K (``benchmarks/bench_memory.py``; 172 modules against 152
for the server's own). ``aiohttp.web`` and the modules it imports only use the package for its ``__path__`` and
``__version__`` (``aiohttp.http`` puts it in the ``Server`` header), so :func:`defer_client` puts the package in
``sys.modules`` without running its ``__init__`` yet: a module object from aiohttp's own import spec, with
``__version__`` from the installed distribution's metadata, whose module ``__getattr__`` (PEP 562) runs the real
``__init__`` in place on the first name it does not hold. From then on the package is the one ``import aiohttp``
would have made: ``aiohttp.ClientSession``, ``from aiohttp import ClientTimeout``, ``dir(aiohttp)``, an extension's
``import aiohttp`` all work, loading the client the first time anything asks for it (the image-URL fetcher, the
downloader, a remote model, MCP). No library offers this (aiohttp has no server-only import), hence this module.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import threading

__all__ = ["defer_client"]


def defer_client() -> bool:
    """Register aiohttp's package in ``sys.modules`` with its ``__init__`` run on first use of one of its names.

    Call before the first ``import aiohttp`` (``jan serve`` does, before importing its server). Returns ``True``
    when the package was deferred, ``False`` when aiohttp was already imported (then nothing changes) or is not
    installed as a regular package with its distribution's metadata (then ``import aiohttp`` imports it whole). Thread-safe: the first name looked up from any thread runs ``__init__`` once,
    other threads wait for it; an exception from ``__init__`` propagates to the lookup that ran it and leaves the
    package deferred, so the next lookup tries again (as a failed ``import aiohttp`` would be retried).
    """
    if "aiohttp" in sys.modules:
        return False
    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    try:
        version = importlib.metadata.version("aiohttp")
    except importlib.metadata.PackageNotFoundError:  # (no distribution metadata: imported as it is, whole)
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
                del package.__getattr__
                del package.__dir__

    def deferred_getattr(name: str) -> object:
        if getattr(loading, "active", False):
            # a name asked for while ``__init__`` runs, before it defines it: what a partly imported module says
            raise AttributeError(f"partially initialized module 'aiohttp' has no attribute {name!r}")
        if importlib.util.find_spec(f"aiohttp.{name}") is not None:
            # a submodule (``from aiohttp import web`` asks for it as a name first): import just it, as the
            # import system would, without the rest of the package
            return importlib.import_module(f"aiohttp.{name}")
        complete()
        try:
            return package.__dict__[name]
        except KeyError:
            return getattr(package, name)  # through the real __init__'s own __getattr__ (its lazy gunicorn workers)

    def deferred_dir() -> list[str]:
        complete()
        return dir(package)

    package.__getattr__ = deferred_getattr
    package.__dir__ = deferred_dir
    sys.modules["aiohttp"] = package
    return True

