"""Runs over HTTP in tests: waiting for them — a run not streamed is answered at once (``queued``) and goes on
server-side, as OpenAI's; a test that needs its end polls ``GET .../runs/{run_id}`` for it (the SDK's ``runs.poll``) —
and reading their streams: the steps and tool calls a stream told, its ``thread.run.step.delta`` pieces added up as
the SDK's stream helpers add them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from api_helpers import parse_sse

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


async def until_writing(api: Any, thread_id: str, run_id: str, wait_s: float = RUN_WAIT_S) -> None:
    """Wait (asked every 50 ms, for up to ``wait_s``) until the run's turn has written something: its
    ``message_creation`` step exists, made at the turn's first piece. A test that cancels a run and looks at the reply
    it kept waits for this first: a run cancelled before it wrote anything keeps no reply (OpenAI's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        steps = (await api.ok("GET", f"/v1/threads/{thread_id}/runs/{run_id}/steps"))["data"]
        if any(step["type"] == "message_creation" for step in steps):
            return
        assert loop.time() < deadline, f"run {run_id} wrote nothing in {wait_s} s"
        await asyncio.sleep(0.05)


# -- a run's stream -------------------------------------------------------------------------------------------------
async def streamed(api: Any, path: str, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """POST ``body`` streamed (a run, ``submit_tool_outputs``, ``resume``) and read its whole stream:
    ``api_helpers.parse_sse``'s ``[(event name, data)]``."""
    async with api.session.post(api.base + path, json={**body, "stream": True}) as resp:
        assert resp.status == 200
        return parse_sse(await resp.text())


def add_call_pieces(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    """Add a ``thread.run.step.delta``'s tool-call pieces to ``calls`` (a step's, in order) as the SDK's stream helpers
    add them: a call's first piece its ``id``, ``type`` and ``name`` (``arguments`` ``""``), then pieces of its
    ``arguments``."""
    for piece in delta["delta"]["step_details"]["tool_calls"]:
        if piece["index"] == len(calls):  # a call's first piece: its id, type and name
            head = {k: v for k, v in piece.items() if k != "index"}
            calls.append({**head, "function": dict(piece["function"])})
        else:  # then pieces of its arguments
            calls[piece["index"]]["function"]["arguments"] += piece["function"]["arguments"]


def told_calls(events: Iterable[tuple[str | None, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each step's tool calls as its ``thread.run.step.delta`` pieces alone add up (by step id): what a stream's
    listener learns of the calls while they are generated."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, data in events:
        if name == "thread.run.step.delta":
            add_call_pieces(out.setdefault(data["id"], []), data)
    return out


def streamed_steps(events: Iterable[tuple[str | None, Any]],
                   fields: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each step the stream told of, as its last event left it (by id, in the order they were created), its tool
    calls' ``thread.run.step.delta`` pieces added up (:func:`add_call_pieces`). Each step event is checked to be
    named for its step's status, and a step object to have exactly ``fields`` (when given); each delta to be a
    ``thread.run.step.delta`` object."""
    out: dict[str, dict[str, Any]] = {}
    for name, data in events:
        if name == "thread.run.step.delta":
            assert data["object"] == "thread.run.step.delta" and set(data) == {"id", "object", "delta"}, data
            add_call_pieces(out[data["id"]]["step_details"]["tool_calls"], data)
            continue
        if name and name.startswith("thread.run.step."):
            assert data["object"] == "thread.run.step" and (fields is None or set(data) == fields), data
            assert name == f"thread.run.step.{data['status']}" or name == "thread.run.step.created", (name, data)
            out[data["id"]] = data
    return out

