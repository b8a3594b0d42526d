"""Ollama's blob uploads (``HEAD``/``POST /api/blobs/sha256:<hex>``) and ``/api/create`` from ``files``
(what ``ollama create`` with a ``FROM ./model.gguf`` Modelfile sends) on a real jan server."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import httpx
import ollama
import pytest

from jan.core.fs import TEMP_SUFFIX
from jan.testing.raw_http import read_response
from server_helpers import start_server

STORY = "Once upon a time"
#: Smaller than stories260K.gguf: uploads must stream past the server's body size limit.
MAX_BODY = 256 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    return _digest(path.read_bytes())


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("blobs"), [stories_path], max_body_bytes=MAX_BODY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


@pytest.fixture(scope="module")
def blobs(server) -> Path:
    return Path(server.config.data_folder) / "blobs"


def _http(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.base_url + path, timeout=120, **kwargs)


def _create(server, body: dict) -> httpx.Response:
    return _http(server, "POST", "/api/create", content=json.dumps(body).encode())


def _temp_files(blobs: Path) -> list[str]:
    return [p.name for p in blobs.iterdir() if p.name.endswith(TEMP_SUFFIX)] if blobs.exists() else []


def _tags(server) -> set[str]:
    return {m["model"].removesuffix(":latest") for m in _http(server, "GET", "/api/tags").json()["models"]}


# -- blobs ---------------------------------------------------------------------------------------------
def test_push_then_head(server, blobs, stories_path):
    data = stories_path.read_bytes()
    assert len(data) > MAX_BODY  # the server's JSON body limit does not bound a blob
    digest = _digest(data)
    assert _http(server, "HEAD", f"/api/blobs/{digest}").status_code == 404
    pushed = _http(server, "POST", f"/api/blobs/{digest}", content=data)
    assert pushed.status_code == 201, pushed.text
    assert _http(server, "HEAD", f"/api/blobs/{digest}").status_code == 200
    stored = blobs / f"sha256-{digest.removeprefix('sha256:')}"
    assert stored.read_bytes() == data
    # Ollama's '-' form and upper-case hex name the same blob
    assert _http(server, "HEAD", f"/api/blobs/sha256-{digest[7:].upper()}").status_code == 200
    before = os.stat(stored)
    again = _http(server, "POST", f"/api/blobs/{digest}", content=data)
    assert again.status_code == 200  # already there: not written again
    assert os.stat(stored).st_ino == before.st_ino and os.stat(stored).st_mtime_ns == before.st_mtime_ns
    assert _temp_files(blobs) == []


def test_chunked_upload(server, blobs):
    """A body without Content-Length (chunked), in many small pieces, hashed in order."""
    pieces = [bytes([i]) * (64 * 1024 + i) for i in range(40)]  # ~2.6 MB, more than one write batch
    digest = _digest(b"".join(pieces))
    pushed = _http(server, "POST", f"/api/blobs/{digest}", content=iter(pieces))
    assert pushed.status_code == 201, pushed.text
    assert (blobs / f"sha256-{digest[7:]}").read_bytes() == b"".join(pieces)
    assert _temp_files(blobs) == []


def test_digest_mismatch_keeps_nothing(server, blobs):
    data = os.urandom(3 * 1024 * 1024)
    wrong = _digest(b"something else")
    response = _http(server, "POST", f"/api/blobs/{wrong}", content=data)
    assert response.status_code == 400 and list(response.json()) == ["error"]
    assert response.json()["error"] == f'digest mismatch, expected "{wrong}", got "{_digest(data)}"'
    assert _http(server, "HEAD", f"/api/blobs/{wrong}").status_code == 404
    assert _http(server, "HEAD", f"/api/blobs/{_digest(data)}").status_code == 404
    assert not (blobs / f"sha256-{wrong[7:]}").exists() and not (blobs / f"sha256-{_digest(data)[7:]}").exists()
    assert _temp_files(blobs) == []


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "g" * 64, "md5:" + "0" * 64, "0" * 64,
                                    "sha256:" + "0" * 65, "sha256_" + "0" * 64])
def test_malformed_digest(server, blobs, digest):
    response = _http(server, "POST", f"/api/blobs/{digest}", content=b"GGUF")
    assert response.status_code == 400 and response.json() == {"error": "invalid digest format"}
    assert _http(server, "HEAD", f"/api/blobs/{digest}").status_code == 400
    assert _temp_files(blobs) == []


def test_a_blob_larger_than_the_free_disk_space_is_a_413(server, blobs):
    """Refused by its Content-Length before a byte is written (the body is never sent here)."""
    host, port = server.base_url.split("//")[1].split(":")
    head = (f"POST /api/blobs/sha256:{'4' * 64} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {10 ** 18}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head)
        status, headers, body = read_response(s, timeout=30)
        s.shutdown(socket.SHUT_WR)  # no body follows: the server stops waiting for one
        assert s.recv(65536) == b""  # and closes the connection
    assert status == 413 and headers["connection"].lower() == "close"
    assert "bytes are free" in json.loads(body)["error"]
    assert _temp_files(blobs) == []


# -- create from files -------------------------------------------------------------------------------------
def test_create_from_a_blob_then_chat(server, blobs, stories_path):
    data = stories_path.read_bytes()
    digest = _digest(data)
    assert _http(server, "POST", f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    response = _create(server, {"model": "story-blob:latest", "files": {"stories.gguf": digest},
                                "parameters": {"num_predict": 4, "temperature": 0}})
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    assert lines == [{"status": "parsing GGUF"}, {"status": f"using existing layer {digest}"},
                     {"status": "writing manifest"}, {"status": "success"}]
    try:
        assert "story-blob" in _tags(server)
        weights = Path(server.config.data_folder) / "models" / "story-blob" / "stories.gguf"
        assert os.path.samefile(weights, blobs / f"sha256-{digest[7:]}")  # hard-linked, not copied
        chat = _http(server, "POST", "/api/chat", content=json.dumps({
            "model": "story-blob", "stream": False, "messages": [{"role": "user", "content": STORY}]}).encode())
        assert chat.status_code == 200, chat.text
        answer = chat.json()
        assert answer["message"]["role"] == "assistant" and answer["message"]["content"]
        assert answer["eval_count"] == 4 and answer["done_reason"] == "length"  # the stored num_predict
        # made again over itself: replaced, as Ollama writes the manifest again (the same weights, kept in place)
        again = _create(server, {"model": "story-blob", "files": {"stories.gguf": digest}, "stream": False})
        assert again.status_code == 200 and again.json() == {"status": "success"}
        assert os.path.samefile(weights, blobs / f"sha256-{digest[7:]}")
    finally:
        assert _http(server, "DELETE", "/api/delete", content=b'{"model": "story-blob"}').status_code == 200
    assert (blobs / f"sha256-{digest[7:]}").read_bytes() == data  # the blob outlives the model


def test_create_refusals(server, blobs):
    unknown = "sha256:" + "1" * 64
    response = _create(server, {"model": "nope", "files": {"model.gguf": unknown}})
    assert response.status_code == 400 and list(response.json()) == ["error"]
    assert f'blob "{unknown}" not found' in response.json()["error"]

    text = b"this is not a GGUF file\n" * 10
    assert _http(server, "POST", f"/api/blobs/{_digest(text)}", content=text).status_code == 201
    response = _create(server, {"model": "nope", "files": {"model.gguf": _digest(text)}})
    assert response.status_code == 400 and "not in GGUF format" in response.json()["error"]

    for files, message in [({"model.gguf": "sha256:xyz"}, "invalid digest format"),
                           ({"model.gguf": ""}, "invalid digest format"),
                           ({}, "no files provided"),
                           ({"a.gguf": unknown, "b.gguf": unknown}, "one GGUF file"),
                           ({"model.gguf": unknown, "mmproj-a.gguf": unknown, "mmproj-b.gguf": unknown}, "one GGUF file")]:
        response = _create(server, {"model": "nope", "files": files})
        assert response.status_code == 400 and message in response.json()["error"], (files, response.text)
    for extra, message in [({"from": "stories260K"}, "from and files"),
                           ({"adapters": {"lora.gguf": unknown}}, "adapters: lora.gguf: blob"),
                           ({"quantize": "q4_K_M"}, "quantize: not supported"),
                           ({"template": "{{ .Prompt }}"}, "template: not supported"),
                           ({"modelfile": "FROM x"}, "modelfile: not supported"),
                           ({"system": ["Be brief."]}, "system")]:
        response = _create(server, {"model": "nope", "files": {"model.gguf": unknown}, **extra})
        assert response.status_code == 400 and message in response.json()["error"], (extra, response.text)
    assert "nope" not in _tags(server)
    assert not (Path(server.config.data_folder) / "models" / "nope").exists()


def test_official_client(client, blobs, tmp_path, stories_path):
    """``ollama.Client.create_blob`` then ``create(files=..., parameters=...)``, as ``ollama create`` does."""
    digest = client.create_blob(stories_path)
    assert digest == _file_digest(stories_path)
    assert client.create_blob(stories_path) == digest  # again: already there
    done = client.create(model="story-client", files={"stories260K.gguf": digest},
                         parameters={"num_predict": 3, "temperature": 0})
    assert done.status == "success"
    try:
        reply = client.generate(model="story-client", prompt=STORY, raw=True)
        assert reply.eval_count == 3 and reply.response
        assert reply.response == client.generate(model="stories260K", prompt=STORY, raw=True,
                                                 options={"num_predict": 3, "temperature": 0}).response
        assert "story-client" in {m.model.removesuffix(":latest") for m in client.list().models}
        streamed = [e.status for e in client.create(model="story-client-2", files={"s.gguf": digest}, stream=True)]
        assert streamed[0] == "parsing GGUF" and streamed[-1] == "success"
        client.delete("story-client-2")
        with pytest.raises(ollama.ResponseError) as err:
            client.create(model="story-client-3", files={"s.gguf": "sha256:" + "2" * 64})
        assert err.value.status_code == 400 and "not found" in err.value.error
    finally:
        client.delete("story-client")
    assert _temp_files(blobs) == []


def test_create_with_a_projector(client, server, vision_pair):
    """A file whose name contains ``mmproj`` next to the model's GGUF becomes its projector."""
    model_path, mmproj_path = vision_pair
    files = {model_path.name: client.create_blob(model_path), mmproj_path.name: client.create_blob(mmproj_path)}
    assert client.create(model="vision-blob", files=files).status == "success"
    try:
        assert "vision" in client.show("vision-blob").capabilities
        models = httpx.get(server.base_url + "/v1/models/vision-blob", timeout=30).json()
        assert models["settings"]["mmproj"].endswith("sha256-" + files[mmproj_path.name][7:])
        reply = client.chat(model="vision-blob", messages=[{"role": "user", "content": "Hi"}],
                            options={"num_predict": 2})  # loads with its projector
        assert reply.done
    finally:
        client.delete("vision-blob")


