"""gpt-oss (Harmony): a response format or a forced call holds the final or call message, after an analysis one.

The grammar is read by llama.cpp's own grammar engine (:class:`grammar_helpers.LlamaGrammarChecker`): it must take
an analysis message and then the answer, refuse anything but the answer in the final channel, and hold from the
first token when thinking is off. Every text it takes must parse back (reasoning, content, calls) as it reads it,
streamed or whole. Then end to end: a tiny random-weight model with the qwen2 vocabulary, Harmony's control tokens
and gpt-oss's real template (:func:`jan.testing.gguf_models.write_harmony_model`). Steered by ``logit_bias`` (the
word ``analysis``, then ``<|end|>``) and sampled with several seeds, it mostly writes an analysis message; the grammar
alone makes every draw answer in the schema or call afterwards.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from jan.templates import ChatTemplate, json_schema_to_grammar
from jan.templates.formats import ChatPlan, OutputParser, ReasoningRequest, format_for_template, parse_output
from jan.templates.formats.harmony import HARMONY_MARKERS
from jan.templates.grammar import JSON_OBJECT_GRAMMAR
from jan.testing.gguf_models import HARMONY_SPECIAL_TOKENS, templates_dir, write_harmony_model

from conftest import require_model
from dialect_helpers import anthropic_client, openai_client
from server_helpers import start_server

from test_format_after_thinking import ANSWER, ASK, CHAT_FORMAT, PARAMS  # the same question, as other formats get it
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMS}},
         {"type": "function", "function": {"name": "get_time", "description": "Time", "parameters": PARAMS}}]

ANALYSIS = "<|channel|>analysis<|message|>The user wants the sky < 1 | 2.<|end|><|start|>assistant"
FINAL = "<|channel|>final<|message|>"
JSON_ANSWER = '{"sky": "clear"}'
CALL = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}'


def _source() -> str:
    return (templates_dir() / "openai-gpt-oss-120b.jinja").read_text(encoding="utf-8")


def _plan(tools=None, tool_choice="auto", **reasoning) -> tuple[ChatPlan, str]:
    t = ChatTemplate(_source())
    plan = ChatPlan(format_for_template(t, bool(tools)), ReasoningRequest(**reasoning), tools=tools,
                    tool_choice=tool_choice, parallel_tool_calls=False)
    prompt = t.render([{"role": "user", "content": ASK}], tools=tools, add_generation_prompt=True,
                      **plan.template_kwargs())
    return plan, prompt


def _check(llama, grammar: str, good: list[str], bad: list[str]) -> None:
    assert llama.parses(grammar), grammar
    for text in good:
        assert llama.accepts(grammar, text), f"should accept {text!r}\n{grammar}"
    for text in bad:
        assert not llama.accepts(grammar, text), f"should reject {text!r}\n{grammar}"


def _parsed(plan: ChatPlan, prompt: str, text: str):
    """``text`` parsed whole, after checking that any split of it streams to the same message."""
    whole = parse_output(text, plan.fmt, plan.tools, open_at_start=plan.fmt.starts_in_reasoning(prompt),
                         id_factory=lambda: "call_0")
    for cut in range(1, len(text), 7):
        parser = plan.parser(prompt, id_factory=lambda: "call_0")
        parser.feed(text[:cut])
        parser.feed(text[cut:])
        parser.finish()
        assert parser.result == whole, cut
    return whole


# -- the grammar, without a model ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [json_schema_to_grammar(ANSWER), JSON_OBJECT_GRAMMAR],
                         ids=["json_schema", "json_object"])
@pytest.mark.parametrize("reasoning", [{}, {"effort": "high"}, {"enabled": True}], ids=["default", "high", "think"])
def test_format_follows_an_analysis_message(llama, answer, reasoning):
    plan, prompt = _plan(**reasoning)
    assert prompt.endswith("<|start|>assistant")
    grammar = plan.grammar_options(prompt, answer=answer)["grammar"]
    _check(llama, grammar,
           good=[ANALYSIS + FINAL + JSON_ANSWER, FINAL + JSON_ANSWER,
                 ANALYSIS + "<|channel|>final <|constrain|>json<|message|>" + JSON_ANSWER,
                 "<|channel|>analysis<|message|><|end|><|start|>assistant" + FINAL + JSON_ANSWER],
           bad=[ANALYSIS + FINAL + '{"sky": "clear"',               # cut short
                ANALYSIS + FINAL,                                    # a final message without the JSON
                ANALYSIS + FINAL + "It is clear.",                   # not JSON
                ANALYSIS,                                            # thinking, never the answer
                JSON_ANSWER,                                         # no channel
                ANALYSIS + ANALYSIS + FINAL + JSON_ANSWER,           # one analysis message
                ANALYSIS + "<|channel|>commentary<|message|>" + JSON_ANSWER,
                # an analysis body holding another message's marker: the parser would end it there
                "<|channel|>analysis<|message|>a<|start|>assistant<|end|><|start|>assistant" + FINAL + JSON_ANSWER])
    if answer is not JSON_OBJECT_GRAMMAR:
        assert not llama.accepts(grammar, ANALYSIS + FINAL + '{"sky": "cloudy"}')
    else:
        assert not llama.accepts(grammar, ANALYSIS + FINAL + "[1, 2]")


@pytest.mark.parametrize("reasoning", [{"effort": "none"}, {"enabled": False}], ids=["effort-none", "think-false"])
def test_thinking_off_goes_straight_to_the_final_message(llama, reasoning):
    plan, prompt = _plan(**reasoning)
    assert plan.template_kwargs()["reasoning_effort"] == "low"  # gpt-oss cannot stop thinking: the least of it
    grammar = plan.grammar_options(prompt, answer=json_schema_to_grammar(ANSWER))["grammar"]
    _check(llama, grammar, good=[FINAL + JSON_ANSWER], bad=[ANALYSIS + FINAL + JSON_ANSWER, JSON_ANSWER])


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_forced_call_follows_an_analysis_message(llama, choice):
    plan, prompt = _plan(TOOLS, choice)
    # the format is a later turn's answer: a forced call ignores it
    grammar = plan.grammar_options(prompt, answer=json_schema_to_grammar(ANSWER))["grammar"]
    _check(llama, grammar,
           good=[ANALYSIS + CALL, CALL],
           bad=[ANALYSIS + CALL.replace("Paris", "Lyon"),            # arguments outside the schema
                ANALYSIS + CALL[:-1],                                # arguments cut short
                ANALYSIS + FINAL + JSON_ANSWER,                      # an answer instead of the call
                ANALYSIS])
    if choice == "required":
        assert llama.accepts(grammar, ANALYSIS + CALL.replace("get_weather", "get_time"))
    else:
        assert not llama.accepts(grammar, ANALYSIS + CALL.replace("get_weather", "get_time"))
    plan, prompt = _plan(TOOLS, choice, effort="none")
    _check(llama, plan.grammar_options(prompt)["grammar"], good=[CALL], bad=[ANALYSIS + CALL])


def test_auto_with_a_format_is_a_call_or_the_answer_after_analysis(llama):
    plan, prompt = _plan(TOOLS, "auto")
    grammar = plan.grammar_options(prompt, answer=json_schema_to_grammar(ANSWER))["grammar"]
    _check(llama, grammar, good=[ANALYSIS + CALL, ANALYSIS + FINAL + JSON_ANSWER, FINAL + JSON_ANSWER],
           bad=[ANALYSIS + FINAL + "Sunny.", ANALYSIS + JSON_ANSWER])
    # without a format, auto stays a lazy grammar that waits for the call's header
    assert plan.grammar_options(prompt)["grammar_triggers"] == [r"(<\|channel\|>commentary to=)"]


def test_a_continued_final_message_holds_its_text_from_the_first_token():
    # a prefill inside the final message: the output is the message's text, no header and no analysis before it
    answer = json_schema_to_grammar(ANSWER)
    plan, prompt = _plan()
    plan.continued = '{"sky":'
    assert plan.grammar_options(prompt + FINAL + plan.continued, answer=answer)["grammar"] == answer


@pytest.mark.parametrize(("tools", "text", "reasoning", "content", "calls"), [
    (None, ANALYSIS + FINAL + JSON_ANSWER, "The user wants the sky < 1 | 2.", JSON_ANSWER, []),
    (None, ANALYSIS + "<|channel|>final <|constrain|>json<|message|>" + JSON_ANSWER + "<|return|>",
     "The user wants the sky < 1 | 2.", JSON_ANSWER, []),
    (None, FINAL + JSON_ANSWER, None, JSON_ANSWER, []),
    (TOOLS, ANALYSIS + CALL, "The user wants the sky < 1 | 2.", None, [("get_weather", {"city": "Paris"})]),
], ids=["answer", "constrained-answer", "answer-at-once", "call"])
def test_what_the_grammar_takes_parses_streamed_and_whole(llama, tools, text, reasoning, content, calls):
    plan, prompt = _plan(tools, "required" if tools else "auto")
    grammar = plan.grammar_options(prompt, answer=None if tools else json_schema_to_grammar(ANSWER))["grammar"]
    assert llama.accepts(grammar, text.removesuffix("<|return|>"))
    parsed = _parsed(plan, prompt, text)
    assert (parsed.reasoning, parsed.content) == (reasoning, content)
    assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == calls


@pytest.mark.parametrize("marker", HARMONY_MARKERS)
def test_json_object_strings_hold_no_message_marker(llama, marker):
    # json_object's strings are free: a marker in one would end the final message for the parser (or open one)
    plan, prompt = _plan()
    grammar = plan.grammar_options(prompt, answer=JSON_OBJECT_GRAMMAR)["grammar"]
    assert not llama.accepts(grammar, ANALYSIS + FINAL + f'{{"a": "x{marker}"}}')
    assert not llama.accepts(grammar, ANALYSIS + FINAL + f'{{"{marker}": 1}}')
    for value in ["x\\u003c" + marker[1:], "x < 1 | 2 <|", "<|x|>"]:
        text = ANALYSIS + FINAL + f'{{"a": "{value}"}}'
        assert llama.accepts(grammar, text), text
        parsed = _parsed(plan, prompt, text)
        assert parsed.reasoning == "The user wants the sky < 1 | 2."
        assert json.loads(parsed.content) == {"a": json.loads(f'"{value}"')}


# -- end to end -----------------------------------------------------------------------------------------------------

MODEL = "harmony-tiny"
# The seeds of the steered draws below, each case run on all: draws at temperature 1.0 differ from CPU to CPU, so no
# one seed holds on every host. The grammar must make every draw answer (or call); the steer makes most think first,
# but a draw may go straight to the final message (the grammar allows both: about one in eight did).
SEEDS = range(1, 6)
ANALYSIS_WORD = 34484  # "analysis", one token of the qwen2 vocabulary
END = 151936 + HARMONY_SPECIAL_TOKENS.index("<|end|>")
# the analysis channel, then a few words of thinking until <|end|>, two below the word so that a sampler's cut
# (min_p keeps what is within e^-3 of the best) leaves it in: the rest is up to the grammar
STEER = {str(ANALYSIS_WORD): 10, str(END): 8}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("harmony-answer-grammar")
    srv = start_server(tmp, [write_harmony_model(tmp / f"{MODEL}.gguf")], n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


def _answer(text: str | None) -> None:
    assert json.loads(text or "") == {"sky": "clear"}


def _steered(seed: int, **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": ASK}], "max_tokens": 600, "temperature": 1.0,
            "seed": seed, "logit_bias": STEER, **kw}


def _most_thought(thought: list[bool]) -> None:
    """Most of the seeds' draws thought before answering (:data:`SEEDS`)."""
    assert sum(thought) > len(thought) // 2, thought


