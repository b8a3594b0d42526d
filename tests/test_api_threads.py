"""/v1/threads and /v1/threads/{id}/messages over HTTP against a real server and real files."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
from api_helpers import Client, files_outside, message_text, read_jsonl


async def test_thread_crud_and_files(server, tmp_path, stories_path):
    from jan.store import DataFolder

    data = tmp_path / "data"
    # (a thread's model is one there is: on disk, not loaded, is enough)
    DataFolder(data).models.import_gguf(stories_path, model_id="m1", mode="reference")
    async with Client(server.base_url) as api:
        thread = await api.ok("POST", "/v1/threads", {
            "title": "Trip", "metadata": {"k": "v"},
            "assistants": [{"assistant_id": "jan", "model": {"id": "m1", "parameters": {"temperature": 0.2}}}],
            "messages": [{"role": "user", "content": "hello"},
                         {"role": "assistant", "content": [{"type": "text", "text": "hi there"}]}]})
        tid = thread["id"]
        assert tid.startswith("thread_") and thread["object"] == "thread"
        assert thread["title"] == "Trip" and thread["metadata"] == {"k": "v"}
        assert thread["assistants"][0]["model"]["parameters"] == {"temperature": 0.2}
        assert isinstance(thread["created"], int) and isinstance(thread["updated"], int)
        on_disk = json.loads((data / "threads" / tid / "thread.json").read_text())
        assert on_disk["title"] == "Trip"
        lines = read_jsonl(data / "threads" / tid / "messages.jsonl")
        assert [m["role"] for m in lines] == ["user", "assistant"]
        assert lines[1]["content"] == [{"type": "text", "text": {"value": "hi there", "annotations": []}}]

        assert (await api.ok("GET", f"/v1/threads/{tid}"))["title"] == "Trip"
        changed = await api.ok("POST", f"/v1/threads/{tid}", {"title": "Trip 2", "metadata": {"x": "1"}})
        assert changed["title"] == "Trip 2" and changed["metadata"] == {"x": "1"}
        assert changed["updated"] > thread["updated"]
        patched = await api.ok("PATCH", f"/v1/threads/{tid}", {"assistants": []})
        assert patched["assistants"] == [] and patched["title"] == "Trip 2"
        assert json.loads((data / "threads" / tid / "thread.json").read_text())["title"] == "Trip 2"

        status, err = await api.patch(f"/v1/threads/{tid}", {"title": None})
        assert status == 400
        status, err = await api.post(f"/v1/threads/{tid}", {"colour": "red"})
        assert status == 400 and "colour" in err["error"]["message"]
        status, err = await api.post("/v1/threads", {"messages": [{"role": "robot", "content": "x"}]})
        assert status == 400

        deleted = await api.ok("DELETE", f"/v1/threads/{tid}")
        assert deleted == {"id": tid, "object": "thread.deleted", "deleted": True}
        assert not (data / "threads" / tid).exists()
        for method in ("GET", "DELETE"):
            status, err = await api.call(method, f"/v1/threads/{tid}")
            assert status == 404 and err["error"]["code"] == "not_found"
        assert (await api.post(f"/v1/threads/{tid}", {"title": "x"}))[0] == 404
        assert (await api.get(f"/v1/threads/{tid}/messages"))[0] == 404
        assert (await api.post(f"/v1/threads/{tid}/messages", {"role": "user", "content": "x"}))[0] == 404


async def test_thread_list_pagination(server):
    async with Client(server.base_url) as api:
        ids = []
        for i in range(5):
            ids.append((await api.ok("POST", "/v1/threads", {"title": f"t{i}"}))["id"])
        newest_first = list(reversed(ids))

        everything = await api.ok("GET", "/v1/threads")
        assert everything["object"] == "list" and [t["id"] for t in everything["data"]] == newest_first
        assert everything["has_more"] is False and everything["problems"] == []
        assert everything["first_id"] == newest_first[0] and everything["last_id"] == newest_first[-1]

        p1 = await api.ok("GET", "/v1/threads?limit=2")
        assert [t["id"] for t in p1["data"]] == newest_first[:2] and p1["has_more"] is True
        assert p1["first_id"] == newest_first[0] and p1["last_id"] == newest_first[1]
        p2 = await api.ok("GET", f"/v1/threads?limit=2&after={p1['last_id']}")
        assert [t["id"] for t in p2["data"]] == newest_first[2:4] and p2["has_more"] is True
        p3 = await api.ok("GET", f"/v1/threads?limit=2&after={p2['last_id']}")
        assert [t["id"] for t in p3["data"]] == newest_first[4:] and p3["has_more"] is False

        asc = await api.ok("GET", "/v1/threads?order=asc&limit=3")
        assert [t["id"] for t in asc["data"]] == ids[:3] and asc["has_more"] is True
        before = await api.ok("GET", f"/v1/threads?order=asc&limit=2&before={ids[4]}")
        assert [t["id"] for t in before["data"]] == ids[2:4] and before["has_more"] is True
        before_all = await api.ok("GET", f"/v1/threads?order=asc&limit=10&before={ids[2]}")
        assert [t["id"] for t in before_all["data"]] == ids[:2] and before_all["has_more"] is False
        window = await api.ok("GET", f"/v1/threads?order=asc&after={ids[0]}&before={ids[3]}")
        assert [t["id"] for t in window["data"]] == ids[1:3]

        for query in ("limit=0", "limit=101", "limit=abc", "order=up", "after=thread_unknown", "after=..%2Fx"):
            status, err = await api.get(f"/v1/threads?{query}")
            assert status == 400, (query, err)


async def test_every_thread_answer_has_the_fields_openais_spec_requires(server):
    """OpenAI's ``ThreadObject`` requires ``id``, ``object``, ``created_at``, ``tool_resources`` (null when there
    are none) and ``metadata``: clients generated from the spec refuse a thread without one. jan's threads lacked
    ``tool_resources`` (the SDK's pydantic model, which defaults it, did not tell)."""
    required = {"id", "object", "created_at", "tool_resources", "metadata"}
    async with Client(server.base_url) as api:
        made = await api.ok("POST", "/v1/threads", {})
        tid = made["id"]
        answers = [made, await api.ok("GET", f"/v1/threads/{tid}"),
                   await api.ok("POST", f"/v1/threads/{tid}", {"metadata": {"k": "v"}}),
                   *(await api.ok("GET", "/v1/threads"))["data"]]
        for thread in answers:
            assert required <= thread.keys(), thread
            assert thread["object"] == "thread" and thread["tool_resources"] is None, thread
        await api.ok("DELETE", f"/v1/threads/{tid}")


async def test_deleting_the_threads_listed_while_paging_them(server):
    """A client that deletes each thread it lists asks for the page after the last id of the one before, just
    deleted: that cursor keeps its place (as the message, assistant and file lists place theirs), either way round,
    ``before`` too; an id that never was, or one of another kind, is still refused. (It was a 400 "not in this
    list": a thread lists by its last update, which its id does not tell, so the store keeps the place of the
    threads it deleted.)"""
    async with Client(server.base_url) as api:
        for order in ("desc", "asc"):
            made = [(await api.ok("POST", "/v1/threads", {"title": f"t{i}"}))["id"] for i in range(5)]
            # one updated since it was made lists by that update
            await api.ok("POST", f"/v1/threads/{made[0]}/messages", {"role": "user", "content": "later"})
            listed = [t["id"] for t in (await api.ok("GET", f"/v1/threads?order={order}&limit=100"))["data"]]
            seen, after = [], None
            while True:
                page = await api.ok("GET", f"/v1/threads?order={order}&limit=2" + (f"&after={after}" if after else ""))
                for thread in page["data"]:
                    seen.append(thread["id"])
                    await api.ok("DELETE", f"/v1/threads/{thread['id']}")
                if not page["has_more"]:
                    break
                after = page["last_id"]
            assert seen == listed, order
            assert (await api.ok("GET", "/v1/threads"))["data"] == []
        # a before cursor deleted since: the page nearest to where it was
        made = [(await api.ok("POST", "/v1/threads", {"title": f"b{i}"}))["id"] for i in range(4)]
        await api.ok("DELETE", f"/v1/threads/{made[2]}")
        page = await api.ok("GET", f"/v1/threads?order=asc&limit=1&before={made[2]}")
        assert [t["id"] for t in page["data"]] == [made[1]] and page["has_more"]
        page = await api.ok("GET", f"/v1/threads?order=desc&limit=5&after={made[2]}")
        assert [t["id"] for t in page["data"]] == [made[1], made[0]] and not page["has_more"]
        message = (await api.ok("POST", f"/v1/threads/{made[0]}/messages", {"role": "user", "content": "x"}))["id"]
        for cursor in ("thread_01ARZ3NDEKTSV4RRFFQ69G5FAV", message):
            status, err = await api.get(f"/v1/threads?after={cursor}")
            assert status == 400 and err["error"]["param"] == "after", (cursor, err)
        for tid in (made[0], made[1], made[3]):
            await api.ok("DELETE", f"/v1/threads/{tid}")


async def test_messages_crud_content_shapes(server, tmp_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        base = f"/v1/threads/{tid}/messages"
        as_string = await api.ok("POST", base, {"role": "user", "content": "plain text"})
        jan_parts = await api.ok("POST", base, {"role": "assistant", "content": [
            {"type": "text", "text": {"value": "jan shape", "annotations": []}}]})
        openai_parts = await api.ok("POST", base, {"role": "user", "content": [
            {"type": "text", "text": "openai "}, {"type": "text", "text": "shape"}], "metadata": {"a": "b"}})
        expected = {"type": "text", "text": {"value": "plain text", "annotations": []}}
        assert as_string["content"] == [expected]
        assert jan_parts["content"] == [{"type": "text", "text": {"value": "jan shape", "annotations": []}}]
        assert message_text(openai_parts) == "openai shape" and openai_parts["metadata"] == {"a": "b"}
        for m in (as_string, jan_parts, openai_parts):
            assert m["object"] == "thread.message" and m["thread_id"] == tid and m["status"] == "completed"
            assert m["id"].startswith("msg_")
        stored = read_jsonl(data / "threads" / tid / "messages.jsonl")
        assert [s["id"] for s in stored] == [as_string["id"], jan_parts["id"], openai_parts["id"]]
        assert all(p["text"].keys() == {"value", "annotations"} for s in stored for p in s["content"])

        got = await api.ok("GET", f"{base}/{jan_parts['id']}")
        assert got == jan_parts
        edited = await api.ok("POST", f"{base}/{jan_parts['id']}", {"content": "edited", "status": "stopped"})
        assert message_text(edited) == "edited" and edited["status"] == "incomplete"  # Jan's stopped, on OpenAI's wire
        assert read_jsonl(data / "threads" / tid / "messages.jsonl")[1]["status"] == "stopped"
        meta = await api.ok("PATCH", f"{base}/{jan_parts['id']}", {"metadata": {"note": "1"}})
        assert meta["metadata"] == {"note": "1"} and message_text(meta) == "edited"
        assert read_jsonl(data / "threads" / tid / "messages.jsonl")[1]["metadata"] == {"note": "1"}

        for bad in ({"status": "done"}, {"content": 5}, {"role": "user"}, {"content": None}):
            status, _ = await api.patch(f"{base}/{jan_parts['id']}", bad)
            assert status == 400, bad
        status, _ = await api.post(base, {"role": "user"})
        assert status == 400
        status, _ = await api.post(base, {"role": "user", "content": [{"type": "video", "video": {}}]})
        assert status == 400

        assert (await api.ok("DELETE", f"{base}/{as_string['id']}"))["deleted"] is True
        assert [s["id"] for s in read_jsonl(data / "threads" / tid / "messages.jsonl")] == \
            [jan_parts["id"], openai_parts["id"]]
        for method, body in (("GET", None), ("DELETE", None), ("POST", {"metadata": {}})):
            status, err = await api.call(method, f"{base}/{as_string['id']}", body)
            assert status == 404 and err["error"]["code"] == "not_found", method
        assert (await api.get(f"/v1/threads/thread_missing/messages/{jan_parts['id']}"))[0] == 404


async def test_message_pagination(server):
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        ids = [(await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": f"m{i}"}))["id"]
               for i in range(7)]
        default = await api.ok("GET", f"/v1/threads/{tid}/messages")
        assert [m["id"] for m in default["data"]] == list(reversed(ids))  # OpenAI: newest first
        p1 = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=3")
        assert [m["id"] for m in p1["data"]] == ids[:3] and p1["has_more"] and p1["last_id"] == ids[2]
        p2 = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=3&after={ids[2]}")
        assert [m["id"] for m in p2["data"]] == ids[3:6] and p2["has_more"]
        p3 = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=3&after={ids[5]}")
        assert [m["id"] for m in p3["data"]] == ids[6:] and not p3["has_more"]
        back = await api.ok("GET", f"/v1/threads/{tid}/messages?order=desc&limit=2&before={ids[3]}")
        assert [m["id"] for m in back["data"]] == [ids[5], ids[4]] and back["has_more"]
        assert (await api.get(f"/v1/threads/{tid}/messages?before=msg_nope"))[0] == 400



async def test_deleting_the_messages_listed_while_the_sdk_pages_them(server):
    """A client that deletes what it lists: the SDK asks for the page after the last id of the one before, just
    deleted; that cursor keeps its place (as OpenAI's), both in OpenAI's listing and with ``?all=true``. A message
    id that never was, or one still in the thread that the listing leaves out, is still refused."""
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for order, query in (("desc", {}), ("asc", {}), ("asc", {"all": "true"})):
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": f"m{i}"}
                                                                for i in range(5)])
            made = [m.id async for m in client.beta.threads.messages.list(thread.id, order="asc")]
            seen = []
            async for message in client.beta.threads.messages.list(thread.id, limit=2, order=order,
                                                                    extra_query=query):
                seen.append(message.id)
                await client.beta.threads.messages.delete(message.id, thread_id=thread.id)
            assert seen == (made if order == "asc" else made[::-1]), (order, query)
            assert (await client.beta.threads.messages.list(thread.id)).data == []
    await client.close()
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        kept = (await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "kept"}))["id"]
        tool = (await api.ok("POST", f"/v1/threads/{tid}/messages",
                             {"role": "tool", "content": "42", "metadata": {"tool_call_id": "call_1"}}))["id"]
        shown = await api.ok("GET", f"/v1/threads/{tid}/messages")
        assert [m["id"] for m in shown["data"]] == [kept]  # (a tool result is left out of OpenAI's listing)
        for cursor in ("msg_nope", tool):
            status, err = await api.get(f"/v1/threads/{tid}/messages?after={cursor}")
            assert status == 400 and err["error"]["param"] == "after", (cursor, err)

