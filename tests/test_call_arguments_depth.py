"""Tool-call arguments that a request could not send back: every format breaks them off at the same place.

A model gone astray (a small or quantized one) may write arguments nested hundreds of levels deep. The parsers
took them (the generic one to 128 levels, the others without bound), so the reply carried an Anthropic ``input`` or
Ollama ``arguments`` object that no client could send back as history: the request body may nest 64 levels
(``jan.server.validation.MAX_JSON_DEPTH``), and the next turn was a 400. Every format now breaks the arguments off
where they nest deeper than :data:`jan.json_text.MAX_ARGUMENTS_DEPTH`, as it breaks off invalid JSON: the call stays,
its arguments closed there, streamed exactly like the whole output. A number past a double's range (``1e999``,
valid JSON that Python reads as infinity) is the same kind: the Anthropic/Ollama object held ``inf``, which jan's
strict JSON out cannot write and its request reader refuses; it breaks the arguments off as an invalid number does.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from jan.json_text import MAX_ARGUMENTS_DEPTH, nests_deeper
from jan.server.dialects.anthropic import _tool_input
from jan.server.dialects.ollama_responses import tool_call
from jan.server.validation import loads_bounded
from jan.services.types import ToolCall
from jan.templates.formats import OutputParser, parse_output

from chat_format_cases import TOOLS, template_format

A = "@ARGS@"
# one call in each family's own syntax; A stands for the arguments object
CALLS = {
    "Qwen-Qwen3-0.6B": f'<tool_call>\n{{"name": "get_weather", "arguments": {A}}}\n</tool_call>',
    "unsloth-mistral-Devstral-Small-2507": f"[TOOL_CALLS]get_weather[ARGS]{A}",
    "mistralai-Mistral-Nemo-Instruct-2407": f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {A}}}]',
    "meta-llama-Llama-3.1-8B-Instruct": f'{{"name": "get_weather", "parameters": {A}}}',
    "meetkai-functionary-medium-v3.1": f"<function=get_weather>{A}</function>",
    "meetkai-functionary-medium-v3.2": f"get_weather\n{A}",
    "ibm-granite-granite-3.3-2B-Instruct": f'<|tool_call|>[{{"name": "get_weather", "arguments": {A}}}]',
    "deepseek-ai-DeepSeek-V3.1": f"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{A}"
                                 "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                                                f"get_weather\n```json\n{A}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "moonshotai-Kimi-K2": "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
                          f"<|tool_call_argument_begin|>{A}<|tool_call_end|><|tool_calls_section_end|>",
    "upstage-Solar-Open-100B": "<|tool_calls|><|tool_call:begin|>a1b2c3d4e5<|tool_call:name|>get_weather"
                               f"<|tool_call:args|>{A}<|tool_call:end|><|calls|>",
    "openai-gpt-oss-120b": f"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{A}<|call|>",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": f'<|START_ACTION|>[{{"tool_name": "get_weather", "parameters": {A}}}]'
                                                      "<|END_ACTION|>",
    "unsloth-Apriel-1.5": f'<tool_calls>[{{"name": "get_weather", "arguments": {A}}}]</tool_calls>',
    "Apertus-8B-Instruct": f'<|tools_prefix|>[{{"get_weather": {A}}}]<|tools_suffix|>',
    "fireworks-ai-llama-3-firefunction-v2": f' functools[{{"name": "get_weather", "arguments": {A}}}]',
}
# the XML families write each parameter's value on its own: a value deeper than arguments may be stays its text
XML_CALLS = {
    "GLM-4.6": "<tool_call>get_weather\n<arg_key>days</arg_key>\n<arg_value>@V@</arg_value>\n</tool_call>",
    "Qwen3-Coder": "<tool_call>\n<function=get_weather>\n<parameter=days>\n@V@\n</parameter>\n</function>\n</tool_call>",
}


def _nested(levels: int) -> str:
    """An arguments object nesting ``levels`` arrays/objects, itself included."""
    return '{"city": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def _ids():
    n = iter(range(1000))
    return lambda: f"call_{next(n)}"


def _parsed(template: str, text: str):
    """The whole parse of ``text``, after checking that streaming it in pieces gives the same."""
    fmt = template_format(template)
    whole = parse_output(text, fmt, TOOLS, id_factory=_ids())
    rng = random.Random(5)
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        p = OutputParser(fmt, TOOLS, id_factory=_ids())
        for a, b in zip([0, *cuts], [*cuts, len(text)]):
            p.feed(text[a:b])
        p.finish()
        assert p.result == whole
    return whole


@pytest.mark.parametrize("template", sorted(CALLS))
def test_arguments_nest_no_deeper_than_a_request_may_send_back(template):
    ok = _parsed(template, CALLS[template].replace(A, _nested(MAX_ARGUMENTS_DEPTH)))
    assert [json.loads(c.arguments) for c in ok.tool_calls] == [json.loads(_nested(MAX_ARGUMENTS_DEPTH))]
    deep = _parsed(template, CALLS[template].replace(A, _nested(300)))
    assert [c.name for c in deep.tool_calls] in ([], ["get_weather"])
    for call in deep.tool_calls:
        args = json.loads(call.arguments)
        assert isinstance(args, dict) and not nests_deeper(args, MAX_ARGUMENTS_DEPTH)


@pytest.mark.parametrize("template", sorted(XML_CALLS))
def test_xml_parameter_value_too_deep_stays_its_text(template):
    value = "[" * MAX_ARGUMENTS_DEPTH + "]" * MAX_ARGUMENTS_DEPTH
    (call,) = _parsed(template, XML_CALLS[template].replace("@V@", value)).tool_calls
    assert json.loads(call.arguments) == {"days": value}
    value = value[2:-2]
    (call,) = _parsed(template, XML_CALLS[template].replace("@V@", value)).tool_calls
    assert json.loads(call.arguments) == {"days": json.loads(value)}


def test_deepest_arguments_can_be_sent_back_in_every_dialect():
    """The reply's call, deepest arguments and all, sent back as history: a body the request reader takes."""
    args = _nested(MAX_ARGUMENTS_DEPTH)
    anthropic = {"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": _tool_input(args)}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
    ollama = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [tool_call(ToolCall(id="c", name="get_weather", arguments=args), 0)]},
        {"role": "tool", "content": "ok"}]}
    for body in (anthropic, ollama):
        assert loads_bounded(json.dumps(body).encode()) == body


