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
from api_helpers import post_json
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
    assert err.value.body["error"]["message"].startswith("messages.1.content: "), err.value.body
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


_CALL = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
_OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
#: A tool round with the user speaking right after its result, in each dialect (Anthropic's: the result and the
#: text in one user turn, as Claude Code sends every turn).
USER_AFTER_TOOLS = {
    "/v1/messages": {"max_tokens": 2, "tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                                     {"type": "text", "text": "And tomorrow?"}]}]},
    "/v1/chat/completions": {"max_tokens": 2, "tools": _OPENAI_TOOLS, "messages": [
        {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [_CALL]},
        {"role": "tool", "tool_call_id": "call12345", "content": "Sunny"}, {"role": "user", "content": "And tomorrow?"}]},
    "/v1/responses": {"max_output_tokens": 16, "store": False, "tools": [
        {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}], "input": [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "call12345", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call12345", "output": "Sunny"},
        {"role": "user", "content": "And tomorrow?"}]},
    "/api/chat": {"stream": False, "options": {"num_predict": 2}, "tools": _OPENAI_TOOLS, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "Sunny"}, {"role": "user", "content": "And tomorrow?"}]},
}


@pytest.mark.parametrize("path", list(USER_AFTER_TOOLS))
def test_a_user_turn_right_after_tool_results_is_answered_by_a_strict_template(server, path):
    """Mistral's templates leave tool rounds out of their alternation check, so a user turn right after tool
    results read as a second user turn in a row: a 400 in every dialect. The template is given an empty reply
    between (it renders one there), as a run's history is."""
    status, answer = post_json(server.base_url, path, {"model": "strict", **USER_AFTER_TOOLS[path]})
    assert status == 200, answer


def test_the_empty_reply_goes_only_where_the_template_asks_for_one():
    from jan.templates.chat import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    messages = [USER_AFTER_TOOLS["/v1/chat/completions"]["messages"][i] for i in range(4)]
    for name, closes in (("mistralai-Mistral-Nemo-Instruct-2407.jinja", True),
                         ("Mistral-Small-3.2-24B-Instruct-2506.jinja", True),
                         ("unsloth-mistral-Devstral-Small-2507.jinja", False),  # (renders the turn as it is)
                         ("Qwen-Qwen3-0.6B.jinja", False), ("meta-llama-Llama-3.1-8B-Instruct.jinja", False)):
        template = ChatTemplate((templates_dir() / name).read_text(encoding="utf-8"), "<s>", "</s>")
        assert template.reply_after_tools is closes, name
        prompt = template.render(messages, tools=_OPENAI_TOOLS)
        assert "And tomorrow?" in prompt and "Sunny" in prompt, name


#: Two user messages in a row, in each dialect whose reference API answers them (Ollama joins them with a blank
#: line; OpenAI's takes them as they are).
TWO_USER_TURNS = {
    "/v1/chat/completions": {"max_tokens": 2, "messages": [{"role": "user", "content": "Context: a cat."},
                                                           {"role": "user", "content": "What is it?"}]},
    "/v1/responses": {"max_output_tokens": 16, "store": False, "input": [
        {"role": "user", "content": "Context: a cat."}, {"role": "user", "content": "What is it?"}]},
    "/api/chat": {"stream": False, "options": {"num_predict": 2}, "messages": [
        {"role": "user", "content": "Context: a cat."}, {"role": "user", "content": "What is it?"}]},
}


@pytest.mark.parametrize("path", list(TWO_USER_TURNS))
def test_two_user_turns_in_a_row_are_answered_by_a_strict_template(server, path):
    status, answer = post_json(server.base_url, path, {"model": "strict", **TWO_USER_TURNS[path]})
    assert status == 200, answer


def test_turns_are_joined_only_where_the_template_refuses_them():
    from jan.templates.chat import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    two = [{"role": "user", "content": "Context: a cat."}, {"role": "user", "content": "What is it?"}]
    one = [{"role": "user", "content": "Context: a cat.\n\nWhat is it?"}]
    for name, joins in (("mistralai-Mistral-Nemo-Instruct-2407.jinja", True), ("google-gemma-2-2b-it.jinja", True),
                        ("Qwen-Qwen3-0.6B.jinja", False), ("meta-llama-Llama-3.1-8B-Instruct.jinja", False)):
        template = ChatTemplate((templates_dir() / name).read_text(encoding="utf-8"), "<s>", "</s>")
        assert template.joins_turns is joins, name
        assert (template.render(two) == template.render(one)) is joins, name


#: A conversation that opens with the assistant's turn (a greeting the client seeds the chat with), in every dialect:
#: Gemma's and Mistral's templates raise on it ("conversation roles must alternate"), a 400 before.
GREETING = [{"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Tell me a story."}]
GREETING_FIRST = {
    "/v1/chat/completions": {"max_tokens": 2, "messages": [{"role": "system", "content": "Be brief."}, *GREETING]},
    "/v1/messages": {"max_tokens": 2, "system": "Be brief.", "messages": GREETING},
    "/v1/responses": {"max_output_tokens": 16, "store": False, "instructions": "Be brief.", "input": GREETING},
    "/api/chat": {"stream": False, "options": {"num_predict": 2}, "messages": GREETING},
    "/apply-template": {"messages": GREETING},
}


