"""Tool calls and tool results pair up, one rule (jan.services.tool_pairs) worded by each dialect as its upstream does:
a result that answers no call, and calls left unanswered (partly, or at the end), are a 400 in the dialect's own error
shape before anything runs; whole conversations (several calls, answered in any order) still work, Ollama's id-less
results are paired by order as before, and a run's own tool rounds go on and make a history the rule accepts."""

from __future__ import annotations

import json

import httpx
import pytest
from dialect_helpers import WEATHER_SCHEMA, tool_model
from jan.services.tool_loop import chat_messages
from jan.services.tool_pairs import ToolPairError, check_tool_pairs
from jan.services.types import ChatMessage, ToolCall
from run_helpers import wait_for_run_sync
from server_helpers import start_server

pytestmark = pytest.mark.timeout(600)

MODEL = "tool-model"
FUNCTION = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                              "parameters": WEATHER_SCHEMA}}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                  "parameters": WEATHER_SCHEMA}
ARGS = json.dumps({"city": "Paris"})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tool-pairs")
    srv = start_server(tmp, [tool_model(tmp)], n_ctx=1024, n_parallel=2)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    response = httpx.post(server.base_url + path, json=body, timeout=120)
    return response.status_code, response.json()


# -- the rule on typed messages ----------------------------------------------------------------------------------
def _user() -> ChatMessage:
    return ChatMessage.of_text("user", "Weather?")


def _calls(*ids: str) -> ChatMessage:
    return ChatMessage("assistant", tool_calls=tuple(ToolCall(i, "get_weather", ARGS) for i in ids))


def _result(call_id: str | None) -> ChatMessage:
    return ChatMessage.of_text("tool", "sunny", tool_call_id=call_id)


def _refusal(messages: list[ChatMessage], order: str = "adjacent") -> tuple:
    with pytest.raises(ToolPairError) as caught:
        check_tool_pairs(messages, order)
    return caught.value.kind, caught.value.index, caught.value.ids, caught.value.next_index


def test_whole_conversations_pass_in_either_order():
    for order in ("adjacent", "earlier"):
        check_tool_pairs([_user(), _calls("a", "b"), _result("b"), _result("a"), _user(), _calls("c"), _result("c")],
                         order)
        check_tool_pairs([_user()], order)


def test_a_result_that_answers_no_call():
    assert _refusal([_user(), _result("x")]) == ("unexpected", 1, ("x",), None)
    assert _refusal([_user(), _calls("a"), _result("b")]) == ("unexpected", 2, ("b",), None)
    # answered twice: the second answers nothing left
    assert _refusal([_user(), _calls("a"), _result("a"), _result("a")]) == ("unexpected", 3, ("a",), None)
    assert _refusal([_user(), _result("x")], "earlier") == ("unexpected", 1, ("x",), None)


def test_calls_left_unanswered():
    # partly answered, then another turn: the results belong right after the calls
    assert _refusal([_user(), _calls("a", "b"), _result("a"), _user()]) == ("unanswered", 1, ("b",), 3)
    # at the end, too: a turn with calls is answered by their results, never continued
    assert _refusal([_user(), _calls("a", "b")]) == ("unanswered", 1, ("a", "b"), None)
    # a result after another message no longer answers (adjacent); Responses' order takes any earlier call
    assert _refusal([_user(), _calls("a"), _user(), _result("a")]) == ("unanswered", 1, ("a",), 2)
    check_tool_pairs([_user(), _calls("a"), _user(), _result("a")], "earlier")
    assert _refusal([_user(), _calls("a"), _calls("b"), _result("b")], "earlier") == ("unanswered", 1, ("a",), None)


def test_id_less_results_answer_the_earliest_open_call():
    check_tool_pairs([_user(), _calls("a", "b"), _result(None), _result(None)])
    assert _refusal([_user(), _calls("a"), _result(None), _result(None)]) == ("unexpected", 3, ("",), None)


