"""What a long-running server holds per request returns to its baseline when the requests end (found by
``benchmarks/soak.py``): no lock, descriptor or record kept for every thread, response or connection it ever saw."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import types
import urllib.request

import httpx
import pytest
from api_helpers import Client, running, until
from run_helpers import run_to_end

from jan.extensions.conversational.extension import ConversationalStoreExtension
from jan.server.dialects.responses_store import ResponsesStore
from jan.services.types import ChatMessage, TextPart


def _live_locks() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is asyncio.Lock)


async def _stored_responses(tmp_path, count: int) -> tuple[int, int]:
    conversations = ConversationalStoreExtension()
    await conversations.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    store = ResponsesStore(tmp_path / "responses", lambda: conversations)
    before = _live_locks()
    for n in range(count):  # each a new conversation (a thread of its own), as a stored response without a previous
        response = {"id": f"resp_{n:032x}", "model": "any", "status": "in_progress"}
        first = await store.begin(response, [], [ChatMessage("user", (TextPart(f"hello {n}"),))], None)
        async with store.locked(first.thread_id):  # (a conversation's items appended, as the conversations route)
            pass
    return before, _live_locks()


def test_stored_responses_hold_no_lock_per_thread(tmp_path):
    """Every stored response starts a thread, and its appends take that thread's lock: a lock kept per thread ever
    stored to grew the server by one per response, for its life. The locks live while a request holds them."""
    before, after = asyncio.run(_stored_responses(tmp_path, 12))
    assert after - before < 12, f"{after - before} asyncio locks left behind by 12 stored responses"


# -- engine requests (each holds an event file descriptor) end with their generation ------------------------------
def _event_fds() -> int:
    """This process's eventfds: each engine request holds one (cpp/request.cpp) until it is freed."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="eventfds and /proc/self/fd are Linux's")
def test_finished_runs_hold_no_engine_request(tmp_path, stories_path):
    """A remembered run kept its last turn's control, and the control the engine requests it acted on: each ended
    run held its request's native state and file descriptor for as long as the run was remembered (256 runs), so a
    server's descriptors grew with every run. They return to their count once the runs end."""
    async def runs(base_url: str) -> int:
        async with Client(base_url) as api:
            thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon"}]})
            path = f"/v1/threads/{thread['id']}/runs"
            await run_to_end(api, path, {"max_completion_tokens": 4})  # (the first run's one-time setup)
            before = _event_fds()  # (at most the warm-up run's request, not freed yet)
            for _ in range(6):
                run = await run_to_end(api, path, {"max_completion_tokens": 4})
                assert run["status"] in ("completed", "incomplete"), run  # (its 4 tokens spent: incomplete)
            return before

    with running(tmp_path / "data", stories_path) as srv:
        before = asyncio.run(runs(srv.base_url))
        until(lambda: _event_fds() <= before, f"the eventfds back to {before} after 6 runs", wait_s=60)


def test_a_deleted_threads_ended_runs_are_forgotten(tmp_path, stories_path, monkeypatch):
    """The runs service remembers the ids of ended runs it no longer keeps (so as not to read their records again
    when it checks who holds a thread). They were one set for the whole server, every run it ever ended and never
    let go (a thread's deletion left them), each check of a thread taking all of them: they are its thread's now,
    and go with it."""
    import jan.services.runs as runs_module
    from jan.server.keys import SERVICES

    monkeypatch.setattr(runs_module, "KEEP_RUNS", 1)  # (so that ended runs are forgotten at once)

    async def scenario(srv) -> None:
        async with Client(srv.base_url) as api:
            thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon"}]})
            path = f"/v1/threads/{thread['id']}/runs"
            for _ in range(3):
                await run_to_end(api, path, {"max_completion_tokens": 2})
            service = srv.app[SERVICES].runs
            def remembered() -> int:
                settled = service._settled
                return sum(map(len, settled.values())) if isinstance(settled, dict) else len(settled)

            assert remembered() >= 1  # (the test's premise: ended runs forgotten, their ids remembered)
            assert (await api.ok("DELETE", f"/v1/threads/{thread['id']}"))["deleted"] is True
            await asyncio.to_thread(until, lambda: remembered() == 0, "the deleted thread's run ids let go",
                                    wait_s=30)

    with running(tmp_path / "data", stories_path) as srv:
        asyncio.run(scenario(srv))


