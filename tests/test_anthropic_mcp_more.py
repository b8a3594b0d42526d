"""Anthropic's MCP connector, the rest of it (tests/test_anthropic_mcp.py has its main path): a ``tool_choice`` naming
a server's tool, ``mcp_toolset``'s ``enabled`` / ``defer_loading`` per tool and by default (a deferred tool is never
offered: jan has no tool search to load it), ``count_tokens`` with ``mcp_servers`` (the servers' tools counted as
``/v1/messages`` offers them), a pinned ``tools`` listing and ``mcp_tool_listing`` blocks sent back, ``cache_control``
on a toolset, a server that dies during a call, and the ``anthropic`` SDK's beta client on all of it.

Same real MCP server (FastMCP over streamable HTTP on 127.0.0.1) and tiny Qwen3-template model as the main file."""

from __future__ import annotations

import pytest
from api_helpers import Client, parse_sse
from mcp_helpers import dead_url, hang_url, notes_url  # noqa: F401 (fixtures)
from test_anthropic_mcp import mcp_server, server  # noqa: F401 (fixtures)
from test_responses_mcp import LISTED, mcp_tasks_left

pytestmark = pytest.mark.timeout(600)

QUESTION = [{"role": "user", "content": "What notes do I have?"}]


def toolset(name: str = "notes", **extra) -> dict:
    return {"type": "mcp_toolset", "mcp_server_name": name, **extra}


def ask(url: str, tools: list | None = None, **extra) -> dict:
    """A messages body with the notes server and its toolset (``tools``: the toolsets, the newer beta's way)."""
    return {"model": "qwen3-tools", "max_tokens": 40, "temperature": 0, "messages": QUESTION,
            "mcp_servers": [mcp_server(url)], "tools": tools if tools is not None else [toolset()], **extra}


def count_body(url: str, tools: list | None = None, **extra) -> dict:
    body = ask(url, tools, **extra)
    for name in ("max_tokens", "temperature"):
        body.pop(name)
    return body


async def count(api: Client, body: dict) -> int:
    return (await api.ok("POST", "/v1/messages/count_tokens", body))["input_tokens"]


async def test_tool_choice_names_a_servers_tool(server, notes_url):
    """``{"type": "tool", "name"}`` naming an MCP server's tool (by its name on the server, or the name the model
    knows it by) forces its call, among all the server's tools."""
    async with Client(server.base_url) as api:
        for name in ("list_notes", "notes__list_notes"):
            message = await api.ok("POST", "/v1/messages", ask(notes_url, tool_choice={"type": "tool", "name": name}))
            use, result = message["content"][:2]
            assert use["type"] == "mcp_tool_use" and use["name"] == "list_notes", message
            assert use["server_name"] == "notes" and use["input"] == {}
            assert result == {"type": "mcp_tool_result", "tool_use_id": use["id"], "is_error": False,
                              "content": [{"type": "text", "text": LISTED}]}, message
        assert await mcp_tasks_left(server) == []


async def test_tool_choice_refusals(server, notes_url):
    """A name no offered tool has (deferred, disabled, unknown), one two servers have, and a forced choice with no
    tool to force: 400s in Anthropic's shape, each naming the field and the reason; the sessions closed."""
    two = ask(notes_url, [toolset("notes"), toolset("again")], tool_choice={"type": "tool", "name": "list_notes"})
    two["mcp_servers"].append(mcp_server(notes_url, "again"))
    cases = [
        (ask(notes_url, tool_choice={"type": "tool", "name": "nothing_such"}), "tool_choice.name", "nothing_such"),
        (ask(notes_url, [toolset(configs={"list_notes": {"defer_loading": True}})],
             tool_choice={"type": "tool", "name": "list_notes"}), "tool_choice.name", "no tool search"),
        (ask(notes_url, [toolset(configs={"list_notes": {"enabled": False}})],
             tool_choice={"type": "tool", "name": "list_notes"}), "tool_choice.name", "list_notes"),
        (two, "tool_choice.name", "again__list_notes"),
        (ask(notes_url, [toolset(default_config={"enabled": False})], tool_choice={"type": "any"}),
         "tool_choice", "offer none"),
        # every tool deferred: Anthropic's own refusal
        (ask(notes_url, [toolset(default_config={"defer_loading": True})]), "All tools have defer_loading set", ""),
    ]
    async with Client(server.base_url) as api:
        for body, named, why in cases:
            for path in ("/v1/messages", "/v1/messages/count_tokens"):
                sent = body if path == "/v1/messages" else {k: v for k, v in body.items()
                                                             if k not in ("max_tokens", "temperature")}
                status, err = await api.post(path, sent)
                assert status == 400 and err["type"] == "error", (path, body, err)
                assert err["error"]["type"] == "invalid_request_error", err
                assert named in err["error"]["message"] and why in err["error"]["message"], err
        assert await mcp_tasks_left(server) == [] and await mcp_tasks_left(server, "again") == []


