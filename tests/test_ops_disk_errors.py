"""A disk that refuses writes — full (ENOSPC, a quota) or read-only (EROFS, forbidden) — is told by name in every
dialect's error shape (507 insufficient_storage / 500 data_folder_unwritable), never "The server had an error";
what was stored stays whole; reads keep working (a read that would also repair the folder serves the repair without
writing it); a run that cannot save its claim fails its request instead of answering a run no disk holds.

The full disk is simulated where jan makes its atomic writes' temporary files (jan.core.fs): appends still succeed,
as they did on a real 2 MB tmpfs filled to the last byte (an append fits in a page the file already has)."""

from __future__ import annotations

import errno
import json
import os
import urllib.request

import pytest
from api_helpers import running

import jan.core.fs
from jan.server.errors import storage_error, to_api_error


@pytest.mark.parametrize("code, status, api_code", [
    (errno.ENOSPC, 507, "insufficient_storage"), (errno.EDQUOT, 507, "insufficient_storage"),
    (errno.EROFS, 500, "data_folder_unwritable"), (errno.EACCES, 500, "data_folder_unwritable"),
])
def test_disk_errors_are_told_by_name(code, status, api_code):
    err = to_api_error(OSError(code, "refused", "/data/threads/.thread.json.p1.x.tmp"))
    assert (err.status, err.code, err.type) == (status, api_code, "server_error")
    assert "/data/threads" in err.message and "intact" in err.message
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(code, "refused")
    assert storage_error(wrapped).status == status


@pytest.mark.parametrize("code", [errno.EISDIR, errno.ENOTDIR, errno.EIO])
def test_a_path_that_cannot_be_read_is_named(code):
    err = to_api_error(OSError(code, os.strerror(code), "/data/threads/t/thread.json"))
    assert (err.status, err.code) == (500, "data_folder_unreadable")
    assert "/data/threads/t/thread.json" in err.message


def test_a_folder_in_a_files_place_is_a_named_error_for_every_read_and_write_of_it(tmp_path, stories_path):
    """A hand (or a restore tool) leaves a folder where jan keeps a file: every request on that resource answers
    the path and the reason (was a 500 'The server had an error' with a traceback); the others work."""
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        _, broken = _call(base, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]})
        _, headless = _call(base, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]})
        _, whole = _call(base, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]})
    for thread, name in ((broken, "messages.jsonl"), (headless, "thread.json")):
        path = data / "threads" / thread["id"] / name
        path.unlink()
        path.mkdir()
    default = data / "assistants" / "jan" / "assistant.json"
    default.unlink()
    default.mkdir()
    with running(data, stories_path) as srv:
        base = srv.base_url
        for method, path, body in [("GET", f"/v1/threads/{headless['id']}", None),
                                   ("GET", f"/v1/threads/{broken['id']}/messages", None),
                                   ("POST", f"/v1/threads/{broken['id']}/messages", {"role": "user", "content": "x"}),
                                   ("GET", "/v1/assistants/jan", None),
                                   ("POST", "/v1/threads/runs", {"assistant_id": "jan", "thread": {
                                       "messages": [{"role": "user", "content": "x"}]}})]:
            status, answer = _call(base, method, path, body)
            assert (status, answer["error"]["code"]) == (500, "data_folder_unreadable"), (path, answer)
            assert "is a directory" in answer["error"]["message"].lower()  # (the reads say it of the path)
        status, listed = _call(base, "GET", "/v1/threads")
        assert status == 200 and {t["id"] for t in listed["data"]} == {broken["id"], whole["id"]}
        assert _call(base, "GET", f"/v1/threads/{whole['id']}/messages")[0] == 200


def test_other_os_errors_stay_internal():
    assert storage_error(ConnectionResetError(errno.ECONNRESET, "reset")) is None
    assert storage_error(ValueError("x")) is None
    assert to_api_error(OSError(errno.EBADF, "Bad file descriptor"), log_internal=False).code == "internal_error"