class _CountedId(str):
    """A call id that counts how often it is compared with another."""
    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountedId.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


@pytest.mark.parametrize("order", ["adjacent", "earlier"])
def test_the_check_compares_each_id_a_bounded_number_of_times(order):
    """Each call was compared with every call still open (for a repeated id) and each result searched the open calls
    in turn: 30,000 calls in one assistant message, a 2 MB chat body, took minutes of the server's time to check
    (in every dialect). Now each call and result is looked up once."""
    n = 3000
    calls = [_CountedId(f"call_{i}") for i in range(n)]
    results = [_CountedId(f"call_{i}") for i in reversed(range(n))]  # (answered last first: the longest searches)
    _CountedId.compared = 0
    check_tool_pairs([_user(), _calls(*calls), *(_result(r) for r in results)], order)
    assert _CountedId.compared <= 4 * n, _CountedId.compared
    _CountedId.compared = 0
    assert _refusal([_user(), _calls(*calls, calls[-1])], order)[:3] == ("duplicate", 1, (calls[-1],))
    assert _CountedId.compared <= 4 * n, _CountedId.compared


# -- OpenAI Chat Completions ----------------------------------------------------------------------------------------
def _openai_call(*ids: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": ARGS}} for i in ids]}


def _openai_result(call_id: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": "sunny"}


ASK = {"role": "user", "content": "Weather in Paris and Lyon?"}


def _chat(server, messages: list, **extra) -> tuple[int, dict]:
    return _post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "temperature": 0,
                                                  "tools": [FUNCTION], "messages": messages, **extra})


@pytest.mark.parametrize("stream", [False, True])
def test_openai_result_without_a_call(server, stream):
    status, body = _chat(server, [ASK, _openai_result("call_x")], stream=stream)
    assert status == 400 and body["error"]["message"] == (
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
    assert body["error"]["param"] == "messages.[1].role" and body["error"]["type"] == "invalid_request_error"


def test_openai_calls_without_results(server):
    status, body = _chat(server, [ASK, _openai_call("call_a", "call_b"), _openai_result("call_a"),
                                  {"role": "user", "content": "And?"}])
    assert status == 400 and body["error"]["message"] == (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: call_b")
    assert body["error"]["param"] == "messages.[3].role"  # the message that came where call_b's result belongs
    status, body = _chat(server, [ASK, _openai_call("call_a", "call_b")])
    assert status == 400 and body["error"]["message"].endswith("response messages: call_a, call_b")
    assert body["error"]["param"] == "messages"


def test_openai_whole_conversations_still_answer(server):
    status, body = _chat(server, [ASK, _openai_call("call_a", "call_b"), _openai_result("call_b"),
                                  _openai_result("call_a")])
    assert status == 200, body
    # the deprecated function calling pairs by name, as before
    status, body = _chat(server, [ASK, {"role": "assistant", "content": None,
                                        "function_call": {"name": "get_weather", "arguments": ARGS}},
                                  {"role": "function", "name": "get_weather", "content": "sunny"}])
    assert status == 200, body


# -- Anthropic Messages ---------------------------------------------------------------------------------------------
def _uses(*ids: str) -> dict:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "get_weather",
                                              "input": {"city": "Paris"}} for i in ids]}


def _results(*ids: str, before: str | None = None, after: str | None = None) -> dict:
    blocks = [{"type": "tool_result", "tool_use_id": i, "content": "sunny"} for i in ids]
    text = [{"type": "text", "text": before}] if before else []
    return {"role": "user", "content": text + blocks + ([{"type": "text", "text": after}] if after else [])}


def _anthropic(server, messages: list, path: str = "/v1/messages", **extra) -> tuple[int, dict]:
    # (a thread's `continue` keeps the thread's tools)
    body = {"model": MODEL, "messages": messages, **({} if "thread" in extra and extra["thread"]["type"] == "continue"
                                                       else {"tools": [ANTHROPIC_TOOL]}), **extra}
    if path == "/v1/messages":
        body = {"max_tokens": 2, "temperature": 0, **body}
    return _post(server, path, body)


