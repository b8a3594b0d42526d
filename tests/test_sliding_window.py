"""Sliding-window attention models (Gemma 2/3, gpt-oss, ...): a window-size KV cache, and a slot's prefix
reused only while the window before it is still cached.

The model is a tiny random-weight Gemma 3 (llama.cpp's ``gemma3``) with the llama tokenizer and a 32-token
window on five of its six layers. Whatever a slot served before, a prompt's greedy output is the one a
fresh model gives it.
"""

from __future__ import annotations

import pytest

import jan
from jan.testing.gguf_models import write_llama_from_vocab

WINDOW = 32
STORY = ("Lily and Tom went to the park with their dog Max. They played with a red ball, ran around the big tree "
         "and sat on a bench to eat apples. ") * 8  # ~300 tokens: more than the window cache's cells
# A small ubatch keeps the window cache small (window + ubatch, padded), so a long slot overwrites its oldest cells.
SETTINGS = {"n_ctx": 1024, "n_batch": 64, "n_threads": 1}


@pytest.fixture(scope="module")
def gemma3_swa(tmp_path_factory, vocab_dir):
    return write_llama_from_vocab(tmp_path_factory.mktemp("swa") / "gemma3-swa.gguf",
                                  vocab_dir / "ggml-vocab-llama-spm.gguf", arch="gemma3", sliding_window=WINDOW,
                                  n_embd=64, n_layer=6, n_head=4, n_head_kv=2, n_ff=128, n_ctx=4096, seed=3)


def greedy(model: jan.Model, prompt: str, n: int = 12) -> list[int]:
    return model.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True).token_ids


def fresh(path, prompt: str) -> list[int]:
    with jan.Model(path, **SETTINGS) as model:
        return greedy(model, prompt)


def test_prefix_reuse_follows_the_window(gemma3_swa):
    """Same slot, three follow-ups: a prefix that ends where the window is cached (reused), one whose window
    was forgotten long ago (evaluated again from the start), and the same prompt again."""
    with jan.Model(gemma3_swa, **SETTINGS) as model:
        first = STORY + "Then"
        greedy(model, first, 64)  # the slot now holds ~370 positions; the window layers only the last ones
        reused = []
        for follow_up in (first + " the dog barked", STORY[:60] + " Suddenly it rained", first):
            before = model.metrics()["cached_tokens_total"]
            assert greedy(model, follow_up) == fresh(gemma3_swa, follow_up), follow_up
            reused.append(model.metrics()["cached_tokens_total"] - before)
    assert reused[0] > 200  # the window before the new tail was still cached: the prefix was kept
    assert reused[1] == 0  # its window was overwritten long ago: evaluated again from the start


def test_window_cache_is_small_and_serves_parallel_slots(gemma3_swa):
    """Four slots with long prompts at once: each answers as a fresh model would."""
    prompts = [f"{STORY} Story {i}:" for i in range(4)]
    with jan.Model(gemma3_swa, n_parallel=4, **SETTINGS) as model:
        requests = [model.stream(p, max_tokens=12, temperature=0, ignore_eos=True) for p in prompts]
        outputs = [r.result().token_ids for r in requests]
    assert outputs == [fresh(gemma3_swa, p) for p in prompts]
