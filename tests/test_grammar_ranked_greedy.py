"""Greedy under a grammar on a large vocabulary: a refused pick is followed by the next best candidates, checked one
by one in the chain's order (up to 64), before the grammar filters the whole vocabulary (cpp/sampling.cpp:
best_allowed). The token must be the one filtering first gives, whichever way it was found: compared here with
``grammar_first`` (the filter over every token, then greedy) on Qwen2's 151k-token vocabulary with random weights,
whose favourites a grammar refuses at almost every step — a lipogram (allowed runners-up near the top: found by the
checks), digits (a handful of the 151k allowed: the checks give up and the filter decides), a JSON schema (both) —
with the samplers that change logits before greedy (logit bias, penalties, ignore_eos) in the chain."""

from __future__ import annotations

import json

import pytest

import jan
from jan.templates import json_schema_to_grammar
from jan.testing.gguf_models import QWEN2_VOCAB, vocab_path, write_qwen2_chat_model

SCHEMA = {"type": "object", "properties": {"colour": {"enum": ["mauve", "teal", "ochre"]},
                                           "count": {"type": "integer"}, "note": {"type": "string"}},
          "required": ["colour", "count", "note"], "additionalProperties": False}
GRAMMARS = {
    "lipogram": r"root ::= [^eE\x00]*",
    "digits": "root ::= [0-9]+",
    "json": json_schema_to_grammar(SCHEMA),
    "words": 'root ::= ("zebra" | "quantum" | "mauve") (" " ("zebra" | "quantum" | "mauve"))*',
}
EXTRAS = {
    "plain": {},
    "bias": {"logit_bias": {13: 4.0, 15: -3.0, 220: 6.0}},
    "penalties": {"repeat_penalty": 1.4, "presence_penalty": 0.6, "frequency_penalty": 0.4},
    "ignore_eos": {"ignore_eos": True},
}


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    if not vocab_path(QWEN2_VOCAB).exists():
        pytest.skip(f"the Qwen2 vocabulary ({vocab_path(QWEN2_VOCAB)}) is not in ../shared/models/vocab")
    path = write_qwen2_chat_model(tmp_path_factory.mktemp("ranked") / "qwen-random.gguf", seed=3)
    model = jan.Model(path, n_ctx=512, n_parallel=1, n_threads=2)
    try:
        yield model
    finally:
        model.close()


@pytest.mark.parametrize("extra", EXTRAS, ids=list(EXTRAS))
@pytest.mark.parametrize("grammar", GRAMMARS, ids=list(GRAMMARS))
def test_a_refused_greedy_pick_gives_the_token_filtering_first_gives(qwen, grammar, extra):
    kw = dict(max_tokens=20, temperature=0, grammar=GRAMMARS[grammar], **EXTRAS[extra])
    for prompt in ("The quick brown fox", "Numbers: 1, 2,"):
        checked = qwen.generate(prompt, **kw)
        filtered = qwen.generate(prompt, grammar_first=True, **kw)
        assert checked.token_ids == filtered.token_ids, (grammar, extra, prompt, checked.text, filtered.text)
        assert checked.finish_reason == filtered.finish_reason


def test_the_outputs_are_the_grammars(qwen):
    lipogram = qwen.generate("The quick brown fox", max_tokens=40, temperature=0, grammar=GRAMMARS["lipogram"],
                             ignore_eos=True)
    assert lipogram.token_ids and "e" not in lipogram.text.lower(), lipogram.text
    digits = qwen.generate("Count:", max_tokens=12, temperature=0, grammar=GRAMMARS["digits"])
    assert digits.text.isdigit(), digits.text
    doc = qwen.generate("Answer:", max_tokens=200, temperature=0, grammar=GRAMMARS["json"])
    if doc.finish_reason == "stop":  # (a random model may write a long string to the limit)
        value = json.loads(doc.text)
        assert value["colour"] in ("mauve", "teal", "ochre") and isinstance(value["count"], int)
