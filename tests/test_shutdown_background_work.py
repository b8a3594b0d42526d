"""An orderly stop of an in-process app (``create_app``, cleaned up as ``jan serve`` cleans up at Ctrl-C) leaves no
work of its own running: every task it started for work that outlives a request (a run's leg, a background
response, a model pull) is stopped and awaited before the app's cleanup returns, and what that work saved says how
it ended — never a record left ``in_progress`` with nothing running it, nor "Task was destroyed but it is pending!"
when the loop closes.

(Found at the end of a full test run: a run's leg was saving its end — its status already ``completed`` in memory,
its record not yet written — when its server stopped; the stop waited for the *active* runs only, so the leg was
left pending on a loop that then closed.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from jan.server.app import create_app
from jan.server.config import ServerConfig
from jan.server.keys import SERVICES
from jan.services.run_records import load_record

pytestmark = pytest.mark.timeout(600)

#: Generous bound on any wait here: a busy 2-core machine.
BOUND = 300


async def _app_client(tmp_path, *models) -> TestClient:
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(m) for m in models], n_ctx=1024, n_parallel=2,
                          n_threads=1, enable_extensions=False)
    app = await asyncio.wait_for(create_app(config), BOUND)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _call(client: TestClient, method: str, path: str, body: Any = None) -> Any:
    resp = await client.request(method, path, json=body)
    data = await resp.json()
    assert resp.status == 200, data
    return data


def _left_running() -> list[asyncio.Task]:
    """The loop's tasks other than the test's own: what the app's cleanup left behind."""
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def _story_run(client: TestClient, **extra: Any) -> dict[str, Any]:
    thread = await _call(client, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
    return await _call(client, "POST", f"/v1/threads/{thread['id']}/runs",
                       {"model": "stories260K", "max_completion_tokens": 8, **extra})


async def test_a_leg_saving_its_end_when_the_app_stops_is_awaited_and_its_record_says_how_it_ended(
        tmp_path, stories_path):
    client = await _app_client(tmp_path, stories_path)
    runs = client.app[SERVICES].runs
    data = runs.manager.data_folder
    ending = asyncio.Event()  # the leg's status reads ended; its record is being saved
    stopping = asyncio.Event()  # the app's stop has begun
    persist, interrupt_all = runs.persist, runs.interrupt_all

    async def slow_end_persist(run, **kw):
        if run.status in ("completed", "incomplete"):
            ending.set()
            await stopping.wait()  # still saving its end when the stop begins
        await persist(run, **kw)

    async def marked_interrupt_all(**kw):
        stopping.set()
        return await interrupt_all(**kw)

    runs.persist, runs.interrupt_all = slow_end_persist, marked_interrupt_all
    started = await _story_run(client)
    await asyncio.wait_for(ending.wait(), BOUND)
    assert not runs.get(started["thread_id"], started["id"]).active  # (ended in memory: no active run to stop)
    seen_at_stop: list[Any] = []
    stop = runs.manager.stop

    async def watched_stop():  # the extensions stop: no leg may still be saving
        seen_at_stop.append(load_record(data, started["thread_id"], started["id"])["status"])
        await stop()

    runs.manager.stop = watched_stop
    await asyncio.wait_for(client.close(), BOUND)
    assert seen_at_stop in (["completed"], ["incomplete"]), seen_at_stop  # saved before the extensions stop
    assert load_record(data, started["thread_id"], started["id"])["status"] in ("completed", "incomplete")
    assert _left_running() == []


async def test_a_generating_run_when_the_app_stops_is_saved_interrupted_and_its_leg_awaited(tmp_path, stories_path):
    client = await _app_client(tmp_path, stories_path)
    runs = client.app[SERVICES].runs
    data = runs.manager.data_folder
    started = await _story_run(client, max_completion_tokens=100000, ignore_eos=True)
    run = runs.get(started["thread_id"], started["id"])
    await asyncio.wait_for(_until(lambda: run.status == "in_progress" and not run.unannounced), BOUND)
    await asyncio.wait_for(client.close(), BOUND)
    record = load_record(data, started["thread_id"], started["id"])
    assert record["status"] == "interrupted", record  # as the crash recovery leaves it: resumable
    assert run.finished.is_set() and run.task.done()
    assert _left_running() == []


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.02)


# -- Responses API: background responses -----------------------------------------------------------------------------
@pytest.fixture
def held(monkeypatch):
    """Every generation waits for its model (the engine's ``acquire``) until the test ends; ``waiting`` is set as one
    begins to wait (a background response is ``queued`` then)."""
    from jan.extensions.llamacpp.extension import LlamaCppExtension

    waiting, never = asyncio.Event(), asyncio.Event()

    async def acquire(self, model):
        waiting.set()
        await never.wait()

    monkeypatch.setattr(LlamaCppExtension, "acquire", acquire)
    return waiting


