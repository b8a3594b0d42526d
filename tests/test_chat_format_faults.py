"""Faults of the format parsers, each tested by its kind across the families it can hit.

Every output here is also fed one character at a time and in random pieces: the streamed result must equal the
whole one (a parser that decides differently on a split output is a fault of its own).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from jan.templates import ChatTemplate
from jan.templates.formats import OutputParser, detect_format, format_for_template, parse_output

from chat_format_cases import TOOLS

TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "templates"


def _src(name: str) -> str:
    path = TEMPLATES / f"{name}.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    return path.read_text()


def _fmt(name: str):
    return detect_format(_src(name))


def _ids():
    n = iter(range(1000))
    return lambda: f"call_{next(n)}"


def _parse(text: str, fmt, tools=TOOLS, **kw):
    """The whole parse, after checking that every way of streaming ``text`` gives the same."""
    whole = parse_output(text, fmt, tools, id_factory=_ids(), **kw)
    rng = random.Random(3)
    splits = [list(text)]
    for _ in range(8):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8)))) if len(text) > 1 else []
        splits.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])])
    for pieces in splits:
        p = OutputParser(fmt, tools, id_factory=_ids(), **kw)
        for piece in pieces:
            p.feed(piece)
        p.finish()
        assert p.result == whole, (pieces, p.result, whole)
    return whole


def _calls(result):
    return [(c.name, json.loads(c.arguments)) for c in result.tool_calls]


# -- a template that does not render tools, in a family whose call syntax is known ----------------------------------

NATIVE = [
    ("deepseek-ai-DeepSeek-V3.1", 'Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>'
     '{"city": "Kyiv", "days": 4}<｜tool▁call▁end｜><｜tool▁calls▁end｜>', "Checking."),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>'
     'get_weather\n```json\n{"city": "Kyiv", "days": 4}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', None),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>'
     'get_weather\n```json\n{"city": "Kyiv", "days": 4}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', None),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "get_weather", "arguments": {"city": "Kyiv", "days": 4}}]',
     None),
]


@pytest.mark.parametrize("name, output, content", NATIVE, ids=[n for n, _, _ in NATIVE])
def test_template_without_tools_keeps_its_native_call_format(name, output, content):
    template = ChatTemplate(_src(name))
    assert not template.supports_tools
    fmt = format_for_template(template, True)
    assert fmt.tool_calls is not None and fmt.tool_grammar != "hermes"
    result = _parse(output, fmt)
    assert result.content == content
    assert _calls(result) == [("get_weather", {"city": "Kyiv", "days": 4})]
    # the polyfilled prompt asks for that syntax, never for jan's Hermes tags beside it
    prompt = template.render([{"role": "user", "content": "Weather?"}], tools=TOOLS,
                             **fmt.template_kwargs(tools=TOOLS))
    assert "get_weather" in prompt and "<tool_call>" not in prompt


def test_firefunction_history_is_written_in_its_own_syntax():
    template = ChatTemplate(_src("fireworks-ai-llama-3-firefunction-v2"))
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    prompt = template.render([{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None,
                              "tool_calls": [call]}, {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}],
                             tools=TOOLS, **_fmt("fireworks-ai-llama-3-firefunction-v2").template_kwargs(tools=TOOLS))
    assert 'functools[{"name": "get_weather", "arguments": {"city": "Oslo"}}]' in prompt
    assert "<tool_call>" not in prompt


# -- a call marker inside prose is prose -------------------------------------------------------------------------

PROSE = [
    ("fireworks-ai-llama-3-firefunction-v2", "Use functools.lru_cache to memoize it."),
    ("fireworks-ai-llama-3-firefunction-v2", "functools[0] is not a thing."),
    ("meetkai-functionary-medium-v3.2", "all\nIn Python the prompt is >>> then code."),
    ("Qwen3-Coder", "Write <tool_call> tags, or <function=name> ones."),
    ("GLM-4.6", "Wrap it in <tool_call> and a name."),
    ("Qwen-Qwen3-0.6B", "Use <tool_call> tags like <tool_call>{...}</tool_call> here."),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", "Say <|START_ACTION|> then nothing."),
    ("Apertus-8B-Instruct", "Say <|tools_prefix|> then nothing."),
    ("Apertus-8B-Instruct", 'A list: <|tools_prefix|>[{"name": "get_weather", "arguments": {}}]<|tools_suffix|>'),
    ("unsloth-Apriel-1.5", "Wrap calls in <tool_calls> tags."),
]


@pytest.mark.parametrize("name, text", PROSE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PROSE)])
def test_marker_in_prose_drops_no_text(name, text):
    result = _parse(text, _fmt(name))
    expected = text.removeprefix("all\n")
    assert result.content == expected and result.tool_calls == []


# -- a call to a tool the request did not declare is text, in every family ----------------------------------------

UNDECLARED = [
    ("Qwen-Qwen3-0.6B", '<tool_call>\n{"name": "rm_rf", "arguments": {"path": "/"}}\n</tool_call>'),
    ("Qwen3-Coder", "<tool_call>\n<function=rm_rf>\n<parameter=path>\n/\n</parameter>\n</function>\n</tool_call>"),
    ("GLM-4.6", "<tool_call>rm_rf\n<arg_key>path</arg_key>\n<arg_value>/</arg_value>\n</tool_call>"),
    ("Kimi-K2-Thinking", '<|tool_calls_section_begin|><|tool_call_begin|>functions.rm_rf:0<|tool_call_argument_begin|>'
     '{"path": "/"}<|tool_call_end|><|tool_calls_section_end|>'),
    ("deepseek-ai-DeepSeek-V3.1", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>rm_rf<｜tool▁sep｜>{"path": "/"}'
     '<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>rm_rf\n'
     '```json\n{"path": "/"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use",
     '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "rm_rf", "parameters": {"path": "/"}}]<|END_ACTION|>'),
    ("meetkai-functionary-medium-v3.2", 'rm_rf\n{"path": "/"}'),
    ("Apertus-8B-Instruct", '<|tools_prefix|>[{"rm_rf": {"path": "/"}}]<|tools_suffix|>'),
    ("unsloth-Apriel-1.5", '<tool_calls>[{"name": "rm_rf", "arguments": {"path": "/"}}]</tool_calls>'),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "rm_rf", "arguments": {"path": "/"}}]'),
    ("openai-gpt-oss-120b", '<|channel|>commentary to=functions.rm_rf <|constrain|>json<|message|>{"path": "/"}<|call|>'),
    ("openai-gpt-oss-120b", '<|channel|>analysis to=browser.search code<|message|>{"query": "x"}<|call|>'),
]


@pytest.mark.parametrize("name, text", UNDECLARED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(UNDECLARED)])
def test_call_to_an_undeclared_tool_is_not_a_call(name, text):
    result = _parse(text, _fmt(name))
    assert result.tool_calls == []
    assert "rm_rf" in (result.content or "") or "browser.search" in (result.content or "")
    assert result.reasoning is None  # a built-in call's body is not thinking either


# -- a block that breaks off: no markup left as content, never invalid JSON arguments -----------------------------

BROKEN = [
    ("Qwen-Qwen3-0.6B", 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome",, }}\n</tool_call>'),
    ("meetkai-functionary-medium-v3.1", 'Sure.\n<function=get_weather>{"city": "Rome",, }</function>'),
    ("Kimi-K2-Thinking", 'Sure.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0'
     '<|tool_call_argument_begin|>{"city": "Rome",, }<|tool_call_end|><|tool_calls_section_end|>'),
    ("deepseek-ai-DeepSeek-V3.1", 'Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>'
     '{"city": "Rome",, }<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", 'Sure.<|START_ACTION|>[{"tool_call_id": "0", '
     '"tool_name": "get_weather", "parameters": {"city": "Rome",, }]<|END_ACTION|>'),
    ("openai-gpt-oss-120b", '<|channel|>final<|message|>Sure.<|end|><|start|>assistant<|channel|>commentary '
     'to=functions.get_weather <|constrain|>json<|message|>{"city": "Rome",, }<|call|>'),
    ("meetkai-functionary-medium-v3.2", 'all\nSure.>>>get_weather\n{"city": "Rome",, }'),
    ("Apertus-8B-Instruct", 'Sure.<|tools_prefix|>[{"get_weather": {"city": "Rome",, }}]<|tools_suffix|>'),
    ("unsloth-Apriel-1.5", 'Sure.\n<tool_calls>[{"name": "get_weather", "arguments": {"city": "Rome",, }}]</tool_calls>'),
]


@pytest.mark.parametrize("name, text", BROKEN, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BROKEN)])
def test_broken_call_keeps_what_was_written_before_the_break(name, text):
    result = _parse(text, _fmt(name))
    assert result.content == "Sure."
    assert _calls(result) == [("get_weather", {"city": "Rome"})]


# a break inside a member's key (a control character or a bad escape in it, junk or no colon after it): the
# streamed key is never shown half-quoted (`{"}`) or doubled (`"days"": null`), whichever parser reads the family
KEY_BREAKS = ['"da\x00ys": 1', '"da\\qys": 1', '"da\\u12zys": 1', '"days"": 1', '"days" 1', '"days"😀: 1']


@pytest.mark.parametrize("brk", KEY_BREAKS, ids=range(len(KEY_BREAKS)))
@pytest.mark.parametrize("name, text", BROKEN, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BROKEN)])
def test_call_broken_in_a_key_still_has_json_arguments(name, text, brk):
    result = _parse(text.replace('"city": "Rome",, ', '"city": "Rome", ' + brk), _fmt(name))
    assert result.content == "Sure."
    [(called, arguments)] = _calls(result)  # (json.loads: valid JSON)
    assert called == "get_weather" and arguments["city"] == "Rome"
    assert set(arguments) <= {"city", "days", "da"}, arguments


@pytest.mark.parametrize("name, text", [
    ("Kimi-K2-Thinking", '<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0'
     '<|tool_call_argument_begin|>{"city": "Ro'),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use",
     '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Ro'),
    ("Qwen-Qwen3-0.6B", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro'),
    ("Apertus-8B-Instruct", '<|tools_prefix|>[{"get_weather": {"city": "Ro'),
    ("unsloth-Apriel-1.5", '<tool_calls>[{"name": "get_weather", "arguments": {"city": "Ro'),
], ids=["kimi", "command-r7b", "hermes", "apertus", "apriel"])
def test_cut_off_call_keeps_what_was_streamed(name, text):
    fmt = _fmt(name)
    p = OutputParser(fmt, TOOLS)
    for ch in text:
        p.feed(ch)
    p.finish(truncated=True)
    assert [(c.name, c.arguments) for c in p.result.tool_calls] == [("get_weather", '{"city": "Ro')]
    assert p.result.content is None


def test_deepseek_r1_arguments_may_hold_a_fence():
    text = ('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n'
            '{"city": "use ```x``` here", "days": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>')
    result = _parse(text, _fmt("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"))
    assert _calls(result) == [("get_weather", {"city": "use ```x``` here", "days": 1})]


@pytest.mark.parametrize("name, text", [
    ("Qwen3-Coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>"),
    ("Qwen3-Coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n<parameter=days>\n2\n"
     "</parameter>\n</function>\n</tool_call>"),
    ("GLM-4.6", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris\n<arg_key>days</arg_key>\n"
     "<arg_value>2</arg_value>\n</tool_call>"),
], ids=["qwen3-coder-no-close", "qwen3-coder-next-param", "glm-next-param"])
def test_xml_value_without_its_closing_tag_ends_at_the_next_tag(name, text):
    result = _parse(text, _fmt(name))
    assert _calls(result)[0][1]["city"] == "Paris"


# -- arguments that are no JSON object are no call's, in every family -----------------------------------------------

def _json_argument_outputs():
    from chat_format_cases import CASES

    for case in CASES:
        for out in filter(None, (case.thinking, case.plain)):
            if out.calls and re.search(_FIRST_ARGS, out.text):
                yield case.template, out, out is case.thinking


_FIRST_ARGS = r'\{"city": "[^"]*", "days": \d\}'
NOT_OBJECTS = ['"s"', "[1]", "7", "null", '"{"']


@pytest.mark.parametrize("args", NOT_OBJECTS)
@pytest.mark.parametrize("name, out, thinking", list(_json_argument_outputs()),
                         ids=[f"{t}-{k}" for k, (t, _, _) in enumerate(_json_argument_outputs())])
def test_arguments_that_are_no_object_make_no_call(name, out, thinking, args):
    """OpenAI's arguments, an Anthropic ``input`` and Ollama's arguments are objects; the generic parser, DeepSeek
    V3.1 and Kimi read a call whose arguments are not one as text, but DeepSeek R1's fenced arguments, gpt-oss,
    Command-R7B, Apriel and firefunction made it a call with ``[1]`` or ``"s"`` as its arguments."""
    fmt = _fmt(name)
    result = _parse(re.sub(_FIRST_ARGS, args, out.text, count=1), fmt,
                    open_at_start=thinking and not out.text.lstrip().startswith(fmt.reasoning.start)
                    if fmt.reasoning else False)
    # (a list or a run of calls whose first is no call is text as a whole: it broke off there)
    assert len(result.tool_calls) < len(out.calls)
    assert all(isinstance(arguments, dict) for _, arguments in _calls(result))


@pytest.mark.parametrize("name, text", [
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use",
     '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": "{\\"city\\": \\"Rome\\"}"}]<|END_ACTION|>'),
    ("unsloth-Apriel-1.5", '<tool_calls>[{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}]</tool_calls>'),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}]'),
    ("Qwen-Qwen2.5-7B-Instruct", '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}\n</tool_call>'),
], ids=["command-r7b", "apriel", "firefunction", "hermes"])
def test_arguments_given_as_a_json_string_are_the_object_it_holds(name, text):
    result = _parse(text, _fmt(name))
    assert _calls(result) == [("get_weather", {"city": "Rome"})] and result.content is None


@pytest.mark.parametrize("name, text", [
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", '<|START_ACTION|>[{"\x00tool_call_id": "0", "tool_name": '
     '"get_weather", "parameters": {"city": "Accra", "days": 1}}]<|END_ACTION|>'),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", '<|START_ACTION|>[{"tool_call_id": 1.2.3, "tool_name": '
     '"get_weather", "parameters": {"city": "Accra", "days": 1}}]<|END_ACTION|>'),
    ("unsloth-Apriel-1.5", '<tool_calls>[{"id": "\\q", "name": "get_weather", "arguments": {"city": "Lima"}}]</tool_calls>'),
    ("Apertus-8B-Instruct", '<|tools_prefix|>[{"get_\x00weather": {"city": "Bern", "days": 2}}]<|tools_suffix|>'),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"\x01name": "x", "name": "get_weather", "arguments": {"city": "Quito"}}]'),
], ids=["command-r7b-key", "command-r7b-number", "apriel-escape", "apertus", "firefunction"])
def test_call_object_broken_before_its_arguments_is_text_streamed_and_whole(name, text):
    """A call object of a JSON list whose JSON breaks before its arguments begin (a control character in a key, a
    number ``1.2.3``, a bad escape): the whole output read the arguments after the break, a stream closed them at
    once as ``{}`` and kept that. The object is no call: the list breaks off there, and with no call it is text."""
    result = _parse(text, _fmt(name))
    assert result.tool_calls == [] and result.content.strip() == text.strip()


LIST_WITH_UNDECLARED = [
    ("Apertus-8B-Instruct", '<|tools_prefix|>[{"get_weather": {"city": "Zurich"}}, {"rm_rf": {"path": "/"}}]'
     '<|tools_suffix|>', None),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", 'Ok.<|START_ACTION|>[{"tool_call_id": "0", "tool_name": '
     '"get_weather", "parameters": {"city": "Zurich"}}, {"tool_call_id": "1", "tool_name": "rm_rf", "parameters": {}}]'
     '<|END_ACTION|>', "Ok."),
    ("unsloth-Apriel-1.5", '<tool_calls>[{"name": "get_weather", "arguments": {"city": "Zurich"}}, {"name": "rm_rf", '
     '"arguments": {}}]</tool_calls>', None),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "get_weather", "arguments": {"city": "Zurich"}}, '
     '{"name": "rm_rf", "arguments": {}}]', None),
]


@pytest.mark.parametrize("name, text, content", LIST_WITH_UNDECLARED, ids=[n for n, _, _ in LIST_WITH_UNDECLARED])
def test_undeclared_call_in_a_list_ends_it_after_the_calls_before(name, text, content):
    """A list of calls whose second names a tool the request did not declare: the whole output made the list text
    (no call), while a stream had already shown the first call. The undeclared one now ends the list as a break
    does: the calls before it stay, streamed and whole."""
    result = _parse(text, _fmt(name))
    assert _calls(result) == [("get_weather", {"city": "Zurich"})] and result.content == content


@pytest.mark.parametrize("text, first", [
    ('get_weather\n{"city": "Cairo", "days":" 1}>>>get_weather\n{"city": "Giza", "days": 2}',
     {"city": "Cairo", "days": " 1}"}),
    ('get_weather\n{"city": "Cairo", "days":" 1}>>>get_weather"}>>>get_weather\n{"city": "Giza", "days": 2}',
     {"city": "Cairo", "days": " 1}>>>get_weather"}),
], ids=["string-broken", "string-closed"])
def test_functionary_v32_string_running_over_a_segment_streams_like_the_whole(text, first):
    """A string the model never closes runs over the next ``>>>`` segment: where its JSON later breaks (a newline in
    it) the whole output ends the arguments at the ``>>>``; a stream had already shown the text after it."""
    result = _parse(text, _fmt("meetkai-functionary-medium-v3.2"))
    assert _calls(result) == [("get_weather", first), ("get_weather", {"city": "Giza", "days": 2})]


# -- a declared name with whitespace after it, before the mark that ends it --------------------------------------

SPACED_NAME = [
    ("Qwen3-Coder", 'Checking.\n<tool_call>\n<function=get_weather >\n<parameter=city>\nRome\n</parameter>\n'
     '</function>\n</tool_call>'),
    ("ByteDance-Seed-OSS", 'Checking.\n<seed:tool_call>\n<function=get_weather >\n<parameter=city>\nRome\n'
     '</parameter>\n</function>\n</seed:tool_call>'),
    ("GLM-4.6", 'Checking.\n<tool_call>get_weather \n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>'),
    ("deepseek-ai-DeepSeek-V3.1", 'Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather <｜tool▁sep｜>'
     '{"city": "Rome"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", 'Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function'
     '<｜tool▁sep｜>get_weather \n```json\n{"city": "Rome"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
]


@pytest.mark.parametrize("name, text", SPACED_NAME, ids=[n for n, _ in SPACED_NAME])
def test_name_with_whitespace_before_its_end_streams_like_the_whole(name, text):
    """The scans strip the name they read once its end mark comes; a stream saw ``get_weather `` first, no
    declared name, and showed the call's markup as content before the call itself."""
    result = _parse(text, _fmt(name))
    assert result.content == "Checking."
    assert _calls(result) == [("get_weather", {"city": "Rome"})]


