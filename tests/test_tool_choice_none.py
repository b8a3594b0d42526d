"""``tool_choice: "none"`` keeps the tools in the prompt where the tokens that open a call can be banned.

An agent that ends its tool turns with ``none`` (give the final answer now) sends the same conversation and
tools: a prompt rendered without the tools diverges from the system prompt on and is prefilled again from there.
With the tools kept, the turn reuses the KV cache of the ``auto`` turn before it, and the model cannot call:
the call's opening token is biased out over the client's own ``logit_bias``. Where a call opens with ordinary
text (several tokens), the prompt leaves the tools out as before. Real servers with tiny random-weight models
and real templates: Qwen3's (``<tool_call>`` one token, as in Qwen's own files) and a ChatML + Hermes
template over the phi-3 vocabulary (``<tool_call>`` is several tokens there).
"""

from __future__ import annotations

import pytest
from dialect_helpers import anthropic_client, openai_client

import jan
from jan.templates.formats.call_start import call_start_tokens, trigger_literals
from jan.templates.formats.detect import ChatFormat
from jan.testing.gguf_models import write_qwen3_tool_model, write_tool_template_model
from server_helpers import start_server

QWEN = "qwen3-tiny"
PHI = "phi3-hermes"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
          "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city, now. " * 8,
                                           "parameters": PARAMS}}]
CONVERSATION = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tool-choice-none")
    return tmp, write_qwen3_tool_model(tmp / f"{QWEN}.gguf", tool_tokens=True), write_tool_template_model(tmp / f"{PHI}.gguf")


@pytest.fixture(scope="module")
def server(paths):
    tmp, qwen, phi = paths
    srv = start_server(tmp, [qwen, phi])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


@pytest.fixture(scope="module")
def tool_call_token(paths):
    with jan.Model(paths[1], vocab_only=True) as model:
        ids = model.tokenize("<tool_call>", add_special=False, parse_special=True)
    assert len(ids) == 1
    return ids[0]


def chat(oai, model, choice, **extra):
    return oai.chat.completions.create(model=model, messages=CONVERSATION, tools=TOOLS, tool_choice=choice,
                                       temperature=0, **{"max_tokens": 8, **extra})


def test_trigger_literals_read_only_plain_alternations():
    assert trigger_literals("<tool_call>") == ["<tool_call>"]
    assert trigger_literals(r"<tool_call>|<function=") == ["<tool_call>", "<function="]
    assert trigger_literals(r"\[TOOL_CALLS\]") == ["[TOOL_CALLS]"]
    assert trigger_literals(r"<\|tool_calls_section_begin\|>") == ["<|tool_calls_section_begin|>"]
    for pattern in (None, "", r" ?functools\[", r"<tool_call>\s", "(a|b)", "a||b", "[ab]"):
        assert trigger_literals(pattern) is None, pattern


def test_call_start_tokens_need_one_token_per_opening():
    vocab = {"<tool_call>": [7], "<function=": [1, 2]}
    one = ChatFormat("hermes", trigger="<tool_call>")
    assert call_start_tokens(one, lambda text: vocab[text]) == (7,)
    assert call_start_tokens(ChatFormat("x", trigger=r"<tool_call>|<function="), lambda text: vocab[text]) is None
    assert call_start_tokens(ChatFormat("llama3", trigger=None), lambda text: vocab[text]) is None


def test_none_keeps_the_prefix_of_the_auto_turn(oai):
    first = chat(oai, QWEN, "auto")
    second = chat(oai, QWEN, "none")
    # the same prompt up to the generation prompt: the tools stayed, and the slot's cache served it
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= second.usage.prompt_tokens - 2, (cached, second.usage.prompt_tokens)


def test_none_never_opens_a_call_even_when_the_client_pushes_for_one(oai, tool_call_token):
    pushed = {str(tool_call_token): 100}
    # the bias works: with "auto" the model opens a call at once
    auto = chat(oai, QWEN, "auto", logit_bias=pushed, max_tokens=40)
    assert auto.choices[0].message.tool_calls or "<tool_call>" in (auto.choices[0].message.content or "")
    for _ in range(2):  # (streamed and whole alike: one path)
        reply = chat(oai, QWEN, "none", logit_bias=pushed, max_tokens=40).choices[0]
        assert not reply.message.tool_calls
        assert "<tool_call>" not in (reply.message.content or "")
        assert reply.finish_reason in ("stop", "length")
    streamed = oai.chat.completions.create(model=QWEN, messages=CONVERSATION, tools=TOOLS, tool_choice="none",
                                           max_tokens=40, temperature=0, logit_bias=pushed, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "<tool_call>" not in text


def test_a_call_opened_by_several_tokens_leaves_the_tools_out(oai):
    auto = chat(oai, PHI, "auto")
    none = chat(oai, PHI, "none")
    assert none.usage.prompt_tokens < auto.usage.prompt_tokens  # the tools' definitions are not in the prompt


def test_every_dialect_keeps_the_tools_with_none(server):
    client = anthropic_client(server, timeout=300)
    tools = [{"name": "get_weather", "description": TOOLS[0]["function"]["description"], "input_schema": PARAMS}]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=QWEN, max_tokens=4, tools=tools, tool_choice={"type": "auto"},
                                   system="You are a helpful assistant.", messages=ask)
    second = client.messages.create(model=QWEN, max_tokens=4, tools=tools, tool_choice={"type": "none"},
                                    system="You are a helpful assistant.", messages=ask)
    total = second.usage.input_tokens + (second.usage.cache_read_input_tokens or 0)
    assert total == first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= total - 2
    assert not [b for b in second.content if b.type == "tool_use"]

    oai = openai_client(server, timeout=300)
    resp_tools = [{"type": "function", "name": "get_weather", "parameters": PARAMS,
                   "description": TOOLS[0]["function"]["description"]}]
    r1 = oai.responses.create(model=QWEN, input="Weather in Rome?", tools=resp_tools, tool_choice="auto",
                              max_output_tokens=16, temperature=0)
    r2 = oai.responses.create(model=QWEN, input="Weather in Rome?", tools=resp_tools, tool_choice="none",
                              max_output_tokens=16, temperature=0)
    assert r2.usage.input_tokens == r1.usage.input_tokens
    assert r2.usage.input_tokens_details.cached_tokens >= r2.usage.input_tokens - 2
    assert not [o for o in r2.output if o.type == "function_call"]
