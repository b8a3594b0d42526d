"""Thinking models through the OpenAI server: reasoning_content, request switches, budget, apply-template."""

from __future__ import annotations

import json
from pathlib import Path

import urllib.error
import urllib.request
import openai
import pytest

from jan.templates import gbnf_literal
from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

from conftest import require_model
from dialect_helpers import folded_chat_stream
from server_helpers import start_server

class _Response:
    def __init__(self, status_code: int, body: bytes):
        self.status_code = status_code
        self._body = body

    def json(self):
        return json.loads(self._body)


class httpx:  # noqa: N801 - a two-line stand-in, so the test needs no HTTP client beyond the stdlib
    @staticmethod
    def post(url: str, json: dict) -> _Response:
        import json as _json

        request = urllib.request.Request(url, data=_json.dumps(json).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return _Response(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, exc.read())


TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "templates"


def _thinker(tmp: Path, name: str, template: str) -> Path:
    require_model("vocab/ggml-vocab-qwen2.gguf")
    source = (TEMPLATES / f"{template}.jinja").read_text()
    return write_llama_from_vocab(tmp / f"{name}.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2,
                                  n_ff=32, n_ctx=1024, chat_template=source)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reasoning-server")
    models = [_thinker(tmp, "qwq-tiny", "Qwen-QwQ-32B"), _thinker(tmp, "qwen3-tiny", "Qwen-Qwen3-0.6B")]
    srv = start_server(tmp, models)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


ASK = [{"role": "user", "content": "What is 2+2?"}]
THOUGHT = "Two and two.\n</think>\n\nFour."


def _force(text: str) -> dict:
    return {"grammar": "root ::= " + gbnf_literal(text)}


def test_openai_client_reads_reasoning_content_streamed_and_whole(client):
    # this QwQ template thinks only when asked (enable_thinking): reasoning_effort is the switch
    stream = client.chat.completions.create(model="qwq-tiny", messages=ASK, stream=True, temperature=0,
                                            reasoning_effort="high", extra_body=_force(THOUGHT))
    reasoning, content = [], []
    for chunk in stream:
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if extra.get("reasoning_content"):
                reasoning.append(extra["reasoning_content"])
            if choice.delta.content:
                content.append(choice.delta.content)
    assert "".join(reasoning) == "Two and two."
    assert "".join(content) == "Four."

    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0, reasoning_effort="high",
                                           extra_body=_force(THOUGHT))
    message = whole.choices[0].message
    assert message.content == "Four."
    assert message.model_extra["reasoning_content"] == "Two and two."


def test_reasoning_format_none_keeps_thinking_in_content(client):
    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0,
                                           extra_body={**_force(THOUGHT), "reasoning_format": "none", "think": True})
    message = whole.choices[0].message
    assert message.content == "<think>" + THOUGHT
    assert not (message.model_extra or {}).get("reasoning_content")


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_format_deepseek_legacy_keeps_thinking_in_content_and_splits_it(client, stream):
    # llama-server's deepseek-legacy: <think> tags stay in the content, reasoning_content is filled too
    body = dict(model="qwq-tiny", messages=ASK, temperature=0,
                extra_body={**_force(THOUGHT), "reasoning_format": "deepseek-legacy", "think": True})
    if stream:
        message = folded_chat_stream(client, **body)
        content, reasoning = message["content"], message["reasoning"]
    else:
        message = client.chat.completions.create(**body).choices[0].message
        content, reasoning = message.content, message.model_extra["reasoning_content"]
    assert content == "<think>" + THOUGHT
    assert reasoning == "Two and two."


def test_think_false_turns_thinking_off_in_the_template(client, server):
    prompt_on = httpx.post(server.base_url + "/apply-template",
                           json={"model": "qwq-tiny", "messages": ASK, "think": True}).json()["prompt"]
    prompt_off = httpx.post(server.base_url + "/v1/apply-template",
                            json={"model": "qwq-tiny", "messages": ASK, "think": False}).json()["prompt"]
    assert prompt_on.endswith("<think>\n")
    assert prompt_off.endswith("<think>\n</think>")
    effort_none = httpx.post(server.base_url + "/apply-template",
                             json={"model": "qwq-tiny", "messages": ASK, "reasoning_effort": "none"}).json()["prompt"]
    assert effort_none == prompt_off
    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0,
                                           extra_body={**_force("\n\nFour."), "think": False})
    assert whole.choices[0].message.content == "\n\nFour."
    assert not (whole.choices[0].message.model_extra or {}).get("reasoning_content")


