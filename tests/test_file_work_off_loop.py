"""A lease let go (its file unlinked) when a request ends ran on the event loop: a stored response's lease as the
response ended, an Anthropic thread continue's as its turn ended, a batch's as it ended. On a disk that does not answer (the unlink held
on an event here, no sleeps) every other request stalled with it. Each is now let go in a worker thread: ``/health``
is answered while it waits. (A conversation's own hold: tests/test_responses_conversation_lock.py; mcp.json's look:
tests/test_mcp_host.py.)"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import httpx
import pytest

from jan.store.leases import Leases
from server_helpers import start_server

BOUND = 120.0  # (a generous bound on each wait: a busy 2-core machine)
BETA = {"anthropic-beta": "message-threads-2026-08-12"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("offloop"), [stories_path], n_ctx=1024, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture
def slow_release(monkeypatch):
    """``Leases.release`` of a key starting with ``prefix[0]`` waits for ``unblock`` (once ``entered``)."""
    entered, unblock, prefix = threading.Event(), threading.Event(), [None]
    original = Leases.release

    def release(self, key):
        if prefix[0] is not None and key.startswith(prefix[0]):
            entered.set()
            unblock.wait(BOUND)
        original(self, key)

    monkeypatch.setattr(Leases, "release", release)
    yield entered, unblock, prefix
    unblock.set()  # (a failed test leaves nothing waiting)


def _answered_meanwhile(server, send, slow_release) -> httpx.Response:
    """``send()`` (in a thread) until its lease is being let go, ``/health`` asked meanwhile; its answer."""
    entered, unblock, _ = slow_release
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = pool.submit(send)
        try:
            assert entered.wait(BOUND), "the request never let its lease go"
            # (the loop blocked in the unlink would answer nothing until it returned: BOUND later)
            assert httpx.get(server.base_url + "/health", timeout=BOUND / 4).status_code == 200
        finally:
            unblock.set()
        return sent.result(BOUND)


def test_a_stored_responses_lease_is_let_go_off_the_loop(server, slow_release):
    slow_release[2][0] = "resp_"
    answer = _answered_meanwhile(server, lambda: httpx.post(server.base_url + "/v1/responses", timeout=BOUND, json={
        "model": "stories260K", "input": "Once", "max_output_tokens": 4}), slow_release)
    assert answer.status_code == 200 and answer.json()["status"] in ("completed", "incomplete"), answer.text


def test_an_anthropic_continues_lease_is_let_go_off_the_loop(server, slow_release):
    def post(thread):
        return httpx.post(server.base_url + "/v1/messages", headers=BETA, timeout=BOUND, json={
            "model": "stories260K", "max_tokens": 4, "temperature": 0, "thread": thread,
            "messages": [{"role": "user", "content": "Once"}]})

    first = post({"type": "create"})
    assert first.status_code == 200, first.text
    slow_release[2][0] = "continuing_"
    second = _answered_meanwhile(server, lambda: post({"type": "continue",
                                                       "previous_message_id": first.json()["id"]}), slow_release)
    assert second.status_code == 200, second.text
    # let go once the worker is done: the new reply is continued, the one continued is not again
    third = post({"type": "continue", "previous_message_id": second.json()["id"]})
    assert third.status_code == 200, third.text
    again = post({"type": "continue", "previous_message_id": first.json()["id"]})
    assert again.status_code == 400, again.text


def test_a_batchs_lease_is_let_go_off_the_loop(server, slow_release):
    line = {"custom_id": "one", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "Once"}]}}
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        upload = http.post("/v1/files", data={"purpose": "batch"},
                           files={"file": ("in.jsonl", json.dumps(line).encode(), "application/jsonl")}).json()
        slow_release[2][0] = "batch_"

        def send():
            batch = http.post("/v1/batches", json={"input_file_id": upload["id"], "completion_window": "24h",
                                                   "endpoint": "/v1/chat/completions"})
            assert batch.status_code == 200, batch.text
            return batch

        batch = _answered_meanwhile(server, send, slow_release).json()
        deadline = time.monotonic() + BOUND
        while (batch := http.get(f"/v1/batches/{batch['id']}").json())["status"] != "completed":
            assert batch["status"] not in ("failed", "cancelled", "expired") and time.monotonic() < deadline, batch
            time.sleep(0.05)
        assert batch["request_counts"] == {"total": 1, "completed": 1, "failed": 0}, batch
