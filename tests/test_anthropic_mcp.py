"""Anthropic's MCP connector (``mcp_servers`` on ``POST /v1/messages``), served on the path of the Responses API's
``mcp`` tool (jan.services.mcp_use): a real MCP server (the SDK's FastMCP over streamable HTTP on 127.0.0.1), a
tiny model with Qwen3's real tool-calling template (its call forced with ``tool_choice: any``): the call run and
its result as ``mcp_tool_use`` / ``mcp_tool_result`` blocks with the model going on, the streamed events, the
newer ``mcp_toolset`` entries, a bounded call told as an error result, the blocks sent back read into the prompt,
the 400s of bad fields, and the ``anthropic`` SDK's beta parsing it all."""

from __future__ import annotations

import pytest
from api_helpers import Client, parse_sse, running
from test_responses_mcp import LISTED, mcp_tasks_left

from mcp_helpers import dead_url, hang_url, notes_url  # noqa: F401 - the module's MCP servers (fixtures)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tool_model, notes_url, dead_url, hang_url):
    data = tmp_path_factory.mktemp("amcp") / "data"
    # only the test servers' addresses may be connected to (as media URL prefixes)
    allowed = [u.rsplit("/", 1)[0] + "/" for u in (notes_url, dead_url, hang_url)]
    with running(data, tool_model, n_ctx=2048, allow_media_from=allowed) as srv:
        yield srv


def mcp_server(url: str, name: str = "notes", **extra) -> dict:
    return {"type": "url", "url": url, "name": name, **extra}