def _slots_busy(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/slots?model=stories260K", timeout=30) as resp:
        return sum(1 for slot in json.loads(resp.read()) if slot.get("is_processing"))


async def _leave(port: int, path: str, body: dict, *, stream: bool, base_url: str) -> None:
    """POST ``body``, then go away (a reset) while it generates: after the stream's first event, or once a slot is
    busy with the answer not streamed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    await writer.drain()
    if stream:
        seen = b""
        while b"data:" not in seen:
            chunk = await asyncio.wait_for(reader.read(4096), 120)
            assert chunk, "the stream ended before its first event"
            seen += chunk
    else:
        await asyncio.to_thread(until, lambda: _slots_busy(base_url), "the answer generating")
    writer.transport.abort()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="eventfds and /proc/self/fd are Linux's")
def test_choices_of_a_client_gone_free_their_engine_requests_without_a_garbage_collection(tmp_path, stories_path):
    """n choices are read by one task each; when their client went away, each task's cancellation was queued for a
    reader that had already left, the error and the task's frame then holding each other, and the engine request
    with them (its native state and event descriptor) until a full garbage collection, which a quiet server may not
    run for long. They go with the request now, garbage collection or not."""
    body = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True, "n": 2}
    with running(tmp_path / "data", stories_path, n_ctx=1024) as srv:
        gc.collect()
        gc.disable()  # (what is left in reference cycles stays so: the test sees it whenever a collection would come)
        try:
            before = _event_fds()
            for stream in (True, False):
                asyncio.run(_leave(srv.config.port, "/v1/completions", {**body, "stream": stream}, stream=stream,
                                   base_url=srv.base_url))
            until(lambda: _slots_busy(srv.base_url) == 0, "the slots free again")
            until(lambda: _event_fds() <= before, f"the eventfds back to {before}", wait_s=60)
        finally:
            gc.enable()


# -- a request is let go when its answer is sent -------------------------------------------------------------------
def _live_requests(port: int) -> int:
    """The requests made to the server on ``port`` still in memory (by their Host header: a full test run's process
    holds other tests' servers and requests, which are not this server's to let go)."""
    from aiohttp import web

    gc.collect()
    host = f"127.0.0.1:{port}"
    return sum(1 for o in gc.get_objects() if isinstance(o, web.BaseRequest) and o.headers.get("Host") == host)


def test_answered_requests_are_let_go_at_once(tmp_path):
    """Each context copied while a handler ran kept the request it handled (what the client-gone checks watch):
    the body's read guard schedules a timer of the read timeout (60 s) for each read, and a cancelled timer keeps its
    context until its deadline, so the last minute's requests — their bodies, and the answers their finished handlers
    returned — stayed in memory (up to about a hundred of them, when asyncio purges cancelled timers), and a task a
    handler started (a background response, a run) kept its request for its whole life. They go with their answers."""
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x" * 20_000}]}
    # (a read timeout far past the wait below: the requests were kept until its deadline, so the wait can be generous
    # for a busy machine and still tell the old rule from the new)
    with running(tmp_path / "data", read_timeout=3600) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        with httpx.Client(base_url=srv.base_url, timeout=60) as client:
            for _ in range(20):
                assert client.post("/v1/chat/completions", json=body).status_code == 404
        # (the keep-alive connection closed: the server may end its handler of it at its own pace)
        until(lambda: _live_requests(port) <= 2, "the answered requests let go", wait_s=120)


# -- what is kept per model goes with the model --------------------------------------------------------------------
def test_a_deleted_models_kept_state_goes_with_it(tmp_path, stories_path):
    """The llama.cpp engine kept each model it lent (the model, closed once unloaded, and its compiled chat template)
    and its model.json, the models extension each model.json it resolved, and /metrics each model's last window (its
    throughput since the scrape before), by model id for the server's life: a client that made, used and deleted
    models (Ollama's copy, a chat, delete) grew the server by one of each per model. They go when the model is
    unloaded or deleted."""
    from jan.server.keys import MANAGER, METRIC_WINDOWS

    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with running(tmp_path / "data", stories_path) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=120) as client:
            for n in range(4):
                name = f"copy{n}"
                assert client.post("/api/copy", json={"source": "stories260K", "destination": name}).status_code == 200
                assert client.post("/v1/chat/completions", json={"model": name, **chat}).status_code == 200
                assert client.get("/metrics").status_code == 200  # (a scrape's window, per model loaded)
                assert client.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
            assert client.post("/v1/chat/completions", json={"model": "stories260K", **chat}).status_code == 200
            assert client.get("/metrics").status_code == 200
        assert set(srv.app[METRIC_WINDOWS]) <= {"stories260K"}
        manager = srv.app[MANAGER]
        engine, models = manager.get_extension("llamacpp"), manager.get_extension("models")
        assert set(engine._lent) <= {"stories260K"} and set(engine._loaded_json) <= {"stories260K"}
        assert not [model_id for model_id in models._resolved if model_id.startswith("copy")]


# -- a request's MCP servers leave no file behind ----------------------------------------------------------------
def test_mcp_servers_a_request_names_leave_no_file(tmp_path, stories_path, monkeypatch):
    """An MCP server a request connects to by URL (Responses' ``mcp`` tool, Anthropic's ``mcp_servers``) got a
    stderr log file — that an HTTP server never writes — named by the request's label, in a temporary folder of the
    process: one file for every name a client ever gave, never removed. Only a stdio server has a log now."""
    import tempfile

    from mcp_helpers import free_port, http_notes_server, notes_folder

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    with http_notes_server(notes_folder(tmp_path), tmp_path / "http.log") as live:
        allowed = [url.rsplit("/", 1)[0] + "/" for url in (live, dead)]
        with running(tmp_path / "data", stories_path, allow_media_from=allowed, n_ctx=4096) as srv:
            with httpx.Client(base_url=srv.base_url, timeout=120) as client:
                for n, url in enumerate((live, dead)):
                    tool = {"type": "mcp", "server_label": f"label{n}", "server_url": url, "require_approval": "never"}
                    answer = client.post("/v1/responses", json={"model": "stories260K", "input": "hi", "store": False,
                                                                "max_output_tokens": 2, "tools": [tool]})
                    assert answer.status_code == 200, answer.text
                    answer = client.post("/v1/messages", headers={"anthropic-beta": "mcp-client-2025-04-04"}, json={
                        "model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}],
                        "mcp_servers": [{"type": "url", "name": f"name{n}", "url": url}]})
                    assert answer.status_code in (200, 400), answer.text  # (400: the dead one, not reached)
    left = [p.name for p in [*temp.rglob("*"), *(tmp_path / "data").rglob("*.log")] if p.is_file()]
    assert not left, left


# -- an ended response kept for its replay holds its events, not its request -----------------------------------
def test_an_ended_background_stream_kept_for_replay_lets_its_input_go(tmp_path, stories_path):
    """A background streamed response is kept 5 minutes after its end, for a replay (``GET ?stream=true``), within
    a budget of its events' bytes; but the run kept its request's input too (as sent, as items, as messages: a big
    prompt three times over, its images), outside that budget. Its replay and its answer are what it keeps now."""
    from jan.server.route_state import STREAMS

    body = {"model": "stories260K", "background": True, "stream": True, "max_output_tokens": 2}
    with running(tmp_path / "data", stories_path) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=120) as client:
            ids = []
            for text in ("Once upon a time", "x " * 100_000):  # (answered; failed: it does not fit the context)
                with client.stream("POST", "/v1/responses", json={**body, "input": text}) as answer:
                    assert answer.status_code == 200
                    events = [json.loads(line[5:]) for line in answer.iter_lines() if line.startswith("data:")]
                ids.append(events[0]["response"]["id"])
                replay = client.get(f"/v1/responses/{ids[-1]}", params={"stream": "true"})
                assert replay.status_code == 200 and events[-1]["type"] in replay.text
        runs = [srv.app[STREAMS].get(response_id) for response_id in ids]
        assert [run.final["status"] for run in runs] == ["incomplete", "failed"]  # (the test's premise)
        held = [(len(str(run.body.input)), len(run._inputs), len(run._input_items)) for run in runs]
        assert held == [(0, 0, 0)] * 2, held


def test_remembered_runs_hold_no_thread_messages(tmp_path, stories_path):
    """Each run kept the chat request its start checked the model against — the thread's messages, images and
    all — for as long as the run was remembered (256 runs, bounded only by their events' bytes). Each turn reads
    the thread again; what the runs remembered hold is their own state."""
    from jan.server.keys import SERVICES
    from jan.services.types import ChatMessage, ChatRequest

    async def scenario(srv) -> None:
        async with Client(srv.base_url) as api:
            thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon"}]})
            run = await run_to_end(api, f"/v1/threads/{thread['id']}/runs", {"max_completion_tokens": 2})
        kept = srv.app[SERVICES].runs._runs[run["id"]]
        held = [name for name, value in vars(kept).items() if isinstance(value, (ChatRequest, ChatMessage))
                or (isinstance(value, (list, tuple)) and any(isinstance(v, ChatMessage) for v in value))]
        assert not held, held

    with running(tmp_path / "data", stories_path) as srv:
        asyncio.run(scenario(srv))


# -- ended pulls are forgotten past the latest few ---------------------------------------------------------------
def test_ended_pulls_are_forgotten_past_the_latest(tmp_path, monkeypatch):
    """Every pull ever made (a failed one too), and its file downloads in the downloader, was kept for the server's
    life by model id, and ``GET /v1/downloads`` ("running or ended recently") listed them all. The latest
    ``KEEP_ENDED_PULLS`` ended ones are kept now."""
    import http.server

    import jan.extensions.models.extension as models_module
    from api_helpers import http_serving
    from jan.server.keys import MANAGER

    class Missing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_error(404)

        def log_message(self, *args):  # (quiet)
            pass

    monkeypatch.setattr(models_module, "KEEP_ENDED_PULLS", 2, raising=False)  # (raising: the fault came without it)
    with http_serving(Missing) as base, running(tmp_path / "data") as srv:
        with httpx.Client(base_url=srv.base_url, timeout=60) as client:
            for n in range(5):
                pulled = client.post("/v1/models/pull", json={"url": f"{base}/m{n}.gguf", "id": f"m{n}", "stream": False})
                assert pulled.status_code == 202, pulled.text

                def ended(model_id=f"m{n}") -> bool:
                    listed = {d["id"]: d["state"] for d in client.get("/v1/downloads").json()["data"]}
                    return listed.get(model_id) == "failed"

                until(ended, f"the pull of m{n} failed (a 404)", wait_s=60)
            listed = [d["id"] for d in client.get("/v1/downloads").json()["data"]]
        assert listed[-2:] == ["m3", "m4"] and len(listed) <= 3, listed  # (m4's start forgot all but two before)
        downloader = srv.app[MANAGER].get_extension("models").downloader
        assert len(downloader.list()) <= 3, [task.url for task in downloader.list()]


# -- the llama.cpp engine's per-model notes are bounded ----------------------------------------------------------
def test_the_engines_per_model_notes_keep_the_newest():
    """A failed load's error, and why a model loads without the server's draft or LoRA adapters, are noted per model
    id (file pair for a draft that cannot draft) and outlive the model: a deleted model's note stayed for the
    server's life. Each table keeps the newest :data:`_NOTES_KEPT`; a model noted again is the newest."""
    from jan.extensions.llamacpp import extension as ext

    table: dict[str, str] = {}
    for n in range(ext._NOTES_KEPT + 40):
        assert ext._note(table, f"gone{n}", f"error {n}") == f"error {n}"
        if n == ext._NOTES_KEPT + 30:
            ext._note(table, "gone0", "again")  # noted again (dropped by then): the newest, kept
    assert len(table) == ext._NOTES_KEPT
    assert table["gone0"] == "again" and "gone1" not in table and "gone40" not in table and "gone41" in table
    assert f"gone{ext._NOTES_KEPT + 39}" in table
