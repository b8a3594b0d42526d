"""Anthropic Messages: consecutive messages of one role are one turn, and a prompt too long for the context is
refused in Anthropic's words.

Anthropic's API reference: "Consecutive ``user`` or ``assistant`` turns in your request will be combined into a
single turn". Sent to a chat template as two turns, a conversation Anthropic answers was refused by every template
that insists on user/assistant alternation (Mistral's, Gemma's, Llama 2's): so the strict model here has Mistral
Nemo's real template. A prompt longer than the context is Anthropic's "prompt is too long: N tokens > M maximum",
the words (and numbers) Claude Code and other agents read to compact a conversation and try again.
"""

from __future__ import annotations

import re

import anthropic
import pytest

from dialect_helpers import WEATHER_SCHEMA, anthropic_client
from jan.testing.gguf_models import write_strict_chat_model
from server_helpers import start_server

TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("anthropic-turns")
    srv = start_server(tmp, [stories_path, write_strict_chat_model(tmp / "strict.gguf")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic_client(server)


def _count(client, model: str, messages: list, **extra) -> int:
    return client.messages.count_tokens(model=model, messages=messages, **extra).input_tokens


def _text(*texts: str) -> list[dict]:
    return [{"type": "text", "text": text} for text in texts]


@pytest.mark.parametrize("split, whole", [
    # two user messages in a row: one turn of both texts
    ([{"role": "user", "content": "Tell me"}, {"role": "user", "content": "a story"}],
     [{"role": "user", "content": _text("Tell me", "a story")}]),
    # two assistant messages in a row, then the user: one assistant turn
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
      {"role": "assistant", "content": _text("How are you?")}, {"role": "user", "content": "Fine"}],
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _text("Hello.", "How are you?")},
      {"role": "user", "content": "Fine"}]),
    # a prefill sent in two assistant messages: the answer continues both
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Once"},
      {"role": "assistant", "content": "upon"}],
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _text("Once", "upon")}]),
], ids=["user-user", "assistant-assistant", "prefill"])
def test_consecutive_messages_of_one_role_are_one_turn(client, split, whole):
    for model in ("strict", "stories260K"):
        assert _count(client, model, split) == _count(client, model, whole), model
    # the strict template answers it (it refused the two turns: "conversation roles must alternate")
    split_answer = client.messages.create(model="strict", max_tokens=4, messages=split, extra_body=GREEDY)
    whole_answer = client.messages.create(model="strict", max_tokens=4, messages=whole, extra_body=GREEDY)
    assert split_answer.content == whole_answer.content
    assert split_answer.usage.input_tokens + split_answer.usage.cache_read_input_tokens == \
        whole_answer.usage.input_tokens + whole_answer.usage.cache_read_input_tokens


def test_tool_rounds_and_system_messages_are_not_joined(client):
    """A tool result stays a message of its own wherever it stands in the joined turn; a system-role message
    between two user messages is a turn between them."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}
    split = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": _text("Let me look.")},
             {"role": "assistant", "content": [call]}, {"role": "user", "content": [result]},
             {"role": "user", "content": "Thanks"}]
    whole = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": [*_text("Let me look."), call]},
             {"role": "user", "content": [result, *_text("Thanks")]}]
    assert _count(client, "stories260K", split, tools=TOOLS) == _count(client, "stories260K", whole, tools=TOOLS)
    # (the same conversation with the two user turns apart is longer: they were joined above)
    apart = [{"role": "user", "content": "A"}, {"role": "system", "content": "Be brief."},
             {"role": "user", "content": "B"}]
    together = [{"role": "user", "content": "A"}, {"role": "user", "content": "B"}]
    assert _count(client, "stories260K", apart) > _count(client, "stories260K", together)


def test_errors_name_the_message_of_the_joined_turn_at_fault(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg=="}}
    with pytest.raises(anthropic.BadRequestError) as err:  # stories260K has no projector
        client.messages.create(model="stories260K", max_tokens=4, messages=[
            {"role": "user", "content": "Look"}, {"role": "user", "content": [*_text("at this"), image]}])
    assert err.value.body["error"]["message"].startswith("messages[1].content: "), err.value.body
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    with pytest.raises(anthropic.BadRequestError) as err:  # the call's id again, in the next assistant message
        client.messages.create(model="stories260K", max_tokens=4, tools=TOOLS, messages=[
            {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": [call]},
            {"role": "assistant", "content": [*_text("And again."), call]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]}])
    assert err.value.body["error"]["message"].startswith("messages.2.content.1: `tool_use` ids must be unique")
    with pytest.raises(anthropic.BadRequestError) as err:  # a call no result answers, in the turn's second message
        client.messages.create(model="stories260K", max_tokens=4, tools=TOOLS, messages=[
            {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Let me look."},
            {"role": "assistant", "content": [call]}, {"role": "user", "content": "Well?"}])
    assert err.value.body["error"]["message"].startswith("messages.2: `tool_use` ids were found without")


#: What Claude Code matches in a 400 to compact the conversation (its numbers: the prompt's size, the maximum).
TOO_LONG = re.compile(r"^prompt is too long: (\d+) tokens > (\d+) maximum")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_prompt_too_long_is_anthropics_prompt_is_too_long(client, server, stream):
    messages = [{"role": "user", "content": "Once upon a time " * 300}]
    size = _count(client, "stories260K", messages)
    with pytest.raises(anthropic.BadRequestError) as err:
        if stream:
            with client.messages.stream(model="stories260K", max_tokens=4, messages=messages) as events:
                list(events)
        else:
            client.messages.create(model="stories260K", max_tokens=4, messages=messages)
    body = err.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    match = TOO_LONG.match(body["error"]["message"])
    assert match, body
    assert int(match.group(1)) == size > int(match.group(2)) == 511  # the context (512) less one to answer
    assert "the context holds 512" in body["error"]["message"]  # jan's own words follow
