"""A file someone edited by hand may hold JSON nested deeper than the parser can follow, or bytes that are not
UTF-8: each reader of the data folder (and of ``mcp.json``) tells it as the damaged file it is, never with a
``RecursionError`` or ``UnicodeDecodeError`` (a traceback from ``jan``, a 500 from the server)."""

from __future__ import annotations

import sys

import pytest
from jan.core.fs import LocalFileSystem, loads_json
from jan.extensions.mcp.config import (
    McpConfigError,
    edit_config,
    load_config,
    read_config,
)
from jan.services.run_records import read_record_file
from jan.store import DataFolder, NotFoundError
from test_cli_helpers import cli_env, fails, jan

pytestmark = pytest.mark.timeout(300)

#: Far past Python's recursion limit (1000), as a hand edit or a broken writer may leave.
DEEP = b"[" * 100_000
DEEP_IN_OBJECT = b'{"a": ' + DEEP


def test_loads_json_fails_only_with_value_error():
    for data in (DEEP, DEEP.decode(), DEEP_IN_OBJECT):
        with pytest.raises(ValueError, match="nested too deeply"):
            loads_json(data)
    with pytest.raises(ValueError):
        loads_json(b"\xff\xfe")
    assert loads_json(b'{"a": [[1]]}') == {"a": [[1]]}


@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


@pytest.mark.parametrize("content", [DEEP, DEEP_IN_OBJECT])
def test_a_too_deep_thread_json_is_left_out_and_told(store, content):
    good = store.threads.create("ok")["id"]
    bad = store.threads.create("doomed")["id"]
    (store.threads_dir / bad / "thread.json").write_bytes(content)
    assert [t["id"] for t in store.threads.list().data] == [good]
    assert [p.path for p in store.problems] == [f"threads/{bad}/thread.json"]
    assert (store.threads_dir / bad / "thread.json").read_bytes() == content  # (left where it is)
    with pytest.raises(NotFoundError):
        store.threads.get(bad)


def test_a_too_deep_model_json_and_settings_are_damaged_files(store):
    store.models.create({"id": "good-model"})
    store.models.create({"id": "bad-model"})
    (store.models_dir / "bad-model" / "model.json").write_bytes(DEEP_IN_OBJECT)
    assert [m["id"] for m in store.models.list()] == ["good-model"]

    store.settings.set("ext", {"a": 1})
    (store.settings_dir / "ext" / "settings.json").write_bytes(DEEP)
    assert store.settings.get("ext", {"fallback": True}) == {"fallback": True}
    assert {"models/bad-model/model.json", "settings/ext/settings.json"} <= {p.path for p in store.problems}


def test_a_too_deep_message_line_is_a_bad_line(store):
    thread = store.threads.create("t")["id"]
    store.messages.create(thread, "user", "kept")
    path = next((store.threads_dir / thread).glob("messages.jsonl"))
    with path.open("ab") as f:
        f.write(DEEP_IN_OBJECT + b"\n")
    store.messages.create(thread, "user", "after")
    texts = [m["content"][0]["text"]["value"] for m in store.messages.list(thread).data]
    assert texts == ["kept", "after"]


def test_file_system_read_json_and_run_records(tmp_path):
    (tmp_path / "deep.json").write_bytes(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        LocalFileSystem(tmp_path).read_json("deep.json")
    record = tmp_path / "run_x.json"
    record.write_bytes(DEEP_IN_OBJECT)
    assert read_record_file(record) is None  # damaged: set aside, not raised


@pytest.mark.parametrize("content, why", [(DEEP, "nested too deeply"), (b"\xff\xfe\x00{}", "not UTF-8"),
                                          (b'{"mcpServers": {"a": {"command": "caf\xe9"}}}', "not UTF-8")])
def test_a_damaged_mcp_json_is_an_mcp_config_error(tmp_path, content, why):
    (tmp_path / "mcp.json").write_bytes(content)
    for read in (load_config, read_config, lambda folder: edit_config(folder, lambda servers: None)):
        with pytest.raises(McpConfigError, match=why) as raised:
            read(tmp_path)
        assert "mcp.json" in str(raised.value)
    assert (tmp_path / "mcp.json").read_bytes() == content  # never rewritten


@pytest.mark.parametrize("content", [DEEP, b"\xff\xfe\x00garbage"])
def test_jan_mcp_tells_a_damaged_mcp_json_in_one_line(tmp_path, content):
    data = tmp_path / "jan"
    data.mkdir()
    (data / "mcp.json").write_bytes(content)
    env = cli_env(data)
    for args in (("list",), ("add", "b", sys.executable, "server.py"), ("remove", "b")):
        err = fails(jan("mcp", *args, env=env), "mcp.json")
        assert "Traceback" not in err
    assert (data / "mcp.json").read_bytes() == content


@pytest.mark.parametrize("content", [DEEP, b"\xff\xfe\x00garbage"])
async def test_the_api_tells_a_damaged_mcp_json_as_a_config_error(tmp_path, content):
    from api_helpers import Client, running

    data = tmp_path / "data"
    data.mkdir()
    (data / "mcp.json").write_bytes(content)
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            listing = await api.ok("GET", "/v1/mcp/servers")
            assert listing["data"] == [] and "mcp.json" in listing["config_error"]
            tools = await api.ok("GET", "/v1/tools")
            assert any(t["function"]["name"] == "current_time" for t in tools["data"])
            status, body = await api.call("GET", "/v1/mcp/servers/a")
            assert status == 400 and body["error"]["code"] == "invalid_mcp_config", body


def test_a_too_deep_extensions_json_is_told_and_left_in_place_by_a_listing(tmp_path):
    """read_json fails with ValueError: the listing (which writes nothing in the data folder) says the file is
    unreadable and left where it is, and lists the extensions as the defaults have them."""
    from test_cli_helpers import ok

    data = tmp_path / "jan"
    (data / "extensions").mkdir(parents=True)
    (data / "extensions" / "extensions.json").write_bytes(DEEP)
    result = ok(jan("extensions", "list", env=cli_env(data)))
    assert "Traceback" not in result.stderr and "tools" in result.stdout
    assert "extensions.json is unreadable" in result.stderr and "left in place" in result.stderr, result.stderr
    assert [p.name for p in (data / "extensions").iterdir()] == ["extensions.json"]
