"""Anthropic Messages (/v1/messages), driven by the official anthropic client against a real server.

The server has an API key: the client sends it as ``Authorization: Bearer`` (``auth_token``,
what Claude Code's ANTHROPIC_AUTH_TOKEN does) or as ``x-api-key`` (``api_key``).
"""

from __future__ import annotations

import base64
import json
import re

import anthropic
import openai
import pytest

from dialect_helpers import (WEATHER_SCHEMA, anthropic_prompt_tokens, collapse, has_reasoning_parser, http_body, named_events, reasoning_model,
                             tool_model)
from jan.testing.gguf_models import models_dir
from server_helpers import http_post, raw_request, start_server

KEY = "sk-test-dialects"
TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}]
GREEDY = {"temperature": 0}  # the newest SDK has no temperature argument; the API still takes it


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("anthropic")
    srv = start_server(tmp, [stories_path, tool_model(tmp)], api_key=KEY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, auth_token=KEY, api_key=None, max_retries=0, timeout=120)


def _raw_stream(server, body: dict) -> list[tuple[str, dict]]:
    raw = raw_request(server.base_url, http_post("/v1/messages", {**body, "stream": True},
                                                 headers={"Authorization": f"Bearer {KEY}"}))
    status, payload = http_body(raw)
    assert status == 200, payload
    return named_events(payload)


