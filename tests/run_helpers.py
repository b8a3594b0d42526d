"""Waiting for runs over HTTP: a run not streamed is answered at once (``in_progress``) and goes on server-side, as
OpenAI's; a test that needs its end polls ``GET .../runs/{run_id}`` for it (the SDK's ``runs.poll``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

#: Statuses a run's leg ends in (on the wire: jan's ``interrupted`` reads ``incomplete``); ``requires_action`` waits
#: for the user, the end of a leg as the SDK's polling helpers take it.
LEG_ENDS = ("requires_action", "completed", "incomplete", "cancelled", "failed", "expired")
#: How long a test waits for a run: generous, a busy 2-core machine.
RUN_WAIT_S = 300.0


async def wait_for_run(api: Any, thread_id: str, run_id: str, wait_s: float = RUN_WAIT_S) -> dict[str, Any]:
    """The run (``GET``, with its ``message``) once its leg ended: asked every 50 ms for up to ``wait_s``.

    ``api`` is ``api_helpers.Client``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        run = await api.ok("GET", f"/v1/threads/{thread_id}/runs/{run_id}")
        if run["status"] in LEG_ENDS:
            return run
        assert loop.time() < deadline, f"run {run_id} still {run['status']} after {wait_s} s"
        await asyncio.sleep(0.05)


async def run_to_end(api: Any, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a run not streamed (``path``: ``.../runs``, ``/v1/threads/runs``, ``.../submit_tool_outputs``,
    ``.../resume``), which answers at once, then wait for the end of its leg (:func:`wait_for_run`)."""
    started = await api.ok("POST", path, body or {})
    assert started["object"] == "thread.run", started
    return await wait_for_run(api, started["thread_id"], started["id"])


def wait_for_run_sync(get: Callable[[str], dict[str, Any]], run: dict[str, Any],
                      wait_s: float = RUN_WAIT_S) -> dict[str, Any]:
    """:func:`wait_for_run` for tests without an event loop: ``run`` as a POST answered it (at once), then as
    ``get(path)`` (a GET's JSON) tells it once its leg ended."""
    path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}"
    deadline = time.monotonic() + wait_s
    while run["status"] not in LEG_ENDS:
        assert time.monotonic() < deadline, f"run {run['id']} still {run['status']} after {wait_s} s"
        time.sleep(0.05)
        run = get(path)
    return run