def test_apply_template_matches_what_the_chat_request_renders(server):
    r = httpx.post(server.base_url + "/apply-template",
                   json={"model": "qwen3-tiny", "messages": ASK, "chat_template_kwargs": {"enable_thinking": False}})
    assert r.status_code == 200
    assert r.json()["prompt"] == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    bad = httpx.post(server.base_url + "/apply-template", json={"model": "qwen3-tiny", "messages": ASK, "reasoning_effort": "extreme"})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("reasoning_effort: "), bad.text


def test_earlier_reasoning_goes_back_as_the_template_expects(server):
    call = {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": "{\"x\": 1}"}}
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]
    # Qwen3 keeps the thinking of the turns after the last user message (a tool loop) ...
    in_loop = [*ASK, {"role": "assistant", "content": "", "reasoning_content": "Use calc.", "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "4"}]
    prompt = httpx.post(server.base_url + "/apply-template",
                        json={"model": "qwen3-tiny", "messages": in_loop, "tools": tools}).json()["prompt"]
    assert "<think>\nUse calc.\n</think>" in prompt
    # ... and drops it from finished turns
    done = [*ASK, {"role": "assistant", "content": "4", "reasoning_content": "Easy sum."}, {"role": "user", "content": "And 3+3?"}]
    prompt = httpx.post(server.base_url + "/apply-template", json={"model": "qwen3-tiny", "messages": done}).json()["prompt"]
    assert "Easy sum." not in prompt


def test_reasoning_budget_closes_thinking_and_an_answer_follows(client):
    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0, max_tokens=24,
                                           extra_body={"reasoning_budget": 5, "ignore_eos": True, "think": "high"})
    message = whole.choices[0].message
    assert message.model_extra["reasoning_content"]
    assert message.content  # the engine closed </think> after 5 tokens; the answer used the rest
    assert whole.usage.completion_tokens == 24


def test_n_choices_each_split_their_thinking(client):
    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0, n=2, reasoning_effort="low",
                                           extra_body=_force(THOUGHT))
    assert len(whole.choices) == 2
    for choice in whole.choices:
        assert choice.message.content == "Four."
        assert choice.message.model_extra["reasoning_content"] == "Two and two."


WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
THEN_CALL = 'Need weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_thinking_then_a_tool_call_with_logprobs_streamed_and_whole(client):
    kwargs = dict(model="qwq-tiny", messages=ASK, temperature=0, reasoning_effort="high", tools=WEATHER,
                  logprobs=True, extra_body=_force(THEN_CALL))
    whole = client.chat.completions.create(**kwargs)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    assert choice.message.model_extra["reasoning_content"] == "Need weather."
    [call] = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert len(choice.logprobs.content) == whole.usage.completion_tokens  # one per token, thinking included
    streamed = folded_chat_stream(client, **kwargs)
    assert streamed == {"reasoning": "Need weather.", "content": "", "logprobs": whole.usage.completion_tokens,
                        "calls": [("get_weather", call.function.arguments)], "finish_reason": "tool_calls"}


@pytest.mark.parametrize(("stop", "reasoning", "content"), [
    # a client's stop strings match the answer's text only: never inside the thinking ...
    ("and two", "Two and two.", "Four and more."),
    ("</think>", "Two and two.", "Four and more."),  # ... nor at its end marker (markup, not answer)
    ("more", "Two and two.", "Four and "),           # inside the answer: it ends there, the thinking whole
])
def test_stop_strings_with_thinking_streamed_and_whole(client, stop, reasoning, content):
    kwargs = dict(model="qwq-tiny", messages=ASK, temperature=0, reasoning_effort="high", stop=[stop],
                  extra_body=_force("Two and two.\n</think>\n\nFour and more."))
    whole = client.chat.completions.create(**kwargs).choices[0]
    assert whole.finish_reason == "stop"
    assert (whole.message.model_extra["reasoning_content"], whole.message.content or "") == (reasoning, content)
    streamed = folded_chat_stream(client, **kwargs)
    assert (streamed["reasoning"], streamed["content"], streamed["finish_reason"]) == (reasoning, content, "stop")