async def test_count_tokens_counts_the_offered_tools(server, notes_url):
    """count_tokens with mcp_servers counts the servers' tools as /v1/messages offers them: more than without,
    fewer with tools turned off or deferred (a deferred tool is in no prompt), the same however a tool is kept out."""
    async with Client(server.base_url) as api:
        bare = await count(api, {"model": "qwen3-tools", "messages": QUESTION})
        every = await count(api, count_body(notes_url))
        assert every > bare
        only_list = await count(api, count_body(notes_url, [toolset(default_config={"enabled": False},
                                                                    configs={"list_notes": {"enabled": True}})]))
        assert bare < only_list < every
        # the older beta's allowed_tools, a default deferral with one tool loaded, a pinned listing: the same prompt
        older = count_body(notes_url, [])
        older["mcp_servers"] = [mcp_server(notes_url, tool_configuration={"allowed_tools": ["list_notes"]})]
        assert await count(api, older) == only_list
        assert await count(api, count_body(notes_url, [toolset(
            default_config={"defer_loading": True}, configs={"list_notes": {"defer_loading": False}})])) == only_list
        assert await count(api, count_body(notes_url, [toolset(tools=[
            {"name": "list_notes", "description": "Names of the notes", "input_schema": {"type": "object"}}])])) \
            == only_list
        # one tool deferred is one tool fewer, as one turned off
        deferred = await count(api, count_body(notes_url, [toolset(configs={"add": {"defer_loading": True}})]))
        disabled = await count(api, count_body(notes_url, [toolset(configs={"add": {"enabled": False}})]))
        assert deferred == disabled < every
        # the prompt /v1/messages answers is the one counted (one turn: no call runs in a token)
        message = await api.ok("POST", "/v1/messages", ask(notes_url, tool_choice={"type": "none"}, max_tokens=1))
        usage = message["usage"]
        assert usage["input_tokens"] + usage["cache_read_input_tokens"] == await count(
            api, count_body(notes_url, tool_choice={"type": "none"}))
        # a server that cannot be reached: the messages route's 400
        status, err = await api.post("/v1/messages/count_tokens", count_body(notes_url) | {
            "mcp_servers": [mcp_server(f"{notes_url.rsplit('/', 1)[0]}/nothing")]})
        assert status == 400 and "mcp_servers.0" in err["error"]["message"], err
        assert await mcp_tasks_left(server) == []


async def test_listing_blocks_and_cache_control_are_taken(server, notes_url):
    """What the SDK's beta types let a client send: an ``mcp_tool_listing`` block in an assistant turn sent back (no
    text the model reads; the server's tools are the ones it lists, as a toolset's pinned ``tools``, which win over
    it), ``cache_control`` on a toolset (a hint, as everywhere on jan's Anthropic routes)."""
    async with Client(server.base_url) as api:
        first = await api.ok("POST", "/v1/messages", ask(notes_url, tool_choice={"type": "tool", "name": "list_notes"}))
        listing = {"type": "mcp_tool_listing", "mcp_server_name": "notes", "tools": [
            {"name": "list_notes", "description": "Names of the notes", "input_schema": {"type": "object"}}]}
        history = [*QUESTION, {"role": "assistant", "content": [listing, *first["content"]]},
                   {"role": "user", "content": "Thanks."}]
        body = ask(notes_url, [toolset(cache_control={"type": "ephemeral"})], messages=history, max_tokens=5)
        again = await api.ok("POST", "/v1/messages", body)
        assert again["type"] == "message" and again["role"] == "assistant"
        without = [*QUESTION, {"role": "assistant", "content": first["content"]}, {"role": "user", "content": "Thanks."}]
        only_list = [toolset(default_config={"enabled": False}, configs={"list_notes": {"enabled": True}})]
        assert await count(api, count_body(notes_url, messages=history)) == \
            await count(api, count_body(notes_url, only_list, messages=without))
        pinned = [toolset(tools=[{"name": "add", "input_schema": {"type": "object"}}])]
        assert await count(api, count_body(notes_url, pinned, messages=history)) == await count(
            api, count_body(notes_url, [toolset(default_config={"enabled": False}, configs={"add": {"enabled": True}})],
                            messages=without))
        # a listing in the user's turn is no block a user sends
        status, err = await api.post("/v1/messages", ask(notes_url, messages=[{"role": "user", "content": [listing]}]))
        assert status == 400 and "mcp_tool_listing" in err["error"]["message"], err


