"""Under a grammar the chain draws first and the grammar checks the one token drawn, filtering the vocabulary only
where it refuses it (cpp/sampling.cpp: sample_token, llama.cpp's common-sampler order); ``grammar_first`` filters
first, every token. Greedy: both give the best token the grammar allows, checked against the filter-first path with
one candidate left (top_k 1), over grammars that refuse most, some or none of what the model would write, with the
other samplers that change logits (logit bias, penalties, ignore_eos, a thinking budget) in the chain. Sampled:
every output is the grammar's, a seed replays its output, and without truncation the draws follow the allowed
tokens' distribution as filtering first does."""

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
            stories.generate("Once upon a time", temperature=1.0, top_k=1, seed=1, grammar_first=True, **kw)
        return
    filtered_first = stories.generate("Once upon a time", temperature=1.0, top_k=1, seed=1, grammar_first=True, **kw)
    sampled_first = stories.generate("Once upon a time", temperature=1.0, top_k=1, seed=1, **kw)
    assert (greedy.text, greedy.finish_reason) == (filtered_first.text, filtered_first.finish_reason)
    assert greedy.token_ids == filtered_first.token_ids == sampled_first.token_ids


def test_a_greedy_json_answer_is_one_document_of_its_schema(stories):
    out = stories.generate("Once upon a time", max_tokens=120, temperature=0, grammar=GRAMMARS["json"])
    assert out.finish_reason == "stop", out
    value = json.loads(out.text)
    assert set(value) == {"name", "age"} and 0 <= value["age"] <= 99


@pytest.mark.parametrize("grammar_first", [False, True], ids=["sampled-first", "grammar-first"])
@pytest.mark.parametrize("grammar", ["digits", "choice", "story"])
def test_a_sampled_output_is_the_grammars_and_its_seed_replays_it(stories, grammar, grammar_first):
    import re

    pattern = {"digits": r"[0-9]+", "choice": r"(yes|no|maybe) [a-z ]*", "story": r", there was a little[a-z ]*"}
    for seed in range(6):
        kw = dict(max_tokens=16, temperature=1.5, seed=seed, grammar=GRAMMARS[grammar], grammar_first=grammar_first)
        first = stories.generate("Once upon a time", **kw)
        assert re.fullmatch(pattern[grammar], first.text), (seed, first.text)
        again = stories.generate("Once upon a time", **kw)
        assert again.token_ids == first.token_ids


def test_a_sampled_json_answer_is_one_document_of_its_schema(stories):
    for seed in range(4):
        out = stories.generate("Once upon a time", max_tokens=160, temperature=0.9, seed=seed,
                               grammar=GRAMMARS["json"])
        if out.finish_reason == "stop":
            value = json.loads(out.text)
            assert set(value) == {"name", "age"} and 0 <= value["age"] <= 99
        else:  # cut by the token limit: a prefix of such a document
            assert out.finish_reason == "length" and out.text.startswith("{")


def test_sampled_first_draws_follow_the_allowed_tokens_distribution(stories):
    """Without truncation a draw the grammar refuses is drawn again from what it allows, in proportion: the first
    token's frequencies over many seeds match filtering first's and the model's own odds between the allowed tokens
    (deterministic seeds; generous bounds)."""
    import math
    from collections import Counter

    # stories260K after this prompt: " lo" 0.35, " was" 0.23, " had" 0.19, " li" 0.16, ... — the grammar refuses
    # the likeliest one, so about half of the draws are refused and drawn again
    prompt = "Once upon a time, there was a little girl. She"
    grammar = 'root ::= " was" | " had" | " li"'
    kw = dict(max_tokens=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, grammar=grammar)
    n = 400
    freq = {}
    for grammar_first in (False, True):
        tally = Counter(stories.generate(prompt, seed=seed, grammar_first=grammar_first, **kw).text
                        for seed in range(n))
        freq[grammar_first] = {text: count / n for text, count in tally.items()}
    assert " lo" not in freq[False]
    outcomes = set(freq[False]) | set(freq[True])
    distance = sum(abs(freq[False].get(t, 0) - freq[True].get(t, 0)) for t in outcomes) / 2
    assert distance < 0.12, freq
    top = stories.generate(prompt, max_tokens=1, temperature=0, top_logprobs=10).logprobs[0].top
    odds = {t.token: math.exp(t.logprob) for t in top if t.token in (" was", " had", " li")}
    assert set(odds) == {" was", " had", " li"}
    for text, p in odds.items():
        expected = p / sum(odds.values())
        assert abs(freq[False].get(text, 0) - expected) < 0.1, (text, expected, freq)