# -- functionary v3.2 framing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tools", [None, TOOLS], ids=["no-tools", "tools"])
def test_functionary_v32_answer_recipient_is_framing(tools):
    fmt = _fmt("meetkai-functionary-medium-v3.2")
    assert _parse("all\nHello there", fmt, tools).content == "Hello there"
    result = _parse('all\nLet me check.>>>get_weather\n{"city": "A", "days": 1}', fmt, tools)
    if tools:
        assert result.content == "Let me check." and _calls(result) == [("get_weather", {"city": "A", "days": 1})]
    else:  # no tools: no call, and the segment is the model's text
        assert result.tool_calls == [] and result.content.startswith("Let me check.>>>get_weather")


# -- wrapping markers are dropped only where they wrap ----------------------------------------------------------------

@pytest.mark.parametrize("name, text, content", [
    ("ibm-granite-granite-3.3-2B-Instruct", "<think>S.</think><response>Put it in a <response> tag.</response>",
     "Put it in a <response> tag."),
    ("ibm-granite-granite-3.3-2B-Instruct", "<think>S.</think><response>Close with </response> then.</response>",
     "Close with </response> then."),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use",
     "<|START_THINKING|>S.<|END_THINKING|><|START_RESPONSE|>Hello!<|END_RESPONSE|>", "Hello!"),
    # Apriel's wrappers stand on lines of their own: that whitespace is theirs, the answer's own is kept
    ("unsloth-Apriel-1.5", "<thinking>S.</thinking>\n[BEGIN FINAL RESPONSE]\nSay [END FINAL RESPONSE] last.\n\n"
     "Two lines.\n[END FINAL RESPONSE]", "Say [END FINAL RESPONSE] last.\n\nTwo lines."),
    # and its closing one before its calls (the calls stay calls: test_apriel_answer_ends_before_its_calls)
    ("unsloth-Apriel-1.5", "<thinking>S.</thinking>\n[BEGIN FINAL RESPONSE]\nChecking.\n[END FINAL RESPONSE]\n"
     '<tool_calls>[{"name": "get_weather", "arguments": {"city": "A", "days": 1}}]</tool_calls>', "Checking."),
], ids=["granite-open", "granite-close", "command-r7b", "apriel-1.5", "apriel-1.5-calls"])
def test_answer_markers_are_dropped_only_where_they_wrap(name, text, content):
    result = _parse(text, _fmt(name))
    assert result.content == content and result.reasoning == "S."


