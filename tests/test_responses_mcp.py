"""The Responses API's remote MCP tool (``{"type": "mcp", ...}``): a real MCP server (the SDK's FastMCP over
streamable HTTP on 127.0.0.1, and a server of mcp.json by its label), a tiny model with Qwen3's real tool-calling
template (calls forced with ``tool_choice``): the listing item, a call run and fed back, approval asked, approved
and denied, ``allowed_tools``, a URL not allowed, an unreachable server, the stream's events, the openai SDK."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from api_helpers import Client, parse_sse, running

from mcp_helpers import dead_url, hang_url, notes_url, sse_url  # noqa: F401 - the module's MCP servers (fixtures)
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(600)

LISTED = "shopping.txt\ntodo.txt"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tool_model, notes_url, dead_url, sse_url, hang_url):
    data = tmp_path_factory.mktemp("rmcp") / "data"
    root = notes_folder(data.parent)
    wild = str(Path(__file__).parent / "mcp_servers" / "wild_server.py")
    write_mcp_config(data, {"local": stdio_entry(root), "wild": {"command": sys.executable, "args": [wild]}})
    # only the notes server's address may be connected to (as a media URL prefix)
    with running(data, tool_model, n_ctx=2048, allow_media_from=[notes_url.rsplit("/", 1)[0] + "/",
                                                                     dead_url.rsplit("/", 1)[0] + "/",
                                                                     sse_url.rsplit("/", 1)[0] + "/",
                                                                     hang_url.rsplit("/", 1)[0] + "/"]) as srv:
        yield srv


def mcp_tool(url: str | None, **extra) -> dict:
    tool = {"type": "mcp", "server_label": "notes", **extra}
    if url is not None:
        tool["server_url"] = url
    return tool


def body(tools: list, **extra) -> dict:
    return {"model": "qwen3-tools", "input": "What notes do I have?", "tools": tools, "max_output_tokens": 40,
            "temperature": 0, "parallel_tool_calls": False,
            "tool_choice": {"type": "mcp", "server_label": "notes", "name": "list_notes"}, **extra}


async def mcp_tasks_left(server, label: str = "notes") -> list[str]:
    """The server's tasks still holding an MCP connection named ``label``, once they have had 30 s to end."""
    import asyncio

    async def names() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name() == f"mcp:{label}" and not t.done()]

    for _ in range(300):
        left = asyncio.run_coroutine_threadsafe(names(), server._loop).result(10)
        if not left:
            return []
        await asyncio.sleep(0.1)
    return left


def _error_text(call: dict) -> str:
    """An ``mcp_call``'s error text, from the typed error OpenAI's API gives (an ``mcp_tool_execution_error``)."""
    error = call["error"]
    assert error["type"] == "mcp_tool_execution_error", error
    return "\n".join(part["text"] for part in error["content"])


def kinds(response: dict) -> list[str]:
    return [item["type"] for item in response["output"]]


async def test_listing_and_a_call_run_and_fed_back(server, notes_url):
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body([mcp_tool(notes_url, require_approval="never")]))
        assert resp["status"] in ("completed", "incomplete"), resp
        out = resp["output"]
        assert out[0]["type"] == "mcp_list_tools" and out[0]["server_label"] == "notes" and "error" not in out[0]
        names = {t["name"] for t in out[0]["tools"]}
        assert {"list_notes", "read_note", "add"} <= names
        listed = next(t for t in out[0]["tools"] if t["name"] == "read_note")
        assert listed["input_schema"]["properties"]["name"]["type"] == "string"
        call = out[1]
        assert call["type"] == "mcp_call" and call["name"] == "list_notes" and call["server_label"] == "notes"
        assert call["output"] == LISTED and call["error"] is None and call["status"] == "completed"
        assert call["id"].startswith("mcp_") and isinstance(call["arguments"], str)
        # the model went on with the result in the same response
        assert kinds(resp)[2:] and kinds(resp)[-1] in ("message", "mcp_call", "mcp_approval_request")
        assert resp["usage"]["input_tokens"] > 0
        # the tool is echoed as given
        assert resp["tools"][0]["type"] == "mcp" and resp["tools"][0]["server_label"] == "notes"

        # the listing is made once per conversation: a response continuing this one lists nothing again
        again = await api.ok("POST", "/v1/responses", body([mcp_tool(notes_url, require_approval="never")],
                                                           previous_response_id=resp["id"], input="And now?"))
        assert "mcp_list_tools" not in kinds(again) and kinds(again)[0] == "mcp_call", kinds(again)
        assert await mcp_tasks_left(server) == []  # each response's connection closed with it