async def test_a_server_that_dies_during_a_call(server, hang_url):
    """The server process ends mid-call (the module's own hang_url server, which no other test here uses: its crash
    tool ends it): an error result, the model goes on, the message ends as a message does (never a failed request
    nor a cut stream), and the session is closed."""
    async with Client(server.base_url) as api:
        body = ask(hang_url, [toolset()], tool_choice={"type": "tool", "name": "crash"}, stream=True)
        async with api.session.post(server.base_url + "/v1/messages", json=body) as r:
            assert r.status == 200
            events = [(name, data) for name, data in parse_sse(await r.text()) if isinstance(data, dict)]
    names = [name for name, _ in events]
    assert "error" not in names and names[-2:] == ["message_delta", "message_stop"], names
    blocks = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in blocks[:2]] == ["mcp_tool_use", "mcp_tool_result"], blocks
    assert blocks[0]["name"] == "crash" and blocks[1]["is_error"] is True, blocks
    assert events[-2][1]["delta"]["stop_reason"] in ("end_turn", "max_tokens"), events[-2]
    assert await mcp_tasks_left(server) == []


def test_sdk_beta_client_with_toolsets(server, notes_url):
    """The ``anthropic`` SDK's beta client, the newer beta's way: a toolset with configs, a forced server tool, and
    its count_tokens."""
    import anthropic

    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    kwargs = dict(model="qwen3-tools", messages=QUESTION, mcp_servers=[mcp_server(notes_url)],
                  tools=[toolset(default_config={"enabled": True, "defer_loading": False},
                                 configs={"add": {"defer_loading": True}}, cache_control={"type": "ephemeral"})],
                  betas=["mcp-client-2025-11-20"])
    message = client.beta.messages.create(max_tokens=40, extra_body={"temperature": 0},
                                          tool_choice={"type": "tool", "name": "list_notes"}, **kwargs)
    use, result = message.content[:2]
    assert use.type == "mcp_tool_use" and use.name == "list_notes" and use.server_name == "notes"
    assert result.type == "mcp_tool_result" and result.tool_use_id == use.id and result.content[0].text == LISTED
    counted = client.beta.messages.count_tokens(**kwargs)
    assert counted.input_tokens > client.beta.messages.count_tokens(
        model="qwen3-tools", messages=QUESTION).input_tokens


def test_which_tools_a_toolset_offers():
    """enabled and defer_loading, per tool over the default (precedence: configs, then default_config), and a
    pinned listing, as the service's McpServerUse: a deferred tool is never offered (jan has no tool search)."""
    from jan.server.dialects import anthropic as wire
    from jan.server.dialects.anthropic_mcp import server_uses

    def use(**config):
        request = wire.MessagesRequest.model_validate({
            "model": "m", "max_tokens": 5, "messages": QUESTION,
            "mcp_servers": [{"type": "url", "url": "http://h/mcp", "name": "a"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "a", **config}]})
        [found] = server_uses(request, lambda url: True)
        return found

    offered = use(configs={"x": {"defer_loading": True}, "y": {"enabled": False}})
    assert offered.allows("z") and not offered.allows("x") and not offered.allows("y")
    offered = use(default_config={"defer_loading": True}, configs={"x": {"defer_loading": False},
                                                                   "y": {"enabled": True}})
    assert offered.allows("x") and not offered.allows("y") and not offered.allows("z")
    offered = use(default_config={"enabled": False}, configs={"x": {"enabled": True, "defer_loading": True},
                                                              "y": {"enabled": True}})
    assert offered.allows("y") and not offered.allows("x") and not offered.allows("z")
    offered = use(tools=[{"name": "x", "input_schema": {"type": "object"}}], configs={"y": {"enabled": True}})
    assert offered.allows("x") and not offered.allows("y")


