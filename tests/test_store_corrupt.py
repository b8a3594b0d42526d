"""Damaged files are moved aside, reported, and never stop the rest from working."""

from __future__ import annotations

import logging

import pytest

from jan.store import DataFolder, NotFoundError, StoredModelNotFoundError


@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


def test_corrupt_thread_json_is_left_in_place_and_reported(store, caplog):
    """A read never moves the user's files: a listing set a damaged thread.json aside as thread.json.corrupt-<time>
    (a read-only command changed the data folder). It is reported, left out, and left where it is."""
    good = [store.threads.create(f"ok{i}")["id"] for i in range(2)]
    bad = store.threads.create("doomed")["id"]
    path = store.threads_dir / bad / "thread.json"
    path.write_text('{"id": "truncated", "tit')
    with caplog.at_level(logging.WARNING, logger="jan.store"):
        listed = [t["id"] for t in store.threads.list().data]
    assert sorted(listed) == sorted(good)
    assert path.read_text() == '{"id": "truncated", "tit'
    assert not list(path.parent.glob("thread.json.corrupt-*"))
    problem = next(p for p in store.problems if p.path == f"threads/{bad}/thread.json")
    assert "invalid JSON" in problem.error and "left in place" in problem.error and problem.time > 0
    assert problem.moved_to is None
    assert set(problem.to_dict()) == {"path", "error", "time", "moved_to"}
    assert any("thread.json" in r.getMessage() for r in caplog.records)
    with pytest.raises(NotFoundError):
        store.threads.get(bad)
    with pytest.raises(NotFoundError):
        store.messages.list(bad)
    # Listing again does not report it twice, and the others still work.
    count = len(store.problems)
    store.threads.list()
    assert len(store.problems) == count
    store.messages.create(good[0], "user", "still fine")


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"null", b"\xff\xfe garbage", b'"just a string"'])
def test_non_object_json_counts_as_corrupt(store, content):
    thread = store.threads.create("t")["id"]
    (store.threads_dir / thread / "thread.json").write_bytes(content)
    assert store.threads.list().data == []
    assert len(store.problems) == 1


def test_get_of_corrupt_thread_leaves_it_in_place_and_says_where_it_is(store):
    thread = store.threads.create("t")["id"]
    (store.threads_dir / thread / "thread.json").write_text("{")
    with pytest.raises(NotFoundError, match=f"damaged .*: repair or remove threads/{thread}/thread.json"):
        store.threads.get(thread)
    assert not list((store.threads_dir / thread).glob("thread.json.corrupt-*"))
    assert (store.threads_dir / thread / "thread.json").read_text() == "{"


def test_a_repaired_model_json_is_listed_again_and_no_longer_reported(store):
    store.models.create({"id": "m", "engine": "llama.cpp", "settings": {}})
    path = store.models_dir / "m" / "model.json"
    good = path.read_bytes()
    path.write_text("{oops")
    assert store.models.list() == [] and [p.path for p in store.problems] == ["models/m/model.json"]
    path.write_bytes(good)  # the user repairs it: the same process (a server) lists it, and reports nothing
    assert [m["id"] for m in store.models.list()] == ["m"] and store.problems == []



def test_corrupt_model_and_assistant_json(store):
    store.models.create({"id": "good-model"})
    store.models.create({"id": "bad-model"})
    (store.models_dir / "bad-model" / "model.json").write_text("{not json")
    assert [m["id"] for m in store.models.list()] == ["good-model"]
    with pytest.raises(StoredModelNotFoundError):
        store.models.get("bad-model")

    store.assistants.create("A", assistant_id="broken")
    (store.assistants_dir / "broken" / "assistant.json").write_text("][")
    assert [a["id"] for a in store.assistants.list().data] == ["jan"]
    paths = {p.path for p in store.problems}
    assert {"models/bad-model/model.json", "assistants/broken/assistant.json"} <= paths


def test_corrupt_default_assistant_is_recreated(tmp_path):
    store = DataFolder(tmp_path)
    (store.assistants_dir / "jan" / "assistant.json").write_text("oops")
    reopened = DataFolder(tmp_path)
    assert reopened.assistants.get("jan")["name"] == "Jan"
    # (a write over a damaged file, which reads leave in place: its bytes are kept beside it first)
    kept = list((store.assistants_dir / "jan").glob("assistant.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "oops"
    assert len(reopened.problems) == 1


def test_corrupt_settings_read_as_default(store):
    store.settings.set("ext", {"a": 1})
    (store.settings_dir / "ext" / "settings.json").write_text("{{")
    assert store.settings.get("ext", {"fallback": True}) == {"fallback": True}
    assert store.problems and store.problems[0].path == "settings/ext/settings.json"


def test_folders_without_thread_json_and_odd_names_are_skipped(store):
    thread = store.threads.create("real")["id"]
    (store.threads_dir / "empty_folder").mkdir()
    (store.threads_dir / "not valid name").mkdir()
    (store.threads_dir / "stray-file.txt").write_text("x")
    assert [t["id"] for t in store.threads.list().data] == [thread]
    assert store.problems == []


def test_clear_problems(store):
    thread = store.threads.create("t")["id"]
    (store.threads_dir / thread / "thread.json").write_text("{")
    store.threads.list()
    assert store.problems
    store.clear_problems()
    assert store.problems == []
