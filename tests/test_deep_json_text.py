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


def test_a_model_writing_too_deep_arguments_ends_its_turn_in_no_format(tmp_path):
    # what a model writes is parsed by its template's format: arguments a thousand '[' deep (a model that loops on
    # one token) were a RecursionError out of the stream, in every format whose calls hold JSON
    from chat_format_cases import TEMPLATES, TOOLS
    from jan.templates.formats import detect_format, parse_output

    if not TEMPLATES.is_dir():
        pytest.skip("no ../shared/templates")
    deep = "[" * 5000
    bodies = (f'{{"name": "get_weather", "arguments": {{"a": {deep}}}}}', f'{{"name": "get_weather", "arguments": {deep}')
    markers = ("", "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function=get_weather>", "functools",
               "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>",
               "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>")
    formats = {}
    for path in sorted(TEMPLATES.glob("*.jinja")):
        fmt = detect_format(path.read_text(encoding="utf-8"))
        formats.setdefault(repr(fmt), fmt)
    assert formats
    for fmt in formats.values():
        for marker in markers:
            for body in bodies:
                parse_output(marker + body, fmt, TOOLS)  # whatever it makes of it: no RecursionError
