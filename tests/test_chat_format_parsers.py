"""The format parsers on strings: any split of the output parses like the whole, markers are held
back while partial, cut-off output shows no markup, and the request switches map per template."""

from __future__ import annotations

import random

import pytest

from jan.templates.formats import ChatPlan, OutputParser, ReasoningRequest, detect_format, parse_output

from chat_format_cases import CASES, TEMPLATES, TOOLS, Case, call_ids as _ids, case_id, template_format

def _fmt(case: Case):
    return template_format(case.template)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_split_parses_like_the_whole(case: Case):
    fmt = _fmt(case)
    rng = random.Random(7)
    for out in filter(None, (case.thinking, case.plain)):
        open_at_start = out is case.thinking and fmt.reasoning is not None and not out.text.startswith(fmt.reasoning.start)
        whole = parse_output(out.text, fmt, TOOLS, open_at_start=open_at_start, id_factory=_ids())
        for trial in range(20):
            cuts = sorted(rng.sample(range(1, len(out.text)), k=min(len(out.text) - 1, rng.randint(1, 12))))
            pieces = [out.text[a:b] for a, b in zip([0, *cuts], [*cuts, len(out.text)])]
            parser = OutputParser(fmt, TOOLS, open_at_start=open_at_start, id_factory=_ids())
            for p in pieces:
                parser.feed(p)
            parser.finish()
            assert parser.result == whole, (pieces, parser.result, whole)
        # one character at a time
        parser = OutputParser(fmt, TOOLS, open_at_start=open_at_start, id_factory=_ids())
        for ch in out.text:
            parser.feed(ch)
        parser.finish()
        assert parser.result == whole


def test_partial_markers_are_held_back_until_decided():
    fmt = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    parser = OutputParser(fmt, TOOLS)
    assert parser.feed("<thi") == []
    deltas = parser.feed("nk>Hmm</th")
    assert "".join(d.reasoning for d in deltas) == "Hmm" and not any(d.content for d in deltas)
    deltas = parser.feed("ink>Answer <tool")
    assert "".join(d.content for d in deltas) == "Answer"
    parser.finish()
    assert parser.result.content == "Answer <tool"  # not a call after all: the held text is content


def test_cut_off_output_shows_no_markup():
    fmt = detect_format((TEMPLATES / "Kimi-K2-Thinking.jinja").read_text())
    parser = OutputParser(fmt, TOOLS)
    parser.feed('<think>x</think>Calling.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0'
                '<|tool_call_argument_begin|>{"city": "Pa')
    parser.finish(truncated=True)
    result = parser.result
    assert result.content == "Calling."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", '{"city": "Pa')]


def test_reasoning_format_none_keeps_the_raw_text():
    fmt = detect_format((TEMPLATES / "Qwen-QwQ-32B.jinja").read_text())
    result = parse_output("Hmm\n</think>\n\n4", fmt, reasoning_format="none", open_at_start=True)
    assert result.content == "<think>Hmm\n</think>\n\n4" and result.reasoning is None


@pytest.mark.parametrize("template, effort, expected", [
    ("openai-gpt-oss-120b", "low", {"reasoning_effort": "low"}),
    ("openai-gpt-oss-120b", "none", {"reasoning_effort": "low"}),
    ("Qwen-Qwen3-0.6B", "none", {"enable_thinking": False}),
    ("Qwen-Qwen3-0.6B", "high", {"enable_thinking": True}),
    ("deepseek-ai-DeepSeek-V3.1", "medium", {"thinking": True}),
    ("ibm-granite-granite-3.3-2B-Instruct", "low", {"thinking": True}),
    # "minimal" is the least thinking short of none: a template that does not name it gets the nearest level it
    # knows, low (it got medium, Hy3 high); one that names it (Solar Open, where it renders thinking off) gets it
    ("openai-gpt-oss-120b", "minimal", {"reasoning_effort": "low"}),
    ("Cohere2MoE", "minimal", {"reasoning_effort": "low"}),
    ("tencent-Hy3", "minimal", {"reasoning_effort": "low"}),
    ("upstage-Solar-Open-100B", "minimal", {"reasoning_effort": "minimal"}),
    ("upstage-Solar-Open-100B", "none", {"reasoning_effort": "low"}),
])
def test_effort_maps_to_the_templates_own_switch(template, effort, expected):
    kwargs = detect_format((TEMPLATES / f"{template}.jinja").read_text()).template_kwargs(effort)
    for k, v in expected.items():
        assert kwargs[k] == v