async def test_a_thread_holds_the_calls(server, notes_url):
    """``thread`` with ``mcp_servers``: the reply's calls and results are held as the turns the model read (a later
    turn, which sends mcp_servers and its toolset again, reads the same prompt as the whole conversation replayed),
    and a continue's ``tools`` may hold the turn's toolsets only (its custom tools are the thread's)."""
    async with Client(server.base_url) as api:
        first = await api.ok("POST", "/v1/messages", ask(notes_url, tool_choice={"type": "tool", "name": "list_notes"},
                                                         thread={"type": "create"}))
        assert [b["type"] for b in first["content"][:2]] == ["mcp_tool_use", "mcp_tool_result"], first
        thanks = [{"role": "user", "content": "Thanks."}]
        go_on = {"type": "continue", "previous_message_id": first["id"]}
        whole = [*QUESTION, {"role": "assistant", "content": first["content"]}, *thanks]
        tools = [toolset(configs={"add": {"enabled": False}})]
        assert await count(api, count_body(notes_url, tools, messages=thanks, thread=go_on)) == \
            await count(api, count_body(notes_url, tools, messages=whole))
        status, err = await api.post("/v1/messages", ask(notes_url, [*tools, {
            "name": "mine", "input_schema": {"type": "object"}}], messages=thanks, thread=go_on))
        assert status == 400 and "tools" in err["error"]["message"], err
        second = await api.ok("POST", "/v1/messages", ask(notes_url, tools, messages=thanks, thread=go_on,
                                                          max_tokens=5))
        assert second["type"] == "message"
        assert await mcp_tasks_left(server) == []


SEARCH = {"name": "find_tools", "description": "Find tools by keyword.",
          "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def searched(*found: str) -> list:
    """A conversation where the client's own search tool found ``found`` (``tool_reference`` blocks in its result)."""
    return [{"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "find_tools",
                                               "input": {"query": "weather"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "tool_reference", "tool_name": name} for name in found]}]}]


async def test_deferred_custom_tools_are_loaded_by_a_tool_reference(server):
    """A custom tool with ``defer_loading`` is in no prompt until a ``tool_reference`` in a tool result (a client's
    own tool search) names it; then it is offered as if never deferred (the model reads 'Tool loaded: <name>'). A
    reference to no tool, every tool deferred and a forced choice of a deferred tool not loaded: 400s."""
    deferred = {**WEATHER, "defer_loading": True}
    loaded_text = [{**m, "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
        {"type": "text", "text": "Tool loaded: get_weather"}]}]} if i == 2 else m for i, m in enumerate(searched())]
    async with Client(server.base_url) as api:
        def body(tools, messages, **extra):
            return {"model": "qwen3-tools", "messages": messages, "tools": tools, **extra}

        assert await count(api, body([SEARCH, deferred], QUESTION)) == await count(api, body([SEARCH], QUESTION))
        assert await count(api, body([SEARCH, deferred], searched("get_weather"))) == \
            await count(api, body([SEARCH, WEATHER], loaded_text))
        assert await count(api, body([SEARCH, deferred], searched("get_weather"))) > \
            await count(api, body([SEARCH], loaded_text))
        cases = [(body([SEARCH, deferred], searched("nothing_such")), "Tool reference 'nothing_such'"),
                 (body([deferred], QUESTION), "All tools have defer_loading set"),
                 (body([SEARCH, deferred], QUESTION, tool_choice={"type": "tool", "name": "get_weather"}),
                  "tool_choice.name: 'get_weather' is deferred")]
        for sent, said in cases:
            for path, extra in (("/v1/messages/count_tokens", {}), ("/v1/messages", {"max_tokens": 5})):
                status, err = await api.post(path, sent | extra)
                assert status == 400 and err["error"]["type"] == "invalid_request_error", (path, err)
                assert said in err["error"]["message"], err
        # loaded, it may be forced
        message = await api.ok("POST", "/v1/messages", body([SEARCH, deferred], searched("get_weather"),
                                                            max_tokens=40, temperature=0,
                                                            tool_choice={"type": "tool", "name": "get_weather"}))
        assert message["content"][-1]["type"] == "tool_use" and message["content"][-1]["name"] == "get_weather"


