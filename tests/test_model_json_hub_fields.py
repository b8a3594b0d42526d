"""A model.json's text fields as hubs write them — ``"version": 2``, ``"description": null``, a numeric name —
are read as the listing reads them (null the default, a number its text), so every later write of the model
works: a PATCH of another field, Ollama's copy and create, the store's update. They failed with a 400 naming no
field ("name must be a string, not int") that no request the client sent could explain."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, running

from jan.store import DataFolder, InvalidArgumentError

HUB_FIELDS = {"name": 5, "version": 2, "description": None, "format": None, "engine": None}


def _write(data, stories_path, model_id: str, **fields) -> None:
    folder = data / "models" / model_id
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({
        "id": model_id, "object": "model", "settings": {"llama_model_path": str(stories_path)}, **fields}))


def test_store_update_reads_hub_text_fields(tmp_path, stories_path):
    _write(tmp_path, stories_path, "hub", **HUB_FIELDS)
    store = DataFolder(tmp_path).models
    model = store.update("hub", {"parameters": {"temperature": 0.5}})
    assert (model["name"], model["version"], model["description"], model["format"], model["engine"]) == \
        ("5", "2", "", "gguf", "llama.cpp")
    assert json.loads((tmp_path / "models" / "hub" / "model.json").read_text())["name"] == "5"
    with pytest.raises(InvalidArgumentError, match="name must be a string"):  # no text at all is still refused
        store.update("hub", {"name": ["x"]})


async def test_every_write_of_a_hub_model_json_works(tmp_path, stories_path):
    data = tmp_path / "data"
    _write(data, stories_path, "hub", **HUB_FIELDS)
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            patched = await api.ok("PATCH", "/v1/models/hub", {"description": "from a hub"})
            assert patched["name"] == "5" and patched["description"] == "from a hub", patched
            assert (await api.post("/api/copy", {"source": "hub", "destination": "hub-copy"}))[0] == 200
            created = await api.post("/api/create", {"model": "hub-made", "from": "hub", "stream": False})
            assert created == (200, {"status": "success"}), created
            copy = await api.ok("GET", "/v1/models/hub-copy")
            assert copy["name"] == "5", copy
