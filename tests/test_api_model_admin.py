"""Model administration over HTTP: import a local GGUF, add a model.json, patch, delete, pull (with a
dropped connection that the downloader resumes), list and cancel downloads."""

from __future__ import annotations

import asyncio
import hashlib
import json

from api_helpers import Client, parse_sse
from range_server import FileServer

from jan.server.keys import MANAGER


async def chat(api: Client, model: str) -> str:
    body = await api.ok("POST", "/v1/chat/completions", {
        "model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "Once upon a time"}]})
    return body["choices"][0]["message"]["content"]


def loaded(srv) -> list[str]:
    engine = srv.app[MANAGER].get_inference("llama.cpp")
    return srv.call(engine.loaded_models())


async def test_import_patch_start_delete(server, tmp_path, gguf_copy):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        model = await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "copied", "mode": "copy",
                                                    "name": "Copied", "parameters": {"temperature": 0.2}}, 201)
        assert model["id"] == "copied" and model["name"] == "Copied" and model["object"] == "model"
        assert model["parameters"] == {"temperature": 0.2} and model["state"] == "unloaded"
        folder = data / "models" / "copied"
        weights = folder / model["settings"]["llama_model_path"]
        assert weights.is_file() and not weights.is_symlink()
        assert weights.read_bytes() == gguf_copy.read_bytes()
        assert json.loads((folder / "model.json").read_text())["name"] == "Copied"
        assert "copied" in [m["id"] for m in (await api.ok("GET", "/v1/models"))["data"]]

        patched = await api.ok("PATCH", "/v1/models/copied", {"parameters": {"top_k": 5},
                                                               "settings": {"ctx_len": 256}, "description": "d"})
        assert patched["parameters"] == {"temperature": 0.2, "top_k": 5} and patched["description"] == "d"
        assert patched["settings"]["ctx_len"] == 256
        removed = await api.ok("PATCH", "/v1/models/copied", {"parameters": {"temperature": None}})
        assert removed["parameters"] == {"top_k": 5}
        assert json.loads((folder / "model.json").read_text())["parameters"] == {"top_k": 5}

        started = await api.ok("POST", "/v1/models/copied/start")
        assert started["state"] == "ready" and "copied" in loaded(server)
        assert isinstance(await chat(api, "copied"), str)

        deleted = await api.ok("DELETE", "/v1/models/copied")
        assert deleted == {"id": "copied", "object": "model", "deleted": True}
        assert "copied" not in loaded(server) and not folder.exists()
        assert gguf_copy.is_file()
        for method, path in (("GET", "/v1/models/copied"), ("DELETE", "/v1/models/copied")):
            status, err = await api.call(method, path)
            assert status == 404 and err["error"]["code"] == "model_not_found", (method, err)
        assert (await api.patch("/v1/models/copied", {"name": "x"}))[0] == 404


async def test_import_symlink_and_errors(server, tmp_path, gguf_copy):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        model = await api.ok("POST", "/v1/models", {"path": str(gguf_copy)}, 201)  # id from the file, symlink
        assert model["id"] == "stories260K"
        link = data / "models" / "stories260K" / model["settings"]["llama_model_path"]
        assert link.is_symlink() and link.resolve() == gguf_copy.resolve()

        text_file = tmp_path / "notes.gguf"
        text_file.write_text("not a model")
        for body, status in [
            ({"path": str(gguf_copy)}, 409),                                   # id taken
            ({"path": "relative/file.gguf"}, 400),
            ({"path": str(tmp_path / "missing.gguf")}, 400),
            ({"path": str(text_file), "id": "notes"}, 400),
            ({"path": str(gguf_copy), "id": "x", "mode": "teleport"}, 400),
            ({"path": str(gguf_copy), "id": "x", "colour": "red"}, 400),
            ({"path": str(gguf_copy), "id": "../escape"}, 400),
            ({"path": str(gguf_copy), "id": "..\\escape", "mode": "copy"}, 400),
            ({"id": "bad/id", "name": "x"}, 400),
            ({"name": "no id"}, 400),
            ([1, 2], 400),
        ]:
            got, err = await api.call("POST", "/v1/models", body)
            assert got == status, (body, got, err)
        assert (await api.patch("/v1/models/stories260K", {"id": "renamed"}))[0] == 400
        assert (await api.patch("/v1/models/stories260K", {"name": None}))[0] == 400
        assert not (tmp_path / "escape").exists() and not (data / "escape").exists()
        assert sorted(p.name for p in (data / "models").iterdir() if not p.name.startswith(".")) == ["stories260K"]

        await api.ok("DELETE", "/v1/models/stories260K")
        assert gguf_copy.is_file()  # deleting a symlinked model never touches the user's file


