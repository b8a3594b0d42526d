"""An earlier answer's thinking sent back in the form jan gave it, in every dialect: jan's encrypted reasoning (the
Responses API's ``encrypted_content``, an Anthropic thinking block's ``signature``, which carry the text for a client
that sends the block back without it) read back, and a damaged one refused with the dialect's 400, never read as
no thinking (the turn's thinking lost without a word)."""

from __future__ import annotations

import re

import httpx
import pytest

from jan.server.dialects.responses import encrypted_reasoning
from jan.testing.gguf_models import templates_dir, vocab_path, write_llama_from_vocab

from conftest import require_model
from server_helpers import start_server

THOUGHT = "Add the two numbers."
DAMAGED = "jan-reasoning-v1:!!not base64!!"


#: a template that keeps an earlier answer's thinking (in its content's thinking chunk), and one that wants turns to
#: alternate
KEEPS = "mistralai-Ministral-3-14B-Reasoning-2512"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("round-trip")
    keeps = write_llama_from_vocab(tmp / f"{KEEPS}.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2, n_ff=32,
                                   n_ctx=1024, chat_template=(templates_dir() / f"{KEEPS}.jinja").read_text())
    srv = start_server(tmp, [stories_path, keeps], n_ctx=1024)
    yield srv
    srv.stop()


def _anthropic(server, signature: str) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/messages/count_tokens", timeout=120, json={
        "model": "stories260K", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": signature},
                                              {"type": "text", "text": "4"}]},
            {"role": "user", "content": "And?"}]})


def _responses(server, encrypted: str) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/responses/input_tokens", timeout=120, json={
        "model": "stories260K", "input": [
            {"role": "user", "content": "Hi"},
            {"type": "reasoning", "summary": [], "encrypted_content": encrypted},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
            {"role": "user", "content": "And?"}]})


def test_a_damaged_signature_or_encrypted_content_is_a_400_in_every_dialect(server):
    # (Responses refused it; Anthropic read a damaged signature of jan's as no thinking)
    anthropic = _anthropic(server, DAMAGED)
    assert anthropic.status_code == 400, anthropic.text
    error = anthropic.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error", error
    assert error["error"]["message"].startswith("messages.1.content: ") and "signature" in error["error"]["message"]
    responses = _responses(server, DAMAGED)
    assert responses.status_code == 400, responses.text
    assert responses.json()["error"]["param"] == "input[1].encrypted_content"


def test_jan_s_own_and_another_server_s_are_answered():
    # jan's gives its text back; another server's (Anthropic's or OpenAI's, encrypted with their keys) is no
    # thinking a local model can read, and no error
    from jan.server.dialects import anthropic as am

    def reasoning(signature: str):
        body = am.MessagesRequest.model_validate({"max_tokens": 5, "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": signature}]},
            {"role": "user", "content": "And?"}]})
        return am.to_chat_request(body).messages[1].reasoning

    assert reasoning(encrypted_reasoning(THOUGHT)) == THOUGHT
    assert reasoning("EqQBCkYIBxgCKkDanthropicsown") is None


@pytest.mark.parametrize("field, part", [("content", {"type": "summary_text", "text": THOUGHT}),
                                         ("content", {"type": "output_text", "text": THOUGHT}),
                                         ("summary", {"type": "reasoning_text", "text": THOUGHT})])
