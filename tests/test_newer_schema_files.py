"""A data-folder file with a ``_schema_version`` newer than this jan knows (written by a newer jan, or a hand edit)
is read as is but never rewritten: a change to it is a 409 naming the file, in the dialect's error shape. It was a 500
"internal_error" with a traceback in the log (the store's NewerSchemaError reached the server unmapped)."""

from __future__ import annotations

import json

from api_helpers import Client, running


def _bump(path) -> None:
    doc = json.loads(path.read_text())
    doc["_schema_version"] = 99
    path.write_text(json.dumps(doc))


async def test_changing_a_file_of_a_newer_jan_is_a_409_naming_it(tmp_path, stories_path):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            thread = await api.ok("POST", "/v1/threads", {"title": "t"})
            assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K", "name": "a"})
            _bump(data / "threads" / thread["id"] / "thread.json")
            _bump(data / "assistants" / assistant["id"] / "assistant.json")
            _bump(data / "models" / "stories260K" / "model.json")
            for method, path, body, file in [
                ("POST", f"/v1/threads/{thread['id']}", {"title": "new"}, f"threads/{thread['id']}/thread.json"),
                ("POST", f"/v1/assistants/{assistant['id']}", {"name": "b"},
                 f"assistants/{assistant['id']}/assistant.json"),
                ("PATCH", "/v1/models/stories260K", {"description": "d"}, "models/stories260K/model.json"),
            ]:
                status, err = await api.call(method, path, body)
                assert status == 409, (path, status, err)
                assert err["error"]["code"] == "newer_schema"
                assert file in err["error"]["message"] and "newer version of jan" in err["error"]["message"]
            # read as it stands, unchanged
            assert (await api.ok("GET", f"/v1/threads/{thread['id']}"))["title"] == "t"
            assert json.loads((data / "threads" / thread["id"] / "thread.json").read_text())["_schema_version"] == 99