async def test_a_deferred_server_tool_is_loaded_by_a_tool_reference(server, notes_url):
    """An MCP server's deferred tool named by a tool_reference (its name on the server, or <server>__<name>) is
    offered, as an MCP tool the search found on Anthropic."""
    async with Client(server.base_url) as api:
        deferred = [toolset(configs={"add": {"defer_loading": True}}), SEARCH]
        for name in ("add", "notes__add"):
            assert await count(api, count_body(notes_url, deferred, messages=searched(name))) == await count(
                api, count_body(notes_url, [toolset(), SEARCH], messages=searched(name)))
        assert await count(api, count_body(notes_url, deferred, messages=searched("list_notes"))) < await count(
            api, count_body(notes_url, [toolset(), SEARCH], messages=searched("list_notes")))
        status, err = await api.post("/v1/messages/count_tokens", count_body(notes_url, deferred,
                                                                             messages=searched("nothing_such")))
        assert status == 400 and "Tool reference 'nothing_such'" in err["error"]["message"], err
        # a tool a tool change defined is a tool a reference may name, with the servers there too
        defined = [{"role": "system", "content": [{"type": "tool_addition", "tool": {
            "type": "tool_definition", "definition": WEATHER}}]}, *searched("get_weather")]
        assert await count(api, count_body(notes_url, deferred, messages=defined)) > 0
        assert await mcp_tasks_left(server) == []


async def test_a_thread_keeps_deferred_tools_for_a_later_reference(server):
    """A thread created with a deferred tool holds it (not offered); a later turn's tool_reference loads it, and the
    continue reads the prompt the whole conversation replayed reads."""
    deferred = {**WEATHER, "defer_loading": True}
    async with Client(server.base_url) as api:
        first = await api.ok("POST", "/v1/messages", {
            "model": "qwen3-tools", "max_tokens": 40, "temperature": 0, "messages": searched()[:1],
            "tools": [SEARCH, deferred], "tool_choice": {"type": "tool", "name": "find_tools"},
            "thread": {"type": "create"}})
        use = first["content"][-1]
        assert use["type"] == "tool_use" and use["name"] == "find_tools", first
        result = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": [
            {"type": "tool_reference", "tool_name": "get_weather"}]}]}]
        go_on = {"model": "qwen3-tools", "messages": result,
                 "thread": {"type": "continue", "previous_message_id": first["id"]}}
        whole = {"model": "qwen3-tools", "tools": [SEARCH, deferred],
                 "messages": [*searched()[:1], {"role": "assistant", "content": first["content"]}, *result]}
        assert await count(api, go_on) == await count(api, whole)
        assert await count(api, whole) > await count(api, whole | {"tools": [SEARCH], "messages": [
            *whole["messages"][:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                                                  "content": "Tool loaded: get_weather"}]}]})


def changes(*blocks: dict) -> list:
    """The question, then a system-role message of tool changes (the SDK tool runner's add_tools / remove_tools)."""
    return [*QUESTION, {"role": "system", "content": list(blocks)}]


def mcp_ref(change: str, name: str | None = None, server: str = "notes") -> dict:
    tool = ({"type": "mcp_tool_reference", "server_name": server, "name": name} if name
            else {"type": "mcp_toolset_reference", "server_name": server})
    return {"type": change, "tool": tool}


async def test_tool_changes_name_a_servers_tools(server, notes_url):
    """``mcp_tool_reference`` / ``mcp_toolset_reference`` in a system message's tool_addition / tool_removal change
    the server's tools the turn offers, in message order (they were a 400: 'jan runs no MCP servers per request');
    one naming a server the request does not give is a 400 naming the field."""
    async with Client(server.base_url) as api:
        def counted(messages, tools=None):
            return count(api, count_body(notes_url, tools, messages=messages))

        no_add = await counted(QUESTION, [toolset(configs={"add": {"enabled": False}})])
        assert await counted(changes(mcp_ref("tool_removal", "add"))) == no_add
        only_list = await counted(QUESTION, [toolset(default_config={"enabled": False},
                                                     configs={"list_notes": {"enabled": True}})])
        assert await counted(changes(mcp_ref("tool_removal"), mcp_ref("tool_addition", "list_notes"))) == only_list
        every = await counted(QUESTION)
        assert await counted(changes(mcp_ref("tool_removal"), mcp_ref("tool_addition"))) == every
        assert await counted(changes(mcp_ref("tool_addition", "add")),
                             [toolset(configs={"add": {"defer_loading": True}})]) == every
        for blocks in ([mcp_ref("tool_addition", "add", server="elsewhere")],
                       [mcp_ref("tool_removal", server="elsewhere")]):
            status, err = await api.post("/v1/messages", ask(notes_url, messages=changes(*blocks)))
            assert status == 400 and err["error"]["message"].startswith("messages.1.content.0.tool:"), err
            assert "'elsewhere'" in err["error"]["message"] and "mcp_servers" in err["error"]["message"], err
        assert await mcp_tasks_left(server) == []