def body(servers: list, **extra) -> dict:
    # (the one tool allowed, and the first turn made to call a tool: the tiny model's call is list_notes)
    return {"model": "qwen3-tools", "max_tokens": 40, "temperature": 0, "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "What notes do I have?"}], "mcp_servers": servers, **extra}


def listing(url: str, **extra) -> dict:
    return mcp_server(url, tool_configuration={"enabled": True, "allowed_tools": ["list_notes"]}, **extra)


def check_call_and_result(content: list) -> None:
    use, result = content[0], content[1]
    assert use["type"] == "mcp_tool_use" and use["name"] == "list_notes" and use["server_name"] == "notes", content
    assert use["input"] == {} and use["id"]
    assert result == {"type": "mcp_tool_result", "tool_use_id": use["id"], "is_error": False,
                      "content": [{"type": "text", "text": LISTED}]}, content


async def test_a_call_run_and_its_result_in_the_message(server, notes_url):
    async with Client(server.base_url) as api:
        message = await api.ok("POST", "/v1/messages", body([listing(notes_url)]))
        check_call_and_result(message["content"])
        # the model went on in the same message (a later turn's text or calls), and it ended as a message does
        assert message["stop_reason"] in ("end_turn", "max_tokens"), message
        assert message["usage"]["input_tokens"] + message["usage"]["cache_read_input_tokens"] > 0
        assert await mcp_tasks_left(server) == []  # the answer's connection closed with it


async def test_stream_events_in_order(server, notes_url):
    async with Client(server.base_url) as api:
        async with api.session.post(server.base_url + "/v1/messages",
                                    json=body([listing(notes_url)], stream=True)) as r:
            assert r.status == 200
            events = [(name, data) for name, data in parse_sse(await r.text()) if isinstance(data, dict)]
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"], names
    data = [d for _, d in events]
    assert data[2] == {"type": "content_block_start", "index": 0, "content_block": {
        "type": "mcp_tool_use", "id": data[2]["content_block"]["id"], "name": "list_notes", "server_name": "notes",
        "input": {}}}
    assert data[3] == {"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": "{}"}}
    assert data[4] == {"type": "content_block_stop", "index": 0}
    assert data[5] == {"type": "content_block_start", "index": 1, "content_block": {
        "type": "mcp_tool_result", "tool_use_id": data[2]["content_block"]["id"], "is_error": False,
        "content": [{"type": "text", "text": LISTED}]}}
    assert data[6] == {"type": "content_block_stop", "index": 1}
    starts = [d["index"] for d in data if d["type"] == "content_block_start"]
    assert starts == list(range(len(starts)))  # (each block its own index, in order)
    assert data[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert await mcp_tasks_left(server) == []


async def test_toolset_of_the_newer_beta_chooses_the_tools(server, notes_url):
    async with Client(server.base_url) as api:
        toolset = {"type": "mcp_toolset", "mcp_server_name": "notes", "default_config": {"enabled": False},
                   "configs": {"list_notes": {"enabled": True}}}
        message = await api.ok("POST", "/v1/messages", body([mcp_server(notes_url)], tools=[toolset]))
        check_call_and_result(message["content"])
        status, err = await api.post("/v1/messages", body([mcp_server(notes_url)], tools=[
            {"type": "mcp_toolset", "mcp_server_name": "other"}]))
        assert status == 400 and err["type"] == "error", err
        assert "tools.0.mcp_server_name" in err["error"]["message"] and "other" in err["error"]["message"]


async def test_a_call_that_hangs_is_an_error_result(server, hang_url, monkeypatch):
    from jan.services import mcp_use

    monkeypatch.setattr(mcp_use, "CALL_TIMEOUT_S", 2.0)  # (the server runs in this process)
    async with Client(server.base_url) as api:
        message = await api.ok("POST", "/v1/messages", body([mcp_server(hang_url, tool_configuration={
            "allowed_tools": ["hang"]})]))
        use, result = message["content"][:2]
        assert use["type"] == "mcp_tool_use" and use["name"] == "hang"
        assert result["type"] == "mcp_tool_result" and result["is_error"] is True, result
        assert "within 2 seconds" in result["content"][0]["text"]


async def test_bad_fields_are_a_400_in_anthropics_shape(server, notes_url, dead_url):
    cases = [
        ([mcp_server("https://mcp.example.com/mcp")], "mcp_servers.0.url", {}),  # not allowed by --allow-media-from
        ([mcp_server("ftp://host/mcp")], "mcp_servers.0.url", {}),
        ([listing(notes_url), listing(notes_url)], "mcp_servers.1.name", {}),  # one name twice
        ([{"type": "stdio", "url": notes_url, "name": "x"}], "mcp_servers", {}),
        ([{"type": "url", "name": "x"}], "mcp_servers", {}),
        ([mcp_server(dead_url)], "mcp_servers.0", {}),  # a server that cannot be reached
    ]
    async with Client(server.base_url) as api:
        for servers, named, extra in cases:
            status, err = await api.post("/v1/messages", body(servers, **extra))
            assert status == 400 and err["type"] == "error", (servers, err)
            assert err["error"]["type"] == "invalid_request_error" and named in err["error"]["message"], err
        # (count_tokens and thread take mcp_servers: tests/test_anthropic_mcp_more.py)
        # a refusal after the servers were reached (no such model) closes their sessions too
        status, err = await api.post("/v1/messages", body([listing(notes_url)], model="no-such-model"))
        assert status == 404 and err["type"] == "error", err
        assert await mcp_tasks_left(server) == []


def test_blocks_sent_back_are_read_into_the_prompt():
    from jan.server.dialects import anthropic as wire

    request = wire.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 5, "mcp_servers": [{"type": "url", "url": "http://h/mcp", "name": "notes"}],
        "messages": [
            {"role": "user", "content": "What notes do I have?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "list_notes", "server_name": "notes",
                 "input": {}},
                {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False,
                 "content": [{"type": "text", "text": LISTED}]},
                {"type": "text", "text": "You have two."}]},
            {"role": "user", "content": "Which?"}]})
    messages = wire.to_chat_request(request).messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    call = messages[1].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("mcptoolu_1", "notes__list_notes", "{}")
    assert messages[2].tool_call_id == "mcptoolu_1" and messages[2].text == LISTED
    assert messages[3].text == "You have two."
    failed = request.model_copy(deep=True)
    failed.messages[1].content[2].is_error = True
    assert wire.to_chat_request(failed).messages[2].text == f"Error: {LISTED}"


