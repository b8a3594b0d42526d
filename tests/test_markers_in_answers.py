"""A format's marker texts never stand raw inside the JSON strings of what a grammar holds.

A chat format's output parser reads its markers as structure wherever they stand in the answer (gpt-oss's
``<|end|>`` ends the final message, Hermes's ``<tool_call>`` opens a call, ``</think>`` a thought), and
llama.cpp's grammar matches a control token by its text. A response format's JSON, or a forced call's
arguments, whose strings could write one was read back as something else: ``{"wanalysis<|end|>…`` reached the
client as content that is no JSON. For every family of ``chat_format_cases.py``, llama.cpp's own grammar engine
must refuse each marker raw in a string and take it escaped (``\\u003c``), take ordinary ``<`` and ``|``, and the
output parser must read every such text back into the same answer or call.
"""

from __future__ import annotations

import json
import re

import pytest

from jan.templates import ChatTemplate, json_schema_to_grammar
from jan.templates.formats import ChatPlan, ReasoningRequest, format_for_template, parse_output
from jan.templates.grammar import JSON_OBJECT_GRAMMAR, MarkerWatch, json_strings_without

from chat_format_cases import CASES, TEMPLATES, TOOLS
from test_harmony_answer_grammar import _parsed

# one case per template (a template may give several outputs)
TEMPLATE_CASES = list({c.template: c for c in CASES}.values())
PLAIN = ["a < b | c", "<| x |>", "<", "|>", "a<b>c", "[x]"]


def _plan(template: str, tools=None) -> tuple[ChatPlan, str]:
    path = TEMPLATES / f"{template}.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    t = ChatTemplate(path.read_text(encoding="utf-8"))
    plan = ChatPlan(format_for_template(t, bool(tools)), ReasoningRequest(), tools=tools,
                    tool_choice="required" if tools else "auto", parallel_tool_calls=False)
    prompt = t.render([{"role": "user", "content": "Weather in Paris?"}], tools=tools, add_generation_prompt=True,
                      **plan.template_kwargs())
    return plan, prompt


def _escaped(text: str, markers) -> str:
    """``text`` as JSON string text with every character that starts a marker written as a JSON escape."""
    firsts = {m[0] for m in markers}
    return "".join(f"\\u{ord(ch):04x}" if ch in firsts else ch for ch in text)


def _string(text: str) -> str:
    return json.dumps(text)[1:-1]


def test_marker_watch_reads_every_marker():
    watch = MarkerWatch(["<|end|>", "<|start|>", "</think>"])
    for text, hit in [("a<|end|>", True), ("<|en<|start|>", True), ("<</think>", True), ("<|end|", False),
                      ("a < b | c", False), ("<|<|end", False)]:
        state = 0
        seen = False
        for ch in text:
            state = watch.step(state, ch)
            seen = seen or watch.hit[state]
        assert seen == hit, text


@pytest.mark.parametrize("answer", [JSON_OBJECT_GRAMMAR, json_schema_to_grammar(
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 40}}, "required": ["a"]})],
    ids=["json_object", "max_length"])
def test_json_strings_refuse_a_marker_raw_and_take_it_escaped(llama, answer):
    markers = ["<|end|>", "<|start|>", "</tool_call>", "[TOOL_CALLS]"]
    grammar = json_strings_without(answer, markers)
    assert llama.parses(grammar)
    counted = answer is not JSON_OBJECT_GRAMMAR
    for m in markers:
        assert llama.accepts(answer, f'{{"a": "x{m}"}}')  # the grammar as it was took it
        assert not llama.accepts(grammar, f'{{"a": "x{m}"}}'), m
        assert not llama.accepts(grammar, f'{{"a": "{m}y"}}'), m
        assert llama.accepts(grammar, f'{{"a": "x{_escaped(m, markers)}"}}'), m
        if not counted:  # a key is a free string too
            assert not llama.accepts(grammar, f'{{"{m}": 1}}'), m
    for text in PLAIN:
        # a free string takes what is no whole marker; a counted one escapes a marker's first character
        written = _escaped(text, markers) if counted else text
        assert llama.accepts(grammar, f'{{"a": "{_string(written)}"}}'), text
    # a marker whose text a JSON string cannot hold raw (a newline) is no matter: the grammar is unchanged
    assert json_strings_without(answer, ["<a>\n"]) == answer


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=lambda c: c.template)
def test_a_response_format_writes_no_marker_raw(llama, case):
    plan, prompt = _plan(case.template)
    grammar = plan.grammar_options(prompt, answer=JSON_OBJECT_GRAMMAR)["grammar"]
    markers = plan.fmt.structure_markers()
    heads = ["", "<|channel|>final<|message|>", *plan.fmt.answer_opens]
    if plan.fmt.reasoning is not None:
        heads.append("Hm." + plan.fmt.reasoning.end)
    head = next((h for h in heads if llama.accepts(grammar, h + '{"a": "b"}')), None)
    assert head is not None, grammar
    opened = plan.fmt.starts_in_reasoning(prompt)
    for m in markers:
        assert not llama.accepts(grammar, f'{head}{{"a": "x{m}"}}'), m
        text = f'{head}{{"a": "x{_escaped(m, markers)}"}}'
        assert llama.accepts(grammar, text), m
        parsed = _parsed(plan, prompt, text) if plan.fmt.channels else parse_output(
            text, plan.fmt, None, open_at_start=opened)
        assert json.loads(parsed.content) == {"a": "x" + m}, (m, parsed)
    for plain in PLAIN:
        text = f'{head}{{"a": "{_string(plain)}"}}'
        if llama.accepts(grammar, text):  # (a family whose marker this text is refuses it: checked above)
            assert json.loads(parse_output(text, plan.fmt, None, open_at_start=opened).content) == {"a": plain}
        else:
            assert any(m in plain for m in markers), plain


