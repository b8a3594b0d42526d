"""What a long-running server holds per request returns to its baseline when the requests end (found by
``benchmarks/soak.py``): no lock, descriptor or record kept for every thread, response or connection it ever saw."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import types

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
