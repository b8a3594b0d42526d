"""jan.templates.grammar: JSON schema -> GBNF, checked with llama.cpp's own grammar engine
(:class:`grammar_helpers.LlamaGrammarChecker`)."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from jan.templates.grammar import (
    JSON_OBJECT_GRAMMAR,
    JSON_VALUE_GRAMMAR,
    GrammarBuilder,
    GrammarError,
    gbnf_literal,
    json_schema_to_grammar,
)
from jan.templates.tool_calls import parse_tool_calls, tool_call_grammar



def check(llama, schema, good, bad):
    grammar = json_schema_to_grammar(schema)
    assert llama.parses(grammar), grammar
    for text in good:
        assert llama.accepts(grammar, text), f"should accept {text!r}\n{grammar}"
    for text in bad:
        assert not llama.accepts(grammar, text), f"should reject {text!r}\n{grammar}"
    return grammar


def test_checker_catches_invalid_grammars(llama):
    assert llama.parses('root ::= "a"')
    assert not llama.parses('root ::= "a" | bad(')
    assert not llama.parses('root ::= undefined-rule')
    assert not llama.parses('root ::= "unterminated')
    assert not llama.parses('other ::= "a"')  # no root rule
    assert llama.accepts('root ::= "a" [0-9]+', "a12")
    assert not llama.accepts('root ::= "a" [0-9]+', "a")


def test_json_object_grammar(llama):
    assert llama.parses(JSON_OBJECT_GRAMMAR) and llama.parses(JSON_VALUE_GRAMMAR)
    for text in ['{}', '{"a": [1, 2.5, -3e10, {"b": null}], "c": "x\\"y\\u00e9", "d": true}', '{\n  "k": "v"\n}', '{"é": "日本"}']:
        assert llama.accepts(JSON_OBJECT_GRAMMAR, text), text
    for text in ["[1]", '"s"', '{"a": 1', "{'a': 1}", '{"a": 01}', '{"a": 1,}', "", '{"a":\n\n\n\n1}']:
        assert not llama.accepts(JSON_OBJECT_GRAMMAR, text), text
    assert llama.accepts(JSON_VALUE_GRAMMAR, "[1, \"x\"]") and llama.accepts(JSON_VALUE_GRAMMAR, "null")


def test_nested_object_array_enum_schema(llama):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["red", "green", 'say "hi"']}, "maxItems": 2},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city"],
            },
        },
        "required": ["name", "address"],
    }
    grammar = check(
        llama,
        schema,
        good=[
            '{"name": "Ann", "address": {"city": "Paris"}}',
            '{"name": "Ann", "age": 150, "tags": ["red", "say \\"hi\\""], "address": {"city": "P", "zip": "75001"}}',
            '{\n  "name": "Ann",\n  "tags": [],\n  "address": {\n    "city": "P"\n  }\n}',
        ],
        bad=[
            '{"address": {"city": "P"}}',  # name is required
            '{"name": "Ann", "age": 151, "address": {"city": "P"}}',
            '{"name": "Ann", "age": -1, "address": {"city": "P"}}',
            '{"name": "Ann", "tags": ["blue"], "address": {"city": "P"}}',
            '{"name": "Ann", "tags": ["red", "red", "red"], "address": {"city": "P"}}',
            '{"name": "Ann", "address": {"city": "P", "zip": "7500"}}',
            '{"name": "Ann", "address": {}}',
            '{"name": "Ann", "address": {"city": "P"}, "extra": 1}',
            '{"address": {"city": "P"}, "name": "Ann"}',  # properties come in schema order
        ],
    )
    # spot-check the structure
    lines = dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())
    assert lines["root"] == "root-obj"
    assert lines["root-tags-item"] == '("\\"red\\"" | "\\"green\\"" | "\\"say \\\\\\"hi\\\\\\"\\"") ws'
    assert lines["root-tags-arr"] == '"[" ws ( root-tags-item ( "," ws root-tags-item )? )? "]" ws'
    assert lines["root-address-obj"] == '"{" ws root-address-city-kv ( "," ws root-address-zip-kv )? "}" ws'
    assert lines["root-name-kv"] == '"\\"name\\"" ws ":" ws string'
    assert lines["ws"] == '| " " | "\\n" [ \\t]{0,20}'


def test_every_subset_of_optional_properties(llama):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}, "d": {"type": "null"}},
        "required": ["c"],
    }
    grammar = json_schema_to_grammar(schema)
    values = {"a": '"s"', "b": "1", "c": "true", "d": "null"}
    for present in itertools.product([False, True], repeat=4):
        text = "{" + ", ".join(f'"{k}": {values[k]}' for k, on in zip("abcd", present) if on) + "}"
        assert llama.accepts(grammar, text) == present[2], text


def test_additional_properties(llama):
    check(
        llama,
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
        good=["{}", '{"a": "x"}', '{"x": 1, "y": 2}', '{"a": "x", "z": 3}'],
        bad=['{"x": "s"}', '{"z": 3, "a": "x"}'],
    )
    check(llama, {"type": "object", "additionalProperties": False}, good=["{}"], bad=['{"a": 1}'])
    check(llama, {"type": "object"}, good=["{}", '{"any": [1, {"x": null}]}'], bad=["[]"])


def test_enum_and_const_values_are_escaped(llama):
    values = ['it\'s "quoted"', "new\nline", "back\\slash", "ünïcödé 日本", "tab\there"]
    check(
        llama,
        {"enum": values + [1, None, True]},
        good=[json.dumps(v, ensure_ascii=False) for v in values] + ["1", "null", "true"],
        bad=['"x"', "2", "false"],
    )
    check(llama, {"const": {"a": [1, "b"]}}, good=['{"a":[1,"b"]}'], bad=['{"a":[1]}'])


def test_any_of_one_of_type_lists_nullable(llama):
    check(
        llama,
        {"anyOf": [{"type": "string", "minLength": 2, "maxLength": 3}, {"type": "null"}]},
        good=['"ab"', '"abc"', "null"],
        bad=['"a"', '"abcd"', "1"],
    )
    check(llama, {"oneOf": [{"type": "boolean"}, {"type": "number"}]}, good=["true", "-1.5e-3"], bad=['"x"'])
    check(llama, {"type": ["integer", "null"]}, good=["3", "null"], bad=["1.5"])
    check(llama, {"type": "string", "nullable": True}, good=['"x"', "null"], bad=["1"])


def test_refs_defs_and_recursion(llama):
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "required": ["name"],
            }
        },
        "$ref": "#/$defs/node",
    }
    check(
        llama,
        tree,
        good=['{"name": "a"}', '{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}'],
        bad=['{"children": []}', '{"name": "a", "children": [{}]}'],
    )
    check(
        llama,
        {"definitions": {"pos": {"type": "integer", "minimum": 1}}, "type": "array", "items": {"$ref": "#/definitions/pos"}},
        good=["[1, 20]"],
        bad=["[0]"],
    )


def test_array_bounds_and_tuples(llama):
    check(
        llama,
        {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3},
        good=["[1, 2]", "[1,2,3.5]"],
        bad=["[]", "[1]", "[1, 2, 3, 4]"],
    )
    check(llama, {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}, good=['["a", 1]'], bad=['["a"]', '[1, "a"]'])
    check(llama, {"type": "array", "maxItems": 0}, good=["[]"], bad=["[1]"])


def test_integer_ranges_match_python(llama):
    rng = random.Random(7)
    for lo, hi in [(None, None), (0, None), (5, None), (-3, 120), (None, -7), (None, 13), (7, 7), (-15, -3), (99, 1001), (-1000, 0)]:
        schema = {"type": "integer"}
        if lo is not None:
            schema["minimum"] = lo
        if hi is not None:
            schema["maximum"] = hi
        grammar = json_schema_to_grammar(schema)
        assert llama.parses(grammar), grammar
        for v in rng.sample(range(-1200, 1200), 60) + [lo or 0, hi or 0, (lo or 0) - 1, (hi or 0) + 1, 0, 10**9, -(10**9)]:
            expected = (lo is None or v >= lo) and (hi is None or v <= hi)
            assert llama.accepts(grammar, str(v)) == expected, (lo, hi, v)
        assert not llama.accepts(grammar, "01")
    check(llama, {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, good=["1", "2"], bad=["0", "3"])


def test_string_formats_and_patterns(llama):
    check(llama, {"type": "string", "format": "date"}, good=['"2024-02-29"'], bad=['"2024-13-01"', '"24-01-01"'])
    check(
        llama,
        {"type": "string", "format": "date-time"},
        good=['"2024-01-01T10:00:00Z"', '"2024-01-01T10:00:00.123+02:00"'],
        bad=['"2024-01-01 10:00"'],
    )
    check(llama, {"type": "string", "format": "uuid"}, good=['"123e4567-e89b-12d3-a456-426614174000"'], bad=['"123"'])
    check(llama, {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$"}, good=['"abc-def"'], bad=['"abc-"', '""', '"aBc"'])
    check(llama, {"type": "string", "pattern": "^\\d{3}\\.\\w?$"}, good=['"123.x"', '"123."'], bad=['"123x"'])
    check(llama, {"type": "string", "pattern": "ab"}, good=['"xxaby"', '"ab"'], bad=['"ba"'])  # unanchored = search
    check(llama, {"type": "string", "pattern": '^[^"]$'}, good=['"a"'], bad=['"\\""'])
    # lookaround is not supported: still a valid JSON string grammar
    check(llama, {"type": "string", "pattern": "^(?=a)a$"}, good=['"anything"'], bad=["1"])


def test_all_of_is_merged(llama):
    check(
        llama,
        {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                   {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
        good=['{"a": "x", "b": 1}'],
        bad=['{"a": "x"}', '{"b": 1}'],
    )


def test_odd_property_names(llama):
    check(
        llama,
        {"type": "object", "properties": {"weird key-name": {"type": "string"}, 'quo"te': {"type": "integer"}, "日本": {"type": "boolean"}},
         "required": ["weird key-name", 'quo"te', "日本"]},
        good=['{"weird key-name": "v", "quo\\"te": 1, "日本": false}'],
        bad=['{"weird key-name": "v"}'],
    )


def test_schema_as_text_and_trivial_schemas(llama):
    assert json_schema_to_grammar('{"type": "boolean"}') == json_schema_to_grammar({"type": "boolean"})
    check(llama, {}, good=["1", '{"a": []}'], bad=["nope"])
    check(llama, True, good=["[]"], bad=[""])


def test_unconvertible_schemas_raise():
    for schema, match in [
        (False, "matches nothing"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"$ref": "https://example.com/schema.json"}, "only local"),
        ({"type": "decimal"}, "unknown type"),
        ({"enum": []}, "non-empty"),
        ({"type": "array", "minItems": 3, "maxItems": 1}, "maxItems"),
        ("{not json", "not valid JSON"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "empty"),
        # a pattern that is no regex is the client's error, never a reply without its constraint
        ({"type": "string", "pattern": "(a"}, "not a valid regular expression: unbalanced"),
        ({"type": "string", "pattern": "a)"}, "not a valid regular expression: unexpected"),
        ({"type": "string", "pattern": "[a-"}, "not a valid regular expression: unterminated"),
        ({"type": "string", "pattern": "[ab\\"}, "not a valid regular expression: unterminated"),
        ({"type": "string", "pattern": "a\\"}, "not a valid regular expression: trailing"),
        ({"type": "string", "pattern": "*a"}, "not a valid regular expression: nothing to repeat"),
        ({"type": "string", "pattern": "a**"}, "not a valid regular expression: nothing to repeat"),
        ({"type": "string", "pattern": "[z-a]"}, "not a valid regular expression: bad character range"),
        ({"type": "object", "properties": {"k": {"type": "string", "pattern": "(x"}}}, "'\\(x'"),
    ]:
        with pytest.raises(GrammarError, match=match):
            json_schema_to_grammar(schema)
    assert issubclass(GrammarError, ValueError)


def test_a_grammar_that_outgrows_its_bound_is_refused_while_it_is_still_small():
    """An object's optional properties cost their number squared (each position spells the rest of the list):
    5,000 of them, a 100 KB schema, were a 325 MB grammar built in full, seconds of a worker holding the GIL and
    gigabytes, before the size check refused it. The builder stops once its rules pass the bound."""
    import tracemalloc

    from jan.templates.gbnf_check import GrammarLimits

    bound = GrammarLimits().max_bytes  # (llama.cpp's, which the builder holds a grammar to as well)
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    tracemalloc.start()
    try:
        with pytest.raises(GrammarError, match="grows past the limit of 1,048,576 bytes") as caught:
            json_schema_to_grammar(schema, param="response_format.json_schema.schema")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * bound, peak
    assert caught.value.param == "response_format.json_schema.schema"
    assert caught.value.code == "schema_too_complex"
    # below the bound nothing changes: every subset of a few optional properties (test above) and a grammar near it
    # (built, not converted: its alternatives are past llama.cpp's bound, which json_schema_to_grammar holds it to)
    near = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(150)}}
    builder = GrammarBuilder()
    builder.add_schema(near)
    assert len(builder.format()) > bound // 4


def test_a_schema_over_llamas_grammar_bounds_is_said_of_its_field():
    """A schema whose grammar passes one of llama.cpp's bounds other than size (its alternatives: three enums of
    4,000 values, each within the enum bound) is refused naming the field the schema came in, not ``grammar``, and
    the place in it that holds most of the count (here the properties together: no one of them holds half); without
    a field, as a JSON pointer (a tool's schema alone is held to the bounds too: tests/test_schema_error_paths)."""
    schema = {"type": "object", "properties": {f"p{i}": {"enum": [f"v{i}-{k}" for k in range(4000)]}
                                               for i in range(3)}}
    with pytest.raises(GrammarError, match=r"^text\.format\.schema\.properties: the grammar's number of "
                                           "alternatives") as caught:
        json_schema_to_grammar(schema, param="text.format.schema")
    assert caught.value.param == "text.format.schema" and caught.value.code == "grammar_too_complex"
    with pytest.raises(GrammarError, match=r"^#/properties: the grammar's number of alternatives"):
        json_schema_to_grammar(schema)


def test_gbnf_literal():
    assert gbnf_literal('a"b\\c\nd\te\x01é') == '"a\\"b\\\\c\\nd\\te\\x01é"'


def test_tool_call_grammar_is_valid_and_round_trips(llama):
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "no_params"}},
    ]
    one = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>'
    two = one + '\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'
    grammar = tool_call_grammar(tools, "required")
    assert llama.parses(grammar), grammar
    assert llama.accepts(grammar, one) and llama.accepts(grammar, two)
    # omitted parameters are an empty parameter list (OpenAI's rule), not any object
    assert llama.accepts(grammar, '<tool_call>{"name": "no_params", "arguments": {}}</tool_call>')
    assert not llama.accepts(grammar, '<tool_call>{"name": "no_params", "arguments": {"any": [1]}}</tool_call>')
    for bad in [
        "Sure!",
        '<tool_call>\n{"name": "get_weather", "arguments": {"unit": "C"}}\n</tool_call>',  # city missing
        '<tool_call>\n{"name": "other", "arguments": {}}\n</tool_call>',
        '<tool_call>\n{"name": "now", "arguments": {"x": 1}}\n</tool_call>',
        one + " and some text",
    ]:
        assert not llama.accepts(grammar, bad), bad
    # whatever the grammar lets through, the parser reads back as calls
    content, calls = parse_tool_calls(two, tools)
    assert content is None and [c["function"]["name"] for c in calls] == ["get_weather", "now"]

    named = tool_call_grammar(tools, {"type": "function", "function": {"name": "now"}}, parallel_tool_calls=False)
    assert llama.parses(named)
    assert llama.accepts(named, '<tool_call>{"name": "now", "arguments": {}}</tool_call>')
    assert not llama.accepts(named, one)
    assert not llama.accepts(named, '<tool_call>{"name": "now", "arguments": {}}</tool_call><tool_call>{"name": "now", "arguments": {}}</tool_call>')