async def test_parallel_appends_lose_nothing(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        texts = [f"parallel message {i}" for i in range(16)]
        results = await asyncio.gather(*(api.call("POST", f"/v1/threads/{tid}/messages",
                                                  {"role": "user", "content": t}) for t in texts))
        assert all(status == 200 for status, _ in results), results
        created = [body for _, body in results]
        assert len({m["id"] for m in created}) == 16
        assert sorted(message_text(m) for m in created) == sorted(texts)

        on_disk = read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl")
        assert len(on_disk) == 16 and {m["id"] for m in on_disk} == {m["id"] for m in created}
        listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100")
        assert [m["id"] for m in listed["data"]] == [m["id"] for m in on_disk]  # creation (file) order
        desc = await api.ok("GET", f"/v1/threads/{tid}/messages?limit=100")
        assert [m["id"] for m in desc["data"]] == [m["id"] for m in reversed(on_disk)]
        assert sorted(message_text(m) for m in listed["data"]) == sorted(texts)


@pytest.mark.parametrize("raw", [
    "..%2F..%2Fevil", "%2e%2e%2f%2e%2e%2fevil", "%2e%2e", "..%5C..%5Cevil", "%2Fetc%2Fpasswd",
    "%2Ftmp%2Fevil", "C:%5Cwindows", "evil%00", ".hidden", "a%2Fb",
])
async def test_path_traversal_ids_rejected(server, tmp_path, raw):
    data = tmp_path / "data"
    before = files_outside(data)
    threads_before = sorted(p.name for p in (data / "threads").iterdir())
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        mid = (await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "x"}))["id"]
        attempts = [
            ("GET", f"/v1/threads/{raw}", None),
            ("POST", f"/v1/threads/{raw}", {"title": "x"}),
            ("DELETE", f"/v1/threads/{raw}", None),
            ("GET", f"/v1/threads/{raw}/messages", None),
            ("POST", f"/v1/threads/{raw}/messages", {"role": "user", "content": "x"}),
            ("GET", f"/v1/threads/{tid}/messages/{raw}", None),
            ("PATCH", f"/v1/threads/{tid}/messages/{raw}", {"metadata": {}}),
            ("DELETE", f"/v1/threads/{raw}/messages/{mid}", None),
            ("GET", f"/v1/assistants/{raw}", None),
            ("POST", f"/v1/assistants/{raw}", {"name": "x"}),
            ("DELETE", f"/v1/assistants/{raw}", None),
            ("POST", f"/v1/threads/{raw}/runs", {}),
        ]
        for method, path, body in attempts:
            status, err = await api.call(method, path, body, raw_path=True)
            assert status == 400, (method, path, status, err)
            assert err["error"]["code"] == "invalid_id", (method, path, err)
        from urllib.parse import unquote

        decoded = unquote(raw)
        for method, path, body in [
            ("POST", "/v1/threads", {"id": decoded}),
            ("POST", "/v1/assistants", {"id": decoded, "name": "x"}),
            ("POST", "/v1/threads", {"assistants": [{"assistant_id": decoded}]}),
            ("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "x", "assistant_id": decoded}),
        ]:
            status, err = await api.call(method, path, body)
            assert status == 400, (method, path, body, status, err)
        # unencoded dot segments never reach a handler with a climbing id
        status, _ = await api.call("GET", "/v1/threads/../../etc/passwd", raw_path=True)
        assert status in (400, 404)
    assert files_outside(data) == before
    assert sorted(p.name for p in (data / "threads").iterdir()) == sorted(threads_before + [tid])


async def test_openai_client_threads_and_messages(server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        beta = client.beta
        thread = await beta.threads.create(messages=[{"role": "user", "content": "first"}], metadata={"via": "sdk"})
        assert thread.id.startswith("thread_") and thread.metadata == {"via": "sdk"}
        message = await beta.threads.messages.create(thread.id, role="user", content="second")
        assert message.content[0].text.value == "second" and message.thread_id == thread.id
        parts = await beta.threads.messages.create(thread.id, role="assistant",
                                                   content=[{"type": "text", "text": "third"}])
        assert parts.content[0].text.value == "third"
        page = await beta.threads.messages.list(thread.id, order="asc", limit=2)
        assert [m.content[0].text.value for m in page.data] == ["first", "second"] and page.has_more
        every = [m.content[0].text.value async for m in beta.threads.messages.list(thread.id, order="asc", limit=1)]
        assert every == ["first", "second", "third"]  # the SDK's auto-pagination follows after=last_id
        got = await beta.threads.messages.retrieve(message.id, thread_id=thread.id)
        assert got.id == message.id
        updated = await beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"seen": "yes"})
        assert updated.metadata == {"seen": "yes"}
        modified = await beta.threads.update(thread.id, metadata={"via": "sdk2"})
        assert modified.metadata == {"via": "sdk2"}
        assert (await beta.threads.retrieve(thread.id)).id == thread.id
        assert (await beta.threads.messages.delete(message.id, thread_id=thread.id)).deleted is True
        assert (await beta.threads.delete(thread.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await beta.threads.retrieve(thread.id)
    await client.close()


async def test_openapi_documents_bodies(server):
    async with Client(server.base_url) as api:
        spec = await api.ok("GET", "/openapi.json")
    paths = spec["paths"]
    for path, method, schema in [
        ("/v1/threads", "post", "ThreadCreate"),
        ("/v1/threads/{thread_id}/messages", "post", "MessageCreate"),
        ("/v1/threads/{thread_id}/runs", "post", "RunCreate"),
        ("/v1/assistants", "post", "AssistantCreate"),
        ("/v1/models", "post", "CreateModelRequest"),
        ("/v1/models/pull", "post", "PullRequest"),
        ("/v1/models/{model_id}", "patch", "ModelPatch"),
    ]:
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + schema) and schema in spec["components"]["schemas"]
    assert "get" in paths["/v1/threads/{thread_id}/messages/{message_id}"]
