"""jan serve vs llama-server with k CPU-bound processes running beside them (k = 0, 1, 2).

A "hog" is a Python process spinning in a loop, bounded in time (``--hog-seconds``, killed
when its round ends anyway), like a browser tab or a compile on a user's laptop. For every
k, the hogs start, then both servers (up at once, idle in turn) generate the same streamed
greedy request of ``--tokens`` tokens, in alternating order; tokens/s is all tokens over the
time from sending the request to the last token. Needs ``benchmarks/build_llama_server.py``.

Reported per k: jan t/s, llama-server t/s, jan / llama-server, and jan / jan at k = 0
(the issue's goals: ≥ 1.0× llama-server with 1 and 2 hogs; ≥ 0.5× its quiet speed with 1).

    python benchmarks/bench_contention.py --model stories260K
    python benchmarks/bench_contention.py --model bench-250M --tokens 24 --reps 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

from jan.testing.cpu_hogs import cpu_hogs

PROMPT = "Once upon a time"
ORDER = ("jan", "llama-server")


@contextmanager
def hogs(k: int, seconds: float):
    """k busy-looping processes, each ending by itself after ``seconds`` at the latest."""
    with cpu_hogs(k, seconds):
        time.sleep(0.5 if k else 0)  # let the scheduler see them running
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stories260K", help="stories260K, bench-250M or a GGUF path")
    ap.add_argument("--threads", type=int, default=2, help="generation threads, both servers")
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--streams", type=int, default=1, help="concurrent streams per measurement")
    ap.add_argument("--hogs", default="0,1,2", help="k values")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--hog-seconds", type=float, default=120.0, help="upper bound on each hog's life")
    ap.add_argument("--jan-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for jan's server only, e.g. GOMP_SPINCOUNT=0 (OpenMP waits passively)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy (jan keeps greedy output load-independent, see --adaptive-threads); "
                         "above: sampled without a seed, as a chat client sends")
    ap.add_argument("--jan-arg", action="append", default=[], metavar="ARG",
                    help="an extra `jan serve` argument, e.g. --jan-arg=--adaptive-threads=always")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / ".cache" / "contention-bench"))
    args = ap.parse_args()
    bench = resolve_model(args.model)
    ks = [int(k) for k in args.hogs.split(",")]
    prompts = [f"{PROMPT} {i}" for i in range(args.streams)] if args.streams > 1 else [PROMPT]
    results: dict[int, dict[str, float]] = {}
    with _servers.both(bench.path, parallel=args.parallel, ctx=args.ctx, threads=args.threads,
                       work=Path(args.workdir) / bench.name,
                       jan_env=dict(e.split("=", 1) for e in args.jan_env), jan_args=args.jan_arg) as servers:
        for name in ORDER:  # warm up
            _servers.run(_servers.streams(servers[name], prompts, 8))
        for i, k in enumerate(ks):
            tps: dict[str, list[float]] = {name: [] for name in ORDER}
            with hogs(k, args.hog_seconds):
                for rep in range(args.reps):
                    order = ORDER if (i + rep) % 2 == 0 else ORDER[::-1]
                    for name in order:
                        tps[name].append(_servers.run(_servers.streams(servers[name], prompts, args.tokens,
                                                                       temperature=args.temperature))["tps"])
            results[k] = {name: statistics.median(v) for name, v in tps.items()}
            print(f"# k={k}: {results[k]}", file=sys.stderr)
    quiet = results.get(0, {}).get("jan")
    print("| model | CPU hogs | jan t/s | llama-server t/s | jan / llama-server | jan / jan quiet |")
    print("|---|---|---|---|---|---|")
    for k in ks:
        j, l = results[k]["jan"], results[k]["llama-server"]
        own = f"{j / quiet:.2f}x" if quiet else "-"
        print(f"| {bench.name} | {k} | {j:.1f} | {l:.1f} | {j / l:.2f}x | {own} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