# -- text on both sides of a call stays apart; thinking messages too --------------------------------------------------

AROUND = [
    ("Qwen-Qwen3-0.6B", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "A", "days": 1}}'
     '\n</tool_call>\nDone.'),
    ("Kimi-K2-Thinking", 'Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0'
     '<|tool_call_argument_begin|>{"city": "A", "days": 1}<|tool_call_end|><|tool_calls_section_end|>Done.'),
    ("Qwen3-Coder", "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n"
     "<parameter=days>\n1\n</parameter>\n</function>\n</tool_call>\nDone."),
    ("GLM-4.6", "Let me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>A</arg_value>\n"
     "<arg_key>days</arg_key>\n<arg_value>1</arg_value>\n</tool_call>\nDone."),
    ("Apertus-8B-Instruct", 'Let me check.<|tools_prefix|>[{"get_weather": {"city": "A", "days": 1}}]<|tools_suffix|>Done.'),
    ("unsloth-Apriel-1.5", 'Let me check.\n<tool_calls>[{"name": "get_weather", "arguments": {"city": "A", "days": 1}}]'
     '</tool_calls>\nDone.'),
]


@pytest.mark.parametrize("name, text", AROUND, ids=[n for n, _ in AROUND])
def test_text_around_a_call_is_not_glued(name, text):
    result = _parse(text, _fmt(name))
    assert result.content == "Let me check.\nDone."
    assert _calls(result) == [("get_weather", {"city": "A", "days": 1})]


