"""An earlier answer's thinking sent back in the form jan gave it, in every dialect: jan's encrypted reasoning (the
Responses API's ``encrypted_content``, an Anthropic thinking block's ``signature``, which carry the text for a client
that sends the block back without it) read back, and a damaged one refused with the dialect's 400, never read as
no thinking (the turn's thinking lost without a word)."""

from __future__ import annotations

import httpx
import pytest

from jan.server.dialects.responses import encrypted_reasoning

from server_helpers import start_server

THOUGHT = "Add the two numbers."
DAMAGED = "jan-reasoning-v1:!!not base64!!"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("round-trip"), [stories_path])
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
    assert error["error"]["message"].startswith("messages[1].content: ") and "signature" in error["error"]["message"]
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
