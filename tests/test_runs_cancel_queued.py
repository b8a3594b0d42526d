"""An Assistants run stopped before it produced anything — still waiting for its model — ends as OpenAI's: status
``cancelled``, no message and no ``message_creation`` step. Never an empty ``incomplete`` reply a client reads as a
cut-off answer: not in the cancel's answer, the run retrieved, the thread's messages (``?all=true`` too, and on disk),
its steps, its stream, its replayed stream (``GET .../events``) nor its record. Whichever way the cancel comes: a
streamed run's, one not streamed (polled), and a cancel another jan process sharing the data folder asks for (its
marker next to the run's record, as that process writes it).

The model is held deterministically: the engine's ``acquire`` (where a turn waits for its model) waits on a gate the
test opens, and the test waits until a turn is waiting there before it cancels."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from api_helpers import Client, parse_sse, read_jsonl, running
from run_helpers import run_to_end, wait_for_run

from jan.extensions.llamacpp.extension import LlamaCppExtension
from jan.services.run_records import ask_cancel

pytestmark = pytest.mark.timeout(600)

WAIT_S = 120  # generous: a busy 2-core machine
STORY = "Once upon a time there was a little girl named Lily who loved to play outside"
BODY = {"max_tokens": 8}
#: The stream's events that tell a message or a step: none for a run that produced nothing.
_TOLD = ("thread.message.", "thread.run.step.")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("runs-cancel-queued") / "data", stories_path) as server:
        yield server


class Gate:
    """Every model turn waits for its model until :meth:`open`; ``waiting`` is set as one begins to wait."""

    def __init__(self) -> None:
        self.opened, self.waiting = threading.Event(), threading.Event()

    async def queued(self) -> None:
        assert await asyncio.to_thread(self.waiting.wait, WAIT_S), "the run never asked for its model"

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate(monkeypatch):
    held = Gate()
    real = LlamaCppExtension.acquire

    async def acquire(self, model):
        held.waiting.set()
        await asyncio.to_thread(held.opened.wait)
        return await real(self, model)

    monkeypatch.setattr(LlamaCppExtension, "acquire", acquire)
    yield held
    held.open()


async def _thread(api: Client) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]


def _ended_unwritten(run: dict) -> None:
    """A run object (the cancel's answer, the run retrieved, its ``thread.run.cancelled`` event) as OpenAI's run
    cancelled before it produced anything."""
    assert run["status"] == "cancelled" and run["cancelled_at"] and run["last_error"] is None, run
    assert run["message_id"] is None and run.get("message") is None, run
    assert run["usage"]["total_tokens"] == 0, run  # a terminal run tells its usage: zero, not null


def _no_message_events(events: list[tuple[str | None, object]]) -> None:
    names = [name for name, _ in events]
    assert not [n for n in names if n and n.startswith(_TOLD)], names
    assert names[-2:] == ["thread.run.cancelled", "done"], names
    _ended_unwritten(events[-2][1])


async def _nowhere(api: Client, srv, tid: str, run_id: str) -> None:
    """The run left no reply anywhere a client (or the data folder) tells it."""
    _ended_unwritten(await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}"))
    [listed] = (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"]
    _ended_unwritten(listed)
    for query in ("", "&all=true"):
        messages = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc{query}"))["data"]
        assert [m["role"] for m in messages] == ["user"], messages
    assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps"))["data"] == []
    # the stream replayed, from its start and from after its first event
    for after in (-1, 0):
        async with api.session.get(f"{api.base}/v1/threads/{tid}/runs/{run_id}/events?after={after}") as resp:
            assert resp.status == 200
            replayed = parse_sse(await resp.text())
        _no_message_events(replayed)
    thread = srv.config.data_folder / "threads" / tid
    assert [m["role"] for m in read_jsonl(thread / "messages.jsonl")] == ["user"]
    record = json.loads((thread / "runs" / f"{run_id}.json").read_text())
    assert record["status"] == "cancelled" and record["message_id"] is None and record["steps"] == [], record
    assert not list((thread / "runs").glob("*.cancel"))


async def _answered_next(api: Client, gate: Gate, tid: str) -> None:
    """The thread is free and goes on as any: the next run answers it, in a message of its own."""
    gate.open()
    run = await run_to_end(api, f"/v1/threads/{tid}/runs", BODY)
    assert run["status"] in ("completed", "incomplete") and run["message"]["content"], run
    messages = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc"))["data"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["id"] == run["message_id"]


async def test_a_streamed_run_cancelled_while_queued_leaves_no_message(srv, gate):
    async with Client(srv.base_url) as api:
        tid = await _thread(api)
        async with api.session.post(f"{api.base}/v1/threads/{tid}/runs", json={**BODY, "stream": True}) as resp:
            head = b""
            while b"event: thread.run.queued" not in head:
                line = await resp.content.readline()
                assert line, head
                head += line
            run_id = parse_sse(head.decode())[0][1]["id"]
            await gate.queued()
            cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/cancel")
            _ended_unwritten(cancelled)
            events = parse_sse((head + await resp.read()).decode())
        # waiting for its model, it never was in progress (OpenAI's queued)
        names = [name for name, _ in events]
        assert names[:2] == ["thread.run.created", "thread.run.queued"] and "thread.run.in_progress" not in names
        _no_message_events(events)
        await _nowhere(api, srv, tid, run_id)
        await _answered_next(api, gate, tid)


async def test_a_run_not_streamed_cancelled_while_queued_leaves_no_message(srv, gate):
    async with Client(srv.base_url) as api:
        tid = await _thread(api)
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", BODY)
        await gate.queued()
        _ended_unwritten(await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel"))
        await _nowhere(api, srv, tid, run["id"])
        await _answered_next(api, gate, tid)


async def test_a_cancel_another_process_asks_for_while_queued_leaves_no_message(srv, gate):
    """The marker another jan process sharing the data folder writes (what its ``POST .../cancel`` does for a run
    this one runs): heard here, the run ends as a cancel here ends it."""
    async with Client(srv.base_url) as api:
        tid = await _thread(api)
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", {**BODY, "background": True})
        await gate.queued()
        await asyncio.to_thread(ask_cancel, srv.config.data_folder, tid, run["id"])
        _ended_unwritten(await wait_for_run(api, tid, run["id"], WAIT_S))
        await _nowhere(api, srv, tid, run["id"])
        await _answered_next(api, gate, tid)


async def test_a_run_reads_queued_until_the_engine_starts_its_turn(srv, gate):
    """OpenAI's ``queued``: a run waiting for its model (loading, every slot busy) is not ``in_progress`` yet; it is
    from the engine's first output on, ``started_at`` then, its stream telling ``thread.run.queued`` first."""
    async with Client(srv.base_url) as api:
        tid = await _thread(api)
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", BODY)
        assert run["status"] == "queued" and run["started_at"] is None, run
        await gate.queued()
        waiting = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert waiting["status"] == "queued" and waiting["started_at"] is None, waiting
        gate.open()
        done = await wait_for_run(api, tid, run["id"])
        assert done["status"] in ("completed", "incomplete") and done["started_at"] >= run["created_at"], done
        async with api.session.get(f"{api.base}/v1/threads/{tid}/runs/{run['id']}/events?after=-1") as resp:
            names = [name for name, _ in parse_sse(await resp.text())]
        assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"], names
        assert names.index("thread.run.in_progress") < names.index("thread.message.created"), names