def test_every_family_with_markers_has_them_held():
    # the families above whose answer has markers: thinking, Harmony's messages, an answer's opening
    names = {_plan(c.template)[0].fmt.name for c in TEMPLATE_CASES if _plan(c.template)[0].fmt.structure_markers()}
    assert {"gpt-oss", "hermes", "deepseek-r1", "kimi-k2", "glm-4.5", "command-r7b", "mistral-reasoning", "granite",
            "nemotron", "solar-open", "apertus", "apriel-1.5", "generic"} <= names


# the calls each template's grammar writes as the case wrote them (a single call, no prose before it)
CALL_CASES = [pytest.param(c, o, id=f"{c.template}-{kind}") for c in TEMPLATE_CASES
              for kind, o in (("plain", c.plain), ("thinking", c.thinking))
              if o is not None and len(o.calls) == 1 and '"city": "' in o.text]


#: the cases whose text a forced call's grammar does not write (prose or thinking around the call, as each model may
#: write it unforced)
NOT_WRITTEN = {"Qwen-Qwen3-0.6B-thinking", "deepseek-ai-DeepSeek-V3.1-thinking", "Kimi-K2-Thinking-thinking",
               "moonshotai-Kimi-K2-plain", "CohereForAI-c4ai-command-r7b-12-2024-tool_use-thinking",
               "mistralai-Ministral-3-14B-Reasoning-2512-thinking", "Apertus-8B-Instruct-thinking",
               "unsloth-Apriel-1.5-thinking", "upstage-Solar-Open-100B-thinking",
               "meta-llama-Llama-3.1-8B-Instruct-plain", "meta-llama-Llama-3.3-70B-Instruct-plain"}


def _city_enum(tools: list, city: str, markers) -> list:
    """``tools`` with the city parameter an enum of ``city`` and ``city`` followed by each of ``markers``."""
    tools = json.loads(json.dumps(tools))
    for tool in tools:
        tool["function"]["parameters"]["properties"]["city"] = {"type": "string",
                                                                "enum": [city + m for m in markers] + [city]}
    return tools


@pytest.mark.parametrize("city_is", ["free", "enum"])
@pytest.mark.parametrize(("case", "output"), CALL_CASES)
def test_a_forced_call_s_arguments_write_no_marker_raw(llama, case, output, city_is):
    plan, prompt = _plan(case.template, TOOLS)
    grammar = plan.grammar_options(prompt)["grammar"]
    markers = plan.fmt.structure_markers(grammar)
    city = output.calls[0][1]["city"]
    tools = TOOLS
    if city_is == "enum":  # the schema's own literal holds the marker
        tools = _city_enum(TOOLS, city, markers)
        plan, prompt = _plan(case.template, tools)
        grammar = plan.grammar_options(prompt)["grammar"]
    if not llama.accepts(grammar, output.text):
        # the case's call is not one this grammar writes (prose or thinking around it): nothing of it to vary,
        # only what it says of itself (a list, so a case that comes to be written is tested, not passed over)
        assert case.template + "-" + ("thinking" if output is case.thinking else "plain") in NOT_WRITTEN
        return
    if not markers:  # calls in plain JSON/text: no marker to hold out of them
        assert plan.fmt.name in ("llama3", "firefunction-v2", "functionary-v3.2"), plan.fmt.name
        return
    opened = plan.fmt.starts_in_reasoning(prompt)
    for m in markers:
        assert not llama.accepts(grammar, output.text.replace(f'"{city}"', f'"{city}{m}"')), m
        text = output.text.replace(f'"{city}"', f'"{city}{_escaped(m, markers)}"')
        assert llama.accepts(grammar, text), m
        parsed = parse_output(text, plan.fmt, tools, open_at_start=opened)
        assert [(c.name, json.loads(c.arguments)["city"]) for c in parsed.tool_calls] == [("get_weather", city + m)]


