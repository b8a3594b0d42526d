"""A pull over a whole file that no model.json names (a pull that stopped between its download's end and writing
model.json) uses that file when it matches the source — its sha256 when the pull names one (then nothing is
fetched), else the size the source answers with — and downloads one that does not match again; a partial file
resumes. Files are served on 127.0.0.1: nothing reaches the network."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from api_helpers import Client, parse_sse
from range_server import FileServer

MODEL = "left"


def Source(blob: bytes, **kw) -> FileServer:
    """The pull's source: the file with an ETag of its own (``hold``/``hold_headers``: see FileServer)."""
    return FileServer(blob, etag='"v1"', **kw)


async def pull(api: Client, base: str, body: dict) -> dict:
    async with api.session.post(f"{base}/v1/models/pull", json=body) as resp:
        assert resp.status == 200, await resp.text()
        events = parse_sse(await resp.text())
    assert events[-1] == (None, "[DONE]")
    return events[-2][1]


@pytest.fixture
def blob(stories_path) -> bytes:
    return stories_path.read_bytes()


@pytest.fixture
def folder(tmp_path):
    """The model's folder, made by a pull that never wrote its model.json."""
    path = tmp_path / "data" / "models" / MODEL
    path.mkdir(parents=True)
    return path


def _left(folder, data: bytes):
    weights = folder / "stories260K.gguf"
    weights.write_bytes(data)
    return weights


async def _assert_registered(api: Client, folder, blob: bytes) -> None:
    weights = folder / "stories260K.gguf"
    assert weights.read_bytes() == blob
    doc = json.loads((folder / "model.json").read_text())
    assert doc["id"] == MODEL and doc["settings"]["llama_model_path"] == "stories260K.gguf"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "stories260K.gguf"]  # nothing staged is left
    assert MODEL in [m["id"] for m in (await api.ok("GET", "/v1/models"))["data"]]


async def test_a_whole_file_of_the_sources_size_is_used_without_downloading_it_again(server, folder, blob):
    weights = _left(folder, blob)
    inode = weights.stat().st_ino
    async with Source(blob, hold=True) as source, Client(server.base_url) as api:
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL})
        assert final["state"] == "completed", final
        assert final["downloaded_bytes"] == final["total_bytes"] == len(blob)
        # one request, for the size: its body (held back) was never needed
        assert source.requests == [None] and source.sent == 0
        await _assert_registered(api, folder, blob)
        assert weights.stat().st_ino == inode  # the very file, not a copy
        assert (await api.ok("POST", f"/v1/models/{MODEL}/start"))["state"] == "ready"


async def test_a_whole_file_with_the_pulls_sha256_is_used_without_a_request(server, folder, blob):
    _left(folder, blob)
    async with Source(blob, hold=True) as source, Client(server.base_url) as api:
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL,
                                                  "sha256": hashlib.sha256(blob).hexdigest().upper()})
        assert final["state"] == "completed", final
        assert source.requests == []
        await _assert_registered(api, folder, blob)


async def test_a_file_with_another_sha256_is_downloaded_again(server, folder, blob, tiny_random_path):
    _left(folder, tiny_random_path.read_bytes())  # a whole GGUF, but not the one asked for
    async with Source(blob) as source, Client(server.base_url) as api:
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL,
                                                  "sha256": hashlib.sha256(blob).hexdigest()})
        assert final["state"] == "completed", final
        assert source.requests == [None] and source.sent == len(blob)
        await _assert_registered(api, folder, blob)


@pytest.mark.parametrize("left", ["shorter", "not_gguf"])
async def test_a_file_that_does_not_match_the_sources_size_is_downloaded_again(server, folder, blob, left):
    # shorter: another version of the file; not_gguf: the right size, but no GGUF (never used as the model)
    _left(folder, blob[: len(blob) // 2] if left == "shorter" else b"\0" * len(blob))
    async with Source(blob) as source, Client(server.base_url) as api:
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL})
        assert final["state"] == "completed", final
        assert source.requests == [None] and source.sent == len(blob)  # from the start: nothing spliced
        await _assert_registered(api, folder, blob)


async def test_a_partial_download_resumes(server, folder, blob):
    (folder / "stories260K.gguf.part").write_bytes(blob[:1000])
    async with Source(blob) as source, Client(server.base_url) as api:
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL,
                                                  "sha256": hashlib.sha256(blob).hexdigest()})
        assert final["state"] == "completed", final
        assert source.requests == ["bytes=1000-"] and source.sent == len(blob) - 1000
        await _assert_registered(api, folder, blob)


async def test_a_failed_pull_over_a_left_file_keeps_it(server, folder, blob):
    weights = _left(folder, blob)
    async with Source(blob) as source, Client(server.base_url) as api:
        # the hash named is neither the left file's nor the download's: downloaded again, and that fails
        final = await pull(api, server.base_url, {"url": source.url, "id": MODEL, "sha256": "0" * 64})
        assert final["state"] == "failed" and "sha256" in final["error"], final
    assert weights.read_bytes() == blob and not (folder / "model.json").exists()
    assert [p.name for p in folder.iterdir()] == ["stories260K.gguf"]


async def test_a_pull_cancelled_while_it_asks_the_source_keeps_the_left_file_and_writes_nothing(server, folder, blob):
    weights = _left(folder, blob)
    async with Source(blob, hold_headers=True) as source, Client(server.base_url) as api:
        accepted = await api.ok("POST", "/v1/models/pull", {"url": source.url, "id": MODEL, "stream": False}, 202)
        assert accepted["state"] in ("queued", "downloading")
        await asyncio.wait_for(source.asked.wait(), 60)  # the pull waits for the source's answer now
        assert (await api.ok("DELETE", f"/v1/downloads/{MODEL}"))["cancelled"] is True
        listed = [d for d in (await api.ok("GET", "/v1/downloads"))["data"] if d["id"] == MODEL]
        assert listed[0]["state"] == "cancelled"
        assert (await api.get(f"/v1/models/{MODEL}"))[0] == 404
    assert weights.read_bytes() == blob and not (folder / "model.json").exists()
    assert [p.name for p in folder.iterdir()] == ["stories260K.gguf"]
