"""Schema versions: old files are upgraded on read and written back."""

from __future__ import annotations

import json

import pytest

from jan.store import SCHEMA_VERSION_KEY, DataFolder, default_migrations


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_legacy_jan_thread_is_upgraded_and_written_back(tmp_path):
    store = DataFolder(tmp_path)
    path = store.threads_dir / "jan_1700000000000" / "thread.json"
    _write(path, {"id": "jan_1700000000000", "object": "thread", "title": "Old",
                  "assistants": [], "created": 1700000000000, "updated": 1700000001000})
    thread = store.threads.get("jan_1700000000000")
    assert thread["created_at"] == 1700000000 and thread["metadata"] == {}
    assert SCHEMA_VERSION_KEY not in thread
    on_disk = json.loads(path.read_text())
    assert on_disk[SCHEMA_VERSION_KEY] == 1 and on_disk["created_at"] == 1700000000


def test_legacy_messages_are_upgraded_and_written_back(tmp_path):
    store = DataFolder(tmp_path)
    directory = store.threads_dir / "jan_1"
    _write(directory / "thread.json", {"id": "jan_1", "title": "Old", "created": 1700000000000,
                                       "updated": 1700000000000})
    legacy = [
        {"id": "01HOLD1", "thread_id": "jan_1", "role": "user", "content": "plain string",
         "created_at": 1700000000123},
        {"id": "01HOLD2", "thread_id": "jan_1", "role": "assistant", "status": "ready",
         "content": [{"type": "text", "text": {"value": "hi", "annotations": []}}],
         "created": 1700000001000, "updated": 1700000001000},
    ]
    (directory / "messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in legacy))
    messages = store.messages.list("jan_1").data
    assert messages[0]["content"] == [{"type": "text", "text": {"value": "plain string", "annotations": []}}]
    assert messages[0]["created_at"] == 1700000000 and messages[0]["created"] == 1700000000123
    assert messages[1]["created_at"] == 1700000001 and messages[1]["object"] == "thread.message"
    lines = [json.loads(line) for line in (directory / "messages.jsonl").read_text().splitlines()]
    assert [line[SCHEMA_VERSION_KEY] for line in lines] == [1, 1]


def test_legacy_model_engine_names_are_mapped(tmp_path):
    store = DataFolder(tmp_path)
    _write(store.models_dir / "old" / "model.json",
           {"id": "old", "engine": "nitro", "settings": {"ctx_len": 2048}, "created": 1700000000})
    model = store.models.get("old")
    assert model["engine"] == "llama.cpp" and model["format"] == "gguf"
    assert model["created"] == 1700000000000 and model["settings"] == {"ctx_len": 2048}


def test_custom_migration_step_upgrades_old_version(tmp_path):
    registry = default_migrations()

    @registry.register("thread", 1)
    def add_pinned(doc):
        doc.setdefault("metadata", {})["pinned"] = False
        doc["title"] = doc["title"].strip()
        return doc

    DataFolder(tmp_path).threads.create("  spaced  ", thread_id="t1")
    path = tmp_path / "threads" / "t1" / "thread.json"
    assert json.loads(path.read_text())[SCHEMA_VERSION_KEY] == 1

    store = DataFolder(tmp_path, migrations=registry)
    thread = store.threads.get("t1")
    assert thread["title"] == "spaced" and thread["metadata"] == {"pinned": False}
    on_disk = json.loads(path.read_text())
    assert on_disk[SCHEMA_VERSION_KEY] == 2 and on_disk["metadata"]["pinned"] is False
    # New documents are written at the new version, and listing sees upgraded ones.
    store.threads.create("new", thread_id="t2")
    assert json.loads((tmp_path / "threads" / "t2" / "thread.json").read_text())[SCHEMA_VERSION_KEY] == 2
    assert {t["id"] for t in store.threads.list().data} == {"t1", "t2"}


def test_newer_version_is_used_as_is_and_not_downgraded(tmp_path):
    store = DataFolder(tmp_path)
    path = store.threads_dir / "future" / "thread.json"
    doc = {"id": "future", "object": "thread", "title": "From the future", "assistants": [],
           "created": 1, "updated": 1, "metadata": {}, "new_field": 1, SCHEMA_VERSION_KEY: 99}
    _write(path, doc)
    assert store.threads.get("future")["new_field"] == 1
    assert json.loads(path.read_text()) == doc


def test_default_registry_is_not_mutated_by_copies():
    registry = default_migrations()
    registry.register("thread", 1)(lambda d: d)
    assert registry.current_version("thread") == 2
    assert default_migrations().current_version("thread") == 1


def test_file_from_newer_jan_is_not_overwritten(tmp_path):
    from jan.store import NewerSchemaError

    store = DataFolder(tmp_path)
    path = store.threads_dir / "future" / "thread.json"
    doc = {"id": "future", "title": "x", "updated": 1, SCHEMA_VERSION_KEY: 99}
    _write(path, doc)
    with pytest.raises(NewerSchemaError):
        store.threads.update("future", title="y")
    assert json.loads(path.read_text()) == doc
