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
import itertools
import math
import random
import re
import statistics
import sys
import time
from typing import Any

import click

import jan
from jan.cli.common import (INT32_MAX, CLIError, Connection, comma_items, connection_options, human_bytes, int_items,
                            nonempty_param, stderr_redraws, typed_flags, warn, Words)
from jan.cli.inference import interrupts_stay_on_this_thread, resolve_local_model
from jan.engine.model import (ADAPTIVE_THREADS, CACHE_TYPES, LAZY_MODES, LOAD_MODES, SPLIT_MODES,
                              extra_buffers_by_default)

CSV_FIELDS = [
    "build_commit", "build_version", "llama_cpp_python", "jan_version", "backends", "cpu_info", "gpu_info",
    "model", "model_filename", "model_type", "model_size", "model_n_params", "n_threads", "step_threads", "cpu_mask",
    "cpu_strict", "poll", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "n_batch", "n_ubatch",
    "n_ctx", "type_k", "type_v", "flash_attn", "devices", "tensor_split", "tensor_buft_overrides", "load_mode", "lazy_mode",
    "embeddings", "no_op_offload", "no_host", "repack", "test",
    "n_prompt", "n_gen", "n_depth", "repetitions",
    "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts",
]
#: -fa's words as llama-bench's json, csv and sql write them (an int: -1 auto, 0 off, 1 on)
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}
#: SQL column types of the fields :func:`format_sql` writes (the lists of samples are json's and csv's only)
SQL_TYPES = {"model_size": "INTEGER", "model_n_params": "INTEGER", "n_threads": "INTEGER", "step_threads": "INTEGER",
             "n_gpu_layers": "INTEGER", "cpu_strict": "INTEGER", "poll": "INTEGER", "main_gpu": "INTEGER",
             "no_kv_offload": "INTEGER", "embeddings": "INTEGER", "n_cpu_moe": "INTEGER", "no_op_offload": "INTEGER",
             "no_host": "INTEGER", "repack": "INTEGER", "n_batch": "INTEGER", "n_ubatch": "INTEGER", "n_ctx": "INTEGER",
             "flash_attn": "INTEGER", "n_prompt": "INTEGER", "n_gen": "INTEGER", "n_depth": "INTEGER",
             "repetitions": "INTEGER", "avg_ns": "INTEGER", "stddev_ns": "INTEGER", "avg_ts": "REAL",
             "stddev_ts": "REAL"}
FORMATS = ("md", "csv", "json", "jsonl", "sql")
#: Other names of -o/-oe formats (:class:`jan.cli.common.Words`)
FORMAT_ALIASES = {"markdown": "md", "ndjson": "jsonl"}
#: llama-bench's --numa words
NUMA = ("distribute", "isolate", "numactl")
#: --prio's process priority as llama.cpp's common code sets it on POSIX (a nice value): -1 low ... 3 realtime
PRIO_NICE = {-1: 5, 0: 0, 1: -5, 2: -10, 3: -20}


RANGE = re.compile(r"^(\d+)-(\d+)(?:([+*])(\d+))?$")
#: the most values one range may stand for: `-p 1-2000000000` is a typo, not two billion tests
MAX_RANGE_ITEMS = 1024


def list_items(values: tuple[str, ...] | str, param, ctx) -> list[str]:
    """The items of a list option given once or more (``-p 8,16 -p 32``: 8, 16, 32), as llama-bench takes them: each
    occurrence comma-separated (:func:`comma_items`). A repeated flag kept only its last value, without a word."""
    if isinstance(values, str):
        values = (values,)
    return [item for value in values for item in comma_items(value, param, ctx)]


def int_ranges(values: tuple[str, ...] | str, param, ctx, *, low: int, high: int, what: str) -> list[int]:
    """The whole numbers of a list option (:func:`list_items`), an item being a number or llama-bench's range
    ``first-last``, ``first-last+step`` or ``first-last*mult`` (``1-8+2``: 1, 3, 5, 7). Each ``low`` to ``high``;
    a range that is empty, never ends (step 0, mult 1) or stands for more than 1,024 values is a usage error naming
    the option and the item."""
    numbers: list[int] = []
    for item in list_items(values, param, ctx):
        match = RANGE.match(item)
        if match is None:
            numbers.extend(int_items(item, param, ctx, low=low, high=high, what=what))
            continue
        first, last, op, by = int(match[1]), int(match[2]), match[3] or "+", int(match[4] or 1)
        if last < first:
            raise click.BadParameter(f"range {item!r} is empty: its last value is below its first", ctx, param)
        if (op == "+" and by < 1) or (op == "*" and (by < 2 or first < 1)):
            raise click.BadParameter(f"range {item!r} never ends (a step must be at least 1, a multiplier at least 2 "
                                     "from a first value of at least 1)", ctx, param)
        expanded: list[int] = []
        number = first
        while number <= last:
            if len(expanded) == MAX_RANGE_ITEMS:
                raise click.BadParameter(f"range {item!r} stands for more than {MAX_RANGE_ITEMS} values", ctx, param)
            expanded.append(number)
            number = number + by if op == "+" else number * by
        for number in expanded:
            if not low <= number <= high:
                raise click.BadParameter(f"{what} must be {low} to {high}, got {number} in {item!r}", ctx, param)
        numbers.extend(expanded)
    return numbers


def int_list(ctx, param, value) -> list[int]:
    """-p/-n/-d: token counts, 0 skipping the test (llama-bench's ``-n 0``); an empty, negative or non-numeric item is
    a usage error naming the option (``-p 8,,16`` ran 8 and 16 without a word)."""
    return int_ranges(value, param, ctx, low=0, high=INT32_MAX, what="token counts")


