"""A schema's own text written raw between the tags of an XML-style call never holds what the parser reads as markup.

Qwen3-Coder (and Seed-OSS, in its own wrapper) and GLM 4.5+ write a call's arguments one parameter at a time, each
value as raw text between tags, where nothing can be escaped. A free string value takes no ``<`` at all, but a
required parameter's enum/const value, its name and the text its ``x-jan-lark`` grammar writes were written as the
schema said: ``x</parameter>`` ended the value for the parser half-way (the rest of the call markup, or the call
cut), and a value holding a double quote came back with a JSON escape in it (the markers pass read the text after
the quote as a JSON string's). Now a literal the format's parser would read as structure is refused up front (a 400
``invalid_schema`` naming its place), a text grammar is narrowed so it cannot write one, and what the grammar allows
comes back from the parser as exactly the arguments.
"""

from __future__ import annotations

import json

import httpx
import pytest

from jan.templates import GrammarError
from jan.templates.formats import parse_output
from jan.templates.formats.grammars import call_grammar
from jan.templates.formats.xml_calls import GLM_STOPS, QWEN3_CODER_STOPS
from jan.templates.grammar import prefixed_rules
from jan.templates.lark_gbnf import lark_to_gbnf

from chat_format_cases import TOOLS
from test_markers_in_answers import TEMPLATE_CASES, _plan
from test_schema_error_paths import ENTRIES, WAIT_S, _error_message, _said

# every call grammar that writes a value raw between tags, with what its parser reads as structure there
STOPS = {"qwen3-coder": QWEN3_CODER_STOPS, "seed-oss": QWEN3_CODER_STOPS, "glm": GLM_STOPS}
TEMPLATE = {"qwen3-coder": "Qwen3-Coder", "seed-oss": "ByteDance-Seed-OSS", "glm": "GLM-4.6"}


def _tools(props: dict, required: list | None = None) -> list:
    return [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": props, "required": list(props) if required is None else required}}}]


# place -> (the property holding text t, its name, the path of t in the parameters schema)
PLACES = {
    "enum": (lambda t: {"tag": {"type": "string", "enum": ["a", "x" + t]}}, ".properties.tag.enum[1]"),
    "enum-untyped": (lambda t: {"tag": {"enum": [t + "y"]}}, ".properties.tag.enum[0]"),
    "const": (lambda t: {"tag": {"type": "string", "const": "x" + t + "y"}}, ".properties.tag.const"),
    "lark-literal": (lambda t: {"tag": {"type": "string", "x-jan-lark": f"start: /[a-z]+/ {json.dumps(t)}"}},
                     '.properties.tag["x-jan-lark"]'),
}
VALUE_CASES = [(fmt, place, tag) for fmt, stops in STOPS.items() for place in PLACES for tag in stops.value]
KEY_CASES = [(fmt, tag) for fmt, stops in STOPS.items() for tag in stops.key]


@pytest.mark.parametrize(("fmt", "place", "tag"), VALUE_CASES, ids=lambda v: str(v))
def test_a_literal_holding_a_value_s_end_is_refused_naming_its_place(fmt, place, tag):
    props, inner = PLACES[place]
    with pytest.raises(GrammarError) as info:
        call_grammar(fmt, _tools(props(tag)))
    err = info.value
    assert err.code == "invalid_schema" and err.param == "tools[0].function.parameters", err
    assert str(err).startswith(f"tools[0].function.parameters{inner}: "), str(err)
    assert f"`{tag}`" in str(err) and ("cannot be escaped" in str(err) or "can write" in str(err)), str(err)


@pytest.mark.parametrize(("fmt", "tag"), KEY_CASES, ids=lambda v: str(v))
def test_a_parameter_name_holding_a_name_s_end_is_refused(fmt, tag):
    name = "k" + tag + "z"
    with pytest.raises(GrammarError) as info:
        call_grammar(fmt, _tools({name: {"type": "integer"}}))
    assert f"`{tag}`" in str(info.value) and "parameter's name" in str(info.value), str(info.value)
    # an optional parameter is never written: its name is the model's to see, not the grammar's to write
    call_grammar(fmt, _tools({name: {"type": "integer"}, "n": {"type": "integer"}}, ["n"]))


@pytest.mark.parametrize("fmt", STOPS)
def test_a_name_or_value_the_parser_trims_is_refused_where_it_would(fmt):
    with pytest.raises(GrammarError, match="white space"):
        call_grammar(fmt, _tools({" k": {"type": "integer"}}))
    trimmed = _tools({"tag": {"type": "string", "enum": ["\nx", "y\n"]}})
    if STOPS[fmt].value_trimmed:  # GLM: a value written bare between its tags loses a newline at each end
        with pytest.raises(GrammarError, match=r"enum\[0\]: .*newline"):
            call_grammar(fmt, trimmed)
    else:  # Qwen3-Coder writes a newline on each side of the value, the ones its parser trims
        call_grammar(fmt, trimmed)


def _call_text(fmt: str, args: dict) -> str:
    """A call of ``f`` with ``args`` (raw text values) as the format's grammar writes it."""
    if fmt == "glm":
        return "<tool_call>f\n" + "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n"
                                          for k, v in args.items()) + "</tool_call>"
    wrap = "seed:tool_call" if fmt == "seed-oss" else "tool_call"
    return (f"<{wrap}>\n<function=f>\n" + "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
            + f"</function>\n</{wrap}>")