async def test_blocks_sent_back_are_answered(server, notes_url):
    """An answer's blocks sent back as the conversation (what the SDK's clients keep) are a turn the model reads."""
    async with Client(server.base_url) as api:
        first = await api.ok("POST", "/v1/messages", body([listing(notes_url)]))
        follow = body([listing(notes_url)], tool_choice={"type": "auto"}, max_tokens=5, messages=[
            {"role": "user", "content": "What notes do I have?"},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": "Thanks."}])
        again = await api.ok("POST", "/v1/messages", follow)
        assert again["type"] == "message"


def test_anthropic_sdk_parses_it(server, notes_url):
    import anthropic

    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    kwargs = dict(model="qwen3-tools", max_tokens=40, extra_body={"temperature": 0}, tool_choice={"type": "any"},
                  messages=[{"role": "user", "content": "What notes do I have?"}],
                  mcp_servers=[listing(notes_url)], betas=["mcp-client-2025-04-04"])
    message = client.beta.messages.create(**kwargs)
    use, result = message.content[:2]
    assert use.type == "mcp_tool_use" and use.name == "list_notes" and use.server_name == "notes"
    assert result.type == "mcp_tool_result" and result.tool_use_id == use.id and not result.is_error
    assert result.content[0].text == LISTED
    with client.beta.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content[:2]] == ["mcp_tool_use", "mcp_tool_result"]
    assert streamed.content[0].input == {} and streamed.content[1].content[0].text == LISTED


def test_which_tools_each_configuration_allows():
    """tool_configuration (the 2025-04-04 beta) and mcp_toolset (2025-11-20) as the service's McpServerUse: the
    tools the model may call, the bearer token, and no approval (Anthropic's connector asks none)."""
    from jan.server.dialects import anthropic as wire
    from jan.server.dialects.anthropic_mcp import server_uses

    def uses(servers: list, tools: list | None = None):
        request = wire.MessagesRequest.model_validate({"model": "m", "max_tokens": 5, "mcp_servers": servers,
                                                       "tools": tools, "messages": [{"role": "user", "content": "x"}]})
        return server_uses(request, lambda url: True)

    [use] = uses([{"type": "url", "url": "http://h/mcp", "name": "a", "authorization_token": "tok"}])
    assert use.headers == {"Authorization": "Bearer tok"} and use.allows("any") and not use.needs_approval("any")
    [use] = uses([{"type": "url", "url": "http://h/mcp", "name": "a", "tool_configuration": {"enabled": False}}])
    assert not use.allows("list_notes")
    [use] = uses([{"type": "url", "url": "http://h/mcp", "name": "a",
                   "tool_configuration": {"allowed_tools": ["read_note"]}}])
    assert use.allows("read_note") and not use.allows("list_notes")
    [use] = uses([{"type": "url", "url": "http://h/mcp", "name": "a"}],
                 [{"type": "mcp_toolset", "mcp_server_name": "a", "configs": {"hang": {"enabled": False}}},
                  {"name": "mine", "input_schema": {"type": "object"}}])
    assert use.allows("list_notes") and not use.allows("hang")
    # the toolset configures the server: the request's own tools stay the custom one
    request = wire.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 5, "mcp_servers": [{"type": "url", "url": "http://h/mcp", "name": "a"}],
        "tools": [{"type": "mcp_toolset", "mcp_server_name": "a"}, {"name": "mine", "input_schema": {}}],
        "messages": [{"role": "user", "content": "x"}]})
    assert [t.name for t in wire.to_chat_request(request).tools] == ["mine"]
