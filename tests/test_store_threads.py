"""Threads and messages: CRUD, pagination, timestamps, torn lines."""

from __future__ import annotations

import base64
import json

import pytest

from jan.errors import JanError
from jan.store import AlreadyExistsError, DataFolder, InvalidArgumentError, NotFoundError, SCHEMA_VERSION_KEY

# a 1x1 PNG (what a client sends inline in an image_url part)
PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")


@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


def test_layout_is_created(store):
    for name in ("models", "threads", "assistants", "settings", "extensions", "logs"):
        assert (store.root / name).is_dir()


def test_env_var_selects_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("JAN_DATA_FOLDER", str(tmp_path / "from-env"))
    assert DataFolder().root == (tmp_path / "from-env").resolve()
    assert DataFolder(tmp_path / "explicit").root == (tmp_path / "explicit").resolve()


def test_create_thread_with_initial_messages(store):
    thread = store.threads.create(
        "Hello", metadata={"k": "v"},
        assistants=[{"assistant_id": "jan", "assistant_name": "Jan",
                     "model": {"id": "m", "settings": {}, "parameters": {}}, "instructions": ""}],
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert thread["id"].startswith("thread_")
    assert thread["object"] == "thread" and thread["title"] == "Hello"
    assert thread["created"] // 1000 == thread["created_at"]
    on_disk = json.loads((store.threads_dir / thread["id"] / "thread.json").read_text())
    assert on_disk[SCHEMA_VERSION_KEY] == 1 and on_disk["assistants"][0]["assistant_id"] == "jan"
    assert SCHEMA_VERSION_KEY not in store.threads.get(thread["id"])
    messages = store.messages.list(thread["id"]).data
    assert [m["role"] for m in messages] == ["user", "assistant"]
    first = messages[0]
    assert first["object"] == "thread.message" and first["thread_id"] == thread["id"]
    assert first["content"] == [{"type": "text", "text": {"value": "hi", "annotations": []}}]
    assert first["id"].startswith("msg_") and first["status"] == "ready"
    assert first["created"] // 1000 == first["created_at"]


def test_thread_crud(store):
    thread = store.threads.create("a")
    updated = store.threads.update(thread["id"], title="b", metadata={"x": 1})
    assert updated["title"] == "b" and updated["metadata"] == {"x": 1}
    assert updated["updated"] > thread["updated"]
    assert store.threads.get(thread["id"])["title"] == "b"
    assert store.threads.delete(thread["id"]) == {"id": thread["id"], "object": "thread.deleted", "deleted": True}
    assert not (store.threads_dir / thread["id"]).exists()
    with pytest.raises(NotFoundError) as err:
        store.threads.get(thread["id"])
    assert isinstance(err.value, KeyError) and isinstance(err.value, JanError)
    with pytest.raises(NotFoundError):
        store.threads.delete(thread["id"])
    with pytest.raises(NotFoundError):
        store.messages.create(thread["id"], "user", "late")
    # Deleting leaves no hidden trash behind.
    assert [p.name for p in store.threads_dir.iterdir()] == []


def test_explicit_thread_id_must_be_free(store):
    store.threads.create("a", thread_id="jan_1700000000000")
    with pytest.raises(AlreadyExistsError):
        store.threads.create("b", thread_id="jan_1700000000000")


def test_bad_values_fail_before_anything_is_written(store):
    with pytest.raises(InvalidArgumentError):
        store.threads.create("x", metadata={"bad": float("nan")})
    with pytest.raises(InvalidArgumentError):
        store.threads.create("x", messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(InvalidArgumentError):
        store.threads.create(123)  # type: ignore[arg-type]
    assert list(store.threads_dir.iterdir()) == []


def test_message_update_and_delete(store):
    thread = store.threads.create("t")
    pending = store.messages.create(thread["id"], "assistant", "", status="pending", assistant_id="jan")
    assert pending["completed_at"] is None
    done = store.messages.update(thread["id"], pending["id"], content="answer", status="ready",
                                 metadata={"tokens": 3})
    assert done["status"] == "ready" and done["completed_at"] is not None
    assert done["content"][0]["text"]["value"] == "answer" and done["metadata"] == {"tokens": 3}
    assert store.messages.get(thread["id"], pending["id"]) == done
    with pytest.raises(InvalidArgumentError):
        store.messages.update(thread["id"], pending["id"], status="finished")
    store.messages.delete(thread["id"], pending["id"])
    assert store.messages.list(thread["id"]).data == []
    with pytest.raises(NotFoundError):
        store.messages.get(thread["id"], pending["id"])
    with pytest.raises(NotFoundError):
        store.messages.delete(thread["id"], pending["id"])
    # The file holds one line per message: updates and deletes rewrite it.
    store.messages.create(thread["id"], "user", "again")
    lines = (store.threads_dir / thread["id"] / "messages.jsonl").read_text().splitlines()
    assert len(lines) == 1


def test_openai_style_content_parts(store):
    thread = store.threads.create("t")
    msg = store.messages.create(thread["id"], "user", [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ])
    assert msg["content"][0] == {"type": "text", "text": {"value": "describe", "annotations": []}}
    # issue 14: an image sent inline is stored as a file in the thread folder, referenced by an image_file part
    assert msg["content"][1]["type"] == "image_file"
    assert store.messages.read_file(thread["id"], msg["content"][1]["image_file"]["file_id"]) == (PNG_1PX, "image/png")
    assert msg["content"][2]["type"] == "image_url"  # a link is kept as it is
    with pytest.raises(InvalidArgumentError):
        store.messages.create(thread["id"], "user", [{"no": "type"}])


def test_new_messages_bump_thread_updated(store):
    a = store.threads.create("a")
    b = store.threads.create("b")
    assert [t["id"] for t in store.threads.list().data] == [b["id"], a["id"]]
    store.messages.create(a["id"], "user", "bump")
    assert [t["id"] for t in store.threads.list().data] == [a["id"], b["id"]]


def ids(page):
    return [item["id"] for item in page.data]


def test_message_pagination(store):
    thread = store.threads.create("t")
    made = [store.messages.create(thread["id"], "user", str(i))["id"] for i in range(5)]
    tid = thread["id"]
    assert ids(store.messages.list(tid)) == made
    page = store.messages.list(tid, limit=2)
    assert ids(page) == made[:2] and page.has_more
    assert page.to_dict()["first_id"] == made[0] and page.to_dict()["last_id"] == made[1]
    page = store.messages.list(tid, limit=2, after=made[1])
    assert ids(page) == made[2:4] and page.has_more
    page = store.messages.list(tid, limit=2, after=made[3])
    assert ids(page) == made[4:] and not page.has_more
    assert ids(store.messages.list(tid, order="desc")) == made[::-1]
    assert ids(store.messages.list(tid, order="desc", limit=2, after=made[3])) == [made[2], made[1]]
    page = store.messages.list(tid, limit=2, before=made[4])
    assert ids(page) == made[2:4] and page.has_more
    assert ids(store.messages.list(tid, after=made[0], before=made[3])) == made[1:3]
    assert ids(store.messages.list(tid, after=made[4])) == []
    with pytest.raises(InvalidArgumentError):
        store.messages.list(tid, after="msg_unknown")
    with pytest.raises(InvalidArgumentError):
        store.messages.list(tid, limit=0)
    with pytest.raises(InvalidArgumentError):
        store.messages.list(tid, order="up")


def test_thread_pagination_by_updated(store):
    made = [store.threads.create(f"t{i}")["id"] for i in range(4)]
    newest_first = made[::-1]
    assert ids(store.threads.list()) == newest_first
    page = store.threads.list(limit=3)
    assert ids(page) == newest_first[:3] and page.has_more
    assert ids(store.threads.list(limit=3, after=page.last_id)) == newest_first[3:]
    assert ids(store.threads.list(order="asc", limit=2)) == made[:2]
    assert ids(store.threads.list(before=newest_first[2])) == newest_first[:2]
    store.threads.update(made[0], title="touched")
    assert ids(store.threads.list(limit=1)) == [made[0]]


def test_ids_are_time_sortable(store):
    thread = store.threads.create("t")
    made = [store.messages.create(thread["id"], "user", str(i))["id"] for i in range(20)]
    assert made == sorted(made)


def test_torn_last_line_is_ignored_then_repaired(store):
    thread = store.threads.create("t", messages=[{"role": "user", "content": "one"},
                                                  {"role": "assistant", "content": "two"}])
    path = store.threads_dir / thread["id"] / "messages.jsonl"
    with open(path, "ab") as f:  # a writer killed mid-line
        f.write(b'{"id":"msg_torn","object":"thread.message","content":[{"ty')
    listed = store.messages.list(thread["id"]).data
    assert [m["content"][0]["text"]["value"] for m in listed] == ["one", "two"]
    assert any("incomplete" in p.error for p in store.problems)
    store.messages.create(thread["id"], "user", "three")
    raw = path.read_bytes()
    assert b"msg_torn" not in raw and raw.endswith(b"\n")
    assert all(json.loads(line) for line in raw.splitlines())
    assert [m["content"][0]["text"]["value"] for m in store.messages.list(thread["id"]).data] == ["one", "two", "three"]


def test_bad_middle_line_is_skipped_and_kept_on_rewrite(store):
    thread = store.threads.create("t", messages=[{"role": "user", "content": "one"}])
    path = store.threads_dir / thread["id"] / "messages.jsonl"
    with open(path, "ab") as f:
        f.write(b"{garbage}\n")
    two = store.messages.create(thread["id"], "user", "two")
    assert len(store.messages.list(thread["id"]).data) == 2
    assert any("line 2" in p.error for p in store.problems)
    store.messages.update(thread["id"], two["id"], metadata={"edited": True})
    kept = list(path.parent.glob("messages.jsonl.corrupt-*"))
    assert len(kept) == 1 and b"{garbage}" in kept[0].read_bytes()
    assert b"{garbage}" not in path.read_bytes()
    assert len(store.messages.list(thread["id"]).data) == 2
