"""``n_gpu_layers="auto"`` (the default; llama-server's ``-ngl auto``): as many layers on the GPU as its free memory
holds, none without a GPU (:mod:`jan.engine.offload`), and a default context fitted to both memories
(:mod:`jan.engine.fit`). This machine has no GPU: the plans are checked on numbers and on a GPU device added to what
llama.cpp reports (llama.cpp itself then offloads nothing, having no such device)."""

from __future__ import annotations

import click
import pytest

import jan
from jan import _engine
from jan.cli.common import GpuLayers
from jan.engine.header import read_info
from jan.engine.kv_cache import kv_bytes_per_cell
from jan.engine.offload import (GPU_HEADROOM_BYTES, compute_buffer_bytes, gpu_free_bytes, kv_gpu_share,
                                plan_offload)

MIB = 1024 * 1024
GIB = 1024 * MIB
LAYERS = {"layers": [100 * MIB] * 10, "output": 50 * MIB, "token_embd": 40 * MIB, "other": 0, "output_tied": False}


def gpu(free: int, total: int | None = None) -> dict:
    return {"name": "CUDA0", "description": "test GPU", "type": "gpu", "memory_free": free,
            "memory_total": total or free}


def plan(layers=LAYERS, *, kv=0, free=0, n_gpus=1, offload=True, n_vocab=32000, n_ubatch=512):
    devices = [{"type": "cpu", "memory_free": 64 * GIB, "memory_total": 64 * GIB}]
    devices += [gpu(free) for _ in range(n_gpus)]
    return plan_offload(layers, kv_bytes=kv, n_layer=len(layers["layers"]), n_vocab=n_vocab, n_ubatch=n_ubatch,
                        devices=devices, gpu_offload=offload)


def spare(n_ubatch=512, n_vocab=32000) -> int:
    """What a GPU loses beside the model: the headroom and the compute buffers."""
    return GPU_HEADROOM_BYTES + compute_buffer_bytes(n_vocab, n_ubatch)


def test_no_gpu_no_offload():
    assert plan(free=80 * GIB, n_gpus=0).n_gpu_layers == 0
    assert plan(free=80 * GIB, offload=False).n_gpu_layers == 0  # a CPU build, even beside a GPU


def test_everything_that_fits_goes_to_the_gpu():
    whole = 10 * 100 * MIB + 50 * MIB + 300 * MIB
    p = plan(kv=300 * MIB, free=whole + spare())
    assert p.n_gpu_layers == -1 and p.gpu_bytes == whole
    assert "all 10 layers" in p.reason


def test_what_does_not_fit_stays_on_the_cpu_from_the_first_layer_on():
    # the output layer, then the last layers, each with its share of the cache (30 MiB of 300)
    p = plan(kv=300 * MIB, free=50 * MIB + 3 * 130 * MIB + 10 * MIB + spare())
    assert p.n_gpu_layers == 4  # llama.cpp: the output layer and the last 3 repeating layers
    assert p.gpu_bytes == 50 * MIB + 3 * 130 * MIB
    assert "3 of 10 layers" in p.reason


