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


def test_no_room_for_the_smallest_fitted_context_is_the_settings_400(stories_path, monkeypatch, tmp_path):
    """A model loaded without a context whose smallest fitted one (256 tokens) has no room in the free memory was a
    500 ``model_load_failed`` advising "a smaller n_ctx", a name no HTTP client or command line takes; it is the
    context setting's 400 ``context_too_large`` (as an explicit context too large for the free memory is), advising
    the setting as each dialect names it, and still a ModelLoadError in the library."""
    import asyncio

    from api_helpers import Client, running

    from jan.errors import ContextFitError, ModelSettingError

    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: HEADROOM_BYTES // 2)
    with pytest.raises(ContextFitError, match=r"set n_ctx below 256, or use fewer slots") as caught:
        jan.Model(stories_path, n_threads=1, n_gpu_layers=0)
    assert isinstance(caught.value, jan.ModelLoadError) and isinstance(caught.value, ModelSettingError)
    assert caught.value.code == "context_too_large"
    hello = [{"role": "user", "content": "Once upon a time"}]

    assert "set -c/--ctx-size below 256" in caught.value.message({"ctx_len": "-c/--ctx-size"})  # (jan run, serve)

    async def probe(base_url: str) -> None:
        async with Client(base_url) as api:
            await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "stories260K", "mode": "reference"},
                         201)
            status, err = await api.post("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2,
                                                                  "messages": hello})
            assert status == 400 and err["error"]["code"] == "context_too_large", err
            assert "set ctx_len below 256" in err["error"]["message"] and "n_ctx" not in err["error"]["message"], err
            status, err = await api.post("/api/chat", {"model": "stories260K", "stream": False, "messages": hello})
            assert status == 400 and "set num_ctx below 256" in err["error"], err
            status, err = await api.post("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": hello})
            assert status == 400 and err["type"] == "error" and "below 256" in err["error"]["message"], err
            status, err = await api.post("/completion", {"model": "stories260K", "prompt": "Once", "n_predict": 2})
            assert status == 400 and "below 256" in err["error"]["message"], err

    with running(tmp_path / "data", n_ctx=None) as srv:  # (no context given: fitted)
        asyncio.run(probe(srv.base_url))


def test_a_fitted_context_is_said_and_shown_in_the_status(trained_2048, monkeypatch, caplog):
    """A default context shrunk to the free memory was chosen without a word: the log says it (with the context
    wanted and how to choose one) and the pool's status (the server's /v1/system) carries n_ctx_fitted_from."""
    import logging

    native = jan.Model(trained_2048, n_ctx=64, n_threads=1)
    per_cell = native._native.kv_cache_bytes(1)
    native.close()
    monkeypatch.setattr(model_module, "free_memory_bytes", lambda: HEADROOM_BYTES + 1100 * 2 * per_cell)
    pool = jan.ModelPool()
    try:
        with caplog.at_level(logging.WARNING, logger="jan.engine"):
            pool.load("fitted", trained_2048, n_parallel=2, n_threads=1, n_gpu_layers=0)
        said = [r.getMessage() for r in caplog.records if "context fitted" in r.getMessage()]
        free = (HEADROOM_BYTES + 1100 * 2 * per_cell) / MIB
        assert said == ["fitted: context fitted to 1024 tokens a slot, not the 2048 wanted, for the KV cache of 2 "
                        f"slot(s) to fit the {free:.0f} MiB of memory free; give a context size (n_ctx, ctx_len, -c) "
                        "to choose one"], said
        status = pool.status()["fitted"]
        assert status["n_ctx"] == 1024 and status["n_ctx_fitted_from"] == 2048, status
        monkeypatch.setattr(model_module, "free_memory_bytes", lambda: 64 * 1024 * MIB)
        pool.load("roomy", trained_2048, n_threads=1, n_gpu_layers=0)
        assert pool.status()["roomy"]["n_ctx_fitted_from"] is None
    finally:
        pool.close()