class _FullDisk:
    """Stands in for the tempfile module of jan.core.fs: every atomic write's temporary file is refused."""

    @staticmethod
    def mkstemp(*args, dir=None, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{dir}/.x.tmp")


def _call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, method=method, headers={"content-type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_full_disk_is_a_clear_error_and_leaves_the_folder_whole(tmp_path, stories_path, monkeypatch):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, thread = _call(base, "POST", "/v1/threads", {"title": "kept", "messages": [
            {"role": "user", "content": "Once upon a time"}]})
        assert status == 200
        before = (data / "threads" / thread["id"] / "thread.json").read_bytes()

        monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
        for method, path, body in [("POST", "/v1/threads", {"title": "new"}),
                                   ("POST", f"/v1/threads/{thread['id']}", {"title": "renamed"}),
                                   ("POST", "/v1/assistants", {"model": "stories260K", "name": "b"}),
                                   ("PATCH", "/v1/models/stories260K", {"parameters": {"temperature": 0.5}})]:
            status, body = _call(base, method, path, body)
            assert (status, body["error"]["code"]) == (507, "insufficient_storage"), (path, body)
            assert "out of disk space" in body["error"]["message"]
        # a run whose record cannot be written fails its request; it holds no thread and lists as nothing live
        status, body = _call(base, "POST", f"/v1/threads/{thread['id']}/runs",
                             {"assistant_id": "jan", "max_completion_tokens": 4})
        assert (status, body["error"]["code"]) == (507, "insufficient_storage"), body
        status, runs = _call(base, "GET", f"/v1/threads/{thread['id']}/runs")
        assert status == 200 and all(r["status"] not in ("queued", "in_progress") for r in runs["data"])
        status, listed = _call(base, "GET", f"/v1/threads/{thread['id']}/messages")
        assert status == 200 and all(m["status"] != "in_progress" for m in listed["data"]), listed
        assert (data / "threads" / thread["id"] / "thread.json").read_bytes() == before  # whole, unchanged

        monkeypatch.undo()  # space again: the thread was never held
        status, run = _call(base, "POST", f"/v1/threads/{thread['id']}/runs",
                            {"assistant_id": "jan", "max_completion_tokens": 4})
        assert status == 200, run


def test_reads_that_would_repair_the_folder_still_answer_on_a_full_disk(tmp_path, stories_path, monkeypatch):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        status, thread = _call(srv.base_url, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]})
    # a reply a killed process left pending (no live lease): reading the thread finishes it, which rewrites the file
    messages = data / "threads" / thread["id"] / "messages.jsonl"
    line = json.loads(messages.read_text().splitlines()[0])
    orphan = {**line, "id": "msg_01ORPHANED0000000000000000", "role": "assistant", "status": "pending"}
    with messages.open("a") as f:
        f.write(json.dumps(orphan) + "\n")
    raw = messages.read_bytes()
    monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
    with running(data, stories_path) as srv:
        status, listed = _call(srv.base_url, "GET", f"/v1/threads/{thread['id']}/messages?order=asc")
        assert status == 200, listed  # was a 507: the read failed on its write-back
        assert [m["status"] for m in listed["data"]] == ["completed", "incomplete"]
    assert messages.read_bytes() == raw  # nothing written; the next read that can write finishes it on disk


