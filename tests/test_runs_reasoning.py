"""Thinking in runs: a run on a thinking template streams its reasoning as ``reasoning`` delta parts, saves it as
a ``reasoning`` content part before the text, and the next model turn gets it back with its turn — the chat
template keeps or drops it, as it was trained.

A tiny random-weight model with the qwen2 vocabulary and NVIDIA Nemotron 3 Nano's real template: its prompt
opens ``<think>``, it keeps the thinking of a tool loop's turns and writes Qwen3-Coder XML calls. A 4-token
thinking budget (model.json ``settings.reasoning_budget``) makes the engine close the thinking block; the
answer, or the call ``tool_choice`` forces, follows.
"""

from __future__ import annotations

import pytest
from api_helpers import Client, message_text, parse_sse, running
from run_helpers import run_to_end

from conftest import require_model
from jan.services.tool_loop import chat_messages
from jan.testing.gguf_models import TINY_CHAT_CONFIG, templates_dir, vocab_path, write_llama_from_vocab

pytestmark = pytest.mark.timeout(600)

MODEL = "nemotron3-tiny"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, vocab_dir):
    require_model("vocab/ggml-vocab-qwen2.gguf")
    template = (templates_dir() / "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja").read_text(encoding="utf-8")
    vocab = vocab_path("qwen2")
    from jan.testing.gguf_models import _read_tokenizer_kv

    names = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
             for t in _read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value]
    im_end = names.index("<|im_end|>")
    return write_llama_from_vocab(tmp_path_factory.mktemp("nemotron3") / f"{MODEL}.gguf", vocab, **TINY_CHAT_CONFIG,
                                  dtype="f32", chat_template=template,
                                  extra_kv={"tokenizer.ggml.eos_token_id": im_end, "tokenizer.ggml.eot_token_id": im_end})


@pytest.fixture
def server(tmp_path, model_path):
    with running(tmp_path / "data", model_path, n_ctx=2048) as srv:
        yield srv


def kinds(message: dict) -> list[str]:
    return [p["type"] for p in message["content"]]


def reasoning_text(message: dict) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p["type"] == "reasoning")


async def prompt_tokens(api: Client, messages: list[dict], tools: list | None = None) -> int:
    """Tokens of the prompt the chat template renders ``messages`` to (what a model turn is given)."""
    body = {"model": MODEL, "messages": messages, **({"tools": tools} if tools else {})}
    prompt = (await api.ok("POST", "/apply-template", body))["prompt"]
    tokens = await api.ok("POST", "/tokenize", {"model": MODEL, "content": prompt, "parse_special": True})
    return len(tokens["tokens"])


async def messages_of(api: Client, tid: str) -> list[dict]:
    # all: the tool results too (OpenAI's list leaves them to the run steps), as a run's history has them
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100&all=true"))["data"]


async def test_thinking_streams_and_is_saved_then_goes_back_with_its_turn(server):
    async with Client(server.base_url) as api:
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"reasoning_budget": 4}})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]}))["id"]
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs",
                                    json={"stream": True, "max_tokens": 12, "temperature": 0,
                                          "ignore_eos": True}) as resp:
            assert resp.status == 200
            events = parse_sse(await resp.text())
        parts = [part for name, data in events if name == "thread.message.delta" for part in data["delta"]["content"]]
        streamed = [p["type"] for p in parts]
        assert streamed[0] == "reasoning" and "text" in streamed
        assert streamed == sorted(streamed, key=lambda k: k != "reasoning")  # all the thinking, then the answer
        # each piece's index is its part's in the saved reply (which the SDK's stream helpers merge it into)
        assert [p["index"] for p in parts] == [1 if kind == "text" else 0 for kind in streamed]
        [reply] = [m for m in await messages_of(api, tid) if m["role"] == "assistant"]
        assert kinds(reply) == ["reasoning", "text"] and reply["status"] == "incomplete"  # max_tokens cut it
        assert reasoning_text(reply) == "".join(p["text"]["value"] for p in parts if p["type"] == "reasoning")
        assert message_text(reply) == "".join(p["text"]["value"] for p in parts if p["type"] == "text")
        assert reply["content"][0]["duration_ms"] >= 0
        assert "<think>" not in message_text(reply) and "</think>" not in message_text(reply)

        # the next run's history: the earlier turn goes back with its thinking; the template decides
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "And?"})
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2, "temperature": 0})
        history = chat_messages(await messages_of(api, tid), "")[:3]
        assert history[1] == {"role": "assistant", "content": message_text(reply),
                              "reasoning_content": reasoning_text(reply)}
        assert run["usage"]["prompt_tokens"] == await prompt_tokens(api, history)


