"""`jan bench` against llama.cpp's own `llama-bench`: the same model, tests and thread counts.

Both tools load the model in their own process and time ``ppN`` (a prompt of N tokens, nothing from the
KV cache) and ``tgN`` (N one-token decode steps) the same way, so their tokens/s should agree: this is the
check that `jan bench` reports what llama.cpp's reference tool reports for the llama.cpp jan links (issue
16 asks for agreement within 5%). Each round runs each tool once (the order rotating between rounds,
so a host that slows down mid-run hurts all alike); the table shows the median of the rounds' means, and beside
it the ratio of each tool's fastest repetition over all rounds: on a shared host a repetition's time swings by
±20-50% with what else runs (a mean of 5 cannot tell 5% apart there), while the fastest one is the tool's own speed
with the least of the host in it (as ``timeit`` reports its best).

Settings shared by both: ``-p``, ``-n``, ``-r``, ``-t``, ``-b``/``-ub`` left at both tools' defaults (2048/512),
flash attention at llama.cpp's "auto" (both defaults). On a CPU with AMX, llama-bench runs with
``--repack 0`` because jan keeps llama.cpp's extra weight buffers off there (cpp/model.cpp). jan's thread
governor is turned off for the run (``JAN_ADAPTIVE_THREADS`` is not an option of `jan bench`; it measures
with ``adaptive_threads="off"`` always, see jan/cli/bench.py), so a quiet machine is what both measure.
One difference stays by design: jan runs a decode step on no more threads than its work is worth
(cpp/step_threads.h), so a tiny model's ``tg`` steps (stories260K: ~0.3 M multiply-adds per token) take
one thread whatever ``-t`` says, where llama-bench takes all of them: compare such a model at ``-t 1``.

Two llama-benches: llama.cpp's tool as ``build_llama_server.py`` builds it for the servers' comparison (linked
statically), and the same tool built against shared libraries (llama.cpp's CMake default) and run on the very
libllama/libggml ``.so`` files jan's engine loads (the llama-cpp-python wheel's, through ``LD_LIBRARY_PATH``). The
second is the check that `jan bench` reports what llama-bench reports *for the llama.cpp jan links*; the first
adds the difference between the two builds of the same source (a static build's steps are 3-7% faster on a tiny
model's tg, benchmarks/FINDINGS.md "jan bench vs llama-bench").

    python benchmarks/build_llama_server.py          # builds both llama-benches too (once, ~13 minutes)
    python benchmarks/bench_llama_bench.py --model stories260K --threads 1
    python benchmarks/bench_llama_bench.py --model gemma3-270m --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
import build_llama_server  # noqa: E402
from _common import markdown_table, resolve_model  # noqa: E402


STATIC, SHARED = "llama-bench", "llama-bench on jan's libllama"


def llama_bench(model: Path, args, which: str = STATIC) -> dict[str, tuple[float, list[float]]]:
    """Mean tokens/s and each repetition's, per test name ("pp512", "tg128"), from one llama-bench run:
    ``which`` is :data:`STATIC` (the static build) or :data:`SHARED` (the shared build on jan's libraries)."""
    env = None
    if which == SHARED:
        found = build_llama_server.shared_bench_command()
        if found is None:
            raise SystemExit("the shared llama-bench is not built: run python benchmarks/build_llama_server.py")
        cmd, env = found
    else:
        binary = build_llama_server.tool_path("llama-bench")
        if binary is None:
            raise SystemExit("llama-bench is not built: run python benchmarks/build_llama_server.py first")
        cmd = [str(binary)]
    cmd += ["-m", str(model), "-p", str(args.n_prompt), "-n", str(args.n_gen), "-r", str(args.reps),
            "-t", str(args.threads), "-o", "json"]
    if _servers.cpu_has_amx():
        cmd += ["--repack", "0"]
    return _results(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def _results(out: str) -> dict[str, tuple[float, list[float]]]:
    """llama-bench's json, read the same way for both tools (jan bench writes its keys with their meanings)."""
    results = {}
    for rec in json.loads(out):
        name = f"pp{rec['n_prompt']}" if rec["n_gen"] == 0 else f"tg{rec['n_gen']}"
        results[name] = (float(rec["avg_ts"]), [float(x) for x in rec["samples_ts"]])
    return results


def jan_bench(model: Path, args, data: Path) -> dict[str, tuple[float, list[float]]]:
    """Mean tokens/s and each repetition's, per test name, from one `jan bench` run (in a data folder of its own)."""
    cmd = [sys.executable, "-m", "jan", "bench", str(model), "-p", str(args.n_prompt), "-n", str(args.n_gen),
           "-r", str(args.reps), "-t", str(args.threads), "-o", "json"]
    env = {**os.environ, "JAN_DATA_FOLDER": str(data)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return _results(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stories260K", help="stories260K, bench-250M, gemma3-270m or a GGUF path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5, help="repetitions inside each tool's run (-r)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tool, the order rotating")
    args = ap.parse_args()
    model = resolve_model(args.model)
    tools = ("jan bench", STATIC, SHARED)
    runs: dict[str, list[dict[str, tuple[float, list[float]]]]] = {tool: [] for tool in tools}
    with tempfile.TemporaryDirectory(prefix="jan-bench-data-") as data:
        for rnd in range(args.rounds):
            # each round in another order (a rotation), so a host that slows down mid-run hurts every tool alike
            for tool in tools[rnd % 3:] + tools[:rnd % 3]:
                runs[tool].append(jan_bench(model.path, args, Path(data)) if tool == "jan bench"
                                  else llama_bench(model.path, args, tool))
    load = os.getloadavg()[0]
    rows = []
    tests = ([f"pp{args.n_prompt}"] if args.n_prompt else []) + ([f"tg{args.n_gen}"] if args.n_gen else [])
    for test in tests:  # (-p 0 or -n 0 runs no such test in either tool)
        jan_ts = statistics.median(r[test][0] for r in runs["jan bench"])
        jan_best = max(x for r in runs["jan bench"] for x in r[test][1])
        for ref in (STATIC, SHARED):
            ref_ts = statistics.median(r[test][0] for r in runs[ref])
            ref_best = max(x for r in runs[ref] for x in r[test][1])
            ratio, best_ratio = jan_ts / ref_ts, jan_best / ref_best
            rows.append([test, ref, f"{jan_ts:,.1f}", f"{ref_ts:,.1f}", f"{ratio:.3f}",
                         "within 5% ✓" if abs(ratio - 1) <= 0.05 else "✗",
                         f"{jan_best:,.1f} / {ref_best:,.1f} = {best_ratio:.3f}",
                         "within 5% ✓" if abs(best_ratio - 1) <= 0.05 else "✗"])
    print(f"model {model.name}, {args.threads} thread(s), -r {args.reps}, {args.rounds} rounds; "
          f"load average at the end {load:.2f}")
    print(markdown_table(["test", "against", "jan bench t/s", "llama-bench t/s", "jan / llama-bench", "agreement",
                          "fastest repetition, jan / llama-bench", "agreement"], rows))

if __name__ == "__main__":
    main()
