"""Damaged files of the data folder (bytes that are not UTF-8, a file emptied by a crash) are told the same way by
every store and every call: a thread whose thread.json an earlier read set aside was a bare "not found" from
threads.get / update and from its messages (all of them still there), where a model or an assistant said
"damaged, set aside as ..."."""

from __future__ import annotations

import pytest
from jan.store import DataFolder
from jan.store.errors import NotFoundError


@pytest.mark.parametrize("damage", [b'{"title": "\xff\xfe"}', b"", b"{torn"])
def test_a_damaged_thread_is_told_as_damaged_by_every_call_and_left_in_place(tmp_path, damage):
    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")
    store.messages.create(thread["id"], "user", "hi")
    path = store.threads_dir / thread["id"] / "thread.json"
    path.write_bytes(damage)
    assert store.threads.list().data == []  # the listing leaves it out, and where it is
    again = DataFolder(tmp_path / "data")  # (another process)
    calls = [lambda s: s.threads.get(thread["id"]), lambda s: s.threads.update(thread["id"], title="x"),
             lambda s: s.messages.list(thread["id"]), lambda s: s.messages.create(thread["id"], "user", "yo")]
    for s in (store, again):
        for call in calls:
            with pytest.raises(NotFoundError, match=f"is damaged .*threads/{thread['id']}/thread.json") as info:
                call(s)
            assert info.value.damaged == f"threads/{thread['id']}/thread.json"
    assert path.read_bytes() == damage and not list(path.parent.glob("thread.json.corrupt-*"))
    assert (store.threads_dir / thread["id"] / "messages.jsonl").read_bytes().count(b"\n") == 1  # kept


@pytest.mark.parametrize("damage", [b"{torn"])
def test_a_thread_an_older_jan_set_aside_is_told_as_damaged_by_every_call(tmp_path, damage):
    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")
    store.messages.create(thread["id"], "user", "hi")
    path = store.threads_dir / thread["id"] / "thread.json"
    path.write_bytes(damage)
    path.rename(path.with_name("thread.json.corrupt-20260101T000000000000Z"))  # (as jan before this one did)
    assert store.threads.list().data == []
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


MAX = 64 * 1024 * 1024


def test_a_huge_document_is_left_out_unread_and_told(tmp_path):
    """Before: a model.json of hundreds of MB (a GGUF named so, a file pasted over it) was read whole at each
    listing (GBs of memory for a large one) and a valid one served as a model whatever its size."""
    from jan.store.context import MAX_DOC_BYTES

    assert MAX_DOC_BYTES == MAX
    store = DataFolder(tmp_path / "data")
    store.models.create({"id": "m", "engine": "llama.cpp", "settings": {}})
    store.models.create({"id": "ok", "engine": "llama.cpp", "settings": {}})
    path = store.models_dir / "m" / "model.json"
    with open(path, "r+b") as f:
        f.truncate(MAX + 1)  # (sparse: no disk taken)
    assert [m["id"] for m in store.models.list()] == ["ok"]
    assert [p.path for p in store.problems] == ["models/m/model.json"]
    assert "more than any model file jan writes" in store.problems[0].error
    with pytest.raises(NotFoundError, match="model 'm' is damaged .*more than any model file"):
        store.models.get("m")
    assert path.stat().st_size == MAX + 1  # left where it is


@pytest.mark.parametrize("name", ["thread.json", "messages.jsonl"])
def test_a_named_pipe_in_a_files_place_is_an_error_not_a_hang(tmp_path, name):
    """Before: reading a thread.json or messages.jsonl that was a named pipe waited forever for a writer (a listing,
    every request after it)."""
    import os

    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")
    store.messages.create(thread["id"], "user", "hi")
    path = store.threads_dir / thread["id"] / name
    path.unlink()
    os.mkfifo(path)
    if name == "thread.json":
        assert store.threads.list().data == []
        assert "named pipe" in store.problems[0].error
        with pytest.raises(OSError, match="named pipe"):
            store.threads.get(thread["id"])
    else:
        with pytest.raises(OSError, match="named pipe"):
            store.messages.list(thread["id"])
        with pytest.raises(OSError, match="named pipe"):
            store.messages.create(thread["id"], "user", "again")
