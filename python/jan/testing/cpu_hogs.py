"""CPU-bound processes to run beside jan: the busy machine of the contention tests and benchmarks.

A hog is a Python process spinning in a loop, like a browser tab or a compile on a user's laptop,
bounded in time so that nothing outlives a crashed test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_HOG = "import time\nend = time.monotonic() + {seconds}\nx = 0\nwhile time.monotonic() < end:\n    x += 1\n"


@contextmanager
def cpu_hogs(k: int, seconds: float = 240.0) -> Iterator[list[subprocess.Popen]]:
    """``k`` busy-looping processes while the block runs; each also ends by itself after ``seconds``."""
    procs = [subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=seconds)], start_new_session=True)
             for _ in range(k)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
