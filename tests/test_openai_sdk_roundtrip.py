"""What the official ``openai`` SDK sends, on ``POST /v1/chat/completions``: every message param type with every
field it has (null or a real value), the SDK's own reply objects given back as history (``model_dump()`` in its
styles, the object itself, a stream helper's accumulated message), and the deprecated ``functions`` answered in
their own shape (``message.function_call``, ``delta.function_call``, finish_reason ``function_call``).

A real server with a tiny random-weight model and Qwen3's real chat template (Hermes ``<tool_call>`` tools):
``/v1/apply-template`` shows what reached the template; calls are forced with ``tool_choice``/``function_call``
and an enum-only argument, so a finished call is short whatever the weights say.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from dialect_helpers import openai_client
from jan.testing.gguf_models import write_qwen3_tool_model
from server_helpers import start_server

MODEL = "qwen3-tiny"
ASK = {"role": "user", "content": "Weather in Paris?"}
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
                          "required": ["city"], "additionalProperties": False}}
TOOLS = [{"type": "function", "function": WEATHER}]
# a forced call, one only, with room to finish it (a random model's blanks between JSON tokens are bounded)
FORCED = {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
          "parallel_tool_calls": False, "max_tokens": 300, "temperature": 0}
LEGACY = {"functions": [WEATHER], "function_call": {"name": "get_weather"}, "max_tokens": 300, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdk-roundtrip")
    srv = start_server(tmp, [write_qwen3_tool_model(tmp / f"{MODEL}.gguf")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server, timeout=300)


def rendered(server, messages: list, **extra) -> str:
    """The prompt ``messages`` render to (the body as the SDK would send it)."""
    reply = httpx.post(server.base_url + "/v1/apply-template",
                       json={"model": MODEL, "messages": messages, **extra}, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()["prompt"]


def refused(client, messages: list, **extra) -> dict:
    """The 400 the SDK gets for ``messages``: its error object."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1, **extra)
    assert caught.value.status_code == 400
    return caught.value.body


@pytest.fixture(scope="module")
def text_reply(client):
    return client.chat.completions.create(model=MODEL, messages=[ASK], max_tokens=3).choices[0].message


@pytest.fixture(scope="module")
def tool_reply(client):
    choice = client.chat.completions.create(model=MODEL, messages=[ASK], **FORCED).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice
    return choice.message


@pytest.fixture(scope="module")
def streamed_tool_reply(client):
    """The message the SDK's stream helper accumulates (``parsed``, ``parsed_arguments``, each call's ``index``)."""
    with client.chat.completions.stream(model=MODEL, messages=[ASK], **FORCED) as stream:
        completion = stream.get_final_completion()
    assert completion.choices[0].finish_reason == "tool_calls", completion
    return completion.choices[0].message


@pytest.fixture(scope="module")
def legacy_reply(client):
    choice = client.chat.completions.create(model=MODEL, messages=[ASK], **LEGACY).choices[0]
    assert choice.finish_reason == "function_call", choice
    return choice.message


def _results(message) -> list[dict]:
    return [{"role": "tool", "tool_call_id": call.id, "content": "sunny"} for call in message.tool_calls or ()]


# -- the SDK's reply objects, given back -------------------------------------------------------------------
DUMPS = {"model_dump": lambda m: m.model_dump(), "exclude_none": lambda m: m.model_dump(exclude_none=True),
         "exclude_unset": lambda m: m.model_dump(exclude_unset=True), "json": lambda m: m.model_dump(mode="json"),
         "exclude_none=False": lambda m: m.model_dump(exclude_none=False), "the object": lambda m: m}


@pytest.mark.parametrize("dump", DUMPS.values(), ids=DUMPS.keys())
@pytest.mark.parametrize("reply", ["text_reply", "tool_reply", "streamed_tool_reply"])
def test_a_reply_given_back_as_the_sdk_gives_it_is_accepted(request, client, reply, dump):
    message = request.getfixturevalue(reply)
    history = [ASK, dump(message), *_results(message), {"role": "user", "content": "And tomorrow?"}]
    answer = client.chat.completions.create(model=MODEL, messages=history, max_tokens=2)
    assert answer.choices[0].message.role == "assistant"


