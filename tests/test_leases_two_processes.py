"""A lease taken while another process sweeps the lease folder stays a lease (:mod:`jan.store.leases`).

A server starting sweeps the lease files nobody holds (left by dead processes). It found one free (its taker, in
another process, had made the file and not locked it yet), let it go, and removed it — after the taker had locked
it: the taker held a lock on a file no longer there, and every other process read its live reply as an orphan
(finished "interrupted"), its batch as nobody's (taken up and run twice). Now a lease file is locked, and found free
and removed, only under the folder's guard, so a sweep and a take never interleave.

The sweep runs in a process of its own (a lease is an OS lock: in one process every Leases shares its holds), paused
by a hook just before it removes the file; the test takes the lease meanwhile. No step waits on time: each side waits
on the other's marker file or on an event, with a generous bound.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jan.store.leases import Leases

pytestmark = pytest.mark.timeout(300)

#: Generous bound on any wait (a busy 2-core machine).
BOUND = 120.0

_SWEEPER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from jan.store.leases import Leases

    folder, lease, marks = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def wait_for(name):
        deadline = time.monotonic() + {bound}
        while not (marks / name).exists():
            if time.monotonic() > deadline:
                sys.exit(f"no {{name}}")
            time.sleep(0.01)

    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fspath(path) == lease:
            (marks / "at_unlink").touch()
            wait_for("go")  # the test has taken the lease meanwhile (or waits for the sweep to end)
        return real_unlink(path, *args, **kwargs)

    os.unlink = unlink
    leases = Leases(folder)
    leases.sweep()
    os.unlink = real_unlink
    (marks / "swept").touch()
    wait_for("taken")
    print("live" if leases.is_live(Path(lease).stem) else "gone", flush=True)
""").format(bound=BOUND)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + BOUND
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.01)


def test_a_lease_taken_while_another_process_sweeps_is_never_removed(tmp_path, monkeypatch):
    folder = tmp_path / ".live"
    folder.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    key = "msg_01TAKENWHILESWEPT"
    lease = folder / f"{key}.lock"
    lease.touch()  # made by its taker, not locked yet (or a dead process's, its id now taken again)

    # The take either goes through at once or waits for the guard the paused sweep holds: told apart by an event
    # set when it asks for the guard, so the sweep is let go on once the take is under way, whichever it does.
    asking = threading.Event()
    original = getattr(Leases, "_guard", None)
    if original is not None:
        def guard(self):
            asking.set()
            return original(self)
        monkeypatch.setattr(Leases, "_guard", guard)

    sweeper = subprocess.Popen([sys.executable, "-c", _SWEEPER, str(folder), str(lease), str(marks)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    leases = Leases(folder)
    try:
        _wait_for(marks / "at_unlink")  # the sweep found the file free, and is about to remove it
        asking.clear()
        taker = threading.Thread(target=leases.take, args=(key,))
        taker.start()
        while taker.is_alive() and not asking.is_set():
            taker.join(0.01)
        (marks / "go").touch()
        taker.join(BOUND)
        assert not taker.is_alive()
        assert leases.holds(key)
        (marks / "taken").touch()
        out, err = sweeper.communicate(timeout=BOUND)
        assert sweeper.returncode == 0, err
        # the other process sees the lease this one holds: its file is there, locked
        assert out.strip() == "live", (out, err)
        assert lease.exists()
    finally:
        leases.release(key)
        if sweeper.poll() is None:
            sweeper.kill()
            sweeper.wait()
