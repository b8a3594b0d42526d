"""An MCP server whose handshake the test holds: ``python held_server.py GATE``.

It writes its pid to ``GATE.pid`` and then reads nothing from stdin (so jan's ``initialize`` gets no answer)
until the file ``GATE`` exists; then it exits. A server hung in its handshake, for as long as the test wants.
"""

import os
import sys
import time
from pathlib import Path

gate = Path(sys.argv[1])
pid_file = gate.with_name(gate.name + ".pid")
pid_file.with_suffix(".tmp").write_text(str(os.getpid()), encoding="utf-8")
os.replace(pid_file.with_suffix(".tmp"), pid_file)  # whole, never half-written, for the test reading it
while not gate.exists():
    time.sleep(0.05)
sys.exit(0)
