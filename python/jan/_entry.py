"""Where the ``jan`` command starts (the console script, ``python -m jan``, ``python -m jan.cli``).

Only the standard library is imported here, so that Ctrl-C is handled from the first line of jan's own code:
while :mod:`jan.cli` and what it needs are being imported, while click parses the arguments, while a command
runs, and while the interpreter shuts down. A Ctrl-C anywhere ends the command quietly with status 130 (128 +
SIGINT, what a shell reports for a command Ctrl-C stopped), never with a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

#: The exit status of a command stopped by Ctrl-C.
INTERRUPTED = 130


def exit_interrupted():  # -> NoReturn (typing is not imported here: it takes a while, and this is the start)
    """Leave as a Ctrl-C'd command does: a line break after the terminal's ``^C`` echo, status 130."""
    try:
        sys.stderr.write("\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr closed or gone: the status is what matters
        pass
    raise SystemExit(INTERRUPTED)


def _exit_now(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - closed, or a reader gone
            pass
    os._exit(INTERRUPTED)


def _exit_at_once_on_ctrl_c() -> None:
    """From here on a Ctrl-C ends the process at once, with 130: the command is over, and what is left is the
    interpreter's shutdown (joining worker threads, atexit handlers), where a KeyboardInterrupt is printed as an
    "Exception ignored in ..." traceback and then waited out anyway. Only for the process's own entry, never for a
    command run in-process (click's test runner), whose caller owns the signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (left alone if ignored, SIG_IGN)
            signal.signal(signal.SIGINT, _exit_now)
    except (ValueError, OSError):
        pass


#: How long the interpreter's shutdown may wait for threads still running after a command ended.
STRAY_THREADS_S = 10.0


def _thread_said(thread) -> str:
    """A thread as the exit's note names it: its name, and the function it runs (whose code it is)."""
    target = getattr(thread, "_target", None)  # (Thread's own attribute: the function given as target=)
    if target is None:
        return repr(thread.name)
    where = getattr(target, "__module__", None) or "?"
    what = getattr(target, "__qualname__", None) or repr(target)
    return f"{thread.name!r} ({where}.{what})"


def _stray_threads():
    main_thread = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()]


def _exit_past_stray_threads(code) -> None:
    """Let the process end although a thread it started is still running: the interpreter's shutdown waits
    without end for every non-daemon thread, so an extension that started one and never stopped it (or a call of
    its, run with ``asyncio.to_thread``, that never returns) kept ``jan serve`` alive after a SIGTERM, and every
    command that loaded it from ending. A daemon watchdog gives the shutdown :data:`STRAY_THREADS_S`, then says
    on stderr which threads were left and ends the process with the command's status. Only for the process's own
    entry, never for a command run in-process (click's test runner)."""
    if threading.current_thread() is not threading.main_thread() or not _stray_threads():
        return
    status = code if isinstance(code, int) else (0 if code is None else 1)  # (sys.exit("text") is status 1)

    def watch() -> None:
        time.sleep(STRAY_THREADS_S)
        stray = _stray_threads()
        try:
            sys.stderr.write(f"jan: {len(stray)} thread(s) still running {STRAY_THREADS_S:g} s after the command "
                             f"ended, left behind (an extension's, not stopped at its unload?): "
                             f"{', '.join(_thread_said(t) for t in stray)}\n")
        except Exception:  # noqa: BLE001 - stderr closed or gone: the exit is what matters
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(status)

    threading.Thread(target=watch, name="jan-exit-watchdog", daemon=True).start()


def main() -> None:
    """The ``jan`` command."""
    code = None
    try:
        try:
            try:
                from jan.cli import main as cli  # (the slow part of a start: click, the command group)
            except KeyboardInterrupt:
                exit_interrupted()
            cli()
        except KeyboardInterrupt:  # (the group handles its own; one that came as it handled another)
            exit_interrupted()
    except SystemExit as exc:  # (click ends every command so): the status a watchdog's exit keeps
        code = exc.code
        raise
    finally:
        _exit_at_once_on_ctrl_c()
        _exit_past_stray_threads(code)