async def test_a_background_response_when_the_app_stops_is_saved_cancelled_and_its_task_awaited(
        tmp_path, stories_path, held):
    from jan.server.routes.responses import RUNS

    client = await _app_client(tmp_path, stories_path)
    created = await _call(client, "POST", "/v1/responses", {"model": "stories260K", "input": "Once upon a time",
                                                           "max_output_tokens": 8, "background": True})
    await asyncio.wait_for(held.wait(), BOUND)
    response = client.app[RUNS][created["id"]]
    await asyncio.wait_for(client.close(), BOUND)
    assert response.done and response.status == "cancelled"
    index = json.loads((tmp_path / "data" / "responses" / f"{created['id']}.json").read_text())
    assert index["response"]["status"] == "cancelled", index["response"]  # saved as it ended, not left queued
    assert _left_running() == []


async def test_no_response_starts_once_the_app_is_stopping(tmp_path, stories_path):
    from jan.server.keys import SHUTTING_DOWN
    from jan.server.routes.responses import RUNS

    client = await _app_client(tmp_path, stories_path)
    try:
        client.app[SHUTTING_DOWN].set()  # (what the stop sets first, before it cancels the running responses)
        for body in ({"background": True}, {"stream": True}, {}):
            resp = await client.post("/v1/responses", json={"model": "stories260K", "input": "Once upon a time",
                                                             "max_output_tokens": 8, **body})
            answer = await resp.json()
            assert resp.status == 503 and answer["error"]["code"] == "server_shutdown", (body, answer)
            assert client.app[RUNS] == {}  # nothing left generating behind the stop's back
    finally:
        await asyncio.wait_for(client.close(), BOUND)
    assert _left_running() == []


# -- model pulls --------------------------------------------------------------------------------------------------------
async def test_a_pull_when_the_app_stops_ends_before_the_app_does_and_registers_nothing(tmp_path, stories_path):
    from range_server import FileServer

    from jan.core import ModelExtension
    from jan.server.keys import MANAGER

    client = await _app_client(tmp_path)
    # (the source answers with the file's size, then holds its body: the pull is downloading when the app stops)
    async with FileServer(stories_path.read_bytes(), hold=True) as source:
        started = await client.post("/v1/models/pull", json={"url": source.url, "id": "held", "stream": False})
        assert started.status == 202, await started.text()
        await asyncio.wait_for(source.asked.wait(), BOUND)
        [pull] = await client.app[MANAGER].get(ModelExtension).list_downloads()
        await asyncio.wait_for(client.close(), BOUND)
        assert pull.done, pull.status()  # ended with the app, not after it
        assert pull.status()["state"] in ("cancelled", "failed"), pull.status()
    assert not (tmp_path / "data" / "models" / "held" / "model.json").exists()
    assert _left_running() == []


async def test_a_pull_hashing_a_left_file_when_the_app_stops_stops_hashing_and_ends(tmp_path, stories_path,
                                                                                      monkeypatch):
    import hashlib
    import threading

    from range_server import FileServer

    from jan.core import ModelExtension
    from jan.extensions.models import downloads
    from jan.server.keys import MANAGER

    blob = stories_path.read_bytes()
    folder = tmp_path / "data" / "models" / "left"
    folder.mkdir(parents=True)
    (folder / "stories260K.gguf").write_bytes(blob)  # left by a pull that stopped before its model.json
    hashing = threading.Event()

    def slow_hash(path, stop):  # a big file: hashed until the pull is told to stop
        hashing.set()
        stop.wait(BOUND)
        return None if stop.is_set() else hashlib.sha256(blob).hexdigest()

    monkeypatch.setattr(downloads, "_sha256_of", slow_hash)
    client = await _app_client(tmp_path)
    async with FileServer(blob) as source:
        started = await client.post("/v1/models/pull", json={"url": source.url, "id": "left", "stream": False,
                                                              "sha256": hashlib.sha256(blob).hexdigest()})
        assert started.status == 202, await started.text()
        assert await asyncio.to_thread(hashing.wait, BOUND)
        [pull] = await client.app[MANAGER].get(ModelExtension).list_downloads()
        await asyncio.wait_for(client.close(), BOUND)
        assert pull.done, pull.status()
        assert pull.status()["state"] == "cancelled", pull.status()
    assert not (folder / "model.json").exists() and (folder / "stories260K.gguf").read_bytes() == blob  # kept
    assert _left_running() == []
