"""A tool call cut off inside its markup (the token limit) is still a call, in every family's parser, as OpenAI's
cut call is: once its name is written whole it is returned with the arguments as far as they got (none yet: ``""``),
and a call a grammar forces (one function: a named ``tool_choice``, or ``required`` with one tool) is returned even
when the cut came before its name. Cut at every character of each family's outputs, fed whole and one character at
a time (the streamed deltas add up to the same), thinking on and off, ``tool_choice`` auto and forced."""

from __future__ import annotations

import json

import pytest
from chat_format_cases import CASES, TOOLS, Case, answer_begun, call_ids, case_id, parsed_in_pieces, template_format
from jan.templates.formats import ChatPlan, OutputParser
from jan.templates.formats.plan import ReasoningRequest

NAME = "get_weather"
WS = " \t\r\n"


def _outputs(case: Case):
    """(output, open_at_start) of the case that make calls."""
    fmt = template_format(case.template)
    for out in filter(None, (case.thinking, case.plain)):
        if out.calls:
            opened = out is case.thinking and fmt.reasoning is not None and not out.text.startswith(fmt.reasoning.start)
            yield fmt, out, opened


def _parse(fmt, text: str, opened: bool, *, forced: str | None = None, stream: bool = False):
    """The parse of ``text`` cut off there (finish_reason "length"), fed whole or one character at a time (checked:
    the streamed deltas add up to it)."""
    return parsed_in_pieces(fmt, text if stream else [text], opened, truncated=True, forced=forced)


def _name_whole_at(text: str) -> int:
    """Where the first call's name is written whole: with what ends it (a quote and the character after it, ``>``,
    ``[``, ``:``, a space or a newline, by family; or a marker token, DeepSeek V3.1's ``<｜tool▁sep｜>``)."""
    end = text.index(NAME) + len(NAME)
    return end + text.index(">", end) + 1 - end if text.startswith("<", end) else end + 1


@pytest.mark.parametrize("case", [c for c in CASES if any(o and o.calls for o in (c.thinking, c.plain))], ids=case_id)
def test_a_call_cut_after_its_name_is_a_call_with_the_arguments_so_far(case: Case):
    for fmt, out, opened in _outputs(case):
        whole = OutputParser(fmt, TOOLS, open_at_start=opened, id_factory=call_ids())
        whole.feed(out.text)
        whole.finish()
        full = [(c.name, c.arguments) for c in whole.result.tool_calls]
        for cut in range(1, len(out.text) + 1):
            text = out.text[:cut]
            got = _parse(fmt, text, opened)
            assert got == _parse(fmt, text, opened, stream=True), text
            calls = [(c.name, c.arguments) for c in got.tool_calls]
            if cut >= _name_whole_at(out.text):
                assert calls, (case.template, text)
                # and its markup never shows as text (before that, an output that opens with a bare ``{`` may
                # still have been a JSON answer: Llama 3's calls have no marker)
                assert NAME not in (got.content or ""), (text, got.content)
            # what a cut call has is what the whole one begins with: its name, the arguments as far as written
            assert len(calls) <= len(full), text
            for (name, args), (full_name, full_args) in zip(calls, full):
                assert name == full_name and full_args.startswith(args), (text, calls, full)


@pytest.mark.parametrize("case", [c for c in CASES if any(o and o.calls and not o.content for o in (c.thinking, c.plain))],
                         ids=case_id)
def test_a_forced_call_cut_anywhere_in_its_markup_is_that_call(case: Case):
    """The output of a forced call is its markup (thinking aside): cut anywhere after its answer began, it is the
    call (empty arguments before any were written), never text; cut in the thinking, no call was begun."""
    for fmt, out, opened in _outputs(case):
        if out.content:
            continue
        for cut in range(1, len(out.text) + 1):
            text = out.text[:cut]
            got = _parse(fmt, text, opened, forced=NAME)
            assert got == _parse(fmt, text, opened, forced=NAME, stream=True), text
            assert not got.content, (case.template, text, got.content)
            if answer_begun(fmt, text, opened):
                assert got.tool_calls and got.tool_calls[0].name == NAME, (case.template, text)
            else:
                assert not got.tool_calls, text
                assert (got.reasoning or "") == (_parse(fmt, text, opened).reasoning or "")


def test_a_forced_call_is_the_grammars_one_function():
    """``forced`` comes from the plan: a named tool_choice, or ``required``/``any`` with one tool (else no call can
    be named before its name is written: a cut there has none); never ``auto``, nor a client's raw grammar
    (which holds the whole output instead of the call)."""
    fmt = template_format("Qwen-Qwen2.5-7B-Instruct")
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    cases = [
        (dict(tools=TOOLS, tool_choice="required"), NAME),
        (dict(tools=TOOLS, tool_choice="any"), NAME),
        (dict(tools=[*TOOLS, other], tool_choice={"type": "function", "function": {"name": "get_time"}}), "get_time"),
        (dict(tools=[*TOOLS, other], tool_choice="required"), None),
        (dict(tools=TOOLS, tool_choice="auto"), None),
        (dict(tools=TOOLS, tool_choice="none"), None),
        (dict(tools=TOOLS, tool_choice="required", constrained=True, whole_grammar=True), None),
        (dict(tools=TOOLS, tool_choice="required", constrained=True), NAME),  # a response_format: the call stays forced
    ]
    for kwargs, name in cases:
        plan = ChatPlan(fmt, ReasoningRequest(), **kwargs)
        assert plan.forced_function == name, kwargs
        parser = plan.parser("")
        parser.feed("<tool_call>\n{\"na")
        parser.finish(truncated=True)
        assert [c.name for c in parser.result.tool_calls] == ([name] if name else []), kwargs


def test_a_normal_end_inside_a_call_is_unchanged():
    """Only a cut makes a call of a name without arguments: an output the model itself ended there (its end of
    turn) is text that never became a call, as before."""
    fmt = template_format("Qwen-Qwen2.5-7B-Instruct")
    parser = OutputParser(fmt, TOOLS, id_factory=call_ids())
    parser.feed('<tool_call>\n{"name": "get_weather", ')
    parser.finish()
    assert not parser.result.tool_calls


def test_cut_arguments_given_as_a_string_name_the_call():
    fmt = template_format("Qwen-Qwen2.5-7B-Instruct")
    parser = OutputParser(fmt, TOOLS, id_factory=call_ids())
    parser.feed('<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Pa')
    parser.finish(truncated=True)
    assert [(c.name, c.arguments) for c in parser.result.tool_calls] == [(NAME, "")]
    json.dumps(parser.result.tool_calls[0].arguments)