def test_slash_switch_goes_into_the_system_message():
    fmt = detect_format((TEMPLATES / "NVIDIA-Nemotron-Nano-v2.jinja").read_text())
    assert "slash" in fmt.switches
    msgs = fmt.apply_switch([{"role": "user", "content": "hi"}], None, False)
    assert msgs[0] == {"role": "system", "content": "/no_think"}
    msgs = fmt.apply_switch([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], "high", None)
    assert msgs[0]["content"] == "Be brief.\n/think"


def test_request_kwargs_win_and_bad_values_are_value_errors():
    fmt = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    plan = ChatPlan(fmt, ReasoningRequest(effort="high"), chat_template_kwargs={"enable_thinking": False})
    assert plan.template_kwargs()["enable_thinking"] is False
    with pytest.raises(ValueError):
        ReasoningRequest(effort="extreme")
    with pytest.raises(ValueError):
        ReasoningRequest(format="xml")
    assert ReasoningRequest.from_request({"think": "low", "reasoning_budget": -1}).budget_tokens is None
    assert ReasoningRequest.from_request({"think": False}).enabled is False
    assert ReasoningRequest.from_request({}, {"reasoning_budget": 64}).budget_tokens == 64


def test_a_budget_of_zero_renders_thinking_off():
    # llama-server's --reasoning-budget 0: the template renders thinking off (Qwen3 writes its empty, closed block)
    # rather than opening a block the engine must close at once; an explicit switch on still wins
    fmt = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    for body, settings in (({"reasoning_budget": 0}, None), ({}, {"reasoning_budget": 0})):
        reasoning = ReasoningRequest.from_request(body, settings)
        assert reasoning.enabled is False and reasoning.budget_tokens == 0
        assert ChatPlan(fmt, reasoning).template_kwargs()["enable_thinking"] is False
    assert ReasoningRequest.from_request({"reasoning_budget": 0, "think": True}).enabled is True
    assert ReasoningRequest.from_request({"reasoning_budget": 5}).enabled is None


def _run_the_docs_parser_example(pieces: list[str]) -> dict:
    """docs/chat-formats.md "Using the parsers" run as it is, given what it leaves to its reader (the tools, the
    messages, the engine's pieces); each `...` a delta is given to collects it in the scope's `seen`."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "chat-formats.md").read_text(encoding="utf-8")
    source = re.findall(r"```python\n(.*?)```", doc.split("## Using the parsers", 1)[1], flags=re.S)[0]
    template = TEMPLATES / "Qwen-Qwen3-0.6B.jinja"
    assert 'Path("Qwen-Qwen3-0.6B.jinja")' in source
    source = re.sub(r"^( +)\.\.\.$", r"\1seen.append(d)", source.replace(
        'Path("Qwen-Qwen3-0.6B.jinja")', f"Path({str(template)!r})"), flags=re.M)
    scope = {"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                 "type": "object", "properties": {"city": {"type": "string"}}}}}],
             "messages": [{"role": "user", "content": "Weather in Paris?"}],
             "pieces": pieces, "finish_reason": "stop", "seen": []}
    exec(compile(source, "docs/chat-formats.md", "exec"), scope)
    return scope


def test_the_docs_parser_example_runs_as_written():
    """The snippet reads a Qwen3 call out of the pieces."""
    scope = _run_the_docs_parser_example(["<think>\nhm</think>\n\n<tool_call>\n{\"name\": \"get_weather\", ",
                                          "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"])
    calls = [c for d in scope["seen"] for c in d.tool_calls]
    assert calls and calls[0].name == "get_weather"
    assert "".join(c.arguments for c in calls) == '{"city": "Paris"}'
    assert "grammar" in scope["options"]


def test_the_docs_parser_example_keeps_what_the_parser_releases_at_the_end():
    """An output that ends in what may be a marker's start (`Use <tool`) has that part held back until `finish()`,
    which returns it: the snippet called `parser.finish(...)` and dropped its deltas, so a front end written from it
    lost the answer's last words."""
    scope = _run_the_docs_parser_example(["<think>\nhm</think>\n\nUse <tool"])
    assert "".join(d.content for d in scope["seen"]) == "Use <tool"
    assert "".join(d.reasoning for d in scope["seen"]) == "hm"


