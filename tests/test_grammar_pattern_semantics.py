r"""A ``pattern`` is an ECMA-262 regex (JSON Schema's rule, and what the schema's validators apply): its ``\s`` is
Unicode's spaces, its ``.`` no line terminator; and ``minLength``/``maxLength`` beside a pattern are enforced where
the pattern is one anchored run of single characters (``^[a-z]+$``, pydantic's ``constr(pattern=..., max_length=...)``).
The grammar used to let ``\S`` write U+3000, ``.`` a newline, and ``^[a-z]+$`` with ``maxLength: 8`` run to 30
letters. Checked with llama.cpp's own grammar engine; the expectations are Python's ``re`` on the decoded string where
it agrees with ECMA-262 (its ``.`` lets ``\r``, U+2028 and U+2029 through and its ``\s`` misses U+FEFF: those are
spelled out)."""

from __future__ import annotations

import json
import re

import pytest

from jan.templates.grammar import GrammarError, json_schema_to_grammar


def _agrees(llama, schema: dict, texts: list[str]) -> None:
    grammar = json_schema_to_grammar(schema)
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    for text in texts:
        want = re.search(schema["pattern"], text) is not None and lo <= len(text) and (hi is None or len(text) <= hi)
        assert llama.accepts(grammar, json.dumps(text, ensure_ascii=False)) == want, (schema, text)


def test_class_escapes_for_spaces_are_unicodes(llama):
    spaces = ["\u00a0", "\u1680", "\u2000", "\u200a", "\u2028", "\u202f", "\u205f", "\u3000", " ", "\t"]
    _agrees(llama, {"type": "string", "pattern": "^\\S+$"}, ["abc", "日本"] + [f"a{s}b" for s in spaces])
    _agrees(llama, {"type": "string", "pattern": "^[^,\\s]{1,6}$"}, ["ab", "a,b", "}ября\u200a", "x\u3000"])
    _agrees(llama, {"type": "string", "pattern": "^a\\sb$"}, [f"a{s}b" for s in spaces] + ["ab", "axb"])
    bom = json_schema_to_grammar({"type": "string", "pattern": "^\\S+$"})
    assert not llama.accepts(bom, '"a\ufeffb"')  # U+FEFF is ECMA-262 whitespace


def test_dot_is_no_line_terminator(llama):
    grammar = json_schema_to_grammar({"type": "string", "pattern": "^a.c$"})
    for text, want in [("abc", True), ("a日c", True), ("a c", True), ('a"c', True), ("a\nc", False), ("a\rc", False),
                       ("a\u2028c", False), ("a\u2029c", False), ("ac", False)]:
        assert llama.accepts(grammar, json.dumps(text, ensure_ascii=False)) == want, text
    assert not llama.accepts(grammar, '"a\\u000ac"')  # a newline spelled as a \u escape is one too


def test_lengths_beside_a_pattern_of_single_characters(llama):
    _agrees(llama, {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
            ["a", "abc", "abcd", "abcdefghij", "ab1"])
    _agrees(llama, {"type": "string", "pattern": "^[a-z]*$", "minLength": 2, "maxLength": 4},
            ["", "a", "ab", "abcd", "abcde"])
    _agrees(llama, {"type": "string", "pattern": "^[A-Z][a-z0-9_]{2,}$", "minLength": 4, "maxLength": 6},
            ["Abc", "Abcd", "Abcdef", "Abcdefg", "abcd"])
    _agrees(llama, {"type": "string", "pattern": "^\\d{3}-\\d+$", "maxLength": 6}, ["123-4", "123-45", "123-456"])


def test_a_pattern_and_lengths_that_admit_nothing_are_refused():
    with pytest.raises(GrammarError, match="admit no string"):
        json_schema_to_grammar({"type": "string", "pattern": "^x{2}$", "minLength": 3})
    with pytest.raises(GrammarError, match="admit no string"):
        json_schema_to_grammar({"type": "string", "pattern": "^[a-z]{5,}$", "maxLength": 3})
