"""The Anthropic Messages and OpenAI Responses wire formats, from synthetic chat deltas (no model).

The exact event sequences here are the dialects' golden streams for a thinking + text answer
and for a tool call; tests/test_api_anthropic.py and tests/test_api_responses.py check the
same sequences from a real server.
"""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from jan.server.dialects import anthropic as am
from jan.server.dialects import responses as rs
from jan.server.dialects.responses_store import from_thread_message, to_thread_message
from jan.services.types import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    ChoiceResult,
    ImagePart,
    NamedToolChoice,
    ReasoningOptions,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()  # a PNG's magic bytes (Anthropic checks them)

THINK_THEN_TEXT = [ChatDelta(reasoning="Let me "), ChatDelta(reasoning="think."), ChatDelta(content="Hello"),
                   ChatDelta(content=" there"), ChatDelta(finish_reason="stop"),
                   ChatDelta(choice=-1, usage=Usage(prompt_tokens=7, completion_tokens=5))]
TOOL_CALL = [ChatDelta(tool_calls=(ToolCallDelta(0, "call_1", "get_weather", ""),)),
             ChatDelta(tool_calls=(ToolCallDelta(0, arguments='{"city": '),)),
             ChatDelta(tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),)),
             ChatDelta(finish_reason="tool_calls"), ChatDelta(choice=-1, usage=Usage(prompt_tokens=9, completion_tokens=8))]


def _anthropic_events(deltas):
    stream = am.MessageStream("msg_1", "m")
    events = stream.start()
    for delta in deltas:
        events += stream.feed(delta)
    return events + stream.finish()


def _shape(name, data):
    """An event without its text: name, block/delta types."""
    kind = (data.get("content_block") or data.get("delta") or {}).get("type")
    return (name, kind) if kind else (name,)


