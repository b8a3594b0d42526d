"""/v1/assistants over HTTP: the default assistant, CRUD, pagination, the openai client."""

from __future__ import annotations

import json
import warnings

import pytest
from api_helpers import Client, running


@pytest.fixture
def server(tmp_path, stories_path):
    """A server with stories260K: an assistant names a model that is there (or '*')."""
    with running(tmp_path / "data", stories_path) as srv:
        yield srv


async def test_a_model_that_is_not_there_is_refused_when_it_is_given(server):
    """As OpenAI's: an assistant (created or changed) or a run naming no model jan has is refused then — with the id it
    may have meant — not accepted and failed at its first run; an empty id is no way to say "none"."""
    async with Client(server.base_url) as api:
        status, err = await api.post("/v1/assistants", {"name": "x", "model": "stories260"})
        assert status == 404 and err["error"]["code"] == "model_not_found" and err["error"]["param"] == "model", err
        assert "stories260K" in err["error"]["message"], err  # did you mean
        status, err = await api.post("/v1/assistants", {"name": "x", "model": ""})
        assert status == 400 and err["error"]["param"] == "model" and "'*'" in err["error"]["message"], err
        assert [a["id"] for a in (await api.ok("GET", "/v1/assistants"))["data"]] == ["jan"]  # nothing made
        made = await api.ok("POST", "/v1/assistants", {"name": "x", "model": "*"})
        status, err = await api.post(f"/v1/assistants/{made['id']}", {"model": "nope"})
        assert status == 404 and err["error"]["code"] == "model_not_found", err
        assert (await api.ok("GET", f"/v1/assistants/{made['id']}"))["model"] == "*"  # unchanged
        assert (await api.ok("POST", f"/v1/assistants/{made['id']}", {"model": "stories260K"}))["model"] == "stories260K"

        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]})
        for path, body in ((f"/v1/threads/{thread['id']}/runs", {}),
                           ("/v1/threads/runs", {"thread": {"messages": [{"role": "user", "content": "Once"}]}})):
            status, err = await api.post(path, {**body, "model": "", "max_tokens": 2})
            assert status == 400 and err["error"]["param"] == "model" and "empty" in err["error"]["message"], err
            status, err = await api.post(path, {**body, "model": "stories260", "max_tokens": 2})
            assert status == 404 and "stories260K" in err["error"]["message"], err
        assert (await api.ok("GET", f"/v1/threads/{thread['id']}/runs"))["data"] == []


