"""Two ``jan`` servers adding items to one conversation at once (:mod:`jan.server.dialects.conversations_store`).

A conversation's items are added under its thread's lock, so that a request's items stay together and an item id is
kept once (read and kept under the lock). The lock was an asyncio lock of the server's own: a second server sharing
the data folder took its own at the same time, and the two requests' items interleaved (one request's second item
between the other's) and both kept the id they were sent, so the conversation listed two items under one id. The
lock is now an OS file lock too (:class:`jan.core.locks.AsyncFileLocks`), which every process sharing the folder
takes.

Each server is a :class:`ResponsesStore` of its own here (its own locks, as another process has: they share nothing
in memory, and an OS lock excludes two open files of one process as it does two processes), and one test holds a
conversation's lock in a real second process. Each step waits on an event (or a marker file), with generous bounds:
never on time.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

import jan.core.locks as core_locks
from jan.extensions.conversational.extension import ConversationalStoreExtension
from jan.server.dialects.conversations_store import ConversationStore
from jan.server.dialects.responses_store import KeptTurn, ResponsesStore
from jan.services.types import ChatMessage, TextPart

pytestmark = pytest.mark.timeout(300)

#: Generous bound on any wait (a busy 2-core machine).
BOUND = 120.0


def _turn(text: str, item_id: str) -> KeptTurn:
    return KeptTurn(ChatMessage("user", (TextPart(text),)), item_ids={"message": item_id})


class _Pausing:
    """A conversation store that pauses after its first message is written (``written`` set) until ``resume``."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.written = asyncio.Event()
        self.resume: asyncio.Future | None = None

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def create_message(self, thread_id, message):
        made = await self._inner.create_message(thread_id, message)
        if not self.written.is_set():
            self.written.set()
            await asyncio.wait_for(self.resume, BOUND)
        return made


async def _two_servers(tmp_path):
    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    paused = _Pausing(threads)
    one = ConversationStore(ResponsesStore(tmp_path / "responses", lambda: paused))
    two = ConversationStore(ResponsesStore(tmp_path / "responses", lambda: threads))
    return one, two, paused


def _noting_refusals(monkeypatch) -> asyncio.Event:
    """An event set when an OS lock is found taken by another holder (core.locks.try_lock_file refused): how a test
    tells that a request waits for the lock, without a pause."""
    loop = asyncio.get_running_loop()
    refused = asyncio.Event()
    try_lock = core_locks.try_lock_file

    def noting(path):
        held = try_lock(path)
        if held is None:
            loop.call_soon_threadsafe(refused.set)
        return held

    monkeypatch.setattr(core_locks, "try_lock_file", noting)
    return refused


async def test_two_servers_adding_to_one_conversation_never_interleave_or_share_an_id(tmp_path, monkeypatch):
    one, two, paused = await _two_servers(tmp_path)
    conversation = (await two.create([], None))["id"]

    # The second server's request either goes through at once or waits for the lock the first one holds: told
    # apart by an event set when it finds the lock file taken, so the first is let go on once the second is under
    # way, whichever it does (never after a pause).
    loop = asyncio.get_running_loop()
    refused = _noting_refusals(monkeypatch)
    paused.resume = loop.create_future()

    first = asyncio.ensure_future(one.add(conversation, [_turn("one-a", "msg_same"), _turn("one-b", "msg_oneb")]))
    await asyncio.wait_for(paused.written.wait(), BOUND)  # the first server is between its two items
    second = asyncio.ensure_future(two.add(conversation, [_turn("two-a", "msg_same"), _turn("two-b", "msg_twob")]))
    waiting = asyncio.ensure_future(refused.wait())
    await asyncio.wait([second, waiting], timeout=BOUND, return_when=asyncio.FIRST_COMPLETED)
    assert second.done() or waiting.done()
    waiting.cancel()
    paused.resume.set_result(None)
    await asyncio.wait_for(asyncio.gather(first, second), BOUND)

    items = await two.items(conversation)
    texts = [item["content"][0]["text"] for item in items]
    ids = [item["id"] for item in items]
    # each request's items together, in the order sent; every item of its own id
    assert texts in (["one-a", "one-b", "two-a", "two-b"], ["two-a", "two-b", "one-a", "one-b"]), texts
    assert len(set(ids)) == len(ids), ids


_HOLDER = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from jan.server.dialects.responses_store import ResponsesStore

    data, conversation, marks = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    async def main():
        async with ResponsesStore(data / "responses", lambda: None).locked(conversation):
            (marks / "held").touch()
            deadline = time.monotonic() + {bound}
            while not (marks / "go").exists():
                if time.monotonic() > deadline:
                    sys.exit("no go")
                await asyncio.sleep(0.01)

    asyncio.run(main())
