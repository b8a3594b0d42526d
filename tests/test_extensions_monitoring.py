"""The monitoring extension on its own: engines' models and metrics, GPUs (with a stand-in nvidia-smi), resources."""

from __future__ import annotations

import os
import stat

import pytest

import jan
from jan.core import Extension, ExtensionManager, InferenceExtension, ModelState, MonitoringExtension
from jan.errors import ModelNotFoundError
from jan.extensions.monitoring import MonitoringExtensionImpl


class FakeEngine(Extension, InferenceExtension):
    """Two loaded models with counters, in the local engine's shape."""

    name = "fake-engine"
    engine_name = "fake"

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...

    async def loaded_models(self):
        return ["a", "b"]

    async def model_status(self, model_id):
        return {"id": model_id, "status": ModelState.READY, "n_ctx": 256, "active_requests": 1, "queue_depth": 2,
                "memory_bytes": 1000 if model_id == "a" else None,
                "metrics": {"requests_total": 5, "prompt_tokens_total": 50, "generated_tokens_total": 20,
                            "generation_tokens_per_second": 12.5, "slots_busy": 1}}

    async def chat(self, model, request):
        yield {}

    async def complete(self, model, request):
        yield {}

    async def embed(self, model, request): ...
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): ...
    async def detokenize(self, model, tokens): ...


class BrokenEngine(FakeEngine):
    name = "broken-engine"
    engine_name = "broken"

    async def loaded_models(self):
        raise RuntimeError("engine crashed")


@pytest.fixture
async def monitoring(tmp_path):
    manager = ExtensionManager(tmp_path, discover_entry_points=False)
    for ext in (FakeEngine, BrokenEngine, MonitoringExtensionImpl):
        manager.register(ext)
    async with manager:
        ext = manager.get(MonitoringExtension)
        assert isinstance(ext, MonitoringExtensionImpl)
        yield ext


async def test_models_and_metrics_come_from_every_engine(monitoring):
    models = await monitoring.loaded_models()
    assert [(m["id"], m["engine"], m["status"], m["memory"]) for m in models] == [
        ("a", "fake", "ready", 1000), ("b", "fake", "ready", None)]
    assert all("metrics" not in m and m["n_ctx"] == 256 for m in models)
    metrics = await monitoring.model_metrics("a")
    assert metrics["requests_total"] == 5 and metrics["requests_active"] == 1
    assert metrics["prompt_tokens_total"] == 50 and metrics["generated_tokens_total"] == 20
    assert metrics["generated_tokens_per_second"] == 12.5 and metrics["time_to_first_token_ms"] is None
    assert metrics["queue_depth"] == 2 and metrics["engine_metrics"]["slots_busy"] == 1
    assert set(await monitoring.model_metrics()) == {"a", "b"}
    with pytest.raises(ModelNotFoundError):
        await monitoring.model_metrics("c")


async def test_resource_usage(monitoring):
    usage = await monitoring.resource_usage()
    assert usage["cpu"]["cores"] >= 1 and 0 <= usage["cpu"]["usage"] <= 100
    assert usage["memory"]["total"] >= usage["memory"]["used"] > 0 and usage["memory"]["process_rss"] > 0


@pytest.mark.parametrize("exc,said", [(ModuleNotFoundError("No module named 'psutil'"), "psutil is not installed"),
                                      (OSError("libc too old"), "psutil could not be loaded (OSError: libc too old)"),
                                      (SystemExit(1), "psutil could not be loaded (SystemExit: 1)")])
async def test_resource_usage_without_a_psutil_that_imports_says_why(monitoring, monkeypatch, exc, said):
    # loaded on the first reading: whatever its import raises, the reading answers without its figures, saying why
    import importlib

    real = importlib.import_module

    def import_module(name, *args):
        if name == "psutil":
            raise exc
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    usage = await monitoring.resource_usage()
    assert usage["error"] == said and usage["memory"]["total"] is None and usage["cpu"]["cores"] >= 1


async def test_gpus_from_llama_cpp_devices_with_nvidia_smi_usage(monitoring, monkeypatch, tmp_path):
    devices = [
        {"name": "CPU", "description": "AMD EPYC", "type": "cpu", "memory_free": 1, "memory_total": 2},
        {"name": "CUDA0", "description": "NVIDIA H100 80GB HBM3", "type": "gpu", "memory_free": 60, "memory_total": 80},
        {"name": "BLAS", "description": "OpenBLAS", "type": "accel", "memory_free": 0, "memory_total": 0},
        {"name": "Vulkan1", "description": "AMD Radeon RX 7900", "type": "gpu", "memory_free": 5, "memory_total": 20},
    ]
    monkeypatch.setattr(jan, "system_info", lambda: {"devices": devices, "backends": ["CPU", "CUDA"]})
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 37, 20, 80'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    gpus = await monitoring.gpus()
    assert [(g["name"], g["vendor"], g["memory_used"], g["usage"]) for g in gpus] == [
        ("NVIDIA H100 80GB HBM3", "NVIDIA", 20, 37.0), ("AMD Radeon RX 7900", "AMD", 15, None)]
    assert gpus[0]["device"] == "CUDA0" and gpus[0]["id"] == 0

    # readings are cached briefly; with the cache off a machine without GPUs reports none
    monitoring.ctx.settings.set("gpu_cache_seconds", 0)
    monkeypatch.setattr(jan, "system_info", lambda: {"devices": devices[:1]})
    assert await monitoring.gpus() == []