async def test_a_deferred_responses_tool_is_a_400(server, notes_url):
    """The same fault in the Responses API: ``defer_loading`` was ignored (the tool offered at once). OpenAI's rule is
    that deferred tools need its ``tool_search`` tool, which jan does not run: a 400 in OpenAI's shape, naming it."""
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "defer_loading": True},
             {"type": "custom", "name": "g", "defer_loading": True},
             {"type": "mcp", "server_label": "notes", "server_url": notes_url, "defer_loading": True}]
    async with Client(server.base_url) as api:
        for tool in tools:
            for path in ("/v1/responses", "/v1/responses/input_tokens"):
                status, err = await api.post(path, {"model": "qwen3-tools", "input": "hi", "tools": [tool]})
                assert status == 400 and "tool_search" in err["error"]["message"], (path, err)
                assert err["error"]["param"] == "tools[0].defer_loading", err
        # not deferred: taken as before
        await api.ok("POST", "/v1/responses/input_tokens", {"model": "qwen3-tools", "input": "hi", "tools": [
            {**tools[0], "defer_loading": False}]})


async def test_a_thread_carries_the_mcp_choices_its_messages_made(server, notes_url):
    """What a conversation's messages choose of a server's tools (a tool_reference loading a deferred tool, a system
    message's tool_removal / tool_addition, a pinned mcp_tool_listing) is sent again by every replay (it is in its
    messages): a thread's later turn, which sends only its new messages, chooses the same (each was lost after its
    own turn). The servers and their toolsets' enabled / defer_loading are fields of the request: per turn, as in
    Anthropic's API (a turn that sends no config offers every tool)."""
    thanks = {"role": "user", "content": "Thanks."}
    quiet = {"tool_choice": {"type": "none"}, "max_tokens": 3}
    async with Client(server.base_url) as api:
        async def same_as_replay(first_turn: dict, later: list, tools: list) -> tuple[int, int]:
            """The count of a turn continuing ``first_turn``'s thread by ``later`` (each a message sent alone, a
            reply generated after each but the last), and the replay of the whole conversation's."""
            reply = await api.ok("POST", "/v1/messages", first_turn | {"thread": {"type": "create"}})
            whole = [*first_turn["messages"], {"role": "assistant", "content": reply["content"]}]
            for message in later[:-1]:
                reply = await api.ok("POST", "/v1/messages", ask(notes_url, tools, messages=[message], **quiet,
                                                                 thread={"type": "continue",
                                                                         "previous_message_id": reply["id"]}))
                whole += [message, {"role": "assistant", "content": reply["content"]}]
            go_on = {"type": "continue", "previous_message_id": reply["id"]}
            threaded = await count(api, count_body(notes_url, tools, messages=later[-1:], thread=go_on))
            replayed = await count(api, count_body(notes_url, [*tools, *(t for t in first_turn["tools"]
                                                                         if t.get("type") != "mcp_toolset")],
                                                   messages=[*whole, later[-1]]))
            return threaded, replayed

        # a server's deferred tool loaded by a tool_reference, two turns before
        deferred = [toolset(configs={"add": {"defer_loading": True}})]
        first = ask(notes_url, [*deferred, SEARCH], messages=searched()[:1],
                    tool_choice={"type": "tool", "name": "find_tools"})
        reply = await api.ok("POST", "/v1/messages", first | {"thread": {"type": "create"}})
        use = reply["content"][-1]
        assert use["type"] == "tool_use" and use["name"] == "find_tools", reply
        found = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": [
            {"type": "tool_reference", "tool_name": "add"}]}]}
        second = await api.ok("POST", "/v1/messages", ask(notes_url, deferred, messages=[found], **quiet, thread={
            "type": "continue", "previous_message_id": reply["id"]}))
        go_on = {"type": "continue", "previous_message_id": second["id"]}
        whole = [*searched()[:1], {"role": "assistant", "content": reply["content"]}, found,
                 {"role": "assistant", "content": second["content"]}, thanks]
        threaded = await count(api, count_body(notes_url, deferred, messages=[thanks], thread=go_on))
        assert threaded == await count(api, count_body(notes_url, [*deferred, SEARCH], messages=whole))
        unloaded = [*whole[:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                                              "content": "nothing found"}]}, *whole[3:]]
        assert threaded > await count(api, count_body(notes_url, [*deferred, SEARCH], messages=unloaded))

        # a tool removed by a system message of the first turn, and a listing pinned by it
        for blocks, extra in (([mcp_ref("tool_removal", "add")], []),
                              ([mcp_ref("tool_removal"), mcp_ref("tool_addition", "list_notes")], [])):
            threaded, replayed = await same_as_replay(ask(notes_url, messages=changes(*blocks), **quiet),
                                                      [thanks], [toolset()])
            assert threaded == replayed
            assert threaded < await count(api, count_body(notes_url, messages=[*QUESTION, thanks]))
        listing = {"type": "mcp_tool_listing", "mcp_server_name": "notes",
                   "tools": [{"name": "list_notes", "input_schema": {"type": "object"}}]}
        pinned = [*QUESTION, {"role": "assistant", "content": [listing, {"type": "text", "text": "I can list."}]},
                  {"role": "user", "content": "Go on."}]
        threaded, replayed = await same_as_replay(ask(notes_url, messages=pinned, **quiet), [thanks], [toolset()])
        assert threaded == replayed

        # per turn: a continue's toolset config is that turn's own
        reply = await api.ok("POST", "/v1/messages", ask(notes_url, messages=QUESTION, **quiet,
                                                         thread={"type": "create"}))
        go_on = {"type": "continue", "previous_message_id": reply["id"]}
        whole = [*QUESTION, {"role": "assistant", "content": reply["content"]}, thanks]
        off = [toolset(configs={"add": {"enabled": False}})]
        assert await count(api, count_body(notes_url, off, messages=[thanks], thread=go_on)) == \
            await count(api, count_body(notes_url, off, messages=whole)) < \
            await count(api, count_body(notes_url, messages=[thanks], thread=go_on))
        assert await mcp_tasks_left(server) == []