class _OsFullOnSync:
    """Stands in for a module's ``os``: ``fsync`` fails as a real full disk fails a write that got past the
    temporary file's creation (tmpfs, a quota: the bytes are refused at the flush), an ``OSError`` that names no
    file. Everything else is the real ``os``."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_disk_that_fills_at_the_write_is_a_507_on_every_store_write(tmp_path, stories_path, monkeypatch):
    """A real full disk refuses the bytes, not the temporary file: the OSError of a flush names no file, and the
    extension guard took it for the extension's own failure — 500 "the extension 'conversational' failed in
    create_thread() with OSError" for a thread, a message, an assistant, a model's PATCH. Each is the 507 naming
    the folder; an append cut short is cut off again (the file as it was)."""
    import jan.store.jsonl
    from jan.store import leases

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, thread = _call(base, "POST", "/v1/threads", {"title": "kept", "messages": [
            {"role": "user", "content": "Once upon a time"}]})
        assert status == 200
        status, assistant = _call(base, "POST", "/v1/assistants", {"model": "stories260K", "name": "a"})
        folder = data / "threads" / thread["id"]
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

        monkeypatch.setattr(jan.core.fs, "os", _OsFullOnSync())
        monkeypatch.setattr(jan.store.jsonl, "os", _OsFullOnSync())
        for method, path, body in [("POST", "/v1/threads", {"title": "new"}),
                                   ("POST", f"/v1/threads/{thread['id']}", {"title": "renamed"}),
                                   ("POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "x"}),
                                   ("POST", "/v1/assistants", {"model": "stories260K", "name": "b"}),
                                   ("POST", f"/v1/assistants/{assistant['id']}", {"name": "c"}),
                                   ("PATCH", "/v1/models/stories260K", {"parameters": {"temperature": 0.5}}),
                                   ("POST", "/v1/conversations", {}),
                                   ("POST", f"/v1/threads/{thread['id']}/runs",
                                    {"assistant_id": "jan", "max_completion_tokens": 4})]:
            status, answer = _call(base, method, path, body)
            assert (status, answer["error"]["code"]) == (507, "insufficient_storage"), (path, answer)
            assert "out of disk space" in answer["error"]["message"] and str(data) in answer["error"]["message"]
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # the append cut off
        # (a run's lease file by its name: a path holding "run_" anywhere matched another test's folder)
        assert not [key for key in leases._HELD if os.path.basename(key).startswith("run_")]

        monkeypatch.undo()
        status, listed = _call(base, "GET", f"/v1/threads/{thread['id']}/messages")
        assert status == 200 and len(listed["data"]) == 1 and not listed.get("problems"), listed
        status, run = _call(base, "POST", f"/v1/threads/{thread['id']}/runs",
                            {"assistant_id": "jan", "max_completion_tokens": 4})
        assert status == 200, run


def test_a_run_whose_first_record_the_disk_refuses_holds_no_lease(tmp_path, monkeypatch):
    """A live run's lease is taken before its record is written; a record the disk refused (the request's 507) left
    the lease held, its lock file open, until the process ended. So did a run's end the disk refused: its last
    record on disk ("queued") read as running to every other process on the folder, which refused runs on its
    thread (run_active) until this one ended. One still running keeps its lease."""
    import jan.services.run_records as run_records
    from jan.store import leases

    data = tmp_path / "data"
    (data / "threads" / "thread_a").mkdir(parents=True)
    record = {"id": "run_refused", "thread_id": "thread_a", "status": "queued"}

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(run_records, "atomic_write_bytes", full)
    with pytest.raises(OSError):
        run_records.save_record(data, record)
    assert not run_records._leases(data).holds("run_refused")

    monkeypatch.undo()
    run_records.save_record(data, {**record, "id": "run_live"})  # running: leased
    monkeypatch.setattr(run_records, "atomic_write_bytes", full)
    with pytest.raises(OSError):
        run_records.save_record(data, {**record, "id": "run_live", "status": "in_progress"})
    assert run_records._leases(data).holds("run_live")  # it still runs: another process must not take it up
    with pytest.raises(OSError):  # it ended, but the disk refused its end: unleased, readers end it interrupted
        run_records.save_record(data, {**record, "id": "run_live", "status": "completed"})
    assert not run_records._leases(data).holds("run_live")
    assert not [key for key in leases._HELD if os.path.basename(key).startswith("run_")]  # (by its file's name)


@pytest.mark.parametrize("mode", [{}, {"stream": True}, {"background": True}])
def test_a_stored_response_the_disk_refuses_is_a_507_not_a_failed_response(tmp_path, stories_path, monkeypatch, mode):
    """A stored response whose record a full disk refused never began: it was answered 200 with a "failed" response
    (a stream of response.created then response.failed) whose id every GET then answered 404. It is the 507 every
    other refused write is; nothing is left behind, and with space again the same request is stored."""
    data = tmp_path / "data"
    body = {"model": "stories260K", "input": "Once", "max_output_tokens": 4, **mode}
    with running(data, stories_path) as srv:
        monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
        status, answer = _call(srv.base_url, "POST", "/v1/responses", body)
        assert (status, answer["error"]["code"]) == (507, "insufficient_storage"), answer
        assert "out of disk space" in answer["error"]["message"]
        monkeypatch.undo()
        assert not list(data.glob("responses/*.json"))  # (nothing half there)
        req = urllib.request.Request(srv.base_url + "/v1/responses", method="POST",
                                     headers={"content-type": "application/json"},
                                     data=json.dumps({**body, "stream": False}).encode())
        with urllib.request.urlopen(req, timeout=120) as resp:
            rid = json.loads(resp.read())["id"]
        assert _call(srv.base_url, "GET", f"/v1/responses/{rid}")[0] == 200