async def test_add_model_json(server, gguf_copy):
    async with Client(server.base_url) as api:
        model = await api.ok("POST", "/v1/models", {
            "id": "from-json", "name": "From JSON", "version": "1.0", "format": "gguf",
            "sources": [{"filename": "stories260K.gguf", "url": str(gguf_copy)}],
            "settings": {"ctx_len": 256}, "parameters": {"max_tokens": 4}, "engine": "llama.cpp"}, 201)
        assert model["id"] == "from-json" and model["parameters"] == {"max_tokens": 4}
        listed = {m["id"]: m for m in (await api.ok("GET", "/v1/models"))["data"]}
        assert listed["from-json"]["name"] == "From JSON"
        assert (await api.ok("POST", "/v1/models/from-json/start"))["state"] == "ready"
        assert isinstance(await chat(api, "from-json"), str)
        assert (await api.post("/v1/models", {"id": "from-json"}))[0] == 409


async def test_pull_resumes_after_dropped_connection(server, tmp_path, stories_path):
    blob = stories_path.read_bytes()
    async with FileServer(blob, drop_first=True) as files, Client(server.base_url) as api:
        async with api.session.post(f"{server.base_url}/v1/models/pull",
                                    json={"url": files.url, "id": "pulled",
                                          "sha256": hashlib.sha256(blob).hexdigest()}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            events = parse_sse(await resp.text())
        assert events[-1] == (None, "[DONE]")
        statuses = [data for _, data in events[:-1]]
        assert all(s["model_id"] == "pulled" and s["object"] == "model.download" for s in statuses)
        final = statuses[-1]
        assert final["state"] == "completed", final
        assert final["downloaded_bytes"] == len(blob) and final["model"]["id"] == "pulled"
        assert files.requests[0] is None and len(files.requests) >= 2
        assert files.requests[-1] == f"bytes={len(blob) // 2}-" or files.requests[-1].startswith("bytes=")
        assert int(files.requests[-1].split("=")[1].rstrip("-")) > 0  # resumed, not restarted

        weights = tmp_path / "data" / "models" / "pulled" / "stories260K.gguf"
        assert weights.read_bytes() == blob
        assert not (weights.parent / "stories260K.gguf.part").exists()
        listed = {m["id"]: m for m in (await api.ok("GET", "/v1/models"))["data"]}
        assert listed["pulled"]["sources"][0]["url"] == files.url
        assert (await api.ok("POST", "/v1/models/pulled/start"))["state"] == "ready"
        assert isinstance(await chat(api, "pulled"), str)
        downloads = await api.ok("GET", "/v1/downloads")
        assert [d["state"] for d in downloads["data"] if d["id"] == "pulled"] == ["completed"]
        assert (await api.delete("/v1/downloads/pulled"))[0] == 404  # finished: nothing to cancel


async def test_pull_cancel_and_errors(server, tmp_path, stories_path):
    blob = stories_path.read_bytes()
    # the first answer stops after 64 KiB until the server is left: the pull is still running when the test
    # joins and cancels it, however slowly this machine runs (a paced answer could end first)
    async with FileServer(blob, chunk=16 << 10, pause_at=64 << 10) as files, Client(server.base_url) as api:
        accepted = await api.ok("POST", "/v1/models/pull", {"url": files.url, "id": "slow", "stream": False}, 202)
        assert accepted["id"] == "slow" and accepted["state"] in ("queued", "downloading")
        joined = asyncio.Event()

        async def follow():
            async with api.session.post(f"{server.base_url}/v1/models/pull",
                                        json={"url": files.url, "id": "slow"}) as resp:  # joins the running pull
                first = b""
                while not first.endswith(b"\n\n"):  # the running pull's first progress event: joined
                    line = await resp.content.readline()
                    assert line, "the pull's stream ended before its first event"
                    first += line
                joined.set()
                return parse_sse((first + await resp.read()).decode())

        follower = asyncio.create_task(follow())
        # joined before the cancel, or the follower's request could come after it and start a new pull
        await asyncio.wait_for(joined.wait(), 60)
        await asyncio.wait_for(files.paused.wait(), 60)
        deadline = asyncio.get_running_loop().time() + 60
        while not ((running_ := [d for d in (await api.ok("GET", "/v1/downloads"))["data"] if d["id"] == "slow"])
                   and running_[0]["downloaded_bytes"] > 0):
            assert asyncio.get_running_loop().time() < deadline, running_
            await asyncio.sleep(0.05)
        assert running_[0]["state"] == "downloading" and running_[0]["downloaded_bytes"] < len(blob)
        cancelled = await api.ok("DELETE", "/v1/downloads/slow")
        assert cancelled["cancelled"] is True
        events = await asyncio.wait_for(follower, 30)
        assert events[-1] == (None, "[DONE]") and events[-2][1]["state"] == "cancelled"
        listed = [d for d in (await api.ok("GET", "/v1/downloads"))["data"] if d["id"] == "slow"]
        assert listed[0]["state"] == "cancelled"
        folder = tmp_path / "data" / "models" / "slow"
        assert not list(folder.glob("*.part")) and not (folder / "model.json").exists()
        assert "slow" not in [m["id"] for m in (await api.ok("GET", "/v1/models"))["data"]]
        assert (await api.delete("/v1/downloads/slow"))[0] == 404
        assert (await api.delete("/v1/downloads/never-started"))[0] == 404

        for body in ({"url": "ftp://example.com/x.gguf"}, {"url": "hf://only-owner"}, {"url": files.url, "x": 1},
                     {"url": files.url, "id": "../up"}, {"url": files.url, "sha256": "abc"}):
            got, err = await api.post("/v1/models/pull", body)
            assert got == 400, (body, got, err)

        # a wrong checksum ends in "failed", and no model appears
        async with api.session.post(f"{server.base_url}/v1/models/pull",
                                    json={"url": files.url, "id": "wrong", "sha256": "0" * 64}) as resp:
            events = parse_sse(await resp.text())
        assert events[-2][1]["state"] == "failed" and events[-2][1]["error"]
        assert (await api.get("/v1/models/wrong"))[0] == 404


async def test_a_settings_or_parameters_key_one_letter_off_is_refused_naming_the_one_meant(server, gguf_copy):
    """A model.json key jan never reads was kept and ignored: `temprature` left the model at its default
    temperature, `Ctx_len` at its default context, with nothing said. A likely typo of a key jan reads is a 400
    naming that key, where the model.json is written (PATCH, a new model); a key like none jan reads (another app's,
    a note) is kept as before."""
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "typos"}, 201)
        for body, param, meant in (({"parameters": {"temprature": 0.5}}, "parameters.temprature", "temperature"),
                                   ({"settings": {"Ctx_len": 256}}, "settings.Ctx_len", "ctx_len"),
                                   ({"settings": {"n_paralel": 2}}, "settings.n_paralel", "n_parallel")):
            status, err = await api.patch("/v1/models/typos", body)
            assert status == 400 and err["error"]["param"] == param, err
            assert f"did you mean '{param.split('.')[0]}.{meant}'?" in err["error"]["message"], err
        status, err = await api.call("POST", "/v1/models", {"path": str(gguf_copy), "id": "typos-2",
                                                             "parameters": {"top_pp": 0.5}})
        assert status == 400 and err["error"]["param"] == "parameters.top_pp", err
        kept = await api.ok("PATCH", "/v1/models/typos", {"settings": {"notes": "mine"}, "parameters": {"stream": True}})
        assert kept["settings"]["notes"] == "mine" and kept["parameters"] == {"stream": True}
