"""Concurrent writers (threads and processes) must never lose or interleave writes."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jan.store import DataFolder, LockTimeoutError
from jan.store.jsonl import read_jsonl

WRITERS = 16
PER_WRITER = 8


def _mp_context():
    # fork keeps the test's import setup; spawn elsewhere (macOS/Windows default).
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _append_worker(root: str, thread_id: str, writer: int, start: Any) -> None:
    store = DataFolder(root, ensure_default_assistant=False)
    start.wait(10)
    for i in range(PER_WRITER):
        store.messages.create(thread_id, "user", f"w{writer}-{i}", metadata={"writer": writer, "i": i})


def _update_worker(root: str, thread_id: str, message_id: str, writer: int,
                   start: Any) -> None:
    store = DataFolder(root, ensure_default_assistant=False)
    start.wait(10)
    for i in range(PER_WRITER):
        store.messages.update(thread_id, message_id, metadata={"writer": writer, "i": i})


def _check_all_present(store: DataFolder, thread_id: str, writers: int, extra: int = 0) -> None:
    messages = store.messages.list(thread_id).data
    texts = [m["content"][0]["text"]["value"] for m in messages]
    expected = {f"w{w}-{i}" for w in range(writers) for i in range(PER_WRITER)}
    assert len(messages) == len(expected) + extra
    assert expected <= set(texts)
    assert len({m["id"] for m in messages}) == len(messages)
    # Every line on disk is whole: nothing interleaved.
    content = read_jsonl(store.threads_dir / thread_id / "messages.jsonl")
    assert not content.bad_lines and not content.torn_tail
    # Per writer, its own messages keep their order.
    for w in range(writers):
        mine = [t for t in texts if t.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(PER_WRITER)]


def test_parallel_appends_from_threads_lose_nothing(tmp_path):
    store = DataFolder(tmp_path)
    thread = store.threads.create("busy")
    barrier = threading.Barrier(WRITERS)

    def writer(w: int) -> None:
        # Each thread gets its own DataFolder too: in-process instances must exclude each other.
        own = store if w % 2 else DataFolder(tmp_path, ensure_default_assistant=False)
        barrier.wait()
        for i in range(PER_WRITER):
            own.messages.create(thread["id"], "user", f"w{w}-{i}")

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    _check_all_present(store, thread["id"], WRITERS)


def _run_together(procs, start) -> None:
    """Start the processes, release them at once through ``start``, and require each to succeed."""
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_parallel_appends_from_processes_lose_nothing(tmp_path):
    store = DataFolder(tmp_path)
    thread = store.threads.create("busy")
    ctx = _mp_context()
    start = ctx.Event()
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), thread["id"], w, start))
             for w in range(WRITERS)]
    _run_together(procs, start)
    _check_all_present(store, thread["id"], WRITERS)


def test_appends_survive_concurrent_rewrites_across_processes(tmp_path):
    # Updates rewrite the whole file; appends racing them must still all land.
    store = DataFolder(tmp_path)
    thread = store.threads.create("busy", messages=[{"role": "user", "content": "first"}])
    first = store.messages.list(thread["id"]).data[0]["id"]
    ctx = _mp_context()
    start = ctx.Event()
    appenders = WRITERS // 2
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), thread["id"], w, start))
             for w in range(appenders)]
    procs += [ctx.Process(target=_update_worker, args=(str(tmp_path), thread["id"], first, w, start))
              for w in range(WRITERS - appenders)]
    _run_together(procs, start)
    _check_all_present(store, thread["id"], appenders, extra=1)
    assert store.messages.get(thread["id"], first)["metadata"]["i"] == PER_WRITER - 1


def test_parallel_thread_creation_and_listing(tmp_path):
    store = DataFolder(tmp_path)
    with ThreadPoolExecutor(WRITERS) as pool:
        created = list(pool.map(lambda i: store.threads.create(f"t{i}")["id"], range(WRITERS * 2)))
        pages = list(pool.map(lambda _: len(store.threads.list().data), range(8)))
    assert all(0 <= n <= WRITERS * 2 for n in pages)
    assert {t["id"] for t in store.threads.list().data} == set(created)
    assert store.problems == []


def test_lock_wait_times_out(tmp_path):
    store = DataFolder(tmp_path)
    impatient = DataFolder(tmp_path, lock_timeout=0.2, ensure_default_assistant=False)
    thread = store.threads.create("locked")
    path = store.threads_dir / thread["id"] / "messages.jsonl"
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with store._ctx.lock(path):
            held.set()
            done.wait(120)  # (set in the finally below: this bound is only for a test that failed)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeoutError):
            impatient.messages.create(thread["id"], "user", "blocked")
    finally:
        done.set()
        t.join()
    impatient.messages.create(thread["id"], "user", "now fine")
    assert len(store.messages.list(thread["id"]).data) == 1


def _big_appender(root: str, thread_id: str, ready: Any) -> None:
    store = DataFolder(root, ensure_default_assistant=False)
    ready.set()
    i = 0
    while True:
        store.messages.create(thread_id, "user", f"{i}:" + "x" * 2_000_000)
        i += 1


@pytest.mark.skipif(not hasattr(multiprocessing.Process, "kill") or sys.platform == "win32",
                    reason="needs SIGKILL")
def test_writer_killed_mid_append_loses_only_its_last_message(tmp_path):
    store = DataFolder(tmp_path)
    thread = store.threads.create("crash")
    ctx = _mp_context()
    ready = ctx.Event()
    proc = ctx.Process(target=_big_appender, args=(str(tmp_path), thread["id"], ready))
    proc.start()
    assert ready.wait(30)
    path = store.threads_dir / thread["id"] / "messages.jsonl"
    deadline = time.monotonic() + 120  # (a bound only: the loop leaves as soon as 5 MB are written)
    while (not path.exists() or path.stat().st_size < 5_000_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.join(10)
    before = store.messages.list(thread["id"]).data
    numbers = [int(m["content"][0]["text"]["value"].split(":")[0]) for m in before]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 2
    store.messages.create(thread["id"], "user", "after the crash")
    after = store.messages.list(thread["id"]).data
    assert [m["id"] for m in after[:-1]] == [m["id"] for m in before]
    content = read_jsonl(path)
    assert not content.torn_tail and not content.bad_lines
