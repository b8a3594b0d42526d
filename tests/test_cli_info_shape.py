"""`jan info --json`'s ``server`` block had two shapes: ``{url, up}`` with no server, and ``models_loaded``,
``uptime_seconds``, ``status`` (and ``data_folder``, ``failed_extensions`` only when there was something to say)
with one running — a script had to guess which keys exist. One shape now, every key always there."""

from __future__ import annotations

import json

import pytest
from api_helpers import running
from test_cli_helpers import cli_env, jan, ok

KEYS = {"url", "checked", "up", "status", "models_loaded", "uptime_seconds", "data_folder", "failed_extensions"}


@pytest.mark.parametrize("where", ["no server", "--local", "server"])
def test_the_server_block_has_one_shape(tmp_path, where):
    data = tmp_path / "jan"
    if where == "server":
        with running(data) as srv:
            server = json.loads(ok(jan("info", "--json", env=cli_env(data, local=False, JAN_API_URL=srv.base_url)))
                                .stdout)["server"]
        assert server["up"] is True and server["checked"] is True and server["status"] == "ok", server
        assert server["models_loaded"] == [] and isinstance(server["uptime_seconds"], (int, float)), server
    else:
        env = cli_env(data, local=where == "--local", JAN_API_URL="http://127.0.0.1:9")  # (nothing listens there)
        server = json.loads(ok(jan("info", "--json", env=env)).stdout)["server"]
        assert server["up"] is False and server["checked"] is (where != "--local"), server
        assert server["status"] is None and server["models_loaded"] is None and server["uptime_seconds"] is None
        assert server["data_folder"] is None and server["failed_extensions"] == [], server
    assert set(server) == KEYS, server