def test_chat_thinks_then_answers_in_the_schema(oai):
    thought = []
    for seed in SEEDS:
        choice = oai.chat.completions.create(**_steered(seed, response_format=CHAT_FORMAT)).choices[0]
        assert choice.finish_reason == "stop"
        thought.append(bool((getattr(choice.message, "reasoning_content", None) or "").strip()))
        _answer(choice.message.content)
    _most_thought(thought)


# Under json_object the strings are free, and the steer pushes <|end|> inside them as in the analysis body: only a
# grammar that refuses a Harmony marker in a string (grammar.json_strings_without) keeps it out of the answer. The
# quote, as likely as <|end|>, closes strings (and enters the analysis body, which takes it), so each object ends
# well inside max_tokens. Every seed must answer; a grammar that let <|end|> in failed nearly every draw.
QUOTE = 1  # '"', one token of the qwen2 vocabulary


def test_chat_streamed_thinks_then_answers_json(oai):
    thought = []
    for seed in SEEDS:
        reasoning, content = [], []
        request = _steered(seed, response_format={"type": "json_object"}, stream=True)
        request["logit_bias"] = {**STEER, str(QUOTE): STEER[str(END)]}
        for chunk in oai.chat.completions.create(**request):
            for choice in chunk.choices:
                reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
                content.append(choice.delta.content or "")
        answer = json.loads("".join(content))
        assert isinstance(answer, dict) and answer, (seed, answer)
        thought.append(bool("".join(reasoning).strip()))
    _most_thought(thought)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_a_forced_call_follows_the_analysis(oai, choice):
    thought = []
    for seed in SEEDS:
        m = oai.chat.completions.create(**_steered(seed, tools=TOOLS, tool_choice=choice)).choices[0].message
        thought.append(bool((getattr(m, "reasoning_content", None) or "").strip()))
        assert not m.content
        assert [c.function.name for c in m.tool_calls] in (["get_weather"], ["get_time"])
        assert json.loads(m.tool_calls[0].function.arguments) == {"city": "Paris"}
        if choice != "required":
            assert m.tool_calls[0].function.name == "get_weather"
    _most_thought(thought)


