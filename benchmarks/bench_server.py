"""Serving benchmark: jan's HTTP server vs its own engine, and vs llama-cpp-python's server.

Measured in one run, servers in their own processes, this script as the client:

1. **HTTP overhead**: one streaming completion over HTTP (tokens/s between the first and the last
   streamed token) vs the same generation straight from ``jan.Model`` in this process
   (goal ≥ 0.9× on the 245M model, ≥ 0.65× on stories260K, where per-token cost dominates).
2. **Concurrency**: 8 streaming clients at once, aggregate generated tokens/s, for ``jan serve
   --parallel 8`` and for ``python -m llama_cpp.server`` (llama-cpp-python[server]) on the same
   model and threads; also how many of the 8 requests completed with all their tokens
   (goal ≥ 3×, all of ours complete).

    python benchmarks/bench_server.py                 # both models
    python benchmarks/bench_server.py --model stories --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

from jan.testing.server import free_port  # noqa: E402

PROMPT = "Once upon a time"
EOS_BAN = {"2": -100}  # both models use the llama SentencePiece vocab: EOS is token 2


@contextmanager
def server_process(name: str, cmd: list[str], port: int, log: Path):
    """The server up (its /v1/models answers), as its base URL; stopped after (the same start and stop as
    the llama-server comparison's)."""
    with _servers.running(name, cmd, port, "", log) as server:
        yield server.base


def jan_server_cmd(model: Path, port: int, args, data: Path) -> list[str]:
    return [sys.executable, "-m", "jan.cli", "serve", "--port", str(port), "--data-folder", str(data),
            "-m", str(model), "--parallel", "8", "--ctx-size", str(args.ctx), "--threads", str(args.threads),
            "--log-level", "warning"]


def llama_cpp_server_cmd(model: Path, port: int, args) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
            "--host", "127.0.0.1", "--n_ctx", str(args.ctx), "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads), "--flash_attn", "false"]


async def stream_one(session: aiohttp.ClientSession, base: str, model_id: str, n: int, prompt: str) -> dict:
    body = {"model": model_id, "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
            "logit_bias": EOS_BAN}
    t_first = t_last = None
    pieces = 0
    finish = None
    try:
        async with session.post(base + "/v1/completions", json=body) as resp:
            if resp.status != 200:
                return {"ok": False, "tokens": 0, "error": f"HTTP {resp.status}"}
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                pieces += 1
                for choice in chunk.get("choices", []):
                    finish = choice.get("finish_reason") or finish
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return {"ok": False, "tokens": 0, "error": str(exc)}
    return {"ok": finish == "length", "finish": finish, "t_first": t_first, "t_last": t_last, "pieces": pieces}


async def tokens_of(session, base, model_id, prompt, n) -> int:
    """Completion tokens of the same request, non-streamed (to count tokens, not chunks)."""
    body = {"model": model_id, "prompt": prompt, "max_tokens": n, "temperature": 0, "logit_bias": EOS_BAN}
    async with session.post(base + "/v1/completions", json=body) as resp:
        return (await resp.json())["usage"]["completion_tokens"]


async def one_stream_tps(base: str, model_id: str, n: int) -> float:
    """Tokens over the wall time from sending the request to the last streamed token."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        t0 = time.perf_counter()
        r = await stream_one(session, base, model_id, n, PROMPT)
        if not r["ok"]:
            raise SystemExit(f"stream failed: {r}")
        return n / (r["t_last"] - t0)


async def concurrent(base: str, model_id: str, n: int, clients: int) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1200)) as session:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream_one(session, base, model_id, n, f"{PROMPT} {i}")
                                         for i in range(clients)))
        wall = time.perf_counter() - t0
    done = sum(1 for r in results if r["ok"])
    return {"wall": wall, "completed": done, "tps": done * n / wall}


def direct_tps(model, n: int) -> float:
    """The same measure straight from the engine: call to last streamed chunk."""
    t0 = time.perf_counter()
    for _ in model.stream(PROMPT, max_tokens=n, temperature=0, logit_bias={2: -100}):
        pass
    return n / (time.perf_counter() - t0)


def run_model(name: str, args) -> list[dict]:
    bench = resolve_model(name)
    model_id = bench.path.stem
    small = bench.name == "stories260K"
    n_one = (256 if args.quick else 1024) if small else (16 if args.quick else 64)
    n_conc = (64 if args.quick else 256) if small else (8 if args.quick else 32)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    import jan

    http, direct = [], []
    port = free_port()
    engine = jan.Model(bench.path, n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads)
    with server_process("jan", jan_server_cmd(bench.path, port, args, work / "data"), port, work / "jan.log") as base:
        asyncio.run(one_stream_tps(base, model_id, min(n_one, 32)))  # warm up both
        direct_tps(engine, min(n_one, 32))
        for rep in range(args.reps):
            # alternate which goes first, so drift hits both
            if rep % 2:
                direct.append(direct_tps(engine, n_one))
                http.append(asyncio.run(one_stream_tps(base, model_id, n_one)))
            else:
                http.append(asyncio.run(one_stream_tps(base, model_id, n_one)))
                direct.append(direct_tps(engine, n_one))
        engine.close()
        ours = [asyncio.run(concurrent(base, model_id, n_conc, 8)) for _ in range(max(1, args.reps // 2))]
    rows.append({"model": bench.name, "test": f"1 stream, {n_one} tokens: HTTP vs direct",
                 "jan": statistics.median(http), "other": statistics.median(direct), "ratio_label": "HTTP/direct"})

    port = free_port()
    with server_process("llama-cpp-python", llama_cpp_server_cmd(bench.path, port, args), port, work / "llama_cpp.log") as base:
        theirs = [asyncio.run(concurrent(base, model_id, n_conc, 8)) for _ in range(max(1, args.reps // 2))]
    rows.append({"model": bench.name, "test": f"8 streams x {n_conc} tokens: aggregate t/s",
                 "jan": statistics.median(r["tps"] for r in ours),
                 "other": statistics.median(r["tps"] for r in theirs), "ratio_label": "jan/llama-cpp-python server",
                 "jan_completed": min(r["completed"] for r in ours),
                 "other_completed": min(r["completed"] for r in theirs)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="stories260K, bench-250M or a GGUF path (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot (jan) / total (llama-cpp-python)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / ".cache" / "server-bench"))
    args = ap.parse_args()
    rows = []
    for name in args.model or ["stories260K", "bench-250M"]:
        rows += run_model(name, args)
    print("| model | test | jan | reference | ratio | completed (jan / ref) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        done = f"{r['jan_completed']}/8 / {r['other_completed']}/8" if "jan_completed" in r else ""
        print(f"| {r['model']} | {r['test']} | {r['jan']:.1f} t/s | {r['other']:.1f} t/s | "
              f"{r['jan'] / r['other']:.2f}x ({r['ratio_label']}) | {done} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