def test_message_plain_equals_the_chat_completion(client, server):
    message = client.messages.create(model="stories260K", max_tokens=20, extra_body=GREEDY,
                                     system="You tell stories.", messages=[{"role": "user", "content": "Hello"}])
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == "stories260K"
    assert [block.type for block in message.content] == ["text"]
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 20 and message.usage.input_tokens > 0
    # A thin adapter: the same answer as the OpenAI route gives for the same conversation.
    chat = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0).chat.completions.create(
        model="stories260K", max_tokens=20, temperature=0,
        messages=[{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Hello"}])
    assert message.content[0].text == chat.choices[0].message.content
    assert anthropic_prompt_tokens(message.usage) == chat.usage.prompt_tokens


def test_message_stream_matches_plain(client):
    kwargs = dict(model="stories260K", max_tokens=25, extra_body=GREEDY, messages=[{"role": "user", "content": "Hi"}])
    plain = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == plain.content[0].text == final.content[0].text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 25
    assert anthropic_prompt_tokens(final.usage) == anthropic_prompt_tokens(plain.usage)
    # the same prompt again: its prefix is read from the cache and counted once, not twice
    assert final.usage.cache_read_input_tokens > 0
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens == anthropic_prompt_tokens(plain.usage)


def test_stop_sequences(client):
    kwargs = dict(model="stories260K", max_tokens=40, extra_body=GREEDY, messages=[{"role": "user", "content": "Hi"}])
    full = client.messages.create(**kwargs).content[0].text
    word = full.split()[3]
    cut = client.messages.create(**kwargs, stop_sequences=[word, "never-seen"])
    assert cut.content[0].text == full[: full.index(word)]
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == word
    with client.messages.stream(**kwargs, stop_sequences=[word]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == word
    assert final.content[0].text == cut.content[0].text


def _block_shapes(events) -> list:
    """Each event's name with its content block's or delta's type, runs of the same one collapsed."""
    return collapse([(n, (d.get("content_block") or d.get("delta") or {}).get("type")) for n, d in events])


def _one_block(block: str, delta: str) -> list:
    """The events of a stream with one content block of type ``block`` (deltas of type ``delta``)."""
    return [("message_start", None), ("ping", None), ("content_block_start", block),
            ("content_block_delta", delta), ("content_block_stop", None),
            ("message_delta", None), ("message_stop", None)]


def test_stream_golden_text_answer(server):
    events = _raw_stream(server, {"model": "stories260K", "max_tokens": 12, "temperature": 0,
                                  "messages": [{"role": "user", "content": "Hi"}]})
    assert all(name == data["type"] for name, data in events)
    assert _block_shapes(events) == _one_block("text", "text_delta")
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == "stories260K"
    assert events[-2][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    usage = events[-2][1]["usage"]
    assert usage["output_tokens"] == 12
    # message_start tells the prompt's size, as Anthropic does (clients read the context used from it), split as
    # Anthropic's is and as message_delta's: evaluated (input_tokens) and held by the cache (cache_read_input_tokens)
    split = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    assert [start["usage"][k] for k in split] == [usage[k] for k in split]
    assert start["usage"]["input_tokens"] + start["usage"]["cache_read_input_tokens"] > 0
    again = _raw_stream(server, {"model": "stories260K", "max_tokens": 2, "temperature": 0,
                                 "messages": [{"role": "user", "content": "Hi"}]})  # the prompt is cached now
    first, last = again[0][1]["message"]["usage"], again[-2][1]["usage"]
    assert first["cache_read_input_tokens"] > 0 and [first[k] for k in split] == [last[k] for k in split]


def test_stream_golden_tool_call(server):
    events = _raw_stream(server, {"model": "tool-model", "max_tokens": 200, "temperature": 0, "tools": TOOLS,
                                  "tool_choice": {"type": "tool", "name": "get_weather",
                                                  "disable_parallel_tool_use": True},
                                  "messages": [{"role": "user", "content": "Weather in Paris?"}]})
    assert _block_shapes(events) == _one_block("tool_use", "input_json_delta")
    block = events[2][1]["content_block"]
    assert block["name"] == "get_weather" and block["input"] == {} and block["id"]
    arguments = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(arguments)["city"] in ("Paris", "Lyon")
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_use_round_trip_with_tool_result(client):
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.messages.create(model="tool-model", max_tokens=200, extra_body=GREEDY, tools=TOOLS,
                                   tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                   messages=[question])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.input["city"] in ("Paris", "Lyon")
    second = client.messages.create(
        model="tool-model", max_tokens=8, extra_body=GREEDY, tools=TOOLS,
        messages=[question, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": [{"type": "text", "text": "Sunny, 21 C"}]}]}])
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in second.content)
    # the tool result reached the prompt: the conversation is longer than the question alone
    assert anthropic_prompt_tokens(second.usage) > anthropic_prompt_tokens(first.usage)


def test_tool_choice_none_answers_in_text(client):
    message = client.messages.create(model="tool-model", max_tokens=5, extra_body=GREEDY, tools=TOOLS,
                                     tool_choice={"type": "none"}, messages=[{"role": "user", "content": "hi"}])
    assert all(block.type == "text" for block in message.content) and message.stop_reason != "tool_use"


def test_count_tokens_equals_the_prompt_tokens(client):
    kwargs = dict(model="tool-model", system="Be brief.", tools=TOOLS,
                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    count = client.messages.count_tokens(**kwargs)
    message = client.messages.create(max_tokens=1, extra_body=GREEDY, **kwargs)
    assert count.input_tokens == anthropic_prompt_tokens(message.usage) > 0


def test_x_api_key(server):
    # Claude Code and older SDKs send the key as x-api-key (this SDK sends api_key as a Bearer token).
    client = anthropic.Anthropic(base_url=server.base_url, api_key=None, auth_token=None, max_retries=0, timeout=60,
                                 default_headers={"x-api-key": KEY})
    message = client.messages.create(model="stories260K", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert message.usage.output_tokens == 3


def test_errors_have_anthropics_shape(server, client):
    wrong = anthropic.Anthropic(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        wrong.messages.create(model="stories260K", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": err.value.body["error"]["message"]},
                              "request_id": err.value.request_id}  # (the key check's 401 carries it too)
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="no-such-model", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="stories260K", max_tokens=0, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.body["error"]["type"] == "invalid_request_error" and "max_tokens" in str(err.value)
    missing = raw_request(server.base_url, http_post("/v1/messages", {"model": "stories260K", "messages": [
        {"role": "user", "content": "Hi"}]}, headers={"Authorization": f"Bearer {KEY}"}))
    status, body = http_body(missing)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in json.loads(body)["error"]["message"]
    unknown = raw_request(server.base_url, http_post("/v1/messages/nope", {}, headers={"Authorization": f"Bearer {KEY}"}))
    status, body = http_body(unknown)
    rid = re.search(r"\r\nrequest-id: (\S+)\r\n", unknown.split(b"\r\n\r\n")[0].decode(), re.I).group(1)
    assert status == 404 and json.loads(body) == {"type": "error", "error": {"type": "not_found_error",
                                                                             "message": "Unknown route"},
                                                  "request_id": rid}
    # other routes keep OpenAI's shape
    status, body = http_body(raw_request(server.base_url, http_post("/v1/chat/completions", {})))
    assert status == 401 and "type" not in json.loads(body) and json.loads(body)["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("fields, said", [
    ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": ""}]}, "non-empty content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "must be non-empty"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " \n"}]}]},
     "non-whitespace"),
    ({"system": [{"type": "text", "text": ""}], "messages": [{"role": "user", "content": "Hi"}]}, "must be non-empty"),
])
def test_user_text_that_says_nothing_is_anthropics_400(client, fields, said):
    # Anthropic refuses these ("all messages must have non-empty content except for the optional final assistant
    # message", "text content blocks must be non-empty"): a prompt tried here is not refused first there
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="stories260K", max_tokens=3, **fields)
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "invalid_request_error"
    assert said in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):  # the token count reads the same prompt
        client.messages.count_tokens(model="stories260K", **fields)


