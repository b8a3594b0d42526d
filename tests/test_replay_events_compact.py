"""The streams kept for replay keep their text deltas compactly (jan.services.event_log): a remembered run's and a
background response's events were kept as the events themselves, some 380 bytes a token, for up to 256 runs and
every replayable response. A long stream's memory now grows by a few bytes a token besides its text, and a replay
(``.../events?after=N``, ``?stream=true&starting_after=N``) gives the very events that were published, in order,
at the same numbers."""

from __future__ import annotations

import asyncio
import json
import random
import tracemalloc
import types

from jan.services.event_log import EventLog

TOKENS = 20_000


def _same(kept, published) -> None:
    assert len(kept) == len(published)
    assert [json.dumps(e) for e in kept] == [json.dumps(e) for e in published]  # (key order too: the wire's)
    for start in (0, 1, len(published) // 2, len(published) - 1):  # a re-attach after any event
        assert [json.dumps(e) for e in kept.since(start)] == [json.dumps(e) for e in published[start:]]
    assert kept[-1] == published[-1]


def _measured(make, publish) -> tuple[object, int]:
    """What ``publish`` kept in ``make()``'s store, and the bytes it took (traced allocations still held)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        publish(kept)
        return kept, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_an_event_log_gives_back_exactly_what_was_appended():
    def split(event):
        if event[0] == "delta":
            return event[1], event[2], event[3]
        return None

    def join(key, text, number):
        return ("delta", key, text, number)

    rng = random.Random(7)
    published, log, number = [], EventLog(split, join), 0
    for i in range(5000):
        roll = rng.random()
        if roll < 0.05:
            event = ("other", {"i": i})
        elif roll < 0.07:
            event = ("delta", "k", 5, number)  # not text: kept as it is
        else:
            number += 1 if rng.random() < 0.98 else 3  # (a gap in the numbers starts another run of deltas)
            event = ("delta", f"item{i // 600}", rng.choice(["", "a", "tok ", "é—\n", "x" * 40]), number)
        published.append(event)
        log.append(event)
        assert log[len(log) - 1] == event  # a live reader reads each as it comes
    assert list(log) == published and [log[i] for i in range(len(log))] == published


def _responses_events(count: int) -> list[dict]:
    from jan.server.dialects.responses import ResponseStream
    from jan.services.types import ChatDelta, ToolCallDelta

    stream = ResponseStream()
    events = stream.feed(ChatDelta(reasoning="thinking "))
    for i in range(count):
        events += stream.feed(ChatDelta(content=f"word{i % 7} "))
    events += stream.feed(ChatDelta(tool_calls=(ToolCallDelta(index=0, id="call_1", name="f", arguments="{"),)))
    for i in range(50):
        events += stream.feed(ChatDelta(tool_calls=(ToolCallDelta(index=0, arguments=f'"a{i}": 1, '),)))
    return events + stream.finish()


def test_a_long_responses_stream_is_kept_small_and_replays_the_same_events():
    from jan.server.dialects.responses_run import _join_delta, _split_delta

    published = _responses_events(TOKENS)

    def publish(kept):
        for event in published:
            kept.append(json.loads(json.dumps(event)))  # (copies: what is kept is the store's alone)

    compact, compact_bytes = _measured(lambda: EventLog(_split_delta, _join_delta), publish)
    plain, plain_bytes = _measured(list, publish)
    _same(compact, published)
    # the text once in its deltas, and whole in the item's three closing events (kept as they are); a few bytes a
    # delta besides
    text = sum(len(e.get("delta", "")) for e in published)
    assert compact_bytes < 4 * text + 16 * len(published), (compact_bytes, text)
    assert compact_bytes * 10 < plain_bytes, (compact_bytes, plain_bytes)
    assert compact_bytes / 2 < compact.nbytes() < compact_bytes * 2  # (its own count, what the bounds go by)


def test_a_long_run_is_kept_small_and_replays_the_same_events():
    from jan.services.runs import Run, _Execution, _publish_call_delta, run_events

    def publish(kept):
        run = Run("thread_1", "asst_1", "m", "", {}, {}, id="run_1")
        run.events = kept

        async def nothing(*_args):
            return None

        execution = types.SimpleNamespace(run=run, reasoning=True, announce_message=nothing, on_delta=nothing)

        async def main():
            run.publish("thread.run.created", {"id": run.id})
            for i in range(TOKENS):
                await _Execution._relay(execution, "msg_1", f"word{i % 7} ", "text" if i > 100 else "reasoning")
            step = types.SimpleNamespace(id="step_1")
            _publish_call_delta(run, step, 0, {"id": "call_1", "function": {"name": "f", "arguments": ""}})
            for i in range(50):
                _publish_call_delta(run, step, 0, {"function": {"arguments": f'"a{i}": 1, '}})
            run.publish("done", "[DONE]")

        asyncio.run(main())

    published: list = []
    publish(published)
    published = json.loads(json.dumps(published))
    published = [tuple(e) for e in published]
    compact, compact_bytes = _measured(run_events, publish)
    _plain, plain_bytes = _measured(list, publish)
    _same(compact, published)
    assert compact_bytes * 10 < plain_bytes, (compact_bytes, plain_bytes)


def test_the_remembered_runs_events_are_bounded_in_bytes(monkeypatch):
    from jan.services import runs as runs_module
    from jan.services.runs import Run, RunService

    monkeypatch.setattr(runs_module, "KEEP_EVENT_BYTES", 200_000)
    service = RunService.__new__(RunService)  # (only the registry of runs is used here)
    service._runs, service._settled = {}, {}
    from collections import OrderedDict

    service._runs = OrderedDict()
    for n in range(20):
        run = Run("thread_1", "asst_1", "m", "", {}, {}, status="completed")
        run.publish("thread.run.created", {"text": "x" * 30_000})  # (kept as it is: ~30 KB)
        service._remember(run)
    kept = sum(r.events.nbytes() for r in service._runs.values())
    assert kept <= 200_000 and 1 <= len(service._runs) < 20
    assert list(service._runs)[-1] == run.id  # the newest are the ones kept


def test_the_replayable_streams_are_bounded_in_bytes():
    from jan.server.dialects.responses_run import ReplayableStreams

    class Ended:
        def __init__(self, n, size):
            self.id, self.ended_at, self.replayable, self._size = f"resp_{n}", float(n), True, size

        def kept_bytes(self):
            return self._size

    streams = ReplayableStreams(kept_s=1e9, kept_bytes=1000)
    for n in range(10):
        streams.add(Ended(n, 300))
    assert [streams.get(f"resp_{n}") is not None for n in range(10)] == [False] * 7 + [True] * 3