def test_mcp_tool_use_blocks_sent_back_are_named_as_their_tools_are_offered():
    """Two tools of a server that meet once named (``検索``, ``取得``) are offered by distinct names; the calls of the
    mcp_tool_use blocks sent back were both named ``wild____`` (no tool offered). Named as offered now."""
    from jan.extensions.mcp.server import tool_names
    from jan.server.dialects import anthropic, anthropic_mcp
    from jan.services.mcp_use import McpSession

    offered = tool_names("wild", ["検索", "取得"])
    body = anthropic.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 9, "mcp_servers": [mcp_server("http://127.0.0.1:1/mcp", "wild")], "messages": [
            *QUESTION, {"role": "assistant", "content": [
                {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "取得", "server_name": "wild", "input": {}},
                {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": [{"type": "text", "text": "ok"}]},
                {"type": "text", "text": "Done."}]}]})
    session = McpSession([], [], owners={name: ("wild", tool) for tool, name in offered.items()})
    request = anthropic_mcp.offer(anthropic.to_chat_request(body), body, session)
    assert [c.name for m in request.messages for c in m.tool_calls] == [offered["取得"]]


def test_a_thread_holds_its_replys_calls_by_the_names_offered():
    """A thread holds its reply as a replay converts it, the calls named as the turn's servers offered their tools
    (``取得`` by its distinct name, not ``wild____``)."""
    from jan.extensions.mcp.server import tool_names
    from jan.server.dialects.anthropic_threads import _reply

    offered = tool_names("wild", ["検索", "取得"])
    reply = {"content": [
        {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "取得", "server_name": "wild", "input": {}},
        {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": [{"type": "text", "text": "ok"}]},
        {"type": "text", "text": "Done."}]}
    turns = _reply(reply, {("wild", tool): name for tool, name in offered.items()})
    assert [c.name for t in turns for c in t.tool_calls] == [offered["取得"]]
    assert [t.role for t in turns] == ["assistant", "tool", "assistant"]