# -- the schema's own literals, patterns and text grammars ---------------------------------------------------------

LITERAL_MARKERS = ["<|end|>", "<|start|>", "</think>", "[TOOL_CALLS]"]


def _obj(prop: dict, name: str = "a") -> dict:
    return {"type": "object", "properties": {name: prop}, "required": [name], "additionalProperties": False}


# (the schema for a marker m, the JSON document with a string's text s, the string the schema holds for m): every place
# a schema writes its own text into a JSON string
SCHEMA_PLACES = {
    "enum": (lambda m: _obj({"enum": ["x" + m, "y"]}), lambda s: f'{{"a": "{s}"}}', lambda m: "x" + m),
    "const": (lambda m: _obj({"const": m + "y"}), lambda s: f'{{"a": "{s}"}}', lambda m: m + "y"),
    "enum-object": (lambda m: _obj({"enum": [{"k": ["z", m]}]}), lambda s: f'{{"a": {{"k":["z","{s}"]}}}}',
                    lambda m: m),
    "property-name": (lambda m: _obj({"type": "integer"}, "a" + m), lambda s: f'{{"{s}": 1}}', lambda m: "a" + m),
    "required-name": (lambda m: {"type": "object", "properties": {}, "required": [m]}, lambda s: f'{{"{s}": 1}}',
                      lambda m: m),
    "prefix-items": (lambda m: _obj({"type": "array", "prefixItems": [{"const": m}], "items": False}),
                     lambda s: f'{{"a": ["{s}"]}}', lambda m: m),
    "any-of-const": (lambda m: _obj({"anyOf": [{"const": m}, {"type": "integer"}]}), lambda s: f'{{"a": "{s}"}}',
                     lambda m: m),
    "pattern-literal": (lambda m: _obj({"type": "string", "pattern": "^" + re.escape(m) + "$"}),
                        lambda s: f'{{"a": "{s}"}}', lambda m: m),
    "pattern-class": (lambda m: _obj({"type": "string", "pattern": r"^[<\[][A-Za-z_|/\]>]+$"}),
                      lambda s: f'{{"a": "{s}"}}', lambda m: m),
    "pattern-negated": (lambda m: _obj({"type": "string", "pattern": "^[^#]+$"}), lambda s: f'{{"a": "{s}"}}',
                        lambda m: m),
    "pattern-dot": (lambda m: _obj({"type": "string", "pattern": "^x.*$"}), lambda s: f'{{"a": "{s}"}}',
                    lambda m: "x" + m),
    "pattern-search": (lambda m: _obj({"type": "string", "pattern": "q"}), lambda s: f'{{"a": "{s}"}}',
                       lambda m: "q" + m),
    "lark-literal": (lambda m: _obj({"type": "string", "x-jan-lark": f"start: {json.dumps(m)}"}),
                     lambda s: f'{{"a": "{s}"}}', lambda m: m),
    "lark-class": (lambda m: _obj({"type": "string", "x-jan-lark": r"start: /[A-Za-z_|\/<>\[\]]+/"}),
                   lambda s: f'{{"a": "{s}"}}', lambda m: m),
    "additional-key": (lambda m: {"type": "object", "additionalProperties": {"type": "integer"}},
                       lambda s: f'{{"{s}": 1}}', lambda m: m),
}


@pytest.mark.parametrize("place", SCHEMA_PLACES, ids=str)
def test_a_schema_s_own_text_refuses_a_marker_raw_and_takes_it_escaped(llama, place):
    schema, document, value = SCHEMA_PLACES[place]
    for m in LITERAL_MARKERS:
        answer = json_schema_to_grammar(schema(m))
        grammar = json_strings_without(answer, LITERAL_MARKERS)
        assert llama.parses(grammar), grammar
        raw, escaped = document(_string(value(m))), document(_escaped(value(m), LITERAL_MARKERS))
        assert llama.accepts(answer, raw), (m, answer)  # the schema's grammar alone writes the marker raw
        assert not llama.accepts(grammar, raw), (m, grammar)
        assert llama.accepts(grammar, escaped), (m, grammar)
        assert json.loads(escaped) == json.loads(raw)  # the escaped text is the schema's own value


# schemas whose literals hold no marker and whose patterns and text grammars no marker's first character
PLAIN_SCHEMAS = [
    _obj({"enum": ["a < b", "x|y", "<b>", "[x]", "<|", "|>"]}),
    _obj({"const": {"k": "<|end"}}, "a <|"),
    _obj({"type": "string", "pattern": "^[a-z|/>]+$"}),
    _obj({"type": "string", "pattern": "^x.{2,5}$"}),
    _obj({"type": "string", "x-jan-lark": 'start: "a|b" /[0-9]+/'}),
    _obj({"type": "string", "format": "uri"}),
    _obj({"type": "array", "prefixItems": [{"const": "|end|>"}]}),
]


