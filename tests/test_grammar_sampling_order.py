"""A greedy request under a grammar is sampled first and checked by the grammar, filtered only where the grammar
refuses the token (cpp/sampling.cpp: sample_token, llama.cpp's common-sampler order); a sampled one filters first.
Both must give the best token the grammar allows: the greedy path is checked against the filter-first path with
one candidate left (top_k 1), over grammars that refuse most, some or none of what the model would write, with the
other samplers that change logits (logit bias, penalties, ignore_eos, a thinking budget) in the chain."""

from __future__ import annotations

import json

import pytest

from jan.templates import json_schema_to_grammar

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name", "age"], "additionalProperties": False}
GRAMMARS = {
    "digits": 'root ::= [0-9]+',
    "choice": 'root ::= ("yes" | "no" | "maybe") " " [a-z ]*',
    "json": json_schema_to_grammar(SCHEMA),
    "anything": r'root ::= [^\x00]*',
    "story": 'root ::= ", there was a little" [a-z ]*',
}
EXTRAS = {
    "plain": {},
    "bias": {"logit_bias": {"1": -5.0, "13": 3.0}},
    "penalties": {"repeat_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.3},
    "ignore_eos": {"ignore_eos": True},
    "budget": {"reasoning_budget": 3, "reasoning_open": True, "reasoning_end": " "},
}


@pytest.mark.parametrize("extra", EXTRAS, ids=list(EXTRAS))
@pytest.mark.parametrize("grammar", GRAMMARS, ids=list(GRAMMARS))
def test_greedy_under_a_grammar_is_the_best_token_the_grammar_allows(stories, grammar, extra):
    kw = dict(max_tokens=24, grammar=GRAMMARS[grammar], **EXTRAS[extra])
    kw["logit_bias"] = {int(k): v for k, v in kw.get("logit_bias", {}).items()}
    try:
        greedy = stories.generate("Once upon a time", temperature=0, **kw)
    except ValueError as exc:  # (a budget whose end the grammar rules out: refused alike on both paths)
        with pytest.raises(type(exc)):
            stories.generate("Once upon a time", temperature=1.0, top_k=1, seed=1, **kw)
        return
    filtered_first = stories.generate("Once upon a time", temperature=1.0, top_k=1, seed=1, **kw)
    assert (greedy.text, greedy.finish_reason) == (filtered_first.text, filtered_first.finish_reason)
    assert greedy.token_ids == filtered_first.token_ids


def test_a_greedy_json_answer_is_one_document_of_its_schema(stories):
    out = stories.generate("Once upon a time", max_tokens=120, temperature=0, grammar=GRAMMARS["json"])
    assert out.finish_reason == "stop", out
    value = json.loads(out.text)
    assert set(value) == {"name", "age"} and 0 <= value["age"] <= 99
