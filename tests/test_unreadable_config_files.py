"""A settings.json or mcp.json that is there but cannot be read (a folder in its place, no read permission) costs
its extension nothing but its stored values: the extension loads on defaults and the settings API tells the file's
problem (before: the extension failed to load, with a traceback in the log), and a change is refused rather than
written over values nobody has seen. mcp.json's host loads and lists the file's error, as for a file that is no
JSON."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from jan.core.settings import ExtensionSettings, JsonSettingsStore
from jan.extensions.mcp.config import McpConfigError, edit_config, read_config
from jan.extensions.tools.extension import BuiltinToolsSettings


def test_a_settings_file_that_is_a_folder_gives_defaults_and_refuses_changes(tmp_path):
    (tmp_path / "settings" / "tools" / "settings.json").mkdir(parents=True)
    settings = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    assert settings.all()["fetch_enabled"] is False
    assert len(settings.problems) == 1 and "cannot be read" in settings.problems[0]["message"]
    with pytest.raises(IsADirectoryError, match="the settings of 'tools' cannot be read, so they are not changed"):
        settings.update({"fetch_enabled": True})
    with pytest.raises(IsADirectoryError):
        settings.reset()
    (tmp_path / "settings" / "tools" / "settings.json").rmdir()  # repaired: the next change reads it again
    settings.update({"fetch_enabled": True})
    assert json.loads((tmp_path / "settings" / "tools" / "settings.json").read_text()) == {"fetch_enabled": True}


def test_a_settings_file_without_read_permission_is_never_written_over(tmp_path, monkeypatch):
    path = tmp_path / "settings" / "tools" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetch_timeout": 42}))
    real_read = JsonSettingsStore.read

    def denied(self, namespace):  # (chmod 000 does not stop root, who runs some CI)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(JsonSettingsStore, "read", denied)
    settings = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    assert "Permission denied" in settings.problems[0]["message"]
    with pytest.raises(PermissionError, match="not changed"):
        settings.update({"fetch_enabled": True})
    assert json.loads(path.read_text()) == {"fetch_timeout": 42}  # kept
    monkeypatch.setattr(JsonSettingsStore, "read", real_read)
    settings.update({"fetch_enabled": True})
    assert json.loads(path.read_text()) == {"fetch_timeout": 42, "fetch_enabled": True}


def test_an_mcp_json_that_is_a_folder_is_a_config_error(tmp_path):
    (tmp_path / "mcp.json").mkdir()
    with pytest.raises(McpConfigError, match="mcp.json cannot be read"):
        read_config(tmp_path)
    with pytest.raises(McpConfigError, match="mcp.json cannot be read"):
        edit_config(tmp_path, lambda servers: servers.update(x={"command": "echo"}))
    assert Path(tmp_path / "mcp.json").is_dir()


async def test_the_server_loads_both_extensions_and_tells_the_files(tmp_path):
    from api_helpers import Client, running

    data = tmp_path / "data"
    (data / "settings" / "tools" / "settings.json").mkdir(parents=True)
    (data / "mcp.json").mkdir()
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            states = {e["name"]: e["state"] for e in (await api.ok("GET", "/v1/extensions"))["data"]}
            assert states["tools"] == "loaded" and states["mcp"] == "loaded", states
            body = await api.ok("GET", "/v1/extensions/tools/settings")
            assert "cannot be read" in body["problems"][0]["message"]
            status, body = await api.call("PATCH", "/v1/extensions/tools/settings", {"fetch_enabled": True})
            assert status == 500 and body["error"]["code"] == "data_folder_unreadable", body
            listing = await api.ok("GET", "/v1/mcp/servers")
            assert "mcp.json cannot be read" in listing["file_error"]


def test_a_change_is_made_to_the_settings_file_as_it_is_now(tmp_path):
    """Before: a server wrote its own copy of the values read at start: a value stored since by another process
    (or a hand edit) was lost at its next change."""
    server = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    seen = []
    server.on_change(seen.append)
    other = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    other.update({"fetch_timeout": 42})
    server.update({"fetch_enabled": True})
    path = tmp_path / "settings" / "tools" / "settings.json"
    assert json.loads(path.read_text()) == {"fetch_timeout": 42, "fetch_enabled": True}
    assert server.all()["fetch_timeout"] == 42
    assert seen == [{"fetch_enabled": True, "fetch_timeout": 42}]  # the other's change is told with this one


def test_extension_settings_take_the_data_folders_lock_of_their_file(tmp_path):
    from jan.store import DataFolder

    store = DataFolder(tmp_path)
    settings = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    key = store.settings._ctx.key(store.settings.path("tools"))
    with settings._store.lock("tools"):
        stripe = store.settings._ctx.locks.lock_path(key)
        import filelock

        with pytest.raises(filelock.Timeout):  # (another process's view: the same lock file is held)
            filelock.FileLock(str(stripe), is_singleton=False).acquire(timeout=0.2)
