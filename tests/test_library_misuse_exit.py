"""A script that ends while a daemon thread is inside one of the engine's native calls exits cleanly.

CPython 3.11-3.13 ends a daemon thread that takes the GIL back during the interpreter's finalization with
pthread_exit; the forced unwind that starts there passed through the binding's GIL release, whose destructor was
noexcept, and the process aborted ("terminate called without an active exception", exit status 134) — an embed()
or a stream read in a worker thread when a script or a notebook kernel ended (cpp/bind_common.h, gil_released).
And a model such a thread still held was never freed, so its engine thread (or the embed() call) went on decoding
while the process's exit ran llama.cpp's static destructors: SIGSEGV (jan.engine.model._close_at_exit closes every
model at exit, before the interpreter finalizes).

Each case runs in its own interpreter: the daemon thread signals that it is inside the native call, the main thread
then ends, and an object whose ``__del__`` sleeps during finalization holds the interpreter there while the native
call returns, so that the daemon thread takes the GIL back while the interpreter finalizes (on the old build: every
run aborted).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_PRELUDE = """
import sys, threading, time

import jan

class _SlowFinalization:
    # held by the module's globals: deleted while the interpreter finalizes, it keeps it there for a while (sleep
    # lets the GIL go), long enough for the daemon thread's native call to return and try to take it back
    def __del__(self, sleep=time.sleep):
        sleep(1.5)

_slow = _SlowFinalization()
inside = threading.Event()
"""

_CASES = {
    # embed(): one native call per turn of a few decodes; ``cancel`` is asked right before each turn's call
    "embed": ("minilm", """
        class TurnStarts:
            def is_set(self):
                inside.set()
                return False
        model = jan.Model(MODEL)
        def run():
            model.embed(["hello world"] * 200000, cancel=TurnStarts())
        """),
    # a stream's iteration waits for events in native waits of 0.1 s
    "stream": ("stories", """
        model = jan.Model(MODEL, n_ctx=4096)
        def run():
            for _ in model.stream("Once", max_tokens=100000, ignore_eos=True):
                inside.set()
        """),
}

_MAIN = """
threading.Thread(target=run, daemon=True).start()
if not inside.wait(120):
    sys.exit("the daemon thread never started its native call")
print("main thread ends", flush=True)
"""


@pytest.mark.parametrize("case", sorted(_CASES))
def test_exit_with_a_daemon_thread_in_a_native_call(case, request):
    model_fixture, body = _CASES[case]
    model = request.getfixturevalue({"minilm": "minilm_path", "stories": "stories_path"}[model_fixture])
    script = _PRELUDE + f"MODEL = {str(model)!r}\n" + textwrap.dedent(body) + _MAIN
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # (an abort would run gdb to print a backtrace: slow, noisy)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert "main thread ends" in done.stdout, done.stderr[-2000:]
    assert "terminate called" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