async def test_default_assistant_and_crud(server, tmp_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        listed = await api.ok("GET", "/v1/assistants")
        assert [a["id"] for a in listed["data"]] == ["jan"] and listed["has_more"] is False
        jan = await api.ok("GET", "/v1/assistants/jan")
        assert jan["object"] == "assistant" and jan["model"] == "*" and jan["name"] == "Jan"

        made = await api.ok("POST", "/v1/assistants", {
            "id": "coder", "name": "Coder", "instructions": "Write code.", "model": "stories260K",
            "temperature": 0.3, "parameters": {"max_tokens": 64}, "metadata": {"team": "a"},
            "tools": [{"type": "function", "function": {"name": "run_code", "parameters": {"type": "object"}}}]})
        assert made["id"] == "coder" and made["temperature"] == 0.3 and made["top_p"] is None
        assert made["tools"][0]["function"]["name"] == "run_code"
        assert made["parameters"] == {"max_tokens": 64, "temperature": 0.3}
        on_disk = json.loads((data / "assistants" / "coder" / "assistant.json").read_text())
        assert on_disk["instructions"] == "Write code." and on_disk["parameters"] == {"max_tokens": 64, "temperature": 0.3}

        status, err = await api.post("/v1/assistants", {"id": "coder", "name": "again"})
        assert status == 409 and err["error"]["code"] == "already_exists"
        status, err = await api.post("/v1/assistants", {"name": "x", "colour": "red"})
        assert status == 400 and "colour" in err["error"]["message"]
        status, _ = await api.post("/v1/assistants", {"name": None})
        assert status == 400
        status, _ = await api.post("/v1/assistants", {"temperature": 7})
        assert status == 400

        changed = await api.ok("POST", "/v1/assistants/coder", {"name": "Coder 2", "top_p": 0.9})
        assert changed["name"] == "Coder 2" and changed["instructions"] == "Write code."
        assert changed["parameters"] == {"max_tokens": 64, "temperature": 0.3, "top_p": 0.9}
        patched = await api.ok("PATCH", "/v1/assistants/coder", {"parameters": {"seed": 1}, "temperature": None})
        assert patched["parameters"] == {"seed": 1} and patched["temperature"] is None
        assert json.loads((data / "assistants" / "coder" / "assistant.json").read_text())["name"] == "Coder 2"

        deleted = await api.ok("DELETE", "/v1/assistants/coder")
        assert deleted == {"id": "coder", "object": "assistant.deleted", "deleted": True}
        assert not (data / "assistants" / "coder").exists()
        for method, body in (("GET", None), ("POST", {"name": "x"}), ("PATCH", {"name": "x"}), ("DELETE", None)):
            status, err = await api.call(method, "/v1/assistants/coder", body)
            assert status == 404 and err["error"]["code"] == "not_found", method


async def test_assistant_pagination(server):
    async with Client(server.base_url) as api:
        ids = ["jan"]
        for i in range(4):
            ids.append((await api.ok("POST", "/v1/assistants", {"name": f"a{i}"}))["id"])
        created_order = (await api.ok("GET", "/v1/assistants?order=asc&limit=100"))["data"]
        asc = [a["id"] for a in created_order]
        assert sorted(asc) == sorted(ids) and [a for a in asc if a != "jan"] == ids[1:]
        desc = await api.ok("GET", "/v1/assistants?limit=2")
        assert [a["id"] for a in desc["data"]] == asc[::-1][:2] and desc["has_more"] is True
        nxt = await api.ok("GET", f"/v1/assistants?limit=2&after={desc['last_id']}")
        assert [a["id"] for a in nxt["data"]] == asc[::-1][2:4] and nxt["has_more"] is True
        last = await api.ok("GET", f"/v1/assistants?limit=2&after={nxt['last_id']}")
        assert [a["id"] for a in last["data"]] == asc[::-1][4:] and last["has_more"] is False
        before = await api.ok("GET", f"/v1/assistants?order=asc&limit=2&before={asc[3]}")
        assert [a["id"] for a in before["data"]] == asc[1:3] and before["has_more"] is True
        assert (await api.get("/v1/assistants?after=asst_unknown"))[0] == 400
        assert (await api.get("/v1/assistants?limit=0"))[0] == 400


async def test_openai_client_assistants(server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made = await client.beta.assistants.create(model="stories260K", name="Story teller",
                                                   instructions="Tell stories.", temperature=0.5,
                                                   metadata={"k": "v"})
        assert made.id.startswith("asst_") and made.name == "Story teller" and made.temperature == 0.5
        got = await client.beta.assistants.retrieve(made.id)
        assert got.instructions == "Tell stories." and got.model == "stories260K"
        updated = await client.beta.assistants.update(made.id, name="Teller", top_p=0.8)
        assert updated.name == "Teller" and updated.top_p == 0.8 and updated.temperature == 0.5
        names = [a.name async for a in client.beta.assistants.list(order="asc", limit=1)]
        assert sorted(names) == ["Jan", "Teller"]
        assert (await client.beta.assistants.delete(made.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.beta.assistants.retrieve(made.id)
    await client.close()



def test_an_empty_tool_resources_is_taken_and_one_naming_files_is_refused(server, tmp_path):
    """``tool_resources`` (the SDK's on assistants.create/update, threads.create/update and create_and_run, and what
    OpenAI's thread object carries, null) was "Unrecognized request argument" even null or empty, so an app sending
    back what it was given failed. An empty one is taken and kept nowhere; one naming files or vector stores (for
    hosted tools jan does not run) is a 400 naming where, rather than ignored."""
    import openai

    from dialect_helpers import openai_client

    client, beta = openai_client(server), openai_client(server).beta
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made = beta.assistants.create(model="stories260K", tool_resources={})
        beta.assistants.update(made.id, tool_resources={"code_interpreter": {"file_ids": []},
                                                        "file_search": {"vector_store_ids": None}})
        thread = beta.threads.create(tool_resources=None)
        assert beta.threads.update(thread.id, tool_resources=thread.tool_resources).tool_resources is None
        ran = beta.threads.create_and_run_poll(assistant_id=made.id, tool_resources={}, max_completion_tokens=1,
                                               thread={"tool_resources": {}, "messages": [{"role": "user",
                                                                                           "content": "Hi"}]})
        assert ran.status in ("completed", "incomplete"), ran
        for call_it, param in (
                (lambda: beta.assistants.create(model="stories260K",
                                                tool_resources={"code_interpreter": {"file_ids": ["file-1"]}}),
                 "tool_resources.code_interpreter.file_ids"),
                (lambda: beta.threads.create(tool_resources={"file_search": {"vector_store_ids": ["vs_1"]}}),
                 "tool_resources.file_search.vector_store_ids"),
                (lambda: beta.threads.create_and_run(assistant_id=made.id, thread={
                    "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}}),
                 "thread.tool_resources.file_search.vector_store_ids")):
            with pytest.raises(openai.BadRequestError) as caught:
                call_it()
            assert caught.value.param == param and "no hosted code interpreter" in caught.value.message, caught.value
    stored = "".join(p.read_text() for p in (tmp_path / "data").rglob("*.json"))
    assert "tool_resources" not in stored and "vs_1" not in stored
    client.close()


async def test_deleting_the_assistants_listed_while_the_sdk_pages_them(server):
    """A client that deletes what it lists (``for a in client.beta.assistants.list(): delete(a)``): the SDK asks
    for the page after the last id of the one before, just deleted; that cursor keeps its place (as OpenAI's),
    so every assistant is seen once, either way round. An id that never was is still refused."""
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for order in ("desc", "asc"):
            made = [(await client.beta.assistants.create(model="*", name=f"a{i}")).id for i in range(5)]
            seen = []
            async for assistant in client.beta.assistants.list(limit=2, order=order):
                seen.append(assistant.id)
                if assistant.id != "jan":
                    await client.beta.assistants.delete(assistant.id)
            assert [i for i in seen if i != "jan"] == (made if order == "asc" else made[::-1]), order
            assert [a.id async for a in client.beta.assistants.list()] == ["jan"]
        # a before cursor deleted since: the page nearest to where it was
        made = [(await client.beta.assistants.create(model="*", name=f"b{i}")).id for i in range(4)]
        await client.beta.assistants.delete(made[2])
        page = await client.beta.assistants.list(order="asc", limit=1, before=made[2])
        assert [a.id for a in page.data] == [made[1]] and page.has_more
    await client.close()
    async with Client(server.base_url) as api:
        assert (await api.get("/v1/assistants?after=asst_unknown"))[0] == 400

def test_default_assistant_comes_back_after_restart(tmp_path):
    import asyncio

    async def delete_it(base):
        async with Client(base) as api:
            await api.ok("DELETE", "/v1/assistants/jan")
            return (await api.get("/v1/assistants/jan"))[0]

    async def get_it(base):
        async with Client(base) as api:
            return await api.ok("GET", "/v1/assistants/jan")

    with running(tmp_path / "data") as srv:
        assert asyncio.run(delete_it(srv.base_url)) == 404
    with running(tmp_path / "data") as srv:
        assert asyncio.run(get_it(srv.base_url))["name"] == "Jan"


async def test_tools_no_run_could_use_are_refused_where_they_are_given(server):
    """OpenAI's hosted tools have nothing behind them in jan, and a function name given twice leaves the model's
    call ambiguous: an assistant, a thread's assistant entry and a run refuse them (400 naming the entry), rather
    than a run that silently goes without them. Jan desktop's disabled retrieval entry is kept."""
    fn = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    async with Client(server.base_url) as api:
        threads_before = len((await api.ok("GET", "/v1/threads?limit=100"))["data"])
        for tools, param in (([{"type": "code_interpreter"}], "tools[0].type"),
                             ([fn, {"type": "file_search"}], "tools[1].type"),
                             ([fn, fn], "tools[1]"),
                             ([{"type": "function", "function": {}}], "tools[0].function.name"),
                             ([{"type": "mcp"}], "tools[0].server_label")):
            status, err = await api.post("/v1/assistants", {"name": "x", "tools": tools})
            assert status == 400 and err["error"]["param"] == param, (tools, err)
            status, err = await api.post("/v1/threads", {"assistants": [{"assistant_id": "jan", "tools": tools}]})
            assert status == 400 and err["error"]["param"] == f"assistants[0].{param}", (tools, err)
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]}))["id"]
            status, err = await api.post(f"/v1/threads/{tid}/runs", {"model": "stories260K", "tools": tools})
            assert status == 400 and err["error"]["param"] == param, (tools, err)
            status, err = await api.post("/v1/threads/runs", {"model": "stories260K", "tools": tools,
                                                              "thread": {"messages": [{"role": "user", "content": "Hi"}]}})
            assert status == 400 and err["error"]["param"] == param, (tools, err)
        kept = await api.ok("POST", "/v1/assistants", {"name": "desktop", "tools": [
            {"type": "retrieval", "enabled": False, "settings": {"top_k": 2}}, fn]})
        assert kept["tools"][0]["type"] == "retrieval"
        # the five threads made for the runs, and none from the refused create-and-runs
        assert len((await api.ok("GET", "/v1/threads?limit=100"))["data"]) == threads_before + 5


async def test_a_tool_schema_no_grammar_takes_is_refused_where_it_is_given(server):
    """A function's parameters schema every run makes a grammar of (a type no JSON has, a $ref that does not resolve,
    a bad pattern): an assistant (created or changed) and a thread's assistant entry (created, changed, or made by
    create-and-run) refuse it with the 400 a chat completion gives (``invalid_schema`` naming the entry), as a run's
    own tools are. It was stored, and every run of it was then refused."""
    async with Client(server.base_url) as api:
        made = await api.ok("POST", "/v1/assistants", {"name": "x", "model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        for schema in ({"type": "nonsense"}, {"type": "object", "properties": {"a": {"$ref": "#/nope"}}},
                       {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}):
            tools = [{"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}},
                     {"type": "function", "function": {"name": "lookup", "parameters": schema}}]
            param = "tools[1].function.parameters"
            for path, body, where in (
                    ("/v1/assistants", {"name": "y", "tools": tools}, ""),
                    (f"/v1/assistants/{made['id']}", {"tools": tools}, ""),
                    ("/v1/threads", {"assistants": [{"assistant_id": made["id"], "tools": tools}]}, "assistants[0]."),
                    (f"/v1/threads/{tid}", {"assistants": [{"assistant_id": made["id"], "tools": tools}]},
                     "assistants[0]."),
                    ("/v1/threads/runs", {"assistant_id": made["id"], "thread": {
                        "assistants": [{"assistant_id": made["id"], "tools": tools}],
                        "messages": [{"role": "user", "content": "Hi"}]}}, "thread.assistants[0].")):
                status, err = await api.post(path, body)
                assert status == 400, (path, schema, err)
                assert err["error"]["code"] == "invalid_schema" and err["error"]["param"] == where + param, err
        assert (await api.ok("GET", f"/v1/assistants/{made['id']}"))["tools"] == []  # nothing stored
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["assistants"] in ([], None)
        assert [a["name"] for a in (await api.ok("GET", "/v1/assistants"))["data"]].count("y") == 0
        assert len((await api.ok("GET", "/v1/threads?limit=100"))["data"]) == 1


async def test_a_damaged_assistant_json_is_named_in_the_list(tmp_path, stories_path):
    """An assistant whose assistant.json is damaged (left in place to mend) vanished from GET /v1/assistants without
    a word, where /v1/threads and /v1/models name such a file in ``problems``: now the assistants' list does too."""
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/assistants", {"id": "librarian", "name": "Librarian", "model": "stories260K"})
    (data / "assistants" / "librarian" / "assistant.json").write_text("{not json")
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            listed = await api.ok("GET", "/v1/assistants")
    assert "librarian" not in [a["id"] for a in listed["data"]]
    assert [p["path"] for p in listed["problems"]] == ["assistants/librarian/assistant.json"], listed["problems"]
    assert "repair it or remove it" in listed["problems"][0]["error"]
    assert (data / "assistants" / "librarian" / "assistant.json").read_text() == "{not json"
