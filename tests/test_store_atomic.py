"""Atomic writes and the JSONL primitives of jan.store."""

from __future__ import annotations

import json
import os

import pytest

from jan.store import DataFolder
from jan.store.atomic import atomic_copy, atomic_write_bytes
from jan.store.jsonl import append_jsonl, parse_jsonl, read_jsonl, repair_tail


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert _leftovers(tmp_path) == []


def test_crash_before_rename_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_keeps_existing_permissions(tmp_path):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"new")
    assert os.stat(target).st_mode & 0o777 == 0o640


def test_thread_update_crash_keeps_thread_json(tmp_path, monkeypatch):
    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("before")
    path = store.threads_dir / thread["id"] / "thread.json"
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.threads.update(thread["id"], title="after")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.threads.get(thread["id"])["title"] == "before"
    assert _leftovers(path.parent) == []


def test_atomic_copy_crash_leaves_no_partial_target(tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10000)
    dst = tmp_path / "out" / "dst.bin"
    dst.parent.mkdir()
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        atomic_copy(src, dst)
    assert list(dst.parent.iterdir()) == []


def test_parse_jsonl_torn_tail_and_bad_middle_line():
    data = b'{"id": "a"}\nnot json\n{"id": "b"}\n{"id": "c", "te'
    content = parse_jsonl(data)
    assert [r["id"] for r in content.records] == ["a", "b"]
    assert content.torn_tail is True
    assert [n for n, _ in content.bad_lines] == [2]


def test_parse_jsonl_splits_only_on_newline():
    # U+2028 is a line break for str.splitlines but legal inside a JSON string.
    line = json.dumps({"id": "a", "text": "x\u2028y"}, ensure_ascii=False).encode()
    assert parse_jsonl(line + b"\n").records[0]["text"] == "x\u2028y"


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_jsonl(path).records] == ["a", "b"]
    assert repair_tail(path) == ("newline", 0)
    append_jsonl(path, [{"id": "c"}])
    assert [r["id"] for r in read_jsonl(path).records] == ["a", "b", "c"]


def test_append_cuts_torn_tail_first(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "con')
    repaired = append_jsonl(path, [{"id": "c"}])
    assert repaired == ("truncated", len(b'{"id": "b", "con'))
    content = read_jsonl(path)
    assert [r["id"] for r in content.records] == ["a", "c"]
    assert not content.torn_tail and not content.bad_lines
    assert path.read_bytes().endswith(b"\n")