def size_list(ctx, param, value) -> list[int]:
    """-b/-ub: batch sizes, at least 1."""
    return int_ranges(value, param, ctx, low=1, high=INT32_MAX, what="batch sizes")


def layer_list(ctx, param, value) -> list[int]:
    """-ngl: layers to offload, -1 for all."""
    return int_ranges(value, param, ctx, low=-1, high=INT32_MAX, what="layer counts")


def count_list(ctx, param, value) -> list[int]:
    """-ncmoe: layers whose mixture-of-experts weights stay in CPU memory, 0 and up."""
    return int_ranges(value, param, ctx, low=0, high=INT32_MAX, what="layer counts")


def device_list(ctx, param, value) -> list[tuple[str, ...] | None]:
    """-dev: each comma-separated item ``auto`` (every GPU: None), ``none`` (the CPU only: ``()``) or GPU names
    separated by / (``CUDA0/CUDA1``); an empty name is a usage error. Which names a build has is the engine's to say."""
    choices: list[tuple[str, ...] | None] = []
    for item in list_items(value, param, ctx):
        if item == "auto":
            choices.append(None)
        elif item == "none":
            choices.append(())
        else:
            names = tuple(name.strip() for name in item.split("/"))
            if not all(names):
                raise click.BadParameter(f"{item!r} has an empty device name", ctx, param)
            choices.append(names)
    return list(dict.fromkeys(choices))


def gpu_list(ctx, param, value) -> list[int]:
    """-mg: GPU indices, 0 and up (llama-bench's range syntax; -1 is refused as it refuses it)."""
    return int_ranges(value, param, ctx, low=0, high=INT32_MAX, what="GPU indices")


def poll_list(ctx, param, value) -> list[int]:
    """--poll: how long (0-100) ggml's idle compute threads spin before they sleep; 101 is a usage error (llama-bench
    took it, ggml then spun as for 100)."""
    return int_ranges(value, param, ctx, low=0, high=100, what="polling levels")


def bool_list(ctx, param, value) -> list[bool]:
    """-nkvo, -embd, --cpu-strict, -mmp: llama-bench's 0|1 lists (``0,1`` runs both); anything else a usage error."""
    words = []
    for item in list_items(value, param, ctx):
        if item not in ("0", "1"):
            raise click.BadParameter(f"{item!r} is not 0 or 1", ctx, param)
        words.append(item == "1")
    return list(dict.fromkeys(words))


def cpu_mask_list(ctx, param, value) -> list[str]:
    """-C: hexadecimal CPU masks (``0x3``: CPUs 0 and 1; ``0x0``: any CPU), kept as typed: llama-bench's column."""
    from jan.engine.model import cpu_mask_bits

    masks = list_items(value, param, ctx)
    for mask in masks:
        try:
            cpu_mask_bits("", mask)
        except ValueError as exc:
            raise click.BadParameter(str(exc).removeprefix(": "), ctx, param) from None
    return list(dict.fromkeys(masks))


SPLIT = re.compile(r"[;/]+")


def split_list(ctx, param, value) -> list[tuple[float, ...]]:
    """-ts: each item GPU shares separated by / or ; (``3/1``: three quarters on GPU 0); a share that is no finite
    number >= 0 is a usage error. How many GPUs a build has is the engine's to say (it refuses more)."""
    splits = []
    for item in list_items(value, param, ctx):
        shares = []
        for part in SPLIT.split(item):
            try:
                share = float(part)
            except ValueError:
                share = math.nan
            if not math.isfinite(share) or share < 0:
                raise click.BadParameter(f"{part!r} in {item!r} is not a share (a finite number >= 0)", ctx, param)
            shares.append(share)
        splits.append(tuple(shares))
    return list(dict.fromkeys(splits))


def override_list(ctx, param, value) -> list[tuple[tuple[str, str], ...]]:
    """-ot: each comma-separated item a set of ``PATTERN=BUFFER_TYPE`` separated by ``;`` (``blk\\.0\\..*=CPU``): the
    tensors whose names match kept in that buffer type; an item without ``=``, or with an empty side, is a usage
    error. Not given: no override. The buffer types a build has are the engine's to say."""
    groups = []
    for item in list_items(value, param, ctx):
        pairs = []
        for override in item.split(";"):
            pattern, eq, buft = override.partition("=")
            if not eq or not pattern or not buft:
                raise click.BadParameter(f"{override!r} in {item!r} is not PATTERN=BUFFER_TYPE", ctx, param)
            pairs.append((pattern, buft))
        groups.append(tuple(pairs))
    return list(dict.fromkeys(groups))


def pair_list(ctx, param, value) -> list[tuple[int, int]]:
    """-pg PP,TG (given once or more): a prompt of PP tokens then TG generated, timed together as llama-bench's
    ``ppPP+tgTG``; anything but two whole numbers of at least 1 is a usage error."""
    pairs = []
    for raw in value or ():
        items = comma_items(raw, param, ctx)
        if len(items) != 2:
            raise click.BadParameter(f"expected PP,TG (two token counts), got {raw!r}", ctx, param)
        pp, tg = (int_items(item, param, ctx, low=1, what="token counts")[0] for item in items)
        pairs.append((pp, tg))
    return pairs


def choice_list(choices: tuple[str, ...], aliases: dict[str, str] | None = None):
    """A callback for a list of words (-ctk, -ctv, -fa): each item one of ``choices`` (any case), or an alias of one
    (-fa's ``1``/``0``/``-1``, llama-bench's older spelling)."""
    def check(ctx, param, value) -> list[str] | None:
        if not value:
            return None
        words = []
        known = Words(choices, aliases)  # (the words, and the error, every choice option of jan has)
        for item in list_items(value, param, ctx):
            word = known.word(item)
            if word is None:
                raise click.BadParameter(f"{item!r} is not one of {known.said()}", ctx, param)
            words.append(word)
        return list(dict.fromkeys(words))
    return check


