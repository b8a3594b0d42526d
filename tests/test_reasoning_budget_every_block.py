"""A thinking budget is the whole reply's thinking, for every chat format.

Qwen3, DeepSeek, GLM, Kimi and MiniMax open a ``<think>`` block again after a tool call or some content in the
same reply (Anthropic's interleaved thinking), as gpt-oss opens a second analysis message. The budget (from
``reasoning_effort``, ``thinking.budget_tokens``, Ollama's ``think`` levels, ``reasoning_budget``) capped only the
reply's first block for every format but gpt-oss: a second block thought on uncapped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from jan.templates.formats import ChatPlan, ReasoningRequest, detect_format
from jan.templates.formats.reasoning import ReasoningMarkers

from chat_format_cases import TEMPLATES

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
_THINKING = sorted(p for p in Path(TEMPLATES).glob("*.jinja") if detect_format(p.read_text()).thinks)


@pytest.mark.parametrize("path", _THINKING, ids=lambda p: p.stem)
def test_every_thinking_format_budgets_every_block_of_the_reply(path):
    fmt = detect_format(path.read_text())
    # (gpt-oss's reply opens a new assistant message; the marker formats' prompts end anywhere)
    prompt = "<|start|>user<|message|>Hi<|end|><|start|>assistant" if fmt.channels else "Hi"
    for tools in (None, TOOLS):
        plan = ChatPlan(fmt, ReasoningRequest(budget_tokens=8), tools=tools)
        for options in (plan.engine_options(prompt), plan.watched_thinking_options(prompt)):
            assert options.get("reasoning_budget") is not None, (path.stem, options)
            assert options["reasoning_every"] is True, (path.stem, options)


def test_a_marker_format_budget_caps_a_second_block_of_the_reply(stories):
    # Through the plan, as a chat request gets its options: a marker-pair format whose markers are words of the
    # greedy story, which has two blocks between "She" and ".": "She loved to play outside in the park." (about 13
    # tokens) and later "She wanted to play with it, but it". The budget of 16 lets the first block be; the second
    # counts on from what the first spent and is closed ("END") where the 16 run out, not left to think on.
    fmt = replace(detect_format((Path(TEMPLATES) / "Qwen-Qwen3-0.6B.jinja").read_text()),
                  reasoning=ReasoningMarkers("She", "."), budget_close="END")
    options = ChatPlan(fmt, ReasoningRequest(budget_tokens=16)).engine_options("Once upon a time")
    options.pop("render_special", None)
    plain = stories.generate("Once upon a time", max_tokens=50, temperature=0).text
    assert plain.count("She") == 2, plain
    second = plain.index("She wanted")
    capped = stories.generate("Once upon a time", max_tokens=50, temperature=0, **options).text
    assert capped.startswith(plain[:second + len("She")]) and "END" in capped[second:], capped
    assert "END" not in capped[:second], capped
