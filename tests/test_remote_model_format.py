"""A remote model (``"engine": "openai"``: another server's API answers it) reports what it is wherever a model's
format is reported: ``format`` "api" in model.json, ``/v1/models`` and `jan models show` (Jan's own word for such
models), Ollama's ``details.format`` "" with ``remote_model`` (as Ollama tells its cloud models) in ``/api/tags`` and
``/api/show``. Before, every model.json was given ``"format": "gguf"``, a remote model's too, and every listing
said so."""

from __future__ import annotations

import json
import urllib.request

import pytest
from test_cli_helpers import cli_env, jan, ok

from jan.store import DataFolder
from jan.store.models import API_FORMAT, model_format

pytestmark = pytest.mark.timeout(300)

REMOTE = {"id": "far", "engine": "openai", "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-x"}}


def _json(url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.fixture()
def folder(tmp_path, stories_path):
    """A data folder with a remote model written as an older jan wrote it ("format": "gguf"), a new remote model
    and a local GGUF model."""
    data = tmp_path / "jan"
    store = DataFolder(data)
    store.models.import_gguf(stories_path, model_id="stories260K", mode="symlink")
    store.models.create({"id": "near-far", "engine": "openai", "settings": {"base_url": "http://127.0.0.1:9/v1"}})
    (data / "models" / "far").mkdir()
    (data / "models" / "far" / "model.json").write_text(json.dumps({**REMOTE, "format": "gguf", "_schema_version": 1,
                                                                     "object": "model", "sources": []}))
    return data


def test_the_store_says_api_for_remote_models_and_gguf_for_files(folder):
    store = DataFolder(folder)
    formats = {m["id"]: m["format"] for m in store.models.list()}
    assert formats == {"stories260K": "gguf", "near-far": API_FORMAT, "far": API_FORMAT}
    assert store.models.get("far")["format"] == API_FORMAT
    assert json.loads((folder / "models" / "near-far" / "model.json").read_text())["format"] == API_FORMAT
    # a model of another engine that names its weights file keeps its own word
    assert model_format({"engine": "other", "format": "gguf", "settings": {"llama_model_path": "m.gguf"}}) == "gguf"
    assert model_format({"engine": "llama.cpp"}) == "gguf"


def test_every_listing_reports_a_remote_model_as_remote(folder):
    from api_helpers import running

    with running(folder) as srv:
        listed = {m["id"]: m for m in _json(f"{srv.base_url}/v1/models")["data"]}
        assert listed["far"]["format"] == listed["near-far"]["format"] == API_FORMAT
        assert listed["stories260K"]["format"] == "gguf"
        assert _json(f"{srv.base_url}/v1/models/far")["format"] == API_FORMAT
        tags = {m["model"]: m for m in _json(f"{srv.base_url}/api/tags")["models"]}
        assert tags["far:latest"]["details"]["format"] == "" and tags["far:latest"]["remote_model"] == "gpt-x"
        assert tags["near-far:latest"]["remote_model"] == "near-far"
        assert tags["stories260K:latest"]["details"]["format"] == "gguf"
        assert "remote_model" not in tags["stories260K:latest"]
        shown = _json(f"{srv.base_url}/api/show", {"model": "far"})
        assert shown["details"]["format"] == "" and shown["remote_model"] == "gpt-x"
        local = _json(f"{srv.base_url}/api/show", {"model": "stories260K"})
        assert local["details"]["format"] == "gguf" and "remote_model" not in local


def test_jan_models_show_says_api(folder):
    out = ok(jan("models", "show", "far", env=cli_env(folder))).stdout
    assert "format:" in out and " api" in out.split("format:")[1].splitlines()[0], out
    assert "file:" not in out, out  # (it said "(missing: pull or import it again)": no file is its to miss)
    shown = json.loads(ok(jan("models", "show", "far", "--json", env=cli_env(folder))).stdout)
    assert shown["format"] == API_FORMAT


def test_ollama_ps_entry_of_a_remote_model_is_remote():
    # /api/ps builds its entries with the same details as /api/tags (a remote model loads only with an upstream), but
    # without remote_model/remote_host, which Ollama's ProcessModelResponse has not (test_ollama_parity)
    from jan.server.dialects.ollama_models import running_entry

    entry = running_entry({**REMOTE, "format": "gguf"}, None, {"expires_in": None})
    assert entry["details"]["format"] == "" and "remote_model" not in entry
    local = running_entry({"id": "m", "engine": "llama.cpp", "format": "gguf"}, None, {"expires_in": None})
    assert local["details"]["format"] == "gguf" and "remote_model" not in local


@pytest.mark.parametrize(("base_url", "host"), [
    ("http://127.0.0.1:9/v1", "http://127.0.0.1:9"),
    ("https://user:secret@api.example.com/v1", "https://api.example.com:443"),  # (credentials and path never shown)
    ("http://[::1]:8080/v1", "http://[::1]:8080"),
    ("not a url", None),
])
def test_ollama_remote_host_is_the_upstreams_origin(base_url, host):
    from jan.server.dialects.ollama_models import remote_fields

    fields = remote_fields({"id": "far", "engine": "openai", "settings": {"base_url": base_url}})
    assert fields.get("remote_host") == host and fields["remote_model"] == "far"
    assert "remote_host" not in remote_fields({"id": "far", "engine": "openai"})  # (the extension's own base_url)
