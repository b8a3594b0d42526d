"""Tools changed mid-conversation on /v1/messages: ``tool_addition`` / ``tool_removal`` blocks in a ``system``-role
message (what the SDK tool runner's ``add_tools()`` / ``remove_tools()`` send), with and without a thread.

A local chat template renders the tools once, so the prompt is rendered with the set the changes leave: the checks
compare the rendered prompt and token counts with the same conversation sent with that set as ``tools``, and read
what the SDK sent and what a thread keeps; never timing, never what the random-weight model writes.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from dialect_helpers import WEATHER_SCHEMA, tool_model
from jan.server.dialects import anthropic as wire
from jan.server.keys import SERVICES
from jan.server.routes.anthropic import THREADS
from server_helpers import start_server
from test_anthropic_threads import GREEDY, Recorder, _reply

BETA = {"anthropic-beta": "message-threads-2026-08-12,inline-tools-2026-09-15"}
CLOCK_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                "required": ["zone"], "additionalProperties": False}
WEATHER = {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}
CLOCK = {"name": "get_time", "description": "The time in a zone", "input_schema": CLOCK_SCHEMA}
ASK = {"role": "user", "content": "Weather in Paris?"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("tool-changes"), [tool_model(tmp_path_factory.mktemp("m"))],
                       n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    response = httpx.post(server.base_url + path, json=body, headers=BETA, timeout=120)
    return response.status_code, response.json()


def _count(server, **body) -> int:
    status, counted = _post(server, "/v1/messages/count_tokens", {"model": "tool-model", **body})
    assert status == 200, counted
    return counted["input_tokens"]


def _rendered(server, **body) -> str:
    """The prompt text a body renders to (its thread's held conversation for a ``continue``)."""
    request = wire.CountTokensRequest.model_validate({"model": "tool-model", **body})
    chat_request = server.call(server.app[THREADS].prompt(request))
    return server.call(server.app[SERVICES].chat.render(chat_request)).text


def _system(*blocks) -> dict:
    return {"role": "system", "content": list(blocks)}


def _add(tool: dict) -> dict:
    return {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": tool}}


def _add_ref(name: str) -> dict:
    return {"type": "tool_addition", "tool": {"type": "tool_reference", "name": name}}


def _remove(name: str) -> dict:
    return {"type": "tool_removal", "tool": {"type": "tool_reference", "name": name}}


# -- one request ------------------------------------------------------------------------------------------
def test_changes_apply_in_message_order_and_the_prompt_shows_the_resulting_tools(server):
    both = _count(server, tools=[WEATHER, CLOCK], messages=[ASK])
    weather_only = _count(server, tools=[WEATHER], messages=[ASK])
    clock_only = _count(server, tools=[CLOCK], messages=[ASK])
    assert len({both, weather_only, clock_only}) == 3
    # an addition: the prompt offers both tools, as if `tools` held both
    added = {"tools": [WEATHER], "messages": [ASK, _system(_add(CLOCK))]}
    assert _count(server, **added) == both
    text = _rendered(server, **added)
    assert "get_time" in text and "get_weather" in text
    assert text == _rendered(server, tools=[WEATHER, CLOCK], messages=[ASK])
    # a removal; then removals and additions in message order, the last one deciding
    removed = {"tools": [WEATHER, CLOCK], "messages": [ASK, _system(_remove("get_weather"))]}
    assert _count(server, **removed) == clock_only and "get_weather" not in _rendered(server, **removed)
    answer, again = {"role": "assistant", "content": "Which one?"}, {"role": "user", "content": "Again"}
    in_order = [_system(_add(CLOCK)), ASK, _system(_remove("get_time")), answer, again,
                _system(_add_ref("get_time"), _remove("get_weather"))]
    assert _rendered(server, tools=[WEATHER], messages=in_order) == \
        _rendered(server, tools=[CLOCK], messages=[ASK, answer, again])
    # no `tools` at all, and a tool added: it is offered (and tool_choice may name it)
    assert _count(server, messages=[ASK, _system(_add(CLOCK))], tool_choice={"type": "tool", "name": "get_time"}) == \
        _count(server, tools=[CLOCK], messages=[ASK], tool_choice={"type": "tool", "name": "get_time"})
    # a definition replaces the tool of its name where it stands
    renamed = {**WEATHER, "description": "Forecast for a city"}
    text = _rendered(server, tools=[WEATHER, CLOCK], messages=[ASK, _system(_add(renamed))])
    assert "Forecast for a city" in text and text == _rendered(server, tools=[renamed, CLOCK], messages=[ASK])


def test_a_system_message_text_is_a_system_message_where_it_stands(server):
    note = {"role": "system", "content": [{"type": "text", "text": "Answer in French."}, _add(CLOCK)]}
    text = _rendered(server, tools=[WEATHER], messages=[ASK, note])
    assert "Answer in French." in text and "get_time" in text
    assert text.index("Weather in Paris?") < text.index("Answer in French.")
    # a string content is the same text
    blocks = [{"type": "text", "text": "Answer in French."}]
    assert _rendered(server, messages=[ASK, {"role": "system", "content": "Answer in French."}]) == \
        _rendered(server, messages=[ASK, {"role": "system", "content": blocks}])
    status, message = _post(server, "/v1/messages", {"model": "tool-model", "max_tokens": 3, **GREEDY,
                                                     "tools": [WEATHER], "messages": [ASK, note]})
    assert status == 200 and message["type"] == "message", message


@pytest.mark.parametrize(("system", "field", "words"), [
    ({"role": "system", "content": [{"type": "tool_addition"}]}, "messages.1.content.0.tool", "required"),
    (_system({"type": "tool_addition", "tool": {"type": "tool_definition"}}),
     "messages.1.content.0.tool.definition", "required"),
    (_system(_add({"name": "get_time"})), "messages.1.content.0.tool.definition.input_schema", "required"),
    (_system(_add({**CLOCK, "type": "web_search_20250305"})), "messages.1.content.0.tool.definition",
     "Anthropic's own tools"),
    (_system(_add_ref("nope")), "messages.1.content.0.tool.name", "no tool named 'nope'"),
    (_system(_remove("nope")), "messages.1.content.0.tool.name", "no tool named 'nope'"),
    (_system({"type": "tool_removal", "tool": {"type": "tool_definition", "definition": CLOCK}}),
     "messages.1.content.0.tool", "tool_definition"),
    (_system({"type": "tool_addition", "tool": {"type": "mcp_toolset_reference", "server_name": "fs"}}),
     "messages.1.content.0.tool", "MCP server"),
    (_system({"type": "tool_removal", "tool": {"type": "tool_reference"}}),
     "messages.1.content.0.tool.name", "required"),
    (_system({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}),
     "messages.1.content.0", "image"),
    (_system(), "messages.1.content", "at least one content block"),
    ({"role": "system", "content": "x", "clear_at": "next_user_message"}, "messages.1.clear_at", "next_user_message"),
    ({"role": "system", "content": "x", "output_config": {"effort": "low"}}, "messages.1.output_config.effort",
     "output_config.effort"),
    ({"role": "narrator", "content": "x"}, "messages.1", "narrator"),
])
def test_a_malformed_system_message_is_a_400_naming_its_field(server, system, field, words):
    for path, extra in (("/v1/messages", {"max_tokens": 2}), ("/v1/messages/count_tokens", {})):
        status, err = _post(server, path, {"model": "tool-model", **extra, "tools": [WEATHER],
                                           "messages": [ASK, system]})
        assert status == 400 and err["type"] == "error", err
        assert err["error"]["type"] == "invalid_request_error"
        message = err["error"]["message"]
        assert message.startswith(field + ":") and words in message, message


# -- threads ----------------------------------------------------------------------------------------------
def _held(server, message_id: str) -> dict:
    return json.loads((server.config.data_folder / "message_threads" / f"{message_id}.json").read_text())["response"]


def _continue(server, previous: str, messages: list) -> dict:
    status, message = _post(server, "/v1/messages", {"model": "tool-model", "max_tokens": 3, **GREEDY,
                                                     "messages": messages,
                                                     "thread": {"type": "continue", "previous_message_id": previous}})
    assert status == 200, message
    return message


def test_a_thread_keeps_the_changed_tools_for_its_later_turns(server):
    status, first = _post(server, "/v1/messages", {"model": "tool-model", "max_tokens": 3, **GREEDY, "tools": [WEATHER],
                                                   "messages": [ASK], "thread": {"type": "create"}})
    assert status == 200, first
    more, again = {"role": "user", "content": "And the time?"}, {"role": "user", "content": "Now?"}
    second = _continue(server, first["id"], [more, _system(_add(CLOCK))])
    third = _continue(server, second["id"], [again])
    whole = [ASK, _reply(first), more, _reply(second), again, _reply(third)]
    # the held conversation offers both tools: the addition outlived its turn
    continued = {"messages": [], "thread": {"type": "continue", "previous_message_id": third["id"]}}
    assert _count(server, **continued) == _count(server, tools=[WEATHER, CLOCK], messages=whole)
    assert "get_time" in _rendered(server, **continued)
    # the reply whose turn changed the tools keeps them; the next names it; the root keeps the first set
    assert [t["name"] for t in _held(server, first["id"])["tools"]] == ["get_weather"]
    assert [t["name"] for t in _held(server, second["id"])["tools"]] == ["get_weather", "get_time"]
    assert _held(server, third["id"])["tools_at"] == second["id"] and "tools" not in _held(server, third["id"])
    # a removed tool is known to the thread: a later turn offers it again by reference
    fourth = _continue(server, third["id"], [{"role": "user", "content": "Only weather"}, _system(_remove("get_time"))])
    assert "get_time" not in _rendered(server, messages=[], thread={"type": "continue",
                                                                    "previous_message_id": fourth["id"]})
    assert [t["name"] for t in _held(server, fourth["id"])["removed_tools"]] == ["get_time"]
    fifth = _continue(server, fourth["id"], [{"role": "user", "content": "Time too"}, _system(_add_ref("get_time"))])
    assert "get_time" in _rendered(server, messages=[], thread={"type": "continue",
                                                                "previous_message_id": fifth["id"]})
    # an unknown name on a continue is refused like on any request, and leaves the thread as it was
    status, err = _post(server, "/v1/messages", {"model": "tool-model", "max_tokens": 2, "messages": [
        {"role": "user", "content": "x"}, _system(_remove("nope"))],
        "thread": {"type": "continue", "previous_message_id": fifth["id"]}})
    assert status == 400 and err["error"]["message"].startswith("messages.1.content.0.tool.name:")
    _continue(server, fifth["id"], [{"role": "user", "content": "still here"}])


# -- the SDK's tool runner ---------------------------------------------------------------------------------
def _tools(calls: list):
    @anthropic.beta_tool(input_schema=WEATHER_SCHEMA)
    def get_weather(city: str) -> str:
        """Weather in a city"""
        calls.append(("get_weather", city))
        return f"Sunny in {city}"

    @anthropic.beta_tool(input_schema=CLOCK_SCHEMA)
    def get_time(zone: str) -> str:
        """The time in a zone"""
        calls.append(("get_time", zone))
        return f"12:00 {zone}"

    return get_weather, get_time


@pytest.mark.parametrize("threaded", [True, False])
def test_the_tool_runner_adds_and_removes_tools(server, threaded):
    recorder, calls = Recorder(), []
    get_weather, get_time = _tools(calls)
    client = recorder.client(server.base_url)
    runner = client.beta.messages.tool_runner(
        model="tool-model", max_tokens=200, tools=[get_weather], max_iterations=3,
        tool_choice={"type": "any", "disable_parallel_tool_use": True}, extra_body=GREEDY,
        messages=[ASK], **({} if threaded else {"thread": False}))
    replies = []
    for reply in runner:
        replies.append(reply)
        if len(replies) == 1:
            runner.add_tools(get_time)
        elif len(replies) == 2:
            runner.remove_tools("get_weather")
    assert len(replies) == 3 and recorder.answers == [(200, None)] * 3
    assert all(reply.stop_reason == "tool_use" for reply in replies) and calls
    # what the SDK sent: each change in a system message after the tool result
    second, third = recorder.sent[1]["messages"][-1], recorder.sent[2]["messages"][-1]
    assert second["role"] == "system" and [b["type"] for b in second["content"]] == ["tool_addition"]
    assert second["content"][0]["tool"]["type"] == "tool_definition"
    assert second["content"][0]["tool"]["definition"]["name"] == "get_time"
    assert third == {"role": "system", "content": [{"type": "tool_removal",
                                                    "tool": {"type": "tool_reference", "name": "get_weather"}}]}
    # the model was offered what the changes left: the third turn get_time only (tool_choice "any" calls it)
    assert replies[2].content[-1].type == "tool_use" and replies[2].content[-1].name == "get_time"
    clock = get_time.to_dict()
    if threaded:
        assert [r["thread"]["type"] for r in recorder.sent] == ["create", "continue", "continue"]
        assert all("tools" not in r for r in recorder.sent[1:])
        # the held conversation: every turn's messages and replies, offered the tools the changes left
        whole = []
        for request, reply in zip(recorder.sent, replies):
            whole += [*(m for m in request["messages"] if m["role"] != "system"), _reply(reply)]
        # (with the last call's result: a conversation that leaves tool uses unanswered is refused, as upstream)
        answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": replies[-1].content[-1].id,
                                               "content": "noon"}]}
        continued = {"messages": [answer], "thread": {"type": "continue", "previous_message_id": replies[-1].id}}
        assert _count(server, **continued) == _count(server, tools=[clock], messages=[*whole, answer])
        text = _rendered(server, **continued)
        assert "get_time" in text and "get_weather" not in text.split("Weather in Paris?")[0]
    else:
        # each request sends the whole history, its tool changes included, with the first `tools`
        assert all("thread" not in r and [t["name"] for t in r["tools"]] == ["get_weather"] for r in recorder.sent)
        last = recorder.sent[2]["messages"]
        assert _count(server, tools=recorder.sent[2]["tools"], messages=last) == \
            _count(server, tools=[clock], messages=[m for m in last if m["role"] != "system"])
