"""The host-memory prompt cache (``cache_ram_mib``, llama-server's ``--cache-ram``; ``cpp/prompt_cache.h``): more
conversations than slots keep their KV caches. A slot taken by another conversation saves its sequence first; a
later prompt that continues a saved one has it copied back and evaluates only the rest — with the very output a
fresh model gives, on a plain llama and on a sliding-window model alike."""

from __future__ import annotations

import pytest

import jan
from jan.testing.gguf_models import write_llama_from_vocab

STORY_A = ("Once upon a time, there was a little girl named Lily. She loved to play in the park with her big red "
           "ball. One day she saw a small bird on the grass.")
STORY_B = "Tom had a toy car. He liked to race it down the hill behind his house every morning after breakfast."
SETTINGS = {"n_ctx": 512, "n_parallel": 1, "n_threads": 1}


def run(model: jan.Model, prompt, n: int = 12) -> tuple[list[int], int]:
    """Greedy ``n`` tokens of ``prompt``: (their ids, the prompt tokens the engine took from a cache)."""
    result = model.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True)
    return result.token_ids, result.usage.cached_tokens


def fresh(path, prompt, n: int = 12, **settings) -> list[int]:
    with jan.Model(path, **{**SETTINGS, **settings}) as model:
        return run(model, prompt, n)[0]


@pytest.mark.parametrize("layout", [{}, {"kv_unified": True}, {"flash_attn": False},
                                    {"cache_type_k": "bf16", "cache_type_v": "f32"},
                                    {"speculative": "ngram"}, {"draft_model": "self"}])
def test_a_conversation_that_lost_its_slot_comes_back_from_host_memory(stories_path, layout):
    """On every KV layout (one buffer for all slots, no flash attention, other element types) and with drafting (the
    draft model's own cache catches up by itself), the saved sequence gives the output a fresh model gives."""
    layout = {k: (stories_path if v == "self" else v) for k, v in layout.items()}
    with jan.Model(stories_path, **SETTINGS, **layout) as model:
        a = model.tokenize(STORY_A)
        first, _ = run(model, a)
        run(model, STORY_B)  # the only slot now holds B: A went to host memory
        again, cached = run(model, a)
        assert again == first
        assert cached == len(a) - 1  # all but the last prompt token, whose logits pick the first token
        # the next turn of A (its prompt, its reply, a new question) also starts from A's saved cache
        follow = a + first + model.tokenize(" Then", add_special=False)
        run(model, STORY_B)
        out, cached = run(model, follow)
        assert cached >= len(a) + len(first) - 1
        assert out == fresh(stories_path, follow, **layout)
        metrics = model.metrics()
        assert metrics["cached_tokens_total"] >= 2 * (len(a) - 1)
        # B's cache went to host memory when A's next turn took the slot: what is held is told
        assert metrics["prompt_cache_prompts"] >= 1 and metrics["prompt_cache_bytes"] > 0


def test_off_the_conversation_is_evaluated_again(stories_path):
    with jan.Model(stories_path, cache_ram_mib=0, **SETTINGS) as model:
        a = model.tokenize(STORY_A)
        first, _ = run(model, a)
        run(model, STORY_B)
        again, cached = run(model, a)
    assert again == first and cached <= 1  # (at most the BOS both prompts start with)


def test_parallel_slots_take_back_their_conversations(stories_path):
    """Eight conversations through two slots, twice over: the second round finds each one saved."""
    words = STORY_A.split()
    prompts = [" ".join(words[i:] + words[:i]) for i in range(0, 32, 4)]  # no two share a start
    with jan.Model(stories_path, **{**SETTINGS, "n_parallel": 2}) as model:
        first = [model.stream(p, max_tokens=8, temperature=0, ignore_eos=True).result() for p in prompts]
        second = [model.stream(p, max_tokens=8, temperature=0, ignore_eos=True).result() for p in prompts]
    assert [r.token_ids for r in second] == [r.token_ids for r in first]
    assert all(r.usage.cached_tokens == r.usage.prompt_tokens - 1 for r in second)


@pytest.mark.parametrize("value", [-2, 1.5, "8192", True])
def test_a_bad_limit_is_a_value_error_naming_it(stories_path, value):
    with pytest.raises((ValueError, TypeError), match="cache_ram_mib"):
        jan.Model(stories_path, cache_ram_mib=value, **SETTINGS)


def test_a_sliding_window_model_restores_its_window(tmp_path, vocab_dir):
    """Gemma 3's layout with a 32-token window: the saved sequence holds the window cache; a prompt continuing
    it is reused where the window before its new tail is there (as a live slot's, ``prefix_reusable``), and gives
    a fresh model's output either way."""
    path = write_llama_from_vocab(tmp_path / "gemma3-swa.gguf", vocab_dir / "ggml-vocab-llama-spm.gguf",
                                  arch="gemma3", sliding_window=32, n_embd=64, n_layer=6, n_head=4, n_head_kv=2,
                                  n_ff=128, n_ctx=4096, seed=3)
    settings = {"n_batch": 64}
    with jan.Model(path, **{**SETTINGS, **settings}) as model:
        a = model.tokenize(STORY_A * 3)
        first, _ = run(model, a, 24)
        run(model, STORY_B)
        # the same prompt again: its window (the saved one holds the last 32 positions, after the reply) is gone
        # from where it ends, so it is evaluated again, as a live slot's would be
        again, cached = run(model, a, 24)
        assert again == first and cached == 0
        # the next turn continues past everything saved: the window before its new tail is there
        follow = a + first + model.tokenize(" And", add_special=False)
        run(model, STORY_B)
        out, cached = run(model, follow)
        assert out == fresh(path, follow, **settings)
        assert cached == len(a) + len(first) - 1


