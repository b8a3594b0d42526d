"""A stored reply that goes back to ``pending`` (a resumed or retried one) has not ended: its ``completed_at`` is
cleared, and the end it reaches later is the one it tells (not the end it had before)."""

from __future__ import annotations

import jan.store.messages as messages_module
from jan.store import DataFolder


def test_a_reply_reopened_then_ended_tells_its_new_end(tmp_path, monkeypatch):
    store = DataFolder(tmp_path / "data")
    clock = iter([1000, 2000])
    monkeypatch.setattr(messages_module, "now_s", lambda: next(clock))
    thread = store.threads.create("t")
    reply = store.messages.create(thread["id"], "assistant", "", status="pending")
    cut = store.messages.update(thread["id"], reply["id"], content="half", status="stopped",
                                metadata={"stop_reason": "interrupted"})
    assert cut["completed_at"] == 1000
    reopened = store.messages.update(thread["id"], reply["id"], status="pending", metadata={})
    assert reopened["completed_at"] is None and reopened["metadata"] == {}
    done = store.messages.update(thread["id"], reply["id"], content="half and whole", status="ready")
    assert done["completed_at"] == 2000
