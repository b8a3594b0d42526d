"""Time to first token of short requests: one stream, and N streams sent at once, jan vs llama-server.

Each measurement is the median over ``--reps`` rounds (servers in alternating order); a round of N
concurrent streams reports its median TTFT. Requests are short (``--tokens``, default 4) so a round
measures how fast each server takes requests in, not how it streams. Each request opens its own
connection (llama-server closes a kept-alive one after a stream), as in ``bench_llama_server``. Needs
``benchmarks/build_llama_server.py``.

    python benchmarks/bench_ttft.py --model stories260K
    python benchmarks/bench_ttft.py --model gemma3-270m --streams 8 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

ORDER = ("jan", "llama-server")


async def ttft_ms(session: aiohttp.ClientSession, server: _servers.Server, n_streams: int, tokens: int) -> float:
    """Median time to first token (ms) of ``n_streams`` requests sent at once."""
    rs = await asyncio.gather(*(_servers.stream_one(session, server, f"Once upon a time {i}", tokens)
                                for i in range(n_streams)))
    return statistics.median((r["t_first"] - r["t0"]) * 1000 for r in rs)


async def measure(servers: dict[str, _servers.Server], args) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {name: {"1": [], "n": []} for name in ORDER}
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) for name in ORDER}
    try:
        for name in ORDER:  # warm up: first-request costs, pages of the weights
            await ttft_ms(sessions[name], servers[name], args.streams, args.tokens)
        for rep in range(args.reps):
            for name in ORDER if rep % 2 == 0 else ORDER[::-1]:
                results[name]["1"].append(await ttft_ms(sessions[name], servers[name], 1, args.tokens))
                results[name]["n"].append(await ttft_ms(sessions[name], servers[name], args.streams, args.tokens))
    finally:
        for session in sessions.values():
            await session.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stories260K", help="stories260K, bench-250M, gemma3-270m or a GGUF path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    bench = resolve_model(args.model)
    with _servers.both(bench.path, parallel=args.streams, ctx=args.ctx, threads=args.threads,
                       work=Path(tempfile.mkdtemp(prefix="jan-bench-ttft-"))) as servers:
        results = _servers.run(measure(servers, args))
    print("| model | measure | jan | llama-server | jan / llama-server |")
    print("|---|---|---|---|---|")
    for key, label in (("1", "1 stream: TTFT (ms)"), ("n", f"{args.streams} streams at once: median TTFT (ms)")):
        j, ls = (statistics.median(results[name][key]) for name in ORDER)
        print(f"| {bench.name} | {label} | {j:.1f} | {ls:.1f} | {j / ls:.2f}x |")


if __name__ == "__main__":
    main()