def test_anthropic_stream_thinking_then_text_golden():
    events = _anthropic_events(THINK_THEN_TEXT)
    assert [_shape(n, d) for n, d in events] == [
        ("message_start",), ("ping",),
        ("content_block_start", "thinking"), ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "thinking_delta"), ("content_block_delta", "signature_delta"), ("content_block_stop",),
        ("content_block_start", "text"), ("content_block_delta", "text_delta"), ("content_block_delta", "text_delta"),
        ("content_block_stop",), ("message_delta",), ("message_stop",)]
    assert all(d["type"] == n for n, d in events)
    start = events[0][1]["message"]
    assert start == {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
                     "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
    assert [d["index"] for n, d in events if n.startswith("content_block")] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[3][1]["delta"] == {"type": "thinking_delta", "thinking": "Let me "}
    # signed before the block closes, as Anthropic's always are: the signature a whole answer's block has
    assert events[5][1]["delta"] == {"type": "signature_delta", "signature": rs.encrypted_reasoning("Let me think.")}
    assert events[8][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5 and delta["usage"]["input_tokens"] == 7


def test_anthropic_stream_tool_call_golden():
    events = _anthropic_events(TOOL_CALL)
    assert [_shape(n, d) for n, d in events] == [
        ("message_start",), ("ping",), ("content_block_start", "tool_use"),
        ("content_block_delta", "input_json_delta"), ("content_block_delta", "input_json_delta"),
        ("content_block_stop",), ("message_delta",), ("message_stop",)]
    assert events[2][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta") == '{"city": "Paris"}'
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_stream_two_tool_calls_get_two_blocks_and_length_is_max_tokens():
    deltas = [ChatDelta(content="ok"), ChatDelta(tool_calls=(ToolCallDelta(0, "a", "f", "{}"),)),
              ChatDelta(tool_calls=(ToolCallDelta(1, "b", "g", "{}"),)), ChatDelta(finish_reason="length")]
    events = _anthropic_events(deltas)
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["text", "tool_use", "tool_use"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_anthropic_stop_sequence_is_one_of_the_requests():
    stream = am.MessageStream("msg_1", "m", stop_sequences=("END",))
    stream.feed(ChatDelta(content="a"))
    stream.feed(ChatDelta(finish_reason="stop", stop="END"))
    assert stream.finish()[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    eot = am.MessageStream("msg_2", "m", stop_sequences=("END",))
    eot.feed(ChatDelta(finish_reason="stop", stop="<|im_end|>"))  # the model's own end of turn
    assert eot.finish()[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_anthropic_message_object():
    message = ChatMessage("assistant", (TextPart("Hi"),), tool_calls=(ToolCall("c1", "f", '{"a": 1}'),),
                          reasoning="hmm")
    result = ChatResult("m", (ChoiceResult(message, "tool_calls"),), Usage(prompt_tokens=3, completion_tokens=4))
    body = am.message_from_result(result, "msg_x", "m")
    assert body["content"] == [{"type": "thinking", "thinking": "hmm", "signature": rs.encrypted_reasoning("hmm")},
                               {"type": "text", "text": "Hi"},
                               {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"]["input_tokens"] == 3 and body["usage"]["output_tokens"] == 4
    assert body["type"] == "message" and body["role"] == "assistant"


def test_anthropic_usage_counts_a_cached_prefix_once():
    # Anthropic's input_tokens are the prompt tokens not read from the cache: the prompt is the sum
    # input + cache_read + cache_creation (what Claude Code adds up as the context used).
    usage = Usage(prompt_tokens=42, completion_tokens=5, cached_tokens=41)
    result = ChatResult("m", (ChoiceResult(ChatMessage.of_text("assistant", "Hi"), "stop"),), usage)
    body = am.message_from_result(result, "msg_x", "m")["usage"]
    assert (body["input_tokens"], body["cache_read_input_tokens"], body["cache_creation_input_tokens"]) == (1, 41, 0)
    stream = am.MessageStream("msg_1", "m")
    stream.feed(ChatDelta(content="Hi"))
    stream.feed(ChatDelta(finish_reason="stop"))
    stream.feed(ChatDelta(choice=-1, usage=usage))
    final = stream.finish()[-2][1]["usage"]
    assert (final["input_tokens"], final["cache_read_input_tokens"], final["output_tokens"]) == (1, 41, 5)


def test_anthropic_request_mapping():
    body = am.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "metadata": {"user_id": "u"},
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        # (not a forced tool: with thinking on that is Anthropic's 400, tests/test_anthropic_refusals.py)
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": PNG}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                              {"type": "text", "text": "calling"},
                                              {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "42"},
                                         {"type": "text", "text": "and?"}]},
        ]})
    req = am.to_chat_request(body)
    assert req.model == "m"
    assert req.sampling.max_tokens == 50 and req.sampling.stop == ("END",) and req.sampling.top_k == 5
    assert req.reasoning == ReasoningOptions(enabled=True, budget_tokens=1024)
    assert req.tool_choice == "auto" and req.parallel_tool_calls is False
    assert req.tools[0].parameters == {"type": "object"}
    roles = [m.role for m in req.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    user = req.messages[1]
    assert user.content[0] == TextPart("look") and user.content[1] == ImagePart(b"\x89PNG\r\n\x1a\n fake", "image/png")
    assistant = req.messages[2]
    assert assistant.reasoning == "t" and assistant.text == "calling"
    assert assistant.tool_calls == (ToolCall("c1", "f", '{"x": 1}'),)
    assert req.messages[3].tool_call_id == "c1" and req.messages[3].text == "42"


def test_anthropic_output_config():
    body = am.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}})
    req = am.to_chat_request(body)
    assert req.response_format == ResponseFormat("json_schema", {"type": "object"})
    # an effort alone does not turn thinking on (Anthropic: thinking only when `thinking` asks for it)
    assert req.reasoning == ReasoningOptions(effort="low", enabled=False)


@pytest.mark.parametrize("choice, expected", [({"type": "auto"}, "auto"), ({"type": "any"}, "required"),
                                              ({"type": "none"}, "none")])
def test_anthropic_tool_choices(choice, expected):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]  # ("any" without tools is Anthropic's 400)
    body = am.MessagesRequest.model_validate({"model": "m", "max_tokens": 5, "tool_choice": choice, "tools": tools,
                                              "messages": [{"role": "user", "content": "x"}]})
    assert am.to_chat_request(body).tool_choice == expected


