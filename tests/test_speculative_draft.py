"""Speculative decoding with a draft model: the output is exactly plain decoding's.

The target is stories260K (a real model); drafts come from stories260K itself (it agrees with the
target: most drafts are accepted) or from a random-weight llama written with stories260K's
vocabulary (it mostly disagrees: most drafts are rejected). No timing is asserted.
"""

from __future__ import annotations

import pytest

import jan
from jan.testing import gguf_models

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big red ball under a tree.")
PROMPTS = ["Once upon a time", "The cat sat on the", "Tom and Sue went to the park. They", f"{STORY}\n{STORY[:40]}"]


@pytest.fixture(scope="module")
def random_draft_path(tmp_path_factory, stories_path):
    """A random-weight llama sharing stories260K's vocabulary (a draft that mostly disagrees)."""
    return gguf_models.write_llama_from_vocab(tmp_path_factory.mktemp("draft") / "draft.gguf", stories_path,
                                              n_embd=32, n_layer=1, n_head=4, n_ff=64, n_ctx=1024, seed=7,
                                              weight_std=0.5)


@pytest.fixture(scope="module")
def self_drafted(stories_path):
    model = jan.Model(stories_path, n_parallel=4, n_ctx=512, n_threads=1, draft_model=stories_path,
                      draft_p_min=0.0)
    yield model
    model.close()


@pytest.fixture(scope="module")
def random_drafted(stories_path, random_draft_path):
    model = jan.Model(stories_path, n_parallel=4, n_ctx=512, n_threads=1, draft_model=random_draft_path,
                      draft_max=4, draft_p_min=0.0)
    yield model
    model.close()


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("which", ["self_drafted", "random_drafted"])
def test_greedy_output_is_the_same_with_a_draft_model(request, which, prompt):
    model = request.getfixturevalue(which)
    plain = model.generate(prompt, max_tokens=80, temperature=0, speculative="none")
    spec = model.generate(prompt, max_tokens=80, temperature=0)  # the model's default: its draft model
    assert spec.token_ids == plain.token_ids
    assert spec.text == plain.text
    assert spec.finish_reason == plain.finish_reason
    assert plain.usage.draft_tokens == 0
    assert spec.usage.draft_tokens > 0
    assert 0 <= spec.usage.draft_accepted <= spec.usage.draft_tokens


def test_an_agreeing_draft_is_accepted_and_counted(self_drafted):
    prompt = PROMPTS[0]
    plain = self_drafted.generate(prompt, max_tokens=100, temperature=0, speculative="none")
    before = self_drafted.metrics()
    spec = self_drafted.generate(prompt, max_tokens=100, temperature=0, draft_max=8)
    after = self_drafted.metrics()
    assert spec.token_ids == plain.token_ids
    # The draft is the target itself: nearly every drafted token is what the target samples.
    assert spec.usage.draft_accepted > spec.usage.completion_tokens // 2
    assert after["draft_tokens_total"] - before["draft_tokens_total"] == spec.usage.draft_tokens
    assert after["draft_accepted_total"] - before["draft_accepted_total"] == spec.usage.draft_accepted
    # Accepted drafts are emitted without a target decode step of their own.
    steps = after["decode_calls"] - before["decode_calls"]
    assert steps <= spec.usage.completion_tokens - spec.usage.draft_accepted + 1


def test_concurrent_requests_with_a_draft_model_match_plain(random_drafted, self_drafted):
    for model in (random_drafted, self_drafted):
        plain = [model.generate(p, max_tokens=50, temperature=0, speculative="none").token_ids for p in PROMPTS]
        handles = [model.stream(p, max_tokens=50, temperature=0) for p in PROMPTS]
        assert [h.result().token_ids for h in handles] == plain


def test_max_tokens_stop_strings_and_seeded_sampling_hold(self_drafted):
    prompt = PROMPTS[3]
    plain = self_drafted.generate(prompt, max_tokens=7, temperature=0, speculative="none")
    spec = self_drafted.generate(prompt, max_tokens=7, temperature=0, draft_max=16)
    assert spec.token_ids == plain.token_ids and len(spec.token_ids) <= 7
    long = self_drafted.generate(prompt, max_tokens=60, temperature=0, speculative="none")
    stop = long.text[10:14]
    plain = self_drafted.generate(prompt, max_tokens=60, temperature=0, stop=[stop], speculative="none")
    spec = self_drafted.generate(prompt, max_tokens=60, temperature=0, stop=[stop])
    assert spec.text == plain.text and spec.finish_reason == plain.finish_reason == "stop"
    opts = dict(max_tokens=60, temperature=0.9, seed=99, top_k=0, top_p=1.0, min_p=0.0)
    assert (self_drafted.generate(prompt, **opts).token_ids ==
            self_drafted.generate(prompt, **opts, speculative="none").token_ids)


def test_ngram_drafting_still_works_on_a_model_with_a_draft_model(random_drafted):
    prompt = PROMPTS[3]
    plain = random_drafted.generate(prompt, max_tokens=60, temperature=0, speculative="none")
    spec = random_drafted.generate(prompt, max_tokens=60, temperature=0, speculative="ngram", ngram=2)
    assert spec.token_ids == plain.token_ids


def test_a_random_target_with_a_random_draft_sharing_its_vocabulary(tmp_path, vocab_dir):
    target = gguf_models.write_phi3_chat_model(tmp_path / "target.gguf", seed=1)
    draft = gguf_models.write_llama_from_vocab(tmp_path / "draft.gguf", gguf_models.vocab_path(gguf_models.PHI3_VOCAB),
                                               n_embd=32, n_layer=1, n_head=2, n_ff=64, n_ctx=1024, seed=2)
    with jan.Model(target, n_ctx=256, n_threads=1, draft_model=draft, draft_p_min=0.0) as model:
        plain = model.generate("Hello there, how are", max_tokens=40, temperature=0, ignore_eos=True,
                               speculative="none")
        spec = model.generate("Hello there, how are", max_tokens=40, temperature=0, ignore_eos=True)
        assert spec.token_ids == plain.token_ids
        assert spec.usage.draft_tokens > 0
        assert model.draft_kv_cache_bytes > 0


def test_a_draft_model_with_another_vocabulary_is_refused(tmp_path, stories_path, vocab_dir):
    other = gguf_models.write_phi3_chat_model(tmp_path / "phi3.gguf")
    with pytest.raises(ValueError, match="draft_model: .*(vocabular|tokenizer|special tokens)"):
        jan.Model(stories_path, n_ctx=256, n_threads=1, draft_model=other)


def test_draft_speculation_without_a_draft_model_is_a_value_error(stories, stories_path):
    with pytest.raises(ValueError, match="draft"):
        stories.generate("Once", max_tokens=2, speculative="draft")
    with pytest.raises(ValueError, match="draft_model"):
        jan.Model(stories_path, n_ctx=256, n_threads=1, speculative="draft")


def test_a_missing_draft_model_file_is_a_model_file_error(tmp_path, stories_path):
    with pytest.raises(jan.ModelFileError, match="draft model"):
        jan.Model(stories_path, n_ctx=256, n_threads=1, draft_model=tmp_path / "nope.gguf")
