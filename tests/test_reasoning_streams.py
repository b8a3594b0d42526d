"""Thinking in streamed output, as a demanding user of reasoning models meets it: every family's markers split at
every character and in random pieces (markers torn across deltas), a block the prompt opened, one never closed
(max_tokens), a close with no open, repeated and nested blocks, tool calls inside and after thinking, Harmony's
analysis/commentary/final channels, whitespace after the end marker. Whatever the pieces, the streamed deltas add
up to the whole output's parse, with ``reasoning_format`` ``auto`` and ``none`` alike, and ``none`` changes only
where the thinking goes: the same output makes the same tool calls and the same answer."""

from __future__ import annotations

import json
import random

import pytest

from jan.templates.formats import OutputParser

from chat_format_cases import CASES, TEMPLATES, TOOLS, Case, Output, call_ids, template_format

# one case per family (the first template of each), the families that think first
FAMILIES = {}
for _case in CASES:
    FAMILIES.setdefault(_case.family, _case)
# and templates whose markers are read off what they write (formats/learned_markers.py)
LEARNED = ("ByteDance-Seed-OSS", "MiniMax-M3", "tencent-Hy3", "Kimi-K3", "google-gemma-4-31B-it")
ALL = [*FAMILIES.values(), *LEARNED]


def _case(case) -> Case:
    if isinstance(case, Case):
        return case
    markers = template_format(case).reasoning
    return Case("learned", case, "qwen2", Output(f"{markers.start}T{markers.end}A", "T", "A"), Output("A", None, "A"))


def _id(case) -> str:
    return case.family if isinstance(case, Case) else case

HARMONY = [
    "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Answer.<|return|>",
    "<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>commentary<|message|>Preamble.<|end|>"
    '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "X", "days": 1}<|call|>',
    '<|channel|>analysis<|message|>A<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>'
    '{"city": "X", "days": 1}<|call|>',
    "<|channel|>analysis<|message|>cut off mid-thought",
    "<|channel|>final<|message|>No thinking.",
    "no header at all",
    "<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>analysis<|message|>B<|end|>"
    "<|start|>assistant<|channel|>final<|message|>C",
    '<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json'
    '<|message|>{"city": "X"',
    "<|channel|>analysis to=browser.search<|message|>{}<|call|>",
]


def _marker_outputs(start: str, end: str, call: str) -> list[str]:
    """Outputs that stress a marker pair, from the family's own markers and call syntax."""
    return [
        f"{start}\nA thought.\n{end}\n\nThe answer.",
        f"A thought the prompt opened.\n{end}\n\nThe answer.",
        f"{start}\nNever closed: max_tokens came first",
        f"No open{end}but a close{end}twice",
        f"{start}outer{start}inner{end}after{end}tail",
        f"{start}one{end}middle{start}two{end}end",
        f"{start}x{end}\n\n\n",
        f"{end}",
        f"{start}{end}",
        "",
        f"before{start}inside",
        start[: len(start) // 2 + 1],
        f"thought{end[: len(end) // 2 + 1]}",
        f"{start}\nThinking about {call}\n{end}\n\nSo: {call}",
        f"{start}A{end}\n\n{call}",
        f"{start}A{end}{call}{start}again{end}done",
    ]


def _outputs(case) -> list[tuple[str, bool]]:
    """(output, whether the prompt opened a thinking block) pairs for a family."""
    fmt = template_format(case.template)
    texts = [o.text for o in (case.thinking, case.plain) if o is not None]
    if fmt.channels:
        return [(t, False) for t in texts + HARMONY]
    if fmt.reasoning is None:
        return [(t, False) for t in texts]
    call = (case.thinking if case.thinking and case.thinking.calls else case.plain).text if any(
        o is not None and o.calls for o in (case.thinking, case.plain)) else "no call here"
    if call != "no call here" and fmt.reasoning.start in call:  # the call's own output thinks: keep the call alone
        call = call[call.rindex(fmt.reasoning.end) + len(fmt.reasoning.end):].strip()
    texts += _marker_outputs(fmt.reasoning.start, fmt.reasoning.end, call)
    return [(t, opened) for t in texts for opened in (False, True)]


def _parse(fmt, pieces, *, opened: bool, raw: bool | str, truncated: bool, tools=TOOLS):
    """``raw``: True for ``none``, False for ``auto``, or the reasoning_format itself."""
    rf = raw if isinstance(raw, str) else "none" if raw else "auto"
    parser = OutputParser(fmt, tools, open_at_start=opened, reasoning_format=rf, id_factory=call_ids())
    deltas = []
    for piece in pieces:
        deltas += parser.feed(piece)
    deltas += parser.finish(truncated=truncated)
    return parser.result, deltas


def _cuttings(text: str, rng: random.Random):
    yield [text]
    yield list(text)                                   # one character at a time
    for i in range(1, len(text)):                      # every boundary
        yield [text[:i], text[i:]]
    for _ in range(15):                                # random pieces
        if len(text) < 2:
            break
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(2, 12))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_any_pieces_add_up_to_the_whole(case):
    case = _case(case)
    fmt = template_format(case.template)
    rng = random.Random(11)
    for text, opened in _outputs(case):
        for raw in (False, True, "deepseek-legacy"):
            for truncated in (False, True):
                whole, _ = _parse(fmt, [text], opened=opened, raw=raw, truncated=truncated)
                for pieces in _cuttings(text, rng):
                    streamed, deltas = _parse(fmt, pieces, opened=opened, raw=raw, truncated=truncated)
                    assert streamed == whole, (text, pieces, raw, truncated)
                    # the deltas themselves add up to the result (content, reasoning, calls' pieces in order)
                    assert ("".join(d.content for d in deltas) or None) == whole.content
                    assert ("".join(d.reasoning for d in deltas) or None) == whole.reasoning