async def test_a_tool_loop_keeps_its_thinking_as_the_template_expects(server):
    async with Client(server.base_url) as api:
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"reasoning_budget": 4}})
        assistant = await api.ok("POST", "/v1/assistants", {"name": "Weather", "model": MODEL, "tools": [WEATHER]})
        tid = (await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}], "messages": [
            {"role": "user", "content": "Weather in Paris?"}]}))["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
            "max_tokens": 200, "temperature": 0})
        assert run["status"] == "requires_action", run
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        calling = (await messages_of(api, tid))[1]
        # the thinking before the call is saved with the calling turn; none of the call's markup is text
        assert kinds(calling) == ["reasoning"] and reasoning_text(calling)
        assert calling["metadata"]["tool_calls"][0]["id"] == call["id"]
        first = calling["metadata"]["usage"]  # the calling turn's own, and so far the run's
        assert run["usage"] == first and first["prompt_tokens"] > 0
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": "Sunny"}]})
        assert done["status"] in ("completed", "incomplete"), done
        history = chat_messages((await messages_of(api, tid))[:3], "")
        assert history[1]["reasoning_content"] == reasoning_text(calling)
        # Nemotron 3 keeps the thinking of a tool loop's turns: the answering turn's prompt has it
        with_thinking = await prompt_tokens(api, history, [WEATHER])
        without = await prompt_tokens(api, [{k: v for k, v in m.items() if k != "reasoning_content"} for m in history],
                                      [WEATHER])
        assert with_thinking > without
        answer = (await messages_of(api, tid))[3]
        assert answer["id"] == done["message_id"] and answer["metadata"]["usage"]["prompt_tokens"] == with_thinking
        # the run's usage is both turns' (OpenAI's: "over the course of the run"), not the last turn's
        assert done["usage"]["prompt_tokens"] == first["prompt_tokens"] + with_thinking
        assert done["usage"]["completion_tokens"] == first["completion_tokens"] + \
            answer["metadata"]["usage"]["completion_tokens"]
        assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]


async def test_reasoning_effort_of_a_run_and_of_its_assistant(server):
    """OpenAI's ``reasoning_effort`` on runs and assistants: ``"none"`` turns thinking off (the template closes
    the thinking block itself), a run's own wins over its assistant's, and both are shown back."""
    async with Client(server.base_url) as api:
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"reasoning_budget": 4}})
        body = {"max_tokens": 8, "temperature": 0, "ignore_eos": True}

        async def reply_kinds(tid: str, run: dict) -> list[str]:
            assert run["status"] in ("completed", "incomplete"), run
            [reply] = [m for m in await messages_of(api, tid) if m["role"] == "assistant" and m["run_id"] == run["id"]]
            return kinds(reply)

        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]}))["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**body, "reasoning_effort": "none"})
        assert run["reasoning_effort"] == "none"
        assert await reply_kinds(tid, run) == ["text"]

        quiet = await api.ok("POST", "/v1/assistants", {"name": "Quiet", "model": MODEL, "reasoning_effort": "none"})
        assert quiet["reasoning_effort"] == "none"
        assert (await api.ok("GET", f"/v1/assistants/{quiet['id']}"))["reasoning_effort"] == "none"
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]}))["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**body, "assistant_id": quiet["id"]})
        assert run["reasoning_effort"] == "none" and await reply_kinds(tid, run) == ["text"]
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "And?"})
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**body, "assistant_id": quiet["id"],
                                                               "reasoning_effort": "high"})
        assert run["reasoning_effort"] == "high" and (await reply_kinds(tid, run))[0] == "reasoning"

        cleared = await api.ok("POST", f"/v1/assistants/{quiet['id']}", {"reasoning_effort": None})
        assert cleared["reasoning_effort"] is None
        status, error = await api.call("POST", f"/v1/threads/{tid}/runs", {**body, "reasoning_effort": "extreme"})
        assert status == 400 and error["error"]["param"] == "reasoning_effort"


async def test_a_runs_thinking_is_ended_by_its_control_and_the_answer_follows(server):
    # The chat page's "answer now": POST .../runs/{id}/control {"action": "reasoning_end"} while the run's turn
    # thinks (the template opens <think>; a random model thinks to its token limit unless told). The control is
    # sent at the first thinking delta; the other outcome (the turn had ended by then) is checked as it is.
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]}))["id"]
        answer = None
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs",
                                    json={"stream": True, "max_tokens": 1500, "temperature": 0,
                                          "ignore_eos": True}) as resp:
            assert resp.status == 200
            body = b""
            async for line in resp.content:
                body += line
                if answer is None and b'"type":"reasoning"' in line.replace(b" ", b""):
                    run_id = next(data["id"] for name, data in parse_sse(body.decode()) if name == "thread.run.created")
                    answer = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/control",
                                          {"action": "reasoning_end"})
        assert answer is not None
        [reply] = [m for m in await messages_of(api, tid) if m["role"] == "assistant"]
        assert kinds(reply)[0] == "reasoning"
        if answer["success"]:
            assert kinds(reply) == ["reasoning", "text"] and message_text(reply)
        else:
            assert "making no model turn" in answer["message"] and kinds(reply) == ["reasoning"]
        # once the run has ended there is no turn to act on
        late = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/control", {"action": "reasoning_end"})
        assert late["success"] is False and "making no model turn" in late["message"]
        status, error = await api.call("POST", f"/v1/threads/{tid}/runs/{run_id}/control", {"action": "pause"})
        assert status == 400 and error["error"]["param"] == "action"
