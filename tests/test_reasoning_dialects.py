"""Reasoning in every dialect on tiny models with real templates. Turning thinking on where it is no marker pair:
gpt-oss (Harmony's analysis channel). Ollama's ``think: true`` (and its levels) is a 400 "does not support thinking"
only for a model that cannot think: gpt-oss was refused, though it is the model Ollama's levels are for. The other
dialects' switches answer too, and a model without thinking keeps Ollama's 400. And a conversation whose tool-call
turn carries thinking (OpenAI ``reasoning_content``, an Anthropic thinking block, a Responses reasoning item, Ollama
``thinking``) is one prompt in every dialect, the thinking in it where the template keeps it."""

from __future__ import annotations

import httpx
import pytest

from jan.testing.gguf_models import templates_dir, vocab_path, write_harmony_model, write_llama_from_vocab

from conftest import require_model
from dialect_helpers import anthropic_client, openai_client
from server_helpers import start_server

MODEL = "harmony-tiny"
ASK = [{"role": "user", "content": "Hi"}]
THINKERS = {"qwen3-tiny": "Qwen-Qwen3-0.6B", "seed-tiny": "ByteDance-Seed-OSS"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("reasoning-dialects")
    thinkers = [write_llama_from_vocab(tmp / f"{name}.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2,
                                       n_ff=32, n_ctx=1024, chat_template=(templates_dir() / f"{template}.jinja").read_text())
                for name, template in THINKERS.items()]
    srv = start_server(tmp, [write_harmony_model(tmp / f"{MODEL}.gguf"), stories_path, *thinkers], n_ctx=1024,
                       n_parallel=2)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=120)


@pytest.mark.parametrize("think", [True, "low", "high", "max"])
@pytest.mark.parametrize("stream", [False, True])
def test_ollama_think_on_gpt_oss_is_answered(server, think, stream):
    opts = {"num_predict": 4, "temperature": 0}
    chat = _post(server, "/api/chat", {"model": MODEL, "messages": ASK, "think": think, "stream": stream, "options": opts})
    assert chat.status_code == 200, chat.text
    generate = _post(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "think": think, "stream": stream,
                                                "options": opts})
    assert generate.status_code == 200, generate.text


def test_every_dialects_thinking_switch_is_answered_on_gpt_oss(server):
    oai = openai_client(server)
    for effort in ("low", "high", "none"):
        oai.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, reasoning_effort=effort)
        oai.responses.create(model=MODEL, input="Hi", max_output_tokens=16, reasoning={"effort": effort})
    # (Anthropic's least budget is 1024, below max_tokens: the thinking is capped, not the answer)
    for thinking, max_tokens in (({"type": "enabled", "budget_tokens": 1024}, 1025), ({"type": "disabled"}, 4)):
        anthropic_client(server).messages.create(model=MODEL, max_tokens=max_tokens, messages=ASK, thinking=thinking)


def test_a_model_that_cannot_think_keeps_ollamas_400(server, stories_path):
    name = stories_path.stem
    response = _post(server, "/api/chat", {"model": name, "messages": ASK, "think": True, "stream": False})
    assert response.status_code == 400 and "does not support thinking" in response.json()["error"]


# -- the same conversation, with thinking in its tool-call turn, through every dialect ----------------------------

PARAMS = {"type": "object", "properties": {"x": {"type": "integer"}}}
THOUGHT = "Use calc on x."


def _openai(server, model, thought):
    reply = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}]}
    if thought:
        reply["reasoning_content"] = thought
    body = {"model": model, "max_tokens": 1, "reasoning_effort": "none",
            "tools": [{"type": "function", "function": {"name": "calc", "description": "c", "parameters": PARAMS}}],
            "messages": [{"role": "user", "content": "What is 2+2?"}, reply,
                         {"role": "tool", "tool_call_id": "call_1", "content": "4"}]}
    response = _post(server, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens"]


def _anthropic(server, model, thought):
    # a thinking block signed by another server: its text is the turn's thinking (the signature carries nothing)
    blocks = [{"type": "thinking", "thinking": thought, "signature": "signed-elsewhere"}] if thought else []
    body = {"model": model, "max_tokens": 1, "tools": [{"name": "calc", "description": "c", "input_schema": PARAMS}],
            "messages": [{"role": "user", "content": "What is 2+2?"},
                         {"role": "assistant", "content": [*blocks, {"type": "tool_use", "id": "call_1", "name": "calc",
                                                                     "input": {"x": 1}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "4"}]}]}
    response = _post(server, "/v1/messages", body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]  # (a prompt read from the cache counts apart)
    return sum(usage.get(k) or 0 for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))


