"""Work started and not waited for (a lease file removed in a worker thread, a claim let go): its failure told.

A future nobody awaits keeps its exception to itself: asyncio says "exception was never retrieved" when (and if) it
is collected, with no word of what the work was, and ``asyncio.gather(..., return_exceptions=True)`` at a stop drops
it silently. :func:`report_failure` has each such future log one warning naming its work as it ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

__all__ = ["report_failure"]

F = TypeVar("F", bound="asyncio.Future")

log = logging.getLogger("jan.background")


def report_failure(future: F, what: str, logger: logging.Logger | None = None) -> F:
    """Log one warning (``logger``, else ``jan.background``; the traceback with it) when ``future`` ends with an
    exception, naming ``what`` ("releasing the lease on X"); a cancel is no failure. Returns ``future``, so that the
    call wraps where it is made. Retrieves the exception, so asyncio logs it no more."""
    def told(done: asyncio.Future) -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            (logger or log).warning("%s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)

    future.add_done_callback(told)
    return future