def _held(llama, fmt: str, tools: list):
    plan, prompt = _plan(TEMPLATE[fmt], tools)
    assert plan.fmt.tool_grammar == fmt
    return plan, prompt, plan.grammar_options(prompt)["grammar"]


# texts with a "<" that hold no end of a value in the format (each another format's end, or none)
HARMLESS = {"qwen3-coder": ["a<b", "<parameter", 'say "<tool_call>" x', "</arg_value>", "<|im_end|>"],
            "glm": ["a<b", "<arg_key", 'say "<tool_call>" x', "</parameter>", "</function>"]}
HARMLESS["seed-oss"] = HARMLESS["qwen3-coder"]
LARK_CLASS = r"start: /[a-z<\/>=_|:]+/"


@pytest.mark.parametrize("fmt", STOPS)
def test_what_the_grammar_allows_comes_back_as_the_arguments(llama, fmt):
    tools = _tools({"tag": {"type": "string", "enum": HARMLESS[fmt]},
                    "one": {"type": "string", "const": HARMLESS[fmt][2]},
                    "text": {"type": "string", "x-jan-lark": LARK_CLASS}})
    plan, prompt, grammar = _held(llama, fmt, tools)
    assert llama.parses(grammar), grammar
    opened = plan.fmt.starts_in_reasoning(prompt)
    for value in HARMLESS[fmt]:
        args = {"tag": value, "one": HARMLESS[fmt][2], "text": "ab/c=d>"}
        text = _call_text(fmt, args)
        assert llama.accepts(grammar, text), (value, grammar)
        parsed = parse_output(text, plan.fmt, tools, open_at_start=opened)
        assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == [("f", args)], (value, parsed)
    # a const is its one value: no other
    assert not llama.accepts(grammar, _call_text(fmt, {"tag": "a<b", "one": "other", "text": "ab"}))
    # the text grammar, narrowed: none of the format's ends (nor any "<", where each would begin) raw in the value
    for tag in STOPS[fmt].value:
        assert not llama.accepts(grammar, _call_text(fmt, {"tag": "a<b", "one": HARMLESS[fmt][2],
                                                           "text": "ab" + tag + "cd"})), tag


@pytest.mark.parametrize("fmt", STOPS)
def test_an_untyped_enum_s_string_comes_back_a_string(llama, fmt):
    """A parameter not typed a string is read as JSON where its text is JSON: its enum's "123" is written quoted."""
    values = ["123", "true", "null", "[1]", "x", "x<b"]
    tools = _tools({"tag": {"enum": values}})
    plan, prompt, grammar = _held(llama, fmt, tools)
    opened = plan.fmt.starts_in_reasoning(prompt)
    for v in values:
        text = next(t for t in (_call_text(fmt, {"tag": v}), _call_text(fmt, {"tag": json.dumps(v)}))
                    if llama.accepts(grammar, t))
        parsed = parse_output(text, plan.fmt, tools, open_at_start=opened)
        assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == [("f", {"tag": v})], (v, text)


@pytest.mark.parametrize("fmt", STOPS)
def test_a_literal_with_no_such_text_keeps_its_grammar(fmt):
    values = ["a<b", "x|y", "<b>", "q"]
    lark = 'start: "a|b" /[0-9]+/'
    grammar = call_grammar(fmt, _tools({"tag": {"type": "string", "enum": values},
                                        "text": {"type": "string", "x-jan-lark": lark}}))
    assert '( "a<b" | "x|y" | "<b>" | "q" )' in grammar, grammar
    assert set(prefixed_rules(lark_to_gbnf(lark, "raw"), "f-text-g0-").splitlines()) <= set(grammar.splitlines())


# each template's outputs holding one call (JSON or raw)
ONE_CALL = [pytest.param(c, o, id=f"{c.template}-{kind}") for c in TEMPLATE_CASES
            for kind, o in (("plain", c.plain), ("thinking", c.thinking)) if o is not None and len(o.calls) == 1]