def test_a_forced_call_streamed_follows_the_analysis(oai):
    thought = []
    for seed in SEEDS:
        reasoning, content, calls = [], [], {}
        for chunk in oai.chat.completions.create(**_steered(seed, tools=TOOLS, tool_choice="required", stream=True)):
            for choice in chunk.choices:
                reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
                content.append(choice.delta.content or "")
                for call in choice.delta.tool_calls or ():
                    name, args = calls.get(call.index, ("", ""))
                    calls[call.index] = (name + (call.function.name or ""), args + (call.function.arguments or ""))
        thought.append(bool("".join(reasoning).strip()))
        assert not "".join(content)
        assert [json.loads(args) for _, args in calls.values()] == [{"city": "Paris"}]
    _most_thought(thought)


def test_thinking_off_answers_at_once_even_when_pushed_to_think(oai):
    # the bias pushes the analysis channel; with thinking off the grammar has none to give
    for seed in SEEDS:
        m = oai.chat.completions.create(**_steered(seed, response_format=CHAT_FORMAT,
                                                   reasoning_effort="none")).choices[0].message
        assert not getattr(m, "reasoning_content", None)
        _answer(m.content)


# the dialects without logit_bias: thinking off, so the random model cannot think until max_tokens

def test_responses_answers_in_the_schema(oai):
    r = oai.responses.create(model=MODEL, input=ASK, max_output_tokens=200, temperature=0, reasoning={"effort": "none"},
                             text={"format": {"type": "json_schema", "name": "answer", "schema": ANSWER}})
    assert [o.type for o in r.output] == ["message"]
    _answer(r.output_text)


