"""Every file of the data folder that is read whole is read through one bounded reader
(:func:`jan.local_files.read_regular_file`): a file larger than any jan writes (a GGUF copied over a settings file,
a runaway log pasted into mcp.json) is refused unread with an error naming it and its size, and each reader treats it
as it treats any file it cannot read (set aside, defaults, told). Before, only the store's documents (model.json,
thread.json, ...) were capped: settings.json, mcp.json, extensions.json, run records, stored responses and
messages.jsonl were read whole, GBs of memory at each start or request.

The files are sparse (truncated to their size), so they take no disk."""

from __future__ import annotations

import errno
import json
import logging

import pytest
from jan.local_files import MAX_DATA_FILE_BYTES, FileTooLargeError, read_regular_file

BIG = MAX_DATA_FILE_BYTES + 1


def sparse(path, size=BIG):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_the_reader_refuses_a_file_past_its_bound_and_names_it(tmp_path):
    path = sparse(tmp_path / "x.json")
    with pytest.raises(FileTooLargeError) as info:
        read_regular_file(path)
    exc = info.value
    assert isinstance(exc, OSError) and exc.errno == errno.EFBIG and exc.filename == str(path)
    assert f"it is {BIG} bytes" in exc.strerror and str(MAX_DATA_FILE_BYTES) in exc.strerror
    assert (exc.size, exc.limit) == (BIG, MAX_DATA_FILE_BYTES)
    # (a re-raise as OSError's own signature keeps working: the extension settings do that)
    again = type(exc)(exc.errno, "said again", exc.filename)
    assert isinstance(again, FileTooLargeError)
    small = tmp_path / "small"
    small.write_bytes(b"12345")
    assert read_regular_file(small, 5) == b"12345"
    with pytest.raises(FileTooLargeError):
        read_regular_file(small, 4)


def test_a_huge_extensions_json_is_set_aside_and_jan_starts_from_the_defaults(tmp_path, caplog):
    """Before: read whole at every start (and an OSError there ended discover() with a traceback)."""
    from jan.core.events import LocalEventBus
    from jan.core.manager import ExtensionManager

    state = sparse(tmp_path / "data" / "extensions" / "extensions.json")
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False)
    with caplog.at_level(logging.WARNING, logger="jan.core.manager"):
        manager.discover()
    assert "cannot be read" in caplog.text and f"it is {BIG} bytes" in caplog.text
    asides = list(state.parent.glob("extensions.json.corrupt-*"))
    assert len(asides) == 1 and asides[0].stat().st_size == BIG  # kept for the user, unread
    assert json.loads(state.read_text())["version"] == 1  # a fresh one


def test_huge_extension_settings_are_told_and_the_defaults_used(tmp_path):
    from jan.core.settings import ExtensionSettings

    path = sparse(tmp_path / "settings" / "ext" / "settings.json")
    settings = ExtensionSettings("ext", {"type": "object", "properties": {"a": {"type": "integer", "default": 3}}},
                                 data_folder=tmp_path)
    assert settings.get("a") == 3
    said = settings.problems[0]["message"]
    assert "cannot be read" in said and f"it is {BIG} bytes" in said
    with pytest.raises(FileTooLargeError, match="cannot be read, so they are not changed"):
        settings.set("a", 4)  # a write would replace what nobody has seen
    assert path.stat().st_size == BIG


def test_huge_store_settings_read_as_the_default_and_are_reported(tmp_path):
    from jan.store import DataFolder

    store = DataFolder(tmp_path / "data")
    store.settings.set("ext", {"a": 1})
    path = sparse(store.settings_dir / "ext" / "settings.json")
    assert store.settings.get("ext", "dflt") == "dflt"
    assert [p.path for p in store.problems] == ["settings/ext/settings.json"]
    assert "more than any settings file jan writes" in store.problems[0].error
    assert path.stat().st_size == BIG  # left where it is


def test_a_huge_mcp_json_is_a_config_error_naming_it(tmp_path):
    from jan.extensions.mcp.config import McpConfigError, load_config, read_config

    sparse(tmp_path / "mcp.json")
    for read in (load_config, read_config):
        with pytest.raises(McpConfigError, match=rf"mcp.json cannot be read \(it is {BIG} bytes"):
            read(tmp_path)


def test_a_huge_run_record_is_no_record(tmp_path, caplog):
    from jan.services.run_records import read_record_file

    path = sparse(tmp_path / "run_1.json")
    with caplog.at_level(logging.WARNING):
        assert read_record_file(path) is None
    assert f"it is {BIG} bytes" in caplog.text


def test_a_huge_messages_jsonl_is_refused_unread_and_answered_as_unreadable(tmp_path):
    from jan.server.errors import storage_error
    from jan.store import DataFolder
    from jan.store.jsonl import MAX_JSONL_BYTES

    store = DataFolder(tmp_path / "data")
    thread = store.threads.create("T")
    sparse(store.threads_dir / thread["id"] / "messages.jsonl", MAX_JSONL_BYTES + 1)
    with pytest.raises(FileTooLargeError) as info:
        store.messages.list(thread["id"])
    answer = storage_error(info.value)
    assert answer is not None and answer.status == 500 and answer.code == "data_folder_unreadable"
    assert "messages.jsonl" in answer.message and f"it is {MAX_JSONL_BYTES + 1} bytes" in answer.message


def test_a_huge_stored_response_is_left_out_of_the_listing(tmp_path):
    import asyncio

    from jan.server.dialects.responses_store import ResponsesStore

    store = ResponsesStore(tmp_path / "responses", lambda: None)
    sparse(tmp_path / "responses" / "resp_1.json")
    assert asyncio.run(store.entries(lambda name: True)) == []


@pytest.mark.parametrize("where", ["settings/ext/settings.json", "mcp.json", "extensions/extensions.json"])
def test_an_endless_file_linked_in_a_files_place_is_refused_not_read(tmp_path, where):
    """/dev/zero linked as a data-folder file: no regular file, refused before any read (it never ends)."""
    import os

    from jan.core.events import LocalEventBus
    from jan.core.manager import ExtensionManager
    from jan.core.settings import ExtensionSettings
    from jan.extensions.mcp.config import McpConfigError, load_config

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/zero")
    if where == "mcp.json":
        with pytest.raises(McpConfigError, match="character device"):
            load_config(tmp_path)
    elif where.startswith("settings/"):
        settings = ExtensionSettings("ext", {"type": "object", "properties": {}}, data_folder=tmp_path)
        assert "character device" in settings.problems[0]["message"]
    else:
        ExtensionManager(tmp_path, LocalEventBus(), discover_entry_points=False).discover()
        assert list(path.parent.glob("extensions.json.corrupt-*"))  # the link set aside, jan started


def test_a_batchs_files_have_their_own_larger_bound(tmp_path):
    from jan.store.batches import MAX_BATCH_FILE_BYTES
    from jan.store.jsonl import MAX_JSONL_BYTES, read_jsonl

    assert MAX_BATCH_FILE_BYTES > MAX_JSONL_BYTES  # (a results file of 50,000 embeddings is legitimately large)
    path = sparse(tmp_path / "results.jsonl", MAX_JSONL_BYTES + 1)
    with pytest.raises(FileTooLargeError):
        read_jsonl(path)
