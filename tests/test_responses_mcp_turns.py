"""The Responses API's remote MCP tool across turns: what a stored response, a conversation and a token count make of
its ``mcp_list_tools`` / ``mcp_call`` items, as OpenAI's API does. A continued response (``previous_response_id``,
``conversation``) reads the earlier calls and their results as turns of its prompt and lists no server again that
its context has listed; a conversation keeps the MCP items (listed and retrieved in OpenAI's shapes); an approved
call that ran before its result overflowed the context is said in the 400; ``input_tokens`` counts the MCP tools'
definitions. The same tiny tool-calling model and FastMCP notes server as ``test_responses_mcp``."""

from __future__ import annotations

import asyncio

import pytest
from api_helpers import Client, running

from mcp_helpers import free_port, hang_url, notes_folder, notes_url, stdio_entry, write_mcp_config  # noqa: F401
from test_responses_mcp import LISTED, body, kinds, mcp_tasks_left, mcp_tool

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dead_url():
    return f"http://127.0.0.1:{free_port()}/mcp"  # (nothing listens there)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tool_model, notes_url, hang_url, dead_url):  # noqa: F811
    data = tmp_path_factory.mktemp("mcpturns") / "data"
    write_mcp_config(data, {"local": stdio_entry(notes_folder(data.parent))})
    allowed = [url.rsplit("/", 1)[0] + "/" for url in (notes_url, hang_url, dead_url)]
    with running(data, tool_model, n_ctx=2048, allow_media_from=allowed) as srv:
        yield srv


QUESTION = {"role": "user", "content": "What notes do I have?"}
AGAIN = {"role": "user", "content": "And the first one?"}


async def _tokens(api: Client, tools: list, items: list) -> int:
    """The input tokens of a response whose client keeps the items (store: false), made of ``items``."""
    resp = await api.ok("POST", "/v1/responses", body(tools, store=False, input=items, tool_choice="none",
                                                      max_output_tokens=1))
    return resp["usage"]["input_tokens"]


# -- previous_response_id ------------------------------------------------------------------------------------------
async def test_a_continued_response_reads_the_earlier_calls(server, notes_url):  # noqa: F811
    """The call a stored response ran and its result are turns of the prompt that continues it (they were only the
    answer's text): the same prompt as a client sending those items back makes."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        first = await api.ok("POST", "/v1/responses", body(tools))
        assert kinds(first)[:2] == ["mcp_list_tools", "mcp_call"], first["output"]
        again = await api.ok("POST", "/v1/responses", body(tools, previous_response_id=first["id"], input=[AGAIN],
                                                           tool_choice="none", max_output_tokens=1))
        assert "mcp_list_tools" not in kinds(again), again["output"]
        sent_back = await _tokens(api, tools, [QUESTION, *first["output"], AGAIN])
        assert again["usage"]["input_tokens"] == sent_back, (again["usage"], sent_back)
        without_call = await _tokens(api, tools, [QUESTION, *[i for i in first["output"] if i["type"] != "mcp_call"],
                                                  AGAIN])
        assert sent_back > without_call


async def test_no_listing_again_down_a_chain(server, notes_url):  # noqa: F811
    """A server is listed once per conversation: a response two (or more) turns after the one that listed it lists
    it no more (only the previous response's listing counted: the third turn listed it again)."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        previous = (await api.ok("POST", "/v1/responses", body(tools)))["id"]
        for _ in range(2):
            resp = await api.ok("POST", "/v1/responses", body(tools, previous_response_id=previous, input="More?"))
            assert "mcp_list_tools" not in kinds(resp) and kinds(resp)[0] == "mcp_call", resp["output"]
            previous = resp["id"]
        # a server the context has not listed is listed (another label)
        other = [mcp_tool(notes_url, server_label="other", require_approval="never")]
        resp = await api.ok("POST", "/v1/responses", body(other, previous_response_id=previous, input="More?",
                                                          tool_choice={"type": "mcp", "server_label": "other",
                                                                       "name": "list_notes"}))
        assert kinds(resp)[0] == "mcp_list_tools" and resp["output"][0]["server_label"] == "other", resp["output"]


async def test_an_approved_call_is_read_by_the_next_turn(server, notes_url):  # noqa: F811
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url)]
        asked = await api.ok("POST", "/v1/responses", body(tools))
        request = asked["output"][-1]
        assert request["type"] == "mcp_approval_request", asked["output"]
        ran = await api.ok("POST", "/v1/responses", body(tools, previous_response_id=asked["id"], tool_choice="none",
                                                         max_output_tokens=3, input=[{
                                                             "type": "mcp_approval_response", "approve": True,
                                                             "approval_request_id": request["id"]}]))
        assert ran["output"][0]["type"] == "mcp_call" and ran["output"][0]["output"] == LISTED, ran["output"]
        after = await api.ok("POST", "/v1/responses", body(tools, previous_response_id=ran["id"], input=[AGAIN],
                                                           tool_choice="none", max_output_tokens=1))
        assert "mcp_list_tools" not in kinds(after)
        sent_back = await _tokens(api, tools, [QUESTION, *ran["output"], AGAIN])
        assert after["usage"]["input_tokens"] == sent_back