def test_anthropic_bad_requests():
    with pytest.raises(ValidationError):  # max_tokens is required, as Anthropic requires it
        am.MessagesRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ValidationError):
        am.MessagesRequest.model_validate({"model": "m", "max_tokens": 5,
                                           "messages": [{"role": "user", "content": [{"type": "video"}]}]})
    url_image = am.MessagesRequest.model_validate({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]})
    with pytest.raises(ValueError, match="base64"):
        am.to_chat_request(url_image)
    server_tool = am.MessagesRequest.model_validate({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    with pytest.raises(ValueError, match="web_search_20250305"):
        am.to_chat_request(server_tool)
    assert am.error_body(401, "no") == {"type": "error", "error": {"type": "authentication_error", "message": "no"}}
    assert am.error_type(404) == "not_found_error" and am.error_type(500) == "api_error"
    assert am.error_type(503) == "overloaded_error" and am.error_type(413) == "request_too_large"


def _responses_events(deltas):
    stream = rs.ResponseStream()
    events = []
    for delta in deltas:
        events += stream.feed(delta)
    return stream, events + stream.finish()


def test_responses_stream_reasoning_then_text_golden():
    stream, events = _responses_events(THINK_THEN_TEXT)
    assert [e["type"] for e in events] == [
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["output_index"] for e in events] == [0] * 7 + [1] * 7
    assert events[4]["text"] == "Let me think." and events[11]["text"] == "Hello there"
    reasoning, message = stream.output
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [{"type": "reasoning_text",
                                                                           "text": "Let me think."}]
    assert message["type"] == "message" and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}]
    assert events[-1]["item"] == message and events[7]["item"]["status"] == "in_progress"
    assert stream.status == "completed" and (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (7, 5)


def test_responses_stream_function_call_golden():
    stream, events = _responses_events(TOOL_CALL)
    assert [e["type"] for e in events] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done"]
    added = events[0]["item"]
    assert added["type"] == "function_call" and added["call_id"] == "call_1" and added["name"] == "get_weather"
    assert added["arguments"] == "" and added["status"] == "in_progress"
    assert events[3]["arguments"] == '{"city": "Paris"}'
    assert events[-1]["item"]["arguments"] == '{"city": "Paris"}' and events[-1]["item"]["status"] == "completed"
    assert rs.output_message(stream.output).tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)


def test_responses_stream_without_output_still_has_a_message_and_length_is_incomplete():
    stream, events = _responses_events([ChatDelta(finish_reason="length")])
    assert [e["type"] for e in events][0] == "response.output_item.added"
    assert stream.output[0]["type"] == "message" and stream.status == "incomplete"


def test_responses_input_items_to_messages():
    body = rs.ResponsesRequest.model_validate({
        "model": "m", "instructions": "Be brief.", "max_output_tokens": 20,
        "reasoning": {"effort": "low"}, "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"},
        "input": [
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "r"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ]})
    inputs = rs.input_messages(body.input)
    req = rs.to_chat_request(body, [ChatMessage.of_text("user", "before")], inputs)
    assert [m.role for m in req.messages] == ["system", "user", "user", "system", "user", "assistant", "tool", "tool"]
    assert req.messages[0].text == "Be brief." and req.messages[1].text == "before"
    assert req.messages[4].content[1] == ImagePart(b"\x89PNG\r\n\x1a\n fake", "image/png")
    assistant = req.messages[5]
    assert assistant.text == "calling" and assistant.reasoning == "r"
    assert [c.id for c in assistant.tool_calls] == ["c1", "c2"]
    assert req.messages[7].tool_call_id == "c2" and req.messages[7].text == "two"
    assert req.sampling.max_tokens == 20 and req.reasoning == ReasoningOptions(effort="low")
    assert req.response_format == ResponseFormat("json_schema", {"type": "object"}, "x", True)
    assert req.tool_choice == NamedToolChoice("f") and req.parallel_tool_calls is False
    items = rs.input_items(body.input)
    assert len(items) == 9 and all(item["id"] for item in items)
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}] and items[0]["type"] == "message"
    assert items[3]["id"] == "rs_1"