""").format(bound=BOUND)


async def _wait_until_held(process, marks, what):
    """Wait (bounded) for the child ``process`` to touch ``marks/held``; fail with its output if it exits first."""
    deadline = time.monotonic() + BOUND
    while not (marks / "held").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the other process never {what}"
        await asyncio.sleep(0.01)


async def test_a_conversation_held_by_another_process_is_waited_for(tmp_path, monkeypatch):
    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    store = ConversationStore(ResponsesStore(tmp_path / "responses", lambda: threads))
    conversation = (await store.create([], None))["id"]
    marks = tmp_path / "marks"
    marks.mkdir()

    refused = _noting_refusals(monkeypatch)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), conversation, str(marks)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await _wait_until_held(holder, marks, "held the conversation")
        adding = asyncio.ensure_future(store.add(conversation, [_turn("hello", "msg_hello")]))
        await asyncio.wait_for(refused.wait(), BOUND)  # it waits for the other process's lock
        assert not adding.done()
        (marks / "go").touch()
        added = await asyncio.wait_for(adding, BOUND)
        assert [item["id"] for item in added] == ["msg_hello"]
        assert holder.wait(BOUND) == 0, holder.communicate()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# -- Anthropic's message threads: a continue in flight in another process ------------------------------------------
_CONTINUER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from jan.store.leases import Leases

    live, key, marks = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    leases = Leases(live)
    leases.take(key)
    (marks / "held").touch()
    deadline = time.monotonic() + {bound}
    while not (marks / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("no go")
        time.sleep(0.01)
    leases.release(key)
""").format(bound=BOUND)


def _continuer(data: Path, message_id: str, marks: Path) -> subprocess.Popen:
    """Another process holding the lease on the continue of ``message_id`` in the data folder ``data`` (it touches
    ``marks/held``, and lets go once ``marks/go`` exists)."""
    from jan.store.leases import LEASE_DIR_NAME

    return subprocess.Popen([sys.executable, "-c", _CONTINUER, str(data / LEASE_DIR_NAME), f"continuing_{message_id}",
                             str(marks)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_a_continue_another_server_has_in_flight_is_refused(tmp_path):
    """Two servers sharing a data folder, each continuing one held reply (``thread: continue``) at once: each checked
    only its own requests in flight, both generated a turn, and the one saved second was not held (its thread had
    gone on), its reply's id continuing nothing. The continue in flight is now a lease every process sees: the
    second is refused ``thread_continue_in_flight`` as it is in one server."""
    from jan.server.dialects import anthropic as wire
    from jan.server.dialects.anthropic_threads import MessageThreads, ThreadError

    conversations = ConversationalStoreExtension()
    await conversations.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    threads = MessageThreads(tmp_path / "message_threads", lambda: conversations)
    previous = "msg_01HELDELSEWHERE"
    body = wire.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "next"}],
        "thread": {"type": "continue", "previous_message_id": previous}})
    marks = tmp_path / "marks"
    marks.mkdir()
    other = _continuer(tmp_path, previous, marks)
    try:
        await _wait_until_held(other, marks, "took the continue")
        with pytest.raises(ThreadError) as refused:
            async with threads.turn(body):
                pass
        assert refused.value.details == {"error_code": "thread_continue_in_flight"}
        (marks / "go").touch()
        assert other.wait(BOUND) == 0, other.communicate()
        # once the other ends it, the continue goes on here (to the reply, unknown in this folder: not found)
        with pytest.raises(ThreadError) as unknown:
            async with threads.turn(body):
                pass
        assert unknown.value.details["error_code"] == "thread_not_found"
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def _message(text: str) -> dict:
    from jan.server.dialects import anthropic as wire

    return {"id": wire.new_message_id(), "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}


def _body(thread: dict, text: str):
    from jan.server.dialects import anthropic as wire

    return wire.MessagesRequest.model_validate({"model": "m", "max_tokens": 2, "thread": thread,
                                                "messages": [{"role": "user", "content": text}]})


async def test_a_claim_outliving_its_stored_turn_is_refused_as_the_thread_stands(tmp_path):
    """A continue's claim on a reply (this process's mark, another process's lease) is let go only after the turn it
    guards is stored: a client continuing from the same reply once that turn is stored, as soon as it has its answer,
    could meet the claim still held, and was told ``thread_continue_in_flight`` where the same request a moment
    later was told ``thread_already_continued`` (a CI run of the Anthropic SDK's thread helper met it). A claimed
    reply whose thread went on is now refused ``thread_already_continued``, whoever holds the claim; one whose
    thread has not gone on yet stays ``thread_continue_in_flight``."""
    from jan.server.dialects.anthropic_threads import MessageThreads, ThreadError

    conversations = ConversationalStoreExtension()
    await conversations.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    threads = MessageThreads(tmp_path / "message_threads", lambda: conversations)

    async def refusal(previous: str) -> str:
        with pytest.raises(ThreadError) as refused:
            async with threads.turn(_body({"type": "continue", "previous_message_id": previous}, "again")):
                pass
        return refused.value.details["error_code"]

    async with threads.turn(_body({"type": "create"}, "first")) as turn:
        first = await turn.commit(_message("one"))
    # this process's claim: a continue of the first reply, its turn not stored yet, then stored
    async with threads.turn(_body({"type": "continue", "previous_message_id": first["id"]}, "second")) as turn:
        assert await refusal(first["id"]) == "thread_continue_in_flight"
        second = await turn.commit(_message("two"))
        assert await refusal(first["id"]) == "thread_already_continued"
    assert await refusal(first["id"]) == "thread_already_continued"  # (the claim let go: the same answer)
    # another process's lease: on the first reply (its thread went on), then on the second (the thread's head)
    for held, said in ((first["id"], "thread_already_continued"), (second["id"], "thread_continue_in_flight")):
        marks = tmp_path / f"marks_{held}"
        marks.mkdir()
        other = _continuer(tmp_path, held, marks)
        try:
            await _wait_until_held(other, marks, "took the continue")
            assert await refusal(held) == said
            (marks / "go").touch()
            assert other.wait(BOUND) == 0, other.communicate()
        finally:
            if other.poll() is None:
                other.kill()
                other.wait()
