"""jan.core.locks.KeyedLocks: the one lock-per-key table (a conversation's appends, a model's loads, a thread's run
claims). A key's lock lives while somebody holds it or waits for it and is gone after; everybody asking for a key
meanwhile gets the same lock, threads racing to ask included."""

from __future__ import annotations

import asyncio
import gc
import threading

from jan.core.locks import KeyedLocks


def test_a_lock_is_dropped_once_nobody_uses_it():
    locks = KeyedLocks()

    async def main():
        for i in range(200):
            async with locks(f"k{i}"):
                assert f"k{i}" in locks
        gc.collect()
        assert len(locks) == 0

    asyncio.run(main())


def test_concurrent_holders_share_one_lock_and_exclude_each_other():
    locks = KeyedLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []

    async def worker(name: str, release: asyncio.Event):
        async with locks("k"):
            if inside:
                overlaps.append((inside[0], name))
            inside.append(name)
            await release.wait()
            inside.remove(name)

    async def main():
        release = asyncio.Event()
        first = asyncio.create_task(worker("a", release))
        await asyncio.sleep(0)
        assert locks("k").locked()
        waiters = [asyncio.create_task(worker(n, release)) for n in "bcd"]
        for _ in range(5):
            await asyncio.sleep(0)
        assert inside == ["a"]  # the waiters wait on the holder's lock, not on fresh ones
        assert len(locks) == 1
        release.set()
        await asyncio.gather(first, *waiters)
        assert overlaps == []
        gc.collect()
        assert len(locks) == 0

    asyncio.run(main())


def test_other_keys_do_not_wait():
    locks = KeyedLocks()

    async def main():
        async with locks("a"):
            assert not locks("b").locked()
            async with locks("b"):
                pass

    asyncio.run(main())


def test_threads_asking_at_once_get_the_same_lock():
    """Lookup, creation and the weak table's drop are one step: a check-then-set would hand two threads racing
    for a new key two different locks (each excluding nothing)."""
    locks = KeyedLocks()
    threads = 8
    for round_ in range(50):
        barrier = threading.Barrier(threads)
        got: list[object] = [None] * threads

        def ask(i: int, key: str = f"r{round_}") -> None:
            barrier.wait()
            got[i] = locks(key)
            barrier.wait()  # every thread still references its lock here: all must be the one lock

        workers = [threading.Thread(target=ask, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert all(g is got[0] for g in got), f"round {round_}: {len({id(g) for g in got})} locks for one key"
        got.clear()
    gc.collect()
    assert len(locks) == 0


def test_the_lock_kind_is_the_callers():
    class Counted:  # any lock-like object that accepts weak references
        made = 0

        def __init__(self):
            Counted.made += 1

    locks = KeyedLocks(Counted)
    one = locks("x")
    assert isinstance(one, Counted) and locks("x") is one and Counted.made == 1
    del one
    gc.collect()
    assert len(locks) == 0
    locks("x")
    assert Counted.made == 2


# -- the data folder's lock file stripes ------------------------------------------------------------------------
def test_the_stripes_of_lock_files_are_let_go_once_nobody_holds_them(tmp_path):
    """The process kept an object per lock file (a thread lock, a file lock) of every data folder it ever wrote in,
    a deleted one's too: a long-lived library user opening folder after folder grew by up to 256 per folder. Only
    those held (or about to be) are kept; a stripe held is still the one every holder of its file shares."""
    import jan.core.locks as locks
    from jan.core.locks import LockManager

    gc.collect()
    before = len(locks._registry)
    for n in range(4):
        manager = LockManager(tmp_path / f"folder{n}" / ".locks")
        for key in range(20):
            with manager.hold(f"threads/t{key}"):
                pass
    gc.collect()
    assert len(locks._registry) <= before, len(locks._registry)

    manager = LockManager(tmp_path / "shared" / ".locks")
    inside, go_on, second = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with manager.hold("threads/x"):
            inside.set()
            go_on.wait(30)

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(30)
    gc.collect()  # (the held stripe survives a collection: its holder references it)

    def other() -> None:
        with manager.hold("threads/x"):
            second.set()

    waiter = threading.Thread(target=other)
    waiter.start()
    assert not second.wait(0.3), "a second holder of a held lock file's stripe went in"
    go_on.set()
    assert second.wait(30)
    holder.join(30)
    waiter.join(30)


def test_the_thread_claims_of_folders_no_longer_used_are_let_go(tmp_path):
    """(the claims of each data folder the process ever claimed a thread in were kept for its life too)"""
    import jan.services.thread_claims as claims_module

    async def claim(folder) -> None:
        async with claims_module.thread_claims(folder).lock("thread_x"):
            assert claims_module.thread_claims(folder) is claims_module.thread_claims(folder)

    gc.collect()
    before = len(claims_module._CLAIMS)
    for n in range(4):
        asyncio.run(claim(tmp_path / f"folder{n}"))
    gc.collect()
    assert len(claims_module._CLAIMS) <= before, list(claims_module._CLAIMS)
