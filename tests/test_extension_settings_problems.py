"""Values a hand-edited ``settings/<ext>/settings.json`` holds that jan ignores are reported by the settings API
(``problems``: which key, and why), not only logged; a save of that key clears it, a save of others keeps it."""

from __future__ import annotations

import json

from extension_helpers import call
from server_helpers import start_server


def test_ignored_stored_values_and_unreadable_files_are_reported(tmp_path, stories_path):
    settings = tmp_path / "data" / "settings"
    (settings / "llamacpp").mkdir(parents=True)
    (settings / "llamacpp" / "settings.json").write_text(json.dumps({"n_parallel": "many", "keep_alive": 30}))
    (settings / "monitoring").mkdir(parents=True)
    (settings / "monitoring" / "settings.json").write_text("{not json")
    srv = start_server(tmp_path, [stories_path])
    try:
        status, body = call(srv, "GET", "/v1/extensions/llamacpp/settings")
        assert status == 200, body
        assert body["user_values"] == {"keep_alive": 30}  # the valid value is kept, the invalid one left out
        assert [p["field"] for p in body["problems"]] == ["n_parallel"]
        assert "ignored" in body["problems"][0]["message"]

        status, body = call(srv, "GET", "/v1/extensions/monitoring/settings")
        assert status == 200, body
        assert len(body["problems"]) == 1 and body["problems"][0]["field"] is None
        assert "unreadable" in body["problems"][0]["message"]

        status, body = call(srv, "PATCH", "/v1/extensions/llamacpp/settings", {"n_parallel": 2})
        assert status == 200 and body["problems"] == [] and body["user_values"] == {"keep_alive": 30, "n_parallel": 2}
        assert call(srv, "GET", "/v1/extensions/llamacpp/settings")[1]["problems"] == []
    finally:
        srv.stop()


def test_a_change_of_one_setting_keeps_the_stored_values_jan_ignores(tmp_path, stories_path):
    """A settings.json holding values this jan ignores — a setting of a newer version of the extension (the user
    went back a version), a hand edit's wrong type — kept them through a PATCH of another setting: the write
    replaced the file with the valid values alone, no copy kept, and the newer version found its settings gone.
    They stay as they were (still reported as ignored); setting or resetting that key replaces or drops it."""
    path = tmp_path / "data" / "settings" / "llamacpp" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"n_parallel": "many", "keep_alive": 30, "zz_from_a_newer_jan": {"a": [1]},
                                "_schema_version": 9}))
    srv = start_server(tmp_path, [stories_path])
    try:
        status, body = call(srv, "PATCH", "/v1/extensions/llamacpp/settings", {"max_queue": 8})
        assert status == 200, body
        assert body["user_values"] == {"keep_alive": 30, "max_queue": 8}
        assert sorted(p["field"] for p in body["problems"]) == ["_schema_version", "n_parallel", "zz_from_a_newer_jan"]
        assert json.loads(path.read_text()) == {"n_parallel": "many", "keep_alive": 30, "max_queue": 8,
                                                "zz_from_a_newer_jan": {"a": [1]}, "_schema_version": 9}

        status, body = call(srv, "PATCH", "/v1/extensions/llamacpp/settings", {"n_parallel": 2})
        assert status == 200 and body["user_values"]["n_parallel"] == 2, body
        assert json.loads(path.read_text())["n_parallel"] == 2  # set: the ignored value replaced
        assert sorted(p["field"] for p in body["problems"]) == ["_schema_version", "zz_from_a_newer_jan"]

        status, body = call(srv, "DELETE", "/v1/extensions/llamacpp/settings")  # every setting back to its default
        assert status == 200 and body["problems"] == [], body
        assert json.loads(path.read_text()) == {}
    finally:
        srv.stop()
