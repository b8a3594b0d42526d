"""The event bus: sync/async handlers, subclass delivery, isolation of failures, unsubscribe."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jan.core.events import (
    EVENT_TYPES,
    DownloadProgress,
    Event,
    LocalEventBus,
    MessageEvent,
    MessageSent,
    MessageUpdate,
    ModelEvent,
    ModelInit,
    ModelReady,
    ModelStopped,
)
from jan.core.interfaces import EventBus


async def test_sync_and_async_handlers_receive_events_in_order():
    bus = LocalEventBus()
    seen: list[str] = []

    def sync_handler(event: ModelReady) -> None:
        seen.append(f"sync:{event.model_id}")

    async def async_handler(event: ModelReady) -> None:
        await asyncio.sleep(0)
        seen.append(f"async:{event.model_id}")

    bus.subscribe(ModelReady, sync_handler)
    bus.subscribe(ModelReady, async_handler)
    await bus.emit(ModelReady(model_id="m1", engine="llama.cpp"))
    # emit waits for async handlers to finish
    assert seen == ["sync:m1", "async:m1"]
    assert isinstance(bus, EventBus)


async def test_subscribing_to_a_base_class_receives_subclasses_only():
    bus = LocalEventBus()
    model_events: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(ModelEvent, model_events.append)
    bus.subscribe(Event, everything.append)

    init = ModelInit(model_id="a")
    stopped = ModelStopped(model_id="a", reason="idle")
    message = MessageSent(thread_id="t", message={"id": "m"})
    for event in (init, stopped, message):
        await bus.emit(event)

    assert model_events == [init, stopped]
    assert everything == [init, stopped, message]


async def test_tuple_of_types_and_exact_type_do_not_leak_to_siblings():
    bus = LocalEventBus()
    got: list[Event] = []
    bus.subscribe((MessageSent, ModelReady), got.append)
    await bus.emit(MessageUpdate(thread_id="t", message={}, delta="x"))
    await bus.emit(ModelInit(model_id="m"))
    assert got == []
    await bus.emit(ModelReady(model_id="m"))
    assert len(got) == 1


async def test_failing_subscribers_are_logged_and_isolated(caplog):
    errors = []
    bus = LocalEventBus(on_error=lambda event, handler, exc: errors.append((type(event), str(exc))))
    delivered: list[str] = []

    def bad_sync(event):
        raise RuntimeError("sync boom")

    async def bad_async(event):
        raise ValueError("async boom")

    bus.subscribe(MessageEvent, bad_sync)
    bus.subscribe(MessageEvent, lambda e: delivered.append("first"))
    bus.subscribe(MessageEvent, bad_async)
    bus.subscribe(MessageEvent, lambda e: delivered.append("second"))

    with caplog.at_level(logging.ERROR, logger="jan.core.events"):
        await bus.emit(MessageSent(thread_id="t", message={}))  # must not raise

    assert delivered == ["first", "second"]
    assert sorted(msg for _, msg in errors) == ["async boom", "sync boom"]
    text = caplog.text
    assert "sync boom" in text and "async boom" in text and "bad_sync" in text


async def test_a_handler_that_hangs_is_left_running_and_emit_returns(caplog):
    """A model's load awaits ``emit(ModelInit)``: a third-party handler that never ended held it, and ``jan serve``
    never started listening. emit() waits for each handler at most ``handler_timeout``, then goes on without it."""
    bus = LocalEventBus(handler_timeout=0.2)
    released = asyncio.Event()
    seen: list[str] = []

    async def hangs(event):
        await released.wait()
        seen.append("hung one ended")

    async def quick(event):
        seen.append("quick")

    bus.subscribe(ModelInit, hangs)
    bus.subscribe(ModelInit, quick)
    with caplog.at_level(logging.WARNING, logger="jan.core.events"):
        await asyncio.wait_for(bus.emit(ModelInit(model_id="m", engine="e")), 30)
    assert seen == ["quick"]
    assert "hangs did not finish on ModelInit within 0.2 s; left running in the background" in caplog.text
    assert bus.pending == 1  # left running, not cancelled, and drain() still waits for it
    released.set()
    await asyncio.wait_for(bus.drain(), 30)
    assert seen == ["quick", "hung one ended"] and bus.pending == 0


async def test_cancelling_emit_cancels_its_handlers():
    bus = LocalEventBus()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits(event):
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(ModelInit, waits)
    emitting = asyncio.ensure_future(bus.emit(ModelInit(model_id="m", engine="e")))
    await asyncio.wait_for(started.wait(), 30)
    emitting.cancel()
    await asyncio.wait_for(cancelled.wait(), 30)
    assert bus.pending == 0


async def test_emit_nowait_runs_sync_now_and_schedules_async():
    bus = LocalEventBus()
    seen: list[str] = []
    release = asyncio.Event()

    async def slow(event):
        await release.wait()
        seen.append("async")

    bus.subscribe(ModelReady, lambda e: seen.append("sync"))
    bus.subscribe(ModelReady, slow)
    bus.subscribe(ModelReady, lambda e: 1 / 0)  # isolated too

    bus.emit_nowait(ModelReady(model_id="m"))
    assert seen == ["sync"]  # returned without waiting
    assert bus.pending == 1
    release.set()
    await bus.drain()
    assert seen == ["sync", "async"]
    assert bus.pending == 0


def test_emit_nowait_without_a_loop_runs_sync_handlers_and_skips_async(caplog):
    bus = LocalEventBus()
    seen = []

    async def never(event):  # pragma: no cover - must not run
        seen.append("async")

    bus.subscribe(ModelReady, seen.append)
    bus.subscribe(ModelReady, never)
    with caplog.at_level(logging.WARNING, logger="jan.core.events"):
        bus.emit_nowait(ModelReady(model_id="m"))
    assert len(seen) == 1
    assert "skipped" in caplog.text


async def test_unsubscribe_stops_delivery_and_is_idempotent():
    bus = LocalEventBus()
    got = []
    unsubscribe = bus.subscribe(ModelReady, got.append)
    await bus.emit(ModelReady(model_id="1"))
    unsubscribe()
    unsubscribe()
    await bus.emit(ModelReady(model_id="2"))
    assert [e.model_id for e in got] == ["1"]
    assert bus.subscriber_count() == 0


async def test_unsubscribing_during_emit_is_safe():
    bus = LocalEventBus()
    got = []
    unsubscribers = []

    def first(event):
        got.append("first")
        for u in unsubscribers:
            u()

    unsubscribers.append(bus.subscribe(ModelReady, first))
    unsubscribers.append(bus.subscribe(ModelReady, lambda e: got.append("second")))
    await bus.emit(ModelReady(model_id="m"))
    await bus.emit(ModelReady(model_id="m"))
    assert got == ["first", "second"]


async def test_decorator_and_counts():
    bus = LocalEventBus()

    @bus.on(DownloadProgress)
    def handler(event):
        pass

    assert bus.subscriber_count(DownloadProgress) == 1
    assert bus.subscriber_count(ModelReady) == 0


def test_subscribe_validates_arguments():
    bus = LocalEventBus()
    with pytest.raises(TypeError):
        bus.subscribe("ModelReady", print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.subscribe(ModelReady, "not callable")  # type: ignore[arg-type]


async def test_emitting_a_non_event_is_an_error():
    bus = LocalEventBus()
    with pytest.raises(TypeError):
        await bus.emit({"event": "x"})  # type: ignore[arg-type]


def test_events_are_frozen_dataclasses_with_jan_names_and_serialize():
    event = DownloadProgress(task_id="t", model_id="m", downloaded_bytes=50, total_bytes=200)
    assert event.fraction == 0.25
    assert DownloadProgress(task_id="t").fraction is None
    with pytest.raises(Exception):
        event.downloaded_bytes = 1  # type: ignore[misc]
    data = event.to_dict()
    assert data["event"] == "onFileDownloadUpdate"
    assert data["downloaded_bytes"] == 50 and isinstance(data["timestamp"], float)
    assert EVENT_TYPES["OnModelReady"] is ModelReady
    assert EVENT_TYPES["OnMessageSent"] is MessageSent
    with pytest.raises(TypeError):
        ModelReady("positional-not-allowed")  # type: ignore[misc]
