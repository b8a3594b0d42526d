"""A run waiting in ``requires_action`` expires, as OpenAI's: it carries ``expires_at`` (10 minutes on), and once that
passes unanswered it is ``expired`` — read, listed, answered, or found by the sweep, also after a restart — its tool
step ``expired``, its thread free, its late outputs refused."""

from __future__ import annotations

import time

import pytest
from api_helpers import Client, running
from jan.server.keys import SERVICES
from jan.services.run_records import load_record, save_record
from jan.services.runs import REQUIRES_ACTION_EXPIRY_S
from jan.store._util import now_s
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)

FORCED = {"tool_choice": {"type": "function", "function": {"name": "notes__list_notes"}}, "max_tokens": 60,
          "temperature": 0, "parallel_tool_calls": False}


def serve(data, tool_model, notes):
    write_mcp_config(data, {"notes": stdio_entry(notes)})
    return running(data, tool_model, n_ctx=4096)


async def forced_run(api: Client) -> tuple[str, dict]:
    """(thread id, run) of a run forced to call the notes server's tool, as its leg ended."""
    assistant = await api.ok("POST", "/v1/assistants", {"model": "qwen3-tools",
                                                        "tools": [{"type": "mcp", "server_label": "notes"}]})
    thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                  "messages": [{"role": "user", "content": "What notes?"}]})
    return thread["id"], await run_to_end(api, f"/v1/threads/{thread['id']}/runs", FORCED)


async def waiting_run(api: Client) -> tuple[str, dict]:
    tid, run = await forced_run(api)
    assert run["status"] == "requires_action", run
    return tid, run


async def assert_expired(api: Client, tid: str, run: dict) -> None:
    got = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
    assert got["status"] == "expired" and got["expires_at"] is None and got["required_action"] is None, got
    assert got["usage"] is not None  # terminal: its usage told
    listed = (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"]
    assert [r["status"] for r in listed if r["id"] == run["id"]] == ["expired"]
    steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps"))["data"]
    assert [s["status"] for s in steps if s["type"] == "tool_calls"] == ["expired"], steps
    # late outputs are refused, and the thread is free again
    [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    status, err = await api.post(f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                 {"tool_outputs": [{"tool_call_id": call["id"], "output": "x"}]})
    assert status == 400 and err["error"]["code"] == "run_not_waiting" and "expired" in err["error"]["message"], err
    status, err = await api.post(f"/v1/threads/{tid}/runs/{run['id']}/cancel", {})
    assert status == 400 and err["error"]["code"] == "run_not_active", err  # ended: nothing to cancel
    await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "still there?"})


async def test_a_waiting_run_tells_when_it_expires_and_expires_when_read(tmp_path, tool_model):
    with serve(tmp_path / "data", tool_model, notes_folder(tmp_path)) as srv:
        runs = srv.app[SERVICES].runs
        async with Client(srv.base_url) as api:
            before = int(time.time())
            tid, run = await waiting_run(api)
            # (the server's times come from the data folder's clock, which may run a millisecond ahead of the wall
            # clock, into the next second: the bound after is that clock's, not time.time's)
            assert before + REQUIRES_ACTION_EXPIRY_S <= run["expires_at"] <= now_s() + REQUIRES_ACTION_EXPIRY_S
            # its time passes (as if ten minutes went by): the next read ends it
            runs.get(tid, run["id"]).expires_at = int(time.time()) - 1
            await assert_expired(api, tid, run)

            # the time a service gives is its own (a test's short one): run as is, read at once, it has expired
            runs.expire_after = 0
            tid, run = await waiting_run_or_expired(api)
            await assert_expired(api, tid, run)


async def waiting_run_or_expired(api: Client) -> tuple[str, dict]:
    """A run whose time to wait is 0: its leg ends waiting, and the poll that saw that may already find it expired."""
    tid, run = await forced_run(api)
    assert run["status"] == "expired", run
    steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps"))["data"]
    call = next(s for s in steps if s["type"] == "tool_calls")["step_details"]["tool_calls"][0]
    run["required_action"] = {"submit_tool_outputs": {"tool_calls": [call]}}
    return tid, run


async def test_the_sweep_expires_runs_nobody_reads_also_after_a_restart(tmp_path, tool_model):
    data, notes = tmp_path / "data", notes_folder(tmp_path)
    with serve(data, tool_model, notes) as srv:
        runs = srv.app[SERVICES].runs
        async with Client(srv.base_url) as api:
            tid, run = await waiting_run(api)
            runs.get(tid, run["id"]).expires_at = int(time.time()) - 1
            assert srv.call(runs.expire_due()) == 1  # the sweep, no request about the run
            assert load_record(data, tid, run["id"])["status"] == "expired"
            tid2, run2 = await waiting_run(api)
    # stopped with a run waiting; its time passes while jan is down
    record = load_record(data, tid2, run2["id"])
    assert record["status"] == "requires_action" and record["expires_at"] == run2["expires_at"]
    save_record(data, {**record, "expires_at": int(time.time()) - 1})
    with serve(data, tool_model, notes) as srv:
        # the start-up sweep ends it, no request needed (bounded wait: it runs beside the first requests)
        deadline = time.monotonic() + 60
        while load_record(data, tid2, run2["id"])["status"] != "expired":
            assert time.monotonic() < deadline, "the start-up sweep did not expire the run"
            time.sleep(0.05)
        async with Client(srv.base_url) as api:
            await assert_expired(api, tid2, run2)