def test_rule_names_are_found_without_trying_every_taken_one(monkeypatch):
    """Each new rule's name was searched from its base's first suffix (``alt``, ``alt-2``, ``alt-3``...) through
    every one taken: an ``anyOf`` of 9,000 ``const`` values took n^2/2 tries, seconds of the server's time, before
    its grammar was refused as too long. The names are the same; the tries are a few per rule."""
    import jan.templates.grammar as grammar

    tried = {"n": 0}

    class Counted(dict):
        def __contains__(self, key):
            tried["n"] += 1
            return super().__contains__(key)

    init = grammar.GrammarBuilder.__init__

    def counted_init(self):
        init(self)
        self._rules = Counted()

    n = 3000
    schema = {"anyOf": [{"const": f"v{i}"} for i in range(n)]}
    before = json_schema_to_grammar(schema)
    monkeypatch.setattr(grammar.GrammarBuilder, "__init__", counted_init)
    assert json_schema_to_grammar(schema) == before
    assert tried["n"] <= 20 * n, tried


@pytest.mark.parametrize("schema,said", [
    ({"type": "array", "items": {"type": "integer"}, "minItems": 100_000}, "a minItems of 100,000"),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2_001}, "a minItems of 2,001"),
    ({"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 5_000}, "a minProperties of 5,000"),
    ({"type": "string", "minLength": 100_000}, "a minLength of 100,000"),
])
def test_a_count_past_the_limit_is_told_with_the_schemas_own_number(schema, said):
    """minItems 100000 was told as "a minimum of 99,999 repetitions": the grammar repeats the members after the
    first, and the message said that count, not the schema's."""
    with pytest.raises(GrammarError, match=said) as caught:
        json_schema_to_grammar(schema)
    assert caught.value.code == "schema_too_complex"
    assert json_schema_to_grammar({**schema, "minItems": 2_000} if "minItems" in schema else {"type": "array"})
