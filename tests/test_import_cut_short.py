"""A GGUF cut short (a partial download, a copy that stopped) is refused wherever a file enters the data folder or
a model.json — the library's import, ``POST /v1/models``, ``jan models import``, a pull's finish, Ollama's
``/api/create`` from pushed blobs — with the bytes missing said, and no model left half made. Before, only the
first bytes (the magic) of some of them were checked: a cut projector was imported and failed every load after."""

from __future__ import annotations

import hashlib
import json
import shutil

import httpx
import pytest

from jan.server.config import ServerConfig
from jan.store import DataFolder
from jan.store.models import GGUFCutShortError
from jan.testing.server import ServerThread
from test_pull_mmproj import FakeHub, call, parse_sse


def cut_copy(src, dst) -> int:
    """A copy of the GGUF ``src`` at ``dst`` with its last third gone; the bytes missing."""
    whole = src.read_bytes()
    kept = len(whole) * 2 // 3
    dst.write_bytes(whole[:kept])
    return len(whole) - kept


def missing_said(text: str, missing: int) -> bool:
    return f"is cut short: {missing} of its " in text and "bytes are missing" in text


@pytest.fixture(scope="module")
def files(tmp_path_factory, vision_pair):
    root = tmp_path_factory.mktemp("cut")
    model, projector = vision_pair
    (root / "weights").mkdir()
    (root / "projector").mkdir()  # (apart: a projector beside the weights would be picked up with them)
    cut_model, cut_projector = root / "weights" / "cut-model.gguf", root / "projector" / "cut-mmproj.gguf"
    return {"model": model, "cut_model": cut_model, "cut_model_missing": cut_copy(model, cut_model),
            "cut_projector": cut_projector, "cut_projector_missing": cut_copy(projector, cut_projector),
            "root": root}


@pytest.fixture(scope="module")
def hub(vision_pair, files):
    with FakeHub({"test/cut-projector": {"tiny-Q4_K_M.gguf": vision_pair[0].read_bytes(),
                                         "mmproj-tiny-f16.gguf": files["cut_projector"].read_bytes()},
                  "test/cut-weights": {"tiny-Q4_K_M.gguf": files["cut_model"].read_bytes()}}) as h:
        yield h


@pytest.fixture(scope="module")
def server(tmp_path_factory, hub):
    mp = pytest.MonkeyPatch()
    mp.setenv("JAN_HF_ENDPOINT", hub.base)
    try:
        with ServerThread(ServerConfig(data_folder=tmp_path_factory.mktemp("data"), n_ctx=512, n_threads=1)) as srv:
            yield srv
    finally:
        mp.undo()


def model_ids(srv) -> set[str]:
    return {m["id"] for m in json.loads(call(srv, "GET", "/v1/models")[1])["data"]}


def test_the_library_import_refuses_a_cut_gguf_and_makes_no_model(tmp_path, files):
    data = DataFolder(tmp_path / "data")
    with pytest.raises(GGUFCutShortError) as caught:
        data.models.import_gguf(files["cut_model"], model_id="cut", mode="copy")
    assert missing_said(str(caught.value), files["cut_model_missing"]), caught.value
    assert isinstance(caught.value, ValueError)
    assert not (tmp_path / "data" / "models" / "cut").exists()


@pytest.mark.parametrize("which", ["weights", "projector", "projector beside it"])
def test_the_import_route_refuses_a_cut_file(server, files, tmp_path, which):
    body = {"path": str(files["model"]), "id": "cut-import"}
    missing = files["cut_projector_missing"]
    if which == "weights":
        body["path"], missing = str(files["cut_model"]), files["cut_model_missing"]
    elif which == "projector":
        body["settings"] = {"mmproj": str(files["cut_projector"])}
    else:
        shutil.copy(files["model"], tmp_path / "tiny.gguf")
        shutil.copy(files["cut_projector"], tmp_path / "mmproj-tiny.gguf")
        body["path"] = str(tmp_path / "tiny.gguf")
    status, text = call(server, "POST", "/v1/models", body)
    assert status == 400, text
    assert missing_said(json.loads(text)["error"]["message"], missing), text
    assert "cut-import" not in model_ids(server)
    assert not (server.config.data_folder / "models" / "cut-import").exists()


@pytest.mark.parametrize("repo, missing", [("cut-projector", "cut_projector_missing"),
                                           ("cut-weights", "cut_model_missing")])
def test_a_pull_of_a_cut_file_fails_and_leaves_nothing(server, files, repo, missing):
    status, text = call(server, "POST", "/v1/models/pull", {"url": f"hf://test/{repo}", "id": "cut-pull"})
    events = [data for _name, data in parse_sse(text) if isinstance(data, dict)] if status == 200 else []
    said = text if status != 200 else json.dumps(events[-1])
    assert status == 400 or events[-1].get("state") == "failed", (status, text)
    assert missing_said(said, files[missing]), said
    assert "cut-pull" not in model_ids(server)
    assert not (server.config.data_folder / "models" / "cut-pull").exists()


def _push(srv, path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    pushed = httpx.post(f"{srv.base_url}/api/blobs/{digest}", content=data, timeout=120)
    assert pushed.status_code in (200, 201), pushed.text
    return digest


@pytest.mark.parametrize("which", ["weights", "projector"])
def test_ollama_create_refuses_a_cut_blob(server, files, which):
    if which == "weights":
        blobs, missing = {"tiny.gguf": _push(server, files["cut_model"])}, files["cut_model_missing"]
    else:
        blobs = {"tiny.gguf": _push(server, files["model"]), "mmproj-tiny.gguf": _push(server, files["cut_projector"])}
        missing = files["cut_projector_missing"]
    response = httpx.post(f"{server.base_url}/api/create", timeout=120,
                          json={"model": "cut-create", "files": blobs, "stream": False})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and missing_said(response.json()["error"], missing), response.text
    assert "cut-create" not in model_ids(server)


def test_cli_import_refuses_a_cut_projector(tmp_path, files):
    from test_cli_helpers import cli_env, fails, jan

    env = cli_env(tmp_path / "data")
    fails(jan("models", "import", files["model"], "--mmproj", files["cut_projector"], env=env),
          f"{files['cut_projector_missing']} of its", "bytes are missing")
    fails(jan("models", "import", files["cut_model"], env=env), f"{files['cut_model_missing']} of its")
    assert not (tmp_path / "data" / "models").exists() or not any((tmp_path / "data" / "models").iterdir())
