"""Reasoning as every real template in ../shared/templates spells it: the thinking markers it writes (also where the
source keeps them in variables: Seed-OSS's <seed:think>, MiniMax-M3's <mm:think>, Hy3's <think:opensource>, Kimi-K3's
<|open|>think<|sep|>; Gemma 4's <|channel>thought), the switches it reads (enable_thinking, thinking, reasoning_effort in the template's own
values, thinking_mode, thinking_budget), and a conversation whose replies carry thinking rendered with each switch,
never a template error."""

from __future__ import annotations

from pathlib import Path

import pytest

from jan.templates import ChatTemplate
from jan.templates.formats import ChatPlan, ReasoningRequest, detect_format, parse_output
from jan.templates.formats.efforts import template_effort

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
                                      "google-gemma-2-2b-it", "Apertus-8B-Instruct"])
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
    for template, keeps_done in (("Qwen-Qwen3-0.6B", False), ("openai-gpt-oss-120b", False),
                                 ("tencent-Hy3", False), ("ByteDance-Seed-OSS", True)):
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
