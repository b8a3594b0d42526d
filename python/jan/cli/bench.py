"""``jan bench MODEL``: prompt processing (pp) and generation (tg) speed, as llama-bench reports it.

Each test runs ``-r`` times on a model loaded in this process (never through
a server, so the numbers are the engine's own): ``ppN`` evaluates a prompt of
N random tokens (a fresh one each time, so nothing comes from the KV cache),
``tgN`` times N decode steps after a one-token prompt, never stopping early.
Results are mean ± sample standard deviation of tokens per second, with the
build (jan, llama.cpp version and commit, backends) so runs of different
engine builds can be compared.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import random
import statistics
import sys
from typing import Any

import click

import jan
from jan.cli.common import (INT32_MAX, CLIError, Connection, connection_options, human_bytes, int_items, typed_flags,
                            warn)
from jan.cli.inference import interrupts_stay_on_this_thread, resolve_local_model
from jan.engine.model import ADAPTIVE_THREADS, CACHE_TYPES

CSV_FIELDS = [
    "build_commit", "build_version", "llama_cpp_python", "jan_version", "backends", "cpu_info", "gpu_info",
    "model", "model_filename", "model_type", "model_size", "model_n_params", "n_threads", "step_threads", "n_gpu_layers",
    "n_batch", "n_ubatch", "n_ctx", "type_k", "type_v", "flash_attn", "test", "n_prompt", "n_gen", "repetitions", "avg_ts", "stddev_ts",
    "samples_ts", "test_time",
]


def int_list(ctx, param, value: str) -> list[int]:
    """-p/-n: token counts, 0 skipping the test (llama-bench's ``-n 0``); an empty, negative or non-numeric item is
    a usage error naming the option (``-p 8,,16`` ran 8 and 16 without a word)."""
    return int_items(value, param, ctx, low=0, what="token counts")


def thread_list(ctx, param, value: str | None) -> list[int]:
    if value is None:
        import os

        return [max(1, min(8, os.cpu_count() or 1))]
    from jan.engine.model import GGML_MAX_N_THREADS

    # the range of `jan run -t` and `jan serve -t`, said here of the flag (past it the load failed, after the model
    # was found, as "n_threads: must be >= -1 and <= 512", a name and a -1 the user never typed)
    return int_items(value, param, ctx, low=1, high=GGML_MAX_N_THREADS, what="thread counts")


def build_info() -> dict[str, Any]:
    system = jan.system_info()
    devices = system.get("devices", [])
    cpu = [d.get("description") or d.get("name") for d in devices if d.get("type") == "cpu"]
    gpu = [d.get("description") or d.get("name") for d in devices if d.get("type") != "cpu"]
    return {
        "build_commit": system.get("llama_cpp_commit"),
        "build_version": system.get("llama_cpp_version"),
        "llama_cpp_python": system.get("llama_cpp_python_version"),
        "jan_version": jan.__version__,
        "backends": ",".join(system.get("backends", [])),
        "cpu_info": ", ".join(c for c in cpu if c),
        "gpu_info": ", ".join(g for g in gpu if g),
    }


def _prompt(model: jan.Model, rng: random.Random, n: int) -> list[int]:
    bos = model.info.special_tokens.get("bos")
    head = [bos] if bos is not None and model.add_bos else []
    vocab = model.info.n_vocab
    return head + [rng.randrange(vocab) for _ in range(max(0, n - len(head)))]


def _forget_prompt(model: jan.Model, rng: random.Random) -> None:
    """The slot's KV cache made to share nothing with the next test's prompt, as llama-bench clears the memory before
    each repetition: one untimed decode of a token that is not BOS. Otherwise the slot keeps the last prompt's BOS
    and the next evaluates ``n - 1`` tokens: fewer than a flash-attention tile of 64 queries for ``-p 64``, where
    ggml-cpu takes its slower one-row path (ops.cpp, ``use_tiled``) — 2.5x llama-bench's time on stories260K."""
    bos = model.info.special_tokens.get("bos")
    token = bos
    while token == bos:
        token = rng.randrange(model.info.n_vocab)
    model.generate([token], add_special=False, max_tokens=1, temperature=0, ignore_eos=True)


def run_pp(model: jan.Model, n_prompt: int, rng: random.Random) -> float:
    _forget_prompt(model, rng)
    result = model.generate(_prompt(model, rng, n_prompt), max_tokens=1, temperature=0, ignore_eos=True)
    u = result.usage
    evaluated = u.prompt_tokens - u.cached_tokens
    if u.prompt_ms <= 0 or evaluated <= 0:
        raise CLIError("the engine reported no prompt timing")
    return evaluated / (u.prompt_ms / 1000.0)


def run_tg(model: jan.Model, n_gen: int, rng: random.Random) -> float:
    # n_gen + 1 tokens: the first comes with the prompt, the next n_gen are the timed decode steps.
    result = model.generate(_prompt(model, rng, 1), max_tokens=n_gen + 1, temperature=0, ignore_eos=True)
    u = result.usage
    if u.completion_tokens < 2 or u.generation_ms <= 0:
        raise CLIError("the engine reported no generation timing")
    return (u.completion_tokens - 1) / (u.generation_ms / 1000.0)


def summarize(samples: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(samples)
    sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return mean, sd


def format_md(records: list[dict[str, Any]], build: dict[str, Any]) -> str:
    # as llama-bench: the columns of settings that differ from the defaults only
    extra = [(name, key) for name, key, default in (("type_k", "type_k", "f16"), ("type_v", "type_v", "f16"),
                                                   ("fa", "flash_attn", "auto"))
             if any(r.get(key, default) != default for r in records)]
    header = ["model", "size", "params", "backend", "threads", "ngl", *(n for n, _ in extra), "test", "t/s"]
    align = ["---", "---:", "---:", "---", "---:", "---:", *("---" for _ in extra), "---", "---:"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in records:
        lines.append("| " + " | ".join([
            r["model"], human_bytes(r["model_size"]), _params(r["model_n_params"]), r["backends"],
            _threads(r), str(r["n_gpu_layers"]), *(str(r[key]) for _, key in extra), r["test"],
            f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}",
        ]) + " |")
    lines.append("")
    lines.append(f"build: jan {build['jan_version']}, llama.cpp {build['build_version']} ({build['build_commit']}), "
                 f"llama-cpp-python {build['llama_cpp_python']}, backends: {build['backends']}"
                 + (f", cpu: {build['cpu_info']}" if build["cpu_info"] else "")
                 + (f", gpu: {build['gpu_info']}" if build["gpu_info"] else ""))
    return "\n".join(lines) + "\n"


def _threads(r: dict[str, Any]) -> str:
    used = r.get("step_threads", r["n_threads"])
    return str(r["n_threads"]) if used == r["n_threads"] else f"{r['n_threads']} ({used} used)"


def _params(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def format_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "samples_ts": " ".join(f"{s:.3f}" for s in r["samples_ts"])})
    return out.getvalue()


@click.command()
@click.argument("model")
@click.option("-p", "--n-prompt", "n_prompt", default="512", callback=int_list, show_default=True,
              help="Prompt tokens per pp test (comma-separated list; 0 skips).")
@click.option("-n", "--n-gen", "n_gen", default="128", callback=int_list, show_default=True,
              help="Generated tokens per tg test (comma-separated list; 0 skips).")
@click.option("-r", "--repetitions", default=5, show_default=True, type=click.IntRange(1), help="Runs per test.")
@click.option("-t", "--threads", "threads", default=None, callback=thread_list,
              help="CPU threads (comma-separated list) [default: CPU count, up to 8].")
@click.option("--ctx", "-c", "n_ctx", default=None, type=click.IntRange(64, INT32_MAX),
              help="Context size [default: enough for the largest test].")
@click.option("-b", "--batch-size", "n_batch", default=2048, show_default=True, type=click.IntRange(1, INT32_MAX),
              help="Logical batch size.")
@click.option("-ub", "--ubatch-size", "n_ubatch", default=512, show_default=True, type=click.IntRange(1, INT32_MAX),
              help="Physical batch size.")
@click.option("-ngl", "--gpu-layers", "n_gpu_layers", default=0, show_default=True, type=click.IntRange(-1, INT32_MAX),
              help="Layers to offload to the GPU (-1: all).")
@click.option("-o", "--output", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--no-warmup", is_flag=True, help="Skip the warm-up run before the tests.")
@click.option("--seed", default=1234, show_default=True, type=int, help="Seed of the random prompt tokens.")
@click.option("--adaptive-threads", "adaptive_threads", default="off", show_default=True,
              type=click.Choice(ADAPTIVE_THREADS, case_sensitive=False),
              help="The thread governor (as `jan serve --adaptive-threads`). Off by default: every step gets -t "
                   "threads whatever else runs, as in llama-bench, so the two tools measure the same thing.")
@click.option("-ctk", "--cache-type-k", "cache_type_k", default=None, type=click.Choice(CACHE_TYPES, case_sensitive=False),
              help="KV cache type for K [default: the model.json's cache_type_k, else f16].")
@click.option("-ctv", "--cache-type-v", "cache_type_v", default=None, type=click.Choice(CACHE_TYPES, case_sensitive=False),
              help="KV cache type for V [default: the model.json's cache_type_v, else f16].")
@click.option("-fa", "--flash-attn", "flash_attn", default=None, type=click.Choice(["on", "off", "auto"]),
              help="Flash attention [default: the model.json's flash_attn, else auto].")
@connection_options
def bench(model, n_prompt, n_gen, repetitions, threads, n_ctx, n_batch, n_ubatch, n_gpu_layers, fmt, no_warmup,
          seed, adaptive_threads, cache_type_k, cache_type_v, flash_attn, conn: Connection) -> None:
    """Benchmark MODEL (an id or a .gguf path) in this process: prompt processing (pp)
    and generation (tg) in tokens per second, mean ± sd over -r runs.

        jan bench stories260K -p 512 -n 128 -r 5 -o md
    """
    tests = [("pp", p) for p in n_prompt if p > 0] + [("tg", n) for n in n_gen if n > 0]
    # -ub's default (512) is cut to a smaller -b, as llama-bench does; an -ub the user wrote above -b is
    # refused, as n_ubatch above n_batch is everywhere else (jan.Model, model.json), not quietly lowered
    if n_ubatch > n_batch and click.get_current_context().get_parameter_source("n_ubatch") \
            is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError(f"-ub/--ubatch-size ({n_ubatch}) must not exceed -b/--batch-size ({n_batch}): the "
                               "physical batch is what a logical batch is split into, so it cannot be the larger")
    if not tests:  # (the command line's own mistakes: usage errors, exit 2)
        raise click.UsageError("nothing to measure: -p and -n are both 0")
    model_json, path = resolve_local_model(conn, model)
    # the KV cache as the model is served (its model.json's settings) unless a flag says otherwise: numbers measured
    # on an f16 cache for a model kept at q8_0 were told as that model's, with nothing saying so
    settings = model_json.get("settings") if isinstance(model_json.get("settings"), dict) else {}
    # who gave each of them, for an error that names it as the user wrote it
    # (the flags as typed_flags spells them, not written out twice; bench's own values, -b's default included, are
    # its flags' too)
    flags = typed_flags()
    given = {"cache_type_k": flags["cache_type_k"] if cache_type_k else "settings.cache_type_k",
             "cache_type_v": flags["cache_type_v"] if cache_type_v else "settings.cache_type_v",
             "flash_attn": flags["flash_attn"] if flash_attn else "settings.flash_attn",
             **{option: flags[param] for option, param in (
                 ("n_batch", "n_batch"), ("n_ubatch", "n_ubatch"), ("n_gpu_layers", "n_gpu_layers"),
                 ("n_threads", "threads"), ("n_threads_batch", "threads"), ("adaptive_threads", "adaptive_threads"))}}
    cache_type_k = cache_type_k or settings.get("cache_type_k")
    cache_type_v = cache_type_v or settings.get("cache_type_v")
    attention = {"on": True, "off": False, "auto": None}[flash_attn] if flash_attn else settings.get("flash_attn")
    ctx_needed = max([p + 1 for kind, p in tests if kind == "pp"] + [n + 2 for kind, n in tests if kind == "tg"])
    ctx_given = n_ctx is not None
    if n_ctx is None:
        n_ctx = max(256, int(math.ceil(ctx_needed / 256.0)) * 256)
    elif n_ctx < ctx_needed:
        raise CLIError(f"{flags['n_ctx']} {n_ctx} is too small for these tests (needs at least {ctx_needed})")
    build = build_info()
    show = sys.stderr.isatty()
    records: list[dict[str, Any]] = []
    for n_threads in threads:
        try:
            with interrupts_stay_on_this_thread():
                loaded = jan.Model(path, model_id=model_json["id"], n_ctx=n_ctx, n_parallel=1, n_batch=n_batch,
                                   n_ubatch=min(n_ubatch, n_batch), n_threads=n_threads,
                                   n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers,
                                   adaptive_threads=adaptive_threads, cache_type_k=cache_type_k,
                                   cache_type_v=cache_type_v, flash_attn=attention)
        except (jan.JanError, ValueError) as exc:
            message = str(exc)
            # (a ValueError of the option checks carries no param, only its name at the start: a model.json's
            # "cache_type_k": "bogus" was told as "cache_type_k: ...", no field of the file nor flag of the command)
            param = getattr(exc, "param", None) or message.partition(": ")[0]
            if param in given and message.startswith(f"{param}: "):
                message = f"{given[param]}: {message.removeprefix(f'{param}: ')}"
            elif param == "n_ctx" and getattr(exc, "reason", None) is not None:
                # the context is -c's, or the one the tests' sizes asked for: named so, with what to change (the
                # engine's reason, kept apart from its advice, which names its own option)
                why = exc.reason
                message = (f"-c/--ctx {n_ctx}: {why}; give a smaller -c" if ctx_given else
                           f"the context of {n_ctx} tokens that -p/-n need: {why}; give smaller -p/-n")
            raise CLIError(f"cannot load {path}: {message}") from None
        with loaded:
            info = loaded.info
            if info.n_ctx_train and n_ctx > info.n_ctx_train and n_threads == threads[0]:
                # Past its training context a model is slow (the KV cache grows) and its output
                # meaningless; say so before the minutes of measuring, not after.
                warn(f"these tests need a context of {n_ctx} tokens, more than {model_json['id']} was trained "
                     f"for ({info.n_ctx_train}); the numbers will not reflect real use")
            rng = random.Random(seed)
            if not no_warmup:
                run_pp(loaded, min(32, max(2, max((p for k, p in tests if k == "pp"), default=2))), rng)
                run_tg(loaded, 2, rng)
            for kind, count in tests:
                samples = []
                for rep in range(repetitions):
                    if show:
                        click.echo(f"\rjan bench: {kind}{count} t={n_threads} run {rep + 1}/{repetitions}  ",
                                   err=True, nl=False)
                    samples.append(run_pp(loaded, count, rng) if kind == "pp" else run_tg(loaded, count, rng))
                mean, sd = summarize(samples)
                # what the test's last step ran on: jan gives a step no more threads than its work is worth
                # (cpp/step_threads.h), so a tiny model's tg steps take fewer than -t, where llama-bench
                # takes them all; shown beside -t so two tools' rows are compared knowingly
                step_threads = loaded.metrics().get("step_threads") or n_threads
                records.append({
                    **build,
                    "model": model_json["id"],
                    "model_filename": str(path),
                    "model_type": info.description or info.architecture,
                    "model_size": info.size_bytes,
                    "model_n_params": info.n_params,
                    "n_threads": n_threads,
                    "step_threads": step_threads,
                    "n_gpu_layers": n_gpu_layers,
                    "n_batch": n_batch,
                    "n_ubatch": min(n_ubatch, n_batch),
                    "n_ctx": n_ctx,
                    "type_k": (cache_type_k or "f16").lower(),
                    "type_v": (cache_type_v or "f16").lower(),
                    "flash_attn": {True: "on", False: "off", None: "auto"}[attention],
                    "test": f"{kind}{count}",
                    "n_prompt": count if kind == "pp" else 1,
                    "n_gen": count if kind == "tg" else 0,
                    "repetitions": repetitions,
                    "avg_ts": mean,
                    "stddev_ts": sd,
                    "samples_ts": samples,
                    "test_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                })
    if show:
        click.echo("\r" + " " * 60 + "\r", err=True, nl=False)
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
    elif fmt == "csv":
        click.echo(format_csv(records), nl=False)
    else:
        click.echo(format_md(records, build), nl=False)
