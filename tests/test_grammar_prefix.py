"""A grammar advanced through a prefix (``grammar_prefix``): the text a reply already holds before the output, which
the grammar reads first as though the model had written it. The output is then a continuation of the prefix within
the grammar, whatever tokens the prefix would be split into; a prefix the grammar cannot start with is a typed error
(:class:`jan.errors.GrammarPrefixError`, a ValueError naming the byte it refuses) at submit, before any generation."""

from __future__ import annotations

import json

import jsonschema
import pytest

import jan
from jan.errors import GrammarPrefixError
from jan.templates import json_schema_to_grammar

DIGITS = 'root ::= "abc" [0-9] [0-9] "!"'
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer",
          "minimum": 0, "maximum": 99}}, "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "abc1"])
def test_the_output_continues_the_prefix_within_the_grammar(stories, prefix):
    for seed in range(3):
        out = stories.generate("Once", grammar=DIGITS, grammar_prefix=prefix, max_tokens=12, temperature=1.0,
                               seed=seed)
        whole = prefix + out.text
        assert out.finish_reason == "stop", out
        assert len(whole) == 6 and whole.startswith("abc") and whole[3:5].isdigit() and whole.endswith("!"), whole


def test_a_json_prefix_is_continued_into_one_document_of_the_schema(stories):
    grammar = json_schema_to_grammar(SCHEMA)
    for prefix in ('{', '{"', '{"name": "', '{"name": "Lily", "age": 1'):
        for seed in range(3):
            out = stories.generate("Once upon a time", grammar=grammar, grammar_prefix=prefix, max_tokens=96,
                                   temperature=1.0, seed=seed)
            assert out.finish_reason == "stop", (prefix, out)
            jsonschema.validate(json.loads(prefix + out.text), SCHEMA)


def test_a_whole_prefix_leaves_only_the_end_of_generation(stories):
    out = stories.generate("Once", grammar=DIGITS, grammar_prefix="abc42!", max_tokens=8)
    assert (out.text, out.finish_reason) == ("", "stop")


def test_a_prefix_that_is_not_a_tokenizers_split_still_reads_as_its_text(stories):
    """stories260K's SentencePiece tokenizer would spell "{" as " {" (its leading space): the prefix is the text
    itself, spelled in whatever tokens make it byte for byte, so the grammar reads no space."""
    tokenized = "".join(stories.token_to_piece(t) for t in stories.tokenize("{", add_special=False))
    assert tokenized == " {"  # (what feeding the tokenizer's tokens would have shown the grammar)
    out = stories.generate("Once", grammar='root ::= "{" [a-z] "}"', grammar_prefix="{", max_tokens=4, temperature=0)
    assert out.finish_reason == "stop" and len(out.text) == 2 and out.text.endswith("}"), out


@pytest.mark.parametrize("prefix, offset", [("x", 0), ("abx", 2), ("abc4x", 4), ("abc42!x", 6), ("é", 0),
                                            ("aé", 1)])
def test_a_prefix_the_grammar_cannot_start_is_a_typed_error_naming_its_byte(stories, prefix, offset):
    with pytest.raises(GrammarPrefixError) as caught:
        stories.generate("Once", grammar=DIGITS, grammar_prefix=prefix, max_tokens=4)
    err = caught.value
    assert isinstance(err, jan.BadRequestError) and isinstance(err, ValueError)
    assert (err.offset, err.param, err.code) == (offset, "grammar_prefix", "grammar_prefix_rejected")
    assert f"byte {offset}" in str(err)


def test_a_refused_prefix_is_refused_at_submit_and_the_model_serves_on(stories):
    with pytest.raises(GrammarPrefixError):
        stories.stream("Once", grammar=DIGITS, grammar_prefix="zzz", max_tokens=4)
    assert stories.generate("Once", grammar=DIGITS, grammar_prefix="abc", max_tokens=8).finish_reason == "stop"


def test_a_lazy_grammar_reads_its_trigger_in_the_prefix(stories):
    """A lazy grammar (tool calls on ``auto``) waits for its trigger in the reply: a trigger the prefix wrote
    switches it on, and the output then finishes what the trigger began."""
    lazy = {"grammar": 'root ::= "<c>" [0-9] "</c>"', "grammar_triggers": ["(<c>)"]}
    for seed in range(3):
        out = stories.generate("Once", **lazy, grammar_prefix="Sure. <c>", max_tokens=8, temperature=1.0, seed=seed)
        assert len(out.text) == 5 and out.text[0].isdigit() and out.text.endswith("</c>"), out
    with pytest.raises(GrammarPrefixError) as caught:
        stories.generate("Once", **lazy, grammar_prefix="Sure. <c>x", max_tokens=4)
    assert caught.value.offset == len("Sure. <c>")
    # a prefix without the trigger leaves the output as free as ever
    assert stories.generate("Once", **lazy, grammar_prefix="Sure.", max_tokens=4, temperature=0).text


def test_a_prefix_needs_a_grammar(stories):
    with pytest.raises(ValueError, match="grammar_prefix: given without a grammar"):
        stories.generate("Once", grammar_prefix="{", max_tokens=2)