def _control(server, body: dict, path: str = "/v1/chat/completions/control") -> tuple[int, dict]:
    r = httpx.post(server.base_url + path, json=body)
    return r.status_code, r.json()


def test_reasoning_control_ends_the_thinking_of_a_running_reply(client, server):
    # llama-server's reasoning_control: the reply's id, taken from its first chunk, ends its thinking; the model then
    # answers in the same reply. (logprobs with 20 alternatives over Qwen's 151k-token vocabulary slow each token,
    # so the reply is still thinking when the control arrives; the other outcome is checked too, as it is.)
    stream = client.chat.completions.create(
        model="qwq-tiny", messages=ASK, temperature=0, max_tokens=900, stream=True, logprobs=True, top_logprobs=20,
        extra_body={"reasoning_control": True, "ignore_eos": True})
    chunks = [next(iter(stream))]
    status, answer = _control(server, {"id": chunks[0].id, "action": "reasoning_end"})
    chunks += list(stream)
    assert status == 200 and isinstance(answer["success"], bool)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning  # the prompt opened the thinking (QwQ)
    if answer["success"]:
        assert content, "the thinking was ended, and the answer follows it"
    else:
        assert not content and "ended" in answer["message"]
    # once the reply is over its id is gone
    assert _control(server, {"id": chunks[0].id, "action": "reasoning_end"}) == (200, {
        "success": False, "message": "no active completion for this id (it has ended, or it was not asked with "
                                     "reasoning_control: true)"})


def test_reasoning_control_answers_in_llama_servers_shapes(client, server):
    assert _control(server, {"id": "chatcmpl-none", "action": "reasoning_end"})[1]["success"] is False
    for body, param in (({"action": "reasoning_end"}, "id"), ({"id": "x", "action": "pause"}, "action"),
                        ({"id": "", "action": "reasoning_end"}, "id"), ({"id": 5, "action": "reasoning_end"}, "id")):
        status, answer = _control(server, body)
        # (llama-server's error shape: no OpenAI API has this route, on either path)
        assert status == 400 and set(answer) == {"error"} and answer["error"]["code"] == 400, answer
        assert answer["error"]["message"].startswith(param) and "param" not in answer["error"], answer
    status, answer = _control(server, {"action": "reasoning_end"}, path="/chat/completions/control")
    assert status == 400 and answer["error"]["code"] == 400 and answer["error"]["message"].startswith("id"), answer
    # a reply not asked with reasoning_control keeps no handle, and its chunks' ids are their own
    whole = client.chat.completions.create(model="qwq-tiny", messages=ASK, temperature=0, max_tokens=2)
    assert whole.id.startswith("chatcmpl-")
    assert _control(server, {"id": whole.id, "action": "reasoning_end"})[1]["success"] is False


def test_a_control_on_no_thinking_or_before_its_start():
    # (the arming is the format's: a format without thinking markers has no budget sampler to close it)
    from jan.services.control import GenerationControl

    control = GenerationControl()
    control.attach([], armed=False)
    assert control.end_reasoning() == "not_armed"
    early = GenerationControl()
    assert early.end_reasoning() == "pending"


def test_ended_before_the_first_token_the_reply_answers_at_once(tmp_path):
    # Through the typed path in-process, deterministic: a control asked before the engine requests exist ends the
    # thinking as they start (pending, then done at attach), so the reply's thinking is closed at its first token
    # and the whole reply is its answer; without the ask the same greedy reply thinks to its token limit.
    import asyncio

    from jan.services import open_services
    from jan.services.control import GenerationControl
    from jan.services.types import ChatMessage, ChatRequest, SamplingOptions
    from jan.store import DataFolder

    path = _thinker(tmp_path, "qwq-tiny", "Qwen-QwQ-32B")
    DataFolder(tmp_path / "data").models.import_gguf(path, model_id="qwq", mode="reference")

    async def ask(end_first: bool):
        async with open_services(tmp_path / "data") as services:
            control = GenerationControl()
            if end_first:
                assert control.end_reasoning() == "pending"
            request = ChatRequest(model="qwq", messages=(ChatMessage.of_text("user", "What is 2+2?"),),
                                  sampling=SamplingOptions(temperature=0, max_tokens=24, ignore_eos=True),
                                  control=control)
            result = (await services.chat.complete(request)).choices[0].message
            assert control.end_reasoning() == "finished"
            return result

    thought, ended = asyncio.run(ask(False)), asyncio.run(ask(True))
    assert thought.reasoning and not thought.text  # (24 tokens of a random model's thinking)
    assert not (ended.reasoning or "").strip() and ended.text


