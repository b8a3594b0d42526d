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


def _crashed_writer(data: Path, *, pending_ids: list[str]) -> str:
    """A process that opens the data folder, makes a thread with a reply being written (``pending``, its lease
    held) per id in ``pending_ids``, and dies as kill -9 ends it (no cleanup: its lease files stay); the thread id."""
    code = textwrap.dedent(f"""
        import os
        from jan.store.folder import DataFolder
        folder = DataFolder({str(data)!r})
        thread = folder.threads.create("crash", messages=[{{"role": "user", "content": "Once"}}])
        for mid in {pending_ids!r}:
            folder.messages.create(thread["id"], "assistant", "Once upon a", status="pending", message_id=mid)
        print(thread["id"], flush=True)
        os._exit(9)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    return done.stdout.strip()


def _messages_on_disk(data: Path, thread_id: str) -> dict[str, dict]:
    out = {}
    for line in (data / "threads" / thread_id / "messages.jsonl").read_text().splitlines():
        record = json.loads(line)
        out[record["id"]] = record  # (the latest line of each wins)
    return out


def test_replies_a_crash_left_pending_end_stopped_on_disk_at_start(tmp_path):
    data = tmp_path / "data"
    # another live process writes a reply in the same folder meanwhile: its lease held, it stays pending
    other_tid = _crashed_writer(data, pending_ids=["msg_01LIVEREPLY00000000000000"])
    other = HeldLease(data, "msg_01LIVEREPLY00000000000000")
    try:
        tid = _crashed_writer(data, pending_ids=["msg_01CRASHEDREPLY0000000000A"])
        assert (data / ".live" / "msg_01CRASHEDREPLY0000000000A.lock").exists()  # (as kill -9 leaves it)
        assert _messages_on_disk(data, tid)["msg_01CRASHEDREPLY0000000000A"]["status"] == "pending"
        with running(data) as srv:
            saved = _messages_on_disk(data, tid)["msg_01CRASHEDREPLY0000000000A"]
            # (before: "pending" on disk until something read the thread)
            assert saved["status"] == "stopped" and saved["metadata"]["stop_reason"] == "interrupted", saved
            got = _get(srv.base_url, f"/v1/threads/{tid}/messages/msg_01CRASHEDREPLY0000000000A")
            assert got["status"] == "incomplete", got
            assert _messages_on_disk(data, other_tid)["msg_01LIVEREPLY00000000000000"]["status"] == "pending"
    finally:
        other.close()
