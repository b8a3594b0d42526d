"""A final assistant turn that holds only thinking (OpenAI's ``reasoning_content``, an Anthropic ``thinking`` block,
Ollama's ``thinking``, a Responses reasoning item with nothing after it) is a thought to go on: the prompt ends
inside the open thinking block, after it, and the reply's reasoning continues it — on every dialect, streamed or
not. A template that cannot end its prompt inside a thought (one that marks no thinking) is a 400 in the dialect's
own error shape. Before, such a turn was silently dropped: the prompt opened a fresh reply, as though the model had
never thought it."""

from __future__ import annotations

import json

import pytest

from api_helpers import parse_sse
from conftest import require_model
from dialect_helpers import QWEN2_IM_END
from extension_helpers import call
from jan.core import LocalModel
from jan.engine.model import Model
from jan.services.errors import RequestError
from jan.services.local import chat_plan, chat_prompt
from jan.services.output import output_parser
from jan.services.types import ChatMessage, ChatRequest, ReasoningOptions, ends_in_prefill
from jan.templates import ChatTemplate, gbnf_literal
from jan.templates.chat import TemplateError
from jan.templates.formats import detect_format
from jan.testing.gguf_models import (TINY_CHAT_CONFIG, models_dir, templates_dir, vocab_path,
                                     write_llama_from_vocab)
from server_helpers import start_server

