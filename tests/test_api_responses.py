"""OpenAI Responses (/v1/responses), driven by the official openai client against a real server.

Stored responses are Jan threads: the tests read them back through Jan's own thread API, and
continue a conversation with ``previous_response_id`` across a restart of ``jan serve`` (its own process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from dialect_helpers import (WEATHER_SCHEMA, collapse, has_reasoning_parser, http_body, named_events, openai_client,
                             reasoning_model, tool_model)
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread, free_port
from server_helpers import http_post, raw_request

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": WEATHER_SCHEMA, "strict": True}]


def _start(data, models):
    # A context long enough that a generation cut off by a cancel is still running when it comes.
    config = ServerConfig(data_folder=data, models=[str(m) for m in models], n_ctx=4096, n_parallel=2, n_threads=1)
    return ServerThread(config).__enter__()


@pytest.fixture(scope="module")
def models(tmp_path_factory, stories_path):
    return [stories_path, tool_model(tmp_path_factory.mktemp("models"))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("responses") / "data"


@pytest.fixture(scope="module")
def server(data, models):
    srv = _start(data, models)
    yield srv
    srv.stop()


def _client(server) -> openai.OpenAI:
    return openai_client(server)


@pytest.fixture(scope="module")
def client(server):
    return _client(server)


def _raw_stream(server, body: dict) -> list[dict]:
    status, payload = http_body(raw_request(server.base_url, http_post("/v1/responses", {**body, "stream": True})))
    assert status == 200, payload
    events = named_events(payload)
    assert all(name == data["type"] for name, data in events)
    return [data for _, data in events]


def test_create_plain_equals_the_chat_completion(client):
    response = client.responses.create(model="stories260K", input="Hello", instructions="You tell stories.",
                                       max_output_tokens=20, temperature=0)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in response.output] == ["message"]
    assert response.usage.output_tokens == 20 and response.model == "stories260K"
    chat = client.chat.completions.create(model="stories260K", max_tokens=20, temperature=0, messages=[
        {"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Hello"}])
    assert response.output_text == chat.choices[0].message.content
    assert response.usage.input_tokens == chat.usage.prompt_tokens


def test_stream_matches_plain(client):
    kwargs = dict(model="stories260K", input="Hi", max_output_tokens=15, temperature=0)
    plain = client.responses.create(**kwargs)
    events = list(client.responses.create(**kwargs, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == plain.output_text
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens == 15
    assert client.responses.retrieve(final.id).output_text == text


def test_stream_golden_text_answer(server):
    events = _raw_stream(server, {"model": "stories260K", "input": "Hi", "max_output_tokens": 10, "temperature": 0})
    assert collapse([e["type"] for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.incomplete"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    done = events[-2]["item"]
    assert done["type"] == "message" and done["content"][0]["text"] == events[-3]["part"]["text"] == events[-4]["text"]
    assert events[-1]["response"]["output"] == [done] and events[-1]["response"]["usage"]["output_tokens"] == 10


def test_stream_golden_function_call(server):
    events = _raw_stream(server, {"model": "tool-model", "input": "Weather in Paris?", "tools": TOOLS,
                                  "tool_choice": {"type": "function", "name": "get_weather"},
                                  "parallel_tool_calls": False, "max_output_tokens": 200, "temperature": 0})
    assert collapse([e["type"] for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    call = events[-2]["item"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert json.loads(call["arguments"])["city"] in ("Paris", "Lyon")
    assert events[-1]["response"]["status"] == "completed"


def test_function_tool_round_trip(client):
    first = client.responses.create(model="tool-model", input="Weather in Paris?", tools=TOOLS,
                                    tool_choice="required", parallel_tool_calls=False, max_output_tokens=200,
                                    temperature=0)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"] in ("Paris", "Lyon")
    second = client.responses.create(model="tool-model", previous_response_id=first.id, tools=TOOLS,
                                     max_output_tokens=6, temperature=0,
                                     input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                             "output": "Sunny, 21 C"}])
    assert second.previous_response_id == first.id and second.status in ("completed", "incomplete")
    # The same turn sent in full, without stored state, gives the same answer.
    manual = client.responses.create(model="tool-model", tools=TOOLS, max_output_tokens=6, temperature=0,
                                     store=False, input=[
                                         {"role": "user", "content": "Weather in Paris?"},
                                         {"type": "function_call", "call_id": calls[0].call_id,
                                          "name": "get_weather", "arguments": calls[0].arguments},
                                         {"type": "function_call_output", "call_id": calls[0].call_id,
                                          "output": "Sunny, 21 C"}])
    assert manual.output_text == second.output_text
    assert manual.usage.input_tokens == second.usage.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(manual.id)  # store: false keeps nothing


def _as_chat(client, turns: list[str], max_tokens: int) -> str:
    """The greedy reply of /v1/chat/completions to the same conversation (user, assistant, user, ...)."""
    messages = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(turns)]
    chat = client.chat.completions.create(model="stories260K", max_tokens=max_tokens, temperature=0, messages=messages)
    return chat.choices[0].message.content


def test_previous_response_id_continues_the_conversation(client, server):
    first = client.responses.create(model="stories260K", input="Hi", max_output_tokens=8, temperature=0)
    second = client.responses.create(model="stories260K", input="Tell me more", previous_response_id=first.id,
                                     max_output_tokens=8, temperature=0)
    assert second.output_text == _as_chat(client, ["Hi", first.output_text, "Tell me more"], max_tokens=8)
    # the items used to generate it (OpenAI's): the response it continues, input and output, then its own input
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [
        ("message", "user", "Hi"), ("message", "assistant", first.output_text), ("message", "user", "Tell me more")]
    assert items.data[1].id == first.output[0].id
    # The conversation is one Jan thread, as the web page shows it.
    threads = [t for t in _jan(server, "/v1/threads")["data"] if t.get("title") == "Hi"]
    messages = _jan(server, f"/v1/threads/{threads[0]['id']}/messages?order=asc")["data"]
    assert [(m["role"], m["content"][0]["text"]["value"]) for m in messages] == [
        ("user", "Hi"), ("assistant", first.output_text), ("user", "Tell me more"),
        ("assistant", second.output_text)]
    assert messages[-1]["metadata"]["response_id"] == second.id


def test_an_answer_its_token_limit_cut_is_told_so_in_the_thread(client, server):
    # a stored response cut by max_output_tokens was kept as a stopped message with no reason: its thread (the web
    # page, `jan threads show`) told it as incomplete "run_cancelled", as if someone had cancelled it
    cut = client.responses.create(model="stories260K", input="Cut me short", max_output_tokens=3, temperature=0)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    thread = next(t for t in _jan(server, "/v1/threads?limit=100")["data"] if t["title"] == "Cut me short")
    answer = _jan(server, f"/v1/threads/{thread['id']}/messages?order=asc")["data"][-1]
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_tokens"}, answer
    # and in a conversation (its items are added when the response ends)
    conversation = client.conversations.create()
    client.responses.create(model="stories260K", input="Short too", max_output_tokens=3, conversation=conversation.id)
    answer = _jan(server, f"/v1/threads/{conversation.id}/messages?order=asc")["data"][-1]
    assert answer["incomplete_details"] == {"reason": "max_tokens"}, answer
    assert [i.status for i in client.conversations.items.list(conversation.id)][0] == "incomplete"


def test_branching_from_an_earlier_response_forks_the_thread(client, server):
    first = client.responses.create(model="stories260K", input="Branch root", max_output_tokens=4, temperature=0)
    a = client.responses.create(model="stories260K", input="one", previous_response_id=first.id,
                                max_output_tokens=4, temperature=0)
    b = client.responses.create(model="stories260K", input="two", previous_response_id=first.id,
                                max_output_tokens=4, temperature=0)
    c = client.responses.create(model="stories260K", input="three", previous_response_id=a.id,
                                max_output_tokens=4, temperature=0)
    threads = [t for t in _jan(server, "/v1/threads?limit=100")["data"] if t.get("title") == "Branch root"]
    contents = sorted([m["content"][0]["text"]["value"] for m in _jan(server, f"/v1/threads/{t['id']}/messages?order=asc")["data"]
                       if m["role"] == "user"] for t in threads)
    assert contents == [["Branch root", "one", "three"], ["Branch root", "two"]]
    assert b.output_text and c.output_text


class JanServe:
    """``jan serve`` in its own process (a real restart: nothing survives but the data folder)."""

    def __init__(self, data, models):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "jan.cli", "serve", "--port", str(self.port), "--data-folder", str(data),
                "--threads", "1", "--ctx-size", "1024", "--parallel", "1"]
        for model in models:
            args += ["-m", str(model)]
        self.log = open(Path(data).parent / f"jan-serve-{self.port}.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, Path(self.log.name).read_text(errors="replace")[-3000:]
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "jan serve did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: jan serve's own shutdown
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def test_previous_response_id_across_a_restart(tmp_path, models):
    data = tmp_path / "data"
    srv = JanServe(data, models)
    try:
        first = _client(srv).responses.create(model="stories260K", input="Before the restart",
                                              max_output_tokens=6, temperature=0)
    finally:
        srv.stop()
    srv = JanServe(data, models)
    try:
        client = _client(srv)
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(model="stories260K", input="After", previous_response_id=first.id,
                                         max_output_tokens=6, temperature=0)
        assert second.previous_response_id == first.id
        chat = client.chat.completions.create(model="stories260K", max_tokens=6, temperature=0, messages=[
            {"role": "user", "content": "Before the restart"}, {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "After"}])
        assert second.output_text == chat.choices[0].message.content
        assert second.usage.input_tokens == chat.usage.prompt_tokens
        assert [i.content[0].text for i in client.responses.input_items.list(second.id, order="asc").data] == [
            "Before the restart", first.output_text, "After"]
    finally:
        srv.stop()


def test_retrieve_delete_and_unknown_ids(client):
    response = client.responses.create(model="stories260K", input="Hi", max_output_tokens=3, temperature=0)
    assert client.responses.retrieve(response.id).id == response.id
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_..%2F..%2Fthreads")
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", input="Hi", previous_response_id="resp_missing")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="Hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="stories260K", input=[{"type": "function_call_output"}])


def test_input_items_pagination(client):
    response = client.responses.create(model="stories260K", max_output_tokens=2, temperature=0,
                                       input=[{"role": "user", "content": f"turn {i}"} for i in range(5)])
    newest_first = client.responses.input_items.list(response.id)
    assert [i.content[0].text for i in newest_first.data] == [f"turn {i}" for i in (4, 3, 2, 1, 0)]
    page = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["turn 0", "turn 1"] and page.has_more
    rest = client.responses.input_items.list(response.id, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["turn 2", "turn 3", "turn 4"]


def test_background_response_can_be_cancelled(client, server):
    # greedy stories260K never ends on its own: only the cancel stops this one
    stream = client.responses.create(model="stories260K", input="Cancel me", max_output_tokens=4000, temperature=0,
                                     background=True, stream=True)
    response_id = None
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()  # a background response goes on without its client
    assert client.responses.retrieve(response_id).status == "in_progress"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", input="x", previous_response_id=response_id)
    assert err.value.code == "previous_response_in_progress"
    cancelled = client.responses.cancel(response_id)
    assert cancelled.status == "cancelled" and 0 < (cancelled.usage.output_tokens if cancelled.usage else 1)
    assert client.responses.retrieve(response_id).status == "cancelled"
    thread = next(t for t in _jan(server, "/v1/threads?limit=100")["data"]
                  if t.get("metadata", {}).get("source") == "responses" and t["title"] == "Cancel me")
    answer = _jan(server, f"/v1/threads/{thread['id']}/messages?order=asc")["data"][-1]
    assert answer["role"] == "assistant" and answer["status"] == "incomplete" and answer["content"]  # (stored: stopped)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(client.responses.create(model="stories260K", input="x", max_output_tokens=1).id)


def test_a_client_leaving_a_stream_cancels_its_response(client):
    import time

    stream = client.responses.create(model="stories260K", input="Hi", max_output_tokens=4000, temperature=0,
                                     stream=True)
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()  # not a background response: it stops with its client
    deadline = time.monotonic() + 120
    while (status := client.responses.retrieve(response_id).status) == "in_progress":
        assert time.monotonic() < deadline, "the response went on without its client"
        time.sleep(0.1)
    assert status == "cancelled"


def test_background_response_completes_and_can_be_polled(client):
    import time

    response = client.responses.create(model="stories260K", input="Hi", max_output_tokens=5, temperature=0,
                                       background=True)
    assert response.status in ("queued", "in_progress") and response.background
    deadline = time.monotonic() + 120
    while response.status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the background response never finished"
        time.sleep(0.1)
        response = client.responses.retrieve(response.id)
    assert response.status == "incomplete" and response.usage.output_tokens == 5


def _jan(server, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(server.base_url + path, timeout=30) as r:
        return json.loads(r.read())


def _answer_in_thread(server, title: str, response_id: str) -> dict:
    """The assistant message a response was kept as, in the one thread titled ``title`` that holds it."""
    [thread] = [t for t in _jan(server, "/v1/threads")["data"] if t.get("title") == title and
                response_id in {m["metadata"].get("response_id") for m in
                                _jan(server, f"/v1/threads/{t['id']}/messages")["data"]}]
    return next(m for m in _jan(server, f"/v1/threads/{thread['id']}/messages?order=asc")["data"]
                if m["metadata"].get("response_id") == response_id and m["role"] == "assistant")


def test_text_format_json_schema(client):
    schema = {"type": "object", "properties": {"pet": {"enum": ["cat", "dog"]}}, "required": ["pet"],
              "additionalProperties": False}
    response = client.responses.create(model="stories260K", input="A pet?", max_output_tokens=40, temperature=0,
                                       text={"format": {"type": "json_schema", "name": "pet", "schema": schema}})
    assert json.loads(response.output_text)["pet"] in ("cat", "dog")
    assert response.text.format.type == "json_schema"


@pytest.mark.skipif(not has_reasoning_parser(), reason="reasoning parsing (jan.templates.formats) is not in this build yet")
def test_reasoning_on_a_reasoning_template(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reasoning")
    srv = _start(tmp / "data", [reasoning_model(tmp)])
    try:
        client = _client(srv)
        kwargs = dict(model="qwq-tiny", input="Hi", max_output_tokens=16, temperature=0, reasoning={"effort": "low"})
        response = client.responses.create(**kwargs)
        assert response.output[0].type == "reasoning" and response.output[0].content[0].text
        events = list(client.responses.create(**kwargs, stream=True))
        kinds = collapse([e.type for e in events])
        assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added", "response.reasoning_text.delta"]
        assert "response.reasoning_text.done" in kinds
        assert events[-1].response.output[0].content[0].text == response.output[0].content[0].text
        # the reasoning is kept with the answer in the thread, and goes back to the model on the next turn
        follow = client.responses.create(model="qwq-tiny", input="More", previous_response_id=response.id,
                                         max_output_tokens=4, temperature=0)
        assert follow.status in ("completed", "incomplete")
        # ... as a "reasoning" content part before the text, as runs save it (the web page shows it the same way)
        answer = _answer_in_thread(srv, "Hi", response.id)
        assert answer["content"][0] == {"type": "reasoning", "text": {
            "value": response.output[0].content[0].text, "annotations": []}}
    finally:
        srv.stop()


@pytest.mark.skipif(not has_reasoning_parser(), reason="reasoning parsing (jan.templates.formats) is not in this build yet")
@pytest.mark.parametrize("field", ["summary", "generate_summary"])
def test_a_summary_asked_for_is_the_reasoning_itself(tmp_path_factory, field):
    # A local model writes no summary of its thinking: asked for one, the reasoning item's summary is the thinking
    # (as Ollama's Responses API gives it), in place of its reasoning_text content and its events, never both.
    tmp = tmp_path_factory.mktemp("summary")
    srv = _start(tmp / "data", [reasoning_model(tmp)])
    try:
        client = _client(srv)
        plain = dict(model="qwq-tiny", input="Hi", max_output_tokens=16, temperature=0)
        thinking = client.responses.create(**plain).output[0].content[0].text
        asked = dict(plain, extra_body={"reasoning": {"effort": "low", field: "detailed"}})
        response = client.responses.create(**asked)
        [item] = [i for i in response.output if i.type == "reasoning"]
        assert [(p.type, p.text) for p in item.summary] == [("summary_text", thinking)] and not item.content
        assert getattr(response.reasoning, field) == "detailed"
        events = list(client.responses.create(**asked, stream=True))
        kinds = collapse([e.type for e in events])
        assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta"]
        assert kinds[5:8] == ["response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                              "response.output_item.done"]
        assert not [k for k in kinds if "reasoning_text" in k or "content_part" in k]
        deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
        assert "".join(e.delta for e in deltas) == thinking
        assert {(e.item_id, e.summary_index) for e in deltas} == {(events[2].item.id, 0)}
        [done] = [e for e in events if e.type == "response.reasoning_summary_part.done"]
        assert done.part.text == thinking
        final = events[-1].response
        assert final.output[0].summary[0].text == thinking and not final.output[0].content
        # kept as the thinking it is: the stored response, a follow-up and the thread read it back
        assert client.responses.retrieve(final.id).output[0].summary[0].text == thinking
        follow = client.responses.create(model="qwq-tiny", input="More", previous_response_id=final.id,
                                         max_output_tokens=4, temperature=0)
        assert follow.status in ("completed", "incomplete")
        answer = _answer_in_thread(srv, "Hi", final.id)
        assert answer["content"][0] == {"type": "reasoning", "text": {"value": thinking, "annotations": []}}
    finally:
        srv.stop()


def test_openapi_documents_both_dialects(server):
    spec = _jan(server, "/openapi.json")
    assert spec["paths"]["/v1/responses"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResponsesRequest"}
    assert "MessagesRequest" in spec["components"]["schemas"] and "/v1/messages/count_tokens" in spec["paths"]
    assert {"get", "delete"} <= set(spec["paths"]["/v1/responses/{response_id}"])


def test_a_response_left_unfinished_by_a_stopped_server_reads_as_failed(client, data):
    response = client.responses.create(model="stories260K", input="Hi", max_output_tokens=2, temperature=0)
    path = data / "responses" / f"{response.id}.json"
    stored = json.loads(path.read_text())
    stored["response"]["status"] = "in_progress"  # as a server killed mid-generation leaves it
    path.write_text(json.dumps(stored))
    again = client.responses.retrieve(response.id)
    assert again.status == "failed" and again.error.code == "server_error"
    path.write_text("{not json")  # a damaged index file is set aside, not a 500
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    assert any(p.name.startswith(f"{response.id}.json") and p != path for p in path.parent.iterdir())


def test_input_image_reaches_the_chat_path(client):
    import base64

    from jan.testing.gguf_models import models_dir

    image = base64.b64encode((models_dir().parent / "media" / "test-1.jpeg").read_bytes()).decode()
    with pytest.raises(openai.BadRequestError) as err:  # stories260K has no vision
        client.responses.create(model="stories260K", max_output_tokens=5, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": f"data:image/jpeg;base64,{image}"},
            {"type": "input_text", "text": "What is this?"}]}])
    assert "image" in str(err.value)


def test_concurrent_continuations_never_share_a_thread(client, server):
    from concurrent.futures import ThreadPoolExecutor

    root = client.responses.create(model="stories260K", input="Concurrent root", max_output_tokens=3, temperature=0)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda word: client.responses.create(
            model="stories260K", input=word, previous_response_id=root.id, max_output_tokens=3, temperature=0),
            ["alpha", "beta", "gamma", "delta"]))
    assert all(a.status in ("completed", "incomplete") for a in answers)
    threads = [t for t in _jan(server, "/v1/threads?limit=100")["data"] if t.get("title") == "Concurrent root"]
    conversations = sorted([m["content"][0]["text"]["value"]
                            for m in _jan(server, f"/v1/threads/{t['id']}/messages?order=asc")["data"]
                            if m["role"] == "user"] for t in threads)
    assert conversations == [["Concurrent root", word] for word in ("alpha", "beta", "delta", "gamma")]
