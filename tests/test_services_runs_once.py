"""``Services.runs`` (the run service, made on first use) is one object whoever asks for it first, many threads at
once included: ``functools.cached_property`` has no lock since Python 3.12, so each of them could build one."""

from __future__ import annotations

import threading

import pytest

from jan.core import ExtensionManager, LocalEventBus

BOUND = 60


def test_services_runs_is_made_once_when_many_threads_ask_first_at_once(tmp_path, monkeypatch):
    import jan.services.runs as runs_module
    from jan.services.container import Services

    threads = 16
    arrived = threading.Semaphore(0)
    made: list[object] = []
    failing = [True]

    class Made:
        def __init__(self, *args, **kwargs):
            if failing[0]:
                failing[0] = False
                raise RuntimeError("the first build fails")
            # the build ends only once every other thread has come to ask (threads 1.. tell as they do): without
            # the lock each of them would build one too
            for _ in range(threads - 1):
                assert arrived.acquire(timeout=BOUND)
            made.append(self)

    monkeypatch.setattr(runs_module, "RunService", Made)
    services = Services.from_manager(ExtensionManager(tmp_path / "data", LocalEventBus()))
    assert not services.has_runs
    with pytest.raises(RuntimeError, match="first build"):
        services.runs  # noqa: B018 - what the build raises reaches the caller; nothing is kept
    assert not services.has_runs

    start = threading.Barrier(threads)
    got: list[object] = [None] * threads

    def touch(i: int) -> None:
        start.wait(BOUND)
        if i:
            arrived.release()
        got[i] = services.runs

    workers = [threading.Thread(target=touch, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(BOUND)
    assert len(made) == 1 and all(g is made[0] for g in got)
    assert services.has_runs and services.runs is made[0]
