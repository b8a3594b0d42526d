"""OpenAI's "modify run" (``POST /v1/threads/{thread_id}/runs/{run_id}``, the SDK's ``runs.update``): a run's
``metadata`` replaced on a finished run and on one still generating, saved for good (a restart reads it), with
OpenAI's metadata rules and error shape."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from api_helpers import Client, running
from cut_off_helpers import LONG, LONG_N_CTX
from run_helpers import until_writing, wait_for_run

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"


async def _thread(api: Client) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]


async def test_the_sdk_updates_a_finished_runs_metadata_and_a_restart_keeps_it(tmp_path, stories_path):
    openai = pytest.importorskip("openai")
    with running(tmp_path / "data", stories_path) as srv:
        client = openai.AsyncOpenAI(base_url=srv.base_url + "/v1", api_key="unused")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": STORY}])
            run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="jan",
                                                                 max_completion_tokens=4, metadata={"a": "1"},
                                                                 poll_interval_ms=50)
            updated = await client.beta.threads.runs.update(run.id, thread_id=thread.id,
                                                            metadata={"reviewed": "yes", "by": "me"})
            assert updated.id == run.id and updated.status == run.status
            assert updated.metadata == {"reviewed": "yes", "by": "me"}  # replaced, as OpenAI's
            again = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
            assert again.metadata == {"reviewed": "yes", "by": "me"}
            listed = await client.beta.threads.runs.list(thread.id)
            assert listed.data[0].metadata == {"reviewed": "yes", "by": "me"}
        await client.close()
    with running(tmp_path / "data", stories_path) as srv:  # a new process reads the run's record
        async with Client(srv.base_url) as api:
            got = await api.ok("GET", f"/v1/threads/{thread.id}/runs/{run.id}")
            assert got["metadata"] == {"reviewed": "yes", "by": "me"}
            # left out: the run as it is; null: emptied
            same = await api.ok("POST", f"/v1/threads/{thread.id}/runs/{run.id}", {})
            assert same["metadata"] == {"reviewed": "yes", "by": "me"}
            patched = await api.ok("PATCH", f"/v1/threads/{thread.id}/runs/{run.id}", {"metadata": {"p": "1"}})
            assert patched["metadata"] == {"p": "1"}  # PATCH as on threads, messages and assistants
            emptied = await api.ok("POST", f"/v1/threads/{thread.id}/runs/{run.id}", {"metadata": None})
            assert emptied["metadata"] == {}
            assert (await api.ok("GET", f"/v1/threads/{thread.id}/runs/{run.id}"))["metadata"] == {}


async def test_a_change_made_while_the_run_generates_outlasts_the_runs_own_saves(tmp_path, stories_path):
    # The run goes on until the test cancels it (LONG tokens, ignore_eos, in a context that fits them) and the change
    # comes once it writes its reply, checked in_progress: before, nothing checked the run still generated then (1800
    # tokens, EOS allowed, in ~0.2 s on a fast core), and a run ended first passed without any save of its own after
    # the change (with the change made to a copy of the run, the old test still passed had the run ended first).
    with running(tmp_path / "data", stories_path, n_ctx=LONG_N_CTX, n_parallel=1) as srv:
        async with Client(srv.base_url) as api:
            tid = await _thread(api)
            run = await api.ok("POST", f"/v1/threads/{tid}/runs",
                               {"assistant_id": "jan", "max_tokens": LONG, "ignore_eos": True, "metadata": {"x": "0"}})
            await until_writing(api, tid, run["id"])  # generating: its reply is being written
            changed = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}", {"metadata": {"x": "1"}})
            assert changed["status"] == "in_progress" and changed["metadata"] == {"x": "1"}
            await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")  # its end saves it once more
            ended = await wait_for_run(api, tid, run["id"])
            assert ended["status"] == "cancelled" and ended["metadata"] == {"x": "1"}
    with running(tmp_path / "data", stories_path) as srv:
        async with Client(srv.base_url) as api:
            assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["metadata"] == {"x": "1"}


@pytest.mark.parametrize("body, param", [
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),  # OpenAI: at most 16 pairs
    ({"metadata": {"k": 1}}, "metadata"),  # values are strings
    ({"metadata": {"k" * 65: "v"}}, "metadata"),  # keys up to 64 characters
    ({"metadata": "tag"}, "metadata"),
    ({"status": "completed"}, "status"),  # only metadata may change
])
async def test_bad_changes_are_400s_in_openais_shape_and_change_nothing(tmp_path, stories_path, body, param):
    with running(tmp_path / "data", stories_path) as srv:
        async with Client(srv.base_url) as api:
            tid = await _thread(api)
            run = await api.ok("POST", f"/v1/threads/{tid}/runs",
                               {"assistant_id": "jan", "max_completion_tokens": 2, "metadata": {"keep": "me"}})
            await wait_for_run(api, tid, run["id"])
            status, error = await api.call("POST", f"/v1/threads/{tid}/runs/{run['id']}", body)
            assert status == 400, error
            assert error["error"]["type"] == "invalid_request_error" and error["error"]["param"].startswith(param)
            assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["metadata"] == {"keep": "me"}
            status, error = await api.call("POST", f"/v1/threads/{tid}/runs/run_nope", {"metadata": {}})
            assert status == 404 and "run_nope" in error["error"]["message"]
            status, error = await api.call("POST", f"/v1/threads/thread_nope/runs/{run['id']}", {"metadata": {}})
            assert status == 404


def test_a_run_another_process_is_running_is_refused_not_overwritten(tmp_path, monkeypatch):
    """A copy of a run read from disk while another process sharing the data folder runs it: that process saves its
    own copy of the record as it goes, so the change would be lost; it is refused instead."""
    from jan.services import runs as runs_module
    from jan.services.errors import RequestError

    service = object.__new__(runs_module.RunService)
    service._runs = {}

    class Folder:
        data_folder = tmp_path

    service.manager = Folder()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def no_lock(thread_id):
        yield

    service._thread_lock = no_lock
    monkeypatch.setattr(runs_module, "running_elsewhere", lambda data, run_id: True)
    run = runs_module.Run("thread_1", "jan", "m", "", {}, {"old": "1"})
    with pytest.raises(RequestError) as raised:
        asyncio.run(service.modify(run, {"new": "2"}))
    assert raised.value.code == "run_held_elsewhere" and run.metadata == {"old": "1"}
