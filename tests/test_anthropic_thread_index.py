"""The index files of Anthropic message threads (``<data>/message_threads/<msg_id>.json``) live as long as their Jan
thread: deleting the thread removes them, and a sweep at server start removes the ones whose thread is gone (deleted
behind the server's back), whose root is lost (damaged, set aside), and the temporary files interrupted writes left.
Checked on the files and on the protocol (a ``continue`` of a kept reply still works), never timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from jan.core import ConversationalExtension
from jan.server.keys import MANAGER
from jan.server.routes.anthropic import THREADS
from jan.store import DataFolder
from jan.testing.server import free_port
from server_helpers import start_server

BETA = {"anthropic-beta": "message-threads-2026-08-12"}


@pytest.fixture(scope="module")
def models(stories_path):
    return [stories_path]


def _post(server, body: dict) -> tuple[int, dict]:
    response = httpx.post(server.base_url + "/v1/messages", json={"model": "stories260K", "max_tokens": 2,
                                                                  "temperature": 0, **body}, headers=BETA, timeout=120)
    return response.status_code, response.json()


def _thread(server, title: str, turns: int = 2) -> tuple[str, list[str]]:
    """A held thread of ``turns`` replies: its Jan thread's id and the replies' ids."""
    status, reply = _post(server, {"messages": [{"role": "user", "content": title}], "thread": {"type": "create"}})
    assert status == 200, reply
    ids = [reply["id"]]
    for n in range(turns - 1):
        status, reply = _post(server, {"messages": [{"role": "user", "content": f"more {n}"}],
                                       "thread": {"type": "continue", "previous_message_id": ids[-1]}})
        assert status == 200, reply
        ids.append(reply["id"])
    return _index(server, ids[0])["thread_id"], ids


def _folder(server):
    return server.config.data_folder / "message_threads"


def _index(server, message_id: str) -> dict:
    return json.loads((_folder(server) / f"{message_id}.json").read_text())


def _held(server) -> set[str]:
    return {p.stem for p in _folder(server).glob("*.json")}


def _goes_on(server, message_id: str) -> int:
    return _post(server, {"messages": [{"role": "user", "content": "on"}],
                          "thread": {"type": "continue", "previous_message_id": message_id}})[0]


def test_deleting_the_jan_thread_removes_its_index_files(tmp_path, models):
    server = start_server(tmp_path, models)
    try:
        kept_thread, kept = _thread(server, "Kept")
        api_thread, by_api = _thread(server, "Deleted by the API", turns=3)
        store_thread, by_store = _thread(server, "Deleted through the store")
        assert set(kept + by_api + by_store) <= _held(server)
        # DELETE /v1/threads/{id} (what the web page sends): every index file of the thread goes, at once
        assert httpx.delete(f"{server.base_url}/v1/threads/{api_thread}", timeout=120).status_code == 200
        assert not set(by_api) & _held(server)
        # any deletion through the conversation store (a run's cleanup, an extension) does the same
        conversations = server.app[MANAGER].get(ConversationalExtension)
        server.call(conversations.delete_thread(store_thread))
        assert not set(by_store) & _held(server)
        # the other thread is untouched and goes on; a reply of a deleted one is a thread_not_found, as before
        assert set(kept) <= _held(server) and _index(server, kept[-1])["thread_id"] == kept_thread
        assert _goes_on(server, kept[-1]) == 200
        status, err = _post(server, {"messages": [{"role": "user", "content": "x"}],
                                     "thread": {"type": "continue", "previous_message_id": by_api[-1]}})
        assert status == 404 and err["error"]["details"] == {"error_code": "thread_not_found"}
    finally:
        server.stop()


def test_the_sweep_needs_a_conversation_store_to_tell_a_thread_gone(tmp_path, models):
    server = start_server(tmp_path, models)
    try:
        thread_id, ids = _thread(server, "Behind the server's back")
        # deleted in the data folder directly (another process, `jan` itself while stopped): no event reaches
        # the server, the files stay until a sweep
        DataFolder(server.config.data_folder).threads.delete(thread_id)
        assert set(ids) <= _held(server)
        threads = server.app[THREADS]
        assert httpx.post(server.base_url + "/v1/extensions/conversational/disable", json={},
                          timeout=120).status_code == 200
        try:
            assert server.call(threads.sweep()) == [] and set(ids) <= _held(server)  # nothing can tell: kept
        finally:
            assert httpx.post(server.base_url + "/v1/extensions/conversational/enable", json={},
                              timeout=120).status_code == 200
        assert sorted(server.call(threads.sweep())) == sorted(ids) and not set(ids) & _held(server)
    finally:
        server.stop()


def test_the_start_sweep_removes_what_no_thread_holds(tmp_path, models):
    port = free_port()
    server = start_server(tmp_path, models, port=port)
    try:
        kept_thread, kept = _thread(server, "Kept")
        gone_thread, gone = _thread(server, "Deleted while stopped")
        _, rootless = _thread(server, "Its root damaged", turns=3)
    finally:
        server.stop()
    folder = tmp_path / "data" / "message_threads"
    DataFolder(tmp_path / "data").threads.delete(gone_thread)
    (folder / f"{rootless[0]}.json").write_text("{not json", encoding="utf-8")
    # temporary files of atomic writes: one a dead process left, one a live writer (this process) is writing
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = folder / f".{kept[0]}.json.p{dead.pid}.abc123.tmp"
    live = folder / f".{kept[0]}.json.p{os.getpid()}.def456.tmp"
    stale.write_text("{}")
    live.write_text("{}")
    server = start_server(tmp_path, models, port=port)
    try:
        held = _held(server)
        assert set(kept) <= held
        assert not set(gone) & held  # the Jan thread is gone
        assert not set(rootless) & held  # the root is lost (set aside, and kept as such): the thread can't go on
        assert list(folder.glob(f"{rootless[0]}.json.corrupt-*"))
        assert not stale.exists() and live.exists()
        # the kept thread goes on, and its deletion now finds its files (the sweep remembered them)
        assert _goes_on(server, kept[-1]) == 200
        assert httpx.delete(f"{server.base_url}/v1/threads/{kept_thread}", timeout=120).status_code == 200
        assert not set(kept) & _held(server) and not _held(server)
    finally:
        server.stop()
