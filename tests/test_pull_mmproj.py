"""Pulls and imports pick up a model's projector: ``hf://owner/repo[:QUANT]`` chooses the model and
the repository's ``mmproj-*.gguf`` from its file list (as llama-server's ``-hf``), an ``hf://`` file
brings the repository's projector along, and importing a file finds the projector beside it.
A fake Hugging Face hub (its listing API and resolve URLs) serves the tiny vision pair."""

from __future__ import annotations

import base64
import io
import json
import shutil
import urllib.error
import urllib.request

import pytest
from aiohttp import web

from api_helpers import AppThread, parse_sse
from jan.hf_repo import pick_mmproj, pick_model
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread


class FakeHub(AppThread):
    """``/api/models/<owner>/<repo>/tree/<rev>`` and ``/<owner>/<repo>/resolve/<rev>/<file>`` for a few repos."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__()
        self.repos = repos
        self.fetched: list[str] = []

    def routes(self, router) -> None:
        async def tree(request):
            files = self.repos.get(f"{request.match_info['owner']}/{request.match_info['repo']}")
            if files is None:
                raise web.HTTPNotFound()
            return web.json_response([{"type": "file", "path": p, "size": len(d)} for p, d in files.items()])

        async def resolve(request):
            files = self.repos.get(f"{request.match_info['owner']}/{request.match_info['repo']}") or {}
            data = files.get(request.match_info["path"])
            if data is None:
                raise web.HTTPNotFound()
            self.fetched.append(request.match_info["path"])
            return web.Response(body=data, content_type="application/octet-stream")

        router.add_get("/api/models/{owner}/{repo}/tree/{rev}", tree)
        router.add_get("/{owner}/{repo}/resolve/{rev}/{path:.+}", resolve)


def call(srv, method: str, path: str, body=None):
    request = urllib.request.Request(srv.base_url + path, method=method, headers={"Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def pull(srv, url: str) -> dict:
    status, text = call(srv, "POST", "/v1/models/pull", {"url": url})
    assert status == 200, text
    last = [data for _name, data in parse_sse(text) if isinstance(data, dict)][-1]
    assert last.get("state") == "completed", last
    return json.loads(call(srv, "GET", f"/v1/models/{last['model_id']}")[1])


def test_picking_files():
    files = ["README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-f32.gguf", "mmproj-m-f16.gguf", "m-F16.gguf"]
    assert pick_model(files) == "m-Q4_K_M.gguf"  # llama.cpp's default quant
    assert pick_model(files, "q8_0") == "m-Q8_0.gguf"
    assert pick_model(files, "Q2_K") is None
    assert pick_model(["b.gguf", "a.gguf"]) == "a.gguf"
    assert pick_mmproj(files) == "mmproj-m-f16.gguf"
    assert pick_mmproj(["m.gguf"]) is None


@pytest.fixture
def hub(vision_pair):
    model, mmproj = (p.read_bytes() for p in vision_pair)
    with FakeHub({"test/tiny-vlm": {"tiny-Q8_0.gguf": model, "tiny-Q4_K_M.gguf": model,
                                    "mmproj-tiny-f16.gguf": mmproj, "README.md": b"# tiny"},
                  "test/no-gguf": {"README.md": b"nothing"}}) as h:
        yield h


@pytest.fixture
def server(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("JAN_HF_ENDPOINT", hub.base)
    with ServerThread(ServerConfig(data_folder=tmp_path / "data", n_ctx=512, n_threads=1)) as srv:
        yield srv


def _chat_with_image(srv, model_id: str) -> dict:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 90)).save(out, "PNG")
    url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    status, text = call(srv, "POST", "/v1/chat/completions", {"model": model_id, "max_tokens": 3, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
    assert status == 200, text
    return json.loads(text)


def test_pull_a_whole_repo_brings_its_projector(server, hub):
    model = pull(server, "hf://test/tiny-vlm")
    assert model["settings"]["llama_model_path"] == "tiny-Q4_K_M.gguf"
    assert model["settings"]["mmproj"] == "mmproj-tiny-f16.gguf"
    assert [s["filename"] for s in model["sources"]] == ["tiny-Q4_K_M.gguf", "mmproj-tiny-f16.gguf"]
    assert "vision" in model["capabilities"]
    assert sorted(hub.fetched) == ["mmproj-tiny-f16.gguf", "tiny-Q4_K_M.gguf"]
    assert _chat_with_image(server, model["id"])["usage"]["prompt_tokens"] > 64

    quant = pull(server, "hf://test/tiny-vlm:Q8_0")  # a quant named as llama-server's -hf owner/repo:quant
    assert (quant["settings"]["llama_model_path"], quant["settings"]["mmproj"]) == ("tiny-Q8_0.gguf",
                                                                                    "mmproj-tiny-f16.gguf")


def test_pull_one_file_brings_the_repos_projector(server, hub):
    status, text = call(server, "POST", "/v1/models/pull", {"url": "hf://test/tiny-vlm/tiny-Q8_0.gguf", "id": "one"})
    assert status == 200, text
    model = json.loads(call(server, "GET", "/v1/models/one")[1])
    assert model["settings"]["mmproj"] == "mmproj-tiny-f16.gguf" and "vision" in model["capabilities"]


def test_pull_a_repo_without_a_model_is_a_400(server):
    for url in ("hf://test/no-gguf", "hf://test/tiny-vlm:Q2_K"):
        status, text = call(server, "POST", "/v1/models/pull", {"url": url})
        assert status == 400, (url, status, text)
    # a repository the hub says is not there: a 404, as an unknown model name is (every pull route alike)
    status, text = call(server, "POST", "/v1/models/pull", {"url": "hf://test/missing-repo"})
    assert status == 404 and json.loads(text)["error"]["param"] == "url", text


def test_import_finds_a_projector_beside_the_model(server, vision_pair, tmp_path):
    folder = tmp_path / "downloaded-repo"
    folder.mkdir()
    shutil.copy(vision_pair[0], folder / "gemma-like-Q4_K_M.gguf")
    shutil.copy(vision_pair[1], folder / "mmproj-model-f16.gguf")  # named unlike the model, the folder's only one
    status, text = call(server, "POST", "/v1/models", {"path": str(folder / "gemma-like-Q4_K_M.gguf"), "id": "beside"})
    assert status in (200, 201), text
    model = json.loads(call(server, "GET", "/v1/models/beside")[1])
    assert "vision" in model["capabilities"]
    assert _chat_with_image(server, "beside")["usage"]["prompt_tokens"] > 64


@pytest.mark.parametrize("through", ["data folder", "server"])
def test_cli_import_finds_a_projector_beside_the_model_as_the_api_does(through, vision_pair, tmp_path, request):
    """The README: "an `mmproj-<model file name>` beside the model, or the folder's only `*mmproj*.gguf`, is picked
    up by itself" by `jan models import`. Without a server the command knew only the first, so a repository
    downloaded whole imported without its projector (no `vision`), where the same import through a server, or
    `POST /v1/models`, had it; the command now says which projector it took."""
    from test_cli_helpers import cli_env, jan, ok

    folder = tmp_path / "downloaded-repo"
    folder.mkdir()
    shutil.copy(vision_pair[0], folder / "gemma-like-Q4_K_M.gguf")
    shutil.copy(vision_pair[1], folder / "mmproj-model-f16.gguf")  # named unlike the model, the folder's only one
    env = cli_env(tmp_path / "jan")
    if through == "server":
        srv = request.getfixturevalue("server")
        env = cli_env(srv.config.data_folder, local=False, JAN_API_URL=srv.base_url)
    out = ok(jan("models", "import", folder / "gemma-like-Q4_K_M.gguf", "--id", "beside", env=env)).stdout
    assert f"; projector {folder / 'mmproj-model-f16.gguf'})" in out, out
    listed = json.loads(ok(jan("models", "list", "--json", env=env)).stdout)
    assert "vision" in next(m for m in listed if m["id"] == "beside")["capabilities"], listed
    if through == "data folder":
        # `jan run FILE.gguf` (no import) takes the same projector: it knew only mmproj-<name>, and said the model
        # takes no images
        from PIL import Image

        image = tmp_path / "green.png"
        Image.new("RGB", (16, 16), (10, 200, 90)).save(image)
        ok(jan("run", folder / "gemma-like-Q4_K_M.gguf", "What is this?", "--image", image, "-n", "2", env=env))


def test_cli_pull_of_a_repo_brings_its_projector(hub, tmp_path):
    from test_cli_helpers import cli_env, jan, ok

    env = cli_env(tmp_path / "jan", JAN_HF_ENDPOINT=hub.base)
    ok(jan("models", "pull", "hf://test/tiny-vlm:Q8_0", "--id", "cli-vlm", env=env))
    doc = json.loads((tmp_path / "jan" / "models" / "cli-vlm" / "model.json").read_text())
    assert (doc["settings"]["llama_model_path"], doc["settings"]["mmproj"]) == ("tiny-Q8_0.gguf", "mmproj-tiny-f16.gguf")
    assert (tmp_path / "jan" / "models" / "cli-vlm" / "mmproj-tiny-f16.gguf").is_file()


def test_canonical_source_reads_ollamas_hugging_face_names():
    from jan.hf_repo import canonical_source

    assert canonical_source("hf.co/owner/repo:Q8_0") == "hf://owner/repo:Q8_0"
    assert canonical_source("HuggingFace.co/owner/repo") == "hf://owner/repo"
    assert canonical_source("hf.co/owner/repo:latest") == "hf://owner/repo"  # (Ollama's default tag: the default quant)
    for other in ("hf://owner/repo", "llama3.2:1b", "https://hf.co/owner/repo", "hf.co/owner", "hf.co/a/b/c.gguf"):
        assert canonical_source(other) == other


def test_ollamas_hugging_face_name_is_pulled_as_its_hf_repo(server, hub):
    """Ollama's docs pull a Hugging Face repository as ``hf.co/owner/repo[:QUANT]`` (Open WebUI's pull box takes
    it so): jan answered 404 "neither a jan model id nor hf://...", on /api/pull and /v1/models/pull alike."""
    status, text = call(server, "POST", "/api/pull", {"model": "hf.co/test/tiny-vlm:Q8_0", "stream": False})
    assert (status, json.loads(text)) == (200, {"status": "success"}), text
    model = json.loads(call(server, "GET", "/v1/models/tiny-Q8_0")[1])
    assert (model["settings"]["llama_model_path"], model["settings"]["mmproj"]) == ("tiny-Q8_0.gguf",
                                                                                    "mmproj-tiny-f16.gguf")
    assert model["sources"][0]["url"] == "hf://test/tiny-vlm/tiny-Q8_0.gguf"
    # the tag latest is Ollama's default: the repository's default quant, as a name without a tag
    status, text = call(server, "POST", "/api/pull", {"model": "huggingface.co/test/tiny-vlm:latest", "stream": False})
    assert status == 200, text
    assert json.loads(call(server, "GET", "/v1/models/tiny-Q4_K_M")[1])["settings"]["llama_model_path"] == \
        "tiny-Q4_K_M.gguf"
    # the same name through jan's own pull route (the one pull of the models extension)
    status, text = call(server, "POST", "/v1/models/pull", {"url": "hf.co/test/tiny-vlm:Q8_0", "id": "by-v1"})
    assert status == 200, text
    assert json.loads(call(server, "GET", "/v1/models/by-v1")[1])["settings"]["llama_model_path"] == "tiny-Q8_0.gguf"
    # a repository the hub does not have is a 404 naming it, as every pull of a missing source
    status, text = call(server, "POST", "/api/pull", {"model": "hf.co/test/missing-repo", "stream": False})
    assert status == 404 and "test/missing-repo" in json.loads(text)["error"], text


def test_a_model_pulled_by_its_hugging_face_name_is_found_by_that_name(server, hub):
    """Ollama's clients pull ``hf.co/owner/repo:QUANT`` and then chat with that same name; jan's id for the model is
    its file's name, so the name was a 404 on every route after the pull succeeded."""
    for name in ("hf.co/test/tiny-vlm:Q8_0", "hf.co/test/tiny-vlm"):
        status, text = call(server, "POST", "/api/pull", {"model": name, "stream": False})
        assert status == 200, text
    for name, model_id in (("hf.co/test/tiny-vlm:Q8_0", "tiny-Q8_0"), ("HF.co/Test/Tiny-VLM:q8_0", "tiny-Q8_0"),
                           ("hf.co/test/tiny-vlm", "tiny-Q4_K_M"), ("hf.co/test/tiny-vlm:latest", "tiny-Q4_K_M"),
                           ("hf://test/tiny-vlm:Q8_0", "tiny-Q8_0")):
        status, text = call(server, "POST", "/api/chat", {"model": name, "stream": False, "options": {"num_predict": 2},
                                                          "messages": [{"role": "user", "content": "Hi"}]})
        assert status == 200 and json.loads(text)["model"] == name, (name, text)  # (named as asked, as Ollama)
        status, text = call(server, "POST", "/api/show", {"model": name})
        assert status == 200 and json.loads(text)["modelfile"].count(f"{model_id}.gguf"), (name, text)
        status, text = call(server, "POST", "/v1/chat/completions", {"model": name, "max_tokens": 2,
                                                                     "messages": [{"role": "user", "content": "Hi"}]})
        assert status == 200 and json.loads(text)["model"] == model_id, (name, text)
    # a quant no pulled model has, and a repository none was pulled from, stay not found
    for name in ("hf.co/test/tiny-vlm:Q2_K", "hf.co/test/other-repo"):
        status, text = call(server, "POST", "/api/chat", {"model": name, "messages": []})
        assert status == 404 and name in json.loads(text)["error"], (name, text)
    status, text = call(server, "DELETE", "/api/delete", {"model": "hf.co/test/tiny-vlm:Q8_0"})
    assert status == 200, text
    assert call(server, "GET", "/v1/models/tiny-Q8_0")[0] == 404
