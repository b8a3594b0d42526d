"""A JSON or JSONL file of the data folder that a Windows editor saved with a UTF-8 byte-order mark (Notepad does)
is read as the file it is, by every reader of the folder: a thread.json, assistant.json, model.json, file.json,
batch.json, settings.json or mcp.json with the mark was "damaged" (left out of its listing), and the first line of a
messages.jsonl was "no JSON": that message was skipped, and the next rewrite of the file (a message modified or
deleted) dropped it. RFC 8259 lets a parser ignore the mark; jan.json_text.data_file_text is the one decode."""

from __future__ import annotations

import json

from jan.core.fs import LocalFileSystem
from jan.core.settings import JsonSettingsStore
from jan.extensions.mcp.config import load_config
from jan.store import DataFolder

BOM = b"\xef\xbb\xbf"


def _mark(path):
    path.write_bytes(BOM + path.read_bytes())


def test_every_store_document_and_line_reads_through_a_byte_order_mark(tmp_path, stories_path):
    data = tmp_path / "data"
    store = DataFolder(data)
    thread = store.threads.create("T")
    first = store.messages.create(thread["id"], "user", "first")
    second = store.messages.create(thread["id"], "user", "second")
    assistant = store.assistants.create(model="m", name="A")
    model = store.models.import_gguf(stories_path, model_id="m")
    _mark(data / "threads" / thread["id"] / "thread.json")
    _mark(data / "threads" / thread["id"] / "messages.jsonl")
    _mark(data / "assistants" / assistant["id"] / "assistant.json")
    _mark(data / "models" / model["id"] / "model.json")

    again = DataFolder(data)
    assert [t["id"] for t in again.threads.list().data] == [thread["id"]]
    listed = again.messages.list(thread["id"]).data
    assert sorted(m["id"] for m in listed) == sorted([first["id"], second["id"]]), again.problems
    assert again.assistants.get(assistant["id"])["name"] == "A"
    assert again.models.get("m")["id"] == "m"
    assert again.problems == []

    again.messages.delete(thread["id"], second["id"])  # a rewrite keeps the first line's message
    assert [m["id"] for m in again.messages.list(thread["id"]).data] == [first["id"]]
    assert again.problems == []


def test_settings_and_mcp_json_read_through_a_byte_order_mark(tmp_path):
    data = tmp_path / "data"
    settings = data / "settings" / "monitoring" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_bytes(BOM + json.dumps({"gpu_cache_seconds": 3.0}).encode())
    assert JsonSettingsStore(LocalFileSystem(data)).read("monitoring") == {"gpu_cache_seconds": 3.0}
    (data / "mcp.json").write_bytes(BOM + json.dumps({"mcpServers": {"files": {"command": "true"}}}).encode())
    assert list(load_config(data)) == ["files"]