def test_a_prompt_with_an_image_is_not_saved(vision_pair, test_image_path):
    """An image's embeddings are not tokens a later prompt can be matched against: its slot is not saved, and the
    same image prompt later is evaluated again, with the same output."""
    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=1, n_threads=1) as model:
        prompt = f"<|im_start|>user\nWhat is this?\n{model.media_marker}<|im_end|>\n<|im_start|>assistant\n"
        first = model.generate(prompt, images=[test_image_path], max_tokens=6, temperature=0, ignore_eos=True)
        model.generate("<|im_start|>user\nHello<|im_end|>\n", max_tokens=4, temperature=0, ignore_eos=True)
        again = model.generate(prompt, images=[test_image_path], max_tokens=6, temperature=0, ignore_eos=True)
    assert again.token_ids == first.token_ids
    assert again.usage.cached_tokens < 10  # the shared text before the image at most, never the image


@pytest.mark.parametrize("cache_ram_mib", [None, 0])
def test_the_servers_flag_reaches_the_models_it_loads(tmp_path, stories_path, cache_ram_mib):
    """``jan serve --cache-ram`` (ServerConfig.cache_ram_mib): on by default, 0 turns it off."""
    from server_helpers import ok, start_server

    config = {"n_parallel": 1} if cache_ram_mib is None else {"n_parallel": 1, "cache_ram_mib": cache_ram_mib}
    server = start_server(tmp_path, [stories_path], **config)
    try:
        def cached(prompt: str) -> int:
            answer = ok(server, "/v1/completions", {"model": "stories260K", "prompt": prompt, "max_tokens": 4,
                                                    "temperature": 0})
            return (answer["usage"].get("prompt_tokens_details") or {}).get("cached_tokens") or 0

        cached(STORY_A)
        cached(STORY_B)
        again = cached(STORY_A)
    finally:
        server.stop()
    assert (again > 20) if cache_ram_mib is None else (again <= 1)


def test_at_most_256_conversations_are_kept_and_the_oldest_go_first(stories_path):
    """The count bound (``PromptCache::kMaxPrompts``): past it the oldest saved conversation is dropped, the newest
    still come back."""
    import random

    words = (STORY_A + " " + STORY_B).replace(".", "").replace(",", "").split()
    prompts = [" ".join(random.Random(i).sample(words, 10)) for i in range(262)]
    with jan.Model(stories_path, **SETTINGS) as model:
        for p in prompts:
            model.generate(p, max_tokens=1, temperature=0)
        assert model.metrics()["prompt_cache_prompts"] == 256
        newest, oldest = model.tokenize(prompts[-2]), model.tokenize(prompts[0])
        assert run(model, newest, 1)[1] == len(newest) - 1
        assert run(model, oldest, 1)[1] <= 2  # (at most a shared first word)


def test_the_default_limit_is_llama_servers_at_most_a_quarter_of_the_ram():
    from jan import _engine
    from jan.engine.fit import PROMPT_CACHE_MAX_MIB, default_prompt_cache_mib

    ram = sum(int(d["memory_total"]) for d in _engine.system_info()["devices"] if d["type"] == "cpu")
    assert default_prompt_cache_mib() == min(PROMPT_CACHE_MAX_MIB, ram // 4 // 2**20)


def test_threads_after_one_long_system_prompt_keep_their_own_turns(stories_path):
    """Two conversations after the same long system prompt share one slot: each next turn finds its own earlier
    turns, not only the shared prompt (pick_slot counts the other thread as continuing the slot; its tail is saved
    before it is cut)."""
    with jan.Model(stories_path, **SETTINGS) as model:
        system = model.tokenize(STORY_A + " " + STORY_B)
        a = system + model.tokenize(" Lily said hello.", add_special=False)
        b = system + model.tokenize(" Tom ran away.", add_special=False)
        reply_a, _ = run(model, a, 40)
        run(model, b, 40)  # the slot now holds b: a's turn went to host memory
        follow = a + reply_a + model.tokenize(" Then", add_special=False)
        out, cached = run(model, follow)
        assert cached >= len(a) + len(reply_a) - 1
        assert out == fresh(stories_path, follow)


def test_a_retry_of_the_same_prompt_saves_nothing(stories_path):
    """A prompt the slot holds whole (a retry, "regenerate") reuses it and saves nothing: the reply it cuts off is
    seldom asked for again, and copying the sequence would delay the retry's first token."""
    with jan.Model(stories_path, **SETTINGS) as model:
        for _ in range(3):
            _, cached = run(model, STORY_A, 60)
        assert model.metrics()["prompt_cache_prompts"] == 0
    assert cached > 20
