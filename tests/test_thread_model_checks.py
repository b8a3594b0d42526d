"""A thread, assistant or run naming a model that does not exist is refused when it is given (404
``model_not_found`` in OpenAI's error shape, ``param`` the field, "did you mean" where one is near), as OpenAI refuses
an assistant's or a run's unknown model; before, a thread's ``assistants[i].model.id`` was accepted and every run of
it failed later. A model on disk that is not loaded is accepted (it loads with the run), and a thread whose model was
removed since stays editable."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, running

from jan.store import DataFolder

MODEL = "stories260K"


@pytest.fixture
def served(tmp_path, stories_path):
    data = tmp_path / "data"
    DataFolder(data).models.import_gguf(stories_path, model_id=MODEL, mode="reference")  # on disk, not loaded
    with running(data) as srv:
        yield srv, data


def _assistants(model_id: str) -> list[dict]:
    return [{"assistant_id": "jan", "model": {"id": model_id}}]


def _threads(data) -> list[str]:
    folder = data / "threads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def _refused(api: Client, method: str, path: str, body: dict, param: str, said: str) -> None:
    status, err = await api.call(method, path, body)
    assert status == 404, (path, status, err)
    assert err["error"]["code"] == "model_not_found" and err["error"]["param"] == param, err
    assert said in err["error"]["message"], err


async def test_every_route_naming_a_model_refuses_one_that_does_not_exist(served):
    srv, data = served
    async with Client(srv.base_url) as api:
        # threads: at creation, at creation with a run, and when modified
        await _refused(api, "POST", "/v1/threads", {"assistants": _assistants("nosuch")},
                       "assistants[0].model.id", "model 'nosuch' not found")
        await _refused(api, "POST", "/v1/threads", {"assistants": _assistants("storis260K")},
                       "assistants[0].model.id", "did you mean 'stories260K'?")
        await _refused(api, "POST", "/v1/threads/runs",
                       {"thread": {"assistants": _assistants("nosuch"), "messages": [{"role": "user", "content": "hi"}]}},
                       "thread.assistants[0].model.id", "model 'nosuch' not found")
        assert _threads(data) == []  # nothing written by a refused request
        thread = await api.ok("POST", "/v1/threads", {"assistants": _assistants(MODEL)})  # on disk, not loaded
        tid = thread["id"]
        for method in ("POST", "PATCH"):
            await _refused(api, method, f"/v1/threads/{tid}", {"assistants": _assistants("nosuch")},
                           "assistants[0].model.id", "model 'nosuch' not found")
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["assistants"][0]["model"]["id"] == MODEL
        # no model of its own ("": a run takes the assistant's or the default) is no unknown one
        await api.ok("POST", "/v1/threads", {"assistants": _assistants("")})
        # assistants and runs (as before: the same shape)
        await _refused(api, "POST", "/v1/assistants", {"model": "nosuch"}, "model", "model 'nosuch' not found")
        assistant = await api.ok("POST", "/v1/assistants", {"model": MODEL})
        await _refused(api, "POST", f"/v1/assistants/{assistant['id']}", {"model": "nosuch"}, "model",
                       "model 'nosuch' not found")
        await _refused(api, "POST", f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], "model": "nosuch"},
                       "model", "model 'nosuch' not found")


async def test_a_thread_whose_model_was_removed_stays_editable(served):
    srv, data = served
    async with Client(srv.base_url) as api:
        thread = await api.ok("POST", "/v1/threads", {"assistants": _assistants(MODEL)})
        (data / "models" / MODEL / "model.json").unlink()  # removed since (by hand, another process)
        entry = {**_assistants(MODEL)[0], "instructions": "Be brief."}
        changed = await api.ok("PATCH", f"/v1/threads/{thread['id']}", {"assistants": [entry], "title": "Kept"})
        assert changed["assistants"][0]["instructions"] == "Be brief." and changed["title"] == "Kept"
        stored = json.loads((data / "threads" / thread["id"] / "thread.json").read_text())
        assert stored["assistants"][0]["model"]["id"] == MODEL
        # another unknown id is still refused
        await _refused(api, "PATCH", f"/v1/threads/{thread['id']}", {"assistants": _assistants("other")},
                       "assistants[0].model.id", "model 'other' not found")