@pytest.mark.parametrize("reply", ["tool_reply", "streamed_tool_reply"])
def test_a_tool_call_given_back_reaches_the_template_as_a_call_and_its_result(request, server, reply):
    message = request.getfixturevalue(reply)
    call = message.tool_calls[0]
    prompt = rendered(server, [ASK, message.model_dump(), *_results(message)], tools=TOOLS)
    assert "<tool_call>" in prompt and '"get_weather"' in prompt and "Paris" in prompt, prompt
    assert "<tool_response>\nsunny\n</tool_response>" in prompt, prompt
    assert call.function.arguments.strip().startswith("{")


# -- every message param type and field ----------------------------------------------------------------------
BREAKPOINT = {"mode": "explicit", "ttl": "30m"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
EVERY_FIELD = {
    "system": [{"role": "system", "content": [{"type": "text", "text": "Be brief.",
                                                "prompt_cache_breakpoint": BREAKPOINT}], "name": "ops"}, ASK],
    "developer": [{"role": "developer", "content": "Be brief.", "name": "ops"}, ASK],
    "user": [{"role": "user", "name": "ana", "content": [{"type": "text", "text": "Weather in Paris?",
                                                          "prompt_cache_breakpoint": None}]}],
    "assistant, nulls": [ASK, {"role": "assistant", "content": "It is sunny.", "refusal": None, "audio": None,
                               "function_call": None, "tool_calls": None, "name": "bot", "annotations": None},
                         {"role": "user", "content": "Thanks"}],
    "assistant, calls": [ASK, {"role": "assistant", "content": None, "tool_calls": [CALL], "audio": None,
                               "function_call": None, "refusal": None},
                         {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]}],
    "assistant, annotations": [ASK, {"role": "assistant", "content": "See the forecast.", "annotations": [
        {"type": "url_citation", "url_citation": {"start_index": 4, "end_index": 12, "title": "Forecast",
                                                  "url": "https://example.com"}}]}, {"role": "user", "content": "Ok"}],
    "function": [ASK, {"role": "assistant", "content": None, "function_call": CALL["function"]},
                 {"role": "function", "name": "get_weather", "content": None}],
}


@pytest.mark.parametrize("messages", EVERY_FIELD.values(), ids=EVERY_FIELD.keys())
def test_every_message_param_field_the_sdk_has_is_accepted(client, messages):
    extra = {"tools": TOOLS} if any(m.get("tool_calls") or m.get("function_call") for m in messages) else {}
    answer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, **extra)
    assert answer.choices[0].message.role == "assistant"


@pytest.mark.parametrize("assistant", [
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot say."}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Hmm."}, {"type": "refusal", "refusal": "I cannot say."}]},
    {"role": "assistant", "content": None, "refusal": "I cannot say."},
], ids=["refusal part", "text and refusal parts", "refusal field"])
def test_a_refusal_is_text_the_assistant_said(server, assistant):
    prompt = rendered(server, [ASK, assistant, {"role": "user", "content": "Why?"}])
    assert "I cannot say." in prompt.split("Weather in Paris?", 1)[1].split("Why?")[0], prompt


def test_a_legacy_history_reaches_the_template_as_a_call_and_its_result(server):
    history = [ASK, {"role": "assistant", "content": None, "function_call": CALL["function"]},
               {"role": "function", "name": "get_weather", "content": "sunny"},
               {"role": "assistant", "content": None, "function_call": CALL["function"]},
               {"role": "function", "name": "get_weather", "content": None}]  # (twice: each answers its own)
    prompt = rendered(server, history, functions=[WEATHER])
    # (the system turn's tool instructions mention <tool_call> too: the calls are counted by their JSON)
    assert prompt.count('{"name": "get_weather", "arguments"') == 2 and prompt.count("</tool_response>") == 2, prompt
    assert "<tool_response>\nsunny\n</tool_response>" in prompt and '"Paris"' in prompt, prompt


