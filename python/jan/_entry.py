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


def main() -> None:
    """The ``jan`` command."""
    try:
        try:
            from jan.cli import main as cli  # (the slow part of a start: click, the command group)
        except KeyboardInterrupt:
            exit_interrupted()
        cli()
    except KeyboardInterrupt:  # (the group handles its own; one that came as it handled another)
        exit_interrupted()
    finally:
        _exit_at_once_on_ctrl_c()
