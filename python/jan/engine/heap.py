"""Handing freed native memory back to the operating system.

glibc's malloc keeps what a program frees for its own reuse: freed chunks stay resident in the arena of the
thread that allocated them. llama.cpp's vocabulary is hundreds of thousands of small allocations (Gemma 3's
262,144 tokens: ~43 MiB), made on whichever worker thread loaded the model, so after an unload, or a
vocab-only load that only read a file's header, the process kept that memory resident until the same thread
happened to allocate again (measured: +41 MiB of resident memory after one header read of Gemma 3 270M, +60 MiB
after unloading it). ``malloc_trim(0)`` walks every arena and returns whole free pages (a few milliseconds).
"""

from __future__ import annotations

import ctypes
import functools
import sys

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: the C library it runs on
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim(0)``). A no-op where the C library
    has none (musl, macOS, Windows). Takes the heap's locks in turn: call it after a large free (a model
    unloaded, a header read), not per request."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
