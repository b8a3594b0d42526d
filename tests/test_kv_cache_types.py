"""KV cache element types (cache_type_k / cache_type_v) load, generate and shrink the cache."""

from __future__ import annotations

import pytest

import jan
from jan.services.types import LoadOptions, resolve_load
from jan.testing import gguf_models as gm

from conftest import require_model

FLOAT_TYPES = [("f16", "f16"), ("f32", "f32"), ("bf16", "bf16"), ("f16", "f32")]
QUANT_TYPES = [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q4_0"), ("q4_1", "q5_0")]


@pytest.fixture(scope="module")
def head32_path(tmp_path_factory):
    """A random-weight llama with 32-wide heads: quantized KV blocks hold 32 values, and
    stories260K's heads are 8 wide (llama.cpp refuses quantized K/V there)."""
    vocab = require_model("vocab", "ggml-vocab-llama-spm.gguf")
    return gm.write_llama_from_vocab(tmp_path_factory.mktemp("kv") / "head32.gguf", vocab, n_embd=64, n_layer=2,
                                     n_head=2, n_ff=64, n_ctx=512)


def _load_and_generate(path, type_k, type_v):
    model = jan.Model(path, n_ctx=256, n_threads=1, cache_type_k=type_k, cache_type_v=type_v)
    try:
        out = model.generate("Once upon a time", max_tokens=20, temperature=0, ignore_eos=True)
        assert out.usage.completion_tokens == 20
        assert model.kv_cache_bytes > 0
    finally:
        model.close()


@pytest.mark.parametrize("type_k,type_v", FLOAT_TYPES)
def test_float_kv_cache_types_load_and_generate_on_stories(stories_path, type_k, type_v):
    _load_and_generate(stories_path, type_k, type_v)


@pytest.mark.parametrize("type_k,type_v", QUANT_TYPES)
def test_quantized_kv_cache_types_load_and_generate(head32_path, type_k, type_v):
    _load_and_generate(head32_path, type_k, type_v)


def test_quantized_kv_cache_on_too_narrow_heads_is_a_clear_value_error(stories_path):
    with pytest.raises(ValueError, match="head size 8"):
        jan.Model(stories_path, n_ctx=256, n_threads=1, cache_type_k="q8_0")


def test_kv_cache_size_shrinks_with_quantized_types(head32_path):
    sizes = {}
    for t in ("f32", "f16", "q8_0", "q4_0"):
        model = jan.Model(head32_path, n_ctx=256, n_threads=1, cache_type_k=t, cache_type_v=t)
        sizes[t] = model.kv_cache_bytes
        model.close()
    assert sizes["f32"] == 2 * sizes["f16"]
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"] > 0
    # q8_0 stores 32 values in 34 bytes, f16 in 64.
    assert sizes["q8_0"] * 64 == sizes["f16"] * 34


def test_kv_cache_size_matches_the_model_shape(stories_path):
    model = jan.Model(stories_path, n_ctx=256, n_parallel=2, n_threads=1)
    try:
        info = model.info
        n_head = int(info.metadata["llama.attention.head_count"])
        n_head_kv = int(info.metadata.get("llama.attention.head_count_kv", n_head))
        cells = model.n_ctx * model.n_parallel
        expected = info.n_layer * cells * 2 * (info.n_embd // n_head) * n_head_kv * 2  # K and V, 2 bytes each
        assert model.kv_cache_bytes == expected
    finally:
        model.close()


def test_quantized_v_cache_without_flash_attention_is_a_value_error(head32_path):
    with pytest.raises(ValueError, match="flash attention"):
        jan.Model(head32_path, n_ctx=256, n_threads=1, cache_type_v="q8_0", flash_attn=False)


@pytest.mark.parametrize("bad", ["q3_k", "fp16", 8])
def test_unknown_kv_cache_type_is_a_value_error(stories_path, bad):
    with pytest.raises(ValueError, match="cache_type_k"):
        jan.Model(stories_path, n_ctx=256, n_threads=1, cache_type_k=bad)


def test_load_options_take_cache_types_from_model_json_with_f16_default():
    opts = resolve_load(LoadOptions.from_model_settings({"cache_type_k": "q8_0", "ctx_len": 512}))
    assert (opts.cache_type_k, opts.cache_type_v) == ("q8_0", "f16")
    assert resolve_load().given()["cache_type_v"] == "f16"


def test_registry_status_reports_kv_cache_bytes(head32_path):
    pool = jan.ModelPool()
    try:
        pool.load("s", str(head32_path), n_ctx=256, n_threads=1, cache_type_k="q8_0", cache_type_v="q8_0")
        status = pool.status()["s"]
        assert status["kv_cache_bytes"] == pool.get("s").kv_cache_bytes > 0
        assert status["memory_bytes"] > 0
    finally:
        pool.close()


def test_the_status_tells_the_cache_types_and_the_speculative_mode_the_model_loaded_with(head32_path, stories_path,
                                                                                       tmp_path):
    """The status (the server's /v1/system) told the KV cache's size but not its types, nor whether the model's
    requests draft by default: which of a model.json, a flag and the default gave them could not be seen. Both are
    told, as loaded (lower case, f16 by default; None for a model without a generation context)."""
    import asyncio

    from api_helpers import Client, running

    pool = jan.ModelPool()
    try:
        pool.load("q", str(head32_path), n_ctx=256, n_threads=1, cache_type_k="Q8_0", cache_type_v="q4_0")
        pool.load("plain", str(stories_path), n_ctx=256, n_threads=1)
        pool.load("drafted", str(stories_path), n_ctx=256, n_threads=1, draft_model=str(stories_path))
        pool.load("ngram", str(stories_path), n_ctx=256, n_threads=1, speculative=True)
        status = pool.status()
        told = {mid: (s["cache_type_k"], s["cache_type_v"], s["speculative"]) for mid, s in status.items()}
        assert told == {"q": ("q8_0", "q4_0", "none"), "plain": ("f16", "f16", "none"),
                        "drafted": ("f16", "f16", "draft"), "ngram": ("f16", "f16", "ngram")}, told
    finally:
        pool.close()

    async def system(base_url: str) -> dict:
        async with Client(base_url) as api:
            await api.ok("POST", "/v1/models/stories260K/start")
            return {m["id"]: m for m in (await api.ok("GET", "/v1/system"))["models"]}

    with running(tmp_path / "data", stories_path, cache_type_k="f32", speculative="ngram") as srv:
        model = asyncio.run(system(srv.base_url))["stories260K"]
        assert (model["cache_type_k"], model["cache_type_v"], model["speculative"]) == ("f32", "f16", "ngram"), model
