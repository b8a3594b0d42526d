"""Ids a client was given survive a crash from that moment: what the server answers (a background response's id, a
streamed response's ``response.created``) names something already on disk, so a ``kill -9`` right after the answer
leaves a response that ``GET`` finds, ended by the restart, never a 404.

The window is held open deterministically: the store's ``begin`` (where a stored response is first written) waits on
a gate, bounded, that the test opens only after looking at the disk."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from api_helpers import ServerProcess, get_json as _get, running

from jan.server.dialects.responses_store import ResponsesStore

GATE_S = 3  # how long a held begin waits for the test (bounded: with the fix the POST itself waits for it)


def _post(base: str, path: str, body: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read()


@pytest.fixture
def held_begin(monkeypatch):
    """Every stored response's first write waits (at most GATE_S) for ``gate``; ``entered`` is set as it begins."""
    gate, entered = threading.Event(), threading.Event()
    real = ResponsesStore.begin

    async def begin(self, *args, **kwargs):
        import asyncio
        entered.set()
        await asyncio.to_thread(gate.wait, GATE_S)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(ResponsesStore, "begin", begin)
    yield gate, entered
    gate.set()


def test_a_background_response_is_on_disk_when_its_id_is_answered(tmp_path, stories_path, held_begin):
    gate, entered = held_begin
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        status, body = _post(srv.base_url, "/v1/responses", {"model": "stories260K", "input": "Once", "background": True,
                                                             "store": True, "max_output_tokens": 4})
        assert status == 200 and entered.is_set()
        rid = json.loads(body)["id"]
        on_disk = (data / "responses" / f"{rid}.json").exists()
        gate.set()
        assert on_disk, "the POST answered an id that a crash now would lose"


def test_a_streamed_response_is_on_disk_when_its_created_event_names_it(tmp_path, stories_path, held_begin):
    gate, entered = held_begin
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        req = urllib.request.Request(srv.base_url + "/v1/responses", method="POST", headers={"content-type": "application/json"},
                                     data=json.dumps({"model": "stories260K", "input": "Once", "stream": True,
                                                      "background": True, "max_output_tokens": 4}).encode())
        with urllib.request.urlopen(req, timeout=120) as resp:
            for line in resp:
                if line.startswith(b"data: ") and b'"response.created"' in line:
                    rid = json.loads(line[6:])["response"]["id"]
                    on_disk = (data / "responses" / f"{rid}.json").exists()
                    gate.set()
                    break
            resp.read()
        assert on_disk, "response.created named an id that a crash now would lose"


def test_kill_9_right_after_a_background_response_is_answered_leaves_it_retrievable(tmp_path, stories_path):
    data = tmp_path / "data"
    data.mkdir()
    with ServerProcess(data, stories_path) as proc:
        status, body = _post(proc.base_url, "/v1/responses", {"model": "stories260K", "input": "Once upon a time",
                                                              "background": True, "max_output_tokens": 400})
        proc.kill()  # SIGKILL the moment the id is known
    assert status == 200
    rid = json.loads(body)["id"]
    with running(data, stories_path) as srv:
        status, got = _get(srv.base_url, f"/v1/responses/{rid}")
        assert status == 200, got
        assert got["status"] in ("completed", "incomplete", "failed")  # ended: nothing left queued or in_progress
        assert _get(srv.base_url, f"/v1/responses/{rid}/input_items")[0] == 200
        # and so on disk, as the API answers it (before: the file stayed queued; only reads said failed)
        saved = json.loads((data / "responses" / f"{rid}.json").read_text())["response"]
        assert (saved["status"], saved["error"]) == (got["status"], got["error"]), saved


# -- temporary files a kill leaves, wherever jan writes ------------------------------------------------------------
def test_every_folder_jan_writes_in_has_its_dead_writers_temporary_files_swept(tmp_path, stories_path):
    """A kill -9 mid atomic write leaves ``.<name>.p<pid>.<x>.tmp`` beside the file it was replacing. Every folder
    jan wrote in by the end of a session (threads, their messages' images and their run records, assistants,
    models, settings, uploads, the Responses index) gets one from a dead writer and one from a live one: opening
    the data folder removes the first kind everywhere and keeps the second. (Run records' and thread images'
    folders, four deep, were never swept.)"""
    import base64
    import os
    from pathlib import Path

    from api_helpers import post_form
    from run_helpers import wait_for_run_sync

    from jan.store import DataFolder

    def png() -> bytes:
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (4, 4), (20, 160, 90)).save(out, "PNG")
        return out.getvalue()

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url

        def ok(method, path, body=None):
            req = urllib.request.Request(base + path, method=method, headers={"content-type": "application/json"},
                                         data=None if body is None else json.dumps(body).encode())
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read())

        url = "data:image/png;base64," + base64.b64encode(png()).decode()
        thread = ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Once"}, {"type": "image_url", "image_url": {"url": url}}]}]})
        assert thread["id"]  # (its image is written under threads/<id>/files)
        ok("POST", "/v1/assistants", {"model": "stories260K", "name": "a"})
        # a run on a thread of text: stories260K takes no images, so a run on the thread above is refused (400)
        # before it starts, and writes no run record
        text_thread = ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]})
        run = ok("POST", f"/v1/threads/{text_thread['id']}/runs", {"assistant_id": "jan", "max_completion_tokens": 4,
                                                               "additional_messages": [{"role": "user", "content": "on"}]})
        wait_for_run_sync(lambda path: ok("GET", path), run)
        post_form(base, {"purpose": "assistants"})
        ok("POST", "/v1/responses", {"model": "stories260K", "input": "Once", "max_output_tokens": 4})
        ok("PATCH", "/v1/extensions/llamacpp/settings", {"n_parallel": 2})

    folders = {Path(dirpath) for dirpath, dirnames, filenames in os.walk(data)
               if filenames and not any(part.startswith(".") for part in Path(dirpath).relative_to(data).parts)}
    expected = {"threads/*/runs", "threads/*/files", "files/*", "responses", "models/*", "settings/*", "assistants/*"}
    import fnmatch
    written = {str(f.relative_to(data)) for f in folders}
    assert all(fnmatch.filter(written, pattern) for pattern in expected), written  # (the session wrote in each)
    dead, live = [], []
    for folder in folders:
        dead.append(folder / ".x.json.p999999999.abc.tmp")  # beyond any pid_max: a writer that is gone
        live.append(folder / f".x.json.p{os.getpid()}.abc.tmp")
    for path in dead + live:
        path.write_bytes(b"half")
    DataFolder(data)
    assert [str(p.relative_to(data)) for p in dead if p.exists()] == []
    assert all(p.exists() for p in live)