def _age(path: Path, seconds: float = 3600) -> None:
    """Make a blob look pushed ``seconds`` ago (past the prune grace, for an /api/create on its way)."""
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))


def test_blobs_no_model_uses_are_pruned(client, server, blobs, stories_path, vision_pair):
    """As Ollama prunes unused layers: after /api/delete (and at start), a blob no model uses goes — one
    whose model was deleted, one whose create failed — while a blob a model is made from, a projector a model
    uses in place and a blob pushed moments ago (its /api/create may be on its way) stay."""
    data = stories_path.read_bytes()
    digest = _digest(data)
    weights = blobs / f"sha256-{digest[7:]}"
    assert _http(server, "POST", f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    assert _create(server, {"model": "prune-me", "files": {"s.gguf": digest}, "stream": False}).status_code == 200
    junk = b"not a model" * 10
    assert _http(server, "POST", f"/api/blobs/{_digest(junk)}", content=junk).status_code == 201
    assert _create(server, {"model": "junk", "files": {"j.gguf": _digest(junk)}}).status_code == 400
    fresh = b"pushed just now"
    assert _http(server, "POST", f"/api/blobs/{_digest(fresh)}", content=fresh).status_code == 201
    model_path, mmproj_path = vision_pair
    files = {model_path.name: client.create_blob(model_path), mmproj_path.name: client.create_blob(mmproj_path)}
    assert client.create(model="vision-kept", files=files).status == "success"
    try:
        for path in blobs.iterdir():
            if path.name != f"sha256-{_digest(fresh)[7:]}" and not path.name.startswith("."):
                _age(path)
        assert _http(server, "DELETE", "/api/delete", content=b'{"model": "prune-me"}').status_code == 200
        present = {p.name for p in blobs.iterdir()}
        assert weights.name not in present  # its model is gone
        assert f"sha256-{_digest(junk)[7:]}" not in present  # its create failed
        assert f"sha256-{_digest(fresh)[7:]}" in present  # pushed moments ago
        for name, blob_digest in files.items():  # hard-linked weights, and the projector used in place
            assert f"sha256-{blob_digest[7:]}" in present, name
        assert "vision" in client.show("vision-kept").capabilities
    finally:
        client.delete("vision-kept")


def test_a_blob_a_model_uses_as_its_lora_adapter_is_kept(client, server, blobs, stories_path, tmp_path):
    """/api/create's adapters reference their blobs in place (settings.lora): the prune after another model's
    delete removed such a blob once its grace had passed, and the model's next load failed on a missing file."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    from jan.testing.gguf_models import write_lora_adapter

    digest = client.create_blob(write_lora_adapter(tmp_path / "a.gguf", stories_path, seed=1))
    assert client.create(model="adapted", from_="stories260K", adapters={"a.gguf": digest}).status == "success"
    try:
        adapter = blobs / f"sha256-{digest[7:]}"
        _age(adapter)
        assert client.create(model="gone-soon", from_="stories260K").status == "success"
        assert _http(server, "DELETE", "/api/delete", content=b'{"model": "gone-soon"}').status_code == 200
        assert adapter.exists()
        # loaded again after an unload, it still has its adapter
        client.generate(model="adapted", prompt=STORY, keep_alive=0, options={"num_predict": 1})
        assert client.generate(model="adapted", prompt=STORY, keep_alive=0, options={"num_predict": 2}).done
        listed = _http(server, "GET", "/lora-adapters?model=adapted").json()
        assert [a["path"] for a in listed] == [str(adapter)]
    finally:
        client.delete("adapted")


def test_unused_blobs_are_pruned_at_start(tmp_path, stories_path):
    blobs = tmp_path / "data" / "blobs"
    blobs.mkdir(parents=True)
    old, new = b"an old upload", b"a new upload"
    for data in (old, new):
        (blobs / f"sha256-{_digest(data)[7:]}").write_bytes(data)
    _age(blobs / f"sha256-{_digest(old)[7:]}")
    srv = start_server(tmp_path, [stories_path])
    try:
        assert _http(srv, "HEAD", f"/api/blobs/{_digest(old)}").status_code == 404
        assert _http(srv, "HEAD", f"/api/blobs/{_digest(new)}").status_code == 200
    finally:
        srv.stop()


def test_a_model_deleted_while_blobs_are_pruned_stops_no_prune(tmp_path):
    """Blobs are pruned after every /api/delete, /api/copy and /api/create that replaced a model: at the same time
    another client's delete may remove a model the listing named before its files are looked up. That model is
    passed over, the prune goes on (its not-found failed the whole prune, logged with a traceback, every unused
    blob kept)."""
    import asyncio
    from types import SimpleNamespace

    from aiohttp import web

    from jan.server.keys import CONFIG, SERVICES
    from jan.server.route_state import prune_blobs
    from jan.store import StoredModelNotFoundError

    blobs = tmp_path / "blobs"
    blobs.mkdir()
    unused, kept = (blobs / f"sha256-{_digest(data)[7:]}" for data in (b"unused", b"kept"))
    for path in (unused, kept):
        path.write_bytes(path.name.encode())
        _age(path)

    class Models:  # the models extension: "gone" listed, then deleted before its files are looked up
        async def list_models(self):
            return [{"id": "gone"}, {"id": "kept"}]

        async def model_file(self, model_id):
            if model_id == "gone":
                raise StoredModelNotFoundError("model", model_id)
            return str(kept)

        async def mmproj_file(self, model_id):
            return None

        draft_model_file = mmproj_file

        async def lora_files(self, model_id):
            return []

    app = web.Application()
    app[CONFIG] = SimpleNamespace(data_folder=tmp_path)
    app[SERVICES] = SimpleNamespace(models=SimpleNamespace(model_extension=Models))
    assert asyncio.run(prune_blobs(app)) == [unused]
    assert kept.exists() and not unused.exists()
