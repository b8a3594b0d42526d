"""Model ids that differ only in case (``Stories`` beside ``stories``) are one folder on macOS and Windows, where a data
folder is often synced to or opened from, and one name to Ollama. Every way of making a model refuses such a twin
(409 naming the model that exists; the store's :class:`CaseClashError`), before anything is copied or downloaded;
Ollama's ``/api/copy`` and ``/api/create`` write over the model of that name whatever its case, as Ollama keeps the
existing name's spelling. A malformed id is a 400 that names the ``id`` field."""

from __future__ import annotations

import pytest
from api_helpers import Client
from test_cli_helpers import fails, jan

from jan.store import AlreadyExistsError, CaseClashError, DataFolder


def test_the_store_refuses_an_id_that_differs_only_in_case(tmp_path, stories_path):
    models = DataFolder(tmp_path / "data").models
    models.import_gguf(stories_path, model_id="Stories", mode="reference")
    for make in (lambda: models.import_gguf(stories_path, model_id="stories", mode="copy"),
                 lambda: models.create({"id": "STORIES"}),
                 lambda: models.create({"id": "stories"}, overwrite=True)):
        with pytest.raises(CaseClashError) as caught:
            make()
        assert caught.value.existing == "Stories" and "differs only in case" in str(caught.value)
        assert isinstance(caught.value, AlreadyExistsError)  # the API's 409, wherever that is mapped
    assert [m["id"] for m in models.list()] == ["Stories"]
    assert sorted(p.name for p in (tmp_path / "data" / "models").iterdir()) == ["Stories"]  # nothing copied
    models.create({"id": "Stories", "name": "again"}, overwrite=True)  # its own id still replaces it
    assert models.get("Stories")["name"] == "again"


async def test_every_route_that_makes_a_model_refuses_a_case_twin(tmp_path, server, stories_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "Stories"}, 201)
        for path, body in [
            ("/v1/models", {"path": str(stories_path), "id": "stories"}),  # an import
            ("/v1/models", {"id": "STORIES", "engine": "llama.cpp",
                            "settings": {"llama_model_path": str(stories_path)}}),  # a model.json
            # a pull: refused before the source is asked (nothing listens there)
            ("/v1/models/pull", {"url": "http://127.0.0.1:9/stories.gguf", "id": "stories", "stream": False}),
        ]:
            status, err = await api.post(path, body)
            assert status == 409 and err["error"]["code"] == "already_exists", (path, err)
            assert "'Stories'" in err["error"]["message"] and "case" in err["error"]["message"], (path, err)
        status, err = await api.post("/api/pull", {"model": "http://127.0.0.1:9/stories.gguf", "stream": False})
        assert status == 409 and "'Stories'" in err["error"], err  # (Ollama's own error shape)
        assert (await api.ok("GET", "/v1/downloads"))["data"] == []

        # Ollama's copy and create write over the model of that name, whatever its case
        await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "other"}, 201)
        status, _ = await api.post("/api/copy", {"source": "other", "destination": "STORIES"})
        assert status == 200
        status, _ = await api.post("/api/create", {"model": "stories:latest", "from": "other", "stream": False,
                                                   "parameters": {"temperature": 0.25}})
        assert status == 200
        assert sorted(p.name for p in (data / "models").iterdir()) == ["Stories", "other"]
        stored = await api.ok("GET", "/v1/models/Stories")
        assert stored["parameters"]["temperature"] == 0.25

        for path, body in [("/v1/models", {"path": str(stories_path), "id": "a b"}),
                           ("/v1/models", {"id": "../up", "engine": "llama.cpp"}),
                           ("/v1/models/pull", {"url": "http://127.0.0.1:9/x.gguf", "id": "CON"})]:
            status, err = await api.post(path, body)
            assert status == 400 and err["error"]["param"] == "id", (path, err)


def test_the_cli_refuses_a_case_twin(env, data, stories_path):
    assert jan("models", "import", stories_path, "--id", "Stories", env=env).returncode == 0
    fails(jan("models", "import", stories_path, "--id", "stories", env=env), "differs only in case", "'Stories'")
    assert sorted(p.name for p in (data / "models").iterdir()) == ["Stories"]
    fails(jan("models", "pull", "http://127.0.0.1:9/x.gguf", "--id", "STORIES", env=env), "differs only in case")
    assert sorted(p.name for p in (data / "models").iterdir()) == ["Stories"]