HI = {"role": "user", "content": "hi"}
THOUGHT = "Let me see"
GOES_ON = " more.</think>\n\nFour."


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("thought")
    template = (models_dir().parent / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    qwen3 = write_llama_from_vocab(tmp / "qwen3-tiny.gguf", vocab_path("ggml-vocab-qwen2.gguf"), **TINY_CHAT_CONFIG,
                                   dtype="f32", chat_template=template,
                                   extra_kv={"tokenizer.ggml.eos_token_id": QWEN2_IM_END,
                                             "tokenizer.ggml.eot_token_id": QWEN2_IM_END})
    srv = start_server(tmp, [stories_path, qwen3])
    yield srv
    srv.stop()


@pytest.fixture
def forced_output(monkeypatch):
    """``force(text)``: every generation in this process writes ``text`` (a grammar put in where the engine is
    called: not every dialect takes one)."""
    original = Model.stream
    prompts: list = []  # each generation's prompt as text (token ids read back, special tokens written), in order

    def force(text: str) -> None:
        def stream(self, prompt, **kw):
            prompts.append(prompt if isinstance(prompt, str) else self.detokenize(prompt, unparse_special=True))
            return original(self, prompt, **{**kw, "grammar": "root ::= " + gbnf_literal(text)})

        monkeypatch.setattr(Model, "stream", stream)

    force.prompts = prompts
    return force


def _body(path: str, model: str, stream: bool) -> dict:
    """A request whose conversation ends in the thought ``THOUGHT`` alone, in the dialect's own words."""
    if path == "/v1/chat/completions":
        return {"model": model, "temperature": 0, "max_tokens": 32, "stream": stream,
                "messages": [HI, {"role": "assistant", "content": None, "reasoning_content": THOUGHT}]}
    if path == "/v1/messages":
        return {"model": model, "temperature": 0, "max_tokens": 32, "stream": stream, "messages": [
            HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": THOUGHT, "signature": ""}]}]}
    if path == "/api/chat":
        return {"model": model, "stream": stream, "options": {"num_predict": 32, "temperature": 0},
                "messages": [HI, {"role": "assistant", "content": "", "thinking": THOUGHT}]}
    return {"model": model, "temperature": 0, "max_output_tokens": 32, "stream": stream, "store": False,
            "input": [HI, {"type": "reasoning", "id": "rs_1", "summary": [],
                           "content": [{"type": "reasoning_text", "text": THOUGHT}]}]}


def _reply(server, path: str, body: dict) -> tuple[str, str]:
    """``(thinking, text)`` of one reply in the dialect's own fields, from its stream or read whole."""
    status, out = call(server, "POST", path, body, timeout=300)
    assert status == 200, out
    thinking, text = [], []
    if path == "/api/chat":
        for obj in ([json.loads(line) for line in out.splitlines() if line] if body["stream"] else [out]):
            thinking.append(obj["message"].get("thinking") or "")
            text.append(obj["message"].get("content") or "")
    elif not body["stream"] and path == "/v1/messages":
        for block in out["content"]:
            thinking.append(block.get("thinking") or "")
            text.append(block.get("text") or "")
    elif not body["stream"] and path == "/v1/responses":
        for item in out["output"]:
            for part in item.get("content") or ():
                (thinking if item["type"] == "reasoning" else text).append(part.get("text") or "")
    elif not body["stream"]:
        message = out["choices"][0]["message"]
        thinking.append(message.get("reasoning_content") or "")
        text.append(message.get("content") or "")
    else:
        for name, data in parse_sse(out):
            if path == "/v1/messages" and name == "content_block_delta":
                thinking.append(data["delta"].get("thinking") or "")
                text.append(data["delta"].get("text") or "")
            elif path == "/v1/responses" and isinstance(data, dict):
                if data.get("type") == "response.reasoning_text.delta":
                    thinking.append(data["delta"])
                elif data.get("type") == "response.output_text.delta":
                    text.append(data["delta"])
            elif path == "/v1/chat/completions" and isinstance(data, dict) and data.get("choices"):
                delta = data["choices"][0]["delta"]
                thinking.append(delta.get("reasoning_content") or "")
                text.append(delta.get("content") or "")
    return "".join(thinking), "".join(text)


PATHS = ("/v1/chat/completions", "/v1/messages", "/api/chat", "/v1/responses")
DIALECTS = [pytest.param(path, stream, id=f"{path}{'-stream' if stream else ''}")
            for path in PATHS for stream in (False, True)]


@pytest.mark.parametrize("path, stream", DIALECTS)
def test_a_thinking_only_prefill_is_continued_inside_the_thought(server, forced_output, path, stream):
    forced_output(GOES_ON)
    # where the thinking is one text (OpenAI's reasoning_content, Ollama's thinking) the reply's goes on from the
    # thought with the whitespace the model wrote between them; Anthropic's and Responses' are a block (an item) of
    # their own, which starts at its first word as every block does (joined_thoughts parts blocks sent back)
    seam = "" if path in ("/v1/messages", "/v1/responses") else " "
    assert _reply(server, path, _body(path, "qwen3-tiny", stream)) == (f"{seam}more.", "Four.")


def test_the_prompt_ends_inside_the_open_thought(server):
    for body in ({"model": "qwen3-tiny", "messages": _body("/v1/chat/completions", "", False)["messages"]},
                 {"model": "qwen3-tiny", "messages": _body("/v1/chat/completions", "", False)["messages"],
                  "continue_final_message": "reasoning_content", "add_generation_prompt": False}):
        status, out = call(server, "POST", "/apply-template", body)
        assert status == 200, out
        assert out["prompt"].endswith(f"<|im_start|>assistant\n<think>\n{THOUGHT}"), out
    # llama-server's continue_final_message "reasoning_content" asks for exactly this: a message with content is
    # continued in its content, which that value does not ask for
    status, out = call(server, "POST", "/v1/chat/completions", {
        "model": "qwen3-tiny", "max_tokens": 2, "continue_final_message": "reasoning_content",
        "messages": [HI, {"role": "assistant", "content": "The", "reasoning_content": THOUGHT}]})
    assert status == 400 and out["error"]["param"] == "continue_final_message", out


@pytest.mark.parametrize("path", PATHS)
def test_a_template_that_marks_no_thinking_refuses_it_in_the_dialects_shape(server, path):
    """stories260K's template marks no thinking: nowhere to continue a thought, so a 400, never a fresh answer."""
    status, out = call(server, "POST", path, _body(path, "stories260K", False))
    assert status == 400, out
    if path == "/api/chat":
        message = out["error"]
        assert set(out) == {"error"}
    elif path == "/v1/messages":
        assert out["type"] == "error" and out["error"]["type"] == "invalid_request_error", out
        message = out["error"]["message"]
    else:
        assert out["error"]["type"] == "invalid_request_error", out
        message = out["error"]["message"]
    assert "holds only reasoning" in message, out


def _prompt_and_reply(local: LocalModel, messages: list[ChatMessage], output: str) -> tuple[str, str, str]:
    request = ChatRequest(model=None, messages=tuple(messages), continue_final_message=ends_in_prefill(messages),
                          reasoning=ReasoningOptions(enabled=True))
    plan = chat_plan(local, request)
    prompt, _ = chat_prompt(local, request, plan)
    parser = output_parser(request, plan, prompt)
    deltas = parser.feed(output) + parser.finish("stop")
    return prompt, "".join(d.reasoning or "" for d in deltas), "".join(d.content or "" for d in deltas)


def test_every_shared_template_continues_the_thought_or_refuses(stories):
    """The kind, on every real template: a thinking-only final turn ends the prompt in its thought, which the
    output continues as reasoning (the answer after the end marker), or the request is refused; never dropped."""
    folder = templates_dir()
    if not folder.is_dir():
        require_model("..", "templates")
    user = ChatMessage.of_text("user", "hi")
    continued = 0
    for path in sorted(folder.glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        fmt = detect_format(source)
        local = LocalModel(stories, ChatTemplate(source, "<s>", "</s>"))
        end = fmt.reasoning.end if fmt.reasoning is not None else "</think>"
        try:
            prompt, reasoning, content = _prompt_and_reply(
                local, [user, ChatMessage("assistant", (), reasoning=THOUGHT)], GOES_ON.replace("</think>", end))
        except RequestError as exc:
            assert "holds only reasoning" in str(exc) and exc.param == "messages", path.name
            assert fmt.reasoning is None or fmt.channels, path.name  # (a format that marks thinking holds it)
            continue
        except TemplateError:
            continue  # the template's own refusal of a final assistant message
        assert prompt.endswith(THOUGHT), path.name
        assert fmt.starts_in_reasoning(prompt, THOUGHT), path.name
        assert (reasoning, content) == (" more.", "Four."), path.name
        continued += 1
    assert continued >= 25  # the shared set has a few dozen thinking templates


# -- a run resumed after a stop of jan cut its reply off: the reply's thinking is continued, never dropped ----------
def _interrupted_run(server, content: list[dict]) -> tuple[str, str]:
    """A run of qwen3-tiny as jan's start-up leaves one that a stop cut off mid-reply (its record ``interrupted``, its
    reply ``stopped`` holding ``content``: the parts saved so far); returns (thread id, run id)."""
    from jan.services.run_records import save_record

    data = server.config.data_folder
    status, thread = call(server, "POST", "/v1/threads", {"messages": [HI]})
    assert status == 200, thread
    status, message = call(server, "POST", f"/v1/threads/{thread['id']}/messages", {
        "role": "assistant", "content": "stand-in", "status": "stopped", "metadata": {"stop_reason": "interrupted"}})
    assert status == 200, message
    # (the messages API takes no reasoning part: the reply's saved parts are written as a run saves them)
    path = data / "threads" / thread["id"] / "messages.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[-1]["id"] == message["id"]
    lines[-1]["content"] = content
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    run_id = f"run_{message['id'][-12:]}resumed"
    save_record(data, {"id": run_id, "object": "thread.run", "thread_id": thread["id"], "assistant_id": "jan",
                       "model": "qwen3-tiny", "instructions": "", "metadata": {}, "status": "interrupted",
                       "parameters": {"max_tokens": 32, "temperature": 0}, "message_id": message["id"], "step": 0,
                       "pending": []})
    return thread["id"], run_id


def _resumed(server, tid: str, run_id: str) -> tuple[dict, list[tuple[str, str]]]:
    """The run resumed to its end, and its reply's saved parts as ``(type, text)``."""
    from run_helpers import wait_for_run_sync

    status, run = call(server, "POST", f"/v1/threads/{tid}/runs/{run_id}/resume", {})
    assert status == 200, run
    run = wait_for_run_sync(lambda path: call(server, "GET", path)[1], run)
    status, message = call(server, "GET", f"/v1/threads/{tid}/messages/{run['message_id']}")
    assert status == 200, message
    return run, [(p["type"], p["text"]["value"]) for p in message["content"]]


def _reasoning_part(text: str, ms: int = 1234) -> dict:
    return {"type": "reasoning", "text": {"value": text, "annotations": []}, "duration_ms": ms}


def test_a_run_resumed_in_its_thought_continues_it(server, forced_output):
    """Cut off while thinking: the resumed turn's prompt ends inside the open thought, the model's reasoning goes on
    from it and the reply keeps the whole thought before its answer. Before, the resume handed on only the reply's
    text (none), so it started a fresh reply, as though the model had never thought it."""
    tid, run_id = _interrupted_run(server, [_reasoning_part(THOUGHT)])
    forced_output(GOES_ON)
    run, parts = _resumed(server, tid, run_id)
    assert run["status"] == "completed", run
    assert forced_output.prompts[-1].endswith(f"<|im_start|>assistant\n<think>\n{THOUGHT}")
    assert parts == [("reasoning", f"{THOUGHT} more."), ("text", "Four.")], parts


def test_a_run_resumed_after_its_thought_continues_its_text_with_the_thought_kept(server, forced_output):
    """Cut off after its thought ended: the answer's text goes on after the thought, which the prompt holds (the
    template writes the final turn's thinking) and the reply keeps, with how long it took."""
    tid, run_id = _interrupted_run(server, [_reasoning_part(THOUGHT),
                                            {"type": "text", "text": {"value": "The", "annotations": []}}])
    forced_output(" answer is four.")
    run, parts = _resumed(server, tid, run_id)
    assert run["status"] == "completed", run
    assert forced_output.prompts[-1].endswith(f"<|im_start|>assistant\n<think>\n{THOUGHT}\n</think>\n\nThe")
    assert parts == [("reasoning", THOUGHT), ("text", "The answer is four.")], parts
    status, message = call(server, "GET", f"/v1/threads/{tid}/messages/{run['message_id']}")
    assert message["content"][0].get("duration_ms") == 1234, message


def test_a_stored_response_cut_off_while_thinking_is_continued_by_previous_response_id(server, forced_output):
    """A response cut off in its thinking, gone on from by reference (``previous_response_id``, an input with no turn
    of its own), continues its thought as it does when its reasoning item is sent back in the input. Before, the
    thought was closed as an earlier turn and a fresh reply began after it."""
    forced_output("<think>\nLet me see more and more and more and more")
    status, cut = call(server, "POST", "/v1/responses", {"model": "qwen3-tiny", "input": [HI], "temperature": 0,
                                                          "max_output_tokens": 5, "store": True}, timeout=300)
    assert status == 200 and cut["status"] == "incomplete", cut
    assert [item["type"] for item in cut["output"]] == ["reasoning"], cut
    thought = cut["output"][0]["content"][0]["text"]
    forced_output(GOES_ON)
    status, out = call(server, "POST", "/v1/responses", {"model": "qwen3-tiny", "input": [], "temperature": 0,
                                                          "max_output_tokens": 32, "previous_response_id": cut["id"]},
                       timeout=300)
    assert status == 200, out
    assert forced_output.prompts[-1].endswith(f"<|im_start|>assistant\n<think>\n{thought.strip()}"), out
    assert [(item["type"], item["content"][0]["text"]) for item in out["output"]] == [
        ("reasoning", "more."), ("message", "Four.")], out


def _ended_thought_body(path: str) -> dict:
    """A request whose final assistant turn holds the thought ``THOUGHT``, ended, and the answer's first word."""
    if path == "/v1/chat/completions":
        return {"model": "qwen3-tiny", "max_tokens": 32, "messages": [
            HI, {"role": "assistant", "content": "The", "reasoning_content": THOUGHT}]}
    if path == "/v1/messages":
        return {"model": "qwen3-tiny", "max_tokens": 32, "messages": [HI, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": THOUGHT, "signature": ""}, {"type": "text", "text": "The"}]}]}
    return {"model": "qwen3-tiny", "stream": False, "options": {"num_predict": 32},
            "messages": [HI, {"role": "assistant", "content": "The", "thinking": THOUGHT}]}


@pytest.mark.parametrize("path", ("/v1/chat/completions", "/v1/messages", "/api/chat"))
def test_a_prefill_after_its_ended_thought_continues_the_answer_with_the_thought_kept(server, forced_output, path):
    """A final turn cut off after its thought ended (thought and some answer): the answer goes on, and the prompt
    holds the thought before it, as the template writes a final turn's thinking."""
    forced_output(" answer is four.")
    status, out = call(server, "POST", path, _ended_thought_body(path), timeout=300)
    assert status == 200, out
    assert forced_output.prompts[-1].endswith(f"<|im_start|>assistant\n<think>\n{THOUGHT}\n</think>\n\nThe"), out
