"""The context size chosen to fit free memory when none is given (as llama-server's --fit).

Free memory is faked (``jan.engine.model.free_memory_bytes``), so these hold on any machine.
"""

from __future__ import annotations

import pytest

import jan
import jan.engine.model as model_module
from jan.engine.fit import CTX_STEP, HEADROOM_BYTES, MIN_FIT_CTX, fit_n_ctx
from jan.testing import gguf_models

MIB = 1024 * 1024


def test_the_wanted_context_is_kept_when_it_fits():
    fit = fit_n_ctx(4096, 4, 1000.0, HEADROOM_BYTES + 4096 * 4 * 1000)
    assert fit.n_ctx == 4096 and not fit.fitted and fit.kv_bytes == 4096 * 4 * 1000


def test_a_context_that_does_not_fit_shrinks_to_a_multiple_of_the_step():
    fit = fit_n_ctx(4096, 4, 1000.0, HEADROOM_BYTES + 1500 * 4 * 1000)
    assert fit.fitted and fit.n_ctx == 1280 and fit.n_ctx % CTX_STEP == 0
    assert fit.kv_bytes <= 1500 * 4 * 1000


def test_too_little_memory_for_the_smallest_context_is_a_load_error():
    with pytest.raises(jan.ModelLoadError, match="not enough free memory for the KV cache"):
        fit_n_ctx(4096, 4, 1000.0, HEADROOM_BYTES + (MIN_FIT_CTX - 1) * 4 * 1000)
    with pytest.raises(jan.ModelLoadError):
        fit_n_ctx(4096, 1, 1000.0, HEADROOM_BYTES // 2)


@pytest.fixture(scope="module")
def trained_2048(tmp_path_factory, vocab_dir):
    """A tiny random-weight llama trained (so its metadata says) on 2048 tokens."""
    return gguf_models.write_phi3_chat_model(tmp_path_factory.mktemp("fit") / "tiny.gguf")


def test_a_model_loads_with_the_context_that_fits(trained_2048, monkeypatch):
    with jan.Model(trained_2048, n_parallel=2, n_threads=1, vocab_only=True) as probe:
        pass
    native = jan.Model(trained_2048, n_ctx=64, n_threads=1)
    per_cell = native._native.kv_cache_bytes(1)
    native.close()
    # Room for 1100 tokens per slot: the 2048 the model was trained on do not fit, 1024 do.
    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: HEADROOM_BYTES + 1100 * 2 * per_cell)
    with jan.Model(trained_2048, n_parallel=2, n_threads=1, n_gpu_layers=0) as model:
        assert model.context_fit is not None and model.context_fit.fitted
        assert model.context_fit.wanted == 2048
        assert model.n_ctx == 1024
        assert model.kv_cache_bytes == 1024 * 2 * per_cell
        assert model.generate("Hello", max_tokens=4, temperature=0).usage.completion_tokens > 0
    assert probe.context_fit is None  # vocab-only: no context at all


def test_plenty_of_memory_keeps_the_default_and_an_explicit_n_ctx_is_never_changed(trained_2048, monkeypatch):
    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: 64 * 1024 * MIB)
    with jan.Model(trained_2048, n_threads=1, n_gpu_layers=0) as model:
        assert model.n_ctx == 2048 and not model.context_fit.fitted
    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: 0)
    with jan.Model(trained_2048, n_ctx=512, n_threads=1, n_gpu_layers=0) as model:
        assert model.n_ctx == 512 and model.context_fit is None
    with pytest.raises(jan.ModelLoadError, match="n_ctx"):
        jan.Model(trained_2048, n_threads=1, n_gpu_layers=0)


def test_the_draft_models_cache_counts_in_the_fit(trained_2048, monkeypatch):
    native = jan.Model(trained_2048, n_ctx=64, n_threads=1)
    per_cell = native._native.kv_cache_bytes(1)
    native.close()
    # Room for 1100 tokens of the target alone: with a same-sized draft model, only 512 fit.
    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: HEADROOM_BYTES + 1100 * per_cell)
    with jan.Model(trained_2048, n_threads=1, draft_model=trained_2048, n_gpu_layers=0) as model:
        assert model.n_ctx == 512
        assert model.kv_cache_bytes + model.draft_kv_cache_bytes == 512 * 2 * per_cell
