"""Readiness and Prometheus metrics."""

from __future__ import annotations

import os
import time

from aiohttp import web

from jan.core.engine_answers import loaded_ids
from jan.server.jsonio import json_response
from jan.server.keys import CONFIG, MANAGER, STARTED_AT
from jan.server.security import authorized

routes = web.RouteTableDef()


def _local_engines(app: web.Application) -> list:
    return [e for e in app[MANAGER].engines().values() if hasattr(e, "metrics")]


@routes.get("/health")
@routes.get("/v1/health")  # (llama-server's alias)
async def health(request: web.Request) -> web.Response:
    """Readiness (open without an API key) and, to a request with the key (or without --api-key), the loaded models."""
    # Cheap on purpose: load balancers and `jan` itself poll it while streams run.
    manager = request.app[MANAGER]
    failed = manager.failed_extensions()
    # "degraded": up, but an enabled extension failed to load, so what it provides answers 503 (a data folder
    # it could not open, say). Still 200: the server itself runs, and a probe that restarts it would not help.
    body: dict = {"status": "degraded" if failed else "ok",
                  "uptime_seconds": round(time.monotonic() - request.app[STARTED_AT], 3)}
    if authorized(request, request.app[CONFIG]):  # which models run here is not for anyone who can reach the port
        if failed:  # why (paths in the errors: only to a request with the key)
            body["failed_extensions"] = [{"name": r.name, "state": r.state, "error": r.error} for r in failed]
        loaded = []
        for engine in manager.engines().values():
            loaded += await loaded_ids(engine)  # (an engine that cannot tell fails no health check)
        body["models"] = loaded
        # where this server keeps its data: `jan` commands that work on the folder themselves (`jan mcp add`,
        # `jan bench MODEL_ID`) act on this one, not on ~/jan, when no other is named (jan.cli.common.Connection)
        body["data_folder"] = os.path.abspath(request.app[CONFIG].data_folder)
    return json_response(body)


#: The engine's counters and gauges that mean what one of llama-server's ``--metrics`` does, under its name (what
#: dashboards made for llama-server read), labelled by model as jan's own: ``{engine key: (name, kind, help)}``.
#: Its per-phase seconds, throughput gauges, context high-water mark, busy slots per decode and draft steps have no
#: truthful twin here and are left out.
LLAMA_SERVER_METRICS = {
    "prompt_tokens_total": ("llamacpp:prompt_tokens", "counter",
                            "Number of prompt tokens processed, excluding cached tokens"),
    "cached_tokens_total": ("llamacpp:prompt_tokens_cached", "counter", "Number of prompt tokens reused from the cache"),
    "generated_tokens_total": ("llamacpp:tokens_predicted", "counter", "Number of generation tokens processed"),
    "draft_tokens_total": ("llamacpp:spec_decode_num_draft_tokens", "counter",
                           "Speculative: Total draft tokens generated"),
    "draft_accepted_total": ("llamacpp:spec_decode_num_accepted_tokens", "counter",
                             "Speculative: Total draft tokens accepted by the target model"),
    "slots_busy": ("llamacpp:requests_processing", "gauge", "Number of requests processing"),
    "queue_depth": ("llamacpp:requests_deferred", "gauge", "Number of requests deferred"),
    # (the engine counts each llama_decode() call of its slots' steps and media chunks, as llama-server does)
    "decode_calls": ("llamacpp:n_decode", "counter", "Total number of llama_decode() calls"),
}


class EngineCollector:
    """Reads the engines' counters at scrape time, so nothing is counted twice."""

    def __init__(self, app: web.Application):
        self.app = app

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = {
            "requests_total": ("jan_requests", "Generation requests submitted"),
            "requests_cancelled": ("jan_requests_cancelled", "Generation requests cancelled"),
            "requests_failed": ("jan_requests_failed", "Generation requests that failed"),
            "prompt_tokens_total": ("jan_prompt_tokens", "Prompt tokens evaluated"),
            "cached_tokens_total": ("jan_prompt_tokens_cached", "Prompt tokens reused from the KV cache"),
            "generated_tokens_total": ("jan_generated_tokens", "Tokens generated"),
            "decode_seconds": ("jan_decode_seconds", "Seconds spent in llama_decode"),
            "draft_tokens_total": ("jan_draft_tokens", "Speculative decoding: tokens drafted"),
            "draft_accepted_total": ("jan_draft_tokens_accepted", "Speculative decoding: drafted tokens accepted"),
            "thread_changes_total": ("jan_thread_changes", "Times the thread counts changed for the load beside the model"),
            "media_encodes_total": ("jan_media_encodes", "Images and audio clips run through the projector's encoder "
                                    "(not those found in its cache)"),
            "media_encode_seconds": ("jan_media_encode_seconds", "Seconds spent in the projector's encoder"),
        }
        gauges = {
            "slots_busy": ("jan_slots_busy", "Slots generating now"),
            "slots_total": ("jan_slots_total", "Slots (parallel requests) per model"),
            "queue_depth": ("jan_queue_depth", "Requests waiting for a slot"),
            "generation_tokens_per_second": ("jan_generation_tokens_per_second",
                                             "Generated tokens per busy second since load"),
            "n_threads": ("jan_threads", "Threads a generation step uses now (fewer while other processes are busy)"),
            "n_threads_batch": ("jan_threads_batch", "Threads a prompt-processing step uses now"),
            "cpu_busy_elsewhere": ("jan_cpu_busy_elsewhere", "Cores busy with other work (other processes, jan's other threads), last sample"),
            "threads_apart": ("jan_threads_apart", "Compute threads held to their own CPUs (steps running more threads than the free cores)"),
            "prompt_cache_bytes": ("jan_prompt_cache_bytes", "Host memory held by conversations' KV caches saved from "
                                   "slots (--cache-ram)"),
            "prompt_cache_prompts": ("jan_prompt_cache_prompts", "Conversations' KV caches saved from slots"),
            "step_threads": ("jan_step_threads", "Threads the last decode step ran on (fewer than jan_threads when it held too little work to split)"),
        }
        per_model: dict[str, dict] = {}
        for engine in _local_engines(self.app):
            per_model.update(engine.metrics())
        families = []
        for key, (name, doc) in counters.items():
            fam = CounterMetricFamily(name, doc, labels=["model"])
            for model_id, m in per_model.items():
                fam.add_metric([model_id], float(m.get(key, 0)))
            families.append(fam)
        for key, (name, doc) in gauges.items():
            fam = GaugeMetricFamily(name, doc, labels=["model"])
            for model_id, m in per_model.items():
                fam.add_metric([model_id], float(m.get(key, 0)))
            families.append(fam)
        for key, (name, kind, doc) in LLAMA_SERVER_METRICS.items():
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=["model"])
            for model_id, m in per_model.items():
                fam.add_metric([model_id], float(m.get(key, 0)))
            families.append(fam)
        loaded = GaugeMetricFamily("jan_models_loaded", "Models loaded in the local engine")
        loaded.add_metric([], float(len(per_model)))
        families.append(loaded)
        return families


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics per model: requests, tokens, decode time, slots, queue."""
    # prometheus_client (with the http.server, wsgiref and gzip modules it brings, ~1 MiB resident) loads
    # with the first scrape: most servers are never scraped.
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(request.app))
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
