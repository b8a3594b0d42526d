"""Anthropic message threads (``thread`` on /v1/messages, beta ``message-threads-2026-08-12``).

The server holds a conversation under each reply's id: a ``continue`` sends only the new turn. Driven by
raw HTTP and by the installed anthropic SDK (its ``thread()`` helper and its tool runner, which threads by
default). Replies of random-weight models are gibberish, so the tests check what the server held (the
requests the SDK sent, token counts of the held conversation against the whole one, the Jan thread) and
the protocol (error codes the SDK recovers from), never timing.
"""

from __future__ import annotations

import contextlib
import json

import anthropic
import httpx
import pytest
from anthropic.types import (ThreadAlreadyContinuedError, ThreadContinueInFlightError, ThreadNotFoundError,
                             ThreadUnsupportedRequestError)

from dialect_helpers import WEATHER_SCHEMA, anthropic_prompt_tokens, http_body, named_events, tool_model
from jan.server.dialects import anthropic as wire
from jan.server.dialects.anthropic_threads import ThreadError
from jan.server.routes.anthropic import THREADS
from jan.testing.server import free_port
from server_helpers import http_post, raw_request, start_server

GREEDY = {"temperature": 0}
BETA = {"anthropic-beta": "message-threads-2026-08-12"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, stories_path):
    return [stories_path, tool_model(tmp_path_factory.mktemp("thread-models"))]


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    srv = start_server(tmp_path_factory.mktemp("threads"), models, n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


class Recorder:
    """The /v1/messages requests an SDK client sends, with each answer's status and ``error_code``."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.answers: list[tuple[int, str | None]] = []

    def request(self, request) -> None:
        if request.url.path == "/v1/messages":
            self.sent.append(json.loads(request.content))

    def response(self, response) -> None:
        if response.request.url.path != "/v1/messages":
            return
        code = None
        if response.status_code >= 400:
            response.read()
            code = ((response.json().get("error") or {}).get("details") or {}).get("error_code")
        self.answers.append((response.status_code, code))

    def client(self, base_url: str) -> anthropic.Anthropic:
        http = anthropic.DefaultHttpxClient(event_hooks={"request": [self.request], "response": [self.response]})
        return anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0, timeout=120, http_client=http)


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    response = httpx.post(server.base_url + path, json=body, headers=BETA, timeout=120)
    return response.status_code, response.json()


def _create(server, messages: list, **fields) -> dict:
    status, message = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY, **fields,
                                                     "messages": messages, "thread": {"type": "create"}})
    assert status == 200, message
    return message


def _continue(server, previous: str, messages: list, **fields) -> tuple[int, dict]:
    return _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY, **fields,
                                          "messages": messages,
                                          "thread": {"type": "continue", "previous_message_id": previous}})


def _count(server, **body) -> int:
    status, counted = _post(server, "/v1/messages/count_tokens", body)
    assert status == 200, counted
    return counted["input_tokens"]


def _reply(message) -> dict:
    """A reply as a client sends it back in a whole conversation."""
    if isinstance(message, dict):
        return {"role": "assistant", "content": message["content"]}
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]}


def _details(body: dict) -> dict | None:
    return body["error"].get("details")


def _jan(server, path: str) -> dict:
    return httpx.get(server.base_url + path, timeout=30).json()


def _held_conversation(server, title: str) -> list[dict]:
    """The messages of the Jan thread that holds the conversation titled ``title``."""
    threads = [t for t in _jan(server, "/v1/threads?limit=100")["data"]
               if t.get("metadata", {}).get("source") == "anthropic" and t.get("title") == title]
    assert len(threads) == 1, threads
    return _jan(server, f"/v1/threads/{threads[0]['id']}/messages?order=asc&limit=100")["data"]


# -- create, continue ---------------------------------------------------------------------------------------
def test_continue_sends_only_the_new_turn_and_answers_as_the_whole_conversation(server):
    system, hi, more = "You tell stories.", {"role": "user", "content": "Once upon a time"}, \
        {"role": "user", "content": "And then?"}
    first = _create(server, [hi], system=system)
    assert first["id"].startswith("msg_") and first["type"] == "message"
    status, second = _continue(server, first["id"], [more])
    assert status == 200, second
    # the same answer, from the same prompt, as the whole conversation sent again without a thread
    whole = [hi, _reply(first), more]
    status, replay = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY,
                                                    "system": system, "messages": whole})
    assert status == 200
    assert second["content"] == replay["content"] and second["stop_reason"] == replay["stop_reason"]
    assert anthropic_prompt_tokens(second["usage"]) == anthropic_prompt_tokens(replay["usage"])
    # count_tokens honours a `continue` too: the held conversation plus the new turn
    assert _count(server, model="stories260K", messages=[more],
                  thread={"type": "continue", "previous_message_id": first["id"]}) == \
        _count(server, model="stories260K", system=system, messages=whole)
    # the conversation is a Jan thread (the web page shows it), the system prompt first
    held = _held_conversation(server, "Once upon a time")
    assert [m["role"] for m in held] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"][0]["text"]["value"] for m in held[:2]] == [system, "Once upon a time"]
    assert held[-1]["content"][0]["text"]["value"] == second["content"][0]["text"]
    # the response shape is unchanged
    assert set(second) == set(replay) and second["id"] != first["id"]


def test_a_continue_with_no_messages_resumes_the_held_reply(server):
    # what the SDK sends after a `pause_turn`: nothing new, the held reply goes on (as a prefill would)
    ask = {"role": "user", "content": "Tell me about a cat"}
    first = _create(server, [ask])
    status, resumed = _continue(server, first["id"], [])
    assert status == 200, resumed
    status, replay = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY,
                                                    "messages": [ask, _reply(first)]})
    assert resumed["content"] == replay["content"]
    # only a `continue` may send no messages
    status, err = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": [],
                                                 "thread": {"type": "create"}})
    assert status == 400 and err["error"]["type"] == "invalid_request_error" and "messages" in err["error"]["message"]
    status, err = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": []})
    assert status == 400


def test_a_streamed_continue_is_held_before_message_stop(server, tmp_path):
    first = _create(server, [{"role": "user", "content": "A dog ran"}])
    raw = raw_request(server.base_url, http_post("/v1/messages", {
        "model": "stories260K", "max_tokens": 6, **GREEDY, "stream": True, "messages": [
            {"role": "user", "content": "Where?"}], "thread": {"type": "continue", "previous_message_id": first["id"]}}))
    status, payload = http_body(raw)
    assert status == 200, payload
    events = named_events(payload)
    assert [events[0][0], events[-1][0]] == ["message_start", "message_stop"]
    streamed_id = events[0][1]["message"]["id"]
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    # the streamed reply is the thread's head: the next turn continues from it
    status, third = _continue(server, streamed_id, [{"role": "user", "content": "Why?"}])
    assert status == 200, third
    whole = [{"role": "user", "content": "A dog ran"}, _reply(first), {"role": "user", "content": "Where?"},
             {"role": "assistant", "content": text}, {"role": "user", "content": "Why?"}]
    assert anthropic_prompt_tokens(third["usage"]) == _count(server, model="stories260K", messages=whole)


# -- errors ---------------------------------------------------------------------------------------------------
def test_each_refusal_has_the_error_code_the_sdk_reads(server):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    first = _create(server, [{"role": "user", "content": "Errors"}])
    # thread_not_found: 404 not_found_error, for an unknown id and for one that names no file
    for missing in ("msg_0123456789abcdef01234567", "msg_../../threads", "resp_abc", ""):
        status, err = _continue(server, missing, [{"role": "user", "content": "x"}])
        assert status == 404 and err["error"]["type"] == "not_found_error", err
        assert _details(err) == {"error_code": "thread_not_found"}
    with pytest.raises(ThreadNotFoundError) as caught:
        client.beta.messages.create(model="stories260K", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                                    thread={"type": "continue", "previous_message_id": "msg_missing"})
    assert caught.value.error_code == "thread_not_found" and caught.value.details.error_code == "thread_not_found"
    # thread_already_continued: a reply is continued once (threads are linear)
    status, second = _continue(server, first["id"], [{"role": "user", "content": "once"}])
    assert status == 200
    status, err = _continue(server, first["id"], [{"role": "user", "content": "twice"}])
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    assert _details(err) == {"error_code": "thread_already_continued"}
    with pytest.raises(ThreadAlreadyContinuedError):
        client.beta.messages.create(model="stories260K", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                                    thread={"type": "continue", "previous_message_id": first["id"]})
    # the thread keeps its system and tools: repeating them on a `continue` is refused (no error_code)
    for field, value in (("system", "Be brief."), ("tools", [{"name": "f", "input_schema": WEATHER_SCHEMA}])):
        status, err = _continue(server, second["id"], [{"role": "user", "content": "x"}], **{field: value})
        assert status == 400 and err["error"]["type"] == "invalid_request_error" and field in err["error"]["message"]
        assert _details(err) is None
    for thread in ({"type": "fork"}, {"type": "continue"}, {"type": "continue", "previous_message_id": 7}):
        status, err = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 2, "thread": thread,
                                                     "messages": [{"role": "user", "content": "x"}]})
        assert status == 400 and "thread" in err["error"]["message"], err
    # the refusals left the thread as it was: its head still goes on
    assert _continue(server, second["id"], [{"role": "user", "content": "still here"}])[0] == 200


def test_a_continue_in_flight_is_refused_and_a_cut_stream_holds_nothing(server):
    """Two requests continuing one reply: the second is refused while the first is in flight (held here on the
    server's own loop, as a request is between reading its body and sending its answer, so no timing is
    involved); and a turn whose stream ends before ``message_stop`` (a client gone) is not held."""
    first = _create(server, [{"role": "user", "content": "In flight"}])
    body = wire.MessagesRequest.model_validate({
        "model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "first"}],
        "thread": {"type": "continue", "previous_message_id": first["id"]}})
    threads = server.app[THREADS]
    holder = contextlib.AsyncExitStack()
    turn = server.call(holder.enter_async_context(threads.turn(body)))
    try:
        status, err = _continue(server, first["id"], [{"role": "user", "content": "second"}])
        assert status == 400 and _details(err) == {"error_code": "thread_continue_in_flight"}
        with pytest.raises(ThreadContinueInFlightError):
            anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0).beta.messages.create(
                model="stories260K", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                thread={"type": "continue", "previous_message_id": first["id"]})

        async def cut_short() -> list:
            async def events():
                yield "message_start", {"type": "message_start", "message": {
                    "id": "msg_cutshort0000", "type": "message", "role": "assistant", "model": "stories260K",
                    "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1}}}
                yield "content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}
                yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": "half a"}}
            return [name async for name, _ in turn.stream(events())]

        assert server.call(cut_short())[-1] == "content_block_delta"
    finally:
        server.call(holder.aclose())
    assert not (server.config.data_folder / "message_threads" / "msg_cutshort0000.json").exists()
    # the first request is over and held nothing: the reply it continued is still the thread's head
    status, again = _continue(server, first["id"], [{"role": "user", "content": "again"}])
    assert status == 200, again
    held = _held_conversation(server, "In flight")
    assert [m["role"] for m in held] == ["user", "assistant", "user", "assistant"]
    assert held[2]["content"][0]["text"]["value"] == "again"


def test_a_reply_whose_conversation_went_on_meanwhile_is_not_held(server):
    # while a reply is generated, a message is added to its conversation (in the web page): the reply is not
    # held, so nothing is appended after the new message and no index names it, and the client is told so (it was
    # answered 200, and its next continue refused thread_not_found): the SDK's thread_already_continued, on which
    # it sends the whole conversation again
    first = _create(server, [{"role": "user", "content": "Meanwhile"}])
    body = wire.MessagesRequest.model_validate({
        "model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "go on"}],
        "thread": {"type": "continue", "previous_message_id": first["id"]}})
    threads = server.app[THREADS]
    late = {"id": "msg_meanwhile0000", "type": "message", "role": "assistant", "model": "stories260K",
            "content": [{"type": "text", "text": "late"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}

    async def race() -> dict:
        async with threads.turn(body) as turn:
            await threads.store.conversations.create_message(turn.previous.thread_id,
                                                             {"role": "user", "content": "typed meanwhile"})
            return await turn.commit(late)

    with pytest.raises(ThreadError) as refused:
        server.call(race())
    assert refused.value.status == 400 and refused.value.details == {"error_code": "thread_already_continued"}
    assert "the turn was not kept" in refused.value.message
    assert not (server.config.data_folder / "message_threads" / "msg_meanwhile0000.json").exists()
    assert [m["role"] for m in _held_conversation(server, "Meanwhile")] == ["user", "assistant", "user"]


def test_without_a_conversation_store_a_thread_is_an_unsupported_request(server):
    assert httpx.post(server.base_url + "/v1/extensions/conversational/disable", json={},
                      timeout=120).status_code == 200
    try:
        status, err = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 2, "thread": {
            "type": "create"}, "messages": [{"role": "user", "content": "x"}]})
        assert status == 400 and err["error"]["type"] == "invalid_request_error"
        assert _details(err) == {"error_code": "thread_unsupported_request"}
        # the tool runner then goes on without a thread (the SDK's continue_unthreaded), and works
        recorder = Recorder()
        runner = recorder.client(server.base_url).beta.messages.tool_runner(
            model="tool-model", max_tokens=3, tools=[_weather_tool([])], tool_choice={"type": "none"},
            extra_body=GREEDY, messages=[{"role": "user", "content": "Hi"}])
        replies = list(runner)
        assert len(replies) == 1 and replies[0].stop_reason == "max_tokens"
        assert [request.get("thread") for request in recorder.sent] == [{"type": "create"}, None]
        assert recorder.answers == [(400, "thread_unsupported_request"), (200, None)]
        with pytest.raises(ThreadUnsupportedRequestError) as caught:
            anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0).beta.messages.create(
                model="stories260K", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                thread={"type": "create"})
        assert caught.value.details.unsupported is None
    finally:
        assert httpx.post(server.base_url + "/v1/extensions/conversational/enable", json={},
                          timeout=120).status_code == 200


# -- the SDK ---------------------------------------------------------------------------------------------------
def _weather_tool(calls: list):
    @anthropic.beta_tool(input_schema=WEATHER_SCHEMA)
    def get_weather(city: str) -> str:
        """Weather in a city"""
        calls.append(city)
        return f"Sunny in {city}, 21 C"

    return get_weather


def test_the_tool_runner_threads_a_tool_round_trip(server):
    recorder, calls = Recorder(), []
    system = "You check the weather."
    runner = recorder.client(server.base_url).beta.messages.tool_runner(
        model="tool-model", max_tokens=200, system=system, tools=[_weather_tool(calls)], max_iterations=3,
        tool_choice={"type": "any", "disable_parallel_tool_use": True}, extra_body=GREEDY,
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    replies = list(runner)
    assert len(replies) == 3 and all(reply.stop_reason == "tool_use" for reply in replies)
    assert recorder.answers == [(200, None)] * 3 and calls and set(calls) <= {"Paris", "Lyon"}
    # the protocol: one `create` with everything, then `continue`s with only the tool result
    first, *later = recorder.sent
    assert first["thread"] == {"type": "create"} and first["system"] == system and first["tools"]
    for request, previous in zip(later, replies):
        assert request["thread"] == {"type": "continue", "previous_message_id": previous.id}
        assert "system" not in request and "tools" not in request
        [result] = request["messages"]
        assert result["role"] == "user" and result["content"][0]["type"] == "tool_result"
        assert result["content"][0]["tool_use_id"] == previous.content[-1].id
    # what the server held: the whole conversation (with its system prompt and tools), turn by turn;
    # tool_choice "any" needs tools, so every continued turn called the tool the thread keeps
    whole = []
    for request, reply in zip(recorder.sent, replies):
        whole += [*request["messages"], _reply(reply)]
    # (counted with the last call's result: a conversation that leaves tool uses unanswered is refused, as upstream)
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": replies[-1].content[-1].id,
                                           "content": "sunny"}]}
    held = _count(server, model="tool-model", messages=[answer],
                  thread={"type": "continue", "previous_message_id": replies[-1].id})
    assert held == _count(server, model="tool-model", system=system, tools=first["tools"], messages=[*whole, answer])
    prompts = [anthropic_prompt_tokens(reply.usage) for reply in replies]
    assert prompts == sorted(set(prompts))
    conversation = [t for t in _jan(server, "/v1/threads?limit=100")["data"] if t.get("title") == "Weather in Paris?"]
    # (all: the tool results too, which OpenAI's list leaves to the run steps)
    messages = _jan(server, f"/v1/threads/{conversation[0]['id']}/messages?order=asc&all=true")["data"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert messages[3]["metadata"]["tool_call_id"] == replies[0].content[-1].id


def test_the_streaming_tool_runner_continues_streamed_turns(server):
    recorder, calls = Recorder(), []
    runner = recorder.client(server.base_url).beta.messages.tool_runner(
        model="tool-model", max_tokens=200, tools=[_weather_tool(calls)], max_iterations=2, stream=True,
        tool_choice={"type": "any", "disable_parallel_tool_use": True}, extra_body=GREEDY,
        messages=[{"role": "user", "content": "Weather in Lyon?"}])
    replies = [stream.get_final_message() for stream in runner]
    assert len(replies) == 2 and recorder.answers == [(200, None)] * 2
    assert [r["stream"] for r in recorder.sent] == [True, True]
    assert recorder.sent[1]["thread"] == {"type": "continue", "previous_message_id": replies[0].id}
    assert replies[1].stop_reason == "tool_use" and calls


def test_the_thread_helper_streams_a_continue_and_recovers_a_lost_thread(server):
    recorder = Recorder()
    client = recorder.client(server.base_url)
    thread = client.beta.messages.thread(model="stories260K", max_tokens=6, system="Stories.", extra_body=GREEDY)
    hi, more, last = ({"role": "user", "content": text} for text in ("Lost and found", "More", "Last"))
    first = thread.send(hi)
    with thread.stream(more) as stream:
        streamed = "".join(stream.text_stream)
        second = stream.get_final_message()
    assert [r["thread"]["type"] for r in recorder.sent] == ["create", "continue"] and recorder.sent[1]["stream"]
    assert recorder.sent[1]["messages"] == [more]
    _, replay = _post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY,
                                               "system": "Stories.", "messages": [hi, _reply(first), more]})
    assert streamed == second.content[0].text == replay["content"][0]["text"]
    # the server loses the thread (its conversation deleted): the SDK replays it whole, in a new thread
    held = [t for t in _jan(server, "/v1/threads?limit=100")["data"] if t.get("title") == "Lost and found"]
    assert httpx.delete(f"{server.base_url}/v1/threads/{held[0]['id']}", timeout=120).status_code == 200
    third = thread.send(last)
    assert recorder.answers[2:] == [(404, "thread_not_found"), (200, None)]
    assert recorder.sent[3]["thread"] == {"type": "create"} and recorder.sent[3]["messages"][-1] == last
    assert len(recorder.sent[3]["messages"]) == 5
    # a reply continued behind the SDK's back: it replays as well
    assert _continue(server, third.id, [{"role": "user", "content": "elsewhere"}])[0] == 200
    thread.send({"role": "user", "content": "After"})
    assert recorder.answers[4:] == [(400, "thread_already_continued"), (200, None)]
    assert recorder.sent[5]["thread"] == {"type": "create"}


def test_threads_survive_a_restart(tmp_path, models):
    port = free_port()
    recorder = Recorder()
    srv = start_server(tmp_path, models, port=port)
    try:
        client = recorder.client(srv.base_url)
        thread = client.beta.messages.thread(model="stories260K", max_tokens=6, extra_body=GREEDY)
        first = thread.send({"role": "user", "content": "Before the restart"})
    finally:
        srv.stop()
    srv = start_server(tmp_path, models, port=port)
    try:
        second = thread.send({"role": "user", "content": "After"})
        assert recorder.answers == [(200, None), (200, None)]  # continued, no replay
        assert recorder.sent[1]["thread"] == {"type": "continue", "previous_message_id": first.id}
        _, replay = _post(srv, "/v1/messages", {"model": "stories260K", "max_tokens": 6, **GREEDY, "messages": [
            {"role": "user", "content": "Before the restart"}, _reply(first), {"role": "user", "content": "After"}]})
        assert second.content[0].text == replay["content"][0]["text"]
        assert anthropic_prompt_tokens(second.usage) == anthropic_prompt_tokens(replay["usage"])
    finally:
        srv.stop()


def test_a_conversation_gone_on_elsewhere_or_a_damaged_index_file(server):
    first = _create(server, [{"role": "user", "content": "Damage"}], tools=[{"name": "get_weather",
                                                                              "input_schema": WEATHER_SCHEMA}])
    status, second = _continue(server, first["id"], [{"role": "user", "content": "on"}])
    assert status == 200
    # a message added to the conversation behind the API's back (in the web page; or the first messages of a turn
    # a crash cut short, before its index file was written): the reply is no longer the thread's head
    [conversation] = [t for t in _jan(server, "/v1/threads?limit=100")["data"] if t.get("title") == "Damage"]
    added = httpx.post(f"{server.base_url}/v1/threads/{conversation['id']}/messages",
                       json={"role": "user", "content": "typed in the web page"}, timeout=120)
    assert added.status_code == 200
    status, err = _continue(server, second["id"], [{"role": "user", "content": "x"}])
    assert status == 400 and _details(err) == {"error_code": "thread_already_continued"}
    # the thread's first reply keeps its create-only fields for every later one: damaged, the thread is lost
    index = server.config.data_folder / "message_threads" / f"{first['id']}.json"
    assert json.loads(index.read_text())["response"]["tools"][0]["name"] == "get_weather"
    later = json.loads((index.parent / f"{second['id']}.json").read_text())["response"]
    assert later["root"] == first["id"] and "tools" not in later
    index.write_text("{not json", encoding="utf-8")
    status, err = _continue(server, second["id"], [{"role": "user", "content": "x"}])
    assert status == 404 and _details(err) == {"error_code": "thread_not_found"}
    assert not index.exists() and list(index.parent.glob(f"{first['id']}.json.corrupt-*"))  # set aside, kept
