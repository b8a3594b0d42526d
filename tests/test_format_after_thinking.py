"""A response format holds a reasoning model's answer, not its thinking, in every dialect.

Tiny random-weight models with the qwen2 vocabulary and real templates: DeepSeek R1 Distill's (its prompt opens
``<think>``; it thinks unless asked not to, as llama-server renders it) and Qwen3's (the model opens the block
itself). A random model never chooses to close its thinking, so a small thinking budget makes the engine write the
end marker: the grammar must let the thinking run free, take the forced end, then hold the answer to the format.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.request
from pathlib import Path

import pytest

from jan.templates import ChatTemplate, json_schema_to_grammar
from jan.templates.formats import ChatPlan, ReasoningRequest, format_for_template
from jan.templates.formats.after_thinking import until_marker_rules
from jan.templates.grammar import JSON_OBJECT_GRAMMAR, json_strings_without
from jan.testing.gguf_models import templates_dir, vocab_path, write_llama_from_vocab

from conftest import require_model
from dialect_helpers import anthropic_client, openai_client
from server_helpers import start_server

R1 = "r1-tiny"
QWEN3 = "qwen3-tiny"
BUDGET = 5
ASK = "Weather in Paris?"
ANSWER = {"type": "object", "properties": {"sky": {"type": "string", "enum": ["clear"]}},
          "required": ["sky"], "additionalProperties": False}
CHAT_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
          "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
R1_TEMPLATE = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"


def _source(name: str) -> str:
    return (templates_dir() / f"{name}.jinja").read_text(encoding="utf-8")


def _model(tmp: Path, name: str, template: str) -> Path:
    require_model("vocab/ggml-vocab-qwen2.gguf")
    return write_llama_from_vocab(tmp / f"{name}.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2,
                                  n_ff=32, n_ctx=1024, chat_template=_source(template))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("format-after-thinking")
    srv = start_server(tmp, [_model(tmp, R1, R1_TEMPLATE), _model(tmp, QWEN3, "Qwen-Qwen3-0.6B")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    client = openai_client(server, timeout=300)
    # dialects without a per-request budget (Ollama, Anthropic's adaptive thinking) take the model's own
    patch = urllib.request.Request(f"{server.base_url}/v1/models/{R1}", method="PATCH",
                                   data=json.dumps({"settings": {"reasoning_budget": BUDGET}}).encode(),
                                   headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(patch, timeout=60) as response:
        assert response.status == 200
    return client


def _answer(text: str | None) -> None:
    assert json.loads(text or "") == {"sky": "clear"}


# -- chat completions -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"reasoning_budget": BUDGET}], ids=["model-budget", "request-budget"])
def test_chat_thinks_then_answers_in_the_schema(oai, extra):
    m = oai.chat.completions.create(model=R1, messages=[{"role": "user", "content": ASK}], max_tokens=200,
                                    temperature=0, reasoning_effort="low", response_format=CHAT_FORMAT,
                                    extra_body=extra).choices[0].message
    assert (getattr(m, "reasoning_content", None) or "").strip()
    _answer(m.content)


def test_a_budget_spent_inside_a_character_closes_the_thinking_after_it(oai):
    # the thinking's last token before the budget runs out is the first byte of a three-byte character: the forced
    # </think> there would break it, so the UTF-8 sampler under the grammar banned it and the request was a 400
    # ("the grammar does not allow the end-of-thinking text"), about 1 sampled request in 100 at BUDGET. The close
    # now waits for the character's last bytes.
    lead = 160  # the qwen2 vocabulary's byte 0xE4 alone (the first byte of U+4000..U+4FFF)
    for budget in (1, 2):
        m = oai.chat.completions.create(model=R1, messages=[{"role": "user", "content": ASK}], max_tokens=200,
                                        temperature=0, response_format=CHAT_FORMAT, logit_bias={str(lead): 100},
                                        extra_body={"reasoning_budget": budget}).choices[0].message
        thinking = getattr(m, "reasoning_content", None) or ""
        assert len(thinking) == 1 and "\u4000" <= thinking <= "\u4fff", (budget, thinking)
        _answer(m.content)


def test_chat_streamed_thinks_then_answers_in_the_schema(oai):
    reasoning, content = [], []
    for chunk in oai.chat.completions.create(model=R1, messages=[{"role": "user", "content": ASK}], max_tokens=200,
                                             temperature=0, response_format=CHAT_FORMAT, stream=True):
        for choice in chunk.choices:
            reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
            content.append(choice.delta.content or "")
    assert "".join(reasoning).strip()
    _answer("".join(content))


def test_chat_without_thinking_answers_in_the_schema_from_the_start(oai):
    m = oai.chat.completions.create(model=R1, messages=[{"role": "user", "content": ASK}], max_tokens=200,
                                    temperature=0, reasoning_effort="none",
                                    response_format=CHAT_FORMAT).choices[0].message
    assert not getattr(m, "reasoning_content", None)
    _answer(m.content)


@pytest.mark.parametrize("effort", [None, "none"], ids=["thinking-default", "thinking-off"])
def test_chat_model_that_opens_its_own_thinking_answers_in_the_schema(oai, effort):
    # Qwen3's prompt opens no block: by default the grammar holds from the first token; off, the block is closed
    extra = {"reasoning_effort": effort} if effort else {}
    m = oai.chat.completions.create(model=QWEN3, messages=[{"role": "user", "content": ASK}], max_tokens=200,
                                    temperature=0, response_format=CHAT_FORMAT, **extra).choices[0].message
    _answer(m.content)


def test_a_forced_call_still_follows_the_thinking(oai):
    m = oai.chat.completions.create(model=R1, messages=[{"role": "user", "content": ASK}], max_tokens=300,
                                    temperature=0, tools=TOOLS, tool_choice="required",
                                    parallel_tool_calls=False).choices[0].message
    assert (getattr(m, "reasoning_content", None) or "").strip()
    assert [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls] == [
        ("get_weather", {"city": "Paris"})]


# -- the other dialects ---------------------------------------------------------------------------------------------

def test_responses_thinks_then_answers_in_the_schema(oai):
    r = oai.responses.create(model=R1, input=ASK, max_output_tokens=200, temperature=0, reasoning={"effort": "low"},
                             text={"format": {"type": "json_schema", "name": "answer", "schema": ANSWER}})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    _answer(r.output_text)


def test_anthropic_thinks_then_answers_in_the_schema(server, oai):
    anth = anthropic_client(server, timeout=300)
    m = anth.messages.create(model=R1, max_tokens=200, messages=[{"role": "user", "content": ASK}],
                             thinking={"type": "adaptive"},
                             extra_body={"output_config": {"format": {"type": "json_schema", "schema": ANSWER}}})
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking.strip()
    _answer(m.content[1].text)


def test_ollama_thinks_then_answers_in_the_schema(server, oai):
    body = {"model": R1, "messages": [{"role": "user", "content": ASK}], "stream": False, "think": True,
            "format": ANSWER, "options": {"temperature": 0, "num_predict": 200}}
    request = urllib.request.Request(f"{server.base_url}/api/chat", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        message = json.loads(response.read())["message"]
    assert message["thinking"].strip()
    _answer(message["content"])


# -- the grammar and the template variables, without a model ----------------------------------------------------------

def _plan(template: str, **reasoning) -> tuple[ChatPlan, str]:
    t = ChatTemplate(_source(template))
    plan = ChatPlan(format_for_template(t, False), ReasoningRequest(**reasoning))
    prompt = t.render([{"role": "user", "content": ASK}], add_generation_prompt=True, **plan.template_kwargs())
    return plan, prompt


def test_r1_distill_thinks_unless_asked_not_to():
    # llama-server gives enable_thinking=true unless reasoning is off; this template closes the block without it
    assert _plan(R1_TEMPLATE)[1].endswith("<think>\n")
    assert _plan(R1_TEMPLATE, effort="none")[1].rstrip().endswith("</think>")
    assert _plan(R1_TEMPLATE, enabled=False)[1].rstrip().endswith("</think>")


def test_templates_that_do_not_read_the_switch_are_given_nothing():
    plan, _ = _plan("Qwen-Qwen2.5-7B-Instruct")
    assert "enable_thinking" not in plan.template_kwargs()
    assert _plan("Qwen-Qwen3-0.6B")[0].template_kwargs()["enable_thinking"] is True


def test_a_request_s_own_switch_still_wins():
    plan = ChatPlan(format_for_template(ChatTemplate(_source(R1_TEMPLATE)), False),
                    chat_template_kwargs={"enable_thinking": False})
    assert plan.template_kwargs()["enable_thinking"] is False


@pytest.mark.parametrize("fmt", [{"type": "json_object"}, CHAT_FORMAT], ids=["json_object", "json_schema"])
def test_every_answer_grammar_follows_an_open_thinking_block(fmt):
    answer = json_schema_to_grammar(ANSWER) if fmt is CHAT_FORMAT else JSON_OBJECT_GRAMMAR
    plan, prompt = _plan(R1_TEMPLATE, effort="low")
    grammar = plan.grammar_options(prompt, answer=answer)["grammar"]
    assert grammar.startswith("root ::= think-body-0 ")
    plan, prompt = _plan(R1_TEMPLATE, effort="none")
    # thinking off: from the start, its strings without the format's markers (test_markers_in_answers.py)
    assert plan.grammar_options(prompt, answer=answer)["grammar"] == json_strings_without(
        answer, plan.fmt.structure_markers())


@pytest.mark.parametrize("tools", [None, TOOLS], ids=["format", "forced-call"])
def test_a_model_that_opens_its_own_thinking_may_think_first(tools):
    # Qwen3's prompt opens no block: asked to think, the model may open one before the answer or the call, or go
    # straight to it; by default the grammar holds from the first token, as llama.cpp's (a forced call at once)
    answer = json_schema_to_grammar(ANSWER)
    plan, prompt = _plan("Qwen-Qwen3-0.6B", effort="high")
    plan.tools, plan.tool_choice = tools, "required"
    assert plan.grammar_options(prompt, answer=answer)["grammar"].startswith('root ::= ( "<think>" think-body-0 ')
    plan, prompt = _plan("Qwen-Qwen3-0.6B")
    plan.tools, plan.tool_choice = tools, "required"
    assert "think-body" not in plan.grammar_options(prompt, answer=answer)["grammar"]
    plan, prompt = _plan("Qwen-Qwen3-0.6B", effort="none")  # its template closes an empty block
    plan.tools, plan.tool_choice = tools, "required"
    assert "think-body" not in plan.grammar_options(prompt, answer=answer)["grammar"]


def _accepts(rules: str, text: str) -> bool:
    """Runs the right-linear rules of :func:`until_marker_rules` (plain-ASCII markers) over ``text``: whether the
    text ends exactly where the rules do."""
    table = {}
    for line in rules.strip().splitlines():
        name, body = line.split(" ::= ")
        table[name] = [alt.strip() for alt in body.split(" | ")]
    state = "m-0"
    for i, ch in enumerate(text):
        if state is None:
            return False
        for alt in table[state]:
            lit = re.fullmatch(r'"(.)"(?: (\S+))?', alt)
            neg = re.fullmatch(r"\[\^([^\]]*)\] (\S+)", alt)
            if lit and lit.group(1) == ch:
                state = lit.group(2)
                break
            if neg and ch not in neg.group(1):
                state = neg.group(2)
                break
        else:
            return False
    return state is None


@pytest.mark.parametrize("marker", ["aab", "abab", "aba"])
def test_thinking_body_ends_at_the_first_whole_marker(marker):
    # every text over the marker's letters (and one other) up to 8 long: the rules end exactly at its first match
    rules = until_marker_rules(marker, "m")
    for n in range(9):
        for chars in itertools.product("abx", repeat=n):
            text = "".join(chars)
            expected = text.endswith(marker) and text.find(marker) == len(text) - len(marker)
            assert _accepts(rules, text) == expected, text


def test_thinking_body_may_hold_the_end_marker_s_own_characters():
    rules = until_marker_rules("</think>", "m")
    assert _accepts(rules, "if a < b and </thin> or <</think>")
    assert not _accepts(rules, "x</think> more")
    assert not _accepts(rules, "x</think")
