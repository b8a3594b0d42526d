"""A loaded model whose model.json stops reading while it serves (damaged by a hand edit, or its folder removed by
hand) is still stopped and deleted by the admin's routes, in every dialect: ``POST /v1/models/{id}/stop``,
llama-server's ``/models/unload``, ``DELETE /v1/models/{id}`` and Ollama's ``/api/delete`` unload it (its id no
longer resolves). Before, each answered the model's 404 or 400 and left its weights loaded, listed in ``/health``
until the server stopped; a delete of the damaged folder removed it from disk and kept it loaded."""

from __future__ import annotations

import shutil

from api_helpers import Client, running

from jan.server.keys import MANAGER

VICTIM = "victim"


def _loaded(srv) -> list[str]:
    return sorted(srv.call(srv.app[MANAGER].get_inference("llama.cpp").loaded_models()))


async def _add_victim(api: Client, data, stories_path) -> str:
    """Add the model the tests break (a reference to ``stories_path``); its model.json's text, to mend it with."""
    await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": VICTIM, "mode": "reference"}, 201)
    return (data / "models" / VICTIM / "model.json").read_text()


async def _load_then_break(api: Client, srv, data, model_json: str, how: str) -> None:
    folder = data / "models" / VICTIM
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(model_json)  # (whole again)
    await api.ok("POST", f"/v1/models/{VICTIM}/start")
    assert _loaded(srv) == ["stories260K", VICTIM]
    if how == "damaged":
        (folder / "model.json").write_text('{"id": "victim", broken')
    else:
        shutil.rmtree(folder)
    status, _ = await api.get(f"/v1/models/{VICTIM}")
    assert status in (400, 404)  # its id no longer resolves


async def test_a_model_whose_model_json_stopped_reading_is_stopped_and_deleted(tmp_path, stories_path):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            model_json = await _add_victim(api, data, stories_path)
            for how in ("damaged", "removed"):
                await _load_then_break(api, srv, data, model_json, how)
                answer = await api.ok("POST", f"/v1/models/{VICTIM}/stop")
                assert answer["id"] == VICTIM and answer["state"] == "unloaded", answer
                assert _loaded(srv) == ["stories260K"]

                await _load_then_break(api, srv, data, model_json, how)
                assert await api.ok("POST", "/models/unload", {"model": VICTIM}) == {"success": True}
                assert _loaded(srv) == ["stories260K"]

            await _load_then_break(api, srv, data, model_json, "damaged")
            await api.ok("DELETE", f"/v1/models/{VICTIM}")
            assert _loaded(srv) == ["stories260K"] and not (data / "models" / VICTIM).exists()

            await _load_then_break(api, srv, data, model_json, "damaged")
            status, _ = await api.call("DELETE", "/api/delete", {"model": VICTIM})
            assert status == 200
            assert _loaded(srv) == ["stories260K"] and not (data / "models" / VICTIM).exists()

            # a name that is no model, loaded or not, is still the route's own refusal
            status, _ = await api.post("/v1/models/nosuch/stop")
            assert status == 404
            status, _ = await api.post("/models/unload", {"model": "nosuch"})
            assert status == 400
            assert _loaded(srv) == ["stories260K"]


async def test_ollama_keep_alive_0_unloads_it_and_api_ps_lists_it_while_loaded(tmp_path, stories_path):
    """Ollama's ``keep_alive: 0`` (``/api/generate``, ``/api/chat`` with nothing to generate) unloads such a model
    too, and ``/api/ps`` lists it while it is loaded, as ``/health`` does. Before: the unload was a 404 that left it
    loaded, and ``/api/ps`` left it out while ``/health`` listed it."""
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            model_json = await _add_victim(api, data, stories_path)
            for how in ("damaged", "removed"):
                for path, body in (("/api/generate", {"model": VICTIM, "keep_alive": 0}),
                                   ("/api/chat", {"model": VICTIM, "messages": [], "keep_alive": 0})):
                    await _load_then_break(api, srv, data, model_json, how)
                    assert VICTIM in (await api.ok("GET", "/health"))["models"]
                    listed = [m["name"] for m in (await api.ok("GET", "/api/ps"))["models"]]
                    assert sorted(listed) == ["stories260K:latest", f"{VICTIM}:latest"], (how, listed)
                    answer = await api.ok("POST", path, body)
                    assert answer["done"] is True and answer["done_reason"] == "unload", (how, path, answer)
                    assert _loaded(srv) == ["stories260K"], (how, path)
                    assert [m["name"] for m in (await api.ok("GET", "/api/ps"))["models"]] == ["stories260K:latest"]
            # a name that is no model, loaded or not, is still Ollama's 404
            status, _ = await api.post("/api/generate", {"model": "nosuch", "keep_alive": 0})
            assert status == 404
            assert _loaded(srv) == ["stories260K"]