@pytest.mark.parametrize("path", list(GREETING_FIRST))
def test_a_conversation_that_opens_with_the_assistant_is_answered_by_a_strict_template(server, path):
    status, answer = post_json(server.base_url, path, {"model": "strict", **GREETING_FIRST[path]})
    assert status == 200, answer


def test_an_empty_user_turn_goes_first_only_where_the_template_asks_for_one():
    """Where the template refuses an opening assistant turn and renders one after an empty user turn, it gets that
    turn (after the system prompt, which a template without a system role writes into it); other templates render
    the conversation as sent."""
    from jan.templates.chat import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    system = {"role": "system", "content": "Be brief."}
    empty = {"role": "user", "content": ""}
    for name, first in (("mistralai-Mistral-Nemo-Instruct-2407.jinja", True), ("google-gemma-2-2b-it.jinja", True),
                        ("Mistral-Small-3.2-24B-Instruct-2506.jinja", True),
                        ("Qwen-Qwen3-0.6B.jinja", False), ("meta-llama-Llama-3.1-8B-Instruct.jinja", False)):
        template = ChatTemplate((templates_dir() / name).read_text(encoding="utf-8"), "<s>", "</s>")
        assert template.user_first is first, name
        for head in ([], [system]):
            prompt = template.render([*head, *GREETING])
            assert "Hello! How can I help?" in prompt and "Tell me a story." in prompt, name
            if first:
                assert prompt == template.render([*head, empty, *GREETING]), name
    gemma = ChatTemplate((templates_dir() / "google-gemma-2-2b-it.jinja").read_text(encoding="utf-8"))
    assert gemma.render([system, *GREETING]).startswith(
        "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\nHello! How can I help?"), "system first"


#: System messages beyond a leading one, in each dialect that sends them: a developer message after the system
#: prompt (OpenAI's agents), the Responses API's ``instructions`` with a developer item in ``input`` (Codex CLI's
#: every request), a system message in mid-conversation (context an agent adds), Ollama's several system messages.
MORE_SYSTEM = {
    "chat: system then developer": ("/v1/chat/completions", {"max_tokens": 2, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": "Weather?"}]}),
    "chat: system mid-conversation": ("/v1/chat/completions", {"max_tokens": 2, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "The user is in Paris."}, {"role": "user", "content": "Weather?"}]}),
    "responses: instructions and a developer item": ("/v1/responses", {
        "max_output_tokens": 16, "store": False, "instructions": "Be brief.",
        "input": [{"role": "developer", "content": "Use metric units."}, {"role": "user", "content": "Weather?"}]}),
    "ollama: two system messages": ("/api/chat", {"stream": False, "options": {"num_predict": 2}, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": "Weather?"}]}),
}


@pytest.mark.parametrize("case", list(MORE_SYSTEM))
def test_system_messages_beyond_the_first_are_answered_by_a_template_that_takes_one(server, case):
    """Mistral's templates (and Qwen 3.5's, Apertus') raise on any system message but a leading one: found by
    outside testing, a Responses request with ``instructions`` and a developer message was a 400 ("conversation
    roles must alternate"). Such a template gets the system texts as its one leading system message."""
    path, body = MORE_SYSTEM[case]
    status, answer = post_json(server.base_url, path, {"model": "strict", **body})
    assert status == 200, answer


def test_system_texts_are_gathered_only_where_the_template_refuses_more_than_one():
    from jan.templates.chat import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    system = lambda text: {"role": "system", "content": text}  # noqa: E731
    spread = [system("Be brief."), system("Use metric units."), {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello."}, system("The user is in Paris."),
              {"role": "user", "content": "Weather?"}]
    gathered = [system("Be brief.\n\nUse metric units.\n\nThe user is in Paris."), *spread[2:4], spread[5]]
    seen = set()
    for path in sorted(templates_dir().glob("*.jinja")):
        template = ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>")
        try:
            template.render(spread[:3])
        except Exception:  # noqa: BLE001 - (a template that cannot take even one system message: not this test's)
            continue
        try:
            prompt = template.render(spread)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{path.name}: {exc}")
        assert all(text in prompt for text in ("Be brief.", "Use metric units.", "The user is in Paris.")), path.name
        if template.gathers_system:
            assert prompt == template.render(gathered), path.name
            seen.add(path.name)
    assert {"Mistral-Small-3.2-24B-Instruct-2506.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            "Qwen3.5-4B.jinja"} <= seen
    for name in ("Qwen-Qwen3-0.6B.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja"):  # (they take them as sent)
        assert not ChatTemplate((templates_dir() / name).read_text(encoding="utf-8")).gathers_system, name