def _finite(arguments: str) -> bool:
    numbers: list[float] = []
    json.loads(arguments, parse_float=lambda t: numbers.append(float(t)) or 0.0)
    return all(math.isfinite(n) for n in numbers)


#: Numbers past a double's range: 1e999 (Python reads infinity) and integers of 400 digits (Python reads them exactly,
#: and float() of one raised OverflowError in the parsers' number check, ending the reply).
PAST_A_DOUBLE = ["1e999", "1" + "0" * 400, "-1" + "0" * 400]


@pytest.mark.parametrize("number", PAST_A_DOUBLE, ids=["1e999", "400-digit", "-400-digit"])
@pytest.mark.parametrize("template", sorted(CALLS))
def test_a_number_past_a_double_breaks_the_arguments_off(template, number):
    big = 10 ** 30  # (an integer past a double's precision is a JSON number a request may hold: kept)
    ok = _parsed(template, CALLS[template].replace(A, f'{{"city": "Oslo", "days": {big}}}'))
    assert [json.loads(c.arguments) for c in ok.tool_calls] == [{"city": "Oslo", "days": big}]
    out = _parsed(template, CALLS[template].replace(A, '{"city": "Oslo", "days": %s}' % number))
    assert [c.name for c in out.tool_calls] in ([], ["get_weather"])
    for call in out.tool_calls:
        # broken off before the number and closed (the generic parser gives a key it streamed a null value)
        assert json.loads(call.arguments) in ({"city": "Oslo"}, {"city": "Oslo", "days": None})
        assert _finite(call.arguments)
        json.dumps(_tool_input(call.arguments), allow_nan=False)  # (what strict JSON out writes: raised on inf)


@pytest.mark.parametrize("number", ["-" + n.lstrip("-") for n in PAST_A_DOUBLE[:2]], ids=["-1e999", "-400-digit"])
@pytest.mark.parametrize("template", sorted(XML_CALLS))
def test_xml_parameter_value_past_a_double_stays_its_text(template, number):
    (call,) = _parsed(template, XML_CALLS[template].replace("@V@", number)).tool_calls
    assert json.loads(call.arguments) == {"days": number}