# -- conversations --------------------------------------------------------------------------------------------------
async def test_a_conversation_keeps_the_mcp_items(server, notes_url):  # noqa: F811
    """A response made in a conversation adds its MCP items to it: listed and retrieved as OpenAI's (the same ids
    and fields as the response's output), read by the next response (its calls as turns, no listing again)."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        conv = await api.ok("POST", "/v1/conversations", {})
        first = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"]))
        assert kinds(first)[:2] == ["mcp_list_tools", "mcp_call"], first["output"]
        listed = (await api.ok("GET", f"/v1/conversations/{conv['id']}/items?order=asc"))["data"]
        assert [i["type"] for i in listed] == ["message", *kinds(first)], listed
        for item, out in zip(listed[1:], first["output"]):
            if item["type"].startswith("mcp_"):
                assert item == out, (item, out)
        call = next(i for i in first["output"] if i["type"] == "mcp_call")
        got = await api.ok("GET", f"/v1/conversations/{conv['id']}/items/{call['id']}")
        assert got == call and got["output"] == LISTED

        again = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"], input=[AGAIN],
                                                           tool_choice="none", max_output_tokens=1))
        assert "mcp_list_tools" not in kinds(again), again["output"]
        assert again["usage"]["input_tokens"] == await _tokens(api, tools, [QUESTION, *first["output"], AGAIN])

        # deleted, the call is in no later prompt
        await api.ok("DELETE", f"/v1/conversations/{conv['id']}/items/{call['id']}")
        items = (await api.ok("GET", f"/v1/conversations/{conv['id']}/items?order=asc"))["data"]
        assert call["id"] not in [i["id"] for i in items]


async def test_mcp_items_added_to_a_conversation(server, notes_url):  # noqa: F811
    """MCP items added through the Conversations API (a conversation carried over) are kept as sent: listed back
    in their own shapes (not as a function_call and its output), and read by a response made in it."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "notes",
                   "tools": [{"name": "list_notes", "input_schema": {"type": "object"}}]}
        call = {"type": "mcp_call", "id": "mcp_1", "server_label": "notes", "name": "list_notes",
                "arguments": "{}", "output": LISTED, "error": None}
        conv = await api.ok("POST", "/v1/conversations", {"items": [QUESTION, listing, call]})
        items = (await api.ok("GET", f"/v1/conversations/{conv['id']}/items?order=asc"))["data"]
        assert [i["type"] for i in items] == ["message", "mcp_list_tools", "mcp_call"], items
        assert items[2]["id"] == "mcp_1" and items[2]["output"] == LISTED and items[2]["server_label"] == "notes"
        assert items[1]["tools"] == listing["tools"]
        resp = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"], input=[AGAIN]))
        assert "mcp_list_tools" not in kinds(resp), resp["output"]  # (listed by the conversation's item)
        counted = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"], input=[AGAIN],
                                                             tool_choice="none", max_output_tokens=1))
        # (the calls added and the one the last response made: the same prompt as the items sent back)
        assert counted["usage"]["input_tokens"] == await _tokens(api, tools, [QUESTION, listing, call, AGAIN,
                                                                              *resp["output"], AGAIN])


