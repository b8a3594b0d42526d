"""A file of the data folder the user replaced with a symbolic link (a model.json, a thread's files, settings.json,
mcp.json, extensions.json kept in a dotfiles or synced folder) is written through the link: the link stays and the
file it points at gets the new content, atomically (the temporary file beside the target). Before, every atomic
write renamed a new regular file over the link: the link was lost and the user's own copy went stale. A dangling
link, or one to a folder, is a clear error naming the link, and nothing is written."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from jan.core.fs import LinkTargetError, atomic_write_bytes, write_target
from jan.store import DataFolder


def _link_out(path, elsewhere):
    """Move ``path`` to ``elsewhere`` and link it back; returns the new home."""
    elsewhere.mkdir(parents=True, exist_ok=True)
    home = elsewhere / path.name
    shutil.move(path, home)
    path.symlink_to(home)
    return home


def _no_temp_files(*folders):
    for folder in folders:
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], folder


def test_atomic_write_goes_through_a_chain_of_links(tmp_path):
    real = tmp_path / "real" / "f.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    (tmp_path / "mid").symlink_to(real)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "mid")
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and (tmp_path / "mid").is_symlink()
    assert real.read_bytes() == b"new" and real.stat().st_mode & 0o777 == 0o640
    assert write_target(link) == real and write_target(real) == real
    _no_temp_files(tmp_path, real.parent)


@pytest.mark.parametrize("kind", ["dangling", "folder", "device"])
def test_a_link_that_cannot_take_the_write_is_a_clear_error(tmp_path, kind):
    link = tmp_path / "model.json"
    target = {"dangling": tmp_path / "gone.json", "folder": tmp_path, "device": "/dev/null"}[kind]
    link.symlink_to(target)
    with pytest.raises(LinkTargetError) as info:
        atomic_write_bytes(link, b"{}")
    assert info.value.filename == str(link) and "symbolic link to" in info.value.strerror
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert not (tmp_path / "gone.json").exists()
    _no_temp_files(tmp_path)


def test_every_store_file_is_written_through_its_link(tmp_path):
    store = DataFolder(tmp_path / "data")
    out = tmp_path / "dotfiles"
    model = store.models.create({"id": "m", "name": "M", "engine": "llama.cpp", "settings": {}})
    thread = store.threads.create("T")
    first = store.messages.create(thread["id"], "user", "hi")
    assistant = store.assistants.create("A", assistant_id="helper")
    store.settings.set("ui", {"theme": "dark"})
    paths = {
        "model": store.models_dir / model["id"] / "model.json",
        "thread": store.threads_dir / thread["id"] / "thread.json",
        "messages": store.threads_dir / thread["id"] / "messages.jsonl",
        "assistant": store.assistants_dir / assistant["id"] / "assistant.json",
        "settings": store.settings.path("ui"),
    }
    homes = {name: _link_out(path, out / name) for name, path in paths.items()}

    store.models.update("m", {"name": "M2"})
    store.threads.update(thread["id"], title="T2")
    store.messages.update(thread["id"], first["id"], metadata={"k": "v"})  # a rewrite of messages.jsonl
    store.messages.create(thread["id"], "assistant", "hello")  # an append
    store.assistants.update("helper", description="d")
    store.settings.update("ui", {"theme": "light"})

    for name, path in paths.items():
        assert path.is_symlink(), name
        _no_temp_files(path.parent, homes[name].parent)
    assert json.loads(homes["model"].read_text())["name"] == "M2"
    assert json.loads(homes["thread"].read_text())["title"] == "T2"
    lines = [json.loads(line) for line in homes["messages"].read_text().splitlines()]
    assert [m["role"] for m in lines] == ["user", "assistant"] and lines[0]["metadata"] == {"k": "v"}
    assert json.loads(homes["assistant"].read_text())["description"] == "d"
    assert json.loads(homes["settings"].read_text())["theme"] == "light"
    assert DataFolder(tmp_path / "data").models.get("m")["name"] == "M2"


def test_a_dangling_model_json_link_fails_the_update_by_name(tmp_path):
    store = DataFolder(tmp_path / "data")
    store.models.create({"id": "m", "name": "M", "engine": "llama.cpp", "settings": {}})
    path = store.models_dir / "m" / "model.json"
    home = _link_out(path, tmp_path / "elsewhere")
    doc = json.loads(home.read_text())
    home.unlink()
    with pytest.raises(OSError, match="symbolic link to .*which does not exist"):
        store.models.create({**doc, "id": "m"}, overwrite=True)
    assert path.is_symlink() and not home.exists()


def test_two_links_to_one_file_share_one_lock(tmp_path):
    store = DataFolder(tmp_path / "data")
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    a, b = store.settings.path("a"), store.settings.path("b")
    for link in (a, b):
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared)
    ctx = store.settings._ctx
    assert ctx.key(a) == ctx.key(b) == ctx.key(shared)


def test_extension_settings_and_extensions_json_are_written_through(tmp_path):
    import asyncio

    from jan.core import ExtensionManager
    from jan.core.settings import ExtensionSettings

    data = tmp_path / "data"
    ExtensionSettings("ext", None, data_folder=data).update({"a": 1})
    settings = data / "settings" / "ext" / "settings.json"
    home = _link_out(settings, tmp_path / "dot")
    ExtensionSettings("ext", None, data_folder=data).update({"a": 2})
    assert settings.is_symlink() and json.loads(home.read_text()) == {"a": 2}

    manager = ExtensionManager(data)
    asyncio.run(manager.disable("tools"))
    state = data / "extensions" / "extensions.json"
    state_home = _link_out(state, tmp_path / "dot2")
    asyncio.run(ExtensionManager(data).enable("tools"))
    assert state.is_symlink() and json.loads(state_home.read_text())["extensions"]["tools"]["enabled"] is True


async def test_the_api_and_the_cli_tell_a_dangling_link_by_name(tmp_path):
    import sys

    from api_helpers import Client, running
    from test_cli_helpers import cli_env, fails, jan

    data = tmp_path / "data"
    (data / "settings" / "tools").mkdir(parents=True)
    (data / "settings" / "tools" / "settings.json").symlink_to(tmp_path / "gone.json")
    (data / "mcp.json").symlink_to(tmp_path / "gone-mcp.json")
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            status, body = await api.call("PATCH", "/v1/extensions/tools/settings", {"fetch_enabled": True})
    assert status == 500 and body["error"]["code"] == "data_folder_unwritable", body
    assert "symbolic link to" in body["error"]["message"] and "gone.json" in body["error"]["message"]
    fails(jan("mcp", "add", "x", sys.executable, env=cli_env(data)), "mcp.json", "symbolic link to", "does not exist")
    assert not (tmp_path / "gone.json").exists() and not (tmp_path / "gone-mcp.json").exists()


def test_a_killed_write_through_a_link_leaves_no_temp_file_beside_the_target(tmp_path):
    """A write through a link puts its temporary file beside the target, outside the data folder: the start-up
    sweep (which walked only the data folder) looks beside each linked file's target too, for that target's own
    temporary files of a dead writer."""
    import subprocess
    import sys

    from jan.core.fs import temp_prefix

    data = tmp_path / "data"
    store = DataFolder(data)
    store.models.create({"id": "m", "engine": "llama.cpp", "settings": {}})
    home = _link_out(store.models_dir / "m" / "model.json", tmp_path / "dotfiles")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    left = home.parent / (temp_prefix("model.json").replace(f".p{os.getpid()}.", f".p{dead_pid}.") + "abc.tmp")
    left.write_text("{half")
    mine_alive = home.parent / (temp_prefix("model.json") + "xyz.tmp")  # this process: alive, kept
    mine_alive.write_text("{")
    other = home.parent / f".notes.txt.p{dead_pid}.abc.tmp"  # not the target's: never touched
    other.write_text("x")
    folder = DataFolder(data)
    assert not left.exists() and mine_alive.exists() and other.exists()
    assert left in folder.removed_temp_files


def test_a_damaged_file_linked_in_from_elsewhere_is_reported_where_it_lies_in_the_folder(tmp_path):
    """A thread.json (assistant.json, model.json) linked to a file outside the folder that does not parse is left
    out of its listing and reported under its own path in the folder, which the listing's ``problems`` filter
    reads (``threads/``): it was reported under the link's target (``/elsewhere/thread.json``), so the thread
    vanished from the list with no word of why. Its errors name it the same way."""
    folder = DataFolder(tmp_path / "data")
    thread = folder.threads.create(title="linked")
    assistant = folder.assistants.create(model="m", name="linked")
    paths = {"threads": tmp_path / "data" / "threads" / thread["id"] / "thread.json",
             "assistants": tmp_path / "data" / "assistants" / assistant["id"] / "assistant.json"}
    for path in paths.values():
        _link_out(path, tmp_path / "dotfiles" / path.parent.name).write_text('{"title": ')
    assert [t["id"] for t in folder.threads.list().data] == []
    assert assistant["id"] not in [a["id"] for a in folder.assistants.list().data]
    reported = {p.path for p in folder.problems}
    for collection, path in paths.items():
        assert path.relative_to(tmp_path / "data").as_posix() in reported, (collection, reported)
    assert not [p for p in reported if p.startswith("/")]
