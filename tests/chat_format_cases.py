"""Per-family cases for the chat-format tests: template, vocabulary and the outputs to force.

Each case names a real template from ../shared/templates, the vocabulary to
build a tiny model with, and model outputs (with thinking and without) in
the family's own markup, with the parse they must give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TOOLS = [WEATHER]


@dataclass(frozen=True)
class Output:
    text: str                      # what the model writes (after the prompt)
    reasoning: str | None
    content: str | None
    calls: tuple[tuple[str, dict], ...] = ()


@dataclass(frozen=True)
class Case:
    family: str                    # ChatFormat.name the template must be detected as
    template: str                  # file stem in ../shared/templates
    vocab: str                     # vocab short name in ../shared/models/vocab
    thinking: Output | None        # output with reasoning on (None: the family does not think)
    plain: Output | None           # output with reasoning off (None: the template always opens thinking)
    effort_kwargs: dict[str, Any] = field(default_factory=dict)  # template_kwargs(effort="high") must include


def _call(city: str, days: int) -> tuple[str, dict]:
    return ("get_weather", {"city": city, "days": days})


CASES = [
    Case("hermes", "Qwen-Qwen3-0.6B", "qwen2",
         Output('<think>\nCheck the weather.\n</think>\n\nLet me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>',
                "Check the weather.", "Let me look.", (_call("Paris", 2),)),
         Output('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>', None, None, (_call("Paris", 2),)),
         {"enable_thinking": True}),
    Case("hermes", "Qwen-QwQ-32B", "qwen2",  # the prompt opens <think>: output starts inside it
         Output("Two plus two.\n</think>\n\nIt is 4.", "Two plus two.", "It is 4."),
         Output("It is 4.", None, "It is 4."),
         {"enable_thinking": True}),
    Case("hermes", "Qwen-Qwen2.5-7B-Instruct", "qwen2", None,
         Output('Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bergen", "days": 3}}\n</tool_call>',
                None, "Sure.", (_call("Oslo", 1), _call("Bergen", 3)))),
    Case("qwen3-coder", "Qwen3-Coder", "qwen2", None,
         Output("Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
                None, "Checking.", (_call("San Francisco", 3),))),
    Case("qwen3-coder", "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "qwen2",
         Output("Need the tool.\n</think>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
                "Need the tool.", None, (_call("Lima", 2),)),
         Output("Hello!", None, "Hello!"),
         {"enable_thinking": True}),
    Case("deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "qwen2",
         Output('The user wants weather.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Rome", "days": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
                "The user wants weather.", None, (_call("Rome", 1),)),
         Output("Ciao.", None, "Ciao."),
         {"enable_thinking": True}),
    Case("deepseek-v3.1", "deepseek-ai-DeepSeek-V3.1", "deepseek-llm",
         Output('Weather, then.</think>Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Kyiv", "days": 4}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
                "Weather, then.", "Checking.", (_call("Kyiv", 4),)),
         Output("Plain answer.", None, "Plain answer."),
         {"thinking": True}),
    Case("gpt-oss", "openai-gpt-oss-120b", "qwen2",
         Output('<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo", "days": 1}',
                "Need weather.", None, (_call("Oslo", 1),)),
         Output("<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>Hello there", None, "Hello there"),
         {"reasoning_effort": "high"}),
    Case("kimi-k2", "Kimi-K2-Thinking", "qwen2",
         Output('<think>Use the tool.</think>Calling.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Tokyo", "days": 5}<|tool_call_end|><|tool_calls_section_end|>',
                "Use the tool.", "Calling.", (_call("Tokyo", 5),)),
         Output('<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Tokyo", "days": 5}<|tool_call_end|><|tool_calls_section_end|>',
                None, None, (_call("Tokyo", 5),))),
    Case("kimi-k2", "moonshotai-Kimi-K2", "qwen2", None,
         Output('Sure.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Seoul", "days": 2}<|tool_call_end|><|tool_calls_section_end|>',
                None, "Sure.", (_call("Seoul", 2),))),
    Case("glm-4.5", "GLM-4.6", "qwen2",
         Output("<think>Berlin weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Berlin</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>",
                "Berlin weather.", None, (_call("Berlin", 2),)),
         Output("Hi.", None, "Hi."),
         {"enable_thinking": True}),
    Case("command-r7b", "CohereForAI-c4ai-command-r7b-12-2024-tool_use", "command-r",
         Output('<|START_THINKING|>I will call the tool.<|END_THINKING|><|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Accra", "days": 1}}\n]<|END_ACTION|>',
                "I will call the tool.", None, (_call("Accra", 1),)),
         Output("<|START_RESPONSE|>Hello!<|END_RESPONSE|>", None, "Hello!"),
         {"enable_thinking": True}),
    Case("mistral-reasoning", "mistralai-Ministral-3-14B-Reasoning-2512", "llama-spm",
         Output('[THINK]Weather needed.[/THINK][TOOL_CALLS]get_weather[ARGS]{"city": "Nice", "days": 1}',
                "Weather needed.", None, (_call("Nice", 1),)),
         Output("Bonjour.", None, "Bonjour.")),
    Case("mistral", "unsloth-mistral-Devstral-Small-2507", "llama-spm", None,
         Output('[TOOL_CALLS]get_weather[ARGS]{"city": "Lyon", "days": 2}', None, None, (_call("Lyon", 2),))),
    Case("mistral", "mistralai-Mistral-Nemo-Instruct-2407", "llama-spm", None,
         Output('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Metz", "days": 1}}]', None, None, (_call("Metz", 1),))),
    Case("llama3", "meta-llama-Llama-3.1-8B-Instruct", "llama-bpe", None,
         Output('{"name": "get_weather", "parameters": {"city": "Austin", "days": 1}}', None, None, (_call("Austin", 1),))),
    Case("llama3", "meta-llama-Llama-3.3-70B-Instruct", "llama-bpe", None,
         Output('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Dallas", "days": 2}}', None, None, (_call("Dallas", 2),))),
    Case("granite", "ibm-granite-granite-3.3-2B-Instruct", "llama-bpe",
         Output("<think>Short.</think><response>Fine, thanks.</response>", "Short.", "Fine, thanks."),
         Output('<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Rome", "days": 1}}]', None, None, (_call("Rome", 1),)),
         {"thinking": True}),
    Case("nemotron", "NVIDIA-Nemotron-Nano-v2", "llama-bpe",
         Output('Tool time.\n</think>\n<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Delhi", "days": 1}}]</TOOLCALL>',
                "Tool time.", None, (_call("Delhi", 1),)),
         Output("Namaste.", None, "Namaste.")),
    Case("functionary-v3.1", "meetkai-functionary-medium-v3.1", "llama-bpe", None,
         Output('<function=get_weather>{"city": "Baku", "days": 1}</function>', None, None, (_call("Baku", 1),))),
    Case("functionary-v3.2", "meetkai-functionary-medium-v3.2", "llama-bpe", None,
         Output('get_weather\n{"city": "Cairo", "days": 1}>>>get_weather\n{"city": "Giza", "days": 2}', None, None,
                (_call("Cairo", 1), _call("Giza", 2)))),
    Case("firefunction-v2", "fireworks-ai-llama-3-firefunction-v2", "llama-bpe", None,
         Output(' functools[{"name": "get_weather", "arguments": {"city": "Quito", "days": 2}}]', None, None, (_call("Quito", 2),))),
    # thinking markers read off the template (formats/learned_markers.py): Gemma 4's are its vocabulary's control tokens
    Case("generic", "google-gemma-4-31B-it", "gemma-4",
         Output("<|channel>thought\nHmm.<channel|>Hello.", "Hmm.", "Hello."),
         Output("Hello.", None, "Hello."),
         {"enable_thinking": True}),
    Case("qwen3-coder", "ByteDance-Seed-OSS", "qwen2",
         Output("<seed:think>Need the tool.</seed:think>\n<seed:tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</seed:tool_call>",
                "Need the tool.", None, (_call("Lima", 2),)),
         Output("Hello!", None, "Hello!")),
    Case("generic", "tencent-Hy3", "qwen2",
         Output("Weighing it.</think:opensource>Hello.", "Weighing it.", "Hello."),
         Output("Hello.", None, "Hello.")),
    # Apertus: thinking in <|inner_prefix|>...<|inner_suffix|> (its "Deliberation" is enable_thinking), calls as a list of
    # {NAME: {arguments}} objects
    Case("apertus", "Apertus-8B-Instruct", "llama-bpe",
         Output('<|inner_prefix|>Check the weather.<|inner_suffix|>Let me look.<|tools_prefix|>[{"get_weather": {"city": "Bern", "days": 2}}]<|tools_suffix|>',
                "Check the weather.", "Let me look.", (_call("Bern", 2),)),
         Output('<|tools_prefix|>[{"get_weather": {"city": "Zurich", "days": 1}}, {"get_weather": {"city": "Geneva", "days": 3}}]<|tools_suffix|>',
                None, None, (_call("Zurich", 1), _call("Geneva", 3))),
         {"enable_thinking": True}),
    # Apriel 1.5: <thinking>...</thinking>, the answer in [BEGIN FINAL RESPONSE]...[END FINAL RESPONSE], calls in <tool_calls>
    Case("apriel-1.5", "unsloth-Apriel-1.5", "llama-bpe",
         Output('<thinking>Need the weather.</thinking>\n[BEGIN FINAL RESPONSE]\nChecking.\n<tool_calls>[{"name": "get_weather", "arguments": {"city": "Lima", "days": 2}}]</tool_calls>\n[END FINAL RESPONSE]',
                "Need the weather.", "Checking.", (_call("Lima", 2),)),
         Output("[BEGIN FINAL RESPONSE]\nIt is 4.\n[END FINAL RESPONSE]", None, "It is 4.")),
    # Apriel 1.6: the prompt opens the thinking ("Here are my reasoning steps:\n"), which runs to [BEGIN FINAL RESPONSE]
    Case("apriel-1.6", "Apriel-1.6-15b-Thinker-fixed", "llama-bpe",
         Output('The user wants the weather.\n[BEGIN FINAL RESPONSE]\n<tool_calls>[{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}]</tool_calls>',
                "The user wants the weather.", None, (_call("Oslo", 1),)),
         None),
    # Solar Open: messages under headers (the prompt ends in <|begin|>assistant): a <|think|> message, then the answer
    # as a <|content|> message or the calls as a <|tool_calls|> one, each header written by the model
    Case("solar-open", "upstage-Solar-Open-100B", "qwen2",
         Output('<|think|>Need the weather.<|end|><|begin|>assistant<|tool_calls|><|tool_call:begin|>a1b2c3d4e5<|tool_call:name|>get_weather<|tool_call:args|>{"city": "Seoul", "days": 2}<|tool_call:end|><|calls|>',
                "Need the weather.", None, (_call("Seoul", 2),)),
         Output("<|content|>Hello!<|end|>", None, "Hello!"),
         {"reasoning_effort": "high"}),
    Case("generic", "HuggingFaceTB-SmolLM3-3B", "llama-bpe",
         Output("<think>\nHmm.\n</think>\nHello.", "Hmm.", "Hello."),
         Output("Hello.", None, "Hello."),
         {"enable_thinking": True}),
]


def case_id(case: Case) -> str:
    return case.template


TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "templates"


def template_format(template: str):
    """The :class:`ChatFormat` jan detects for a template of ../shared/templates (the test skips without it)."""
    from jan.templates.formats import detect_format

    path = TEMPLATES / f"{template}.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    return detect_format(path.read_text())


def call_ids():
    """An id factory for output parsers: ``call_0``, ``call_1``... (the same ids on every run)."""
    n = iter(range(1000))
    return lambda: f"call_{next(n)}"


def parsed_in_pieces(fmt, pieces, opened: bool, *, truncated: bool, reasoning_format: str = "auto",
                     forced: str | None = None):
    """The output parser's result for an output fed in ``pieces`` (then finished, cut off or not), checked: the
    streamed deltas add up to it (its content, its reasoning, each call's name and arguments, each call started
    once)."""
    from jan.templates.formats import OutputParser

    parser = OutputParser(fmt, TOOLS, open_at_start=opened, id_factory=call_ids(), reasoning_format=reasoning_format,
                          forced=forced)
    deltas = []
    for piece in pieces:
        deltas += parser.feed(piece)
    deltas += parser.finish(truncated=truncated)
    calls: dict[int, list[str]] = {}
    for d in deltas:
        for c in d.tool_calls:
            slot = calls.setdefault(c.index, ["", ""])
            if c.id is not None:
                assert not slot[0], ("a call started twice", c)
            slot[0] += c.name or ""
            slot[1] += c.arguments
    result = parser.result
    assert [(c.name, c.arguments) for c in result.tool_calls] == [tuple(c) for _, c in sorted(calls.items())]
    assert (result.content or "") == "".join(d.content for d in deltas)
    assert (result.reasoning or "") == "".join(d.reasoning for d in deltas)
    return result


def answer_begun(fmt, text: str, opened: bool) -> bool:
    """Whether ``text`` (an output so far, in format ``fmt``; ``opened``: its thinking opened by the prompt) has any
    of its answer: text outside its thinking (markup included)."""
    outside, at = "", 0
    for start, end in fmt.reasoning_spans(text, opened):
        outside += text[at:start]
        at = max(at, end)
    return bool((outside + text[at:]).strip(" \t\r\n"))
