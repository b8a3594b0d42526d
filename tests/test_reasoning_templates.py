"""Reasoning as every real template in ../shared/templates spells it: the thinking markers it writes (also where the
source keeps them in variables: Seed-OSS's <seed:think>, MiniMax-M3's <mm:think>, Hy3's <think:opensource>, Kimi-K3's
<|open|>think<|sep|>; Gemma 4's <|channel>thought), the switches it reads (enable_thinking, thinking, reasoning_effort in the template's own
values, thinking_mode, thinking_budget), and a conversation whose replies carry thinking rendered with each switch,
never a template error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jan.templates import ChatTemplate
from jan.templates.formats import ChatPlan, ReasoningRequest, detect_format, parse_output
from jan.templates.formats.efforts import template_effort
from jan.templates.formats.grammars import call_grammar

from chat_format_cases import TEMPLATES, TOOLS, template_format

ALL = sorted(p.stem for p in TEMPLATES.glob("*.jinja")) if TEMPLATES.is_dir() else []

# (template, start marker, end marker) where no search of the source for <think> finds them
LEARNED = [
    ("ByteDance-Seed-OSS", "<seed:think>", "</seed:think>"),
    ("MiniMax-M3", "<mm:think>", "</mm:think>"),
    ("tencent-Hy3", "<think:opensource>", "</think:opensource>"),
    ("Kimi-K3", "<|open|>think<|sep|>", "<|close|>think<|sep|>"),
    # keeps no earlier thinking; its generation prompt with thinking off ends in the empty block
    ("google-gemma-4-31B-it", "<|channel>thought", "<channel|>"),
]


@pytest.mark.parametrize(("template", "start", "end"), LEARNED, ids=[t for t, _, _ in LEARNED])
def test_markers_kept_in_variables_are_found(template, start, end):
    fmt = template_format(template)
    assert fmt.reasoning is not None and (fmt.reasoning.start, fmt.reasoning.end) == (start, end)
    assert fmt.render_special  # (such markers are control tokens: the engine must keep their text for the parser)
    result = parse_output(f"{start}\nWeighing it.\n{end}\n\nThe answer.", fmt)
    assert (result.reasoning, result.content) == ("Weighing it.", "The answer.")


def test_an_answer_wrapper_read_off_the_template_is_dropped_where_it_wraps():
    fmt = template_format("Kimi-K3")
    assert fmt.reasoning.strip == ("<|open|>response<|sep|>", "<|close|>response<|sep|>")
    wrapped = "<|open|>think<|sep|>T<|close|>think<|sep|><|open|>response<|sep|>Say <|open|>response<|sep|>.<|close|>response<|sep|>"
    result = parse_output(wrapped, fmt)
    assert (result.reasoning, result.content) == ("T", "Say <|open|>response<|sep|>.")
    assert template_format("ByteDance-Seed-OSS").reasoning.strip == ()  # the answer follows </seed:think> bare


@pytest.mark.parametrize("template", ["Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct", "muse-glimmer",
                                      "google-gemma-2-2b-it"])
def test_a_template_without_thinking_markup_gets_no_markers(template):
    # (muse-glimmer writes thinking as a message to=self: a header, not a marker pair naming thinking)
    assert template_format(template).reasoning is None


def _render(name: str, messages, **kwargs) -> str:
    source = (TEMPLATES / f"{name}.jinja").read_text()
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(messages, **kwargs)


CALL = {"id": "call_abc123456", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
DONE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!", "reasoning_content": "OLD-THOUGHT"},
        {"role": "user", "content": "weather?"}]
LOOP = [{"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "reasoning_content": "LOOP-THOUGHT", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_abc123456", "content": "sunny"}]
SWITCHES = [ReasoningRequest(), ReasoningRequest(enabled=True), ReasoningRequest(enabled=False),
            *(ReasoningRequest(effort=e) for e in ("none", "low", "medium", "high", "max")),
            ReasoningRequest(enabled=True, budget_tokens=256)]


@pytest.mark.parametrize("template", ALL)
def test_every_switch_renders_a_conversation_with_thinking(template):
    fmt = template_format(template)
    for reasoning in SWITCHES:
        for messages, tools in ((DONE, None), (LOOP, TOOLS)):
            plan = ChatPlan(fmt, reasoning, tools=tools)
            prompt = _render(template, plan.messages(messages), tools=tools, **plan.template_kwargs())
            if fmt.thinks and fmt.switches and reasoning.enabled is False:  # (MiniMax-M2 always thinks)
                assert not fmt.starts_in_reasoning(prompt), (template, reasoning)


@pytest.mark.parametrize(("template", "opened", "closed"), [
    ("tencent-Hy3", "<think:opensource>", "<think:opensource></think:opensource>"),
    ("MiniMax-M3", "<mm:think>", "</mm:think>"),
    ("Cohere2MoE", "<|START_THINKING|>", "<|START_THINKING|><|END_THINKING|>"),
    ("ByteDance-Seed-OSS", None, "</seed:think>"),
    ("google-gemma-4-31B-it", None, "<|channel>thought\n<channel|>"),
])
def test_thinking_turns_on_and_off_in_the_templates_own_terms(template, opened, closed):
    # Hy3 raised on jan's "medium" and thought on its "low"; Cohere's thought on "low"; MiniMax-M3 (thinking_mode)
    # and Seed-OSS (thinking_budget 0) were never switched
    fmt = template_format(template)
    ask = [{"role": "user", "content": "hi"}]
    for effort in (None, "low", "medium", "high", "max"):
        plan = ChatPlan(fmt, ReasoningRequest(effort=effort, enabled=True if effort is None else None))
        prompt = _render(template, plan.messages(ask), **plan.template_kwargs())
        assert fmt.starts_in_reasoning(prompt) == (opened is not None), (effort, prompt[-80:])
        if opened:
            assert prompt.rstrip().endswith(opened)
    for off in (ReasoningRequest(enabled=False), ReasoningRequest(effort="none"), ReasoningRequest(budget_tokens=0)):
        plan = ChatPlan(fmt, off)
        prompt = _render(template, plan.messages(ask), **plan.template_kwargs())
        assert prompt.rstrip().endswith(closed), (off, prompt[-80:])


def test_earlier_thinking_goes_back_as_each_template_keeps_it():
    # Qwen3 drops a finished turn's thinking and keeps the tool loop's; gpt-oss keeps the analysis of a tool-call turn
    # Apertus keeps it only as content blocks of type "thoughts" (ChatPlan.messages writes the replies so)
    for template, keeps_done in (("Qwen-Qwen3-0.6B", False), ("openai-gpt-oss-120b", False),
                                 ("tencent-Hy3", False), ("ByteDance-Seed-OSS", True), ("Apertus-8B-Instruct", True)):
        fmt = detect_format((TEMPLATES / f"{template}.jinja").read_text())
        plan = ChatPlan(fmt, ReasoningRequest(enabled=True), tools=TOOLS)
        assert "LOOP-THOUGHT" in _render(template, plan.messages(LOOP), tools=TOOLS, **plan.template_kwargs()), template
        done = _render(template, plan.messages(DONE), **plan.template_kwargs())
        assert ("OLD-THOUGHT" in done) == keeps_done, template


@pytest.mark.parametrize(("effort", "on", "accepted", "off", "value"), [
    (None, True, (), None, "medium"),                       # gpt-oss: any level; off is its least
    (None, False, (), None, "low"),
    ("high", True, (), None, "high"),
    (None, False, (), "none", "none"),                      # Cohere: "none" turns thinking off
    (None, True, ("high", "low", "no_think"), "no_think", "high"),  # Hy3: the nearest it takes, ties to more
    ("medium", True, ("high", "low", "no_think"), "no_think", "high"),
    ("low", True, ("high", "low", "no_think"), "no_think", "low"),
    (None, False, ("high", "low", "no_think"), "no_think", "no_think"),
])
def test_the_effort_a_template_is_given(effort, on, accepted, off, value):
    assert template_effort(effort, on, accepted, off) == value


def test_templates_are_all_here():
    assert len(ALL) > 50 or pytest.skip(f"templates missing under {Path(TEMPLATES)}")


# -- Apertus and Apriel: thinking and calls in their own syntax (each was "generic": thinking left in the answer, and
# calls asked for as Hermes tags the model does not write) ------------------------------------------------------

@pytest.mark.parametrize(("template", "family", "start", "end", "opened"), [
    ("Apertus-8B-Instruct", "apertus", "<|inner_prefix|>", "<|inner_suffix|>", False),
    ("unsloth-Apriel-1.5", "apriel-1.5", "<thinking>", "</thinking>", False),
    ("Apriel-1.6-15b-Thinker-fixed", "apriel-1.6", "Here are my reasoning steps:", "[BEGIN FINAL RESPONSE]", True),
])
def test_apertus_and_apriel_think_and_call_in_their_own_syntax(template, family, start, end, opened):
    fmt = template_format(template)
    assert (fmt.name, fmt.reasoning.start, fmt.reasoning.end, fmt.render_special) == (family, start, end, True)
    plan = ChatPlan(fmt, ReasoningRequest(), tools=TOOLS)
    prompt = _render(template, plan.messages([{"role": "user", "content": "weather?"}]), tools=TOOLS,
                     **plan.template_kwargs())
    assert fmt.starts_in_reasoning(prompt) == opened  # Apriel 1.6's generation prompt opens the thinking
    assert "get_weather" in prompt
    # the lazy grammar of tool_choice auto waits for the family's own call marker (after the thinking, where the
    # prompt opened it), not for Hermes tags
    triggers = fmt.grammar_options(TOOLS, "auto", prompt=prompt)["grammar_triggers"]
    marker = "<|tools_prefix|>" if family == "apertus" else "<tool_calls>"
    assert triggers[0].endswith("(" + re.escape(marker) + ")") and triggers[0].startswith(re.escape(end)) == opened


def test_apertus_deliberation_is_its_enable_thinking():
    fmt = template_format("Apertus-8B-Instruct")
    assert fmt.switches == ("enable_thinking",)
    ask = [{"role": "user", "content": "hi"}]
    for reasoning, said in ((ReasoningRequest(), "enabled"), (ReasoningRequest(enabled=False), "disabled"),
                            (ReasoningRequest(effort="high"), "enabled"), (ReasoningRequest(effort="none"), "disabled")):
        plan = ChatPlan(fmt, reasoning)
        assert f"Deliberation: {said}" in _render("Apertus-8B-Instruct", plan.messages(ask), **plan.template_kwargs())


def test_apertus_history_keeps_thinking_and_encodes_arguments_once():
    fmt = template_format("Apertus-8B-Instruct")
    plan = ChatPlan(fmt, ReasoningRequest(), tools=TOOLS)
    done = _render("Apertus-8B-Instruct", plan.messages(DONE), **plan.template_kwargs())
    assert "<|assistant_start|><|inner_prefix|>OLD-THOUGHT<|inner_suffix|>Hello!<|assistant_end|>" in done
    loop = _render("Apertus-8B-Instruct", plan.messages([*LOOP, {"role": "assistant", "content": "Sunny.",
                                                                  "reasoning_content": "AFTER"},
                                                        {"role": "user", "content": "thanks"}]),
                   tools=TOOLS, **plan.template_kwargs())
    # the call as the model writes it, its arguments JSON once (not a JSON string of JSON)
    assert '<|inner_prefix|>LOOP-THOUGHT<|tools_prefix|>[{"get_weather": {"city": "Paris", "days": 2}}]<|tools_suffix|>' \
        '[sunny]AFTER<|inner_suffix|>Sunny.' in loop
    # a conversation that ends in a reply (a prefill the prompt continues) keeps its replies text: the template takes
    # one shape for all of them, and the continued one must end the prompt as its text
    prefill = [*DONE, {"role": "assistant", "content": "It is"}]
    messages = plan.messages(prefill)
    assert all(isinstance(m["content"], str) for m in messages)
    assert _render("Apertus-8B-Instruct", messages, add_generation_prompt=False).endswith("<|assistant_start|>It is")
    # a reply whose content is parts is left as it is, and so are the others
    parts = [*DONE[:1], {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}],
                         "reasoning_content": "T"}, DONE[2]]
    assert plan.messages(parts)[1]["content"] == [{"type": "text", "text": "Hello!"}]
    assert "Hello!" in _render("Apertus-8B-Instruct", plan.messages(parts))


@pytest.mark.parametrize("template", ["unsloth-Apriel-1.5", "Apriel-1.6-15b-Thinker-fixed"])
def test_apriel_history_encodes_arguments_once(template):
    fmt = template_format(template)
    plan = ChatPlan(fmt, ReasoningRequest(), tools=TOOLS)
    prompt = _render(template, plan.messages(LOOP), tools=TOOLS, **plan.template_kwargs())
    assert '<tool_calls>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}, "id": "call_abc123456"}]' \
        '</tool_calls>' in prompt


@pytest.mark.parametrize(("template", "calls"), [
    ("Apertus-8B-Instruct", ['<|tools_prefix|>[{"get_weather": {"city": "Bern", "days": 2}}]<|tools_suffix|>',
                             '<|tools_prefix|>[{"get_weather": {"city": "Bern", "days": 2}}, '
                             '{"get_weather": {"city": "Chur", "days": 1}}]<|tools_suffix|>']),
    ("unsloth-Apriel-1.5", ['<tool_calls>[{"name": "get_weather", "arguments": {"city": "Lima", "days": 2}}]</tool_calls>',
                            '<tool_calls>[{"name": "get_weather", "arguments": {"city": "Lima", "days": 2}}, '
                            '{"name": "get_weather", "arguments": {"city": "Cusco", "days": 1}}]</tool_calls>']),
])
def test_apertus_and_apriel_call_grammars_accept_what_their_parsers_read(llama, template, calls):
    fmt = template_format(template)
    one, two = calls
    single = call_grammar(fmt.tool_grammar, TOOLS, "required", parallel=False)
    parallel = call_grammar(fmt.tool_grammar, TOOLS, "required")
    assert llama.parses(single) and llama.parses(parallel)
    assert llama.accepts(single, one) and not llama.accepts(single, two)
    assert llama.accepts(parallel, one) and llama.accepts(parallel, two)
    assert not llama.accepts(single, one.replace('"days": 2', '"days": "2"'))  # the schema holds the arguments
    parsed = [(c.name, json.loads(c.arguments)) for c in parse_output(two, fmt, TOOLS).tool_calls]
    assert [(name, args["days"]) for name, args in parsed] == [("get_weather", 2), ("get_weather", 1)]
    # Apriel 1.6 writes the same calls after its thinking, which the prompt opened: the grammar holds them there
    if fmt.tool_grammar == "apriel":
        fmt16 = template_format("Apriel-1.6-15b-Thinker-fixed")
        assert fmt16.tool_grammar == "apriel"
        opened = "<|begin_assistant|>\nHere are my reasoning steps:\n"
        grammar = fmt16.grammar_options(TOOLS, "required", parallel=False, prompt=opened)["grammar"]
        assert llama.accepts(grammar, "It asks for Lima.\n[BEGIN FINAL RESPONSE]\n" + one)
        assert not llama.accepts(grammar, one)  # the thinking the prompt opened closes first


@pytest.mark.parametrize("template", ["Apertus-8B-Instruct", "unsloth-Apriel-1.5", "Apriel-1.6-15b-Thinker-fixed"])
def test_a_request_with_thinking_and_calls_renders_as_the_server_renders_it(template):
    # the path a request takes (services.local.render_template): typed messages, arguments as JSON text
    from jan.services.local import render_template
    from jan.services.types import ChatMessage, ChatRequest, ToolCall, ToolSpec

    fmt = template_format(template)
    messages = (ChatMessage.of_text("user", "weather?"),
                ChatMessage("assistant", (), tool_calls=(ToolCall("call_abc123456", "get_weather",
                                                                  '{"city": "Paris", "days": 2}'),),
                            reasoning="LOOP-THOUGHT"),
                ChatMessage.of_text("tool", "sunny", tool_call_id="call_abc123456"),
                ChatMessage.of_text("assistant", "Sunny.", reasoning="AFTER"),
                ChatMessage.of_text("user", "thanks"))
    tools = (ToolSpec("get_weather", "Weather for a city", TOOLS[0]["function"]["parameters"]),)
    request = ChatRequest(None, messages, tools=tools)
    plan = ChatPlan(fmt, ReasoningRequest(), tools=TOOLS)
    source = (TEMPLATES / f"{template}.jinja").read_text()
    prompt = render_template(ChatTemplate(source, "<s>", "</s>"), request, plan, None)
    assert '{"city": "Paris", "days": 2}' in prompt and '\\"city' not in prompt  # JSON once, never a string of it
    assert ("LOOP-THOUGHT" in prompt and "AFTER" in prompt) == (fmt.name == "apertus")
