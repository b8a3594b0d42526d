"""From model.json + an OpenAI request to engine load options and sampling options.

Precedence: request > model.json ``parameters`` > engine defaults. (Threads
and assistants add their layers before the request reaches the engine.)
"""

from __future__ import annotations

from typing import Any

# model.json "settings" key -> jan.Model keyword
LOAD_SETTINGS = {
    "ctx_len": "n_ctx",
    "ngl": "n_gpu_layers",
    "n_parallel": "n_parallel",
    "cpu_threads": "n_threads",
    "n_batch": "n_batch",
    "embedding": "embedding",
    "pooling": "pooling",
    "flash_attn": "flash_attn",
    "use_mmap": "use_mmap",
    "max_queue": "max_queue",
    "kv_unified": "kv_unified",
}

# request / model.json "parameters" key -> jan sampling keyword
SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "max_tokens": "max_tokens",
    "ignore_eos": "ignore_eos",
}


def load_options(model: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    settings = model.get("settings") or {}
    opts = dict(defaults)
    for key, name in LOAD_SETTINGS.items():
        if settings.get(key) is not None:
            opts[name] = settings[key]
    if opts.get("n_ctx") in (0, -1):
        opts.pop("n_ctx")
    return opts


def sampling_options(model: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in (model.get("parameters") or {}).items() if v is not None}
    merged = {**params, **{k: v for k, v in request.items() if v is not None}}
    opts = {name: merged[key] for key, name in SAMPLING.items() if key in merged}
    if request.get("max_completion_tokens") is not None:
        opts["max_tokens"] = request["max_completion_tokens"]
    if isinstance(opts.get("max_tokens"), int) and opts["max_tokens"] <= 0:
        opts.pop("max_tokens")  # Jan writes -1/0 for "no limit"
    if merged.get("logit_bias"):
        opts["logit_bias"] = {int(k): float(v) for k, v in merged["logit_bias"].items()}
    if merged.get("stop") == []:
        opts.pop("stop", None)
    return opts