def _responses(server, model, thought):
    reasoning = [{"type": "reasoning", "id": "rs_1", "summary": [],
                  "content": [{"type": "reasoning_text", "text": thought}]}] if thought else []
    body = {"model": model, "max_output_tokens": 16, "reasoning": {"effort": "none"}, "store": False,
            "tools": [{"type": "function", "name": "calc", "description": "c", "parameters": PARAMS}],
            "input": [{"role": "user", "content": "What is 2+2?"}, *reasoning,
                      {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": '{"x": 1}'},
                      {"type": "function_call_output", "call_id": "call_1", "output": "4"}]}
    response = _post(server, "/v1/responses", body)
    assert response.status_code == 200, response.text
    return response.json()["usage"]["input_tokens"]


def _ollama(server, model, thought):
    reply = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calc", "arguments": {"x": 1}}}]}
    if thought:
        reply["thinking"] = thought
    body = {"model": model, "stream": False, "think": False, "options": {"num_predict": 1},
            "tools": [{"type": "function", "function": {"name": "calc", "description": "c", "parameters": PARAMS}}],
            "messages": [{"role": "user", "content": "What is 2+2?"}, reply, {"role": "tool", "content": "4"}]}
    response = _post(server, "/api/chat", body)
    assert response.status_code == 200, response.text
    return response.json()["prompt_eval_count"]


@pytest.mark.parametrize("model", [MODEL, *THINKERS])
def test_thinking_sent_back_is_one_prompt_in_every_dialect(server, model):
    without = {f.__name__: f(server, model, None) for f in (_openai, _anthropic, _responses, _ollama)}
    with_thought = {f.__name__: f(server, model, THOUGHT) for f in (_openai, _anthropic, _responses, _ollama)}
    assert len(set(without.values())) == 1, without
    assert len(set(with_thought.values())) == 1, with_thought
    # each of these templates keeps the thinking of a tool loop's turns (gpt-oss's analysis before a call)
    assert with_thought["_openai"] > without["_openai"]


def test_gpt_oss_call_turn_with_a_preamble_and_thinking_is_answered_in_every_dialect(server):
    # gpt-oss's own reply (analysis, commentary preamble, call) sent back: its template raises on a call turn with
    # both text and thinking, so every dialect refused the conversation jan's own answer had made
    call = {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}
    tools = [{"type": "function", "function": {"name": "calc", "description": "c", "parameters": PARAMS}}]
    ask = {"role": "user", "content": "What is 2+2?"}
    chat = _post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 1, "tools": tools, "messages": [
        ask, {"role": "assistant", "content": "Let me look.", "reasoning_content": THOUGHT, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4"}]})
    assert chat.status_code == 200, chat.text
    anthropic_body = {"model": MODEL, "max_tokens": 1, "tools": [{"name": "calc", "input_schema": PARAMS}],
                      "messages": [ask, {"role": "assistant", "content": [
                          {"type": "thinking", "thinking": THOUGHT, "signature": "x"},
                          {"type": "text", "text": "Let me look."},
                          {"type": "tool_use", "id": "call_1", "name": "calc", "input": {"x": 1}}]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                        "content": "4"}]}]}
    assert _post(server, "/v1/messages", anthropic_body).status_code == 200
    responses_body = {"model": MODEL, "max_output_tokens": 16, "store": False,
                      "tools": [{"type": "function", "name": "calc", "parameters": PARAMS}],
                      "input": [ask, {"type": "reasoning", "summary": [],
                                      "content": [{"type": "reasoning_text", "text": THOUGHT}]},
                                {"type": "message", "role": "assistant",
                                 "content": [{"type": "output_text", "text": "Let me look."}]},
                                {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": '{"x": 1}'},
                                {"type": "function_call_output", "call_id": "call_1", "output": "4"}]}
    assert _post(server, "/v1/responses", responses_body).status_code == 200
    ollama_body = {"model": MODEL, "stream": False, "options": {"num_predict": 1}, "tools": tools, "messages": [
        ask, {"role": "assistant", "content": "Let me look.", "thinking": THOUGHT,
              "tool_calls": [{"function": {"name": "calc", "arguments": {"x": 1}}}]}, {"role": "tool", "content": "4"}]}
    ollama = _post(server, "/api/chat", ollama_body)
    assert ollama.status_code == 200, ollama.text
