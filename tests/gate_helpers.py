"""A generation held mid-way by the test (no sleeps): the next engine request made tells its chunks up to its first
text, then waits for the test to open the gate (:func:`gate_engine`). What the tests of holds on a conversation or a
thread (a response being made in it) share."""

from __future__ import annotations

import asyncio
import threading

from jan.engine.model import Model

WAIT_S = 120  # (the longest a held generation waits for its gate: a test that never opens it fails, not hangs)


class Gate(threading.Event):
    """Holds the next engine request made (one: the others run freely) once it has told some text; ``set()`` lets
    it go on. ``to_hold``: how many requests from now are still to be held (1; set it again to hold another)."""

    def __init__(self):
        super().__init__()
        self.to_hold = 1


class Gated:
    """An engine request that tells chunks up to its first text, then waits for ``gate`` before the rest."""

    def __init__(self, request, gate: Gate | None):
        self._request, self._gate, self._told_text = request, gate, False

    def __getattr__(self, name):
        return getattr(self._request, name)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._told_text and self._gate is not None:
            assert await asyncio.to_thread(self._gate.wait, WAIT_S), "the test never opened the gate"
            self._gate = None
        chunk = await self._request.__anext__()
        self._told_text = self._told_text or bool(chunk.text)
        return chunk


def gate_engine(monkeypatch) -> Gate:
    """Hold the next engine request (``Model.stream``, patched through ``monkeypatch``) at its first text until the
    returned gate is set; set it at the test's end too, so a failed test leaves no generation waiting."""
    gate = Gate()
    original = Model.stream

    def stream(self, prompt, **kw):
        held = gate.to_hold > 0
        gate.to_hold -= 1
        return Gated(original(self, prompt, **kw), gate if held else None)

    monkeypatch.setattr(Model, "stream", stream)
    return gate