def test_two_analysis_messages_are_two_paragraphs():
    text = ('<|channel|>analysis<|message|>First.<|end|><|start|>assistant<|channel|>analysis<|message|>Second.'
            '<|end|><|start|>assistant<|channel|>final<|message|>A')
    result = _parse(text, _fmt("openai-gpt-oss-120b"))
    assert result.reasoning == "First.\n\nSecond." and result.content == "A"


@pytest.mark.parametrize("reasoning_format", ["auto", "none", "deepseek-legacy"])
def test_analysis_ended_by_the_next_header_alone_streams_like_the_whole(reasoning_format):
    """A model that leaves out an analysis message's <|end|>: the next message's <|start|> ends it. Shown raw
    (``none``), a stream handed out its ``<|`` as thinking before ``start|>`` was written, and the header after
    it turned content: the stream showed ``<|start|>assistant`` where the whole output does not."""
    text = ('<|channel|>analysis<|message|>Need weather.<|start|>assistant<|channel|>commentary '
            'to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo", "days": 1}<|call|>')
    result = _parse(text, _fmt("openai-gpt-oss-120b"), reasoning_format=reasoning_format)
    assert _calls(result) == [("get_weather", {"city": "Oslo", "days": 1})]
    raw = "<|channel|>analysis<|message|>Need weather."
    assert result.content == (None if reasoning_format == "auto" else raw)
    assert result.reasoning == (None if reasoning_format == "none" else "Need weather.")