@pytest.mark.parametrize("schema", PLAIN_SCHEMAS, ids=range(len(PLAIN_SCHEMAS)))
def test_a_schema_without_marker_text_keeps_its_grammar(schema):
    answer = json_schema_to_grammar(schema)
    grammar = json_strings_without(answer, ["<|end|>", "<|start|>", "</think>"])
    # only the free and counted strings' own rules change (their text as before this change)
    changed = {line.partition(" ::= ")[0] for line in set(answer.splitlines()) - set(grammar.splitlines())}
    assert changed <= {"char", "string"}, changed


def _answer_head(llama, plan: ChatPlan, grammar: str, sample: str) -> str:
    """What the format writes before the answer ``sample`` (JSON text) that ``grammar`` takes."""
    heads = ["", "<|channel|>final<|message|>", *plan.fmt.answer_opens]
    if plan.fmt.reasoning is not None:
        heads.append("Hm." + plan.fmt.reasoning.end)
    head = next((h for h in heads if llama.accepts(grammar, h + sample)), None)
    assert head is not None, grammar
    return head


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=lambda c: c.template)
def test_a_response_format_s_literals_write_no_marker_raw(llama, case):
    plan, prompt = _plan(case.template)
    markers = plan.fmt.structure_markers()
    if not markers:
        return
    # an enum value, a pattern's text, a property's name and its const: each holding the marker
    schema = {"type": "object", "properties": {"a": {"enum": ["x" + m for m in markers]},
                                               "b": {"type": "string", "pattern": "^.*$"},
                                               **{"n" + m: {"const": m} for m in markers}},
              "required": ["a", "b"], "additionalProperties": False}
    grammar = plan.grammar_options(prompt, answer=json_schema_to_grammar(schema))["grammar"]
    opened = plan.fmt.starts_in_reasoning(prompt)
    head = _answer_head(llama, plan, grammar, f'{{"a": "x{_escaped(markers[0], markers)}", "b": ""}}')
    for m in markers:
        e = _escaped(m, markers)
        text = f'{head}{{"a": "x{e}", "b": "{e}", "n{e}": "{e}"}}'
        assert llama.accepts(grammar, text), m
        for raw in (f'"a": "x{m}", "b": "{e}", "n{e}": "{e}"', f'"a": "x{e}", "b": "{m}", "n{e}": "{e}"',
                    f'"a": "x{e}", "b": "{e}", "n{m}": "{e}"', f'"a": "x{e}", "b": "{e}", "n{e}": "{m}"'):
            assert not llama.accepts(grammar, f"{head}{{{raw}}}"), (m, raw)
        parsed = _parsed(plan, prompt, text) if plan.fmt.channels else parse_output(
            text, plan.fmt, None, open_at_start=opened)
        assert json.loads(parsed.content) == {"a": "x" + m, "b": m, "n" + m: m}, (m, parsed)


# -- end to end: a tiny random-weight model with a real template, whose only allowed value holds a marker ------------

# gpt-oss's <|end|> ends its final message: the grammar held to the enum wrote it raw (a token of the model), and the
# parser cut the answer there. Qwen3's </think> (a thinking format's end) is written escaped and comes back as itself.
SERVED = [("harmony-tiny", "<|end|>"), ("qwen3-tiny", "</think>")]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from conftest import require_model
    from dialect_helpers import openai_client
    from jan.testing.gguf_models import write_harmony_model, write_qwen3_tool_model
    from server_helpers import start_server

    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("marker-literals")
    srv = start_server(tmp, [write_harmony_model(tmp / "harmony-tiny.gguf"),
                             write_qwen3_tool_model(tmp / "qwen3-tiny.gguf")], n_ctx=1024, n_parallel=1)
    yield openai_client(srv, timeout=300)
    srv.stop()


def _only(value: str) -> dict:
    return {"type": "object", "properties": {"v": {"type": "string", "enum": [value]}}, "required": ["v"],
            "additionalProperties": False}


@pytest.mark.parametrize(("model", "marker"), SERVED, ids=[m for m, _ in SERVED])
def test_served_enum_of_a_marker_reaches_the_client_as_itself(served, model, marker):
    ask = {"model": model, "messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 200,
           "temperature": 0, "reasoning_effort": "none"}
    choice = served.chat.completions.create(**ask, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": _only(marker)}}).choices[0]
    assert choice.finish_reason == "stop", choice
    assert json.loads(choice.message.content or "") == {"v": marker}, choice
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": _only(marker)}}]
    m = served.chat.completions.create(**ask, tools=tools, tool_choice="required",
                                       parallel_tool_calls=False).choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls] == [
        ("get_weather", {"v": marker})], m
