"""Reasoning tokens in the usage (OpenAI chat's ``completion_tokens_details.reasoning_tokens``, Responses'
``output_tokens_details.reasoning_tokens``) and a context-full end told apart from ``max_tokens`` (Anthropic's
``model_context_window_exceeded``).

The rule (:class:`jan.services.output.ReasoningTokens`): a generated token is a reasoning token when any of its text
lies in a thinking block, the block's markers and the whitespace after its closing marker included. The tests check
the counts against the tokens the model actually generated (their logprobs' bytes): a grammar forces the text, and a
tiny random model picks which tokens spell it.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest

from dialect_helpers import anthropic_client, http_body, named_events, openai_client, reasoning_model
from jan.services.output import ReasoningTokens
from jan.templates import gbnf_literal
from jan.templates.formats.harmony import harmony_reasoning_spans
from jan.templates.formats.reasoning import ReasoningMarkers, reasoning_spans
from jan.testing.gguf_models import write_qwen3_tool_model
from server_helpers import http_post, raw_request, start_server

ASK = [{"role": "user", "content": "What is 2+2?"}]
THINK = ReasoningMarkers("<think>", "</think>")


# -- the rule, without a model -------------------------------------------------------------
def test_spans_cover_each_block_with_its_markup():
    text = "<think>a</think>\n\nHi<think>b</think> Bye<think>c"
    # (the space after a block between two parts of the answer is the answer's: "Hi Bye", never "HiBye")
    assert [text[a:b] for a, b in reasoning_spans(text, THINK, open_at_start=False)] == [
        "<think>a</think>\n\n", "<think>b</think>", "<think>c"]
    opened = "x</think>\nHi"
    assert [opened[a:b] for a, b in reasoning_spans(opened, THINK, open_at_start=True)] == ["x</think>\n"]
    assert reasoning_spans("no thinking", THINK, open_at_start=False) == []
    harmony = ("<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final<|message|>Hi<|return|>")
    assert [harmony[a:b] for a, b in harmony_reasoning_spans(harmony)] == ["<|channel|>analysis<|message|>hmm<|end|>"]


class _Parser:
    def __init__(self, open_at_start: bool = False):
        self.open_at_start = open_at_start

    def reasoning_spans(self, text: str) -> list[tuple[int, int]]:
        return reasoning_spans(text, THINK, open_at_start=self.open_at_start)


def test_tokens_go_where_their_chunk_text_lies():
    pieces = {1: b"<think>", 2: b"ok", 3: b"</think>", 4: b"\n\n", 5: b"Hi", 6: b" there", 7: b"<|im_end|>"}
    tally = ReasoningTokens(pieces.__getitem__)
    tally.add("", [1])               # held back (a possible stop string), shown with the next chunk
    tally.add("<think>ok", [2])
    tally.add("</think>", [3])
    tally.add("\n\n", [4])
    tally.add("Hi there", [5, 6])    # a speculative step: two tokens, all answer
    tally.add("", [7])               # a matched stop string's: never shown, goes with the text before it
    assert tally.count(_Parser()) == 4
    # several tokens straddling a block's end: split token by token
    tally = ReasoningTokens(pieces.__getitem__)
    tally.add("<think>ok</think>\n\nHi there", [1, 2, 3, 4, 5, 6])
    assert tally.count(_Parser()) == 4
    # cut off inside thinking the prompt opened: everything, the stop's tokens too
    tally = ReasoningTokens(pieces.__getitem__)
    tally.add("ok", [2])
    tally.add("", [7])
    assert tally.count(_Parser(open_at_start=True)) == 2
    assert tally.count(_Parser()) == 0


def test_a_byte_that_is_no_utf8_is_placed_as_the_one_character_shown_for_it():
    """A lone byte token shows as U+FFFD (three bytes for the token's one): placed by the text's UTF-8, each token
    after it in a speculative step went two characters late, and the answer's "Hi" counted as thinking."""
    pieces = {1: b"x", 2: b"\xb5", 3: b"</think>", 4: b"\n\n", 5: b"Hi", 6: b" there"}
    tally = ReasoningTokens(pieces.__getitem__)
    tally.add("x\ufffd</think>\n\nHi there", [1, 2, 3, 4, 5, 6])
    assert tally.count(_Parser(open_at_start=True)) == 4


# -- through the server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reasoning-usage")
    srv = start_server(tmp, [reasoning_model(tmp), write_qwen3_tool_model(tmp / "qwen3-tiny.gguf")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _force(text: str) -> dict:
    return {"grammar": "root ::= " + gbnf_literal(text)}


def _expected(tokens: list[bytes], answer_from: list[tuple[int, int]]) -> int:
    """The rule applied to the generated tokens: those whose text overlaps a thinking span."""
    raw, at, count = b"".join(tokens), 0, 0
    for piece in tokens:
        first = len(raw[:at].decode("utf-8", "ignore"))
        last = max(first + 1, len(raw[:at + len(piece)].decode("utf-8", "ignore")))
        if any(min(last, b) > max(first, a) for a, b in answer_from):
            count += 1
        at += len(piece)
    return count


def _streamed_usage(client, **kwargs):
    usage = None
    for chunk in client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    return usage


def _responses_usage(server, model: str, extra: dict) -> dict:
    raw = raw_request(server.base_url, http_post("/v1/responses", {"model": model, "input": "What is 2+2?",
                                                                   "temperature": 0, **extra}))
    status, body = http_body(raw)
    assert status == 200, body
    import json

    return json.loads(body)


def _blocks(text: str, answers: list[str]) -> list[tuple[int, int]]:
    """The thinking spans of ``text`` whose answer pieces are ``answers``: everything else."""
    spans, at = [], 0
    for answer in answers:
        i = text.index(answer, at)
        spans.append((at, i))
        at = i + len(answer)
    return spans


@pytest.mark.parametrize(("model", "text", "answers", "extra"), [
    # QwQ's prompt opens <think>: the thinking runs from the output's start through "</think>\n\n"
    ("qwq-tiny", "Two and two.\n</think>\n\nFour.", ["Four."], {"reasoning_effort": "high"}),
    # Qwen3's model writes <think> itself
    ("qwen3-tiny", "<think>\nTwo and two.\n</think>\n\nFour.", ["Four."], {}),
    # interleaved: two blocks, each counted with its markup (the blank line after the second parts "Hi." from
    # "Bye." in the answer: the answer's)
    ("qwen3-tiny", "<think>\nA.\n</think>\n\nHi.<think>\nB.\n</think>\n\nBye.", ["Hi.", "\n\nBye."], {}),
    # an answer that ends in a tool call: its thinking counted (once), the call's tokens not
    ("qwen3-tiny", '<think>\nA.\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
     ['<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'],
     {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]}),
])
def test_reasoning_then_answer_counts_the_thinking_tokens(client, model, text, answers, extra):
    spans = _blocks(text, answers)
    kwargs = dict(model=model, messages=ASK, temperature=0, logprobs=True, extra_body={**_force(text), **extra})
    whole = client.chat.completions.create(**kwargs)
    tokens = [bytes(lp.bytes) for lp in whole.choices[0].logprobs.content]
    assert b"".join(tokens).decode() == text and len(tokens) == whole.usage.completion_tokens
    reasoning = whole.usage.completion_tokens_details.reasoning_tokens
    assert reasoning == _expected(tokens, spans)
    assert 0 < reasoning < whole.usage.completion_tokens  # the answer's tokens are not counted
    assert _streamed_usage(client, **kwargs).completion_tokens_details.reasoning_tokens == reasoning


def test_a_reply_cut_off_inside_its_thinking_is_all_reasoning(client, server):
    kwargs = dict(model="qwq-tiny", messages=ASK, temperature=0, max_tokens=6, reasoning_effort="high",
                  extra_body=_force("Two and two and two and two and two and two and two.\n</think>\n\nFour."))
    whole = client.chat.completions.create(**kwargs)
    assert whole.choices[0].finish_reason == "length" and not whole.choices[0].message.content
    assert whole.usage.completion_tokens == 6
    assert whole.usage.completion_tokens_details.reasoning_tokens == 6
    assert _streamed_usage(client, **kwargs).completion_tokens_details.reasoning_tokens == 6
    # Responses takes no grammar: the tiny model's own words, all thinking (QwQ's prompt opened it)
    response = _responses_usage(server, "qwq-tiny", {"max_output_tokens": 6, "reasoning": {"effort": "high"}})
    assert response["output"][0]["type"] == "reasoning"
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["output_tokens"] == 6
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == 6


def test_no_thinking_no_reasoning_tokens(client):
    whole = client.chat.completions.create(model="qwen3-tiny", messages=ASK, temperature=0,
                                           extra_body={**_force("Four."), "think": False})
    assert whole.usage.completion_tokens > 0
    assert whole.usage.completion_tokens_details.reasoning_tokens == 0


# -- a full context is not max_tokens -----------------------------------------------------------
def _anthropic(server) -> anthropic.Anthropic:
    return anthropic_client(server)


def test_anthropic_tells_a_full_context_from_max_tokens(client, server):
    # a prompt that leaves only a few positions of the 512-token context for the reply
    long = [{"role": "user", "content": "hello " * 200}]
    size = client.chat.completions.create(model="qwen3-tiny", messages=long, max_tokens=1, temperature=0,
                                          extra_body={"think": False}).usage.prompt_tokens
    filler = 490 - size
    assert filler > 0
    messages = [{"role": "user", "content": "hello " * (200 + filler)}]
    body = {"model": "qwen3-tiny", "messages": messages, "thinking": {"type": "disabled"}}
    # the random model's end token must not end a reply early (Anthropic's API has no ignore_eos: the model's
    # parameters, a layer under the request's, set it for this test)
    patch = httpx.patch(f"{server.base_url}/v1/models/qwen3-tiny", json={"parameters": {"ignore_eos": True}},
                        timeout=120)
    assert patch.status_code == 200, patch.text
    try:
        _context_full_checks(client, server, body, messages)
    finally:
        patch = httpx.patch(f"{server.base_url}/v1/models/qwen3-tiny", json={"parameters": {"ignore_eos": False}},
                            timeout=120)
        assert patch.status_code == 200, patch.text


def _context_full_checks(client, server, body, messages):
    greedy = {"temperature": 0}  # (the newest SDK has no temperature argument; the API takes it)
    full = _anthropic(server).messages.create(max_tokens=4096, extra_body=greedy, **body)
    assert full.stop_reason == "model_context_window_exceeded"
    assert 0 < full.usage.output_tokens < 4096
    capped = _anthropic(server).messages.create(max_tokens=3, extra_body=greedy, **body)
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 3
    for max_tokens, reason in ((4096, "model_context_window_exceeded"), (3, "max_tokens")):
        raw = raw_request(server.base_url, http_post("/v1/messages", {**body, **greedy, "max_tokens": max_tokens, "stream": True}))
        status, payload = http_body(raw)
        assert status == 200, payload
        [delta] = [data for name, data in named_events(payload) if name == "message_delta"]
        assert delta["delta"]["stop_reason"] == reason
    # the other dialects keep "length" for both
    chat = client.chat.completions.create(model="qwen3-tiny", messages=messages, temperature=0,
                                          extra_body={"think": False})
    assert chat.choices[0].finish_reason == "length"


def test_a_remote_upstreams_reasoning_tokens_pass_through():
    from jan.extensions.remote.wire import chat_deltas

    usage = {"prompt_tokens": 5, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 7}}
    [delta] = chat_deltas({"choices": [], "usage": usage})
    assert (delta.choice, delta.usage.completion_tokens, delta.reasoning_tokens) == (-1, 9, 7)
    [delta] = chat_deltas({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}})
    assert delta.reasoning_tokens == 0
