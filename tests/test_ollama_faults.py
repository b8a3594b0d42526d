"""Faults an outside tester found in jan's Ollama API, each kind fixed where it lives:

* a pull whose source fails is never a 500: 404 when the source has no such file (as a bad name is), 502 when it
  fails otherwise (a 5xx, a refused connection, a file that is no GGUF), on every pull route;
* Ollama's shapes: ``name`` for ``model`` on ``/api/create``, a clear 400 for ``/api/push``, Ollama's "off" values
  of sampling options (``top_k`` -1, ``typical_p`` 0), an embedding model's real context on ``/api/ps``, pull
  progress whose ``digest`` is a ``sha256:`` or absent, errors that name Ollama's fields (``format``) and spell
  values as JSON (``true``), ``/api/create`` ``parameters`` that are checked and whose load-time ones are kept,
  a ``keep_alive`` longer than any date (``1e30``) taken as forever, not a 500 on ``/api/ps``;
* stopping a model cancels an embedding running on it: the request ends with the error a cut-off generation gets
  (503, try again), never 200 with vectors from a model ``/api/ps`` no longer lists, and the embedding context is
  freed once the call returns.

Real servers (stories260K, all-MiniLM-L6-v2), a local HTTP server as the pull's source; the embedding is held
between batches by a gate the test opens, never by timing.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import http.server
import json
import shutil
import threading
import weakref

import jan
import pytest
from api_helpers import Client, http_serving, running
from jan.core import ModelExtension
from jan.downloads import DownloadError
from jan.errors import EmbeddingCancelledError, ModelClosedError
from jan.server.dialects import ollama_models, ollama_requests
from jan.server.dialects import ollama_schemas as wire
from jan.server.errors import to_api_error
from jan.server.jsonio import json_text
from jan.server.keys import MANAGER
from jan.services.embeddings import EMBEDDING_CANCELLED
from jan.testing.server import free_port


def _only_error(body) -> str:
    assert isinstance(body, dict) and list(body) == ["error"], body
    return body["error"]


async def _ndjson(api: Client, path: str, body: dict) -> tuple[int, list[dict]]:
    async with api.session.post(api.base + path, json=body) as resp:
        text = await resp.text()
    return resp.status, [json.loads(line) for line in text.splitlines() if line.strip()]


# -- 1. a pull whose source fails ----------------------------------------------------------------------------------
class _Source(http.server.SimpleHTTPRequestHandler):
    """A folder over HTTP; ``/boom`` answers 500 (an upstream that fails)."""

    def do_GET(self):
        if self.path == "/boom.gguf":
            self.send_error(500, "upstream broke")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def source(tmp_path, stories_path):
    root = tmp_path / "files"
    root.mkdir()
    shutil.copyfile(stories_path, root / "tiny.gguf")
    (root / "again").mkdir()
    shutil.copyfile(stories_path, root / "again" / "tiny.gguf")
    (root / "notgguf.gguf").write_text("not a model\n" * 50)
    with http_serving(functools.partial(_Source, directory=str(root))) as url:
        yield url


@pytest.mark.parametrize("tail, status", [
    ("/missing.gguf", 404),  # the source says the file is not there: as an unknown name is
    ("/boom.gguf", 502),  # the source fails
    (None, 502),  # nothing listens there
    ("/notgguf.gguf", 502),  # what came is no GGUF model
])
async def test_a_failed_pull_is_never_a_500(server, source, tail, status):
    server.app[MANAGER].get(ModelExtension).downloader.retries = 0  # a failure fails at once, without back-off
    url = source + tail if tail else f"http://127.0.0.1:{free_port()}/x.gguf"
    async with Client(server.base_url) as api:
        got, body = await api.post("/api/pull", {"model": url, "stream": False})
        assert got == status, body
        assert _only_error(body).startswith("pull model")
        # streamed, the status line went out before the download failed: the last line says it, as Ollama's
        got, lines = await _ndjson(api, "/api/pull", {"model": url})
        assert got == 200 and lines[0] == {"status": "pulling manifest"}, lines
        assert list(lines[-1]) == ["error"] and lines[-1]["error"].startswith("pull model"), lines
        # the deprecated name works as model, as on Ollama's pull
        got, body = await api.post("/api/pull", {"name": url, "stream": False})
        assert got == status, body


async def test_a_pull_into_a_taken_id_says_how_to_name_another(server, source, tmp_path):
    # the 409 said "pull it under another id", which Ollama's pull (a name, no id) has no way to do
    async with Client(server.base_url) as api:
        got, body = await api.post("/api/pull", {"model": f"{source}/tiny.gguf", "stream": False})
        assert got == 200, body
        got, body = await api.post("/api/pull", {"model": f"{source}/again/tiny.gguf", "stream": False})
    assert got == 409 and "already exists" in _only_error(body), body
    assert "--id NAME" in _only_error(body) and "/v1/models/pull" in _only_error(body), body


def test_every_pull_route_maps_a_download_failure_alike():
    cases = [
        (DownloadError("HTTP 404 File not found", DownloadError.HTTP_STATUS, status=404), 404),
        (DownloadError("gone", DownloadError.HTTP_STATUS, status=410), 404),
        (DownloadError("no such repository", DownloadError.INVALID_URL, status=404), 404),
        (DownloadError("bad scheme", DownloadError.INVALID_URL), 400),
        (DownloadError("HTTP 503", DownloadError.HTTP_STATUS, status=503), 502),
        (DownloadError("refused", DownloadError.NETWORK), 502),
        (DownloadError("sha256", DownloadError.CHECKSUM_MISMATCH), 502),
        (DownloadError("pulled elsewhere", DownloadError.CONFLICT), 409),
        (DownloadError("no permission", DownloadError.IO), 500),
    ]
    for exc, status in cases:
        assert exc.http_status == status, exc
        assert to_api_error(exc).status == status, exc  # any route that lets one through (OpenAI's shape)


async def test_a_pull_the_full_disk_refuses_is_a_507(server, source, monkeypatch):
    """A pull whose file the local disk refused for want of space was a 500 (Ollama's /api/pull; the error of any
    route that lets it through), where every other write of the data folder a full disk refuses is the 507."""
    import errno

    import jan.downloads

    def full(self, f, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jan.downloads.DownloadTask, "_write", full)
    server.app[MANAGER].get(ModelExtension).downloader.retries = 0
    async with Client(server.base_url) as api:
        got, body = await api.post("/api/pull", {"model": f"{source}/tiny.gguf", "stream": False})
        assert got == 507 and "No space left on device" in _only_error(body), body
    failure = DownloadError("cannot write", DownloadError.IO)
    failure.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert to_api_error(failure).status == 507  # (any route that lets one through, OpenAI's shape)


async def test_pull_progress_has_no_file_name_for_a_digest(server, source):
    async with Client(server.base_url) as api:
        got, lines = await _ndjson(api, "/api/pull", {"model": f"{source}/tiny.gguf"})
    assert got == 200 and lines[-1] == {"status": "success"}, lines
    pulling = [line for line in lines if line["status"].startswith("pulling ") and line["status"] != "pulling manifest"]
    assert pulling and all(line["status"] == "pulling tiny.gguf" for line in pulling), lines
    # Ollama's digest is the layer's sha256 (clients group progress by it); unknown here, so it is left out
    assert all(line.get("digest", "sha256:").startswith("sha256:") for line in lines), lines
    assert pulling[-1]["completed"] == pulling[-1]["total"] > 0


# -- 2. Ollama's shapes ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("ollama-faults") / "data", stories_path, minilm_path) as srv:
        yield srv


def _model_json(srv, model_id: str) -> dict:
    return json.loads((srv.config.data_folder / "models" / model_id / "model.json").read_text())


async def test_create_takes_the_deprecated_name(models):
    async with Client(models.base_url) as api:
        got, body = await api.post("/api/create", {"name": "by-name", "from": "stories260K", "stream": False})
        assert got == 200 and body == {"status": "success"}, body
        assert (await api.ok("POST", "/api/show", {"name": "by-name"}))["details"]["family"] == "llama"
        got, body = await api.post("/api/create", {"from": "stories260K", "stream": False})
        assert got == 400 and _only_error(body) == "model is required"


async def test_create_checks_its_parameters_and_keeps_the_load_ones(models):
    async with Client(models.base_url) as api:
        for parameters, said in [({"bogus": 1}, "unknown parameter 'bogus'"),
                                 ({"main_gpu": 0}, "parameter 'main_gpu' is not supported by jan"),
                                 ({"num_ctx": -5}, "parameters.num_ctx"),
                                 ({"num_ctx": True}, "parameters.num_ctx")]:
            got, body = await api.post("/api/create", {"model": "refused", "from": "stories260K",
                                                       "parameters": parameters, "stream": False})
            assert got == 400 and said in _only_error(body), (parameters, body)
        assert (await api.post("/api/show", {"model": "refused"}))[0] == 404  # nothing was made
        got, body = await api.post("/api/create", {"model": "sized", "from": "stories260K", "stream": False,
                                                   "parameters": {"num_ctx": 256, "num_thread": 0, "num_gpu": -1,
                                                                  "num_batch": 64, "temperature": 0.3}})
        assert got == 200, body
        doc = _model_json(models, "sized")
        assert doc["settings"]["ctx_len"] == 256 and doc["settings"]["n_batch"] == 64, doc["settings"]
        assert "cpu_threads" not in doc["settings"] and "ngl" not in doc["settings"]  # jan's own choice stands
        assert doc["parameters"]["temperature"] == 0.3 and "num_ctx" not in doc["parameters"]
        done = await api.ok("POST", "/api/generate", {"model": "sized", "prompt": "Once", "stream": False,
                                                      "options": {"num_predict": 2}})
        assert done["done"] is True
        running_models = (await api.ok("GET", "/api/ps"))["models"]
        assert next(m for m in running_models if m["name"] == "sized:latest")["context_length"] == 256


async def test_show_tells_the_load_parameters_a_create_stored(models):
    # /api/create kept num_ctx/num_batch/use_mmap as settings, but /api/show's parameters and modelfile left them
    # out: `ollama show` hid the context a model was made with, and its modelfile given back to `ollama create`
    # made a model with another one
    async with Client(models.base_url) as api:
        got, body = await api.post("/api/create", {"model": "shown", "from": "stories260K", "stream": False,
                                                   "parameters": {"num_ctx": 256, "num_batch": 64, "use_mmap": False,
                                                                  "num_gpu": -1, "temperature": 0.3}})
        assert got == 200, body
        shown = await api.ok("POST", "/api/show", {"model": "shown"})
    lines = {line.split()[0]: line.split()[1] for line in shown["parameters"].splitlines()}
    assert lines == {"temperature": "0.3", "num_ctx": "256", "num_batch": "64", "use_mmap": "false"}, shown["parameters"]
    modelfile = shown["modelfile"].splitlines()
    assert "PARAMETER num_ctx                        256" in modelfile and not any("num_gpu" in x for x in modelfile)
    # what only jan spells (all layers, "auto") is no Ollama value, and stays out
    assert ollama_models.load_parameters({"settings": {"ngl": "auto", "ctx_len": 0, "cpu_threads": 4}}) == {
        "num_thread": 4}


@pytest.mark.parametrize("stream", [None, False, True])
async def test_push_is_refused_clearly(models, stream):
    async with Client(models.base_url) as api:
        got, body = await api.post("/api/push", {"model": "stories260K", **({} if stream is None else {"stream": stream})})
    assert got == 400 and "does not push models to a registry" in _only_error(body), body


@pytest.mark.parametrize("options", [
    {"top_k": -1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.0}, {"min_p": 0.0}, {"typical_p": 1.0},
    {"typical_p": 0.0}, {"repeat_last_n": -1}, {"repeat_last_n": 0}, {"num_predict": -1}, {"num_predict": -2},
    {"mirostat": 2}, {"seed": -1},
])
async def test_ollamas_off_values_are_taken(models, options):
    async with Client(models.base_url) as api:
        got, body = await api.post("/api/generate", {"model": "stories260K", "prompt": "Once", "stream": False,
                                                     "options": {"num_predict": 2, **options}})
    assert got == 200 and body["done"] is True, body


def test_off_values_map_to_jans():
    sampling = ollama_requests.sampling(wire.OllamaOptions(top_k=-1, typical_p=0.0))
    assert sampling.top_k == 0 and sampling.typical_p == 1.0  # off, over a model.json's default too
    sampling = ollama_requests.sampling(wire.OllamaOptions(top_k=7, typical_p=0.5))
    assert sampling.top_k == 7 and sampling.typical_p == 0.5


async def test_the_openai_dialect_keeps_its_own_ranges(models):
    async with Client(models.base_url) as api:
        got, body = await api.post("/v1/chat/completions", {"model": "stories260K", "top_k": -1, "max_tokens": 2,
                                                            "messages": [{"role": "user", "content": "x"}]})
    assert got == 400 and body["error"]["param"] == "top_k", body


async def test_ps_reports_an_embedding_models_context(models, minilm_path):
    model = minilm_path.stem
    async with Client(models.base_url) as api:
        await api.ok("POST", "/api/embed", {"model": model, "input": "hello"})
        entry = next(m for m in (await api.ok("GET", "/api/ps"))["models"] if m["name"] == f"{model}:latest")
    assert entry["context_length"] == 512  # bert.context_length: the embedding context it was loaded with


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_format_schema_names_format(models, path, stream):
    body = {"model": "stories260K", "format": {"type": "bogus"}, "stream": stream, "options": {"num_predict": 2}}
    body.update({"prompt": "x"} if path == "/api/generate" else {"messages": [{"role": "user", "content": "x"}]})
    async with Client(models.base_url) as api:
        got, answer = await api.post(path, body)
    error = _only_error(answer)
    # (the path in the schema follows the field: format.type)
    assert got == 400 and error.startswith("format.type: ") and "response_format" not in error, answer


@pytest.mark.parametrize("keep_alive", [1e30, 10 ** 30, "9999999999999h"])
async def test_a_keep_alive_longer_than_any_date_is_forever(models, keep_alive):
    # a duration no thread can wait and no date can end was kept as given, and /api/ps then failed (500) adding
    # it to now; past the longest duration (Go's, Ollama's own) it is forever, as a negative one is
    async with Client(models.base_url) as api:
        await api.ok("POST", "/api/generate", {"model": "stories260K", "keep_alive": keep_alive})
        entry = next(m for m in (await api.ok("GET", "/api/ps"))["models"] if m["name"] == "stories260K:latest")
        assert int(entry["expires_at"][:4]) >= 2100, entry  # forever: a date far ahead, as for keep_alive -1
        await api.ok("POST", "/api/generate", {"model": "stories260K", "keep_alive": -1})


@pytest.mark.parametrize("path, body", [
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "x"}]}),  # a render: submits nothing
    ("/api/generate", {"prompt": "def f(", "suffix": "x", "stream": False}),  # refused (no FIM tokens): a 400
])
async def test_keep_alive_0_is_not_kept_waiting_by_a_request_that_submits_nothing(models, path, body):
    # keep_alive 0 waits for requests handed the model (a request racing it is served, not failed); one that only
    # renders or is refused before its submit ends its hand-out at once, so the unload is not put off
    async with Client(models.base_url) as api:
        await api.ok("POST", "/api/generate", {"model": "stories260K"})
        got, answer = await api.post(path, {"model": "stories260K", **body})
        assert got == (200 if path.endswith("count_tokens") else 400), answer
        unloaded = await api.ok("POST", "/api/generate", {"model": "stories260K", "keep_alive": 0})
        assert unloaded["done_reason"] == "unload"
        assert "stories260K" not in [m["name"].removesuffix(":latest") for m in (await api.ok("GET", "/api/ps"))["models"]]


async def test_values_in_errors_are_spelled_as_json(models):
    async with Client(models.base_url) as api:
        for value, said in [(True, "invalid duration true"), ("5x", 'invalid duration "5x"')]:
            got, body = await api.post("/api/generate", {"model": "stories260K", "keep_alive": value})
            assert got == 400 and said in _only_error(body), body
        got, body = await api.post("/api/chat", {"model": "stories260K", "think": None, "messages": [
            {"role": "robot", "content": "x"}]})
        assert got == 400 and 'not "robot"' in _only_error(body), body


def test_json_text():
    assert [json_text(v) for v in (True, False, None, "a", [1, "b"], {"k": None})] == [
        "true", "false", "null", '"a"', '[1, "b"]', '{"k": null}']
    assert json_text("x" * 1000).endswith("...") and len(json_text("x" * 1000)) < 200


# -- 3. stopping a model cancels its running embedding ------------------------------------------------------------
class _GatedEmbedder:
    """Stands in for a model's embedding context: each call embeds its first half, waits at the gate (``entered``
    set, until ``release``), then the rest — a stop arrives between two batches (before the one batch of a lone
    input). Holds the real context only while
    a call runs, as the call's own frame does."""

    def __init__(self, real):
        self.real = real
        self.entered, self.release = threading.Event(), threading.Event()
        self.returned = threading.Event()  # the call is over, on its worker thread (which may answer after the client)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def embed(self, batch, normalize):
        real = self.real
        try:
            half = len(batch) // 2  # (one input: the gate is before its one batch)
            first = real.embed(batch[:half], normalize) if half else []
            self.entered.set()
            assert self.release.wait(60)
            return [*first, *real.embed(batch[half:], normalize)]
        finally:
            self.real = real = None  # the call is over: only the model (if anyone) still holds the context
            self.returned.set()


