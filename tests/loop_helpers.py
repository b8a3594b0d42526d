"""Which calls ran on an event loop's thread: what the tests that hold file work and slow renders off the loop
share (:func:`note_on_loop`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable


def note_on_loop(monkeypatch, targets: Iterable[tuple[object, str]]) -> list[str]:
    """Wrap each ``(module_or_class, name)`` of ``targets`` (undone by ``monkeypatch`` after the test) so that a call
    made on a thread running an event loop appends the function's ``__name__`` to the returned list; calls from
    worker threads pass unnoted."""
    on_loop: list[str] = []

    def watched(fn: Callable) -> Callable:
        def run(*args, **kwargs):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                on_loop.append(fn.__name__)
            return fn(*args, **kwargs)
        return run

    for owner, name in targets:
        monkeypatch.setattr(owner, name, watched(getattr(owner, name)))
    return on_loop