def test_a_control_leaves_alone_a_thinking_the_clients_own_grammar_holds(tmp_path):
    # A raw GBNF grammar is the whole output's, thinking included: the engine could end that thinking only by forcing
    # the end marker against the grammar (an error naming a reasoning_budget nobody set, the reply lost). Deterministic,
    # in-process: an end asked before the requests start is not done; the reply is the grammar's, whole, and the
    # control says why it could not end anything.
    import asyncio

    from jan.services import open_services
    from jan.services.control import GRAMMAR_HOLDS_THINKING, GenerationControl
    from jan.services.types import ChatMessage, ChatRequest, SamplingOptions
    from jan.store import DataFolder

    path = _thinker(tmp_path, "qwq-tiny", "Qwen-QwQ-32B")
    DataFolder(tmp_path / "data").models.import_gguf(path, model_id="qwq", mode="reference")
    grammar = _force(THOUGHT)["grammar"]

    async def ask(control):
        async with open_services(tmp_path / "data") as services:
            request = ChatRequest(model="qwq", messages=(ChatMessage.of_text("user", "What is 2+2?"),),
                                  sampling=SamplingOptions(temperature=0, max_tokens=40), grammar=grammar,
                                  control=control)
            return (await services.chat.complete(request)).choices[0].message

    control = GenerationControl()
    assert control.end_reasoning() == "pending"
    held, free = asyncio.run(ask(control)), asyncio.run(ask(None))
    assert (held.reasoning, held.text) == (free.reasoning, free.text) and "Four." in free.text
    assert control.end_reasoning() == "not_armed" and control.unarmed_reason == GRAMMAR_HOLDS_THINKING


def test_the_control_of_a_reply_its_grammar_holds_says_so(client, server):
    # Over HTTP (llama-server's grammar extra): the control answers success false naming the grammar, and the reply
    # runs to its end without an error. (Slow tokens keep the reply running when the control arrives, as above; a
    # reply already over answers "no active completion".)
    stream = client.chat.completions.create(
        model="qwq-tiny", messages=ASK, temperature=0, max_tokens=300, stream=True, logprobs=True, top_logprobs=20,
        extra_body={"reasoning_control": True, "ignore_eos": True, "grammar": "root ::= [a-z ]*"})
    chunks = [next(iter(stream))]
    status, answer = _control(server, {"id": chunks[0].id, "action": "reasoning_end"})
    chunks += list(stream)  # (an error event would raise here)
    assert status == 200 and answer["success"] is False
    assert "grammar" in answer["message"] or "no active completion" in answer["message"]
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/apply-template"])
def test_a_thinking_switch_that_is_no_boolean_is_refused(server, path):
    # the string "false" turned Qwen3's thinking on (its template tests "is false"), GLM's off ("not ..."), and
    # jan's own reading of the request ignored it: a 400 naming the switch, as llama-server answers
    for switches, key in (({"enable_thinking": "false"}, "enable_thinking"), ({"thinking": 0}, "thinking")):
        r = httpx.post(server.base_url + path, json={"model": "qwen3-tiny", "messages": ASK, "max_tokens": 1,
                                                     "chat_template_kwargs": switches})
        assert r.status_code == 400, r.json()
        error = r.json()["error"]  # (llama-server's /apply-template: its shape, the field named in the message)
        assert error.get("param", f"chat_template_kwargs.{key}") == f"chat_template_kwargs.{key}", error
        assert error["message"].startswith(f"chat_template_kwargs.{key}: "), error
    # null is the template's default, as though it were not given
    r = httpx.post(server.base_url + "/apply-template", json={"model": "qwen3-tiny", "messages": ASK,
                                                              "chat_template_kwargs": {"enable_thinking": None}})
    assert r.status_code == 200 and r.json()["prompt"].endswith("<|im_start|>assistant\n"), r.json()
