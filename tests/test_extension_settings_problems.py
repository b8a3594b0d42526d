"""Values a hand-edited ``settings/<ext>/settings.json`` holds that jan ignores are reported by the settings API
(``problems``: which key, and why), not only logged; a save that writes valid values clears them."""

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