# -- what has no meaning here: a 400 that says why, naming the field -----------------------------------------
REFUSED = {
    "audio by id": ([ASK, {"role": "assistant", "content": "Hi", "audio": {"id": "audio_abc"}}], "messages[1].audio",
                    "audio_abc"),
    "refusal part from a user": ([{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}],
                                 "messages[0].content", "assistant"),
    "refusal field on a user": ([{"role": "user", "content": "Hi", "refusal": "no"}], "messages[0].refusal",
                                "assistant"),
    # (file parts are read: tests/test_documents.py; one naming no upload is refused)
    "file part of no upload": ([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
                               "messages[0].content[0].file.file_id", "no file"),
    "custom tool call": ([ASK, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "custom", "custom": {"name": "grep", "input": "x"}}]}], "messages[1].tool_calls[0]",
        "not supported"),
    "function_call and tool_calls": ([ASK, {"role": "assistant", "tool_calls": [CALL],
                                            "function_call": CALL["function"]}], "messages[1].function_call", "both"),
    "function message without a name": ([ASK, {"role": "assistant", "function_call": CALL["function"]},
                                         {"role": "function", "content": "sunny"}], "messages[2].name", "names"),
    "function_call that is no object": ([ASK, {"role": "assistant", "function_call": "get_weather"}],
                                        "messages[1].function_call", "object"),
}


@pytest.mark.parametrize("messages,param,said", REFUSED.values(), ids=REFUSED.keys())
def test_what_jan_cannot_mean_is_a_400_naming_the_field(client, messages, param, said):
    error = refused(client, messages)
    assert error["param"] == param and said in error["message"], error


def test_request_fields_of_the_sdk_are_accepted_or_refused_by_name(client):
    answer = client.chat.completions.create(model=MODEL, messages=[ASK], max_tokens=1,
                                            prompt_cache_options={"mode": "implicit"}, moderation=None)
    assert answer.choices
    error = refused(client, [ASK], moderation={"model": "omni-moderation-latest"})
    assert error["param"] == "moderation" and "not supported" in error["message"], error


# -- the deprecated functions, answered in their own shape ---------------------------------------------------
def test_functions_are_answered_with_a_function_call(legacy_reply):
    assert legacy_reply.tool_calls is None and legacy_reply.function_call.name == "get_weather"
    assert json.loads(legacy_reply.function_call.arguments) == {"city": "Paris"}


def test_functions_streamed_are_function_call_pieces(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=[ASK], stream=True, **LEGACY))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.tool_calls for d in deltas)
    pieces = [d.function_call for d in deltas if d.function_call is not None]
    assert pieces[0].name == "get_weather" and all(p.name is None for p in pieces[1:]), pieces
    assert json.loads("".join(p.arguments or "" for p in pieces)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["function_call"]


def test_the_stream_helper_accumulates_a_function_call(client):
    with client.chat.completions.stream(model=MODEL, messages=[ASK], **LEGACY) as stream:
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call.name == "get_weather", choice
    assert json.loads(choice.message.function_call.arguments) == {"city": "Paris"}


def test_a_function_call_given_back_with_its_result_is_accepted(client, server, legacy_reply):
    result = {"role": "function", "name": "get_weather", "content": "sunny"}
    answer = client.chat.completions.create(model=MODEL, messages=[ASK, legacy_reply.model_dump(), result],
                                            functions=[WEATHER], max_tokens=2)
    assert answer.choices[0].message.role == "assistant"
    prompt = rendered(server, [ASK, legacy_reply.model_dump(), result], functions=[WEATHER])
    assert "<tool_response>\nsunny\n</tool_response>" in prompt, prompt


@pytest.mark.parametrize("stream", [False, True])
def test_functions_with_function_call_none_call_nothing(client, stream):
    body = {**LEGACY, "function_call": "none", "max_tokens": 3}
    if stream:
        chunks = list(client.chat.completions.create(model=MODEL, messages=[ASK], stream=True, **body))
        assert not any(c.choices[0].delta.function_call or c.choices[0].delta.tool_calls for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        choice = client.chat.completions.create(model=MODEL, messages=[ASK], **body).choices[0]
        assert choice.message.function_call is None and choice.message.tool_calls is None
        finishes = [choice.finish_reason]
    assert finishes == ["length"] or finishes == ["stop"], finishes


def test_tools_are_still_answered_with_tool_calls(tool_reply):
    assert tool_reply.function_call is None and tool_reply.tool_calls[0].function.name == "get_weather"
