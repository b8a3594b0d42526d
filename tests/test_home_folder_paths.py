"""A path the user typed or configured that starts with ``~name`` of no such user (or ``~`` where no home is known)
stays as written, as a shell leaves it: ``Path.expanduser`` raises ``RuntimeError`` there, which was a traceback
from ``jan``, a server that would not start, and a tools extension whose every tool vanished."""

from __future__ import annotations

from pathlib import Path

import pytest
from jan.local_files import expand_home
from test_cli_helpers import cli_env, fails, jan

pytestmark = pytest.mark.timeout(300)

NO_USER = "~no_such_user_jan_test"


def test_expand_home_leaves_an_unknown_user_as_written(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError):
        Path(f"{NO_USER}/x").expanduser()  # what every caller used, and why
    assert expand_home(f"{NO_USER}/x") == Path(f"{NO_USER}/x")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_home("~/x") == tmp_path / "x"
    assert expand_home(Path("/abs/x")) == Path("/abs/x")


def test_cli_paths_with_an_unknown_user_are_one_line_errors(tmp_path):
    data = tmp_path / "jan"
    env = cli_env(data)
    fails(jan("files", "download", "file-abc", "-o", f"{NO_USER}/a.txt", env=env))
    fails(jan("models", "import", f"{NO_USER}/m.gguf", env=env), f"{NO_USER}/m.gguf")
    fails(jan("serve", "--port", "0", "--allow-media-from", f"{NO_USER}/pics", env=env), "--allow-media-from",
          f"{NO_USER}/pics")


def test_a_data_folder_under_an_unknown_user_is_taken_as_written(monkeypatch):
    from jan.server.config import ServerConfig, default_data_folder

    monkeypatch.setenv("JAN_DATA_FOLDER", f"{NO_USER}/jan")
    assert default_data_folder() == Path(f"{NO_USER}/jan")  # (`jan serve` died on it with a traceback)
    assert ServerConfig(data_folder=f"{NO_USER}/jan").data_folder == Path(f"{NO_USER}/jan")


async def test_a_tools_folder_under_an_unknown_user_keeps_the_tools(tmp_path):
    from api_helpers import Client, running

    data = tmp_path / "data"
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            # no such folder (a folder read_file reads must be there when it is set): a 400 naming it, not a crash
            status, body = await api.call("PATCH", "/v1/extensions/tools/settings",
                                          {"files_folder": f"{NO_USER}/notes"})
            assert status == 400 and body["error"]["param"] == "files_folder", body
            assert f"no such folder: {NO_USER}/notes" in body["error"]["message"]
            assert body["error"]["message"].startswith("extension 'tools': invalid setting 'files_folder'")
            names = {t["function"]["name"] for t in (await api.ok("GET", "/v1/tools"))["data"]}
            assert "current_time" in names
            # (the same kind: a boolean setting takes true/false only, not "yes")
            status, body = await api.call("PATCH", "/v1/extensions/tools/settings", {"fetch_enabled": "yes"})
            assert status == 400 and body["error"]["param"] == "fetch_enabled", body
            assert "extension 'tools'" in body["error"]["message"]
            status, body = await api.call("PATCH", "/v1/extensions/tools/settings", {"files_folder": "a\0b"})
            assert status == 400 and body["error"]["param"] == "files_folder", body
