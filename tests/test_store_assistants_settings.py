"""Assistants (with the default ``jan``), per-extension settings, and the asyncio wrapper."""

from __future__ import annotations

import asyncio
import json

import pytest

from jan.store import (
    AlreadyExistsError,
    AsyncStore,
    DataFolder,
    InvalidArgumentError,
    NotFoundError,
    SCHEMA_VERSION_KEY,
)


def test_default_assistant_exists_on_first_start(tmp_path):
    store = DataFolder(tmp_path)
    jan = store.assistants.get("jan")
    assert jan["object"] == "assistant" and jan["name"] == "Jan" and jan["model"] == "*"
    assert {"id", "name", "description", "model", "instructions", "tools", "file_ids",
            "metadata", "created_at", "avatar"} <= set(jan)
    on_disk = json.loads((tmp_path / "assistants" / "jan" / "assistant.json").read_text())
    assert on_disk[SCHEMA_VERSION_KEY] == 1
    # Kept across restarts, recreated after deletion.
    store.assistants.update("jan", instructions="Be brief.")
    assert DataFolder(tmp_path).assistants.get("jan")["instructions"] == "Be brief."
    store.assistants.delete("jan")
    assert DataFolder(tmp_path).assistants.get("jan")["instructions"] == ""


def test_assistant_crud_and_list(tmp_path):
    store = DataFolder(tmp_path)
    a = store.assistants.create("Coder", instructions="Write code", tools=[{"type": "code_interpreter"}],
                                metadata={"k": "v"})
    assert a["id"].startswith("asst_") and a["tools"] == [{"type": "code_interpreter"}]
    b = store.assistants.create("Other", assistant_id="other")
    with pytest.raises(AlreadyExistsError):
        store.assistants.create("dup", assistant_id="other")
    listed = [x["id"] for x in store.assistants.list().data]
    assert set(listed) == {"jan", a["id"], b["id"]}
    # in the order they were made (the default first: it was made as the folder opened)
    assert [x["id"] for x in store.assistants.list(order="asc").data] == ["jan", a["id"], b["id"]]
    changed = store.assistants.update(a["id"], name="Coder 2", file_ids=["file-abc"])
    assert changed["name"] == "Coder 2" and changed["file_ids"] == ["file-abc"]
    with pytest.raises(InvalidArgumentError):
        store.assistants.update(a["id"], colour="blue")
    store.assistants.delete(a["id"])
    with pytest.raises(NotFoundError):
        store.assistants.get(a["id"])


def test_assistants_made_in_one_second_list_in_the_order_they_were_made(tmp_path, monkeypatch):
    """The default ``jan`` (made as the server starts) and an id the client chose sort by name, not by time: listed
    by creation in whole seconds, ties broken by id, an assistant made in the start's second listed before the
    default (``asst_…`` < ``jan``), and a client paging the list while it deletes saw items out of order."""
    import jan.store.assistants as assistants_module
    clock = iter([1_700_000_000_100, 1_700_000_000_400, 1_700_000_000_700])
    monkeypatch.setattr(assistants_module, "now_ms", lambda: next(clock))
    store = DataFolder(tmp_path)  # the default, at .100
    made = store.assistants.create("Made", assistant_id="a-first")  # .400
    other = store.assistants.create("Other")  # .700 (an asst_ ULID id)
    order = ["jan", made["id"], other["id"]]
    assert [x["id"] for x in store.assistants.list(order="asc").data] == order
    assert [x["id"] for x in store.assistants.list().data] == order[::-1]
    # a cursor deleted since keeps its place
    store.assistants.delete(other["id"])
    assert [x["id"] for x in store.assistants.list(order="desc", after=other["id"]).data] == ["a-first", "jan"]


def test_settings(tmp_path):
    store = DataFolder(tmp_path)
    assert store.settings.get("jan-llamacpp") is None
    assert store.settings.set("jan-llamacpp", {"threads": 4, "flash_attn": True}) == {"threads": 4, "flash_attn": True}
    assert store.settings.update("jan-llamacpp", {"threads": 8, "flash_attn": None}) == {"threads": 8}
    assert store.settings.get("jan-llamacpp") == {"threads": 8}
    raw = json.loads((tmp_path / "settings" / "jan-llamacpp" / "settings.json").read_text())
    assert raw == {"threads": 8, SCHEMA_VERSION_KEY: 1}
    # Jan's own extensions keep a list of setting items; stored as is.
    items = [{"key": "ctx_len", "controllerProps": {"value": 2048}}]
    store.settings.set("@janhq/inference-cortex-extension", items)
    assert store.settings.get("@janhq/inference-cortex-extension") == items
    assert (tmp_path / "settings" / "@janhq" / "inference-cortex-extension" / "settings.json").is_file()
    assert store.settings.names() == ["@janhq/inference-cortex-extension", "jan-llamacpp"]
    with pytest.raises(InvalidArgumentError):
        store.settings.update("@janhq/inference-cortex-extension", {"x": 1})
    assert store.settings.delete("jan-llamacpp") is True
    assert store.settings.delete("jan-llamacpp") is False
    assert store.settings.names() == ["@janhq/inference-cortex-extension"]


async def test_async_store(tmp_path):
    store = await AsyncStore.open(tmp_path)
    thread = await store.threads.create("async")
    await asyncio.gather(*(store.messages.create(thread["id"], "user", str(i)) for i in range(16)))
    page = await store.messages.list(thread["id"], limit=5, order="desc")
    assert len(page.data) == 5 and page.has_more
    assert len((await store.messages.list(thread["id"])).data) == 16
    assert (await store.assistants.get("jan"))["id"] == "jan"
    with pytest.raises(NotFoundError):
        await store.threads.get("missing")
    assert store.problems == []
    with pytest.raises(AttributeError):
        _ = store.threads._ctx
