"""Work started in the background and never awaited says when it fails: one warning naming it.

A lease released in a worker thread (``Leases.release_soon``) that failed with anything but ``OSError`` was told
only by asyncio's "exception was never retrieved" (at garbage collection, naming no lease), and not at all where a
stop gathered the releases with ``return_exceptions=True`` (the batches' stop); a conversation's claim let go in a
task of its own alike."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jan.background import report_failure
from jan.server.dialects.conversation_locks import ConversationLocks
from jan.store import leases as leases_module
from jan.store.leases import Leases


class Broken(Exception):
    pass


@pytest.fixture
def unlink_raises(monkeypatch):
    """Removing a lease file fails with no ``OSError`` (a bug, a file system layer's own exception)."""
    def unlink(path, *args, **kwargs):
        raise Broken(f"cannot remove {path}")

    monkeypatch.setattr(leases_module.os, "unlink", unlink)


def _warnings_naming(caplog, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


async def test_a_background_release_that_fails_is_one_warning_naming_the_lease_and_the_hold_goes(
        tmp_path, caplog, unlink_raises):
    leases = Leases(tmp_path / ".live")
    leases.take("resp_one")
    leases.take("batch_two")
    caplog.set_level(logging.WARNING)
    done = leases.release_soon("resp_one")
    assert done is not None
    await asyncio.wait([done])
    # (a stop gathering its releases this way dropped the failure without a word)
    await asyncio.gather(leases.release_soon("batch_two"), return_exceptions=True)
    for key in ("resp_one", "batch_two"):
        told = _warnings_naming(caplog, repr(key))
        assert len(told) == 1, [r.getMessage() for r in caplog.records]
        assert "Broken" in told[0].getMessage() and "releasing the lease" in told[0].getMessage()
        # the hold is let go all the same: this process holds it no more, and a new lock on it is granted
        assert not leases.holds(key)
        assert Leases(tmp_path / ".live").try_take(key)


def test_a_release_done_at_once_without_a_loop_is_told_too(tmp_path, caplog, unlink_raises):
    leases = Leases(tmp_path / ".live")
    leases.take("resp_three")
    caplog.set_level(logging.WARNING)
    assert leases.release_soon("resp_three") is None  # (no running loop: released here)
    assert len(_warnings_naming(caplog, "'resp_three'")) == 1
    assert not leases.holds("resp_three")


async def test_a_conversation_claim_let_go_in_the_background_that_fails_is_told_and_the_hold_freed(caplog):
    def unclaim(conversation_id: str) -> None:
        raise Broken("the claim file cannot be removed")

    async def claim(conversation_id: str) -> bool:
        return True

    locks = ConversationLocks(claim, unclaim)
    caplog.set_level(logging.WARNING)
    hold = await locks.take("conv_1")
    await asyncio.wait_for(hold.let_go(), 30)  # (a guard against a hang, never a measure)
    assert not locks.held("conv_1")
    for _ in range(10):  # (the task's callbacks run a loop turn after its end: let them)
        if _warnings_naming(caplog, "'conv_1'"):
            break
        await asyncio.sleep(0)
    told = _warnings_naming(caplog, "'conv_1'")
    assert len(told) == 1 and "Broken" in told[0].getMessage(), [r.getMessage() for r in caplog.records]


async def test_report_failure_says_nothing_of_success_or_a_cancel(caplog):
    caplog.set_level(logging.WARNING)
    fine = report_failure(asyncio.ensure_future(asyncio.sleep(0)), "fine work")
    stopped = report_failure(asyncio.ensure_future(asyncio.sleep(3600)), "stopped work")
    stopped.cancel()
    await asyncio.wait([fine, stopped])
    await asyncio.sleep(0)
    assert not _warnings_naming(caplog, "work")
