"""Speculative decoding (n-gram drafts) under a grammar, greedy: each drafted token is checked by the same sampling
as a plain step (cpp/sampling.cpp sample_token: a refused greedy pick is followed by its best runners-up, then the
filter over the whole vocabulary), so the output must be token for token what filtering first gives without
drafts (``grammar_first``). Qwen2's 151k-token vocabulary with random weights, whose favourites these grammars
refuse at almost every step; repetitive prompts and grammars so that the n-gram lookup has drafts to offer."""

from __future__ import annotations

import pytest

import jan
from jan.testing.gguf_models import QWEN2_VOCAB, vocab_path, write_qwen2_chat_model

GRAMMARS = {
    "letters": "root ::= [ab ]*",
    "lipogram": r"root ::= [^eE\x00]*",
    "words": 'root ::= ("zebra" | "quantum" | "mauve") (" " ("zebra" | "quantum" | "mauve"))*',
}
EXTRAS = {
    "plain": {},
    "bias": {"logit_bias": {64: 3.0, 220: 5.0}},
    "penalties": {"repeat_penalty": 1.2, "presence_penalty": 0.4},
}
PROMPTS = ("a b a b a b a b a b", "zebra quantum zebra quantum zebra quantum")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not vocab_path(QWEN2_VOCAB).exists():
        pytest.skip(f"the Qwen2 vocabulary ({vocab_path(QWEN2_VOCAB)}) is not in ../shared/models/vocab")
    path = write_qwen2_chat_model(tmp_path_factory.mktemp("specgrammar") / "qwen-random.gguf", seed=3)
    drafted = jan.Model(path, n_ctx=512, n_parallel=1, n_threads=2, speculative="ngram", draft_min=1, ngram=2)
    plain = jan.Model(path, n_ctx=512, n_parallel=1, n_threads=2)
    try:
        yield drafted, plain
    finally:
        drafted.close()
        plain.close()


@pytest.mark.parametrize("extra", EXTRAS, ids=list(EXTRAS))
@pytest.mark.parametrize("grammar", GRAMMARS, ids=list(GRAMMARS))
def test_drafted_greedy_under_a_grammar_is_what_filtering_first_gives(models, grammar, extra):
    drafted, plain = models
    kw = dict(max_tokens=40, temperature=0, grammar=GRAMMARS[grammar], ignore_eos=True, **EXTRAS[extra])
    for prompt in PROMPTS:
        got = drafted.generate(prompt, **kw)
        want = plain.generate(prompt, grammar_first=True, **kw)
        assert got.token_ids == want.token_ids, (grammar, extra, prompt, got.text, want.text)
        assert got.finish_reason == want.finish_reason


def test_the_drafts_were_checked(models):
    # (the comparison above means something only where drafts were offered, some taken and some refused)
    drafted, _ = models
    for prompt in PROMPTS:
        for grammar in GRAMMARS.values():
            drafted.generate(prompt, max_tokens=40, temperature=0, grammar=grammar, ignore_eos=True)
    metrics = drafted.metrics()
    assert 0 < metrics["draft_accepted_total"] < metrics["draft_tokens_total"], metrics