def test_empty_system_string_and_assistant_turns_stay_accepted(client):
    # an empty system string is no block (Anthropic takes it); an assistant's empty or blank text is what a local
    # model may have answered, sent back with the history
    message = client.messages.create(model="stories260K", max_tokens=2, system="", messages=[
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": " "}]},
        {"role": "user", "content": "Again"}, {"role": "assistant", "content": ""}], extra_body=GREEDY)
    assert message.type == "message" and message.usage.output_tokens >= 1


PET = {"type": "object", "properties": {"pet": {"enum": ["cat", "dog"]}}, "required": ["pet"],
       "additionalProperties": False}


def test_output_config_format_gives_json_matching_the_schema(client):
    message = client.messages.create(model="stories260K", max_tokens=40, extra_body=GREEDY,
                                     output_config={"format": {"type": "json_schema", "schema": PET}},
                                     messages=[{"role": "user", "content": "A pet?"}])
    assert json.loads(message.content[0].text)["pet"] in ("cat", "dog")


@pytest.mark.skipif(not has_reasoning_parser(), reason="reasoning parsing (jan.templates.formats) is not in this build yet")
def test_thinking_with_a_budget_on_a_reasoning_template(tmp_path_factory, server):
    # A separate server: the reasoning model is only needed here.
    tmp = tmp_path_factory.mktemp("thinking")
    srv = start_server(tmp, [reasoning_model(tmp)], api_key=KEY, n_ctx=2048)
    try:
        client = anthropic.Anthropic(base_url=srv.base_url, auth_token=KEY, api_key=None, max_retries=0, timeout=240)
        # Anthropic's least budget is 1024, and less than max_tokens, except with interleaved thinking (its budget
        # spans a tool loop's turns): here max_tokens cuts the thinking off first
        interleaved = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
        kwargs = dict(model="qwq-tiny", max_tokens=24, extra_body=GREEDY, extra_headers=interleaved,
                      thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": "Hi"}])
        message = client.messages.create(**kwargs)
        assert [block.type for block in message.content][:1] == ["thinking"]
        assert message.content[0].thinking and message.content[0].signature  # signed, as Anthropic's
        with client.messages.stream(**kwargs) as stream:
            final = stream.get_final_message()
        assert [b.type for b in final.content] == [b.type for b in message.content]
        assert final.content[0].thinking == message.content[0].thinking
        assert final.content[0].signature == message.content[0].signature
        kwargs.pop("extra_headers")
        raw = raw_request(srv.base_url, http_post("/v1/messages", {**kwargs.pop("extra_body"), **kwargs, "stream": True},
                                                  headers={"Authorization": f"Bearer {KEY}", **interleaved}))
        events = named_events(http_body(raw)[1])
        shapes = collapse([(n, (d.get("content_block") or d.get("delta") or {}).get("type")) for n, d in events])
        assert shapes[:6] == [("message_start", None), ("ping", None), ("content_block_start", "thinking"),
                              ("content_block_delta", "thinking_delta"), ("content_block_delta", "signature_delta"),
                              ("content_block_stop", None)]
        # thinking with a call tool_choice forces is Anthropic's 400 (tests/test_anthropic_refusals.py)
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="qwq-tiny", max_tokens=1200, extra_body=GREEDY, tools=TOOLS,
                                   tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                   thinking={"type": "enabled", "budget_tokens": 1024},
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    finally:
        srv.stop()


def test_image_blocks_reach_the_chat_path(client):
    # stories260K has no vision: the chat path refuses the image part, in Anthropic's error shape
    image = base64.b64encode((models_dir().parent / "media" / "test-1.jpeg").read_bytes()).decode()
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="stories260K", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": image}},
            {"type": "text", "text": "What is this?"}]}])
    assert err.value.body["error"]["type"] == "invalid_request_error" and "image" in err.value.body["error"]["message"]


