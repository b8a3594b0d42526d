"""`jan serve` stops cleanly on SIGINT/SIGTERM: open streams end with an error event, models unload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from jan.testing.server import free_port


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_open_streams_cleanly(tmp_path, stories_path, sig):
    port = free_port()
    # (at DEBUG: the built-in extensions' unload lines are DEBUG since jan serve's start was made short; into a
    # file, not a pipe nothing reads while the server runs)
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jan.cli", "serve", "--port", str(port), "--data-folder",
                                 str(tmp_path / "data"), "-m", str(stories_path), "--ctx-size", "16384", "--threads",
                                 "1", "--log-level", "debug"], stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        body = json.dumps({"model": "stories260K", "prompt": "Once", "max_tokens": 15000, "stream": True,
                           "ignore_eos": True}).encode()
        stream = urllib.request.urlopen(urllib.request.Request(
            base + "/v1/completions", data=body, headers={"Content-Type": "application/json"}), timeout=60)
        assert stream.readline().startswith(b"data: {")
        proc.send_signal(sig)
        rest = stream.read().decode()
        assert "event: error" in rest and '"server_shutdown"' in rest
        assert proc.wait(30) == 0
        output = log.read_text()
        assert "shutting down" in output
        assert "extension llamacpp unloaded" in output
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
