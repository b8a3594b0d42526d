"""A streamed answer whose stored copy the disk refused at its end (it filled while the answer streamed) is never
told as one that finished: a run's stream tells an ``error`` event and ``thread.run.failed`` (its record ``failed``
with ``last_error`` where that can still be written), a stored Responses response ends ``response.failed``, an
Anthropic thread's turn ends with the ``error`` event — never ``thread.run.completed``, ``response.completed`` or
``message_stop`` over a partial stored copy. A create answered 2xx stored what it created.

The disk fills at the end: the store's write of the finished answer is refused (ENOSPC, as a tmpfs filled to its last
byte refuses it), and every atomic write after it."""

from __future__ import annotations

import errno
import json
import urllib.error
import urllib.request

import pytest
from api_helpers import get_json as _get, parse_sse, running

import jan.core.fs
from jan.store.messages import MessageStore


class _FullDisk:
    """Stands in for the tempfile module of jan.core.fs: every atomic write's temporary file is refused."""

    @staticmethod
    def mkstemp(*args, dir=None, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{dir}/.x.tmp")


def _post(base: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, method="POST", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def fills_at_the_end(monkeypatch):
    """The disk fills as the answer ends: a message's move to a final status is refused, and so is every atomic
    write from then on (``everything``), or that write alone (the run's record still written)."""
    update = MessageStore.update

    def install(everything: bool = True):
        def ending(self, thread_id, message_id, **changes):
            if changes.get("status", "pending") != "pending":
                if everything:
                    monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
                    return update(self, thread_id, message_id, **changes)
                raise OSError(errno.ENOSPC, "No space left on device", f"/data/threads/{thread_id}/.x.tmp")
            return update(self, thread_id, message_id, **changes)

        monkeypatch.setattr(MessageStore, "update", ending)

    return install


@pytest.mark.parametrize("everything", [True, False], ids=["disk-full", "reply-refused"])
def test_a_streamed_run_whose_reply_the_disk_refused_fails(tmp_path, stories_path, fills_at_the_end, monkeypatch,
                                                            everything):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
        thread = json.loads(raw)
        fills_at_the_end(everything)
        status, raw = _post(base, f"/v1/threads/{thread['id']}/runs",
                            {"assistant_id": "jan", "stream": True, "max_completion_tokens": 8})
        assert status == 200
        events = parse_sse(raw.decode())
        names = [name for name, _ in events]
        assert "thread.run.completed" not in names and "thread.message.completed" not in names, names
        assert "thread.run.failed" in names and "error" in names, names
        error = dict(events)["error"]
        assert error["code"] == "insufficient_storage" and "out of disk space" in error["message"]
        # what it says was kept is what is on disk: the reply's message as last saved, marked incomplete (never
        # "nothing was saved" over the message a reader of the thread finds)
        assert "nothing was saved" not in error["message"], error
        assert "the reply so far stays in the thread as last saved, unfinished" in error["message"], error
        run = dict(events)["thread.run.failed"]
        assert run["status"] == "failed" and "out of disk space" in run["last_error"]["message"]
        assert names.index("error") < names.index("thread.run.failed") < names.index("done")

        monkeypatch.undo()  # space again
        status, told = _get(base, f"/v1/threads/{thread['id']}/runs/{run['id']}")
        assert status == 200 and told["status"] == "failed", told
        status, listed = _get(base, f"/v1/threads/{thread['id']}/messages?order=asc")
        reply = listed["data"][-1]
        assert reply["status"] != "completed" and (reply["role"], reply["run_id"]) == ("assistant", run["id"]), listed
    if not everything:  # the record could still be written: it says why the run failed
        record = json.loads(next(data.glob(f"threads/{thread['id']}/runs/{run['id']}*")).read_text())
        assert record["status"] == "failed" and "out of disk space" in record["last_error"]["message"], record


@pytest.fixture
def response_fills_at_the_end(monkeypatch):
    """The disk fills as a stored response ends: its completion (and every atomic write after it) is refused."""
    from jan.server.dialects.responses_store import ResponsesStore

    import jan.store.jsonl

    def install():
        for name in ("complete", "complete_in_conversation"):
            def ending(self, *args, __real=getattr(ResponsesStore, name), **kwargs):
                monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
                monkeypatch.setattr(jan.store.jsonl, "os", _OsFullOnSync())  # (appends refused too)
                return __real(self, *args, **kwargs)

            monkeypatch.setattr(ResponsesStore, name, ending)

    return install


class _OsFullOnSync:
    """A module's ``os`` whose ``fsync`` fails as a full disk fails an append (the bytes refused at the flush)."""

    def __getattr__(self, name):
        import os

        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("within, store", [(False, True), (True, True), (True, False)],
                         ids=["response", "conversation", "conversation-unstored"])
def test_a_stored_response_whose_end_the_disk_refused_is_never_completed(tmp_path, stories_path,
                                                                          response_fills_at_the_end, monkeypatch,
                                                                          within, store):
    """A response kept as it ends — its index (``store``) or its turn in a conversation — that the disk refused."""
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        body = {"model": "stories260K", "input": "Once", "max_output_tokens": 8, "store": store}
        if within:
            status, raw = _post(base, "/v1/conversations", {})
            assert status == 200, raw
            body["conversation"] = json.loads(raw)["id"]
        response_fills_at_the_end()
        status, raw = _post(base, "/v1/responses", {**body, "stream": True})
        assert status == 200, raw
        events = parse_sse(raw.decode())
        names = [name for name, _ in events]
        assert "response.completed" not in names and names[-1] == "response.failed", names
        failed = events[-1][1]["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "server_error", failed  # (OpenAI's codes)
        assert "out of disk space" in failed["error"]["message"]
        # it says what is on disk: a stored response's record as it began (a GET finds it, failed, with its input),
        # a conversation given none of its items; nothing at all for a response neither stored nor in one
        told = failed["error"]["message"]
        if store:
            assert "nothing was saved" not in told and "stays stored as it began" in told, told
            assert ("nothing was added to its conversation" in told) == within, told
        else:
            assert "nothing was saved" in told, told
        monkeypatch.undo()
        status, got = _get(base, f"/v1/responses/{failed['id']}")
        assert status == (200 if store else 404), got
        if store:
            assert got["status"] == "failed" and got["output"] == [], got
            # (why it failed, as its client was told: not "the server stopped", which this one did not)
            assert got["error"] == failed["error"], got
            status, items = _get(base, f"/v1/responses/{failed['id']}/input_items")
            assert [i.get("role") for i in items["data"]] == ["user"], items
        if within:
            status, items = _get(base, f"/v1/conversations/{body['conversation']}/items")
            assert items["data"] == [], items
        response_fills_at_the_end()

        # a response not streamed is the 507 every refused write is, not a 200 over a copy no GET finds whole
        status, raw = _post(base, "/v1/responses", {**body, "stream": False})
        answer = json.loads(raw)
        assert (status, answer["error"]["code"]) == (507, "insufficient_storage"), answer
        monkeypatch.undo()
        status, raw = _post(base, "/v1/responses", {**body, "stream": False})
        assert status == 200 and json.loads(raw)["status"] in ("completed", "incomplete"), raw


ANTHROPIC_THREADS = {"anthropic-beta": "message-threads-2026-08-12"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_anthropic_thread_the_disk_refused_is_never_answered_as_held(tmp_path, stories_path, monkeypatch, stream):
    """A thread created (or continued) on a full disk was answered 200 (or a stream to its ``message_stop``) with
    nothing stored: the next ``continue`` got ``thread_not_found``. It is the 507 in Anthropic's shape, or the
    stream's ``error`` event in place of ``message_stop``."""
    data = tmp_path / "data"
    body = {"model": "stories260K", "max_tokens": 6, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": "Once upon a time"}]}
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/messages", {**body, "stream": False, "thread": {"type": "create"}},
                            ANTHROPIC_THREADS)
        assert status == 200, raw
        held = json.loads(raw)
        monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
        for thread in ({"type": "create"}, {"type": "continue", "previous_message_id": held["id"]}):
            status, raw = _post(base, "/v1/messages", {**body, "thread": thread,
                                                       "messages": [{"role": "user", "content": "And then"}]},
                                ANTHROPIC_THREADS)
            if not stream:
                answer = json.loads(raw)
                assert status == 507 and answer["type"] == "error", answer
                assert "out of disk space" in answer["error"]["message"], answer
                continue
            assert status == 200, raw
            events = parse_sse(raw.decode())
            names = [name for name, _ in events]
            assert "message_stop" not in names and names[-1] == "error", names
            assert "out of disk space" in events[-1][1]["error"]["message"], events[-1]
        monkeypatch.undo()
        status, raw = _post(base, "/v1/messages", {**body, "stream": False, "thread": {
            "type": "continue", "previous_message_id": held["id"]}}, ANTHROPIC_THREADS)
        assert status == 200, raw  # the thread went on from where it was held


def test_a_streamed_run_whose_end_record_the_disk_refused_is_not_completed(tmp_path, stories_path, monkeypatch):
    """The reply saved whole, but the disk refused the run's record of its end: on disk the run reads as still
    running (interrupted once this process lets it go), so it is no run that completed either: the ``error`` event
    and ``thread.run.failed``."""
    import jan.services.run_records as run_records

    real = run_records.atomic_write_bytes

    def refuse_the_end(path, data):
        if json.loads(data).get("status") not in ("queued", "in_progress"):
            raise OSError(errno.ENOSPC, "No space left on device", f"{path.parent}/.x.tmp")
        return real(path, data)

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
        thread = json.loads(raw)
        monkeypatch.setattr(run_records, "atomic_write_bytes", refuse_the_end)
        status, raw = _post(base, f"/v1/threads/{thread['id']}/runs",
                            {"assistant_id": "jan", "stream": True, "max_completion_tokens": 8})
        events = parse_sse(raw.decode())
        names = [name for name, _ in events]
        assert status == 200 and "thread.run.completed" not in names, names
        assert names[-3:] == ["error", "thread.run.failed", "done"], names
        assert dict(events)["error"]["code"] == "insufficient_storage"
        told = dict(events)["error"]["message"]
        assert "nothing was saved" not in told and "the reply was saved whole in the thread" in told, told
        status, listed = _get(base, f"/v1/threads/{thread['id']}/messages?order=asc")
        reply = listed["data"][-1]  # (ended as the model ended it: 8 tokens read incomplete, max_tokens)
        assert reply["role"] == "assistant" and reply["status"] != "in_progress", listed


def _failure(kind: str, path: str) -> BaseException:
    from jan.store.errors import CorruptFileError, LockTimeoutError

    return {"damaged": CorruptFileError(path, "Expecting value: line 1 column 1", None),
            "lock": LockTimeoutError(f"Timed out waiting for the lock of {path}"),
            "extension": RuntimeError("the store extension failed")}[kind]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("where", ["index", "reply"])
@pytest.mark.parametrize("kind", ["damaged", "lock", "extension"])
def test_an_anthropic_turn_the_store_failed_is_never_answered_as_held(tmp_path, stories_path, monkeypatch, stream,
                                                                       where, kind):
    """Any failure to store a thread's turn, not only a full disk (a damaged file, a lock held too long, the store
    extension's own error; as the reply's index is written or as the reply joins the thread), was logged and the
    turn answered 200 (or streamed to its ``message_stop``) as if it were held. It is an error in Anthropic's shape
    (its stream's ``error`` event in place of ``message_stop``) saying the turn was not kept, and the thread is as
    it was: its last held reply continues it, and no half of the turn stays."""
    from jan.extensions.conversational.extension import ConversationalStoreExtension as ConversationalExtension
    from jan.server.dialects.responses_store import ResponsesStore

    data = tmp_path / "data"
    body = {"model": "stories260K", "max_tokens": 6, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": "Once upon a time"}]}
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/messages", {**body, "stream": False, "thread": {"type": "create"}},
                            ANTHROPIC_THREADS)
        assert status == 200, raw
        held = json.loads(raw)
        status, threads = _get(base, "/v1/threads?limit=100")
        before = {t["id"]: None for t in threads["data"]}
        for t in before:
            before[t] = [m["id"] for m in _get(base, f"/v1/threads/{t}/messages?all=true&limit=100")[1]["data"]]
        failure = _failure(kind, str(data / "threads" / "x" / "messages.jsonl"))
        if where == "index":
            async def put(self, stored):
                raise failure
            monkeypatch.setattr(ResponsesStore, "put", put)
        else:
            real = ConversationalExtension.create_message

            async def create_message(self, thread_id, message):
                if message.get("role") == "assistant":  # (the user's turn written first: taken out again)
                    raise failure
                return await real(self, thread_id, message)
            monkeypatch.setattr(ConversationalExtension, "create_message", create_message)
        for thread in ({"type": "create"}, {"type": "continue", "previous_message_id": held["id"]}):
            status, raw = _post(base, "/v1/messages", {**body, "thread": thread,
                                                       "messages": [{"role": "user", "content": "And then"}]},
                                ANTHROPIC_THREADS)
            if stream:
                assert status == 200, raw
                events = parse_sse(raw.decode())
                names = [name for name, _ in events]
                assert "message_stop" not in names and names[-1] == "error", names
                answer = events[-1][1]
            else:
                answer = json.loads(raw)
                assert status == {"damaged": 500, "lock": 503, "extension": 500}[kind], (status, answer)
            assert answer["type"] == "error", answer
            told = answer["error"]["message"]
            assert "the turn was not kept: its thread is as it was before this request" in told, told
            assert answer["error"]["type"] == ("overloaded_error" if kind == "lock" and not stream else
                                               answer["error"]["type"]), answer
        monkeypatch.undo()
        status, threads = _get(base, "/v1/threads?limit=100")
        assert {t["id"] for t in threads["data"]} == set(before), threads  # no thread made for a turn not kept
        for t, ids in before.items():  # nor half of a turn left in one
            assert [m["id"] for m in _get(base, f"/v1/threads/{t}/messages?all=true&limit=100")[1]["data"]] == ids
        status, raw = _post(base, "/v1/messages", {**body, "stream": False, "thread": {
            "type": "continue", "previous_message_id": held["id"]}}, ANTHROPIC_THREADS)
        assert status == 200, raw  # the thread goes on from where it was held


@pytest.mark.parametrize("kind", ["damaged", "lock", "extension"])
def test_a_conversation_response_the_store_failed_is_never_completed(tmp_path, stories_path, monkeypatch, kind):
    """A response made in a conversation whose items the store failed to add for any reason other than a full disk
    (a damaged file, a lock held too long, the store extension's own error) was logged and ended ``completed``,
    the conversation holding none of it. It ends ``failed`` with that error (as a disk's refusal does), saying what
    is stored, and the conversation holds none of its items."""
    from jan.extensions.conversational.extension import ConversationalStoreExtension

    real = ConversationalStoreExtension.create_message
    failure = _failure(kind, str(tmp_path / "data" / "threads" / "x" / "messages.jsonl"))

    async def create_message(self, thread_id, message):
        if message.get("role") == "assistant":  # (the input turn written first: taken out again)
            raise failure
        return await real(self, thread_id, message)

    with running(tmp_path / "data", stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/conversations", {})
        conversation = json.loads(raw)["id"]
        monkeypatch.setattr(ConversationalStoreExtension, "create_message", create_message)
        body = {"model": "stories260K", "input": "Once", "max_output_tokens": 8, "conversation": conversation}
        status, raw = _post(base, "/v1/responses", {**body, "stream": True})
        events = parse_sse(raw.decode())
        names = [name for name, _ in events]
        assert status == 200 and "response.completed" not in names and names[-1] == "response.failed", names
        failed = events[-1][1]["response"]
        assert "nothing was added to its conversation" in failed["error"]["message"], failed
        status, raw = _post(base, "/v1/responses", {**body, "stream": False})
        answer = json.loads(raw)
        assert status == 200 and answer["status"] == "failed", answer  # (the response's own field says it)
        monkeypatch.undo()
        status, items = _get(base, f"/v1/conversations/{conversation}/items")
        assert items["data"] == [], items
        status, got = _get(base, f"/v1/responses/{failed['id']}")
        assert status == 200 and got["status"] == "failed", got


@pytest.mark.parametrize("removal", ["taken", "refused"])
def test_a_run_whose_start_the_disk_refused_leaves_the_thread_as_it_was_or_says_what_stays(
        tmp_path, stories_path, monkeypatch, removal):
    """A run whose first record the disk refused (its additional_messages and its reply written, the record not)
    was the 507 saying "nothing was saved" while the request's messages and an empty failed reply stayed in the
    thread. They are taken out again, as every refusal of a start takes them out; where the disk refuses that too,
    the error says they stay, and they do."""
    import jan.services.run_records as run_records

    def refuse(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", f"{path.parent}/.x.tmp")

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]})
        thread = json.loads(raw)
        monkeypatch.setattr(run_records, "atomic_write_bytes", refuse)
        if removal == "refused":
            def delete(self, thread_id, message_id, *args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device", f"/data/threads/{thread_id}/.x.tmp")
            monkeypatch.setattr(MessageStore, "delete", delete)
        status, raw = _post(base, f"/v1/threads/{thread['id']}/runs", {
            "assistant_id": "jan", "additional_messages": [{"role": "user", "content": "More"}],
            "max_completion_tokens": 4})
        error = json.loads(raw)["error"]
        assert (status, error["code"]) == (507, "insufficient_storage"), raw
        monkeypatch.undo()
        status, listed = _get(base, f"/v1/threads/{thread['id']}/messages?order=asc")
        kept = [(m["role"], m["status"]) for m in listed["data"]]
        if removal == "taken":
            assert "nothing was saved" in error["message"], error
            assert kept == [("user", "completed")], listed  # as it was
        else:
            assert "nothing was saved" not in error["message"], error
            assert "the messages this request added to the thread stay there" in error["message"], error
            assert kept == [("user", "completed"), ("user", "completed"), ("assistant", "incomplete")], listed


@pytest.mark.parametrize("kind", ["damaged", "lock", "extension"])
def test_a_streamed_run_whose_reply_the_store_failed_says_what_stays(tmp_path, stories_path, monkeypatch, kind):
    """The reply's last save failed otherwise than by a full disk: the run fails saying so, and what stays (the
    reply as last saved), in its stream's error and its last_error, never "nothing was saved"."""
    update = MessageStore.update
    failure = _failure(kind, str(tmp_path / "data" / "threads" / "x" / "messages.jsonl"))

    def ending(self, thread_id, message_id, **changes):
        if changes.get("status", "pending") != "pending":
            raise failure
        return update(self, thread_id, message_id, **changes)

    with running(tmp_path / "data", stories_path) as srv:
        base = srv.base_url
        status, raw = _post(base, "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
        thread = json.loads(raw)
        monkeypatch.setattr(MessageStore, "update", ending)
        status, raw = _post(base, f"/v1/threads/{thread['id']}/runs",
                            {"assistant_id": "jan", "stream": True, "max_completion_tokens": 8})
        events = parse_sse(raw.decode())
        names = [name for name, _ in events]
        assert "thread.run.completed" not in names and names[-3:] == ["error", "thread.run.failed", "done"], names
        error, run = dict(events)["error"], dict(events)["thread.run.failed"]
        assert error["code"] == {"damaged": "data_folder_damaged", "lock": "busy", "extension": "not_saved"}[kind]
        for told in (error["message"], run["last_error"]["message"]):
            assert told.startswith("The reply could not be saved") and "nothing was saved" not in told, told
            assert "the reply so far stays in the thread as last saved, unfinished" in told, told
        monkeypatch.undo()
        status, listed = _get(base, f"/v1/threads/{thread['id']}/messages?order=asc")
        assert listed["data"][-1]["role"] == "assistant" and listed["data"][-1]["status"] != "completed", listed
