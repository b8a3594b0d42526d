"""Damaged files of the data folder (bytes that are not UTF-8, a file emptied by a crash) are told the same way by
every store and every call: a thread whose thread.json an earlier read set aside was a bare "not found" from
threads.get / update and from its messages (all of them still there), where a model or an assistant said
"damaged, set aside as ..."."""

from __future__ import annotations

import pytest
from jan.store import DataFolder
from jan.store.errors import NotFoundError


@pytest.mark.parametrize("damage", [b'{"title": "\xff\xfe"}', b"", b"{torn"])
def test_a_set_aside_thread_is_told_as_damaged_by_every_call(tmp_path, damage):
    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")
    store.messages.create(thread["id"], "user", "hi")
    (store.threads_dir / thread["id"] / "thread.json").write_bytes(damage)
    assert store.threads.list().data == []  # the listing sets it aside
    again = DataFolder(tmp_path / "data")  # (another process: it did not see it happen)
    calls = [lambda s: s.threads.get(thread["id"]), lambda s: s.threads.update(thread["id"], title="x"),
             lambda s: s.messages.list(thread["id"]), lambda s: s.messages.create(thread["id"], "user", "yo")]
    for s in (store, again):
        for call in calls:
            with pytest.raises(NotFoundError, match="is damaged: its thread.json did not parse and was set aside as "
                                                    f"threads/{thread['id']}/thread.json.corrupt-") as info:
                call(s)
            assert info.value.damaged.startswith(f"threads/{thread['id']}/thread.json.corrupt-")
    assert (store.threads_dir / thread["id"] / "messages.jsonl").read_bytes().count(b"\n") == 1  # kept
