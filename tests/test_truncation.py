"""A conversation longer than the model's context: dropped oldest turns where the dialect asks for it
(Ollama's ``truncate``, on by default; the Responses API's ``truncation: "auto"``; a run's
``truncation_strategy``; jan's ``truncation`` on chat completions), a 400 in the dialect's shape where not.

The model is a tiny random-weight llama with the phi-3 vocabulary and Mistral Nemo's real chat template,
which raises unless the turns after the system message alternate user/assistant: a shortened conversation
must start at a user turn.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from jan.services.fit import _candidates, _starts
from jan.services.types import ChatMessage, ToolCall
from jan.testing.gguf_models import write_strict_chat_model
from server_helpers import start_server

N_CTX = 256
MODEL = "nemo-tiny"
SYSTEM = "You are a terse narrator called Quill."
LAST = "Finally tell me the ending of the lighthouse story."
TIMEOUT = 120


def _turn(i: int) -> str:
    # ~40 tokens each: a dozen turns are well over the 256-token context, two or three fit
    return f"Question {i}: " + " ".join(f"the keeper number {i} climbed stair {k}" for k in range(5))


def conversation(pairs: int = 12) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM}]
    for i in range(pairs):
        messages += [{"role": "user", "content": _turn(i)}, {"role": "assistant", "content": f"Answer {i}."}]
    return messages + [{"role": "user", "content": LAST}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab_dir):
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    tmp = tmp_path_factory.mktemp("truncation")
    path = write_strict_chat_model(tmp / f"{MODEL}.gguf")
    srv = start_server(tmp, [path], n_ctx=N_CTX, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as c:
        yield c


def n_tokens(client: httpx.Client, text: str) -> int:
    r = client.post("/v1/tokenize", json={"model": MODEL, "content": text, "add_special": False,
                                          "parse_special": True})
    assert r.status_code == 200, r.text
    return len(r.json()["tokens"])


def rendered(client: httpx.Client, messages: list[dict], **extra) -> str:
    r = client.post("/v1/apply-template", json={"model": MODEL, "messages": messages, **extra})
    assert r.status_code == 200, r.text
    return r.json()["prompt"]


# -- where a conversation may start -------------------------------------------------------------
def test_a_shortened_conversation_starts_at_a_user_turn_and_keeps_its_system_messages():
    call = ToolCall("c1", "lookup", "{}")
    messages = (ChatMessage.of_text("system", "s"), ChatMessage.of_text("user", "u0"),
                ChatMessage("assistant", (), tool_calls=(call,)), ChatMessage.of_text("tool", "r", tool_call_id="c1"),
                ChatMessage.of_text("assistant", "a0"), ChatMessage.of_text("developer", "d"),
                ChatMessage.of_text("user", "u1"), ChatMessage.of_text("assistant", "a1"),
                ChatMessage.of_text("user", "u2"))
    # never at the first turn (nothing would be dropped), never at a tool result or an assistant turn
    assert _starts(messages) == [6, 8]
    assert _candidates(messages) == [[0, 5, 6, 7, 8], [0, 5, 8]]  # longest first; system and developer stay
    assert _starts((ChatMessage.of_text("system", "s"), ChatMessage.of_text("user", "only"))) == []
    assert _candidates((ChatMessage.of_text("system", "s"), ChatMessage.of_text("user", "only"))) == []


def test_an_agents_tool_loop_is_shortened_by_whole_rounds_after_its_last_user_turn():
    def round_(k: int) -> tuple[ChatMessage, ChatMessage]:
        call = ToolCall(f"c{k}", "lookup", "{}")
        return ChatMessage("assistant", (), tool_calls=(call,)), ChatMessage.of_text("tool", "r", tool_call_id=f"c{k}")

    messages = (ChatMessage.of_text("system", "s"), ChatMessage.of_text("user", "task"),
                *round_(1), *round_(2), *round_(3))
    # the user's task stays; the oldest rounds go, a call never without its result
    assert _candidates(messages) == [[0, 1, 4, 5, 6, 7], [0, 1, 6, 7]]


# -- chat completions (jan's "truncation", as the Responses API names it) ---------------------------
def test_over_the_context_without_truncation_is_a_400(client):
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": conversation(), "max_tokens": 4})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_auto_truncation_keeps_the_system_message_the_last_turn_and_as_many_recent_turns_as_fit(client):
    messages = conversation()
    prompt = rendered(client, messages, truncation="auto")
    assert SYSTEM in prompt and LAST in prompt
    assert _turn(0) not in prompt and "Answer 0." not in prompt
    assert n_tokens(client, prompt) < N_CTX
    kept_pairs = [i for i in range(12) if _turn(i) in prompt]
    assert kept_pairs and kept_pairs == list(range(kept_pairs[0], 12))  # a recent, unbroken run of turns
    for i in kept_pairs:
        assert f"Answer {i}." in prompt  # each kept question with its answer
    # the earliest start that fits: one more turn back does not
    first = kept_pairs[0]
    longer = [messages[0]] + messages[1 + 2 * (first - 1):]
    assert n_tokens(client, rendered(client, longer)) >= N_CTX - 1


def test_auto_truncation_answers(client):
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": conversation(), "max_tokens": 4,
                                                  "temperature": 0, "truncation": "auto"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["usage"]["prompt_tokens"] < N_CTX
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


def test_an_agent_loop_longer_than_the_context_keeps_its_task_and_latest_rounds(client):
    tool = {"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": LAST}]
    for k in range(12):  # Mistral's template wants 9-character call ids
        call_id = f"call{k:05d}"
        messages += [{"role": "assistant", "content": None, "tool_calls": [
                         {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": f'{{"q": "w{k}"}}'}}]},
                     {"role": "tool", "tool_call_id": call_id, "content": _turn(k)}]
    body = {"model": MODEL, "messages": messages, "tools": [tool]}
    r = client.post("/v1/apply-template", json=body)
    assert r.status_code == 200 and n_tokens(client, r.json()["prompt"]) >= N_CTX  # too long as it is
    prompt = rendered(client, messages, tools=[tool], truncation="auto")
    # (Mistral's template writes the system message only into a final user turn: not checked here)
    assert LAST in prompt and _turn(11) in prompt and _turn(0) not in prompt
    assert n_tokens(client, prompt) < N_CTX
    r = client.post("/v1/chat/completions", json={**body, "truncation": "auto", "max_tokens": 2})
    assert r.status_code == 200, r.text


def test_a_truncated_conversation_keeps_room_for_max_tokens(client):
    body = {"model": MODEL, "messages": conversation(), "temperature": 0, "ignore_eos": True, "truncation": "auto"}
    r = client.post("/v1/chat/completions", json={**body, "max_tokens": 40})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] + 40 <= N_CTX and usage["completion_tokens"] == 40
    assert r.json()["choices"][0]["finish_reason"] == "length"
    # room for at most half the context: a bigger max_tokens does not empty the history
    r = client.post("/v1/chat/completions", json={**body, "max_tokens": 10_000})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] > N_CTX // 4


def test_a_last_turn_that_does_not_fit_alone_is_still_a_400(client):
    messages = conversation(2)
    messages[-1] = {"role": "user", "content": " ".join(["lighthouse keeper"] * N_CTX)}
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 4,
                                                  "truncation": "auto"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and "last user turn" in error["message"]


def test_a_bad_truncation_value_is_a_400(client):
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": conversation(1), "truncation": "middle"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "truncation"


def test_a_conversation_that_fits_is_left_whole(client):
    messages = conversation(1)
    assert rendered(client, messages, truncation="auto") == rendered(client, messages)


# -- Ollama: truncate is on unless a request says false ------------------------------------------
def test_ollama_chat_truncates_by_default_and_refuses_with_truncate_false(client):
    body = {"model": MODEL, "messages": conversation(), "stream": False, "options": {"num_predict": 4}}
    r = client.post("/api/chat", json=body)
    assert r.status_code == 200, r.text
    assert 0 < r.json()["prompt_eval_count"] < N_CTX
    r = client.post("/api/chat", json={**body, "truncate": False})
    assert r.status_code == 400 and "error" in r.json()
    r = client.post("/api/chat", json={**body, "truncate": "yes"})  # a wrong type, as Go's decoder refuses it
    assert r.status_code == 400


def test_ollama_streamed_chat_truncates_too(client):
    body = {"model": MODEL, "messages": conversation(), "options": {"num_predict": 3}, "shift": True}
    with client.stream("POST", "/api/chat", json=body) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and 0 < lines[-1]["prompt_eval_count"] < N_CTX


# -- the Responses API ------------------------------------------------------------------------------
def _responses_input() -> list[dict]:
    return [m for m in conversation() if m["role"] != "system"]


def test_responses_truncation_auto_and_disabled(client):
    body = {"model": MODEL, "instructions": SYSTEM, "input": _responses_input(), "max_output_tokens": 4,
            "temperature": 0, "store": False}
    r = client.post("/v1/responses", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"
    r = client.post("/v1/responses", json={**body, "truncation": "auto"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] in ("completed", "incomplete") and out["truncation"] == "auto"
    assert 0 < out["usage"]["input_tokens"] < N_CTX
    r = client.post("/v1/responses", json={**body, "truncation": "sometimes"})
    assert r.status_code == 400


# -- assistant runs: truncation_strategy (auto by default) ---------------------------------------
def _thread(client: httpx.Client) -> str:
    messages = [m for m in conversation() if m["role"] != "system"]
    r = client.post("/v1/threads", json={"messages": messages})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_a_run_on_a_thread_longer_than_the_context_completes(client):
    thread = _thread(client)
    r = client.post(f"/v1/threads/{thread}/runs", json={"model": MODEL, "instructions": SYSTEM, "max_tokens": 4,
                                                        "temperature": 0, "stream": True})
    assert r.status_code == 200, r.text  # the stream ends with the run
    run_id = next(json.loads(line[6:])["id"] for line in r.text.splitlines()
                  if line.startswith("data: {") and '"thread.run"' in line)
    run = client.get(f"/v1/threads/{thread}/runs/{run_id}").json()
    assert run["status"] in ("completed", "incomplete"), run
    assert run["truncation_strategy"] == {"type": "auto", "last_messages": None}
    assert 0 < run["usage"]["prompt_tokens"] < N_CTX


def test_a_run_with_last_messages_echoes_its_strategy_and_needs_the_count(client):
    thread = _thread(client)
    r = client.post(f"/v1/threads/{thread}/runs", json={
        "model": MODEL, "max_tokens": 2, "stream": True,
        "truncation_strategy": {"type": "last_messages", "last_messages": 3}})
    assert r.status_code == 200, r.text
    created = next(json.loads(line[6:]) for line in r.text.splitlines()
                   if line.startswith("data: {") and '"thread.run"' in line)
    assert created["truncation_strategy"] == {"type": "last_messages", "last_messages": 3}
    r = client.post(f"/v1/threads/{thread}/runs", json={"model": MODEL, "truncation_strategy": {"type": "last_messages"}})
    assert r.status_code == 400 and "last_messages" in r.json()["error"]["message"]


# -- images: a dropped turn's images go with it; the kept ones still count ----------------------------
def _png(color) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_images_in_dropped_turns_go_and_the_kept_ones_count(tmp_path, vision_pair):
    model_path, _mmproj = vision_pair  # each image is 64 tokens of the prompt
    srv = start_server(tmp_path, [model_path], n_ctx=N_CTX, n_parallel=1)
    try:
        messages = [{"role": "system", "content": SYSTEM}]
        for i in range(4):
            messages += [{"role": "user", "content": [{"type": "text", "text": f"Picture {i}?"},
                                                      {"type": "image_url", "image_url": {"url": _png((60 * i, 0, 0))}}]},
                         {"role": "assistant", "content": f"A red square, shade {i}."}]
        messages.append({"role": "user", "content": [{"type": "text", "text": "And this one?"},
                                                     {"type": "image_url", "image_url": {"url": _png((0, 0, 200))}}]})
        body = {"model": "vision-chat", "messages": messages, "max_tokens": 2, "temperature": 0}
        with httpx.Client(base_url=srv.base_url, timeout=TIMEOUT) as c:
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
            r = c.post("/v1/chat/completions", json={**body, "truncation": "auto"})
            assert r.status_code == 200, r.text
            used = r.json()["usage"]["prompt_tokens"]
            assert 2 * 64 < used < N_CTX  # the last turn's image and at least one earlier one, not all five
    finally:
        srv.stop()
