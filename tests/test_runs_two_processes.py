"""Two ``jan`` servers on one data folder: one run at a time per thread holds across processes too.

Each server checks that no run holds a thread and claims it under a file lock that both respect, held until the
claiming run's record is on disk, where the other server's check reads it as holding the thread (live and leased).
So two ``POST .../runs`` sent to both at once start exactly one run, and the thread gets exactly one reply.
"""

from __future__ import annotations

import asyncio

import pytest
from api_helpers import Client, ServerProcess, read_jsonl
from run_helpers import until_writing

pytestmark = pytest.mark.timeout(600)

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"
ROUNDS = 5
# Long (ignore_eos): the winner still holds its thread when the loser's request comes, so a second run
# starting is the fault, never a run started after the first one legitimately ended. The test cancels it.
LONG_RUN = {"background": True, "max_tokens": 4000, "ignore_eos": True}


async def until_ended(api: Client, tid: str, run_id: str, wait_s: float = 120.0) -> dict:
    """The run once it no longer generates (asked every 50 ms, for up to ``wait_s``: a busy 2-core machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        if run["status"] not in ("queued", "in_progress"):
            return run
        assert loop.time() < deadline, f"run {run_id} still {run['status']} after {wait_s} s"
        await asyncio.sleep(0.05)


async def test_two_servers_never_both_start_a_run_on_one_thread(tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as one, ServerProcess(data, stories_path, n_ctx=8192) as two:
        async with Client(one.base_url) as api_one, Client(two.base_url) as api_two:
            apis = (api_one, api_two)
            for round_ in range(ROUNDS):
                thread = await api_one.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]})
                tid = thread["id"]
                answers = await asyncio.gather(*(api.post(f"/v1/threads/{tid}/runs", LONG_RUN) for api in apis))
                won = [i for i, (status, _) in enumerate(answers) if status == 200]
                assert len(won) == 1, (round_, answers)
                winner, loser = won[0], 1 - won[0]
                run = answers[winner][1]
                status, body = answers[loser]
                assert status == 400, (round_, answers)
                error = body["error"]
                assert error["code"] == "run_active" and error["param"] == "thread_id", (round_, body)
                assert run["id"] in error["message"], (round_, body)  # refused because of the run that won

                # the loser sees the winner's run as holding the thread afterwards too
                again, body = await apis[loser].post(f"/v1/threads/{tid}/runs", LONG_RUN)
                assert again == 400 and body["error"]["code"] == "run_active", (round_, body)

                await until_writing(apis[winner], tid, run["id"])  # (cancelled before, it would keep no reply)
                await apis[winner].ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
                ended = await until_ended(apis[winner], tid, run["id"])
                assert ended["status"] == "cancelled", ended

                stored = read_jsonl(data / "threads" / tid / "messages.jsonl")
                assert [m["role"] for m in stored] == ["user", "assistant"], (round_, stored)
                assert stored[1]["run_id"] == run["id"]
                runs = await apis[loser].ok("GET", f"/v1/threads/{tid}/runs")
                assert [r["id"] for r in runs["data"]] == [run["id"]], (round_, runs)


async def test_a_cancel_sent_to_the_other_server_stops_the_run(tmp_path, stories_path):
    """The server not running the run records the cancel on disk; the one running it hears it and stops the run;
    the cancel is answered with the run as it ended (its reply saved with what it had), and the thread is free."""
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as one, ServerProcess(data, stories_path, n_ctx=8192) as two:
        async with Client(one.base_url) as api_one, Client(two.base_url) as api_two:
            thread = await api_one.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]})
            tid = thread["id"]
            # not streamed: answered at once, it runs on in server one
            run = await api_one.ok("POST", f"/v1/threads/{tid}/runs", {"max_tokens": 8000, "ignore_eos": True})
            assert run["status"] in ("queued", "in_progress"), run
            seen = await api_two.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
            assert seen["status"] in ("queued", "in_progress"), seen  # server two reads it as live, not orphaned
            await until_writing(api_one, tid, run["id"])  # (cancelled before it wrote anything, it keeps no reply)
            # its events are server one's: server two waited for them for ever (the bound only guards the test)
            status, body = await asyncio.wait_for(api_two.call("GET", f"/v1/threads/{tid}/runs/{run['id']}/events"),
                                                  120)
            assert status == 400 and body["error"]["code"] == "run_held_elsewhere", body
            assert "another jan process" in body["error"]["message"], body

            answer = await api_two.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
            # (answered once the run ended; on a machine too busy for the bounded wait, it ends soon after)
            ended = answer if answer["status"] not in ("queued", "in_progress") \
                else await until_ended(api_two, tid, run["id"])
            assert ended["status"] == "cancelled", ended
            if answer is ended:
                assert answer["message"]["status"] == "incomplete", answer
                assert answer["message"]["metadata"]["stop_reason"] == "cancelled", answer
            assert (await until_ended(api_one, tid, run["id"]))["status"] == "cancelled"
            stored = read_jsonl(data / "threads" / tid / "messages.jsonl")
            assert [m["role"] for m in stored] == ["user", "assistant"]
            assert stored[1]["status"] == "stopped" and stored[1]["metadata"]["stop_reason"] == "cancelled", stored
            assert not list((data / "threads" / tid / "runs").glob("*.cancel"))  # heard, and gone

            # the thread is free, in either server
            again = await api_two.ok("POST", f"/v1/threads/{tid}/runs", {"max_tokens": 2})
            assert (await until_ended(api_two, tid, again["id"]))["status"] in ("completed", "incomplete")
