"""jan serve vs llama-server (built from the same llama.cpp commit) under the same streaming load.

Needs ``python benchmarks/build_llama_server.py`` first (an optional, cached build). Both
servers load the same GGUF with the same slots (8), context per slot, threads and flash
attention ("auto", both servers' default) and are driven by the same client code:

- **resident memory** of the server process right after the model is loaded;
- **1 stream**: time to first token (short prompt) and decode tokens/s (tokens after the
  first over the time between the first and the last streamed token);
- **8 streams**: aggregate tokens/s (all tokens over the wall time), median TTFT, and the
  server's CPU time per generated token;
- **chat**: 1 and 8 streams again over ``/v1/chat/completions`` (the chat template rendered per request);
- **prefix**: TTFT of a ~1,500-token prompt (cold), then of a follow-up sharing that prefix.

Rows are jan / llama-server ratios from one run; the order of the two servers alternates
per test. Absolute numbers only mean something next to each other.

    python benchmarks/bench_llama_server.py --model stories260K
    python benchmarks/bench_llama_server.py --model bench-250M --tokens 32 --tokens-8 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

PROMPT = "Once upon a time"
ORDER = ("jan", "llama-server")


def long_prompt(words: int) -> str:
    base = ("Lily and Tom went to the park with their dog Max. They played with a red ball, ran around the big "
            "tree and sat on a bench to eat apples. ")
    text = ""
    while len(text.split()) < words:
        text += base
    return text


def measure(servers: dict, args) -> dict[str, dict]:
    out: dict[str, dict] = {name: {} for name in ORDER}
    for name in ORDER:  # right after load, before any request
        out[name]["rss_mib"] = servers[name].rss_bytes() / 2**20
    for name in ORDER:  # warm up: page the weights in, first-request costs
        _servers.run(_servers.streams(servers[name], [PROMPT], 8))
    for name in ORDER:  # the chat path's first request too (jan compiles the chat template on first use)
        _servers.run(_servers.streams(servers[name], [PROMPT], 8, chat=True))
    tests = [
        ("1 stream", lambda s: _servers.run(_servers.streams(s, [PROMPT], args.tokens))),
        ("8 streams", lambda s: _servers.run(_servers.streams(s, [f"{PROMPT} {i}" for i in range(8)], args.tokens_8))),
        # the same over /v1/chat/completions: the chat template rendered for every request (both servers fall
        # back to ChatML for a model without a template of its own, as stories260K and Gemma 3 270M base are)
        ("chat, 1 stream", lambda s: _servers.run(_servers.streams(s, [PROMPT], args.tokens, chat=True))),
        ("chat, 8 streams", lambda s: _servers.run(_servers.streams(s, [f"{PROMPT} {i}" for i in range(8)],
                                                                    args.tokens_8, chat=True))),
    ]
    for i, (label, fn) in enumerate(tests):
        order = ORDER if i % 2 == 0 else ORDER[::-1]
        for name in order:
            reps = [fn(servers[name]) for _ in range(args.reps)]
            out[name][label] = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    # prefix reuse: a cold long prompt, then a follow-up with the same prefix and a new tail
    prefix = long_prompt(args.prefix_words)
    for j, name in enumerate(ORDER[::-1]):
        s = servers[name]
        cold = _servers.run(_servers.streams(s, [prefix + f" Story {j}: once"], 4))
        warm = _servers.run(_servers.streams(s, [prefix + f" Story {j}: once upon a time, the dog"], 4))
        out[name]["prefix"] = {"cold_ttft_ms": cold["ttft_ms"], "warm_ttft_ms": warm["ttft_ms"]}
    return out


def rows_for(model: str, r: dict) -> list[tuple[str, str, float, float]]:
    j, l = r["jan"], r["llama-server"]
    rows = [
        ("resident memory after load (MiB)", "mem", j["rss_mib"], l["rss_mib"]),
        ("1 stream: TTFT (ms)", "ttft", j["1 stream"]["ttft_ms"], l["1 stream"]["ttft_ms"]),
        ("1 stream: tokens/s (request to last token)", "tps", j["1 stream"]["tps"], l["1 stream"]["tps"]),
        ("8 streams: aggregate tokens/s", "tps", j["8 streams"]["tps"], l["8 streams"]["tps"]),
        ("8 streams: median TTFT (ms)", "ttft", j["8 streams"]["ttft_ms"], l["8 streams"]["ttft_ms"]),
        ("8 streams: server CPU ms per token", "cpu", j["8 streams"]["cpu_ms_per_token"],
         l["8 streams"]["cpu_ms_per_token"]),
        ("chat, 1 stream: TTFT (ms)", "ttft", j["chat, 1 stream"]["ttft_ms"], l["chat, 1 stream"]["ttft_ms"]),
        ("chat, 1 stream: tokens/s", "tps", j["chat, 1 stream"]["tps"], l["chat, 1 stream"]["tps"]),
        ("chat, 8 streams: aggregate tokens/s", "tps", j["chat, 8 streams"]["tps"], l["chat, 8 streams"]["tps"]),
        ("chat, 8 streams: median TTFT (ms)", "ttft", j["chat, 8 streams"]["ttft_ms"],
         l["chat, 8 streams"]["ttft_ms"]),
        ("long prompt (~1,450 tokens): TTFT cold (ms)", "ttft", j["prefix"]["cold_ttft_ms"], l["prefix"]["cold_ttft_ms"]),
        ("same prefix, new tail: TTFT (ms)", "ttft", j["prefix"]["warm_ttft_ms"], l["prefix"]["warm_ttft_ms"]),
    ]
    return [(model, *row) for row in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="stories260K, bench-250M or a GGUF path (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot")
    ap.add_argument("--tokens", type=int, default=256, help="tokens of the 1-stream test")
    ap.add_argument("--tokens-8", type=int, default=128, help="tokens per stream of the 8-stream test")
    ap.add_argument("--prefix-words", type=int, default=750, help="words of the long prompt (~1,450 stories260K tokens)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / ".cache" / "llama-server-bench"))
    args = ap.parse_args()
    results = {}
    rows = []
    for spec in args.model or ["stories260K"]:
        bench = resolve_model(spec)
        t0 = time.time()
        with _servers.both(bench.path, parallel=8, ctx=args.ctx, threads=args.threads,
                           work=Path(args.workdir) / bench.name) as servers:
            results[bench.name] = measure(servers, args)
        rows += rows_for(bench.name, results[bench.name])
        print(f"# {bench.name}: {time.time() - t0:.0f} s", file=sys.stderr)
    print("| model | measure | jan | llama-server | jan / llama-server |")
    print("|---|---|---|---|---|")
    for model, label, _kind, a, b in rows:
        print(f"| {model} | {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
