"""Start a stdio MCP server that dies with jan: ``python _orphan_guard.py <jan's pid> <command> [args...]``.

Run by jan in place of the server's command on Linux (stdlib only, no jan import: it runs before every server
start). It asks the kernel to SIGKILL this process when the jan thread that started it ends
(``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), then becomes the server (``execvp``): same pid, same
stdin/stdout. The mcp SDK stops a server when jan stops gracefully; this covers jan killed (``kill -9``, the
OOM killer), where a server busy in a call would otherwise run on as an orphan until its call returns.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        print(f"jan: could not ask to die with jan (prctl: errno {ctypes.get_errno()})", file=sys.stderr)
    if os.getppid() != parent:  # jan died before the request was made: nobody is left to serve
        os._exit(1)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"jan: could not start {command[0]!r}: {exc}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main()