@pytest.mark.parametrize(("case", "output"), [p for p in ONE_CALL if p.values[0].template in TEMPLATE.values()])
def test_a_free_string_takes_no_angle_bracket_in_each_xml_format(llama, case, output):
    plan, prompt = _plan(case.template, TOOLS)
    grammar = plan.grammar_options(prompt)["grammar"]
    assert plan.fmt.tool_grammar in STOPS
    text = output.text[output.text.index("<tool_call>") if "<tool_call>" in output.text
                       else output.text.index("<seed:tool_call>"):]
    city = output.calls[0][1]["city"]
    assert llama.accepts(grammar, text), grammar
    assert not llama.accepts(grammar, text.replace(city, city + "<")), grammar


def test_every_format_writing_raw_values_is_listed(llama):
    """Each format whose call grammar writes a string value as raw text (the case's city, unquoted) is one of STOPS."""
    raw = set()
    for case, output in (p.values for p in ONE_CALL):
        plan, prompt = _plan(case.template, TOOLS)
        city = output.calls[0][1]["city"]
        if f'"{city}"' not in output.text and city in output.text:
            raw.add(plan.fmt.tool_grammar)
    assert raw and raw <= set(STOPS), raw


# -- through the server: a tiny random-weight model with the real Qwen3-Coder template --------------------------------

@pytest.fixture(scope="module")
def coder(tmp_path_factory):
    from conftest import require_model
    from jan.testing.gguf_models import TINY_CHAT_CONFIG, templates_dir, vocab_path, write_llama_from_vocab
    from server_helpers import start_server

    require_model("vocab", "ggml-vocab-qwen2.gguf")
    tmp = tmp_path_factory.mktemp("xml-literals")
    im_end = 151645
    model = write_llama_from_vocab(tmp / "tool-model.gguf", vocab_path("ggml-vocab-qwen2.gguf"), **TINY_CHAT_CONFIG,
                                   dtype="f32", chat_template=(templates_dir() / "Qwen3-Coder.jinja").read_text(),
                                   extra_kv={"tokenizer.ggml.eos_token_id": im_end,
                                             "tokenizer.ggml.eot_token_id": im_end})
    srv = start_server(tmp, [model], n_ctx=1024, n_parallel=1)
    yield srv
    srv.stop()


TOOL_ENTRIES = ["chat tools auto", "chat tools strict required", "chat tools named", "responses tools",
                "anthropic tools any", "anthropic tools named", "ollama chat tools"]
BAD = {"type": "object", "properties": {"tag": {"type": "string", "enum": ["a", "x</parameter>"]}},
       "required": ["tag"]}


@pytest.mark.parametrize("entry", TOOL_ENTRIES)
def test_each_dialect_refuses_the_literal_in_its_own_shape(coder, entry):
    path, body_of, field, dialect = ENTRIES[entry]
    response = httpx.post(coder.base_url + path, json=body_of(BAD), timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    message = _error_message(dialect, response.json())
    assert _said(dialect, f"{field}.properties.tag.enum[1]: ") in message and "`</parameter>`" in message, message
    if dialect == "openai":
        assert response.json()["error"]["code"] == "invalid_schema", response.text
    good = {**BAD, "properties": {"tag": {"type": "string", "enum": ["a", "x<b"]}}}
    assert httpx.post(coder.base_url + path, json=body_of(good), timeout=WAIT_S).status_code == 200


# counting and rendering a prompt build no grammar: for a loaded model in such a format they check the literals so
COUNTING = {
    "chat input_tokens": ("/v1/chat/completions/input_tokens", "chat tools auto"),
    "responses input_tokens": ("/v1/responses/input_tokens", "responses tools"),
    "anthropic count_tokens": ("/v1/messages/count_tokens", "anthropic tools any"),
    "apply-template": ("/apply-template", "chat tools auto"),
}


@pytest.mark.parametrize("entry", COUNTING)
def test_counting_a_loaded_model_s_prompt_refuses_the_literal_too(coder, entry):
    ok = httpx.post(coder.base_url + "/v1/chat/completions", timeout=WAIT_S,
                    json={"model": "tool-model", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
    assert ok.status_code == 200, ok.text
    path, generating = COUNTING[entry]
    _, body_of, field, dialect = ENTRIES[generating]
    drop = ("max_tokens", "max_output_tokens", "store")
    body = {k: v for k, v in body_of(BAD).items() if k not in drop}
    response = httpx.post(coder.base_url + path, json=body, timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    message = _error_message("llama" if path == "/apply-template" else dialect, response.json())
    assert _said(dialect, f"{field}.properties.tag.enum[1]: ") in message and "`</parameter>`" in message, message
    good = {k: v for k, v in body_of({**BAD, "properties": {"tag": {"type": "string", "enum": ["x<b"]}}}).items()
            if k not in drop}
    assert httpx.post(coder.base_url + path, json=good, timeout=WAIT_S).status_code == 200