def test_anthropic_answers_in_the_schema(server):
    m = anthropic_client(server, timeout=300).messages.create(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": ASK}], thinking={"type": "disabled"},
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": ANSWER}}})
    assert [b.type for b in m.content] == ["text"]
    _answer(m.content[0].text)


def test_ollama_answers_in_the_format(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ASK}], "stream": False, "think": False,
            "format": ANSWER, "options": {"temperature": 0, "num_predict": 200}}
    request = urllib.request.Request(f"{server.base_url}/api/chat", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        message = json.loads(response.read())["message"]
    assert not message.get("thinking")
    _answer(message["content"])


def test_parser_reads_the_engine_s_pieces_as_the_whole(server, oai):
    # the engine's own pieces (control tokens one each) split the output where a test's cuts would not
    plan, prompt = _plan()
    thought = []
    for seed in SEEDS:
        pieces = [c.choices[0].delta for c in oai.chat.completions.create(**_steered(
            seed, response_format=CHAT_FORMAT, stream=True, extra_body={"reasoning_format": "none"})) if c.choices]
        raw = "".join(d.content or "" for d in pieces)
        # "none" shows the analysis message as written and the final message's text alone (llama-server's shape)
        thought.append(raw.startswith("<|channel|>analysis<|message|>") and "<|end|>" in raw)
        assert "<|channel|>final" not in raw and not any(getattr(d, "reasoning_content", None) for d in pieces), raw
        parser: OutputParser = plan.parser(prompt)
        for d in pieces:
            parser.feed(d.content or "")
        parser.finish()
        assert bool(parser.result.reasoning) == thought[-1], raw
        assert json.loads(parser.result.content) == {"sky": "clear"}
    _most_thought(thought)
