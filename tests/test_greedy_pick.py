"""Greedy sampling without the sampler chain: at temperature 0 with nothing before greedy but ignore_eos (no logit
bias, grammar, penalties nor thinking budget), the engine picks the token from the logits itself
(cpp/sampling.cpp: greedy_pick) instead of filling a candidate per vocabulary token and passing them through
llama.cpp's samplers, every step. The pick must be the chain's: compared here with the same request given a logit
bias of 0 (which changes no logit but sends it through the chain) — the tokens, text, stop strings, finish reasons,
logprobs and usage counts — on stories260K (real weights, a 512-token vocabulary) and on Qwen2's 151k-token
vocabulary with random weights — there also with ignore_eos banning an end of generation the model picks (a copy whose
EOS is a token greedy writes), where the ban changes the pick."""

from __future__ import annotations

import pytest

import jan
from jan.testing.gguf_models import QWEN2_VOCAB, TINY_CHAT_CONFIG, vocab_path, write_llama_from_vocab

PROMPTS = ("Once upon a time", "Lily and Ben went to the park. They saw a big")
# a bias of 0 on <unk>: the same logits, through the chain (logit bias, ignore_eos, greedy)
THROUGH_CHAIN = {"logit_bias": {0: 0.0}}


def _same_run(model, prompt, **kw):
    """``generate`` after the same prompt was evaluated once, so that every compared run reuses the same cached prefix
    and evaluates the same last prompt token alone: their logits agree to the bit."""
    model.generate(prompt, max_tokens=1, temperature=0)
    return model.generate(prompt, temperature=0, **kw)


def _assert_same(fast, chain):
    assert fast.token_ids == chain.token_ids
    assert fast.text == chain.text
    assert fast.finish_reason == chain.finish_reason
    assert fast.stop == chain.stop
    assert fast.usage.completion_tokens == chain.usage.completion_tokens
    assert fast.usage.prompt_tokens == chain.usage.prompt_tokens
    if chain.logprobs is None:
        assert fast.logprobs is None
    else:
        assert [(lp.token_id, lp.logprob, [(t.token_id, t.logprob) for t in lp.top]) for lp in fast.logprobs] == \
               [(lp.token_id, lp.logprob, [(t.token_id, t.logprob) for t in lp.top]) for lp in chain.logprobs]


OPTIONS = {
    "plain": {},
    "logprobs": {"logprobs": True, "top_logprobs": 3},
    "post_sampling": {"logprobs": True, "top_logprobs": 2, "post_sampling_probs": True},
}


@pytest.mark.parametrize("ignore_eos", [False, True], ids=["eos", "ignore_eos"])
@pytest.mark.parametrize("option", OPTIONS, ids=list(OPTIONS))
def test_the_greedy_pick_is_the_chains(stories, option, ignore_eos):
    for prompt in PROMPTS:
        kw = dict(max_tokens=300, ignore_eos=ignore_eos, **OPTIONS[option])
        fast = _same_run(stories, prompt, **kw)
        chain = _same_run(stories, prompt, **kw, **THROUGH_CHAIN)
        _assert_same(fast, chain)


def test_stop_strings_and_streamed_text_are_the_chains(stories):
    prompt = PROMPTS[0]
    whole = _same_run(stories, prompt, max_tokens=60)
    stop = whole.text[len(whole.text) // 2:][:6]  # a string the greedy text holds past its start
    assert stop.strip()
    fast = _same_run(stories, prompt, max_tokens=60, stop=[stop])
    chain = _same_run(stories, prompt, max_tokens=60, stop=[stop], **THROUGH_CHAIN)
    assert fast.stop == stop and fast.finish_reason == "stop"
    _assert_same(fast, chain)
    stories.generate(prompt, max_tokens=1, temperature=0)
    streamed = "".join(chunk.text for chunk in stories.stream(prompt, max_tokens=60, temperature=0, stop=[stop]))
    assert streamed == chain.text


def _qwen(path, **extra_kv):
    """The tiny random-weight model of Qwen2's vocabulary (the same weights for every call: one seed)."""
    return write_llama_from_vocab(path, vocab_path(QWEN2_VOCAB), **TINY_CHAT_CONFIG, dtype="f32", seed=5,
                                  extra_kv=extra_kv or None)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    if not vocab_path(QWEN2_VOCAB).exists():
        pytest.skip(f"the Qwen2 vocabulary ({vocab_path(QWEN2_VOCAB)}) is not in ../shared/models/vocab")
    return tmp_path_factory.mktemp("greedy")


@pytest.mark.parametrize("ignore_eos", [False, True], ids=["eos", "ignore_eos"])
def test_the_greedy_pick_is_the_chains_on_a_large_vocabulary(qwen_dir, ignore_eos):
    with jan.Model(_qwen(qwen_dir / "qwen.gguf"), n_ctx=256, n_parallel=1, n_threads=1) as model:
        for prompt in ("The quick brown fox", "Numbers: 1, 2,"):
            kw = dict(max_tokens=40, ignore_eos=ignore_eos, logprobs=True, top_logprobs=2)
            _assert_same(_same_run(model, prompt, **kw), _same_run(model, prompt, **kw, **THROUGH_CHAIN))


def test_ignore_eos_bans_an_end_the_model_picks_as_the_chain_does(qwen_dir):
    prompt = "The quick brown fox"
    with jan.Model(_qwen(qwen_dir / "qwen.gguf"), n_ctx=256, n_parallel=1, n_threads=1) as model:
        free = model.generate(prompt, max_tokens=40, temperature=0).token_ids
    end = free[5]  # a token greedy writes: made the end of generation of a copy with the same weights
    cut = free.index(end)
    with jan.Model(_qwen(qwen_dir / "ends.gguf", **{"tokenizer.ggml.eos_token_id": end}), n_ctx=256, n_parallel=1,
                   n_threads=1) as model:
        ended = _same_run(model, prompt, max_tokens=40)
        assert ended.finish_reason == "stop" and ended.token_ids == free[:cut]
        kw = dict(max_tokens=40, ignore_eos=True, logprobs=True, top_logprobs=2)
        fast = _same_run(model, prompt, **kw)
        chain = _same_run(model, prompt, **kw, **THROUGH_CHAIN)
        assert fast.finish_reason == "length" and end not in fast.token_ids
        assert fast.token_ids[:cut] == free[:cut] and fast.token_ids[cut] != end
        _assert_same(fast, chain)
