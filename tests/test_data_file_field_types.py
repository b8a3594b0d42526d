"""A field of a data-folder file of another JSON type than jan writes there is told (file and field) and refused,
never taken silently: ``"enabled": "yes"`` in extensions.json was read as the extension's default (and
``"enabled": "false"`` as on), a thread.json whose ``title`` is a number or an assistant.json whose ``tools`` is a
string was served as is, a message line whose ``content`` is a number reached the wire object. Strict as JSON types
are: "yes" is no boolean, "1" no whole number."""

from __future__ import annotations

import json
import logging
import re

import pytest
from jan.store import DataFolder
from jan.store.errors import NotFoundError


def test_an_extensions_json_field_of_another_type_is_told_and_refused(tmp_path, caplog):
    from jan.core.events import LocalEventBus
    from jan.core.extension import Extension
    from jan.core.manager import ExtensionManager

    def ext(name, default=True):
        return type(f"E_{name}", (Extension,), {"name": name, "version": "1.0.0", "requires_api": ">=1,<2",
                                                 "enabled_by_default": default})

    state = tmp_path / "data" / "extensions" / "extensions.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"version": 1, "extensions": {"a": {"enabled": "no"}, "b": {"enabled": 0},
                                                              "c": {"enabled": False}, "d": "off"},
                                 "preferred": {"conversational": 5}}))
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False)
    for name in "abcd":
        manager.register(ext(name))
    with caplog.at_level(logging.WARNING, logger="jan.core.manager"):
        manager.discover()
    said = caplog.text
    assert "extensions/extensions.json: extensions.a.enabled is 'no' (a string), not true or false" in said
    assert "extensions.b.enabled is 0 (a number), not true or false" in said
    assert "extensions.d is a string, not an object" in said
    assert "preferred.conversational is 5 (a number), not an extension's name" in said
    records = {r.name: r.enabled for r in manager.list()}
    assert records == {"a": True, "b": True, "c": False, "d": True}  # the refused values: the defaults
    assert manager._config["preferred"] == {}
    # told once, not at every read (each change reads the file again)
    manager._read_config()
    assert caplog.text.count("extensions.a.enabled") == 1


@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


@pytest.mark.parametrize("kind,field,value", [
    *(("thread", field, value) for field, value in [("title", 5), ("metadata", "x"), ("assistants", "jan"),
                                                    ("assistants", ["jan"]), ("updated", "1700000000000"),
                                                    ("created", True)]),
    *(("assistant", field, value) for field, value in [("instructions", 5), ("tools", "all"), ("tools", ["x"]),
                                                       ("file_ids", [1]), ("metadata", []), ("created_at", "1")]),
])
def test_a_record_field_of_another_type_sets_it_aside_naming_the_field(store, kind, field, value):
    records, folder = getattr(store, f"{kind}s"), getattr(store, f"{kind}s_dir")
    good = records.create("ok")["id"]
    bad = records.create("doomed")["id"]
    path = folder / bad / f"{kind}.json"
    doc = json.loads(path.read_text())
    doc[field] = value
    path.write_text(json.dumps(doc))
    listed = [r["id"] for r in records.list().data]
    assert bad not in listed and good in listed
    assert any(p.path == f"{kind}s/{bad}/{kind}.json" and f"not a {kind}: {field}" in p.error
               for p in store.problems), store.problems
    with pytest.raises(NotFoundError, match="is damaged"):
        records.get(bad)


@pytest.mark.parametrize("entry,said", [
    ({"assistant_id": "jan", "model": {"id": "m"}, "instructions": 7}, "assistants[0].instructions is '7' (int)"),
    ({"model": {"id": "m"}, "instructions": ["be brief"]}, "assistants[0].instructions is \"['be brief']\" (list)"),
    ({"model": 5}, "assistants[0].model is '5' (int), not an object"),
    ({"model": {"id": ["m"]}}, "assistants[0].model.id is \"['m']\" (list), not a string"),
    ({"assistant_id": 3}, "assistants[0].assistant_id is '3' (int), not a string"),
])
def test_a_thread_assistant_field_of_another_type_is_told_by_its_path(tmp_path, entry, said):
    """A thread.json whose assistant's ``instructions`` was not text failed ``jan chat --thread`` and ``jan threads
    export`` with a traceback (the system prompt read as text); the entry's fields jan reads are checked too."""
    from test_cli_helpers import cli_env, fails, jan, ok

    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")["id"]
    path = store.threads_dir / thread / "thread.json"
    doc = json.loads(path.read_text())
    doc["assistants"] = [entry]
    path.write_text(json.dumps(doc))
    with pytest.raises(NotFoundError, match=re.escape(f"not a thread: {said}")):
        store.threads.get(thread)
    env = cli_env(tmp_path / "data")
    for args in (("threads", "export", thread), ("threads", "show", thread), ("chat", "--thread", thread)):
        fails(jan(*args, env=env, input="hi\n"), said)
    ok(jan("threads", "list", env=env))
    # and none is written so (the API's POST /v1/threads): it would read back damaged
    from jan.store import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="assistant"):
        store.threads.create("T2", assistants=[entry])
    with pytest.raises(InvalidArgumentError, match="assistant"):
        store.threads.update(store.threads.create("T3")["id"], assistants=[entry])


@pytest.mark.parametrize("field,value", [("content", 5), ("role", ["user"]), ("metadata", "x"),
                                         ("created_at", "1700000000")])
def test_a_message_line_with_a_field_of_another_type_is_skipped_and_told(store, field, value):
    thread = store.threads.create("T")["id"]
    first = store.messages.create(thread, "user", "one")["id"]
    second = store.messages.create(thread, "user", "two")["id"]
    path = store.threads_dir / thread / "messages.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1][field] = value
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [m["id"] for m in store.messages.list(thread).data] == [first]
    assert any(f"message {second!r} was skipped: its {field} is" in p.error for p in store.problems)


async def test_extensions_json_gets_what_is_new_once_and_a_start_with_nothing_new_writes_nothing(tmp_path):
    """(ExtensionManager._sync_config: what is new is judged on the copy read, then added to the file as it is on
    disk under its lock, keeping what another process wrote there meanwhile.)"""
    from jan.core.events import LocalEventBus
    from jan.core.extension import Extension
    from jan.core.manager import ExtensionManager

    def ext(name, version="1.0.0", default=True):
        return type(f"E_{name}", (Extension,), {"name": name, "version": version, "requires_api": ">=1,<2",
                                                 "enabled_by_default": default})

    def discover(*exts):
        manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False)
        for e in exts:
            manager.register(e)
        manager.discover()
        return manager

    state = tmp_path / "data" / "extensions" / "extensions.json"
    discover(ext("a"))
    assert json.loads(state.read_text())["extensions"] == {"a": {"enabled": True, "version": "1.0.0"}}
    before = state.stat().st_ino, state.stat().st_mtime_ns
    discover(ext("a"))
    assert (state.stat().st_ino, state.stat().st_mtime_ns) == before  # nothing new: not rewritten
    doc = json.loads(state.read_text())
    doc["extensions"]["a"]["enabled"] = False  # another process's change
    doc["extensions"]["gone"] = {"enabled": False}
    state.write_text(json.dumps(doc))
    manager = discover(ext("a", "2.0.0"), ext("b", default=False))
    assert json.loads(state.read_text())["extensions"] == {"a": {"enabled": False, "version": "2.0.0"},
                                                           "b": {"enabled": False, "version": "1.0.0"},
                                                           "gone": {"enabled": False}}
    assert {r.name: r.enabled for r in manager.list()} == {"a": False, "b": False}
