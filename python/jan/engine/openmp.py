"""How long llama.cpp's OpenMP threads spin before they sleep, set as the native module loads.

ggml's CPU backend (built with OpenMP, as llama-cpp-python's Linux wheels are) syncs a decode's threads
at a barrier after every op, and its workers wait there — and between decodes — by spinning for
``GOMP_SPINCOUNT`` iterations before they sleep. libgomp's default (300,000; "about 3 ms", libgomp's
env.c) suits a machine with nothing else to run. On a busy one (a browser, a build beside jan) a thread
spinning for a partner that lost its core burns the time slice the partner needs, and a greedy stream
that keeps every configured thread (jan.Model's ``adaptive_threads="exact"``) fell 10x and more.
Measured on a 2-core host (2026-12-01, in-process, greedy, 800 tokens of stories260K, 2 threads,
median of 4): 30,000 spins gave 1,043–1,086 t/s quiet (default 975–1,048), 384–562 with one CPU-bound
process beside it (default 179–313) and 406–612 with two (default 62–98); Gemma 3 270M greedy on one
stream, 10 runs each: 42.7 vs 43.6 t/s median quiet. Shorter still costs a quiet machine (0 spins: a
wake-up per barrier, 35% slower on stories260K; 10,000: 6% on Gemma).

libgomp reads the variable once, when it is loaded, so it is set around that load and then taken out
of the environment again: programs jan starts (MCP servers, a llama-server in the benchmarks) and
libraries loaded later see the environment the user gave. A user's own ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY`` wins; neither has any effect where libgomp was loaded before jan (another library
using OpenMP imported first), nor with other OpenMP runtimes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, MutableMapping

__all__ = ["SPIN_COUNT", "spin_count_for_load"]

#: Spins before an idle OpenMP thread sleeps (libgomp's GOMP_SPINCOUNT): see the module docstring.
SPIN_COUNT = 30_000

#: Variables by which a user chose how OpenMP threads wait: jan leaves the choice alone.
_USER_CHOICES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@contextlib.contextmanager
def spin_count_for_load(environ: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """While the block loads the native engine (and with it libgomp): ``GOMP_SPINCOUNT`` is
    :data:`SPIN_COUNT` unless the user set it or ``OMP_WAIT_POLICY``; afterwards the environment is
    as it was."""
    if any(name in environ for name in _USER_CHOICES):
        yield
        return
    environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        yield
    finally:
        environ.pop("GOMP_SPINCOUNT", None)
