"""JSON text nested deeper than the parser can follow (a thousand ``[``) in what a client or a model gives (a tool
call's arguments in the history, a model's tool call) is "not JSON" like any other: the prompt is made and the
answer given, never a ``RecursionError`` (a 500 from the chat template's normalizing of the history)."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, running
from jan.core.tools import parse_arguments
from jan.json_text import loads_json
from jan.services.tool_loop import whole_arguments
from jan.templates.chat import normalize_messages
from jan.templates.tool_calls import parse_tool_calls

pytestmark = pytest.mark.timeout(300)

DEEP = "[" * 100_000
DEEP_IN_OBJECT = '{"a": ' + DEEP


def test_loads_json_says_too_deep_as_a_decode_error():
    for text in (DEEP, DEEP_IN_OBJECT, DEEP.encode()):
        with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
            loads_json(text)
    assert loads_json('{"a": [1]}') == {"a": [1]}


def test_the_parsers_of_arguments_take_it_as_not_json():
    for text in (DEEP, DEEP_IN_OBJECT):
        with pytest.raises(ValueError):
            parse_arguments(text)
        assert whole_arguments(text) is False
        calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": text}}]
        messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": calls}]
        out = normalize_messages(messages, object_arguments=True)
        assert out[1]["tool_calls"][0]["function"]["arguments"] == text  # left as the text it is
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        for output in (f'<tool_call>{{"name": "f", "arguments": {text}</tool_call>',
                       f'<tool_call>{{"name": "f", "arguments": {text}', f'[{{"name": "f", "arguments": {text}]'):
            parse_tool_calls(output, tools)  # whatever it makes of it: no RecursionError


def answered(status: int, body: dict) -> None:
    """Answered as any long history is: a reply, or the context's 400 (the tokens of a thousand ``[``)."""
    assert status == 200 or (status == 400 and body["error"]["code"] == "context_length_exceeded"), body


async def test_a_history_with_too_deep_arguments_is_answered(tmp_path, stories_path):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with running(tmp_path / "data", stories_path) as srv:
        async with Client(srv.base_url) as api:
            for args in (DEEP, DEEP_IN_OBJECT):
                calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]
                messages = [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": None, "tool_calls": calls},
                            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
                status, body = await api.call("POST", "/v1/chat/completions", {
                    "model": "stories260K", "messages": messages, "tools": tools, "max_tokens": 2})
                answered(status, body)
                status, body = await api.call("POST", "/v1/responses", {
                    "model": "stories260K", "max_output_tokens": 2,
                    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
                    "input": [{"type": "message", "role": "user", "content": "hi"},
                              {"type": "function_call", "call_id": "c1", "name": "f", "arguments": args},
                              {"type": "function_call_output", "call_id": "c1", "output": "ok"}]})
                answered(status, body)