def test_request_fields_anthropic_clients_send_are_honoured_or_refused(client):
    """Fields a real client sends: the structured-outputs beta's ``output_format`` works as
    ``output_config.format``; every documented ``effort`` level is taken (``xhigh``/``max`` as the most a
    local template offers); plain-text ``document`` blocks are read (in a turn and in a tool result; PDFs too:
    tests/test_documents.py); what jan cannot do is a 400 in Anthropic's shape, never dropped: an ``mcp_servers``
    URL that ``--allow-media-from`` does not allow (tests/test_anthropic_mcp.py), a damaged PDF document; and
    what Anthropic refuses is refused: ``tool_choice`` any/tool without tools. (An empty turn stays empty text,
    as on every dialect: tests/test_prefill.py.)"""
    ask = [{"role": "user", "content": "A pet?"}]
    message = client.messages.create(model="stories260K", max_tokens=40, messages=ask, extra_body={
        **GREEDY, "output_format": {"type": "json_schema", "schema": PET}})
    assert json.loads(message.content[0].text)["pet"] in ("cat", "dog")
    for effort in ("low", "medium", "high", "xhigh", "max"):
        assert client.messages.create(model="stories260K", max_tokens=2, messages=ask,
                                      extra_body={"output_config": {"effort": effort}}).content is not None
    secret = "The lighthouse keeper's cat is called Moss."
    doc = {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": secret}}
    counted = client.messages.count_tokens(model="stories260K", messages=[
        {"role": "user", "content": [doc, {"type": "text", "text": "What is the cat called?"}]}]).input_tokens
    plain = client.messages.count_tokens(model="stories260K", messages=[
        {"role": "user", "content": "What is the cat called?"}]).input_tokens
    assert counted > plain + 8  # the document's text reached the prompt
    content_doc = {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": secret}]}}
    assert client.messages.count_tokens(model="stories260K", messages=[
        {"role": "user", "content": [content_doc]}]).input_tokens > 8
    refused = [
        {"mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "ex"}]},
        {"output_config": {"effort": "extreme"}},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]},
        {"tool_choice": {"type": "any"}},
        {"output_format": {"type": "json_schema", "schema": PET},
         "output_config": {"format": {"type": "json_schema", "schema": PET}}},
    ]
    for extra in refused:
        messages = extra.pop("messages", ask)
        with pytest.raises(anthropic.BadRequestError) as err:  # (extra_body: fields this SDK has no argument for)
            client.messages.create(model="stories260K", max_tokens=2, messages=messages, extra_body=extra)
        assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "invalid_request_error", extra
