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
from api_helpers import ServerProcess, running

from jan.server.dialects.responses_store import ResponsesStore

GATE_S = 3  # how long a held begin waits for the test (bounded: with the fix the POST itself waits for it)


def _post(base: str, path: str, body: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read()


def _get(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


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
