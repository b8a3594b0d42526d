"""The built-in monitoring extension: machine resources, GPUs, loaded models and their metrics.

HTTP (mounted through ``ctx.add_route``):

``GET /v1/system``
    Everything at once: ``jan_version``, ``llama_cpp`` (version, backends),
    ``resources`` (:meth:`resource_usage`), ``gpus`` (:meth:`gpus`) and
    ``models`` (:meth:`loaded_models`, each with its ``metrics``).
``GET /v1/system/models/{model_id}``
    One loaded model: its engine status and :meth:`model_metrics`; 404 if
    no engine has it loaded.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import time
from typing import Any

from pydantic import BaseModel, Field

from jan.core import MonitoringExtension
from jan.core.engine_answers import loaded_ids, model_state
from jan.extensions._builtin import BuiltinExtension
from jan.errors import ModelNotFoundError

#: Substrings of a device's name/description -> vendor (first match wins).
_VENDORS = (("nvidia", "NVIDIA"), ("cuda", "NVIDIA"), ("geforce", "NVIDIA"), ("rocm", "AMD"), ("radeon", "AMD"),
            ("amd", "AMD"), ("intel", "Intel"), ("sycl", "Intel"), ("apple", "Apple"), ("metal", "Apple"))


class MonitoringSettings(BaseModel):
    nvidia_smi: bool = Field(True, description="Ask nvidia-smi (when installed) for GPU utilization")
    gpu_cache_seconds: float = Field(2.0, ge=0, le=3600, description="Reuse GPU readings this long")


def _vendor(text: str) -> str | None:
    lowered = text.lower()
    for needle, vendor in _VENDORS:
        if needle in lowered:
            return vendor
    return None


class MonitoringExtensionImpl(BuiltinExtension, MonitoringExtension):
    """CPU/memory through psutil, GPUs from ``jan.system_info()`` (plus nvidia-smi), models from the engines."""

    name = "monitoring"
    description = "System resources, GPUs, loaded models and their metrics (GET /v1/system)"
    settings_schema = MonitoringSettings

    def __init__(self) -> None:
        self._process: Any = None
        self._unavailable = "psutil is not installed"  # why there are no CPU and memory figures, when there are none
        self._gpu_cache: tuple[float, list[dict[str, Any]]] | None = None

    async def on_load(self, ctx) -> None:
        """Add the ``/v1/system`` routes (psutil loads with the first reading: see :meth:`_process_handle`)."""
        ctx.add_route("GET", "/v1/system", self._system_route)
        ctx.add_route("GET", "/v1/system/models/{model_id}", self._model_route)

    async def _process_handle(self) -> Any:
        """This process's ``psutil.Process`` with primed CPU counters, or None without psutil.

        psutil (~1 MiB resident) loads with the first reading rather than at start-up: most servers are never
        asked. CPU percentages cover the time since the previous reading, so the first one primes the
        counters and waits 0.1 s to have an interval to report."""
        if self._process is None:
            try:  # (an import of ~20 ms: off the event loop)
                psutil = await asyncio.to_thread(importlib.import_module, "psutil")
            except (Exception, SystemExit) as exc:  # a declared dependency, but keep serving without it
                # (a broken install too, whatever its import raises: a SystemExit raised here would end jan's loop)
                self._unavailable = ("psutil is not installed" if isinstance(exc, ModuleNotFoundError) else
                                     f"psutil could not be loaded ({type(exc).__name__}: {exc})")
                self.ctx.logger.warning("%s: CPU and memory figures are unavailable", self._unavailable)
                self._process = False
                return None
            process = psutil.Process(os.getpid())
            psutil.cpu_percent(interval=None)
            process.cpu_percent(interval=None)
            await asyncio.sleep(0.1)
            self._process = process
        return self._process or None

    async def on_unload(self) -> None:
        """Drop cached readings."""
        self._process = None
        self._gpu_cache = None

    # -- the interface -----------------------------------------------------
    async def resource_usage(self) -> dict[str, Any]:
        """``cpu`` (``usage`` %, ``cores``, ``physical_cores``, ``process_usage`` %, ``load_average``) and
        ``memory`` (``total``, ``used``, ``available``, ``usage`` %, ``process_rss``) in bytes."""
        process = await self._process_handle()
        if process is None:
            return {"cpu": {"usage": None, "cores": os.cpu_count()},
                    "memory": {"total": None, "used": None, "process_rss": None},
                    "error": self._unavailable}
        import psutil

        mem = psutil.virtual_memory()
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except (AttributeError, OSError):
            load = None
        with process.oneshot():
            rss = process.memory_info().rss
            process_cpu = process.cpu_percent(interval=None)
        return {
            "cpu": {"usage": psutil.cpu_percent(interval=None), "cores": psutil.cpu_count(logical=True),
                    "physical_cores": psutil.cpu_count(logical=False), "process_usage": process_cpu,
                    "load_average": load},
            "memory": {"total": mem.total, "used": mem.total - mem.available, "available": mem.available,
                       "usage": mem.percent, "process_rss": rss},
        }

    async def gpus(self) -> list[dict[str, Any]]:
        """GPUs llama.cpp sees (``jan.system_info()["devices"]`` without CPU and accelerator devices):
        ``id``, ``name``, ``vendor``, ``type``, ``memory_total``, ``memory_free``, ``memory_used`` and
        ``usage`` (%, from nvidia-smi, else ``None``)."""
        ttl = self.ctx.settings.get("gpu_cache_seconds")
        if self._gpu_cache is not None and time.monotonic() - self._gpu_cache[0] < ttl:
            return [dict(g) for g in self._gpu_cache[1]]
        import jan

        info = await asyncio.to_thread(jan.system_info)
        out = []
        for index, dev in enumerate(d for d in info.get("devices", []) if d.get("type") not in ("cpu", "accel")):
            total, free = dev.get("memory_total"), dev.get("memory_free")
            label = f"{dev.get('name', '')} {dev.get('description', '')}"
            out.append({
                "id": index,
                "name": dev.get("description") or dev.get("name"),
                "device": dev.get("name"),
                "vendor": _vendor(label),
                "type": dev.get("type"),
                "memory_total": total,
                "memory_free": free,
                "memory_used": (total - free) if isinstance(total, int) and isinstance(free, int) else None,
                "usage": None,
            })
        if out and self.ctx.settings.get("nvidia_smi") and any(g["vendor"] == "NVIDIA" for g in out):
            await self._add_nvidia_usage(out)
        self._gpu_cache = (time.monotonic(), [dict(g) for g in out])
        return out

    async def _add_nvidia_usage(self, gpus: list[dict[str, Any]]) -> None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, "--query-gpu=name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), 3)
        except (OSError, asyncio.TimeoutError):
            return
        rows = [r.split(",") for r in out.decode(errors="replace").strip().splitlines()]
        nvidia = [g for g in gpus if g["vendor"] == "NVIDIA"]
        for gpu, row in zip(nvidia, rows):  # both in CUDA's (PCI) order
            try:
                gpu["usage"] = float(row[1])
            except (IndexError, ValueError):
                continue

    async def loaded_models(self) -> list[dict[str, Any]]:
        """Every loaded model of every engine: ``id``, ``engine``, ``status``, ``memory`` (bytes or ``None``),
        plus the engine's own details (``n_ctx``, ``n_parallel``, ``base_url``, ...) without the counters."""
        out = []
        for engine_name, engine in self.ctx.manager.engines().items():
            for model_id in await loaded_ids(engine):  # (one broken engine hides no other)
                status = await self._status(engine, model_id)
                entry = {k: v for k, v in status.items() if k != "metrics"}
                entry.update({"id": model_id, "engine": engine_name, "status": status.get("status"),
                              "memory": status.get("memory_bytes")})
                out.append(entry)
        return out

    async def model_metrics(self, model_id: str | None = None) -> dict[str, Any]:
        """Counters of one loaded model, or of every loaded model keyed by id (``model_id=None``).

        Keys: ``requests_total``, ``requests_active``, ``prompt_tokens_total``,
        ``generated_tokens_total``, ``prompt_tokens_per_second``,
        ``generated_tokens_per_second``, ``time_to_first_token_ms`` (``None``
        where the engine does not measure it) and ``engine_metrics`` (the
        engine's own counters). ``ModelNotFoundError`` if the model is not loaded.
        """
        found: dict[str, dict[str, Any]] = {}
        for engine_name, engine in self.ctx.manager.engines().items():
            for mid in await loaded_ids(engine):
                if model_id is None or mid == model_id:
                    found[mid] = _metrics(await self._status(engine, mid), engine_name)
        if model_id is None:
            return found
        if model_id not in found:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded by any engine")
        return found[model_id]

    async def _status(self, engine: Any, model_id: str) -> dict[str, Any]:
        return await model_state(engine, model_id)

    # -- HTTP ------------------------------------------------------------------
    async def system(self) -> dict[str, Any]:
        """The body of ``GET /v1/system``."""
        import jan

        info = await asyncio.to_thread(jan.system_info)
        metrics = await self.model_metrics()
        models = []
        for model in await self.loaded_models():
            models.append({**model, "metrics": metrics.get(model["id"])})
        return {
            "object": "system",
            "jan_version": info.get("jan_version"),
            "llama_cpp": {"version": info.get("llama_cpp_version"), "commit": info.get("llama_cpp_commit"),
                          "backends": info.get("backends", []),
                          "supports_gpu_offload": info.get("supports_gpu_offload")},
            "resources": await self.resource_usage(),
            "gpus": await self.gpus(),
            "models": models,
            "engines": sorted(self.ctx.manager.engines()),
        }

    async def _system_route(self, request):
        from jan.server.jsonio import json_response  # (strict JSON, as every body jan writes)

        return json_response(await self.system())

    async def _model_route(self, request):
        from jan.server.jsonio import json_response

        model_id = request.match_info["model_id"]
        for engine_name, engine in self.ctx.manager.engines().items():
            if model_id in await loaded_ids(engine):
                status = await self._status(engine, model_id)
                body = {k: v for k, v in status.items() if k != "metrics"}
                body.update({"id": model_id, "engine": engine_name, "metrics": _metrics(status, engine_name)})
                return json_response(body)
        raise ModelNotFoundError(f"model '{model_id}' is not loaded by any engine")


def _metrics(status: dict[str, Any], engine_name: str) -> dict[str, Any]:
    raw = status.get("metrics") or {}
    out: dict[str, Any] = {
        "requests_total": raw.get("requests_total", 0),
        "requests_active": status.get("active_requests", raw.get("requests_active", raw.get("slots_busy", 0))),
        "prompt_tokens_total": raw.get("prompt_tokens_total", 0),
        "generated_tokens_total": raw.get("generated_tokens_total", 0),
        "prompt_tokens_per_second": raw.get("prompt_tokens_per_second"),
        "generated_tokens_per_second": raw.get("generated_tokens_per_second",
                                               raw.get("generation_tokens_per_second")),
        "time_to_first_token_ms": raw.get("time_to_first_token_ms"),
    }
    if "queue_depth" in status:
        out["queue_depth"] = status["queue_depth"]
    out["engine_metrics"] = raw
    return out
