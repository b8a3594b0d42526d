"""A continued reply's output is parsed from the start of its prefill (jan.services.prefill_output): a tool call the
prefill opened comes back as a call with the whole of its arguments, in every tool-call format jan reads, wherever
the prefill stops; the prefill's own text is never told again; a prefill of plain text or one inside an open
thought reads as before. On strings, with each family's outputs of chat_format_cases."""

from __future__ import annotations

import json

import pytest

from chat_format_cases import CASES, TOOLS, Case, case_id, template_format
from jan.services.output import output_parser
from jan.templates.formats import ChatPlan, detect_format, parse_output
from jan.templates.tool_calls import ToolCallStreamParser
from chat_format_cases import TEMPLATES

HEAD = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # (any prompt: only its end is read)


def reply(fmt, prefill: str, output: str, *, opened: bool = False, tools=TOOLS, pieces: int = 1) -> dict:
    """What the chat service tells of ``output`` continuing ``prefill`` (the prompt ends in it; ``opened``: the
    template opened a thought before it): content, reasoning and the calls as (name, arguments object)."""
    head = HEAD + (fmt.reasoning.start + "\n" if opened else "")
    parser = output_parser(None, ChatPlan(fmt, tools=tools, continued=prefill), head + prefill)
    size = max(1, len(output) // pieces)
    deltas = [d for at in range(0, len(output), size) for d in parser.feed(output[at:at + size])]
    deltas += parser.finish("stop")
    calls: dict[int, list[str]] = {}
    for d in deltas:
        for c in d.tool_calls:
            slot = calls.setdefault(c.index, ["", ""])
            slot[0] += c.name or ""
            slot[1] += c.arguments
    return {"content": "".join(d.content for d in deltas), "reasoning": "".join(d.reasoning for d in deltas),
            "calls": [(name, json.loads(args)) for name, args in calls.values()],
            "made_calls": parser.made_tool_calls}


def _splits(fmt, text: str, opened: bool) -> list[int]:
    """Where a prefill of ``text`` may stop (as a client's, it has no whitespace at its ends) outside a thought:
    a prefill that stops inside one is continued as thinking (tested below), which is no call's concern."""
    out = []
    for k in range(1, len(text)):
        prefill = text[:k]
        if prefill != prefill.strip():
            continue
        if fmt.reasoning is not None:
            start, end = fmt.reasoning.start, fmt.reasoning.end
            if (opened or start in prefill) and end not in prefill:
                continue
        out.append(k)
    return out


@pytest.mark.parametrize("case", [c for c in CASES if any(o and o.calls for o in (c.thinking, c.plain))], ids=case_id)
def test_a_call_the_prefill_began_is_a_call_wherever_the_prefill_stops(case: Case):
    fmt = template_format(case.template)
    for out in filter(lambda o: o is not None and o.calls, (case.thinking, case.plain)):
        opened = out is case.thinking and fmt.reasoning is not None and not out.text.startswith(fmt.reasoning.start)
        whole = parse_output(out.text, fmt, TOOLS, open_at_start=opened)
        calls = [(c.name, json.loads(c.arguments)) for c in whole.tool_calls]
        assert calls == [(n, a) for n, a in out.calls]
        for k in _splits(fmt, out.text, opened):
            prefill, rest = out.text[:k], out.text[k:]
            for pieces in (1, 3):
                got = reply(fmt, prefill, rest, opened=opened, pieces=pieces)
                assert got["calls"] == calls and got["made_calls"], (prefill, got)
                # the answer text is the whole's, less what the prefill wrote of it
                content = (whole.content or "").strip()
                told = got["content"].strip()
                assert content.endswith(told), (prefill, got)
                assert content[:len(content) - len(told)].strip() in prefill, (prefill, got)


def _hermes():
    return detect_format((TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text())


def test_the_forced_call_a_prefill_opens_holds_its_prefilled_arguments():
    got = reply(_hermes(), '<tool_call>\n{"name": "get_weather", "arguments": {"city": "',
                'Paris", "days": 2}}\n</tool_call>')
    assert got == {"content": "", "reasoning": "", "calls": [("get_weather", {"city": "Paris", "days": 2})],
                   "made_calls": True}


def test_text_then_a_call_tells_the_call_and_not_the_text():
    got = reply(_hermes(), 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
                'ris", "days": 2}}\n</tool_call>\nDone.')
    assert got["calls"] == [("get_weather", {"city": "Paris", "days": 2})]
    assert got["content"].strip() == "Done."


def test_a_prefill_of_plain_text_is_continued_as_before():
    fmt = _hermes()
    assert reply(fmt, "Once upon a", " time there was") == {"content": " time there was", "reasoning": "",
                                                             "calls": [], "made_calls": False}
    # the tail the parser held back as a possible call marker is the client's text: not told when it was not one
    assert reply(fmt, "Use <tool", "box now.")["content"] == "box now."
    assert reply(fmt, "Use <tool", "_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", "
                                   "\"days\": 1}}\n</tool_call>")["calls"] == [("get_weather", {"city": "Oslo", "days": 1})]
    # without tools nothing is parsed: the output is the continuation, verbatim
    assert reply(fmt, "<tool_call>\n{", '"a": 1}', tools=None)["content"] == '"a": 1}'


def test_a_prefill_inside_an_open_thought_goes_on_as_reasoning():
    fmt = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    got = reply(fmt, "<think>\nThe user wants", " the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
                "\"arguments\": {\"city\": \"Rome\", \"days\": 3}}\n</tool_call>")
    assert got["reasoning"].strip() == "the weather."
    assert got["calls"] == [("get_weather", {"city": "Rome", "days": 3})] and not got["content"].strip()
    # the template's own open thought (QwQ's generation prompt ends in <think>)
    qwq = detect_format((TEMPLATES / "Qwen-QwQ-32B.jinja").read_text())
    got = reply(qwq, "Two plus", " two.\n</think>\n\nIt is 4.", opened=True)
    assert got["reasoning"].strip() == "two." and got["content"].strip() == "It is 4."


@pytest.mark.parametrize("after", ["x", "\ue000", "1x", "é"])
def test_a_call_whose_number_is_followed_by_no_json_keeps_its_arguments(after):
    """A committed call whose JSON breaks off right after a number (or literal) hands the character that ended it
    back as text: the parser once failed an internal assertion there."""
    parser = ToolCallStreamParser(TOOLS)
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Lyon", "days": 2' + after
    deltas = parser.feed(text) + parser.finish()
    args = "".join(c["function"].get("arguments", "") for d in deltas for c in d.get("tool_calls", ()))
    assert json.loads(args) == {"city": "Lyon", "days": int("2" + after.rstrip("x\ue000é"))}
    assert "".join(d.get("content", "") for d in deltas) == after.lstrip("1")


def _in_order(whole: str, told: str, prefill: str) -> bool:
    """``told`` (a continued reply's content or thinking) is the end of ``whole`` (the same text's, written whole),
    and what it leaves of ``whole`` the prefill wrote: nothing lost, nothing told twice, no markup leaked."""
    whole, told = whole.strip(), told.strip()
    return whole.endswith(told) and whole[:len(whole) - len(told)].strip() in prefill


@pytest.mark.parametrize("case", [c for c in CASES if c.thinking is not None], ids=case_id)
def test_a_prefill_stopped_anywhere_splits_as_the_whole_text(case: Case):
    """A continued reply splits into thinking, answer and calls as the same text written whole does, wherever the
    prefill stops: also part-way through the marker that ends the thought (``…</thi`` continued ``nk>…``: the
    marker is finished, the answer is the answer) or right after it (the whitespace after it is the marker's)."""
    fmt = template_format(case.template)
    out = case.thinking
    opened = fmt.reasoning is not None and not out.text.startswith(fmt.reasoning.start)
    whole = parse_output(out.text, fmt, TOOLS, open_at_start=opened)
    calls = [(c.name, json.loads(c.arguments)) for c in whole.tool_calls]
    for k in range(1, len(out.text)):
        prefill, rest = out.text[:k], out.text[k:]
        for pieces in (1, 4):
            got = reply(fmt, prefill, rest, opened=opened, pieces=pieces)
            assert got["calls"] == calls, (prefill, got)
            assert _in_order(whole.content or "", got["content"], prefill), (prefill, got)
            assert _in_order(whole.reasoning or "", got["reasoning"], prefill), (prefill, got)


def test_the_engine_and_the_token_count_see_the_marker_a_prefill_stopped_in():
    """The grammar (its lazy trigger searches ``</think>`` then a call), the thinking budget (which watches the
    output for the end marker) and the reasoning tokens' count see the end marker a prefill stopped in finished by
    the output: the grammar reads the marker's start first, the budget waits for its rest, the count finds the
    thinking in the prefill and the output together."""
    fmt = detect_format((TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text())
    prefill = "<think>\nThe user wants the weather.\n</thi"
    prompt = HEAD + prefill
    assert fmt.grammar_prefix(prompt, prefill) == "</thi"
    assert fmt.budget_options(64, prompt, prefill)["reasoning_end"] == "nk>"
    assert fmt.budget_options(64, prompt, prefill)["reasoning_close"] == "</think>"
    assert fmt.budget_options(64, HEAD + "<think>\nHmm", "<think>\nHmm")["reasoning_end"] == "</think>"
    parser = output_parser(None, ChatPlan(fmt, tools=TOOLS, continued=prefill), prompt)
    output = "nk>\n\nIt is sunny."
    parser.feed(output)
    parser.finish("stop")
    # the rest of the marker and the whitespace after it are the thinking's markup; the answer is not
    assert parser.reasoning_spans(output) == [(0, len("nk>\n\n"))]
    # a prefill that closed its thought: the output's whitespace right after it is the marker's too
    closed = "<think>\nHmm.\n</think>"
    parser = output_parser(None, ChatPlan(fmt, tools=TOOLS, continued=closed), HEAD + closed)
    deltas = parser.feed("\n\nIt is sunny.") + parser.finish("stop")
    assert "".join(d.content for d in deltas) == "It is sunny." and not "".join(d.reasoning for d in deltas)
    assert parser.reasoning_spans("\n\nIt is sunny.") == [(0, 2)]
