"""Speculative decoding with n-gram (prompt lookup) drafts: the output is exactly plain decoding's.

No timing is asserted: the drafts only have to be verified and accepted, never to be faster here.
"""

from __future__ import annotations

import pytest

import jan

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big red ball under a tree.")
# A prompt-copying task: the text, then the start of it again, so continuing means copying.
COPY_PROMPT = f"{STORY}\n{STORY}\n{STORY[:40]}"
PROMPTS = ["Once upon a time", "The cat sat on the", "Tom and Sue went to the park. They", COPY_PROMPT]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_output_is_the_same_with_and_without_drafts(stories, prompt):
    plain = stories.generate(prompt, max_tokens=120, temperature=0)
    spec = stories.generate(prompt, max_tokens=120, temperature=0, speculative="ngram", draft_max=8, ngram=2)
    assert spec.token_ids == plain.token_ids
    assert spec.text == plain.text
    assert spec.finish_reason == plain.finish_reason
    assert plain.usage.draft_tokens == 0


def test_copying_task_accepts_drafts_and_reports_them(stories_path):
    model = jan.Model(stories_path, n_ctx=1024, n_threads=1, speculative="ngram", draft_max=8, ngram=2)
    try:
        plain = model.generate(COPY_PROMPT, max_tokens=150, temperature=0, speculative="none")
        before = model.metrics()
        spec = model.generate(COPY_PROMPT, max_tokens=150, temperature=0)  # the model's default: ngram
        assert spec.token_ids == plain.token_ids
        assert spec.usage.draft_tokens > 0
        assert 0 < spec.usage.draft_accepted <= spec.usage.draft_tokens
        assert spec.usage.completion_tokens == plain.usage.completion_tokens
        m = model.metrics()
        assert m["draft_tokens_total"] == spec.usage.draft_tokens
        assert m["draft_accepted_total"] == spec.usage.draft_accepted
        # Accepted drafts are emitted without a decode step of their own.
        steps = m["decode_calls"] - before["decode_calls"]
        assert steps <= spec.usage.completion_tokens - spec.usage.draft_accepted + 1
    finally:
        model.close()


def test_seeded_sampling_is_the_same_with_drafts(stories):
    # A draft is accepted only when the sampled token equals it, so the same seed draws the same tokens.
    opts = dict(max_tokens=80, temperature=0.9, seed=1234, top_k=0, top_p=1.0, min_p=0.0)
    plain = stories.generate(COPY_PROMPT, **opts)
    spec = stories.generate(COPY_PROMPT, **opts, speculative="ngram", draft_max=6, ngram=2)
    assert spec.token_ids == plain.token_ids


def test_max_tokens_and_stop_strings_hold_with_drafts(stories):
    plain = stories.generate(COPY_PROMPT, max_tokens=7, temperature=0)
    spec = stories.generate(COPY_PROMPT, max_tokens=7, temperature=0, speculative=True, draft_max=16, ngram=1)
    assert spec.token_ids == plain.token_ids and len(spec.token_ids) <= 7
    long = stories.generate(COPY_PROMPT, max_tokens=60, temperature=0)
    stop = long.text[10:14]
    plain = stories.generate(COPY_PROMPT, max_tokens=60, temperature=0, stop=[stop])
    spec = stories.generate(COPY_PROMPT, max_tokens=60, temperature=0, stop=[stop], speculative="ngram", ngram=1)
    assert spec.text == plain.text and spec.finish_reason == plain.finish_reason == "stop"


def test_concurrent_speculative_requests_match_plain(stories):
    plain = [stories.generate(p, max_tokens=60, temperature=0).token_ids for p in PROMPTS]
    handles = [stories.stream(p, max_tokens=60, temperature=0, speculative="ngram", ngram=2) for p in PROMPTS]
    assert [h.result().token_ids for h in handles] == plain


@pytest.mark.parametrize("bad", [dict(speculative="eagle"), dict(speculative="ngram", draft_max=-1),
                                 dict(speculative="ngram", ngram=0)])
def test_bad_speculative_options_raise_value_error(stories, bad):
    with pytest.raises(ValueError):
        stories.generate("Once", max_tokens=2, **bad)
