"""Readiness and Prometheus metrics."""

from __future__ import annotations

import os
import time
from dataclasses import astuple, dataclass
from typing import Any

from aiohttp import web

from jan.core.engine_answers import loaded_ids
from jan.server.jsonio import json_response
from jan.server.keys import CONFIG, HTTP_REQUESTS, MANAGER, METRIC_WINDOWS, STARTED_AT
from jan.server.security import authorized

routes = web.RouteTableDef()


def _counted_engines(app: web.Application) -> list:
    """The engines that count what they serve (a ``metrics()`` of per-model counters), each once (an extension may
    register itself under several engine names): the local engine and the remote models' alike."""
    engines: dict[int, Any] = {}
    for engine in app[MANAGER].engines().values():
        if hasattr(engine, "metrics"):
            engines.setdefault(id(engine), engine)
    return list(engines.values())


def _served(engine: Any) -> str:
    """``/metrics``' ``engine`` label of an engine's models: ``local`` (this machine's engine generates), ``remote``
    (an upstream server does), or another engine's own name."""
    return str(getattr(engine, "metrics_label", None) or getattr(engine, "engine_name", None) or "local")


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
#: As llama-server accounts them: prompt tokens and seconds are those of the decodes that evaluated prompt tokens
#: (wall time from the first such decode to the one whose output settles them), generated tokens and seconds are
#: added per request when it ends (its first token to its end), and decodes are the slots' text steps (not media
#: chunks' nor the draft model's). Its speculative verification steps and draft positions are left out.
LLAMA_SERVER_METRICS = {
    "prompt_tokens_timed": ("llamacpp:prompt_tokens", "counter",
                            "Number of prompt tokens processed, excluding cached tokens"),
    "cached_tokens_total": ("llamacpp:prompt_tokens_cached", "counter", "Number of prompt tokens reused from the cache"),
    "prompt_seconds": ("llamacpp:prompt_seconds", "counter", "Total time spent processing prompts"),
    "predicted_tokens": ("llamacpp:tokens_predicted", "counter", "Number of generation tokens processed"),
    "predicted_seconds": ("llamacpp:tokens_predicted_seconds", "counter", "Total time spent generating tokens"),
    "draft_tokens_total": ("llamacpp:spec_decode_num_draft_tokens", "counter",
                           "Speculative: Total draft tokens generated"),
    "draft_accepted_total": ("llamacpp:spec_decode_num_accepted_tokens", "counter",
                             "Speculative: Total draft tokens accepted by the target model"),
    "slots_busy": ("llamacpp:requests_processing", "gauge", "Number of requests processing"),
    "queue_depth": ("llamacpp:requests_deferred", "gauge", "Number of requests deferred"),
    "step_decodes": ("llamacpp:n_decode", "counter",
                     "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding"),
    # (a high-water mark: llama-server types it a counter, but under this name, which a counter here would not keep)
    "n_tokens_max": ("llamacpp:n_tokens_max", "gauge", "Largest observed sequence length (prompt + generation)"),
}


@dataclass
class _Window:
    """One model's phase totals at the last scrape: llama-server's throughput gauges average over the time between
    two scrapes (each scrape starts a new window). ``load_id``: the load they were counted in (the engine's)."""

    prompt_tokens: float = 0.0
    prompt_seconds: float = 0.0
    predicted_steps: float = 0.0
    predicted_seconds: float = 0.0
    load_id: object = None


