"""Weights whose file name is jan's in a model folder (``model.json``, a hidden temporary file's) are kept apart.

The name a model's weights take in its folder comes from the client: an imported file's name, a pulled URL's last
segment, an Ollama ``/api/create`` ``files`` key. Named ``model.json``, the weights were placed there and then
written over by the model's definition: Ollama's create answered ``success`` for a model whose every request was
"not a GGUF file", and a pull failed after its whole download with "model '...' already exists". They are now
kept as ``model.json.gguf``. Files are served on 127.0.0.1: nothing reaches the network."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from api_helpers import Client
from range_server import FileServer

from jan.store.models import weights_filename


def test_the_name_is_kept_apart_from_the_folders_own_file():
    assert weights_filename("model.json") == "model.json.gguf"
    assert weights_filename("Model.JSON") == "Model.JSON.gguf"  # (a file system that folds case holds one of them)
    assert weights_filename("model.gguf") == "model.gguf" and weights_filename("model.json.gguf") == "model.json.gguf"
    # a hidden name is a temporary file's: the weights lose the dots
    assert weights_filename(".w.tmp") == "w.tmp" and weights_filename("..model.json") == "model.json.gguf"


def _weights_and_doc(folder) -> tuple[bytes, dict]:
    doc = json.loads((folder / "model.json").read_text())
    return (folder / doc["settings"]["llama_model_path"]).read_bytes(), doc


def test_import_of_a_file_named_model_json(tmp_path, stories_path):
    from jan.store import DataFolder

    named = tmp_path / "in" / "model.json"
    named.parent.mkdir()
    named.write_bytes(stories_path.read_bytes())
    store = DataFolder(tmp_path / "data")
    for mode in ("copy", "link", "symlink"):
        store.models.import_gguf(named, model_id=f"m-{mode}", mode=mode)
        weights, doc = _weights_and_doc(store.models.folder(f"m-{mode}"))
        assert doc["settings"]["llama_model_path"] == "model.json.gguf", doc
        assert weights == stories_path.read_bytes() and doc["id"] == f"m-{mode}"


async def test_ollama_create_from_a_blob_named_model_json(server, tmp_path, stories_path):
    blob = stories_path.read_bytes()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        assert (await http.post(f"/api/blobs/{digest}", content=blob)).status_code == 201
        created = await http.post("/api/create", json={"model": "named", "files": {"model.json": digest},
                                                       "stream": False})
        assert created.status_code == 200, created.text
        # the model answers: its weights are there, not written over by its model.json
        answer = await http.post("/api/generate", json={"model": "named", "prompt": "Once", "stream": False,
                                                        "options": {"num_predict": 2, "temperature": 0}})
        assert answer.status_code == 200 and answer.json()["done"], answer.text
    weights, _ = _weights_and_doc(tmp_path / "data" / "models" / "named")  # (the server fixture's data folder)
    assert weights == blob


@pytest.mark.parametrize("route", ["/api/pull", "/v1/models/pull"])
async def test_pull_of_a_url_whose_file_is_model_json(server, tmp_path, stories_path, route):
    blob = stories_path.read_bytes()
    async with FileServer(blob) as source, Client(server.base_url) as api:
        url = source.url.rsplit("/", 1)[0] + "/model.json"
        model_id = "pulled-" + route.split("/")[1]
        if route == "/api/pull":
            body = {"model": url, "stream": False}
            async with api.session.post(f"{server.base_url}{route}", json=body) as resp:
                assert resp.status == 200, await resp.text()
            model_id = "model"  # (the id the URL's file name gives)
        else:
            async with api.session.post(f"{server.base_url}{route}", json={"url": url, "id": model_id}) as resp:
                assert resp.status == 200, await resp.text()
                text = await resp.text()
            assert '"state":"completed"' in text, text
        assert (await api.ok("POST", f"/v1/models/{model_id}/start"))["state"] == "ready"
    weights, doc = _weights_and_doc(tmp_path / "data" / "models" / model_id)
    assert weights == blob and doc["settings"]["llama_model_path"] == "model.json.gguf", doc


async def test_a_pulled_hidden_temp_named_file_survives_the_start_up_sweep(server, tmp_path, stories_path):
    """A URL whose last segment is a hidden ``.tmp`` name: the weights were stored under it, which is the shape of
    jan's own temporary files, and a start of jan an hour later swept them away (the model then had no weights)."""
    import os
    import time

    from jan.store._trash import sweep_temp_files

    blob = stories_path.read_bytes()
    async with FileServer(blob) as source, Client(server.base_url) as api:
        url = source.url.rsplit("/", 1)[0] + "/.w.p1.abc.tmp"
        async with api.session.post(f"{server.base_url}/v1/models/pull", json={"url": url, "id": "hidden"}) as resp:
            assert resp.status == 200 and '"state":"completed"' in await resp.text()
    folder = tmp_path / "data" / "models" / "hidden"
    _, doc = _weights_and_doc(folder)
    weights = folder / doc["settings"]["llama_model_path"]
    old = time.time() - 2 * 3600  # (older than any temporary file a live writer could hold)
    os.utime(weights, (old, old))
    sweep_temp_files(tmp_path / "data")  # what a start of jan does to the data folder
    assert weights.read_bytes() == blob and not weights.name.startswith("."), weights