def _gate(srv, model: str) -> tuple[_GatedEmbedder, weakref.ref]:
    loaded = srv.app[MANAGER].get_inference("llama.cpp").engine.get(model)
    assert loaded._embedder is not None  # made by the request that loaded it
    gate = _GatedEmbedder(loaded._embedder)
    loaded._embedder = gate
    return gate, weakref.ref(gate.real)


@pytest.mark.parametrize("path, body, error", [
    ("/api/embed", {"input": [f"sentence number {i}" for i in range(200)]}, lambda b: _only_error(b)),
    ("/api/embeddings", {"prompt": "one sentence"}, lambda b: _only_error(b)),
    ("/v1/embeddings", {"input": [f"sentence number {i}" for i in range(200)]}, lambda b: b["error"]["message"]),
])
async def test_stopping_a_model_cancels_its_running_embedding(tmp_path, minilm_path, path, body, error):
    model = minilm_path.stem
    with running(tmp_path / "data", minilm_path) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/api/embed", {"model": model, "input": "load it"})
            gate, context = _gate(srv, model)
            embedding = asyncio.create_task(api.post(path, {"model": model, **body}))
            assert await asyncio.to_thread(gate.entered.wait, 60)
            loaded = srv.app[MANAGER].get_inference("llama.cpp").engine.get(model)
            assert loaded.busy  # an embedding running counts: no keep-alive nor room-making unload takes it
            stopped = await api.ok("POST", f"/v1/models/{model}/stop")
            assert stopped["state"] == "unloaded", stopped
            assert model not in [m["name"].removesuffix(":latest") for m in (await api.ok("GET", "/api/ps"))["models"]]
            gate.release.set()
            status, answer = await asyncio.wait_for(embedding, 60)
            # the error a cut-off generation gets (503: try again), never the vectors of a model that is gone
            assert status == 503 and error(answer) == EMBEDDING_CANCELLED, answer
            if path == "/v1/embeddings":
                assert answer["error"]["code"] == "generation_cancelled", answer
            # (the client is answered when the stop cancels the call; its worker thread may still be returning)
            assert await asyncio.to_thread(gate.returned.wait, 60)
            del loaded, gate
            gc.collect()
            assert context() is None  # the embedding context is freed once the call returned
            # the model loads again for the next request
            assert len((await api.ok("POST", "/api/embed", {"model": model, "input": "again"}))["embeddings"]) == 1


def test_closing_a_model_cancels_an_embed_running_on_it(minilm_path):
    model = jan.Model(str(minilm_path))
    model.embed("load the context")
    gate = _GatedEmbedder(model._embedder)
    model._embedder = gate
    outcome: list[BaseException | None] = []

    def run():
        try:
            model.embed([f"sentence {i}" for i in range(100)])
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert gate.entered.wait(60)
    assert model.busy
    model.close()
    gate.release.set()
    worker.join(60)
    assert isinstance(outcome[0], EmbeddingCancelledError) and "unloaded while embedding" in str(outcome[0]), outcome
    assert not model.busy
    with pytest.raises(ModelClosedError):
        model.embed("after the close")