def test_a_gpu_too_small_for_the_output_layer_takes_nothing():
    assert plan(free=40 * MIB + spare()).n_gpu_layers == 0
    assert plan(free=GIB // 2).n_gpu_layers == 0  # less than the headroom itself


def test_tied_embeddings_are_copied_to_the_output_layer():
    tied = {**LAYERS, "output": 1 * MIB, "output_tied": True}  # output_norm only: the output reads token_embd
    assert plan(tied, free=1 * MIB + 40 * MIB + 1000 * MIB + spare()).n_gpu_layers == -1
    assert plan(tied, free=1 * MIB + 40 * MIB + 999 * MIB + spare()).n_gpu_layers == 10


def test_gpus_add_up_each_less_its_headroom():
    free, n = gpu_free_bytes([gpu(3 * GIB), gpu(2 * GIB), {"type": "cpu", "memory_free": 99 * GIB}])
    assert (free, n) == (5 * GIB - 2 * GPU_HEADROOM_BYTES, 2)
    assert gpu_free_bytes([gpu(GIB // 2)]) == (0, 1)


def test_the_logits_of_a_big_vocabulary_count():
    assert compute_buffer_bytes(262144, 512) - compute_buffer_bytes(32000, 512) == 4 * (262144 - 32000) * 512
    small = plan(free=1050 * MIB + spare(n_vocab=32000), n_vocab=32000)
    big = plan(free=1050 * MIB + spare(n_vocab=32000), n_vocab=262144)
    assert small.n_gpu_layers == -1
    assert big.n_gpu_layers == 6  # 450 MiB of logits: the output layer and 5 of 10 layers left


@pytest.mark.parametrize("n_gpu_layers, share", [(0, 0.0), (1, 0.0), (2, 0.1), (11, 1.0), (99, 1.0), (-1, 1.0)])
def test_the_kv_cache_follows_its_layers(n_gpu_layers, share):
    assert kv_gpu_share(n_gpu_layers, 10) == pytest.approx(share)


def test_the_file_tells_its_layers(stories_path):
    sizes = _engine.gguf_layer_bytes(str(stories_path))
    with jan.Model(stories_path, n_ctx=64) as model:
        assert len(sizes["layers"]) == model.info.n_layer
        # every tensor is counted once: the sum is the weights llama.cpp loads
        assert sum(sizes["layers"]) + sizes["output"] + sizes["token_embd"] + sizes["other"] == model.info.size_bytes
    assert sizes["output_tied"] is False and sizes["output"] > 0


def test_a_file_that_is_no_gguf_is_an_error(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(RuntimeError, match="x.gguf"):
        _engine.gguf_layer_bytes(str(bad))


# -- jan.Model ----------------------------------------------------------------------------------------------
def test_auto_is_the_default_and_offloads_nothing_without_a_gpu(stories_path):
    with jan.Model(stories_path, n_ctx=64) as model:
        if any(d["type"] == "gpu" for d in _engine.system_info()["devices"]):  # a GPU build on a GPU machine
            assert model.n_gpu_layers == -1 and "all 5 layers" in model.offload.reason
        else:
            assert model.n_gpu_layers == 0 and "no GPU" in model.offload.reason
    with jan.Model(stories_path, n_ctx=64, n_gpu_layers="ALL") as model:
        assert model.n_gpu_layers == -1 and model.offload is None
    with jan.Model(stories_path, n_ctx=64, n_gpu_layers=3) as model:
        assert model.n_gpu_layers == 3 and model.offload is None


@pytest.mark.parametrize("value", ["most", "", True, 1.5, -2])
def test_a_bad_count_is_a_value_error_naming_it(stories_path, value):
    with pytest.raises((ValueError, TypeError), match="n_gpu_layers"):
        jan.Model(stories_path, n_ctx=64, n_gpu_layers=value)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU of ``free`` bytes in place of llama.cpp's own (none here), in a build that says it offloads."""
    real = _engine.system_info
    state = {"free": 0}

    def system_info():
        info = real()
        devices = [d for d in info["devices"] if d["type"] != "gpu"]
        return {**info, "supports_gpu_offload": True, "devices": [*devices, gpu(state["free"])]}

    monkeypatch.setattr(_engine, "system_info", system_info)
    return state


def test_auto_plans_from_the_files_sizes(stories_path, fake_gpu):
    fake_gpu["free"] = 64 * GIB
    with jan.Model(stories_path, n_ctx=256) as model:
        assert model.n_gpu_layers == -1 and model.offload.n_layer == model.info.n_layer
    sizes = _engine.gguf_layer_bytes(str(stories_path))
    kv_layer = 256 * kv_bytes_per_cell(read_info(stories_path).metadata) / 5
    # room for the output layer and two layers with their caches
    fake_gpu["free"] = (sizes["output"] + sum(sizes["layers"][-2:]) + 2 * kv_layer + 1
                        + GPU_HEADROOM_BYTES + compute_buffer_bytes(512, 512))
    with jan.Model(stories_path, n_ctx=256) as model:
        assert model.n_gpu_layers == 3 and "2 of 5 layers" in model.offload.reason


def test_the_default_context_fits_the_gpus_memory_too(stories_path, fake_gpu):
    """All layers offloaded: the KV cache goes to the GPU, so the context is fitted to what the GPU has left, not
    to the RAM."""
    per_cell = kv_bytes_per_cell(read_info(stories_path).metadata)
    with jan.Model(stories_path, n_ctx=256) as probe:
        assert probe.kv_cache_bytes == 256 * per_cell  # the header's count is the engine's (a plain llama)
    fake_gpu["free"] = int(per_cell * 4 * 512) + GPU_HEADROOM_BYTES + compute_buffer_bytes(512, 512) + 1
    with jan.Model(stories_path, n_parallel=4, n_gpu_layers=-1) as model:
        assert model.context_fit.n_ctx == 512 and model.context_fit.fitted
    with jan.Model(stories_path, n_parallel=4, n_gpu_layers=0) as model:  # all of it in the RAM
        assert not model.context_fit.fitted


# -- the command line -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("auto", "auto"), ("AUTO", "auto"), ("all", -1), ("-1", -1), ("0", 0),
                                         ("33", 33)])
def test_gpu_layers_flag_takes_llama_servers_words(text, value):
    assert GpuLayers().convert(text, None, None) == value


@pytest.mark.parametrize("text", ["most", "-2", "1.5", ""])
def test_gpu_layers_flag_refuses_the_rest(text):
    with pytest.raises(click.BadParameter):
        GpuLayers().convert(text, None, None)


def test_the_readme_names_the_route_that_shows_the_layers_taken(tmp_path, stories_path):
    """The README said `GET /v1/models/{id}` gives `n_gpu_layers` and `offload`: it has neither (it is the model.json
    with its state); the model's engine status in `GET /v1/system` has both."""
    import re
    from pathlib import Path

    import httpx

    from server_helpers import start_server

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    said = re.search(r"The model's status\s+\(`GET ([^`]+)`[^)]*\) gives `n_gpu_layers`", readme)
    assert said and said.group(1) == "/v1/system", said
    srv = start_server(tmp_path, [stories_path])
    try:
        models = httpx.get(srv.base_url + "/v1/system", timeout=60).json()["models"]
    finally:
        srv.stop()
    status = next(m for m in models if m["id"] == "stories260K")
    assert isinstance(status["n_gpu_layers"], int) and isinstance(status["offload"], str), status  # (a GPU's too)
