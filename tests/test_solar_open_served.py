"""Solar Open served: its calls and thinking read in every dialect, and a tool loop sent back renders.

A tiny random-weight model with the qwen2 vocabulary and Solar Open's real template: a forced call (the call grammar
of its own syntax, ``<|tool_calls|>`` messages) comes back as a call in chat completions (whole and streamed),
Anthropic's Messages and Ollama's chat, and the turn that answers it, with the call's thinking sent back, renders.
"""

from __future__ import annotations

import json

import pytest

from jan.testing.gguf_models import templates_dir, vocab_path, write_llama_from_vocab

from conftest import require_model
from dialect_helpers import anthropic_client, openai_client
from server_helpers import start_server

SOLAR = "solar-tiny"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Seoul"]}},
          "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
ASK = [{"role": "user", "content": "Weather in Seoul?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_model("vocab/ggml-vocab-qwen2.gguf")
    template = templates_dir() / "upstage-Solar-Open-100B.jinja"
    if not template.is_file():
        pytest.skip(f"template {template} missing")
    tmp = tmp_path_factory.mktemp("solar-open")
    path = write_llama_from_vocab(tmp / f"{SOLAR}.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2, n_ff=32,
                                  n_ctx=2048, chat_template=template.read_text(encoding="utf-8"))
    srv = start_server(tmp, [path], n_ctx=4096, n_parallel=1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


def test_a_forced_call_is_a_call_and_its_turn_goes_back(oai):
    m = oai.chat.completions.create(model=SOLAR, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120,
                                    temperature=0, parallel_tool_calls=False).choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls] == [
        ("get_weather", {"city": "Seoul"})]
    assert not m.content
    call = m.tool_calls[0]
    back = [*ASK, {"role": "assistant", "content": None, "reasoning_content": "Need the weather.",
                   "tool_calls": [{"id": call.id, "type": "function", "function": {
                       "name": "get_weather", "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = oai.chat.completions.create(model=SOLAR, messages=back, tools=TOOLS, max_tokens=8, temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_streamed_forced_call_is_a_call(oai):
    names, args = [], []
    for chunk in oai.chat.completions.create(model=SOLAR, messages=ASK, tools=TOOLS, tool_choice="required",
                                             max_tokens=120, temperature=0, parallel_tool_calls=False, stream=True):
        for choice in chunk.choices:
            assert not choice.delta.content
            for c in choice.delta.tool_calls or ():
                names.append(c.function.name or "")
                args.append(c.function.arguments or "")
    assert "".join(names) == "get_weather" and json.loads("".join(args)) == {"city": "Seoul"}


def test_anthropic_and_ollama_read_the_call(server):
    anth = anthropic_client(server, timeout=300)
    # greedy and one call, as the chat completions tests ask: at Anthropic's default temperature (1.0) a random
    # model begins a second call about one time in five, and max_tokens cuts it (a tool_use with no input yet)
    reply = anth.messages.create(model=SOLAR, max_tokens=120, messages=ASK, extra_body={"temperature": 0},
                                 tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                 tools=[{"name": "get_weather", "input_schema": PARAMS}])
    assert [(b.type, getattr(b, "input", None)) for b in reply.content] == [("tool_use", {"city": "Seoul"})]
    import urllib.request

    body = {"model": SOLAR, "messages": ASK, "tools": TOOLS, "stream": False,
            "options": {"temperature": 0, "num_predict": 120}, "format": None}
    request = urllib.request.Request(f"{server.base_url}/api/chat", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        message = json.loads(response.read())["message"]
    # (Ollama's chat has no forced call: a random model's answer is text or a call, never the markup)
    assert "<|" not in (message.get("content") or ""), message


ANSWER = {"type": "object", "properties": {"sky": {"type": "string", "enum": ["clear"]}}, "required": ["sky"],
          "additionalProperties": False}


def test_a_response_format_answer_opens_with_the_content_header(stories):
    """Solar Open writes an answer as a message: ``<|content|>ANSWER`` after the prompt's ``<|begin|>assistant``, or
    ``<|begin|>assistant<|content|>ANSWER`` after a thinking message, as its template renders an earlier answer. A
    response format's grammar held the bare JSON from the first token, so the model could not write the header it
    was trained to write before any answer. Now the grammar opens with it; a continued reply (already inside its
    message) goes on from its text."""
    from jan.errors import GrammarPrefixError
    from jan.templates import ChatTemplate, json_schema_to_grammar
    from jan.templates.formats import ChatPlan, ReasoningRequest, format_for_template

    template = ChatTemplate((templates_dir() / "upstage-Solar-Open-100B.jinja").read_text(encoding="utf-8"))
    answer = json_schema_to_grammar(ANSWER)
    for reasoning in ({}, {"effort": "high", "enabled": True}):
        plan = ChatPlan(format_for_template(template, False), ReasoningRequest(**reasoning))
        prompt = template.render(ASK, add_generation_prompt=True, **plan.template_kwargs())
        grammar = plan.grammar_options(prompt, answer=answer)["grammar"]
        # the engine reads a prefix as the model's own text: which ones the grammar lets an answer start with
        def starts(prefix: str) -> bool:
            try:
                stories.generate("x", max_tokens=1, temperature=0, grammar=grammar, grammar_prefix=prefix)
            except GrammarPrefixError:
                return False
            return True
        assert starts('<|content|>{"sky"') and starts('<|begin|>assistant<|content|>{"sky"'), reasoning
        assert not starts('{"sky"'), reasoning
        if reasoning:
            assert starts('<|think|>clouds?<|end|><|begin|>assistant<|content|>{"sky"')
    # continued: the reply's text is already inside the content message
    continued = [*ASK, {"role": "assistant", "content": '{"sky'}]
    plan = ChatPlan(format_for_template(template, False), ReasoningRequest())
    prompt = template.render(continued, add_generation_prompt=False, **plan.template_kwargs())
    if prompt.endswith('{"sky'):
        assert plan.grammar_options(prompt, continued='{"sky', answer=answer)["grammar"] == answer


def test_a_response_format_answer_is_read_as_json(oai):
    m = oai.chat.completions.create(model=SOLAR, messages=ASK, max_tokens=40, temperature=0, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}).choices[0].message
    assert json.loads(m.content) == {"sky": "clear"}, m.content