def _anthropic_refusal(status: int, body: dict) -> str:
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    return body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_result_without_a_use(server, stream):
    message = _anthropic_refusal(*_anthropic(server, [ASK, _uses("toolu_a"), _results("toolu_a", "toolu_zz")],
                                             stream=stream))
    assert message == ("messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_zz. "
                       "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
    message = _anthropic_refusal(*_anthropic(server, [_results("toolu_x")]))
    assert message.startswith("messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x.")


def test_anthropic_uses_without_results(server):
    expected = ("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: {}. "
                "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
    message = _anthropic_refusal(*_anthropic(server, [ASK, _uses("toolu_a", "toolu_b"), _results("toolu_a")]))
    assert message == expected.format("toolu_b")
    message = _anthropic_refusal(*_anthropic(server, [ASK, _uses("toolu_a", "toolu_b")]))  # at the end, too
    assert message == expected.format("toolu_a, toolu_b")
    # a turn's results come before its text (Anthropic's rule): text first leaves the uses without results
    message = _anthropic_refusal(*_anthropic(server, [ASK, _uses("toolu_a"), _results("toolu_a", before="Here:")]))
    assert message == expected.format("toolu_a")
    # counting a prompt checks it the same way
    message = _anthropic_refusal(*_anthropic(server, [ASK, _uses("toolu_a")], path="/v1/messages/count_tokens"))
    assert message == expected.format("toolu_a")


def test_anthropic_whole_conversations_still_answer(server):
    messages = [ASK, _uses("toolu_a", "toolu_b"), _results("toolu_b", "toolu_a", after="Both done.")]
    status, body = _anthropic(server, messages)
    assert status == 200 and body["type"] == "message", body
    status, body = _anthropic(server, messages, path="/v1/messages/count_tokens")
    assert status == 200 and body["input_tokens"] > 0, body


def test_anthropic_thread_results_answer_the_held_reply(server):
    """A continued thread sends only the new turn: its results answer the held reply's tool uses."""
    status, held = _anthropic(server, [ASK], max_tokens=200, tool_choice={"type": "tool", "name": "get_weather",
                                                                "disable_parallel_tool_use": True},
                              thread={"type": "create"})
    assert status == 200 and held["stop_reason"] == "tool_use", held
    use = held["content"][-1]["id"]
    after = {"thread": {"type": "continue", "previous_message_id": held["id"]}}
    message = _anthropic_refusal(*_anthropic(server, [{"role": "user", "content": "Thanks"}], **after))
    assert message.startswith(f"thread.previous_message_id: `tool_use` ids were found without `tool_result` blocks "
                              f"immediately after: {use}.")
    message = _anthropic_refusal(*_anthropic(server, [_results("toolu_other")], **after))
    assert message.startswith("messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                              "toolu_other.")
    status, body = _anthropic(server, [_results(use)], **after)
    assert status == 200 and body["type"] == "message", body


# -- OpenAI Responses -----------------------------------------------------------------------------------------------
def _function_call(call_id: str) -> dict:
    return {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": ARGS}


def _output(call_id: str) -> dict:
    return {"type": "function_call_output", "call_id": call_id, "output": "sunny"}


def _respond(server, items: list | str, **extra) -> tuple[int, dict]:
    return _post(server, "/v1/responses", {"model": MODEL, "max_output_tokens": 2, "temperature": 0,
                                           "tools": [RESPONSES_TOOL], "input": items, **extra})


def _responses_refusal(status: int, body: dict) -> str:
    assert status == 400 and body["error"]["param"] == "input", body
    return body["error"]["message"]


def test_responses_output_without_a_call(server):
    message = _responses_refusal(*_respond(server, [ASK, _output("call_x")]))
    assert message == "No tool call found for function call output with call_id call_x."
    # refused before it is queued: a background response never starts
    message = _responses_refusal(*_respond(server, [ASK, _output("call_x")], background=True))
    assert message == "No tool call found for function call output with call_id call_x."


def test_responses_calls_without_outputs(server):
    message = _responses_refusal(*_respond(server, [ASK, _function_call("call_a"), _function_call("call_b"),
                                                    _output("call_a")]))
    assert message == "No tool output found for function call call_b."


def test_responses_whole_conversations_still_answer(server):
    status, body = _respond(server, [ASK, _function_call("call_a"), _function_call("call_b"), _output("call_b"),
                                     _output("call_a")], store=False)
    assert status == 200 and body["object"] == "response", body


def test_responses_outputs_answer_the_stored_calls(server):
    status, first = _respond(server, [ASK], max_output_tokens=200,
                             tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
    assert status == 200, first
    [call] = [item for item in first["output"] if item["type"] == "function_call"]
    after = {"previous_response_id": first["id"]}
    message = _responses_refusal(*_respond(server, [_output("call_other")], **after))
    assert message == "No tool call found for function call output with call_id call_other."
    message = _responses_refusal(*_respond(server, "Thanks", **after))
    assert message == f"No tool output found for function call {call['call_id']}."
    status, body = _respond(server, [_output(call["call_id"])], **after)
    assert status == 200 and body["previous_response_id"] == first["id"], body


# -- Ollama: lax, as Ollama is -----------------------------------------------------------------------------------
def test_ollama_results_without_ids_still_answer(server):
    def chat(messages: list) -> tuple[int, dict]:
        return _post(server, "/api/chat", {"model": MODEL, "stream": False, "messages": messages,
                                           "tools": [FUNCTION], "options": {"temperature": 0, "num_predict": 2}})

    call = {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}]}
    for results in ([{"role": "tool", "content": "sunny"}, {"role": "tool", "content": "rainy"}],
                    [{"role": "tool", "content": "sunny", "tool_name": "get_weather"}]):  # (one left unanswered)
        status, body = chat([ASK, call, *results])
        assert status == 200 and body["done"], body
    status, body = chat([ASK, {"role": "tool", "content": "sunny"}])  # no call at all: no id checks here
    assert status == 200 and body["done"], body


# -- runs: their own tool rounds ---------------------------------------------------------------------------------
def test_a_run_with_tools_still_works_and_its_history_pairs(server):
    base = server.base_url
    with httpx.Client(base_url=base, timeout=300) as api:
        assistant = api.post("/v1/assistants", json={"name": "Clock", "model": MODEL, "tools": [
            {"type": "function", "function": {"name": "current_time"}, "require_approval": "never"}]}).json()
        thread = api.post("/v1/threads", json={"assistants": [{"assistant_id": assistant["id"]}],
                                               "messages": [{"role": "user", "content": "What time is it?"}]}).json()
        run = api.post(f"/v1/threads/{thread['id']}/runs", json={
            "tool_choice": {"type": "function", "function": {"name": "current_time"}}, "max_tokens": 60,
            "temperature": 0, "parallel_tool_calls": False}).json()
        run = wait_for_run_sync(lambda path: api.get(path).json(), run)  # (answered at once: polled to its end)
        assert run["status"] in ("completed", "incomplete"), run
        # (all=true: every stored message, the tool rounds included)
        history = api.get(f"/v1/threads/{thread['id']}/messages?order=asc&limit=100&all=true").json()["data"]
    roles = [m["role"] for m in history]
    assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant", roles
    assert history[2]["metadata"]["tool_call_id"] == history[1]["metadata"]["tool_calls"][0]["id"]
    # the run's history as chat messages is a conversation every dialect takes
    status, body = _chat(server, chat_messages(history, ""))
    assert status == 200, body