def _calls(result):
    return [(c.name, json.loads(c.arguments) if c.arguments.strip().endswith("}") else c.arguments)
            for c in result.tool_calls]


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_reasoning_format_none_moves_only_the_thinking(case):
    case = _case(case)
    # llama-server's "none": thinking stays in the content as written; tool calls are still read (never out of the
    # thinking) and the answer is framed as with "auto" (gpt-oss's calls were all lost, its final message's header
    # shown; a call written inside <think> was made)
    fmt = template_format(case.template)
    for text, opened in _outputs(case):
        for truncated in (False, True):
            auto, _ = _parse(fmt, [text], opened=opened, raw=False, truncated=truncated)
            raw, _ = _parse(fmt, [text], opened=opened, raw=True, truncated=truncated)
            assert raw.reasoning is None
            assert _calls(raw) == _calls(auto), text
            if auto.reasoning:
                assert auto.reasoning.split()[0] in (raw.content or ""), text
            if (not truncated and not fmt.channels and fmt.reasoning is not None and not auto.tool_calls
                    and not fmt.reasoning.strip):
                # a marker pair and no call: the content is the output verbatim (the swallowed marker given back;
                # cut off, a partial call marker at the end is dropped, as with auto)
                assert raw.content == ((fmt.reasoning.start if opened else "") + text or None), text


def test_a_call_inside_thinking_is_no_call_in_either_format():
    fmt = template_format("Qwen-Qwen3-0.6B")
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>'
    text = f"<think>Maybe {call}?</think>\n\nNo need."
    for raw in (False, True):
        result, _ = _parse(fmt, [text], opened=False, raw=raw, truncated=False)
        assert result.tool_calls == []
        assert result.content == (text if raw else "No need.")


def test_gpt_oss_none_keeps_its_calls_and_shows_the_analysis():
    fmt = template_format("openai-gpt-oss-120b")
    result, _ = _parse(fmt, [HARMONY[1]], opened=False, raw=True, truncated=False)
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", {"city": "X", "days": 1})]
    assert result.content == "<|channel|>analysis<|message|>A<|end|>Preamble."
    result, _ = _parse(fmt, [HARMONY[0]], opened=False, raw=True, truncated=False, tools=None)
    assert result.content == "<|channel|>analysis<|message|>Think.<|end|>Answer."


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_deepseek_legacy_is_none_s_content_and_auto_s_reasoning(case):
    # llama-server's deepseek-legacy: <think> stays in the content and the reasoning is split off too (jan took the
    # value and answered as auto)
    case = _case(case)
    fmt = template_format(case.template)
    for text, opened in _outputs(case):
        auto, _ = _parse(fmt, [text], opened=opened, raw=False, truncated=False)
        raw, _ = _parse(fmt, [text], opened=opened, raw=True, truncated=False)
        legacy, _ = _parse(fmt, [text], opened=opened, raw="deepseek-legacy", truncated=False)
        assert (legacy.content, legacy.reasoning, _calls(legacy)) == (raw.content, auto.reasoning, _calls(auto)), text


def _has_marker_pair(case) -> bool:
    """Whether the case's template thinks between a start and an end marker (Harmony's channels have none)."""
    template = case.template if isinstance(case, Case) else case
    if not (TEMPLATES / f"{template}.jinja").is_file():
        return True  # (../shared absent: the test skips, saying so)
    return template_format(template).reasoning is not None


#: The families (and learned templates) with a marker pair: a start marker the output can write again.
MARKED = [case for case in ALL if _has_marker_pair(case)]


@pytest.mark.parametrize("case", MARKED, ids=_id)
def test_a_block_the_prompt_opened_and_the_output_opens_again_is_one_block(case):
    """The prompt opened the thinking (QwQ's, R1 distills' ``<think>\\n``) and the model writes the start marker
    again first, as models trained on templates that left it to them do: the marker was the thinking's first words
    (``reasoning_content`` "<think>\\nA thought."), in every dialect. It is the block's markup: the same parse as
    the output without it, streamed in any pieces."""
    case = _case(case)
    fmt = template_format(case.template)
    start, end = fmt.reasoning.start, fmt.reasoning.end
    once, _ = _parse(fmt, [f"A thought.\n{end}\n\nThe answer."], opened=True, raw=False, truncated=False, tools=None)
    assert once.reasoning == "A thought."
    rng = random.Random(5)
    for text in (f"{start}\nA thought.\n{end}\n\nThe answer.", f"\n{start}A thought.{end}\n\nThe answer."):
        for pieces in _cuttings(text, rng):
            again, deltas = _parse(fmt, pieces, opened=True, raw=False, truncated=False, tools=None)
            assert again == once, (text, pieces)
            assert "".join(d.reasoning for d in deltas) == "A thought."
