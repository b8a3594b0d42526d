"""A conversation that ends in an assistant message is continued, not answered (a prefill), on every chat
dialect: Anthropic's documented behaviour, llama-server's "prefill assistant" on /v1/chat/completions and
Ollama's /api/chat. And an assistant message without content is empty text to the chat template: never the
template's internal TypeError in an error body."""

from __future__ import annotations

import json

import pytest
from conftest import require_model
from dialect_helpers import has_reasoning_parser, reasoning_model
from extension_helpers import call
from jan.templates import ChatTemplate, gbnf_literal
from jan.templates.chat import TemplateError
from jan.testing.gguf_models import templates_dir
from server_helpers import start_server

HI = {"role": "user", "content": "hi"}
PREFILL = "Once upon a"
GREEDY = {"model": "stories260K", "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("prefill")
    srv = start_server(tmp, [stories_path, reasoning_model(tmp)])
    yield srv
    srv.stop()


def ok(server, path: str, body: dict) -> dict:
    status, out = call(server, "POST", path, body)
    assert status == 200, (path, body, out)
    return out


def completion_of(server, prompt: str, max_tokens: int = 5) -> str:
    """What the model writes after ``prompt`` itself (a raw text completion)."""
    return ok(server, "/v1/completions", {**GREEDY, "prompt": prompt, "max_tokens": max_tokens})["choices"][0]["text"]


# -- a final assistant message is continued ------------------------------------------------------
def test_the_prompt_ends_inside_a_final_assistant_message(server):
    prompt = ok(server, "/apply-template", {"model": "stories260K", "messages": [HI, {"role": "assistant",
                                                                                     "content": PREFILL}]})["prompt"]
    assert prompt == f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}"


def test_anthropic_continues_the_prefill(server):
    body = {**GREEDY, "max_tokens": 5, "messages": [HI, {"role": "assistant", "content": PREFILL}]}
    expected = completion_of(server, f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}")
    message = ok(server, "/v1/messages", body)
    assert [b["type"] for b in message["content"]] == ["text"]
    assert message["content"][0]["text"] == expected  # the continuation only, the prefill not repeated
    assert message["usage"]["input_tokens"] == ok(server, "/v1/messages/count_tokens",
                                                  {"model": "stories260K", "messages": body["messages"]})["input_tokens"]
    # blocks, as Anthropic clients send them, are the same prefill
    blocks = ok(server, "/v1/messages", {**body, "messages": [HI, {"role": "assistant", "content": [
        {"type": "text", "text": PREFILL}]}]})
    assert blocks["content"] == message["content"]


def test_openai_and_ollama_continue_a_final_assistant_message(server):
    messages = [HI, {"role": "assistant", "content": PREFILL}]
    expected = completion_of(server, f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}")
    chat = ok(server, "/v1/chat/completions", {**GREEDY, "max_tokens": 5, "messages": messages})
    assert chat["choices"][0]["message"]["content"] == expected
    ollama = ok(server, "/api/chat", {"model": "stories260K", "stream": False, "messages": messages,
                                      "options": {"num_predict": 5, "temperature": 0}})
    assert ollama["message"]["content"] == expected


def test_an_assistant_turn_before_the_last_user_turn_is_closed(server):
    messages = [HI, {"role": "assistant", "content": PREFILL}, {"role": "user", "content": "more"}]
    prompt = ok(server, "/apply-template", {"model": "stories260K", "messages": messages})["prompt"]
    assert prompt.endswith(f"{PREFILL}<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_a_prefill_on_a_reasoning_template_continues_the_answer(server):
    """QwQ's generation prompt opens ``<think>`` when thinking is on: the output is reasoning until ``</think>``.
    A prefilled answer ends the prompt inside the answer instead, so what follows is answer text."""
    forced = {"model": "qwq-tiny", "temperature": 0, "max_tokens": 8, "reasoning_effort": "high",
              "grammar": "root ::= " + gbnf_literal(" time there was")}
    fresh = ok(server, "/v1/chat/completions", {**forced, "messages": [HI]})["choices"][0]["message"]
    assert fresh.get("reasoning_content") == "time there was" and not fresh.get("content")
    messages = [HI, {"role": "assistant", "content": PREFILL}]
    prompt = ok(server, "/apply-template", {**forced, "messages": messages})["prompt"]
    assert prompt.endswith(f"<|im_start|>assistant\n{PREFILL}")
    message = ok(server, "/v1/chat/completions", {**forced, "messages": messages})["choices"][0]["message"]
    assert message.get("content") == " time there was" and not message.get("reasoning_content")


# -- an assistant message without content --------------------------------------------------------
@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": []}]}),
    ("/v1/messages", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": []}, HI]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": None}]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant"}]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": None},
                                                                      HI]}),
    ("/v1/responses", {**GREEDY, "max_output_tokens": 3, "store": False,
                       "input": [HI, {"role": "assistant", "content": []}, HI]}),
    ("/v1/responses", {**GREEDY, "max_output_tokens": 3, "store": False,
                       "input": [HI, {"type": "message", "role": "assistant", "content": []}]}),
    ("/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 3, "temperature": 0},
                   "messages": [HI, {"role": "assistant", "content": None}]}),
    ("/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 3, "temperature": 0},
                   "messages": [HI, {"role": "assistant"}, HI]}),
])
def test_an_assistant_message_without_content_is_empty_text(server, path, body):
    status, out = call(server, "POST", path, body)
    assert status == 200, out
    assert "TypeError" not in json.dumps(out)


def test_an_empty_final_assistant_message_prefills_nothing(server):
    plain = ok(server, "/apply-template", {"model": "stories260K", "messages": [HI]})["prompt"]
    for empty in ({"role": "assistant", "content": None}, {"role": "assistant", "content": ""},
                  {"role": "assistant"}):
        assert ok(server, "/apply-template", {"model": "stories260K", "messages": [HI, empty]})["prompt"] == plain
    # mid-conversation it is an empty turn
    prompt = ok(server, "/apply-template", {"model": "stories260K",
                                            "messages": [HI, {"role": "assistant", "content": None}, HI]})["prompt"]
    assert "<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nhi" in prompt
    chat = ok(server, "/v1/chat/completions", {**GREEDY, "max_tokens": 5, "messages": [HI]})
    anthropic = ok(server, "/v1/messages", {**GREEDY, "max_tokens": 5,
                                            "messages": [HI, {"role": "assistant", "content": []}]})
    assert anthropic["content"][0]["text"] == chat["choices"][0]["message"]["content"]


def test_every_shared_template_takes_an_assistant_turn_without_content():
    """The kind, on real templates: an assistant message without content (and without tool calls) is empty
    text, which templates that concatenate ``content`` take; only a template's own refusal may fail it."""
    folder = templates_dir()
    if not folder.is_dir():
        require_model("..", "templates")
    user = {"role": "user", "content": "hi"}
    for path in sorted(folder.glob("*.jinja")):
        template = ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>")
        for messages in ([user, {"role": "assistant", "content": None}, user], [user, {"role": "assistant"}]):
            try:
                prompt = template.render(messages)
            except TemplateError as exc:
                assert "TypeError" not in str(exc), (path.name, exc)
                continue
            assert "None" not in prompt, path.name
