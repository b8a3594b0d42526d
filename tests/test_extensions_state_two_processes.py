"""extensions.json is changed as it is on disk, under its lock: a `jan extensions disable --local` beside a running
server (another manager on the same data folder) is kept when the server changes another extension. Before, each
manager wrote its own copy read at start, and the other's change was lost."""

from __future__ import annotations

import asyncio
import json

from jan.core import ExtensionManager


def _state(data):
    return json.loads((data / "extensions" / "extensions.json").read_text())


def test_a_change_by_another_manager_is_kept(tmp_path):
    data = tmp_path / "data"
    server = ExtensionManager(data)
    server.discover()
    assert server.list()  # (its copy of extensions.json is read now)
    cli = ExtensionManager(data)
    asyncio.run(cli.disable("tools"))
    asyncio.run(server.disable("monitoring"))
    state = _state(data)["extensions"]
    assert state["tools"]["enabled"] is False and state["monitoring"]["enabled"] is False
    server.set_preferred("monitoring", "monitoring")
    asyncio.run(cli.enable("monitoring"))
    state = _state(data)
    assert state["preferred"] == {"monitoring": "monitoring"} and state["extensions"]["monitoring"]["enabled"] is True
