"""examples/extension-hello, pip-installed by this test, then found by a fresh server through its entry point.

The package is built and installed with pip (its own pyproject.toml, the
setuptools backend, offline) into a folder this module puts on ``sys.path``,
and removed at the end; see ``extension_helpers``.
"""

from __future__ import annotations

import json

import pytest

from extension_helpers import EXAMPLE, call, on_sys_path, pip_install_target, records
from server_helpers import start_server


@pytest.fixture(scope="module")
def hello_installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hello-install")
    site = tmp / "site"
    pip_install_target(EXAMPLE, site, tmp)
    assert (site / "jan_hello" / "__init__.py").exists()
    assert list(site.glob("jan_hello-0.1.0.dist-info/entry_points.txt"))
    with on_sys_path(site, "jan_hello"):
        yield site


@pytest.fixture(scope="module")
def server(hello_installed, tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("hello-server")
    srv = start_server(tmp, [stories_path])
    srv.data = tmp / "data"
    yield srv
    srv.stop()


def test_the_server_discovers_and_loads_the_installed_example(server):
    hello = records(server)["hello"]
    assert hello["state"] == "loaded" and hello["enabled"] is True and hello["error"] is None
    assert hello["version"] == "0.1.0" and hello["requires_api"] == ">=1,<2"
    assert hello["source"] == "entry point hello = jan_hello:HelloExtension (jan-hello 0.1.0)"
    assert "hello" in hello["description"].lower()
    status, one = call(server, "GET", "/v1/extensions/hello")
    assert status == 200 and one["name"] == "hello"


def test_its_route_answers_and_it_receives_events(server):
    status, body = call(server, "GET", "/v1/hello")
    assert status == 200 and body["message"] == "Hello, world!"
    # the server loaded stories260K after the extensions: the extension heard about it
    assert body["events"].get("OnModelReady", 0) >= 1
    assert {"event": "OnModelReady", "model_id": "stories260K", "engine": "llama.cpp"} in body["recent_events"]
    before = body["events"]

    assert call(server, "POST", "/v1/models/stories260K/stop")[0] == 200
    assert call(server, "POST", "/v1/models/stories260K/start")[0] == 200
    status, body = call(server, "GET", "/v1/hello?name=jan")
    assert body["message"] == "Hello, jan!"
    assert body["events"]["OnModelStopped"] == before.get("OnModelStopped", 0) + 1
    assert body["events"]["OnModelReady"] == before["OnModelReady"] + 1
    assert body["recent_events"][-1] == {"event": "OnModelReady", "model_id": "stories260K", "engine": "llama.cpp"}


def test_its_settings_are_validated_and_persisted(server):
    stored = server.data / "settings" / "hello" / "settings.json"
    status, body = call(server, "PATCH", "/v1/extensions/hello/settings", {"greeting": "Hi", "recent_events": 5})
    assert status == 200, body
    assert body["values"] == {"greeting": "Hi", "recent_events": 5}
    assert json.loads(stored.read_text()) == {"greeting": "Hi", "recent_events": 5}
    assert call(server, "GET", "/v1/hello")[1]["message"] == "Hi, world!"
    assert len(call(server, "GET", "/v1/hello")[1]["recent_events"]) <= 5

    for bad, field in (({"recent_events": 0}, "recent_events"), ({"greeting": ""}, "greeting"),
                       ({"greeting": "ok", "recent_events": "many"}, "recent_events"), ({"colour": "red"}, "colour")):
        status, body = call(server, "PATCH", "/v1/extensions/hello/settings", bad)
        assert status == 400, (bad, body)
        assert body["error"]["param"] == field and field in body["error"]["message"]
        assert body["error"]["code"] == "invalid_settings"
    assert json.loads(stored.read_text()) == {"greeting": "Hi", "recent_events": 5}  # nothing written

    status, body = call(server, "PATCH", "/v1/extensions/hello/settings", {"greeting": None})
    assert status == 200 and body["values"]["greeting"] == "Hello" and body["user_values"] == {"recent_events": 5}
    assert json.loads(stored.read_text()) == {"recent_events": 5}


def test_disabling_and_enabling_it_at_runtime(server):
    status, record = call(server, "POST", "/v1/extensions/hello/disable")
    assert status == 200 and record["state"] == "disabled" and record["enabled"] is False
    assert call(server, "GET", "/v1/hello")[0] == 404
    state = json.loads((server.data / "extensions" / "extensions.json").read_text())
    assert state["extensions"]["hello"]["enabled"] is False

    status, record = call(server, "PATCH", "/v1/extensions/hello", {"enabled": True})
    assert status == 200 and record["state"] == "loaded"
    status, body = call(server, "GET", "/v1/hello")
    assert status == 200 and body["message"].endswith(", world!")