async def test_an_approval_in_a_conversation_and_none_answered_twice(server, notes_url):  # noqa: F811
    """A conversation's mcp_approval_request is answered by the next response made in it (it has no
    previous_response_id: the request was "no mcp_approval_request of the previous response"); a request answered
    already, there, down a chain or twice in one input, is a 400: its call is not run again."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url)]
        conv = await api.ok("POST", "/v1/conversations", {})
        asked = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"]))
        request = asked["output"][-1]
        assert request["type"] == "mcp_approval_request", asked["output"]
        approval = {"type": "mcp_approval_response", "approve": True, "approval_request_id": request["id"]}
        ran = await api.ok("POST", "/v1/responses", body(tools, conversation=conv["id"], input=[approval],
                                                         tool_choice="none", max_output_tokens=3))
        assert ran["output"][0]["type"] == "mcp_call" and ran["output"][0]["output"] == LISTED, ran["output"]
        assert ran["output"][0]["approval_request_id"] == request["id"]
        items = (await api.ok("GET", f"/v1/conversations/{conv['id']}/items?order=asc"))["data"]
        assert [i["type"] for i in items][:4] == ["message", "mcp_list_tools", "mcp_approval_request",
                                                  "mcp_approval_response"], items
        status, err = await api.post("/v1/responses", body(tools, conversation=conv["id"], input=[approval]))
        assert status == 400 and err["error"]["param"] == "input[0].approval_request_id", err
        assert "answered already" in err["error"]["message"]

        # down a chain: the request of the first response, answered by the second, answered again by the third
        asked = await api.ok("POST", "/v1/responses", body(tools))
        approval = {"type": "mcp_approval_response", "approve": False,
                    "approval_request_id": asked["output"][-1]["id"]}
        denied = await api.ok("POST", "/v1/responses", body(tools, previous_response_id=asked["id"], input=[approval],
                                                            tool_choice="none", max_output_tokens=3))
        status, err = await api.post("/v1/responses", body(tools, previous_response_id=denied["id"],
                                                           input=[{**approval, "approve": True}]))
        assert status == 400 and "answered already" in err["error"]["message"], err
        # twice in one input
        status, err = await api.post("/v1/responses", body(tools, previous_response_id=asked["id"],
                                                           input=[approval, approval]))
        assert status == 400 and err["error"]["param"] == "input[1].approval_request_id", err


# -- an approved call whose result overflows the context -----------------------------------------------------------
async def test_an_approved_call_that_ran_is_kept_when_its_result_overflows_a_background_response(server,
                                                                                                 hang_url):  # noqa: F811
    """A background response (answered before its prompt is made) fails with the call that ran in its output (the
    400 of a foreground one names it: test_responses_mcp's huge-result test)."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(hang_url, server_label="flood", require_approval="always")]
        request = {"type": "mcp_approval_request", "id": "mcpr_flood", "server_label": "flood", "name": "flood",
                   "arguments": '{"chars": 50000000}'}
        started = await api.ok("POST", "/v1/responses", body(tools, background=True, tool_choice="none", input=[
            {"role": "user", "content": "x"}, request,
            {"type": "mcp_approval_response", "approve": True, "approval_request_id": "mcpr_flood"}]))
        for _ in range(1200):
            done = await api.ok("GET", f"/v1/responses/{started['id']}")
            if done["status"] not in ("queued", "in_progress"):
                break
            await asyncio.sleep(0.1)
        assert done["status"] == "failed" and "context" in done["error"]["message"], done
        call = next(i for i in done["output"] if i["type"] == "mcp_call")
        assert call["approval_request_id"] == "mcpr_flood" and call["output"], {**call, "output": "..."}


# -- input_tokens ---------------------------------------------------------------------------------------------------
async def test_input_tokens_counts_the_mcp_tools(server, notes_url, dead_url):  # noqa: F811
    """The count holds the MCP tools' definitions as the response's prompt does (the server listed, or the listing
    the context holds); a server that cannot be listed adds none, as the response goes on without its tools."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]
        request = body(tools, tool_choice="none", store=False)
        counted = await api.ok("POST", "/v1/responses/input_tokens",
                               {k: v for k, v in request.items() if k not in ("max_output_tokens", "temperature",
                                                                              "store")})
        bare = await api.ok("POST", "/v1/responses/input_tokens", {"model": "qwen3-tools", "input": request["input"]})
        made = await api.ok("POST", "/v1/responses", {**request, "max_output_tokens": 1})
        assert counted["input_tokens"] == made["usage"]["input_tokens"] > bare["input_tokens"], (counted, made, bare)
        assert await mcp_tasks_left(server) == []  # (the count's connection closed with it)

        # a listing in the context: its tools are counted, no server reached (this one is down)
        first = await api.ok("POST", "/v1/responses", body(tools, store=False))
        listing = {**first["output"][0], "server_label": "gone"}
        gone = [mcp_tool(dead_url, server_label="gone")]
        with_listing = await api.ok("POST", "/v1/responses/input_tokens", {
            "model": "qwen3-tools", "tools": gone, "input": [listing, QUESTION]})
        no_listing = await api.ok("POST", "/v1/responses/input_tokens", {
            "model": "qwen3-tools", "tools": gone, "input": [QUESTION]})
        assert with_listing["input_tokens"] > no_listing["input_tokens"] == bare["input_tokens"]


async def test_a_listing_kept_as_sent_is_read_leniently(server, notes_url):  # noqa: F811
    """A conversation keeps an mcp_list_tools item as it was sent: a tool's description that is no string (or a
    schema that is no object, an entry that is no tool) is read as none, not a 400 naming 'description' (a field
    of no request) on every count made in the conversation."""
    async with Client(server.base_url) as api:
        tools = [mcp_tool(notes_url, require_approval="never")]

        async def counted(entries: list) -> int:
            listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "notes", "tools": entries}
            conv = await api.ok("POST", "/v1/conversations", {"items": [QUESTION, listing]})
            return (await api.ok("POST", "/v1/responses/input_tokens", {
                "model": "qwen3-tools", "conversation": conv["id"], "input": [AGAIN], "tools": tools}))["input_tokens"]

        plain = await counted([{"name": "list_notes", "input_schema": {"type": "object", "properties": {}}}])
        assert await counted([{"name": "list_notes", "description": 5, "input_schema": "x"}, 7, {"name": 3}]) == plain
