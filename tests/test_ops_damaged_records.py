"""Damaged files outside the store's own documents — run records, the Responses index, uploaded files' file.json —
are met the way the store meets its own (issue: data safety): every damage a hand or a crash can leave (truncated,
empty, binary junk, valid JSON of the wrong shape: a list, a string, null, fields of the wrong type) is read
as missing and reported, never a 500, a traceback or a server that will not start. A damaged run record is left where
it is (no read moves the user's files) and listed under ``problems`` of its thread's runs, as the store's own damaged
files are under their lists'."""

from __future__ import annotations

import json

import pytest

from jan.services.run_records import (list_records, load_record, mark_interrupted, record_problems, save_record,
                                      thread_records)

THREAD = "thread_01ABC"
RUN = "run_0123456789abcdef"

GOOD = {"id": RUN, "object": "thread.run", "thread_id": THREAD, "status": "in_progress", "steps": [],
        "created_at": 1}


def _damages(good: bytes) -> dict[str, bytes]:
    doc = json.loads(good)
    return {
        "empty": b"", "truncated": good[: len(good) // 2], "junk": bytes(range(256)),
        "list": b"[]", "string": b'"run"', "null": b"null", "number": b"7",
        "id_of_another": json.dumps({**doc, "id": "run_other"}).encode(),
        "id_not_a_string": json.dumps({**doc, "id": 5}).encode(),
        "thread_of_another": json.dumps({**doc, "thread_id": "thread_other"}).encode(),
        "status_not_a_string": json.dumps({**doc, "status": ["in_progress"]}).encode(),
        # fields a run is read back from, of another type (these were 500s on every request touching the thread)
        "status_none_of_a_runs": json.dumps({**doc, "status": "bogus"}).encode(),
        "pending_a_string": json.dumps({**doc, "status": "requires_action", "pending": "x"}).encode(),
        "pending_call_without_id": json.dumps({**doc, "status": "requires_action", "pending": [{"a": 1}]}).encode(),
        "created_at_a_string": json.dumps({**doc, "created_at": "x"}).encode(),
        "step_a_string": json.dumps({**doc, "step": "2"}).encode(),
        "usage_a_string": json.dumps({**doc, "usage": "y"}).encode(),
        "metadata_a_list": json.dumps({**doc, "metadata": []}).encode(),
        "steps_an_object": json.dumps({**doc, "steps": {"a": 1}}).encode(),
        "step_details_a_string": json.dumps({**doc, "steps": [{"id": "step_1", "step_details": "x"}]}).encode(),
    }


@pytest.mark.parametrize("damage", sorted(_damages(json.dumps(GOOD).encode())))
def test_a_damaged_run_record_is_reported_in_place_and_the_others_still_read(tmp_path, damage):
    data = tmp_path / "data"
    (data / "threads" / THREAD / "runs").mkdir(parents=True)
    save_record(data, {**GOOD, "id": "run_kept", "status": "completed"})
    bad = data / "threads" / THREAD / "runs" / f"{RUN}.json"
    content = _damages(json.dumps(GOOD).encode())[damage]
    bad.write_bytes(content)

    # the start-up sweep (jan serve stopped here on a null or a list), a thread's listing, one run's read
    assert [r["id"] for r in mark_interrupted(data)] == []
    assert [r["id"] for r in thread_records(data, THREAD)] == ["run_kept"]
    assert [r["id"] for r in list_records(data)] == ["run_kept"]
    assert load_record(data, THREAD, RUN) is None
    # left where it is for the user, reported once under its path in the folder
    assert bad.read_bytes() == content and not list(bad.parent.glob("*.corrupt-*"))
    reported = [p for p in record_problems(data).snapshot() if p.path == f"threads/{THREAD}/runs/{RUN}.json"]
    assert len(reported) == 1 and reported[0].moved_to is None, reported
    # repaired by hand: read again, no longer reported
    bad.write_text(json.dumps({**GOOD, "status": "completed"}))
    assert load_record(data, THREAD, RUN)["status"] == "completed"
    assert not [p for p in record_problems(data).snapshot() if p.path.startswith(f"threads/{THREAD}/")]


def test_a_whole_run_record_is_read(tmp_path):
    data = tmp_path / "data"
    (data / "threads" / THREAD / "runs").mkdir(parents=True)
    save_record(data, {**GOOD, "status": "completed"})
    assert load_record(data, THREAD, RUN)["status"] == "completed"
    assert [p.name for p in (data / "threads" / THREAD / "runs").iterdir()] == [f"{RUN}.json"]
    path = data / "threads" / THREAD / "runs" / f"{RUN}.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a UTF-8 BOM (a Windows editor's save) is no damage
    assert load_record(data, THREAD, RUN)["status"] == "completed"


def test_jan_serve_starts_and_lists_runs_beside_a_run_record_that_is_null(tmp_path, stories_path):
    from api_helpers import running
    import urllib.request

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        req = urllib.request.Request(srv.base_url + "/v1/threads", data=b"{}", method="POST",
                                     headers={"content-type": "application/json"})
        thread_id = json.loads(urllib.request.urlopen(req, timeout=60).read())["id"]
    runs = data / "threads" / thread_id / "runs"
    runs.mkdir()
    (runs / f"{RUN}.json").write_bytes(b"null")
    with running(data, stories_path) as srv:  # this start failed: 'NoneType' object has no attribute 'get'
        with urllib.request.urlopen(f"{srv.base_url}/v1/threads/{thread_id}/runs", timeout=60) as resp:
            listed = json.loads(resp.read())
            assert resp.status == 200 and listed["data"] == []
        # told where the user finds it (it was moved aside as .corrupt-1, in no list)
        assert [(p["path"], p["moved_to"]) for p in listed["problems"]] == [
            (f"threads/{thread_id}/runs/{RUN}.json", None)], listed
        req = urllib.request.Request(f"{srv.base_url}/v1/threads/{thread_id}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).read()
        assert not [p for p in record_problems(data).snapshot() if thread_id in p.path]  # gone with its thread


def test_a_run_record_with_fields_of_the_wrong_type_is_no_500_for_its_thread(tmp_path, stories_path):
    """Valid JSON whose fields a run is read back from are of another type (a ``pending`` that is a string, a
    ``created_at`` that is text, written by hand or by another program): each request touching the thread — its
    runs listed, one read, a run started, a message added — was a 500. The record is set aside, the thread goes
    on."""
    from api_helpers import running
    from cut_off_helpers import post, request

    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        threads = {}
        for name in ("pending", "created_at"):
            status, thread = post(srv, "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]})
            status, run = post(srv, f"/v1/threads/{thread['id']}/runs", {"max_tokens": 1})
            assert status == 200, run
            threads[name] = (thread["id"], run["id"])
        for tid, rid in threads.values():  # (each run ended: nothing holds its record any more)
            for _ in range(600):
                if request(srv, "GET", f"/v1/threads/{tid}/runs/{rid}")[2]["status"] not in ("queued", "in_progress"):
                    break
    for name, (tid, rid) in threads.items():
        path = data / "threads" / tid / "runs" / f"{rid}.json"
        record = json.loads(path.read_text())
        record.update({"status": "requires_action", "pending": "x"} if name == "pending" else {"created_at": "x"})
        path.write_text(json.dumps(record))
    with running(data, stories_path) as srv:
        for tid, rid in threads.values():
            assert request(srv, "GET", f"/v1/threads/{tid}/runs")[0] == 200
            assert request(srv, "GET", f"/v1/threads/{tid}/runs/{rid}")[0] == 404
            status, run = post(srv, f"/v1/threads/{tid}/runs", {"max_tokens": 1})
            assert status == 200, run
            listed = request(srv, "GET", f"/v1/threads/{tid}/runs")[2]
            assert [r["id"] for r in listed["data"]] == [run["id"]]
            assert [p["path"] for p in listed["problems"]] == [f"threads/{tid}/runs/{rid}.json"]
            assert (data / "threads" / tid / "runs" / f"{rid}.json").is_file()  # left where it is


# -- uploaded files' file.json ------------------------------------------------------------------------------------
def _commit(store, data: bytes, name: str) -> dict:
    writer = store.writer(1 << 20)
    writer.write(data)
    return store.commit(writer, filename=name, purpose="assistants")


def _file_damages(doc: dict) -> dict[str, dict]:
    """Valid JSON, the wrong shape within: each field jan reads given another type, and the schema version too."""
    return {
        "bytes_a_string": {**doc, "bytes": "x"}, "created_at_a_list": {**doc, "created_at": [1]},
        "filename_a_number": {**doc, "filename": 12345}, "purpose_null": {**doc, "purpose": None},
        "status_an_object": {**doc, "status": {"a": 1}}, "expires_at_a_string": {**doc, "expires_at": "soon"},
        "schema_version_a_string": {**doc, "_schema_version": "x"},  # no migration from "version 0": was a 500
        "schema_version_missing": {k: v for k, v in doc.items() if k != "_schema_version"},
    }


@pytest.mark.parametrize("damage", sorted(_file_damages({})))
def test_a_file_json_of_the_wrong_shape_is_refused_by_name_and_left_out(tmp_path, damage):
    from jan.store.errors import NotFoundError
    from jan.store.uploads import UploadStore

    store = UploadStore(tmp_path)
    good, bad = _commit(store, b"a", "a.txt"), _commit(store, b"b", "b.txt")
    meta = store.folder / bad["id"] / "file.json"
    meta.write_text(json.dumps(_file_damages(json.loads(meta.read_text()))[damage]))
    with pytest.raises(NotFoundError, match="damaged"):
        store.get(bad["id"])
    with pytest.raises(NotFoundError, match="damaged"):
        store.open(bad["id"])
    assert [f["id"] for f in store.list().data] == [good["id"]]
    assert store.get(good["id"]) == good
    assert any(p.path == f"files/{bad['id']}/file.json" for p in store.problems.snapshot())
    assert store.sweep() == []  # kept for the user (set aside, or left in place), never swept away


# -- the Responses index ------------------------------------------------------------------------------------------
RESP = "resp_0123456789abcdef"


def _index_damages() -> dict[str, bytes]:
    good = {"response": {"id": RESP, "object": "response", "status": "completed", "output": []},
            "input_items": [{"id": "msg_1", "type": "message"}], "thread_id": "thread_1", "last_message_id": "msg_2"}
    out = {name: raw for name, raw in _damages(json.dumps(good).encode()).items()
           if name in ("empty", "truncated", "junk", "list", "string", "null", "number")}  # (a BOM: json reads it)
    for name, doc in {
        "response_a_list": {**good, "response": []}, "response_of_another": {**good, "response": {**good["response"], "id": "resp_x"}},
        "input_items_an_object": {**good, "input_items": {"a": 1}},
        "input_item_a_string": {**good, "input_items": ["msg_1"]}, "thread_id_a_number": {**good, "thread_id": 5},
        "last_message_id_a_list": {**good, "last_message_id": []},
        # the response's own fields that its readers take for granted (these were 500s on every GET of it)
        **{f"response_{key}_{name}": {**good, "response": {**good["response"], key: value}}
           for key, name, value in [("output", "a_number", 5), ("output", "true", True), ("output", "of_strings", ["x"]),
                                    ("output", "of_items_whose_content_is_a_number", [{"type": "message", "content": 5}]),
                                    ("incomplete_details", "a_string", "x"), ("usage", "a_list", [1]),
                                    ("status", "a_number", 3), ("previous_response_id", "a_number", 7),
                                    ("error", "a_string", "x"), ("metadata", "a_list", [])]},
    }.items():
        out[name] = json.dumps(doc).encode()
    return out


@pytest.mark.parametrize("damage", sorted(_index_damages()))
def test_a_damaged_responses_index_file_reads_as_missing_and_is_set_aside(tmp_path, damage):
    import asyncio

    from jan.core import NotFoundError
    from jan.server.dialects.responses_store import ResponsesStore

    folder = tmp_path / "data" / "responses"
    folder.mkdir(parents=True)
    store = ResponsesStore(folder, lambda: None)
    content = _index_damages()[damage]
    (folder / f"{RESP}.json").write_bytes(content)
    with pytest.raises(NotFoundError):  # the route's 404 (was: a 500 on every GET for the wrong shapes)
        asyncio.run(store.get(RESP))
    assert asyncio.run(store.entries(lambda name: True)) == []
    assert [p.read_bytes() for p in folder.glob(f"{RESP}.json.*")] == [content]


def test_a_responses_index_file_with_a_bom_is_read_and_forgotten_as_any(tmp_path):
    # A UTF-8 BOM (an editor's save) damages nothing: the entry reads, lists and is removed as one without it.
    import asyncio

    from jan.server.dialects.responses_store import ResponsesStore

    folder = tmp_path / "data" / "responses"
    folder.mkdir(parents=True)
    store = ResponsesStore(folder, lambda: None)
    good = {"response": {"id": RESP, "object": "response", "status": "completed", "output": []},
            "input_items": [{"id": "msg_1", "type": "message"}], "thread_id": "thread_1", "last_message_id": "msg_2"}
    (folder / f"{RESP}.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(good).encode())
    assert asyncio.run(store.get(RESP)).input_items == good["input_items"]
    assert [e.id for e in asyncio.run(store.entries(lambda name: True))] == [RESP]
    assert asyncio.run(store.forget(RESP, "thread_1")) is True
    assert list(folder.iterdir()) == []  # removed, nothing set aside


# -- model.json ---------------------------------------------------------------------------------------------------
def _model_damages(doc: dict) -> dict[str, dict]:
    return {"settings_a_list": {**doc, "settings": [1, 2]}, "parameters_a_string": {**doc, "parameters": "hot"},
            "metadata_a_list": {**doc, "metadata": []}, "sources_an_object": {**doc, "sources": {"a": 1}},
            "source_a_string": {**doc, "sources": ["x.gguf"]},
            "source_filename_a_number": {**doc, "sources": [{"filename": 5}]}, "engine_a_list": {**doc, "engine": []}}


@pytest.mark.parametrize("damage", sorted(_model_damages({})))
def test_a_model_json_of_the_wrong_shape_is_left_out_in_place_and_the_other_models_still_list(tmp_path, damage):
    from jan.errors import ModelNotFoundError
    from jan.store import DataFolder

    store = DataFolder(tmp_path / "data")
    store.models.create({"id": "kept", "sources": [{"filename": "kept.gguf"}]})
    store.models.create({"id": "bad", "sources": [{"filename": "bad.gguf"}]})
    path = store.models_dir / "bad" / "model.json"
    damaged = _model_damages(json.loads(path.read_text()))[damage]
    path.write_text(json.dumps(damaged))
    assert [m["id"] for m in store.models.list()] == ["kept"]  # was: every listing failed (a 500 on /v1/models)
    with pytest.raises(ModelNotFoundError, match="damaged"):
        store.models.get("bad")
    assert json.loads(path.read_text()) == damaged and not list(path.parent.glob("model.json.corrupt-*"))
    assert any(p.path == "models/bad/model.json" for p in store.problems)


def test_a_hub_model_json_with_loose_fields_still_reads(tmp_path):
    from jan.store import DataFolder

    store = DataFolder(tmp_path / "data")
    store.models.create({"id": "hub", "sources": [{"filename": "hub.gguf"}]})
    path = store.models_dir / "hub" / "model.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "version": 2, "description": None, "engine": None}))
    assert store.models.get("hub")["version"] == 2


def test_a_stored_response_file_too_large_to_be_one_is_a_damaged_one(tmp_path, stories_path, monkeypatch):
    """A stored response file larger than any jan writes (over MAX_DATA_FILE_BYTES: 64 MiB) was a 500
    data_folder_unreadable on every GET of it, where every other damage is the 404 of a response set aside: it is
    that 404, naming where the file went, and the other responses list as before."""
    import urllib.error
    import urllib.request

    import jan.local_files
    from api_helpers import running

    data = tmp_path / "data"
    (data / "responses").mkdir(parents=True)
    big = data / "responses" / f"{RESP}.json"
    content = b'{"response": {"id": "' + RESP.encode() + b'"}, "pad": "' + b"x" * 4096 + b'"}'
    big.write_bytes(content)
    monkeypatch.setattr(jan.local_files, "MAX_DATA_FILE_BYTES", 1024)  # (64 MiB on disk: the same path, smaller)
    monkeypatch.setattr(jan.local_files.read_regular_file, "__defaults__", (1024,))
    with running(data, stories_path) as srv:
        try:
            urllib.request.urlopen(f"{srv.base_url}/v1/responses/{RESP}", timeout=60)
            raise AssertionError("answered")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read())
    assert status == 404, body
    assert "damaged" in body["error"]["message"] and ".corrupt-" in body["error"]["message"], body
    assert [p.read_bytes() for p in big.parent.glob(f"{RESP}.json.corrupt-*")] == [content]