def test_a_gpt_oss_plan_caps_its_analysis_and_lets_a_call_follow():
    # gpt-oss's thinking budget (and the watched thinking a reasoning control ends) closes the analysis message;
    # where the request may call a tool it stops at the next message's channel, else it opens the final one
    fmt = detect_format((TEMPLATES / "openai-gpt-oss-120b.jinja").read_text())
    prompt = "<|start|>user<|message|>Hi<|end|><|start|>assistant"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    answer = ChatPlan(fmt, ReasoningRequest(budget_tokens=8)).engine_options(prompt)
    assert answer["reasoning_budget"] == 8 and answer["reasoning_start"] == "<|channel|>analysis<|message|>"
    assert answer["reasoning_end"] == "<|end|>" and not answer["reasoning_open"]
    assert answer["reasoning_close"] == "<|end|><|start|>assistant<|channel|>final<|message|>"
    assert answer["reasoning_every"]  # every analysis message of the reply counts against the one budget
    calls = ChatPlan(fmt, ReasoningRequest(budget_tokens=8), tools=tools).engine_options(prompt)
    assert calls["reasoning_close"] == "<|end|><|start|>assistant<|channel|>"
    none = ChatPlan(fmt, ReasoningRequest(budget_tokens=8), tools=tools, tool_choice="none").engine_options(prompt)
    assert none["reasoning_close"].endswith("final<|message|>")
    assert ChatPlan(fmt).watched_thinking_options(prompt)["reasoning_budget"] == 2**31 - 1
    # a reply that continues a message's text opens no analysis: nothing to cap
    assert "reasoning_budget" not in ChatPlan(fmt, ReasoningRequest(budget_tokens=8), continued="Sure").engine_options(
        prompt + "<|channel|>final<|message|>Sure")


@pytest.mark.parametrize("template, prompt", [
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "<｜User｜>Hi<｜Assistant｜><think>\n"),
    ("Kimi-K2-Thinking", "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"),
])
def test_thinking_off_on_a_template_without_a_switch_is_a_budget_of_zero(template, prompt):
    # "none" / think: false went unheard where the template has no switch: the model thought in full. The engine's
    # budget ends the thinking at once instead (a budget the request gives still wins); a template with a switch
    # renders it off and needs none
    fmt = detect_format((TEMPLATES / f"{template}.jinja").read_text())
    assert not fmt.renders_off
    for reasoning in (ReasoningRequest(effort="none"), ReasoningRequest(enabled=False)):
        assert ChatPlan(fmt, reasoning).engine_options(prompt)["reasoning_budget"] == 0
    assert ChatPlan(fmt, ReasoningRequest(enabled=False, budget_tokens=9)).engine_options(prompt)["reasoning_budget"] == 9
    assert "reasoning_budget" not in ChatPlan(fmt, ReasoningRequest(effort="low")).engine_options(prompt)
    assert "reasoning_budget" not in ChatPlan(fmt).engine_options(prompt)
    held = ChatPlan(fmt, ReasoningRequest(effort="none"), constrained=True, whole_grammar=True)
    assert "reasoning_budget" not in held.engine_options(prompt)  # the client's own grammar holds the thinking
    qwen3 = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    assert qwen3.renders_off and "reasoning_budget" not in ChatPlan(qwen3, ReasoningRequest(effort="none")).engine_options(
        "<|im_start|>assistant\n")


def test_a_budget_knows_the_markers_that_interrupt_the_thinking():
    # Apertus's call opener ends its thinking where it stands: the engine's budget must see it too, or it forces the
    # end marker into the call
    fmt = detect_format((TEMPLATES / "Apertus-8B-Instruct.jinja").read_text())
    assert fmt.budget_options(5, "x")["reasoning_interrupt"] == ["<|tools_prefix|>"]
    assert "reasoning_interrupt" not in detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()).budget_options(
        5, "x")


def test_thinking_off_on_gpt_oss_keeps_its_least_effort_and_no_budget():
    # gpt-oss is made to reason: off is its least effort (low), as Ollama and llama-server keep its analysis for
    # think: false -- not a budget of 0, which would leave an Anthropic client that omits `thinking` with no analysis
    fmt = detect_format((TEMPLATES / "openai-gpt-oss-120b.jinja").read_text())
    prompt = "<|start|>user<|message|>Hi<|end|><|start|>assistant"
    for reasoning in (ReasoningRequest(effort="none"), ReasoningRequest(enabled=False)):
        assert "reasoning_budget" not in ChatPlan(fmt, reasoning).engine_options(prompt)
    budgeted = ChatPlan(fmt, ReasoningRequest(enabled=False, budget_tokens=9)).engine_options(prompt)
    assert budgeted["reasoning_budget"] == 9


def test_the_plans_messages_refuse_what_is_no_message_dict_by_its_place():
    """The docs' parser example takes the chat as dicts; a jan ChatMessage there was "'ChatMessage' object is not
    iterable" from deep inside: it is now a TypeError naming the item and what it should be."""
    from jan.services.types import ChatMessage

    plan = ChatPlan(detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()), ReasoningRequest())
    assert plan.messages([{"role": "user", "content": "hi"}])[0]["content"] == "hi"
    with pytest.raises(TypeError, match=r"messages\[1\]: expected a message as a dict .* got ChatMessage"):
        plan.messages([{"role": "user", "content": "hi"}, ChatMessage.of_text("user", "hi")])