def test_a_reasoning_item_s_part_of_another_type_is_a_400_naming_it(server, field, part):
    # (any type was taken as thinking: OpenAI's reasoning items hold reasoning_text content and summary_text
    # summaries, and refuse another)
    item = {"type": "reasoning", "summary": [], field: [part]}
    response = httpx.post(server.base_url + "/v1/responses/input_tokens", timeout=120, json={
        "model": "stories260K", "input": [{"role": "user", "content": "Hi"}, item,
                                          {"type": "message", "role": "assistant", "content": [
                                              {"type": "output_text", "text": "4"}]},
                                          {"role": "user", "content": "And?"}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == f"input[1].{field}[0].type", response.text


def test_an_answer_that_was_all_thinking_is_its_own_turn_in_every_dialect(server):
    # An answer cut off while it thought is a reasoning item alone on the Responses API (jan's own output), a
    # thinking block alone on Anthropic's, reasoning with no content on OpenAI's and Ollama's. Sent back before
    # the next question, the Responses input carried that thinking on to the next assistant turn (another
    # answer's) and left two user turns in a row; it is the answer's own turn, as in the other dialects.
    thought, ask, again = "Thinking about it.", {"role": "user", "content": "Hi"}, {"role": "user", "content": "And?"}

    def count(path, body):
        response = httpx.post(server.base_url + path, json={"model": KEEPS, **body}, timeout=120)
        assert response.status_code == 200, (path, response.text)
        return response.json().get("input_tokens", response.json().get("prompt_eval_count"))

    counts = {
        "openai": count("/v1/chat/completions/input_tokens", {"messages": [
            ask, {"role": "assistant", "content": "", "reasoning_content": thought}, again]}),
        "anthropic": count("/v1/messages/count_tokens", {
            "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
                ask, {"role": "assistant", "content": [{"type": "thinking", "thinking": thought, "signature": "s"}]},
                again]}),
        "responses": count("/v1/responses/input_tokens", {"input": [
            ask, {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": thought}]},
            again]}),
        "ollama": count("/api/chat", {"stream": False, "options": {"num_predict": 1}, "messages": [
            ask, {"role": "assistant", "content": "", "thinking": thought}, again]}),
    }
    assert len(set(counts.values())) == 1, counts
    shorter = count("/v1/chat/completions/input_tokens", {"messages": [
        ask, {"role": "assistant", "content": "", "reasoning_content": "Hm."}, again]})
    assert counts["openai"] > shorter  # (the template keeps it: the thinking is in the prompt)
    # and it is that answer's thinking, never the next one's
    from jan.server.dialects import responses as rs

    body = rs.ResponsesRequest.model_validate({"model": KEEPS, "input": [
        ask, {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": thought}]}, again,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}]})
    turns = rs.input_messages(body.input)
    assert [(m.role, m.reasoning) for m in turns] == [("user", None), ("assistant", thought), ("user", None),
                                                      ("assistant", None)]


def test_reasoning_a_conversation_kept_alone_is_an_answer_s_turn_on_every_read():
    # a conversation keeps reasoning no turn took (the last item added) as it was sent; read again (the Responses
    # API's history, a Jan thread's chat messages) it is the answer's turn it was, as an input reads it before a
    # user message, and the reply before it stays (a kept item's turns replaced the turn before: an MCP call's do)
    from jan.services.kept_items import history_turns
    from jan.services.tool_loop import chat_messages
    from jan.services.types import ChatMessage

    item = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": THOUGHT}]}
    turns = history_turns([ChatMessage.of_text("user", "Hi"), ChatMessage.of_text("assistant", "Hello"), item])
    assert [(t.role, t.text, t.reasoning) for t in turns] == [("user", "Hi", None), ("assistant", "Hello", None),
                                                              ("assistant", "", THOUGHT)]
    history = [{"role": "user", "content": [{"type": "text", "text": {"value": "Hi"}}]},
               {"role": "assistant", "content": [{"type": "text", "text": {"value": "Hello"}}]},
               {"role": "assistant", "content": [], "metadata": {"item": item}}]
    messages = chat_messages(history, "")
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"], messages
    assert messages[1]["content"] == "Hello" and messages[2]["reasoning_content"] == THOUGHT, messages


def test_reasoning_kept_with_only_jan_s_encrypted_content_is_read_back_as_sent_as_input(server):
    # A conversation's last answer's reasoning item that carries only jan's encrypted_content (a client with
    # include: ["reasoning.encrypted_content"] that drops the text) is kept as sent; read back from the stored
    # history on the next turn it was no thinking (the thinking lost), while the same item sent as input was read.
    # Both are one reading now: the stored and the sent-as-input histories render the same prompt.
    from jan.server.dialects import responses as rs
    from jan.services.kept_items import history_turns
    from jan.services.types import ChatMessage

    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted_reasoning(THOUGHT)}
    ask, again = {"role": "user", "content": "Hi"}, {"role": "user", "content": "And?"}
    sent = rs.input_messages(rs.ResponsesRequest.model_validate({"model": KEEPS, "input": [ask, item, again]}).input)
    stored = history_turns([ChatMessage.of_text("user", "Hi"), item]) + [ChatMessage.of_text("user", "And?")]
    assert stored == sent and stored[1].reasoning == THOUGHT, (stored, sent)

    def count(body):
        response = httpx.post(server.base_url + "/v1/responses/input_tokens", json={"model": KEEPS, **body},
                              timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["input_tokens"]

    conversation = httpx.post(server.base_url + "/v1/conversations", json={"items": [ask, item]}, timeout=120)
    assert conversation.status_code == 200, conversation.text
    from_history = count({"conversation": conversation.json()["id"], "input": [again]})
    as_input = count({"input": [ask, item, again]})
    as_text = count({"input": [ask, {"type": "reasoning", "summary": [], "content": [
        {"type": "reasoning_text", "text": THOUGHT}]}, again]})
    assert from_history == as_input == as_text
    # (the template keeps that thinking: it is in the prompt)
    assert from_history > count({"input": [ask, {"type": "reasoning", "summary": [], "content": [
        {"type": "reasoning_text", "text": "Hm."}]}, again]})


_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_LEVELS = ("low", "medium", "high", "max")

#: every reasoning field of every dialect, a bad value of it, and what its 400 must name: the values it takes
#: (dialect, route, body, allowed)
_BAD_REASONING = [
    ("openai", "/v1/chat/completions", {"think": "extreme"}, ("true", "false", *_LEVELS)),
    ("openai", "/v1/chat/completions", {"think": 3}, ("true", "false", *_LEVELS)),
    ("openai", "/v1/chat/completions", {"reasoning_effort": "extreme"}, _EFFORTS),
    ("openai", "/v1/chat/completions", {"reasoning_format": "extreme"}, ("none", "auto", "deepseek")),
    ("openai", "/v1/chat/completions", {"reasoning_budget": -2}, ("-1",)),
    ("openai", "/v1/chat/completions", {"thinking_budget_tokens": -2}, ("0",)),
    ("openai", "/v1/chat/completions/input_tokens", {"think": "extreme"}, ("true", "false", *_LEVELS)),
    ("openai", "/v1/assistants", {"reasoning_effort": "extreme"}, _EFFORTS),
    ("responses", "/v1/responses", {"reasoning": {"effort": "extreme"}}, _EFFORTS),
    ("responses", "/v1/responses/input_tokens", {"reasoning": {"effort": "extreme"}}, _EFFORTS),
    ("anthropic", "/v1/messages", {"thinking": {"type": "on"}}, ("enabled", "disabled", "adaptive")),
    ("anthropic", "/v1/messages", {"thinking": {"type": "enabled", "budget_tokens": 10}}, ("1024",)),
    ("anthropic", "/v1/messages", {"output_config": {"effort": "extreme"}}, ("low", "medium", "high", "max")),
    ("anthropic", "/v1/messages/count_tokens", {"thinking": {"type": "on"}}, ("enabled", "disabled", "adaptive")),
    ("ollama", "/api/chat", {"think": "extreme"}, ("true", "false", *_LEVELS)),
    ("ollama", "/api/generate", {"think": "extreme"}, ("true", "false", *_LEVELS)),
]


def _base_body(dialect: str, route: str) -> dict:
    hi = [{"role": "user", "content": "Hi"}]
    if route == "/v1/assistants":
        return {"model": "stories260K"}
    if dialect == "openai":
        return {"model": "stories260K", "messages": hi, "max_tokens": 1}
    if dialect == "responses":
        return {"model": "stories260K", "input": "Hi", "max_output_tokens": 16}
    if dialect == "anthropic":
        return {"model": "stories260K", "messages": hi, "max_tokens": 2048}
    if route == "/api/generate":
        return {"model": "stories260K", "prompt": "Hi", "stream": False}
    return {"model": "stories260K", "messages": hi, "stream": False}


@pytest.mark.parametrize("dialect, route, field, allowed", _BAD_REASONING,
                         ids=[f"{d}-{r}-{next(iter(f))}-{i}" for i, (d, r, f, _) in enumerate(_BAD_REASONING)])
def test_a_bad_reasoning_value_s_400_names_the_values_allowed_in_every_dialect(server, dialect, route, field,
                                                                               allowed):
    # (chat completions' bad think said only that it was no boolean, not which values are allowed)
    response = httpx.post(server.base_url + route, json={**_base_body(dialect, route), **field}, timeout=120)
    assert response.status_code == 400, response.text
    body = response.json()
    if dialect == "ollama":
        message = body["error"]
        assert isinstance(message, str), body
    elif dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        message = body["error"]["message"]
    else:
        message = body["error"]["message"]
        assert body["error"]["type"] == "invalid_request_error", body
    missing = [value for value in allowed if not re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", message)]
    assert not missing, (missing, message)


def test_an_openai_assistant_message_s_reasoning_is_its_reasoning_content(server):
    # vLLM, OpenRouter and mlx_lm.server give an answer's thinking back as `reasoning`, and clients send the message
    # back as they got it: that was a 400 (an unknown field), while llama-server's `reasoning_content` was read
    ask, again = {"role": "user", "content": "Hi"}, {"role": "user", "content": "And?"}

    def post(reply: dict, path: str = "/v1/chat/completions/input_tokens") -> httpx.Response:
        return httpx.post(server.base_url + path, timeout=120, json={
            "model": KEEPS, "messages": [ask, {"role": "assistant", "content": "4", **reply}, again]})

    def count(reply: dict) -> int:
        response = post(reply)
        assert response.status_code == 200, response.text
        return response.json()["input_tokens"]

    assert count({"reasoning": THOUGHT}) == count({"reasoning_content": THOUGHT}) \
        == count({"reasoning": THOUGHT, "reasoning_content": THOUGHT}) > count({"reasoning_content": "Hm."})
    generated = post({"reasoning": THOUGHT}, "/v1/chat/completions")  # (the chat route itself, not only the count)
    assert generated.status_code == 200, generated.text
    both = post({"reasoning": THOUGHT, "reasoning_content": "Hm."})
    assert both.status_code == 400, both.text
    message = both.json()["error"]["message"]
    assert "reasoning" in message and "reasoning_content" in message and "messages[1]" in message, message
    wrong = post({"reasoning": {"text": THOUGHT}})
    assert wrong.status_code == 400 and "messages[1].reasoning" in wrong.json()["error"]["message"], wrong.text


ASK, AGAIN = {"role": "user", "content": "Hi"}, {"role": "user", "content": "And?"}


@pytest.mark.parametrize("path, body, param", [
    # Anthropic's API requires a thinking block's signature, OpenAI's a reasoning item's summary ([] where none):
    # a body jan took without them is one the real API refuses, so a client tried on jan broke there (the
    # official SDKs' params require every field named here)
    ("/v1/messages", {"max_tokens": 2, "messages": [
        ASK, {"role": "assistant", "content": [{"type": "thinking", "thinking": THOUGHT}, {"type": "text", "text": "4"}]},
        AGAIN]}, "messages.1.content.0.signature"),
    ("/v1/messages/count_tokens", {"messages": [
        ASK, {"role": "assistant", "content": [{"type": "thinking", "thinking": THOUGHT}]}, AGAIN]},
     "messages.1.content.0.signature"),
    ("/v1/responses", {"max_output_tokens": 2, "input": [
        ASK, {"type": "reasoning", "content": [{"type": "reasoning_text", "text": THOUGHT}]}, AGAIN]}, "input[1].summary"),
    ("/v1/responses/input_tokens", {"input": [
        ASK, {"type": "reasoning", "encrypted_content": encrypted_reasoning(THOUGHT)}, AGAIN]}, "input[1].summary"),
    # ... and the other fields of an earlier turn both APIs require, which jan defaulted: a tool_use's (and an
    # mcp_tool_use's) input, a redacted_thinking block's data, a reasoning item's parts' type
    ("/v1/messages/count_tokens", {"messages": [
        ASK, {"role": "assistant", "content": [{"type": "redacted_thinking"}]}, AGAIN]}, "messages.1.content.0.data"),
    ("/v1/messages/count_tokens", {"messages": [
        ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4"}]}]},
     "messages.1.content.0.input"),
    ("/v1/messages/count_tokens", {"messages": [
        ASK, {"role": "assistant", "content": [{"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "f",
                                                "server_name": "s"}]}, AGAIN]}, "messages.1.content.0.input"),
    ("/v1/responses/input_tokens", {"input": [
        ASK, {"type": "reasoning", "summary": [{"text": THOUGHT}]}, AGAIN]}, "input[1].summary[0].type"),
    ("/v1/responses/input_tokens", {"input": [
        ASK, {"type": "reasoning", "summary": [], "content": [{"text": THOUGHT}]}, AGAIN]}, "input[1].content[0].type"),
])
def test_thinking_sent_back_without_the_field_the_real_api_requires_is_its_400(server, path, body, param):
    response = httpx.post(server.base_url + path, json={"model": "stories260K", **body}, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()
    if path.startswith("/v1/messages"):
        assert error["type"] == "error" and error["error"] == {
            "type": "invalid_request_error", "message": f"{param}: Field required"}, error
    else:
        assert error["error"]["param"] == param and error["error"]["code"] == "missing_required_parameter", error