async def test_approval_asked_then_approved(server, notes_url):
    async with Client(server.base_url) as api:
        # require_approval defaults to "always", as OpenAI's
        asked = await api.ok("POST", "/v1/responses", body([mcp_tool(notes_url)]))
        assert kinds(asked) == ["mcp_list_tools", "mcp_approval_request"], asked["output"]
        request = asked["output"][1]
        assert request["name"] == "list_notes" and request["server_label"] == "notes"
        assert asked["status"] == "completed"
        resp = await api.ok("POST", "/v1/responses", {
            "model": "qwen3-tools", "previous_response_id": asked["id"], "tools": [mcp_tool(notes_url)],
            "max_output_tokens": 30, "temperature": 0,
            "input": [{"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}]})
        assert resp["status"] in ("completed", "incomplete"), resp
        call = resp["output"][0]
        assert call["type"] == "mcp_call" and call["output"] == LISTED and call["approval_request_id"] == request["id"]
        assert "mcp_list_tools" not in kinds(resp)  # (listed by the previous response)


async def test_approval_denied_runs_nothing(server, notes_url):
    async with Client(server.base_url) as api:
        asked = await api.ok("POST", "/v1/responses", body([mcp_tool(notes_url, require_approval={
            "always": {"tool_names": ["list_notes"]}})]))
        request = asked["output"][-1]
        assert request["type"] == "mcp_approval_request"
        resp = await api.ok("POST", "/v1/responses", {
            "model": "qwen3-tools", "previous_response_id": asked["id"], "tools": [mcp_tool(notes_url)],
            "max_output_tokens": 20, "temperature": 0,
            "input": [{"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": False}]})
        call = resp["output"][0]
        assert call["type"] == "mcp_call" and call["output"] is None and "denied" in _error_text(call)
        # an answer to no request of the previous response is a 400 naming it
        status, err = await api.post("/v1/responses", {
            "model": "qwen3-tools", "previous_response_id": asked["id"], "tools": [mcp_tool(notes_url)],
            "input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}]})
        assert status == 400 and err["error"]["param"] == "input[0].approval_request_id", err


async def test_approval_of_a_request_sent_back_store_false(server, notes_url):
    """A client that keeps its items (store: false: no previous response to read) approves by sending the
    listing, the mcp_approval_request and its mcp_approval_response back in input, as OpenAI's docs show."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url)]
        asked = await api.ok("POST", "/v1/responses", body(tools, store=False))
        assert kinds(asked) == ["mcp_list_tools", "mcp_approval_request"], asked["output"]
        request = asked["output"][1]
        resp = await api.ok("POST", "/v1/responses", body(tools, store=False, tool_choice="none", max_output_tokens=5,
                                                          input=[{"role": "user", "content": "What notes do I have?"},
                                                                 *asked["output"],
                                                                 {"type": "mcp_approval_response", "approve": True,
                                                                  "approval_request_id": request["id"]}]))
        call = resp["output"][0]
        assert call["type"] == "mcp_call" and call["output"] == LISTED and call["approval_request_id"] == request["id"]
        assert "mcp_list_tools" not in kinds(resp)


async def test_a_huge_result_is_cut_and_its_overflow_closes_the_session(server, hang_url):
    """An approved call of a huge answer (50 M characters): cut to the tools' bound, and where the conversation
    with it overflows the context (2048 here), a 400 naming the context, with the server's session closed."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(hang_url, server_label="flood", require_approval="always")]
        request = {"type": "mcp_approval_request", "id": "mcpr_flood", "server_label": "flood", "name": "flood",
                   "arguments": '{"chars": 50000000}'}
        for stream in (False, True):
            status, err = await api.post("/v1/responses", body(tools, store=False, tool_choice="none", stream=stream,
                                                               input=[{"role": "user", "content": "x"}, request, {
                                                                   "type": "mcp_approval_response", "approve": True,
                                                                   "approval_request_id": "mcpr_flood"}]))
            assert status == 400 and err["error"]["code"] == "context_length_exceeded", err
            message = err["error"]["message"]  # names the call that ran, so that it is not approved (run) again
            assert "context" in message and "mcpr_flood" in message and "'flood'" in message and "ran" in message, \
                message
        assert await mcp_tasks_left(server, "flood") == []


async def test_tools_whose_names_meet_once_changed_are_each_callable(server):
    """A server's ``a.b`` beside ``a_b``, and two non-ASCII names, meet once made function names: each is listed
    and each can be forced (``tool_choice``) and called by its own MCP name; the last of each pair was the only
    one (the others a 400 saying the server offers no such tool)."""
    async with Client(server.base_url) as api:
        tools = [{"type": "mcp", "server_label": "wild", "require_approval": "never"}]
        for name in ("a.b", "a_b", "検索", "取得"):
            resp = await api.ok("POST", "/v1/responses", body(tools, tool_choice={
                "type": "mcp", "server_label": "wild", "name": name}, max_output_tokens=5))
            assert name in [t["name"] for t in resp["output"][0]["tools"]]
            calls = [i for i in resp["output"] if i["type"] == "mcp_call"]
            assert calls and calls[0]["name"] == name and calls[0]["server_label"] == "wild", (name, resp["output"])


async def test_two_servers_whose_tools_meet_once_named_are_each_callable(server, notes_url):
    """Two servers' tools that meet once made function names (two long labels alike in their first characters, as
    "a__b" with "c" and "a" with "b__c" would): the later server's hid the earlier's (a forced call of the first ran
    the second's, or no tool). Each is callable, by its own server."""
    labels = ["x" * 60 + "AAAA", "x" * 60 + "BBBB"]
    tools = [mcp_tool(notes_url, server_label=label, require_approval="never") for label in labels]
    async with Client(server.base_url) as api:
        for label in labels:
            resp = await api.ok("POST", "/v1/responses", body(tools, tool_choice={
                "type": "mcp", "server_label": label, "name": "list_notes"}, max_output_tokens=80))
            calls = [i for i in resp["output"] if i["type"] == "mcp_call"]
            assert calls and calls[0]["server_label"] == label, resp["output"]
            assert calls[0]["output"] == LISTED, calls[0]["error"]
        assert await mcp_tasks_left(server, labels[0]) == [] and await mcp_tasks_left(server, labels[1]) == []


async def test_allowed_tools_narrow_the_listing_offered(server, notes_url):
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body(
            [mcp_tool(notes_url, allowed_tools=["add"], require_approval="never")], max_output_tokens=100,
            tool_choice={"type": "mcp", "server_label": "notes", "name": "add"}))
        assert [t["name"] for t in resp["output"][0]["tools"]] == ["add"], resp["output"]  # (only those allowed)
        call = resp["output"][1]
        assert call["type"] == "mcp_call" and call["name"] == "add", resp["output"]
        # a tool left out by allowed_tools cannot be forced
        status, err = await api.post("/v1/responses", body(
            [mcp_tool(notes_url, allowed_tools={"tool_names": ["read_note"]}, require_approval="never")]))
        assert status == 400 and err["error"]["param"] == "tool_choice", err


async def test_allowed_tools_choice_names_mcp_tools(server, notes_url):
    """``tool_choice: {"type": "allowed_tools", "tools": [{"type": "mcp", "server_label", "name"?}]}`` (OpenAI's
    form): only those MCP tools are offered, ``mode: "required"`` makes the model call one; a label not in tools
    is a 400 naming it."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        choice = {"type": "allowed_tools", "mode": "required",
                  "tools": [{"type": "mcp", "server_label": "notes", "name": "list_notes"}]}
        resp = await api.ok("POST", "/v1/responses", body(tools, tool_choice=choice))
        calls = [i for i in resp["output"] if i["type"] == "mcp_call"]
        assert calls and calls[0]["name"] == "list_notes" and calls[0]["output"] == LISTED, resp["output"]
        status, err = await api.post("/v1/responses", body(tools, tool_choice={
            "type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "other"}]}))
        assert status == 400 and err["error"]["param"] == "tool_choice.tools[0].server_label", err


async def test_a_call_the_token_limit_cut_is_not_run(server, notes_url):
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body(
            [mcp_tool(notes_url, require_approval="never")], max_output_tokens=20,
            tool_choice={"type": "mcp", "server_label": "notes", "name": "read_note"}))
        call = resp["output"][1]
        assert call["type"] == "mcp_call" and call["status"] == "failed" and "cut off" in _error_text(call), resp["output"]
        assert resp["status"] == "incomplete"


async def test_url_not_allowed_is_a_400_naming_the_field(server):
    async with Client(server.base_url) as api:
        status, err = await api.post("/v1/responses", body([mcp_tool("https://mcp.example.com/mcp")]))
        assert status == 400 and err["error"]["param"] == "tools[0].server_url", err
        assert "--allow-media-from" in err["error"]["message"]
        status, err = await api.post("/v1/responses", body([{"type": "mcp", "server_label": "x",
                                                             "server_url": "ftp://host/mcp"}]))
        assert status == 400 and err["error"]["param"] == "tools[0].server_url", err


async def test_an_sse_server_is_reached_too(server, sse_url):
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body([mcp_tool(sse_url, require_approval="never")]))
        assert resp["output"][0]["type"] == "mcp_list_tools" and "error" not in resp["output"][0], resp["output"]
        call = resp["output"][1]
        assert call["type"] == "mcp_call" and call["output"] == LISTED


async def test_unreachable_server_is_a_failed_listing(server, dead_url):
    dead = dead_url
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body([mcp_tool(dead, require_approval="never")],
                                                          tool_choice="auto", max_output_tokens=5))
        assert resp["output"][0]["type"] == "mcp_list_tools" and resp["output"][0]["error"], resp["output"]
        assert resp["status"] in ("completed", "incomplete")
        # a tool_choice forcing one of its tools (or any tool) is no 400 saying the tool does not exist: the
        # answer carries the failed listing, as the README says ("never a failed request")
        for choice in ({"type": "mcp", "server_label": "notes", "name": "list_notes"},
                       {"type": "mcp", "server_label": "notes"}, "required",
                       {"type": "allowed_tools", "mode": "required", "tools": [{"type": "mcp", "server_label": "notes"}]}):
            resp = await api.ok("POST", "/v1/responses", body([mcp_tool(dead, require_approval="never")],
                                                              tool_choice=choice, max_output_tokens=5))
            assert resp["output"][0]["type"] == "mcp_list_tools" and resp["output"][0]["error"], (choice, resp)


async def test_configured_server_by_label(server):
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body(
            [{"type": "mcp", "server_label": "local", "require_approval": "never"}],
            tool_choice={"type": "mcp", "server_label": "local", "name": "list_notes"}))
        assert resp["output"][0]["type"] == "mcp_list_tools" and resp["output"][0]["server_label"] == "local"
        call = resp["output"][1]
        assert call["type"] == "mcp_call" and call["output"] == LISTED, call
        # a label naming no configured server (and no URL) is the request's mistake, as a run's
        status, err = await api.post("/v1/responses", body([{"type": "function", "name": "f"},
                                                            {"type": "mcp", "server_label": "nowhere"}],
                                                           tool_choice="auto"))
        assert status == 400 and err["error"]["param"] == "tools[1].server_label", err
        assert err["error"]["code"] == "unknown_mcp_server" and "nowhere" in err["error"]["message"]


async def test_stream_events_in_order(server, notes_url):
    async with Client(server.base_url) as api:
        async with api.session.post(server.base_url + "/v1/responses", json=body(
                [mcp_tool(notes_url, require_approval="never")], stream=True)) as r:
            assert r.status == 200
            events = [data for _, data in parse_sse(await r.text()) if isinstance(data, dict)]
        types = [e["type"] for e in events]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        listing = types.index("response.mcp_list_tools.in_progress")
        assert types[listing - 1] == "response.output_item.added" and types[listing + 1] == \
            "response.mcp_list_tools.completed" and types[listing + 2] == "response.output_item.done"
        call = types.index("response.mcp_call.in_progress")
        assert types[call - 1] == "response.output_item.added"
        assert types[call + 1:call + 5] == ["response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                                            "response.mcp_call.completed", "response.output_item.done"]
        done = events[call + 4]["item"]
        assert done["type"] == "mcp_call" and done["output"] == LISTED
        assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
        final = events[-1]["response"]
        assert [i["type"] for i in final["output"]][:2] == ["mcp_list_tools", "mcp_call"]


def test_openai_sdk_parses_it(server, notes_url):
    import openai

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
    resp = client.responses.create(**body([mcp_tool(notes_url, require_approval="never")]))
    assert resp.output[0].type == "mcp_list_tools" and resp.output[0].tools[0].input_schema
    assert resp.output[1].type == "mcp_call" and resp.output[1].output == LISTED
    asked = client.responses.create(**body([mcp_tool(notes_url)]))
    request = asked.output[-1]
    assert request.type == "mcp_approval_request" and request.name == "list_notes"
    resp = client.responses.create(model="qwen3-tools", previous_response_id=asked.id, tools=[mcp_tool(notes_url)],
                                   max_output_tokens=10, input=[{"type": "mcp_approval_response",
                                                                 "approval_request_id": request.id, "approve": True}])
    assert resp.output[0].type == "mcp_call" and resp.output[0].output == LISTED
    # a call's error as the SDK types it (an object, not a string: `call.error.type` is read by its users)
    asked = client.responses.create(**body([mcp_tool(notes_url)]))
    denied = client.responses.create(model="qwen3-tools", previous_response_id=asked.id, tools=[mcp_tool(notes_url)],
                                     max_output_tokens=10, input=[{"type": "mcp_approval_response",
                                                                   "approval_request_id": asked.output[-1].id,
                                                                   "approve": False}])
    call = denied.output[0]
    assert call.type == "mcp_call" and call.error.type == "mcp_tool_execution_error"
    assert "denied" in call.error.content[0]["text"]



async def test_a_call_that_hangs_is_bounded_and_told(server, hang_url, monkeypatch):
    from jan.services import mcp_use

    monkeypatch.setattr(mcp_use, "CALL_TIMEOUT_S", 2.0)  # (the server runs in this process)
    async with Client(server.base_url) as api:
        resp = await api.ok("POST", "/v1/responses", body(
            [mcp_tool(hang_url, require_approval="never")],
            tool_choice={"type": "mcp", "server_label": "notes", "name": "hang"}))
        call = resp["output"][1]
        assert call["type"] == "mcp_call" and call["status"] == "failed" and "within 2 seconds" in _error_text(call), call
        assert resp["status"] in ("completed", "incomplete")


async def test_items_sent_back_are_read_store_false(server, notes_url):
    """A client that keeps the items (store: false) sends the listing and the call back: the listing is not made
    again, and the model reads the call and its result as turns of the conversation."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        first = await api.ok("POST", "/v1/responses", body(tools, store=False))
        assert kinds(first)[:2] == ["mcp_list_tools", "mcp_call"]
        items = [{"role": "user", "content": "What notes do I have?"}, *first["output"],
                 {"role": "user", "content": "And the first one?"}]
        again = await api.ok("POST", "/v1/responses", body(tools, store=False, input=items, tool_choice="none",
                                                           max_output_tokens=5))
        assert "mcp_list_tools" not in kinds(again) and again["status"] in ("completed", "incomplete"), again
        # the call and its result are in the prompt: without them it is shorter
        bare = [i for i in items if i.get("type") != "mcp_call"]
        without = await api.ok("POST", "/v1/responses", body(tools, store=False, input=bare, tool_choice="none",
                                                             max_output_tokens=5))
        assert again["usage"]["input_tokens"] > without["usage"]["input_tokens"], (again["usage"], without["usage"])
        # an mcp_call item without its server is a 400 naming it
        status, err = await api.post("/v1/responses", body(tools, store=False, input=[
            {"type": "mcp_call", "id": "mcp_1", "name": "list_notes", "arguments": "{}"}]))
        assert status == 400 and err["error"]["param"].startswith("input[0]"), err


async def test_a_call_error_sent_back_as_the_sdks_object_is_read_as_its_message(server, notes_url):
    """The openai SDK types an ``mcp_call``'s ``error`` as an object (``{"type": "http_error", "code",
    "message"}``, ...): sent back, the model reads its message, as the string form's, not a Python dict's text."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        listed = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "notes", "tools": []}

        async def tokens(error) -> int:
            resp = await api.ok("POST", "/v1/responses", body(tools, store=False, tool_choice="none", max_output_tokens=1,
                                                              input=[listed, {"type": "mcp_call", "id": "mcp_1",
                                                                              "server_label": "notes", "name": "add",
                                                                              "arguments": "{}", "error": error}]))
            return resp["usage"]["input_tokens"]

        assert await tokens({"type": "http_error", "code": 500, "message": "server down"}) == await tokens("server down")


async def test_cancel_during_a_call_ends_it_and_closes_the_session(server, hang_url):
    import asyncio

    async with Client(server.base_url) as api:
        started = await api.ok("POST", "/v1/responses", body(
            [mcp_tool(hang_url, require_approval="never")], background=True,
            tool_choice={"type": "mcp", "server_label": "notes", "name": "hang"}))
        for _ in range(600):  # (until the call is under way: its item shows in_progress)
            now = await api.ok("GET", f"/v1/responses/{started['id']}")
            if any(i["type"] == "mcp_call" and i["status"] == "in_progress" for i in now["output"]):
                break
            assert now["status"] in ("queued", "in_progress"), now
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the call never started: {now}")
        cancelled = await api.ok("POST", f"/v1/responses/{started['id']}/cancel")
        assert cancelled["status"] == "cancelled", cancelled
        call = next(i for i in cancelled["output"] if i["type"] == "mcp_call")
        assert call["status"] == "incomplete" and call["output"] is None, call
        assert await mcp_tasks_left(server) == []  # the MCP session closed with the response


async def test_stream_of_an_approval_request(server, notes_url):
    async with Client(server.base_url) as api:
        async with api.session.post(server.base_url + "/v1/responses", json=body([mcp_tool(notes_url)],
                                                                                  stream=True)) as r:
            events = [data for _, data in parse_sse(await r.text()) if isinstance(data, dict)]
        types = [e["type"] for e in events]
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [i["type"] for i in done] == ["mcp_list_tools", "mcp_approval_request"], done
        assert "response.mcp_call.in_progress" not in types and types[-1] == "response.completed"
        assert events[-1]["response"]["output"][-1]["id"] == done[-1]["id"]


async def test_filters_jan_cannot_apply_are_a_400(server, notes_url):
    async with Client(server.base_url) as api:
        status, err = await api.post("/v1/responses", body([mcp_tool(notes_url, allowed_tools={"read_only": True})]))
        assert status == 400 and err["error"]["param"].startswith("tools[0].allowed_tools"), err
        status, err = await api.post("/v1/responses", body([mcp_tool(notes_url, connector_id="connector_gmail")]))
        assert status == 400 and err["error"]["param"] == "tools[0].connector_id", err
        status, err = await api.post("/v1/responses", body([mcp_tool(notes_url), mcp_tool(notes_url)]))
        assert status == 400 and err["error"]["param"] == "tools[1].server_label", err
        status, err = await api.post("/v1/responses", {"model": "qwen3-tools", "input": [
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}]})
        assert status == 400 and err["error"]["param"] == "input", err
