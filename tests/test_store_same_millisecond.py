"""Things made within one millisecond list in the order they were made.

Lists sort by a millisecond stamp, ties by id, and an id that is no ULID (the default assistant ``jan``, an id a
client chose) does not sort by time: before the data folder's one clock, an assistant made in the same millisecond
as the default listed before it (``asst_…`` < ``jan``; a CI run on a fast machine). The wall clock is frozen here,
so every stamp and id asks for the same millisecond.
"""

from __future__ import annotations

import pytest

import jan.store.ids as ids_module
from jan.store import DataFolder
from jan.store.ids import new_ulid, ulid_millis
from jan.store.uploads import UploadStore


@pytest.fixture
def frozen_clock(monkeypatch):
    frozen = 1_700_000_000_123 * 1_000_000
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: frozen)
    # a clock of its own, as a fresh process has: the process's is already past this time (every stamp and id the
    # tests before made), and never goes back to it, so the wall clock catching up could not be seen
    monkeypatch.setattr(ids_module, "_clock", ids_module._UlidClock())
    return frozen // 1_000_000


def test_assistants_made_in_one_millisecond_list_in_order(tmp_path, frozen_clock):
    store = DataFolder(tmp_path)  # the default "jan", as the folder opens
    made = [store.assistants.create("A").get("id"), store.assistants.create("B", assistant_id="a-client-id")["id"],
            store.assistants.create("C")["id"], store.assistants.create("D", assistant_id="zz")["id"]]
    order = ["jan", *made]
    assert [x["id"] for x in store.assistants.list(order="asc").data] == order
    assert [x["id"] for x in store.assistants.list().data] == order[::-1]
    # paging one at a time walks the same order
    walked, after = [], None
    while True:
        page = store.assistants.list(order="asc", limit=1, after=after)
        walked += [x["id"] for x in page.data]
        if not page.has_more:
            break
        after = walked[-1]
    assert walked == order
    # a deleted assistant's id still places a cursor (the SDK pages on while it deletes)
    store.assistants.delete(made[2])
    assert [x["id"] for x in store.assistants.list(order="asc", after=made[2]).data] == [made[3]]
    assert [x["id"] for x in store.assistants.list(order="desc", after=made[2]).data] == ["a-client-id", made[0],
                                                                                          "jan"]


def test_threads_made_in_one_millisecond_list_newest_first(tmp_path, frozen_clock):
    store = DataFolder(tmp_path)
    made = [store.threads.create("one", thread_id="zeta")["id"], store.threads.create("two")["id"],
            store.threads.create("three", thread_id="alpha")["id"]]
    assert [t["id"] for t in store.threads.list().data] == made[::-1]
    # a message added to the oldest makes it the most recently updated
    store.messages.create(made[0], "user", "hello")
    assert [t["id"] for t in store.threads.list().data] == [made[0], made[2], made[1]]


def test_stamps_and_ids_from_one_clock_keep_their_order(frozen_clock, monkeypatch):
    stamps = [ids_module.stamp_ms() for _ in range(3)]
    assert stamps == sorted(set(stamps))
    ulid = new_ulid()
    assert stamps[-1] < ulid_millis(ulid) < ids_module.stamp_ms()
    assert stamps[0] >= frozen_clock
    # a reading takes no stamp: it is not before what was made, and moves nothing
    assert ids_module.clock_ms() == ids_module.clock_ms() >= ulid_millis(ulid)
    # the wall clock catches up: once it passes the stamps, they follow it again
    later = frozen_clock + 1_000
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: later * 1_000_000)
    assert ids_module.stamp_ms() == later and ulid_millis(new_ulid()) == later + 1


def test_files_made_in_one_second_list_in_order_and_a_deleted_ones_cursor_holds(tmp_path, frozen_clock):
    store = UploadStore(tmp_path)
    ids_module.stamp_ms(), ids_module.stamp_ms()  # the clock a little ahead of the frozen wall clock
    made = []
    for i in range(4):
        writer = store.writer(1 << 10)
        writer.write(b"x")
        made.append(store.commit(writer, filename=f"{i}.txt", purpose="user_data")["id"])
    assert [f["id"] for f in store.list(order="asc").data] == made
    store.delete(made[1])
    assert [f["id"] for f in store.list(order="asc", after=made[1]).data] == made[2:]
    assert [f["id"] for f in store.list(order="desc", after=made[1]).data] == made[:1]
