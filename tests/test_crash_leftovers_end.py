"""Nothing is left ``queued``/``in_progress`` on disk after a crash: what a server killed mid-operation (kill -9)
leaves in the data folder is saved as it ended when a server next starts, and the API answers what the file says.

Each test writes the leftover as a crash leaves it (no real kill: the lease that a live server would hold is
simply not held), starts a server on the folder, and reads both the file and the API. A record another live
server sharing the folder is generating (its lease held, here by a child process) is left as it stands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from api_helpers import running

pytestmark = pytest.mark.timeout(120)


def _response(rid: str, status: str) -> dict:
    return {"response": {"id": rid, "object": "response", "created_at": 1700000000, "status": status, "error": None,
                         "incomplete_details": None, "model": "stories260K", "output": [], "background": True,
                         "store": True, "usage": None},
            "input_items": [{"id": "msg_1", "type": "message", "role": "user",
                             "content": [{"type": "input_text", "text": "Once"}]}],
            "thread_id": None, "last_message_id": None}


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


class HeldLease:
    """A child process holding the lease on ``key`` (as a second live server generating it does) until closed."""

    def __init__(self, data: Path, key: str) -> None:
        code = textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from jan.store.leases import LEASE_DIR_NAME, Leases
            Leases(Path({str(data)!r}) / LEASE_DIR_NAME).take({key!r})
            print("held", flush=True)
            sys.stdin.read()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def test_responses_a_crash_left_unfinished_end_failed_on_disk_at_start(tmp_path):
    data = tmp_path / "data"
    folder = data / "responses"
    folder.mkdir(parents=True)
    left = {"resp_queued1": "queued", "resp_running1": "in_progress", "resp_elsewhere1": "in_progress",
            "resp_done1": "completed"}
    for rid, status in left.items():
        (folder / f"{rid}.json").write_text(json.dumps(_response(rid, status)))
    before_done = (folder / "resp_done1.json").read_bytes()
    other = HeldLease(data, "resp_elsewhere1")  # (another live server on this data folder generates this one)
    try:
        with running(data) as srv:
            for rid in ("resp_queued1", "resp_running1"):
                saved = json.loads((folder / f"{rid}.json").read_text())
                # (before: left "queued"/"in_progress" on disk for ever; only a read said failed)
                assert saved["response"]["status"] == "failed", saved
                assert "server stopped" in saved["response"]["error"]["message"]
                assert saved["input_items"] == _response(rid, "x")["input_items"]  # (the rest kept as it was)
                got = _get(srv.base_url, f"/v1/responses/{rid}")
                assert got["status"] == "failed" and got["error"] == saved["response"]["error"], got
            # another server's live one: as it stands, on disk and through the API
            assert json.loads((folder / "resp_elsewhere1.json").read_text())["response"]["status"] == "in_progress"
            assert _get(srv.base_url, "/v1/responses/resp_elsewhere1")["status"] == "in_progress"
            assert (folder / "resp_done1.json").read_bytes() == before_done  # an ended one is not rewritten
    finally:
        other.close()