# -- templates may change what they built, never what they were given ----------------------------------------------

@pytest.mark.parametrize("name", ["Kimi-K2-Instruct", "Kimi-K2-Thinking"])
def test_kimi_renders_its_own_tool_history(name):
    template = ChatTemplate(_src(name))
    assert template.supports_tool_calls
    call = {"id": "functions.get_weather:0", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    prompt = template.render([{"role": "user", "content": "Weather?"},
                              {"role": "assistant", "content": "", "tool_calls": [call]},
                              {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "Sunny"}],
                             tools=TOOLS)
    assert "<|tool_call_begin|>functions.get_weather:0" in prompt and "<tool_call>" not in prompt


def test_template_cannot_change_its_inputs():
    template = ChatTemplate("{% set mine = [] %}{% set _ = mine.append(1) %}{{ mine }}"
                            "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}")
    messages = [{"role": "user", "content": "a"}]
    with pytest.raises(Exception, match="unsafe"):
        template.render(messages, polyfill=False)
    assert messages == [{"role": "user", "content": "a"}]
    ok = ChatTemplate("{% set mine = {} %}{% set _ = mine.update({'a': 1}) %}{{ mine['a'] }}")
    assert ok.render([{"role": "user", "content": "a"}]) == "1"


@pytest.mark.parametrize("name, text", [
    ("GLM-4.6", "<tool_call>get_weather</tool_call>"),
    ("Qwen3-Coder", "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>"),
    ("deepseek-ai-DeepSeek-V3.1", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
], ids=["glm", "qwen3-coder", "deepseek-v3.1"])
def test_call_without_arguments_streams_like_the_whole(name, text):
    assert _calls(_parse(text, _fmt(name))) == [("get_weather", {})]


# -- Apertus calls from inside its thinking ---------------------------------------------------------------------------

@pytest.mark.parametrize("stop", ["", "<|tools_suffix|>"], ids=["eog", "suffix"])
def test_apertus_call_from_inside_its_thinking_is_a_call(stop):
    # its template writes a call inside the deliberation (<|inner_prefix|>...<|tools_prefix|>[...], no <|inner_suffix|>
    # before it), and the model stops after the call: the call opener ends the thinking, the call is read
    fmt = _fmt("Apertus-8B-Instruct")
    text = '<|inner_prefix|>Need the weather.\n<|tools_prefix|>[{"get_weather": {"city": "Bern", "days": 2}}]' + stop
    result = _parse(text, fmt)
    assert (result.reasoning, result.content) == ("Need the weather.", None)
    assert _calls(result) == [("get_weather", {"city": "Bern", "days": 2})]
    raw = _parse(text, fmt, reasoning_format="none")  # thinking left in the content, the same call read
    assert raw.content == "<|inner_prefix|>Need the weather.\n" and _calls(raw) == _calls(result)
    assert fmt.reasoning_spans(text) == [(0, text.index("<|tools_prefix|>"))]
    # no tools: the opener still ends the thinking, and what follows is the answer's text, as written
    assert _parse(text, fmt, None).content == text[text.index("<|tools_prefix|>"):]


@pytest.mark.parametrize("template, opened", [("unsloth-Apriel-1.5", "<thinking>S.</thinking>"),
                                              ("Apriel-1.6-15b-Thinker-fixed", "S.")])
def test_apriel_answer_ends_before_its_calls(template, opened):
    fmt = _fmt(template)
    open_at_start = not opened.startswith("<")
    call = '<tool_calls>[{"name": "get_weather", "arguments": {"city": "A", "days": 1}}]</tool_calls>'
    for text, content in (
        (f"{opened}\n[BEGIN FINAL RESPONSE]\nChecking.\n[END FINAL RESPONSE]\n{call}", "Checking."),
        (f"{opened}\n[BEGIN FINAL RESPONSE]\nChecking.\n{call}\n[END FINAL RESPONSE]", "Checking."),
        (f"{opened}\n[BEGIN FINAL RESPONSE]\nSay [END FINAL RESPONSE] here.\n{call}", "Say [END FINAL RESPONSE] here."),
    ):
        result = _parse(text, fmt, open_at_start=open_at_start)
        assert (result.reasoning, result.content) == ("S.", content), text
        assert _calls(result) == [("get_weather", {"city": "A", "days": 1})]


# -- a huge argument (a file a call writes) ------------------------------------------------------------------------

def test_json_scan_reads_a_long_string_in_runs_not_character_by_character():
    """The marker families re-read a call's JSON arguments each time a piece streams in (``scan_json``), and read
    every string character by character in Python: a 20 KB argument (a file a coding agent writes) through
    gpt-oss, Kimi, DeepSeek or Command-R7B took tens of seconds of the event loop. Counted in lines run, never
    timed: a string's plain characters are one step."""
    import sys

    from jan.templates.formats import text as text_module

    body = '{"path": "a.py", "content": "' + "print('hi')  # x " * 2000 + '", "mode": 1}'
    code = text_module.scan_json.__code__
    lines = 0

    def tracer(frame, event, arg):
        nonlocal lines
        if frame.f_code is code:
            if event == "line":
                lines += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        safe, end, broken, _ = text_module.scan_json(body)
    finally:
        sys.settrace(None)
    assert (end, broken) == (len(body), False)
    assert lines < 1000, lines  # (character by character: over 200,000)
    # the same document streamed: every piece's arguments only grow and end as the whole
    short = '{"city": "a.py", "content": "' + "print('hi')  # x " * 50 + '", "days": 1}'
    result = _parse('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>' + short + '<|call|>',
                    _fmt("openai-gpt-oss-120b"))
    assert result.tool_calls[0].arguments == short