def thread_list(ctx, param, value) -> list[int]:
    if not value:
        import os

        return [max(1, min(8, os.cpu_count() or 1))]
    from jan.engine.model import GGML_MAX_N_THREADS

    # the range of `jan run -t` and `jan serve -t`, said here of the flag (past it the load failed, after the model
    # was found, as "n_threads: must be >= -1 and <= 512", a name and a -1 the user never typed)
    return int_ranges(value, param, ctx, low=1, high=GGML_MAX_N_THREADS, what="thread counts")


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


def _at_depth(model: jan.Model, rng: random.Random, depth: int) -> list[int]:
    """The memory made ready for one repetition, untimed, as llama-bench's: emptied of the last test's tokens, then
    ``depth`` tokens evaluated (``-d``), returned so the timed prompt starts with them and evaluates only its own."""
    _forget_prompt(model, rng)
    if not depth:
        return []
    prefix = _prompt(model, rng, depth)
    model.generate(prefix, max_tokens=1, temperature=0, ignore_eos=True)
    return prefix


def _timed(model: jan.Model, rng: random.Random, depth: int, n_prompt: int, n_gen: int) -> tuple[int, int]:
    """One repetition: ``n_prompt`` new tokens evaluated after ``depth`` cached ones, then ``n_gen`` decode steps;
    (tokens timed, nanoseconds) of whichever parts are asked for, as llama-bench counts them."""
    prefix = _at_depth(model, rng, depth)
    fresh = max(1, n_prompt)  # a tg test's one-token prompt is not timed (llama-bench's tg decodes from one token)
    tokens = prefix + ([rng.randrange(model.info.n_vocab) for _ in range(fresh)] if prefix
                       else _prompt(model, rng, fresh))
    result = model.generate(tokens, max_tokens=n_gen + 1, temperature=0, ignore_eos=True)
    u = result.usage
    if depth and u.cached_tokens < depth:
        # the depth must be in the cache, not evaluated again inside the timed prompt
        raise CLIError(f"the engine kept {u.cached_tokens} of the {depth} tokens of depth (-d) in its cache")
    timed, ms = 0, 0.0
    if n_prompt:
        evaluated = u.prompt_tokens - u.cached_tokens
        if u.prompt_ms <= 0 or evaluated <= 0:
            raise CLIError("the engine reported no prompt timing")
        timed, ms = evaluated, u.prompt_ms
    if n_gen:
        # n_gen + 1 tokens: the first comes with the prompt, the next n_gen are the timed decode steps
        if u.completion_tokens < 2 or u.generation_ms <= 0:
            raise CLIError("the engine reported no generation timing")
        timed, ms = timed + u.completion_tokens - 1, ms + u.generation_ms
    return timed, int(round(ms * 1e6))


def run_pp(model: jan.Model, n_prompt: int, rng: random.Random, depth: int = 0) -> float:
    """Tokens per second of a prompt of ``n_prompt`` tokens after ``depth`` cached ones."""
    tokens, ns = _timed(model, rng, depth, n_prompt, 0)
    return tokens / (ns / 1e9)


def run_tg(model: jan.Model, n_gen: int, rng: random.Random, depth: int = 0) -> float:
    """Tokens per second of ``n_gen`` decode steps after ``depth`` cached tokens."""
    tokens, ns = _timed(model, rng, depth, 0, n_gen)
    return tokens / (ns / 1e9)


def _test_name(n_prompt: int, n_gen: int, depth: int) -> str:
    """llama-bench's name of a test: ``pp512``, ``tg128``, ``pp512+tg128``, with `` @ d4096`` at a depth."""
    name = "+".join(([f"pp{n_prompt}"] if n_prompt else []) + ([f"tg{n_gen}"] if n_gen else []))
    return name + (f" @ d{depth}" if depth else "")