def test_responses_bad_input():
    with pytest.raises(ValueError, match=r"input\[0\].content\[0\].image_url: only base64 data URLs"):
        rs.input_messages(rs.ResponsesRequest.model_validate({"input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}).input)
    with pytest.raises(ValidationError):
        rs.ResponsesRequest.model_validate({"input": [{"type": "file_search_call", "id": "x"}]})
    with pytest.raises(ValidationError):
        rs.ResponsesRequest.model_validate({"input": "x", "tools": [{"type": "local_shell"}]})
    assert rs.valid_response_id("resp_abc123") and not rs.valid_response_id("resp_../../etc")


def test_responses_calls_join_their_turn_once_however_many(monkeypatch):
    """Consecutive ``function_call`` items join the assistant turn before them: the turn was rebuilt, and its calls
    checked, at each call (n^2/2 calls checked for n: 10,000 items, a 1 MB body, took seconds of the server's time,
    20,000 half a minute). Now once; the turn, its thinking and its items' indices are as before."""
    n = 2000
    checked = {"calls": 0}
    post_init = ChatMessage.__post_init__

    def counted(self):
        checked["calls"] += len(self.tool_calls)
        post_init(self)

    monkeypatch.setattr(ChatMessage, "__post_init__", counted)
    body = rs.ResponsesRequest.model_validate({"input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "r"}]},
        *({"type": "function_call", "call_id": f"c{i}", "name": "f", "arguments": "{}"} for i in range(n)),
        *({"type": "function_call_output", "call_id": f"c{i}", "output": "x"} for i in range(n))]})
    messages = rs.input_messages(body.input)
    assert checked["calls"] <= 2 * n, checked
    assert [m.role for m in messages[:3]] == ["user", "assistant", "tool"] and len(messages) == 2 + n
    assert [c.id for c in messages[1].tool_calls] == [f"c{i}" for i in range(n)]
    assert messages[1].text == "calling" and messages[1].reasoning == "r"
    assert rs.input_sources(body.input)[1] == list(range(1, 3 + n))
    # thinking between the calls (jan streams a turn's thinking before each call as an item of its own)
    checked["calls"] = 0
    body = rs.ResponsesRequest.model_validate({"input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        *(item for i in range(n) for item in (
            {"type": "reasoning", "id": f"rs_{i}", "summary": [],
             "content": [{"type": "reasoning_text", "text": f"r{i}"}]},
            {"type": "function_call", "call_id": f"c{i}", "name": "f", "arguments": "{}"})),
        *({"type": "function_call_output", "call_id": f"c{i}", "output": "x"} for i in range(n))]})
    messages = rs.input_messages(body.input)
    assert checked["calls"] <= 2 * n, checked
    assert len(messages[1].tool_calls) == n and messages[1].reasoning == "\n\n".join(f"r{i}" for i in range(n))
    assert rs.input_sources(body.input)[1] == list(range(1, 2 + 2 * n))



def test_responses_reasoning_items_are_joined_once_however_many(monkeypatch):
    """Reasoning items before a turn are all its thinking: each was joined to the thinking so far, the text copied
    at each (40,000 items, a 3 MB body, took seconds). Now the run of them is joined once, to the same text."""
    from jan.server.dialects import responses as module

    joined = {"chars": 0}
    real = module.joined_thoughts

    def counted(pieces):
        pieces = list(pieces)
        joined["chars"] += sum(len(p) for p in pieces if p)
        return real(pieces)

    monkeypatch.setattr(module, "joined_thoughts", counted)
    n = 2000
    body = rs.ResponsesRequest.model_validate({"input": [
        {"type": "message", "role": "user", "content": "hi"},
        *({"type": "reasoning", "id": f"rs_{i}", "summary": [{"type": "summary_text", "text": f" r{i} "}]}
          for i in range(n)),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]})
    messages = rs.input_messages(body.input)
    assert joined["chars"] <= 3 * len(" r0 ") * n * 2, joined  # (each item's text joined a bounded number of times)
    assert messages[1].reasoning == " r0\n\n" + "\n\n".join(f"r{i}" for i in range(1, n - 1)) + f"\n\nr{n - 1} "
    assert rs.input_sources(body.input)[1] == list(range(1, n + 2))


def test_thread_messages_round_trip():
    turns = [ChatMessage("user", (TextPart("look"), ImagePart(b"img", "image/png"))),
             ChatMessage("assistant", (), tool_calls=(ToolCall("c1", "f", "{}"),), reasoning="why"),
             ChatMessage("tool", (TextPart("42"),), tool_call_id="c1"),
             ChatMessage.of_text("assistant", "done")]
    stored = [to_thread_message(t, "resp_1") for t in turns]
    assert stored[1]["metadata"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert stored[1]["content"] == [{"type": "reasoning", "text": "why"}]  # thinking: a part, as runs save it
    assert all(m["metadata"]["response_id"] == "resp_1" for m in stored)
    # what the store gives back: text and reasoning parts as {"value", "annotations"}
    for m in stored:
        for part in m["content"]:
            if part["type"] in ("text", "reasoning"):
                part["text"] = {"value": part["text"], "annotations": []}
    assert [from_thread_message(m) for m in stored] == turns
    # a thread written before thinking was a part: metadata.reasoning_content still reads
    assert from_thread_message({"role": "assistant", "content": [], "metadata": {
        "reasoning_content": "old", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}).reasoning == "old"
    assert from_thread_message({"role": "assistant", "status": "pending", "content": []}) is None
