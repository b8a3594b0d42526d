"""Lists by time keep creation order when everything happens within one second (and one millisecond).

A thread's runs list by ``created_at``, in seconds, and an Anthropic model list by ``created_at``, also seconds:
things made one after another on a fast machine share their second, and what broke the tie did not follow creation.
Runs broke it by their reply's id, and a run that wrote none (one cancelled while it waited for its model) listed
before the run made just before it: a client asking for the newest run (``?limit=1``, as the web page does) got the
other.
Anthropic's list broke it by model id. The wall clock is frozen here, so every stamp, id and second is the same.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from api_helpers import Client, running
from run_helpers import run_to_end, wait_for_run

import jan.store.ids as ids_module
from jan.extensions.llamacpp.extension import LlamaCppExtension
from jan.server.dialects.anthropic import model_page
from jan.services.run_steps import RunStep
from jan.services.runs import Run, run_sort_key
from jan.store import DataFolder
from jan.store._util import now_s
from jan.store.ids import new_message_id

pytestmark = pytest.mark.timeout(600)


def freeze(monkeypatch, millis: int = 123) -> int:
    """Freeze the wall clock (``time.time``/``time.time_ns``, as jan reads it) at ``millis`` into the next second
    (early, by default: the stamps made after stay in it), after every stamp and id made so far; its nanoseconds."""
    second = max(time.time_ns() // 1_000_000, ids_module.clock_ms()) // 1000 + 1
    frozen = (second * 1000 + millis) * 1_000_000
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: frozen)
    # a clock of its own, as a fresh process has, that starts at exactly that millisecond
    monkeypatch.setattr(ids_module, "_clock", ids_module._UlidClock())
    monkeypatch.setattr(ids_module.time, "time", lambda: frozen / 1e9)
    return frozen


def test_runs_made_in_one_second_sort_in_the_order_they_were_made(monkeypatch):
    freeze(monkeypatch)
    first = Run("thread_x", "jan", "m", "", {}, {})
    reply = new_message_id()  # the first run's reply; the second run waits for tool outputs and wrote none
    second = Run("thread_x", "jan", "m", "", {}, {})
    assert first.created_at == second.created_at
    records = [{"id": second.id, "created_at": second.created_at, "message_id": None},
               {"id": first.id, "created_at": first.created_at, "message_id": reply}]
    assert [r["id"] for r in sorted(records, key=run_sort_key)] == [first.id, second.id]
    # an older jan's runs (random hex ids) still sort by their replies' ids within a second
    old = [{"id": "run_ffff", "created_at": 5, "message_id": new_message_id()},
           {"id": "run_0000", "created_at": 5, "message_id": new_message_id()}]
    assert [r["id"] for r in sorted(old[::-1], key=run_sort_key)] == ["run_ffff", "run_0000"]


def test_a_runs_times_come_from_the_data_folders_clock(monkeypatch):
    """The data folder's clock runs ahead of the wall clock while more than one stamp a millisecond is asked for: a
    run timed by the wall clock could end a second before the reply it wrote was completed."""
    frozen = freeze(monkeypatch, millis=999)  # the last millisecond of a second
    ids_module.stamp_ms(), ids_module.stamp_ms()  # (a reply and its thread's update, say): the clock in the next
    completed = now_s()  # what a reply written now reads as its completed_at
    assert completed == frozen // 1_000_000_000 + 1
    run = Run("thread_x", "jan", "m", "", {}, {})
    step = RunStep(run.id, run.thread_id, run.assistant_id, "message_creation")
    step.end("completed")
    assert run.created_at == step.created_at == step.completed_at == completed


async def test_a_run_cancelled_before_it_wrote_is_the_newest_run_of_its_thread(tmp_path, stories_path, monkeypatch):
    with running(tmp_path / "data", stories_path) as server:
        async with Client(server.base_url) as api:
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]}))["id"]
            freeze(monkeypatch)
            answered = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 4})
            assert answered["status"] in ("completed", "incomplete") and answered["message_id"], answered
            # the next run waits for its model (held here) and is cancelled there: it writes no reply
            waiting, opened = threading.Event(), threading.Event()
            real = LlamaCppExtension.acquire

            async def acquire(self, model):
                waiting.set()
                await asyncio.to_thread(opened.wait, 120)
                return await real(self, model)

            monkeypatch.setattr(LlamaCppExtension, "acquire", acquire)
            try:
                started = await api.ok("POST", f"/v1/threads/{tid}/runs", {"max_tokens": 4})
                assert await asyncio.to_thread(waiting.wait, 120), "the run never asked for its model"
                await api.ok("POST", f"/v1/threads/{tid}/runs/{started['id']}/cancel", {})
                cancelled = await wait_for_run(api, tid, started["id"])
            finally:
                opened.set()
            assert cancelled["status"] == "cancelled" and cancelled["message_id"] is None, cancelled
            assert cancelled["created_at"] == answered["created_at"]  # one second
            newest = (await api.ok("GET", f"/v1/threads/{tid}/runs?limit=1"))["data"]
            assert [r["id"] for r in newest] == [cancelled["id"]]  # the newest run, as a client asks for it
            listed = (await api.ok("GET", f"/v1/threads/{tid}/runs?order=asc"))["data"]
            assert [r["id"] for r in listed] == [answered["id"], cancelled["id"]]
            after = (await api.ok("GET", f"/v1/threads/{tid}/runs?order=asc&after={answered['id']}"))["data"]
            assert [r["id"] for r in after] == [cancelled["id"]]


def test_anthropic_models_made_in_one_second_list_newest_first(tmp_path, monkeypatch):
    freeze(monkeypatch)
    store = DataFolder(tmp_path)
    for model_id in ("b-model", "a-model", "c-model"):  # made in this order: newest first is the reverse
        store.models.create({"id": model_id, "engine": "llamacpp", "object": "model"})
    models = store.models.list()
    assert len({m["created"] // 1000 for m in models}) == 1  # one second
    page = model_page(models)
    assert [m["id"] for m in page["data"]] == ["c-model", "a-model", "b-model"]
    walked = [model_page(models, limit=1)["data"][0]["id"]]
    while len(walked) < 3:
        walked += [m["id"] for m in model_page(models, limit=1, after_id=walked[-1])["data"]]
    assert walked == ["c-model", "a-model", "b-model"]
    # a model.json whose created is no time lists as the oldest, and fails nothing
    assert model_page([*models, {"id": "odd", "created": float("inf")}])["data"][-1]["id"] == "odd"