def summarize(samples: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(samples)
    sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return mean, sd


#: the md table's optional columns in llama-bench's order: (heading, record key, default)
MD_COLUMNS = (
    ("n_cpu_moe", "n_cpu_moe", 0), ("cpu_mask", "cpu_mask", "0x0"), ("cpu_strict", "cpu_strict", False),
    ("poll", "poll", 50),
    ("n_batch", "n_batch", 2048), ("n_ubatch", "n_ubatch", 512), ("type_k", "type_k", "f16"),
    ("type_v", "type_v", "f16"), ("main_gpu", "main_gpu", 0), ("sm", "split_mode", "layer"),
    ("nkvo", "no_kv_offload", False), ("fa", "flash_attn", -1), ("dev", "devices", "auto"),
    ("ts", "tensor_split", "0.00"),
    ("ot", "tensor_buft_overrides", "none"), ("lm", "load_mode", "auto"), ("lazy_mode", "lazy_mode", "auto"),
    ("embd", "embeddings", False), ("nopo", "no_op_offload", 0), ("noh", "no_host", False), ("rpk", "repack", True))


MD_LEFT = ("cpu_mask", "devices", "tensor_split", "tensor_buft_overrides", "lazy_mode")


def _cell(key: str, value: Any) -> str:
    if key == "flash_attn":
        return {v: k for k, v in FLASH_ATTN.items()}.get(value, str(value))
    return str(int(value)) if isinstance(value, bool) else str(value)  # (llama-bench's 0/1)


def format_md(records: list[dict[str, Any]], build: dict[str, Any]) -> str:
    # as llama-bench: the columns of settings that differ from the defaults, or between rows (`-b 64,128` gave two
    # rows told apart by nothing)
    # (--repack's default is jan's: off on a CPU with AMX buffers, not a setting to show on every row there)
    defaults = [(name, key, extra_buffers_by_default() if key == "repack" else default)
                for name, key, default in MD_COLUMNS]
    extra = [(name, key) for name, key, default in defaults
             if any(r.get(key, default) != default for r in records) or len({r.get(key) for r in records}) > 1]
    header = ["model", "size", "params", "backend", "threads", "ngl", *(n for n, _ in extra), "test", "t/s"]
    # (llama-bench's: its text columns to the left, numbers, yes/no and -sm/-lm words to the right)
    align = ["---", "---:", "---:", "---", "---:", "---:", *("---" if key in MD_LEFT else "---:" for _, key in extra),
             "---", "---:"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in records:
        lines.append("| " + " | ".join([
            r["model"], human_bytes(r["model_size"]), _params(r["model_n_params"]), r["backends"],
            _threads(r), str(r["n_gpu_layers"]),
            *(_cell(key, r[key]) for _, key in extra), r["test"],
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
    """llama-bench's csv columns that jan has (and jan's own: model, step_threads, ...), a header first; the lists of
    samples as their values separated by spaces."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({**_bools_as_ints(r), "samples_ts": " ".join(f"{s:.3f}" for s in r["samples_ts"]),
                         "samples_ns": " ".join(str(s) for s in r["samples_ns"])})
    return out.getvalue()


def _bools_as_ints(record: dict[str, Any]) -> dict[str, Any]:
    """llama-bench's csv and sql write a yes/no column (cpu_strict, no_kv_offload, embeddings) as 0/1; json as
    false/true."""
    return {k: int(v) if isinstance(v, bool) else v for k, v in record.items()}


def format_sql(records: list[dict[str, Any]]) -> str:
    """llama-bench's sql: ``CREATE TABLE IF NOT EXISTS llama_bench`` then one ``INSERT`` a test, so that
    ``jan bench -o sql | sqlite3 results.db`` keeps runs in one table. Its columns are jan's (llama-bench's that jan
    has, and jan's own: model, jan_version, step_threads, ...); a table made by llama-bench lacks jan's own, so give
    jan's runs their own database."""
    fields = [f for f in CSV_FIELDS if not f.startswith("samples_")]
    lines = ["CREATE TABLE IF NOT EXISTS llama_bench (",
             ",\n".join(f"  {f} {SQL_TYPES.get(f, 'TEXT')}" for f in fields), ");", ""]

    def literal(value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(value) if isinstance(value, int) or math.isfinite(value) else "NULL"
        return "'" + str(value).replace("'", "''") + "'"

    for r in map(_bools_as_ints, records):
        lines.append(f"INSERT INTO llama_bench ({', '.join(fields)}) VALUES "
                     f"({', '.join(literal(r[f]) for f in fields)});")
    return "\n".join(lines) + "\n"


def render(records: list[dict[str, Any]], build: dict[str, Any], fmt: str) -> str:
    """``records`` in one of :data:`FORMATS`: json an array, jsonl one object a line (llama-bench's), csv, sql, md."""
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    if fmt == "csv":
        return format_csv(records)
    if fmt == "sql":
        return format_sql(records)
    return format_md(records, build)


@click.command()
@click.argument("models", metavar="MODEL...", nargs=-1, callback=nonempty_param)
@click.option("-m", "--model", "model_flags", multiple=True, metavar="MODEL", callback=nonempty_param,
              help="A model (an id or a .gguf path), as llama-bench's -m; give it again for more.")
@click.option("-p", "--n-prompt", "n_prompt", default=("512",), multiple=True, callback=int_list, show_default=True,
              help="Prompt tokens per pp test: a list (8,16), a range (16-64+16, 16-512*2) or the flag given again; "
                   "0 skips.")
@click.option("-n", "--n-gen", "n_gen", default=("128",), multiple=True, callback=int_list, show_default=True,
              help="Generated tokens per tg test (a list or range as -p; 0 skips).")
@click.option("-pg", "n_pg", multiple=True, callback=pair_list, metavar="PP,TG",
              help="A prompt of PP tokens then TG generated, timed together (ppPP+tgTG); give it again for more.")
@click.option("-d", "--n-depth", "n_depth", default=("0",), multiple=True, callback=int_list, show_default=True,
              help="Tokens already in the context before each test (a list or range as -p).")
@click.option("-r", "--repetitions", default=5, show_default=True, type=click.IntRange(1), help="Runs per test.")
@click.option("-t", "--threads", "threads", multiple=True, callback=thread_list,
              help="CPU threads (a list or range as -p) [default: CPU count, up to 8].")
@click.option("--ctx", "-c", "n_ctx", default=None, type=click.IntRange(64, INT32_MAX),
              help="Context size [default: enough for the largest test].")
@click.option("-b", "--batch-size", "n_batch", default=("2048",), multiple=True, callback=size_list,
              show_default=True, help="Logical batch size (a list or range as -p).")
@click.option("-ub", "--ubatch-size", "n_ubatch", default=("512",), multiple=True, callback=size_list,
              show_default=True, help="Physical batch size (a list or range as -p).")
@click.option("-ngl", "--gpu-layers", "n_gpu_layers", default=("-1",), multiple=True, callback=layer_list,
              show_default=True, help="Layers to offload to the GPU (-1: all, llama-bench's default; a list as -p).")
@click.option("-ncmoe", "--n-cpu-moe", "n_cpu_moe", default=("0",), multiple=True, callback=count_list,
              show_default=True, help="Keep the mixture-of-experts weights of the first N layers in CPU memory (a list "
                                      "as -p).")
@click.option("-sm", "--split-mode", "split_mode", multiple=True, callback=choice_list(tuple(SPLIT_MODES)),
              help="How the weights spread over several GPUs: none, layer or row or tensor, a list as -p "
                   "[default: layer].")
@click.option("-mg", "--main-gpu", "main_gpu", default=("0",), multiple=True, callback=gpu_list, show_default=True,
              help="The GPU that holds the model with -sm none (a list as -p).")
@click.option("-dev", "--device", "devices", default=("auto",), multiple=True, callback=device_list,
              show_default=True, metavar="DEV0/DEV1/...", help="The GPUs the weights may go to (auto: every one; none: "
                                                                "the CPU only; a comma-separated list of such sets).")
@click.option("-ts", "--tensor-split", "tensor_split", default=("0",), multiple=True, callback=split_list,
              show_default=True, metavar="TS0/TS1/...", help="Each GPU's share of the weights (0: by free memory; a "
                                                              "comma-separated list of splits).")
@click.option("-ot", "--override-tensor", "override_tensor", multiple=True, callback=override_list,
              metavar="PATTERN=BUFT;...", help="Keep the tensors whose names match PATTERN in buffer type BUFT "
                                               "(CPU, CUDA0, ...); a comma-separated list of such sets.")
@click.option("-nkvo", "--no-kv-offload", "no_kv_offload", default=("0",), multiple=True, callback=bool_list,
              show_default=True, help="1: keep the KV cache (and attention) on the CPU (0|1, a list as -p).")
@click.option("-embd", "--embeddings", "embeddings", default=("0",), multiple=True, callback=bool_list,
              show_default=True, help="1: the context also outputs every token's embeddings (0|1, a list as -p).")
@click.option("-lm", "--load-mode", "load_mode", multiple=True, callback=choice_list(tuple(LOAD_MODES)),
              help="How the weights are read: auto, none, mmap, mlock, mmap+mlock or dio, a list as -p "
                   "[default: auto].")
@click.option("-lzm", "--lazy-mode", "lazy_mode", multiple=True, callback=choice_list(tuple(LAZY_MODES)),
              help="Read the rows of large marked tensors on demand: on, auto or off, a list as -p [default: auto].")
@click.option("-nopo", "--no-op-offload", "no_op_offload", default=("0",), multiple=True, callback=bool_list,
              show_default=True, help="1: operations on weights in host memory stay on the CPU (0|1, a list as -p).")
@click.option("--no-host", "no_host", default=("0",), multiple=True, callback=bool_list, show_default=True,
              help="1: no pinned host buffer, so extra CPU buffer types may be used (0|1, a list as -p).")
@click.option("--repack", "repack", multiple=True, callback=bool_list,
              help="llama.cpp's repacked CPU weight layouts (0|1, a list as -p) [default: 1, except on a CPU with "
                   "AMX ones, where this llama.cpp's AMX matmul crashes off the main thread].")
@click.option("-mmp", "--mmap", "mmap", multiple=True, callback=bool_list,
              help="llama-bench's older -mmp 0|1: -lm none|mmap.")
@click.option("-C", "--cpu-mask", "cpu_mask", default=("0x0",), multiple=True, callback=cpu_mask_list,
              show_default=True, metavar="HEX", help="CPUs the compute threads may run on (bit i: CPU i; 0x0: any; "
                                                     "a list as -p).")
@click.option("--cpu-strict", "cpu_strict", default=("0",), multiple=True, callback=bool_list, show_default=True,
              help="1: one compute thread per CPU of -C, in turn (0|1, a list as -p).")
@click.option("--poll", "poll", default=("50",), multiple=True, callback=poll_list, show_default=True,
              help="How long idle compute threads spin before sleeping, 0-100 (a list as -p).")
@click.option("--prio", "prio", default=0, show_default=True, type=click.IntRange(-1, 3),
              help="Process and compute thread priority: -1 low, 0 normal, 1 medium, 2 high, 3 realtime.")
@click.option("--numa", "numa", type=Words(NUMA), default=None,
              help="llama.cpp's NUMA placement: distribute, isolate or numactl [default: off].")
@click.option("-v", "--verbose", is_flag=True, help="Print llama.cpp's log on stderr.")
@click.option("-o", "--output", "fmt", type=Words(FORMATS, FORMAT_ALIASES), default="md", show_default=True,
              help="Format of the results on stdout (llama-bench's).")
@click.option("-oe", "--output-err", "fmt_err", type=Words(FORMATS, FORMAT_ALIASES), default=None,
              help="The results on stderr too, in this format.")
@click.option("--delay", default=0.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds to wait before each test (to let the machine cool).")
@click.option("--progress", is_flag=True, help="Tell each test as it starts, on stderr.")
@click.option("--no-warmup", is_flag=True, help="Skip the warm-up run before the tests.")
@click.option("--seed", default=1234, show_default=True, type=int, help="Seed of the random prompt tokens.")
@click.option("--adaptive-threads", "adaptive_threads", default="off", show_default=True,
              type=Words(ADAPTIVE_THREADS),
              help="The thread governor (as `jan serve --adaptive-threads`). Off by default: every step gets -t "
                   "threads whatever else runs, as in llama-bench, so the two tools measure the same thing.")
@click.option("-ctk", "--cache-type-k", "cache_type_k", multiple=True, callback=choice_list(CACHE_TYPES),
              help="KV cache type for K, a list as -p [default: the model.json's cache_type_k, else f16].")
@click.option("-ctv", "--cache-type-v", "cache_type_v", multiple=True, callback=choice_list(CACHE_TYPES),
              help="KV cache type for V, a list as -p [default: the model.json's cache_type_v, else f16].")
@click.option("-fa", "--flash-attn", "flash_attn", multiple=True,
              callback=choice_list(("on", "off", "auto"), {"1": "on", "0": "off", "-1": "auto"}),
              help="Flash attention: on, off or auto (1, 0, -1), a list as -p [default: the model.json's flash_attn, "
                   "else auto].")
@connection_options
def bench(models, model_flags, n_prompt, n_gen, n_pg, n_depth, repetitions, threads, n_ctx, n_batch, n_ubatch,
          n_gpu_layers, fmt, fmt_err, delay, progress, no_warmup, seed, adaptive_threads, cache_type_k, cache_type_v,
          flash_attn, n_cpu_moe, split_mode, main_gpu, devices, tensor_split, override_tensor, no_kv_offload, embeddings,
          load_mode, lazy_mode, no_op_offload, no_host, repack, mmap, cpu_mask, cpu_strict, poll, prio, numa, verbose,
          conn: Connection) -> None:
    """Benchmark MODEL (an id or a .gguf path; several, or -m, as llama-bench's -m) in
    this process: prompt processing (pp) and generation (tg) in tokens per second,
    mean ± sd over -r runs.

    Every list option (-p, -n, -pg, -d, -t, -b, -ub, -ngl, -ctk, -ctv, -fa, -sm, -mg,
    -dev, -ts, -ot, -nkvo, -embd, -lm, -ncmoe, -lzm, -nopo, --no-host, --repack, -C,
    --cpu-strict, --poll) takes
    several values, as llama-bench's: each combination of the settings is loaded
    and runs every test.

        jan bench stories260K -p 512 -n 128 -r 5 -o md
    """
    # llama-bench's order: at each depth, every pp, then every tg, then every pp+tg
    shapes = [(p, 0) for p in n_prompt if p > 0] + [(0, n) for n in n_gen if n > 0] + list(n_pg)
    tests = [(p, n, d) for d in dict.fromkeys(n_depth) for p, n in shapes]
    # -ub's default (512) is cut to a smaller -b, as llama-bench does; an -ub the user wrote above -b is
    # refused, as n_ubatch above n_batch is everywhere else (jan.Model, model.json), not quietly lowered
    ub_given = click.get_current_context().get_parameter_source("n_ubatch") is not click.core.ParameterSource.DEFAULT
    for nb, nub in itertools.product(n_batch, n_ubatch):
        if ub_given and nub > nb:
            raise click.UsageError(f"-ub/--ubatch-size ({nub}) must not exceed -b/--batch-size ({nb}): the "
                                   "physical batch is what a logical batch is split into, so it cannot be the larger")
    if not tests:  # (the command line's own mistakes: usage errors, exit 2)
        raise click.UsageError("nothing to measure: -p and -n are both 0 and no -pg is given")
    _check_context(tests, n_ctx)
    _check_cache_attention(cache_type_v, flash_attn)
    specs = list(dict.fromkeys([*models, *model_flags]))
    if not specs:
        raise click.UsageError("give a MODEL to measure (an id or a .gguf path, as an argument or -m)")
    # every model found before any is measured: a mistyped second one failed after the first one's minutes
    resolved = [resolve_local_model(conn, spec) for spec in specs]
    # llama-bench's settings beyond jan's own, each a list, in its order of loops (outermost first)
    if repack and True in repack and not extra_buffers_by_default():
        raise CLIError("--repack 1: this CPU has llama.cpp's AMX weight buffers, whose matmul crashes off the "
                       "process's main thread (ggml-org/llama.cpp#20824), where jan computes; jan keeps them off")
    axes = {"n_cpu_moe": list(dict.fromkeys(n_cpu_moe)), "split_mode": split_mode or ["layer"],
            "lazy_mode": lazy_mode or ["auto"], "no_host": no_host, "repack": repack or [None],
            "no_op_offload": no_op_offload,
            "load_mode": list(dict.fromkeys([*(load_mode or ()), *({True: "mmap", False: "none"}[m] for m in mmap)]))
            or ["auto"],
            "main_gpu": list(dict.fromkeys(main_gpu)), "devices": devices, "tensor_split": tensor_split,
            "tensor_buft_overrides": override_tensor or [()], "embeddings": embeddings,
            "no_kv_offload": no_kv_offload, "cpu_mask": cpu_mask, "cpu_strict": cpu_strict,
            "poll": list(dict.fromkeys(poll))}
    if verbose:
        _log_llama_to_stderr()
    _set_process(prio, numa)
    records: list[dict[str, Any]] = []
    for model_json, path in resolved:
        records += _measure(model_json, path, tests, n_ctx=n_ctx, repetitions=repetitions, threads=threads,
                            n_batch=n_batch, n_ubatch=n_ubatch, ub_given=ub_given, n_gpu_layers=n_gpu_layers,
                            delay=delay, progress=progress, no_warmup=no_warmup, seed=seed,
                            adaptive_threads=adaptive_threads, cache_type_k=cache_type_k,
                            cache_type_v=cache_type_v, flash_attn=flash_attn, axes=axes, prio=prio,
                            done=len(records), total=len(resolved))
    build = build_info()
    click.echo(render(records, build, fmt), nl=False)
    if fmt_err:
        click.echo(render(records, build, fmt_err), err=True, nl=False)


def _context_needed(tests: list[tuple[int, int, int]]) -> int:
    """The context (tokens) the largest of ``tests`` (``(p, n, d)``) needs: its depth, prompt and generated tokens
    and one more (a tg test starts from one token)."""
    return max(d + max(p, 1) + n + 1 for p, n, d in tests)


def _check_context(tests: list[tuple[int, int, int]], n_ctx: int | None) -> None:
    """The tests' context against llama.cpp's int32 and a ``-c`` given: flags that contradict each other, so click's
    usage error (exit 2) before any model is found or loaded, as ``-ub`` above ``-b`` is (they were a runtime
    ``jan: error:``, exit 1, after the models had been looked up)."""
    needed = _context_needed(tests)
    if needed > INT32_MAX:
        # (past llama.cpp's int32 it was told as the engine's "n_ctx: must be ... <= 2147483647", no flag named)
        raise click.UsageError(f"these tests need a context of {needed} tokens (-d + -p/-pg + -n), more than the "
                               f"{INT32_MAX} llama.cpp takes; give smaller -p/-n/-pg/-d")
    if n_ctx is not None and n_ctx < needed:
        raise click.UsageError(f"{typed_flags()['n_ctx']} {n_ctx} is too small for these tests (needs at least "
                               f"{needed}: -d + -p/-pg + -n + 1)")


def _check_cache_attention(cache_types_v: list[str] | None, flash_attn: list[str] | None) -> None:
    """A quantized ``-ctv`` with ``-fa off`` (in any combination of their lists): flags that contradict each other,
    since llama.cpp reads a quantized V cache with flash attention only, so click's usage error (exit 2) before any
    model is looked up; it was a load's ``jan: error:`` (exit 1) naming the engine's ``flash_attn``, after the rows
    before that combination had been measured."""
    from jan.engine.kv_cache import cache_type_problem

    for type_v, attention in itertools.product(cache_types_v or (), flash_attn or ()):
        problem = cache_type_problem({}, None, type_v, {"on": True, "off": False, "auto": None}[attention])
        if problem is not None:
            flags = typed_flags()
            raise click.UsageError(f"{flags['cache_type_v']} {type_v} with {flags['flash_attn']} off: a quantized V "
                                   "cache needs flash attention (use -fa on or auto, or an f16, bf16 or f32 V cache)")


def _measure(model_json: dict[str, Any], path, tests: list[tuple[int, int, int]], *, n_ctx: int | None,
             repetitions: int, threads: list[int], n_batch: list[int], n_ubatch: list[int], ub_given: bool,
             n_gpu_layers: list[int], delay: float, progress: bool, no_warmup: bool, seed: int,
             adaptive_threads: str, cache_type_k: list[str] | None, cache_type_v: list[str] | None,
             flash_attn: list[str] | None, axes: dict[str, list], prio: int, done: int,
             total: int) -> list[dict[str, Any]]:
    """One model's records: every combination of the settings, each running every test."""
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
                 ("n_threads", "threads"), ("n_threads_batch", "threads"), ("adaptive_threads", "adaptive_threads"),
                 ("split_mode", "split_mode"), ("main_gpu", "main_gpu"), ("tensor_split", "tensor_split"),
                 ("tensor_buft_overrides", "override_tensor"), ("load_mode", "load_mode"), ("cpu_mask", "cpu_mask"),
                 ("poll", "poll"), ("prio", "prio"), ("n_cpu_moe", "n_cpu_moe"), ("lazy_mode", "lazy_mode"),
                 ("extra_buffers", "repack"), ("devices", "devices"))}}
    cache_types_k = cache_type_k or [settings.get("cache_type_k")]
    cache_types_v = cache_type_v or [settings.get("cache_type_v")]
    attentions = ([{"on": True, "off": False, "auto": None}[fa] for fa in flash_attn] if flash_attn
                  else [settings.get("flash_attn")])
    ctx_needed = _context_needed(tests)
    ctx_given = n_ctx is not None
    if n_ctx is None:
        n_ctx = min(INT32_MAX, max(256, int(math.ceil(ctx_needed / 256.0)) * 256))
    build = build_info()
    show = stderr_redraws() and not progress  # (a run counter redrawn with \r; a dumb terminal gets none)
    # llama-bench's order of loops, outermost first (its rows come in the same order)
    names = ("ngl", "n_cpu_moe", "split_mode", "load_mode", "lazy_mode", "main_gpu", "devices", "tensor_split",
             "tensor_buft_overrides", "no_host", "repack", "embeddings", "no_op_offload", "nb", "nub", "ctk", "ctv", "no_kv_offload", "fa", "nt", "cpu_mask", "cpu_strict", "poll")
    lists = {**axes, "ngl": dict.fromkeys(n_gpu_layers), "nb": dict.fromkeys(n_batch), "nub": dict.fromkeys(n_ubatch),
             "ctk": cache_types_k, "ctv": cache_types_v, "fa": attentions, "nt": dict.fromkeys(threads)}
    instances = [dict(zip(names, values)) for values in itertools.product(*(lists[n] for n in names))]
    instances = [i for i in instances if not (i["nub"] > i["nb"] and ub_given)]
    total = total * len(instances) * len(tests)
    records: list[dict[str, Any]] = []
    for inst in instances:
        ngl, nb, nub, ctk, ctv, attention, n_threads = (inst[n] for n in ("ngl", "nb", "nub", "ctk", "ctv", "fa", "nt"))
        nub = min(nub, nb)
        try:
            with interrupts_stay_on_this_thread():
                # every setting passed as llama-bench passes it, whether this build uses it or not (a GPU split on
                # a CPU-only build): the same command measures the same thing on a GPU build of jan
                loaded = jan.Model(path, model_id=model_json["id"], n_ctx=n_ctx, n_parallel=1, n_batch=nb,
                                   n_ubatch=nub, n_threads=n_threads, n_threads_batch=n_threads, n_gpu_layers=ngl,
                                   adaptive_threads=adaptive_threads, cache_type_k=ctk, cache_type_v=ctv,
                                   flash_attn=attention, split_mode=inst["split_mode"], main_gpu=inst["main_gpu"],
                                   tensor_split=inst["tensor_split"],
                                   tensor_buft_overrides=inst["tensor_buft_overrides"] or None,
                                   load_mode=inst["load_mode"], offload_kqv=not inst["no_kv_offload"],
                                   output_embeddings=inst["embeddings"], cpu_mask=inst["cpu_mask"],
                                   cpu_strict=inst["cpu_strict"], poll=inst["poll"], prio=prio,
                                   n_cpu_moe=inst["n_cpu_moe"], devices=inst["devices"], lazy_mode=inst["lazy_mode"], no_host=inst["no_host"],
                                   extra_buffers=inst["repack"], op_offload=not inst["no_op_offload"])
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
                           f"the context of {n_ctx} tokens that -p/-n/-pg/-d need: {why}; give smaller -p/-n/-pg/-d")
            raise CLIError(f"cannot load {path}: {message}") from None
        with loaded:
            info = loaded.info
            if info.n_ctx_train and n_ctx > info.n_ctx_train and not records:
                # Past its training context a model is slow (the KV cache grows) and its output
                # meaningless; say so before the minutes of measuring, not after.
                warn(f"these tests need a context of {n_ctx} tokens, more than {model_json['id']} was trained "
                     f"for ({info.n_ctx_train}); the numbers will not reflect real use")
            rng = random.Random(seed)
            if not no_warmup:
                run_pp(loaded, min(32, max(2, max((p for p, _, _ in tests), default=2))), rng)
                run_tg(loaded, 2, rng)
            for n_p, n_g, depth in tests:
                name = _test_name(n_p, n_g, depth)
                if progress:
                    click.echo(f"jan bench: test {done + len(records) + 1}/{total}: {model_json['id']} {name}, "
                               f"-t {n_threads}, -b {nb}, -ub {nub}, -ngl {ngl}", err=True)
                if delay:
                    time.sleep(delay)
                samples_ns, samples = [], []
                for rep in range(repetitions):
                    if show:
                        click.echo(f"\rjan bench: {name} t={n_threads} run {rep + 1}/{repetitions}  ",
                                   err=True, nl=False)
                    tokens, ns = _timed(loaded, rng, depth, n_p, n_g)
                    samples_ns.append(ns)
                    samples.append(tokens / (ns / 1e9))
                mean, sd = summarize(samples)
                mean_ns, sd_ns = summarize([float(ns) for ns in samples_ns])
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
                    "cpu_mask": inst["cpu_mask"],
                    "cpu_strict": inst["cpu_strict"],
                    "poll": inst["poll"],
                    "n_gpu_layers": ngl,
                    "n_cpu_moe": inst["n_cpu_moe"],
                    "split_mode": inst["split_mode"],
                    "main_gpu": inst["main_gpu"],
                    "no_kv_offload": inst["no_kv_offload"],
                    "n_batch": nb,
                    "n_ubatch": nub,
                    "n_ctx": n_ctx,
                    "type_k": (ctk or "f16").lower(),
                    "type_v": (ctv or "f16").lower(),
                    # llama-bench's int (-1 auto, 0 off, 1 on): a script reading its json reads jan's
                    "flash_attn": {True: 1, False: 0, None: -1}[attention],
                    "devices": "auto" if inst["devices"] is None else "/".join(inst["devices"]) or "none",
                    "tensor_split": _split_text(inst["tensor_split"]),
                    "tensor_buft_overrides": ";".join(f"{p}={b}" for p, b in inst["tensor_buft_overrides"]) or "none",
                    "load_mode": inst["load_mode"],
                    "lazy_mode": inst["lazy_mode"],
                    "embeddings": inst["embeddings"],
                    "no_op_offload": int(inst["no_op_offload"]),  # (an int in llama-bench's json, not a bool)
                    "no_host": inst["no_host"],
                    # what the load used: None is jan's default, on unless the CPU has AMX buffers
                    "repack": extra_buffers_by_default() if inst["repack"] is None else inst["repack"],
                    "test": name,
                    # as llama-bench counts them: a tg test's one-token start is no prompt (n_prompt 0)
                    "n_prompt": n_p,
                    "n_gen": n_g,
                    "n_depth": depth,
                    "repetitions": repetitions,
                    "test_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "avg_ns": int(round(mean_ns)),
                    "stddev_ns": int(round(sd_ns)),
                    "avg_ts": mean,
                    "stddev_ts": sd,
                    "samples_ns": samples_ns,
                    "samples_ts": samples,
                })
    if show:
        click.echo("\r" + " " * 60 + "\r", err=True, nl=False)
    return records


def _split_text(shares: tuple[float, ...]) -> str:
    """-ts as llama-bench's column writes it: each share to two decimals, / between, up to the last one above 0
    (``3/1/0``: ``3.00/1.00``; none above 0: ``0.00``)."""
    last = max((i for i, share in enumerate(shares) if share > 0), default=0)
    return "/".join(f"{share:.2f}" for share in shares[:last + 1])


def _log_llama_to_stderr() -> None:
    """-v: llama.cpp's log on stderr as it comes from the engine, every level (llama-bench's --verbose): its lines
    reach the ``jan.llama`` logger after each load and each test."""
    import logging

    logger = logging.getLogger("jan.llama")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def _set_process(prio: int, numa: str | None) -> None:
    """--prio and --numa, set once before any model loads, as llama-bench does: the process's priority (a nice
    value, as llama.cpp's common code sets it; the compute threads get theirs from the threadpool) and llama.cpp's
    NUMA placement. A priority this user may not take is an error, as llama-bench's."""
    import os

    if PRIO_NICE[prio]:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, PRIO_NICE[prio])
        except OSError as exc:
            raise CLIError(f"--prio {prio}: could not set the process priority (nice {PRIO_NICE[prio]}): "
                           f"{exc.strerror or exc}") from None
    if numa is not None:
        from jan.engine.model import init_numa

        init_numa(numa)
