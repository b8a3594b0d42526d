"""GET/PATCH /v1/extensions..., settings validation and persistence, and the monitoring routes."""

from __future__ import annotations

import json

import openai
import pytest

from extension_helpers import call, records
from jan.core import Extension
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from server_helpers import start_server

BUILT_INS = {"llamacpp": ["inference"], "models": ["model"], "conversational": ["conversational", "assistant"],
             "monitoring": ["monitoring"], "remote": ["inference"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("ext-api")
    srv = start_server(tmp, [stories_path])
    srv.data = tmp / "data"
    yield srv
    srv.stop()


def stored(server, name: str):
    path = server.data / "settings" / name / "settings.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_list_shows_every_built_in_with_its_fields(server):
    status, body = call(server, "GET", "/v1/extensions")
    assert status == 200 and body["object"] == "list"
    found = {r["name"]: r for r in body["data"]}
    for name, types in BUILT_INS.items():
        record = found[name]
        assert record["state"] == "loaded" and record["enabled"] is True and record["error"] is None, record
        assert record["types"] == types and record["version"] == "0.1.0" and record["description"]
        assert set(record) >= {"object", "name", "version", "types", "enabled", "state", "error", "description",
                               "requires_api", "depends_on", "source"}


def test_unknown_extensions_are_404(server):
    for method, path in (("GET", "/v1/extensions/nope"), ("POST", "/v1/extensions/nope/enable"),
                         ("PATCH", "/v1/extensions/nope"), ("GET", "/v1/extensions/nope/settings"),
                         ("GET", "/v1/extensions/%40scope%2Fnope")):
        status, body = call(server, method, path, {"enabled": True} if method == "PATCH" else None)
        assert status == 404 and body["error"]["code"] == "extension_not_found", (path, body)
    assert "'@scope/nope'" in call(server, "GET", "/v1/extensions/%40scope%2Fnope")[1]["error"]["message"]


def test_patch_enabled_is_validated_and_switches_at_runtime(server):
    for bad, param in (({"enabled": "yes"}, "enabled"), ({"enabled": True, "colour": 1}, "colour"), ({}, "enabled")):
        status, body = call(server, "PATCH", "/v1/extensions/monitoring", bad)
        assert status == 400 and body["error"]["param"] == param, body
    try:
        status, record = call(server, "PATCH", "/v1/extensions/monitoring", {"enabled": False})
        assert status == 200 and record["state"] == "disabled"
        assert call(server, "GET", "/v1/system")[0] == 404
        assert records(server)["monitoring"]["enabled"] is False
    finally:
        status, record = call(server, "PATCH", "/v1/extensions/monitoring", {"enabled": True})
    assert status == 200 and record["state"] == "loaded"
    assert call(server, "GET", "/v1/system")[0] == 200


def test_built_in_settings_reject_bad_values_naming_the_field(server):
    before = stored(server, "llamacpp")
    for bad, field in (({"n_parallel": 0}, "n_parallel"), ({"max_queue": "lots"}, "max_queue"),
                       ({"n_parallel": 2, "keep_alive": -5}, "keep_alive"), ({"n_paralel": 2}, "n_paralel"),
                       ({"n_paralel": None}, "n_paralel")):
        status, body = call(server, "PATCH", "/v1/extensions/llamacpp/settings", bad)
        assert status == 400, (bad, body)
        assert body["error"]["param"] == field and repr(field) in body["error"]["message"], body
    assert stored(server, "llamacpp") == before  # all or nothing

    status, body = call(server, "PATCH", "/v1/extensions/llamacpp/settings", {"n_parallel": 2, "keep_alive": 30})
    assert status == 200 and body["values"]["n_parallel"] == 2 and body["values"]["keep_alive"] == 30
    assert body["user_values"] == {"n_parallel": 2, "keep_alive": 30}
    assert stored(server, "llamacpp") == {"n_parallel": 2, "keep_alive": 30}
    assert body["schema"]["properties"]["n_parallel"]["minimum"] == 1
    assert call(server, "GET", "/v1/extensions/llamacpp/settings")[1]["values"]["keep_alive"] == 30

    status, body = call(server, "DELETE", "/v1/extensions/llamacpp/settings")
    assert status == 200 and body["user_values"] == {} and body["values"]["n_parallel"] == 4
    assert stored(server, "llamacpp") == {}

    for not_an_object in (b"[1, 2]", b"not json"):
        assert call(server, "PATCH", "/v1/extensions/llamacpp/settings", not_an_object)[0] == 400


def test_secret_settings_are_never_shown(server):
    status, body = call(server, "PATCH", "/v1/extensions/remote/settings",
                        {"api_key": "sk-very-secret", "base_url": "http://127.0.0.1:9/v1"})
    assert status == 200 and body["values"]["api_key"] == "********"
    assert stored(server, "remote")["api_key"] == "sk-very-secret"
    # sending the marker back (a settings form round-trip) keeps the key
    status, body = call(server, "PATCH", "/v1/extensions/remote/settings", {"api_key": "********", "timeout": 30})
    assert status == 200 and stored(server, "remote") == {"api_key": "sk-very-secret", "base_url": "http://127.0.0.1:9/v1",
                                                          "timeout": 30.0}
    status, body = call(server, "GET", "/v1/extensions/remote/settings")
    assert "sk-very-secret" not in json.dumps(body)
    status, body = call(server, "PATCH", "/v1/extensions/remote/settings", {"base_url": "not a url"})
    assert status == 400 and body["error"]["param"] == "base_url"
    call(server, "DELETE", "/v1/extensions/remote/settings")


def test_system_reports_resources_gpus_and_model_metrics(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)

    status, system = call(server, "GET", "/v1/system")
    assert status == 200 and system["object"] == "system" and system["jan_version"]
    cpu, memory = system["resources"]["cpu"], system["resources"]["memory"]
    assert cpu["cores"] >= 1 and 0 <= cpu["usage"] <= 100
    assert memory["total"] > memory["process_rss"] > 0 and 0 < memory["used"] <= memory["total"]
    assert isinstance(system["gpus"], list) and "CPU" in system["llama_cpp"]["backends"]
    assert set(system["engines"]) >= {"llama.cpp", "openai"}
    local = next(m for m in system["models"] if m["id"] == "stories260K")
    assert local["engine"] == "llama.cpp" and local["status"] == "ready" and local["memory"] > 0
    assert local["metrics"]["requests_total"] >= 1 and local["metrics"]["generated_tokens_total"] >= 5

    status, one = call(server, "GET", "/v1/system/models/stories260K")
    assert status == 200 and one["engine"] == "llama.cpp" and one["n_ctx"] == 512
    assert one["metrics"]["requests_total"] >= 1 and "requests_active" in one["metrics"]
    status, body = call(server, "GET", "/v1/system/models/not-loaded")
    assert status == 404 and body["error"]["code"] == "model_not_found"


class Routed(Extension):
    """An extension with a route, disabled when the server starts."""

    name = "routed"
    requires_api = ">=1,<2"

    async def on_load(self, ctx):
        from aiohttp import web

        async def handler(request):
            return web.json_response({"ok": True})

        ctx.add_route("GET", "/v1/routed", handler)


def test_routes_of_an_extension_enabled_later_are_served_at_once(tmp_path):
    data = tmp_path / "data"
    (data / "extensions").mkdir(parents=True)
    (data / "extensions" / "extensions.json").write_text(json.dumps(
        {"version": 1, "extensions": {"routed": {"enabled": False}}}))
    with ServerThread(ServerConfig(data_folder=data, n_threads=1), extensions=[Routed]) as srv:
        assert records(srv)["routed"]["state"] == "disabled"
        assert call(srv, "GET", "/v1/routed")[0] == 404
        status, record = call(srv, "POST", "/v1/extensions/routed/enable")
        assert status == 200 and record["state"] == "loaded" and "restart_required" not in record
        assert call(srv, "GET", "/v1/routed") == (200, {"ok": True})
        assert call(srv, "POST", "/v1/extensions/routed/disable")[0] == 200
        assert call(srv, "GET", "/v1/routed")[0] == 404
        assert call(srv, "POST", "/v1/extensions/routed/enable")[0] == 200
        assert call(srv, "GET", "/v1/routed") == (200, {"ok": True})