def _rate(tokens: float, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def throughput_gauges(windows: dict[str, _Window], model_id: str, m: dict) -> dict[str, float]:
    """llama-server's ``prompt_tokens_seconds`` (prompt tokens per second of prompt processing) and
    ``predicted_tokens_seconds`` (decode steps, each request's tokens but its first, per second of generation) over
    the window since the last scrape, and its ``n_busy_slots_per_decode`` (busy slots per text step since load);
    starts the model's next window. A model loaded again since starts from zero: known by its ``load_id`` (its
    new totals may well be past the old load's by the next scrape), or, without one, by its totals going down."""
    now = _Window(float(m.get("prompt_tokens_timed", 0)), float(m.get("prompt_seconds", 0.0)),
                  float(m.get("predicted_steps", 0)), float(m.get("predicted_seconds", 0.0)), m.get("load_id"))
    last = windows.get(model_id)
    if last is None or last.load_id != now.load_id or any(a < b for a, b in zip(astuple(now)[:4], astuple(last)[:4])):
        last = _Window()
    windows[model_id] = now
    return {
        "prompt_tokens_seconds": _rate(now.prompt_tokens - last.prompt_tokens, now.prompt_seconds - last.prompt_seconds),
        "predicted_tokens_seconds": _rate(now.predicted_steps - last.predicted_steps,
                                          now.predicted_seconds - last.predicted_seconds),
        "n_busy_slots_per_decode": float(m.get("busy_slots_per_step", 0)) / max(float(m.get("step_decodes", 0)), 1.0),
    }


#: llama-server's gauges that ``throughput_gauges`` works out: ``{key: (name, help)}``.
LLAMA_SERVER_GAUGES = {
    "prompt_tokens_seconds": ("llamacpp:prompt_tokens_seconds", "Average prompt throughput in tokens/s"),
    "predicted_tokens_seconds": ("llamacpp:predicted_tokens_seconds", "Average generation throughput in tokens/s"),
    "n_busy_slots_per_decode": ("llamacpp:n_busy_slots_per_decode",
                                "Average number of busy slots per llama_decode() call"),
}


#: The generation counters' names before they said so (``jan_requests_total`` read as a count of every request,
#: and counted generations): still given, beside their new names, so that a dashboard reading them keeps working.
#: ``{engine key: (old name, new name)}``.
DEPRECATED_COUNTERS = {
    "requests_total": ("jan_requests", "jan_generations"),
    "requests_cancelled": ("jan_requests_cancelled", "jan_generations_cancelled"),
    "requests_failed": ("jan_requests_failed", "jan_generations_failed"),
}


class EngineCollector:
    """Reads the engines' counters at scrape time, so nothing is counted twice."""

    def __init__(self, app: web.Application):
        self.app = app

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        # What a model's engine was given, whatever dialect asked: each choice of n, each turn of a run or a tool
        # loop is one generation (a count of requests is jan_http_requests_total's, by route and status)
        counters = {
            "requests_total": ("jan_generations", "Generations submitted to the model's engine (each choice of n "
                               "of each prompt, each turn of a run or tool loop; a remote model's alike, each choice "
                               "asked of its upstream; not embeddings): every request is jan_http_requests_total's"),
            "requests_cancelled": ("jan_generations_cancelled", "Generations cancelled"),
            "requests_failed": ("jan_generations_failed", "Generations that failed"),
            "prompt_tokens_total": ("jan_prompt_tokens", "Prompt tokens evaluated (a remote model's: as its upstream "
                                    "told them)"),
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
        # every engine's models: a remote model's generations count as a local one's (its upstream's usage its
        # tokens), labelled apart (engine="remote"); the local engine's own gauges and llama-server's metrics are
        # the local models' alone
        # {model id: (engine label, counters)}, the first engine that counts a model its one source: its label
        # and its counters come together, so they cannot name different engines
        counted: dict[str, tuple[str, dict]] = {}
        for engine in _counted_engines(self.app):
            label = _served(engine)
            for model_id, m in engine.metrics().items():
                counted.setdefault(model_id, (label, m))
        per_model = {model_id: m for model_id, (label, m) in counted.items() if label == "local"}
        windows = self.app[METRIC_WINDOWS]
        for gone in [model_id for model_id in windows if model_id not in per_model]:
            # (a model loaded again starts from zero anyway; one unloaded or deleted kept its window for the
            # server's life, one per model id ever scraped)
            del windows[gone]
        derived = {model_id: throughput_gauges(windows, model_id, m) for model_id, m in per_model.items()}

        def family(kind: type, name: str, doc: str, key: str, values: dict[str, dict]):
            """One metric, a sample per model: ``values[model][key]`` (0 where a model has none)."""
            fam = kind(name, doc, labels=["model"])
            for model_id, m in values.items():
                fam.add_metric([model_id], float(m.get(key, 0)))
            return fam

        def served_family(name: str, doc: str, key: str):
            """One of jan's counters, a sample per model of every engine, labelled by where it is served
            (``engine``: ``local``, ``remote``); a model whose engine counts no such thing has none (a remote
            model's decode time), a local one 0."""
            fam = CounterMetricFamily(name, doc, labels=["model", "engine"])
            for model_id, (label, m) in counted.items():
                if key in m or label == "local":
                    fam.add_metric([model_id, label], float(m.get(key, 0)))
            return fam

        families = [served_family(name, doc, key) for key, (name, doc) in counters.items()]
        families += [served_family(old, f"Deprecated: {new}_total under its old name, which read as a count of "
                                   "requests", key) for key, (old, new) in DEPRECATED_COUNTERS.items()]
        http = CounterMetricFamily("jan_http_requests", "HTTP requests answered, by method, route template and "
                                   "status (499: the client left first)", labels=["method", "route", "status"])
        for labels, n in self.app[HTTP_REQUESTS].samples():
            http.add_metric(list(labels), float(n))
        families.append(http)
        families += [family(GaugeMetricFamily, name, doc, key, per_model) for key, (name, doc) in gauges.items()]
        families += [family(CounterMetricFamily if kind == "counter" else GaugeMetricFamily, name, doc, key, per_model)
                     for key, (name, kind, doc) in LLAMA_SERVER_METRICS.items()]
        families += [family(GaugeMetricFamily, name, doc, key, derived)
                     for key, (name, doc) in LLAMA_SERVER_GAUGES.items()]
        loaded = GaugeMetricFamily("jan_models_loaded", "Models loaded in the local engine")
        loaded.add_metric([], float(len(per_model)))
        families.append(loaded)
        return families


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics: every HTTP request by route and status; per model, generations, tokens, decode time,
    slots, queue."""
    # prometheus_client (with the http.server, wsgiref and gzip modules it brings, ~1 MiB resident) loads
    # with the first scrape: most servers are never scraped.
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(request.app))
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
