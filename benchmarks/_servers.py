"""Starting ``jan serve`` and ``llama-server`` alike and driving them with one streaming load.

Both servers get the same GGUF, slots, context per slot, threads and flash-attention
setting (llama.cpp's "auto" for both); the load generator is the same code for both, over
the same OpenAI-style ``/v1/completions`` (or ``/v1/chat/completions``) stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_llama_server  # noqa: E402

from jan.testing.server import free_port  # noqa: E402


@dataclass
class Server:
    name: str
    base: str
    pid: int
    model_id: str

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        import psutil

        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system


def jan_cmd(model: Path, port: int, *, parallel: int, ctx: int, threads: int, data: Path) -> list[str]:
    return [sys.executable, "-m", "jan.cli", "serve", "--port", str(port), "--data-folder", str(data), "-m", str(model),
            "--parallel", str(parallel), "--ctx-size", str(ctx), "--threads", str(threads), "--log-level", "warning",
            "--no-extensions"]


def cpu_has_amx() -> bool:
    """Whether this (Linux) CPU has AMX tiles (Intel Sapphire Rapids and later)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


def llama_server_cmd(binary: Path, model: Path, port: int, *, parallel: int, ctx: int, threads: int) -> list[str]:
    # -c is the whole context (llama-server splits it over the slots); jan's --ctx-size is per slot.
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
           "-c", str(ctx * parallel), "-t", str(threads), "-tb", str(threads), "--no-webui"]
    # On an AMX CPU jan keeps llama.cpp's extra weight buffers off (their AMX matmul crashes off the main
    # thread; cpp/model.cpp), and llama-server itself dies with SIGSEGV at warm-up on Q4_K weights: the
    # same weight layout on both sides.
    return cmd + ["--no-repack"] if cpu_has_amx() else cmd


def llama_server_binary() -> Path:
    path = build_llama_server.tool_path("llama-server")
    if path is None:
        raise SystemExit("llama-server is not built yet: run `python benchmarks/build_llama_server.py` first "
                         f"(it builds into {build_llama_server.bin_dir()})")
    return path


@contextmanager
def running(name: str, cmd: list[str], port: int, model_id: str, log: Path, env: dict | None = None):
    """Start a server, wait until it answers /v1/models with 200 (model loaded), stop it after."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited early; see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not come up; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:  # noqa: BLE001 - not up yet (llama-server answers 503 while loading)
                time.sleep(0.2)
        yield Server(name, f"http://127.0.0.1:{port}", proc.pid, model_id)
    finally:
        if proc.poll() is None:  # (one that exited early has no process group left to signal)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def both(model: Path, *, parallel: int, ctx: int, threads: int, work: Path, order: tuple[str, ...] = ("jan", "llama-server"),
         jan_env: dict | None = None, jan_args: list[str] | None = None):
    """Both servers up at once (an idle server takes no CPU), as {name: Server}. ``jan_env``: extra
    environment for jan's process only (e.g. ``GOMP_SPINCOUNT=0`` to try OpenMP's waiting policy);
    ``jan_args``: extra ``jan serve`` arguments (e.g. ``--adaptive-threads=off``)."""
    binary = llama_server_binary()
    model_id = model.stem
    ports = {name: free_port() for name in order}
    cmds = {"jan": jan_cmd(model, ports["jan"], parallel=parallel, ctx=ctx, threads=threads, data=work / "data")
            + list(jan_args or ()),
            "llama-server": llama_server_cmd(binary, model, ports["llama-server"], parallel=parallel, ctx=ctx,
                                             threads=threads)}
    with running("jan", cmds["jan"], ports["jan"], model_id, work / "jan.log", jan_env) as a, \
            running("llama-server", cmds["llama-server"], ports["llama-server"], model_id, work / "llama-server.log") as b:
        yield {"jan": a, "llama-server": b}


async def stream_one(session: aiohttp.ClientSession, server: Server, prompt: str, n: int, *, chat: bool = False,
                     temperature: float = 0.0) -> dict:
    """One streamed request of exactly ``n`` tokens (EOS ignored; greedy unless ``temperature``). Times:
    sent, first and last content chunk (perf_counter seconds)."""
    body = {"model": server.model_id, "max_tokens": n, "temperature": temperature, "stream": True, "ignore_eos": True}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    t0 = time.perf_counter()
    t_first = t_last = None
    finish = None
    async with session.post(server.base + path, json=body) as resp:
        if resp.status != 200:
            raise SystemExit(f"{server.name}: HTTP {resp.status}: {(await resp.text())[:300]}")
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:  # an error event inside a 200 stream
                raise SystemExit(f"{server.name}: the stream failed: {json.dumps(chunk)[:500]}")
            now = time.perf_counter()
            for choice in chunk.get("choices", []):
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                if text:
                    t_first = t_first or now
                    t_last = now
                finish = choice.get("finish_reason") or finish
    if t_first is None:
        raise SystemExit(f"{server.name}: no tokens streamed ({path}, finish_reason {finish!r})")
    return {"t0": t0, "t_first": t_first, "t_last": t_last, "n": n, "finish": finish}


async def streams(server: Server, prompts: list[str], n: int, *, chat: bool = False, temperature: float = 0.0) -> dict:
    """``len(prompts)`` concurrent streams: aggregate tokens/s (all tokens over the wall time),
    median time to first token (ms), and the server's CPU seconds per generated token."""
    cpu0 = server.cpu_seconds()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream_one(session, server, p, n, chat=chat, temperature=temperature)
                                         for p in prompts))
        wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    early = [r["finish"] for r in results if r["finish"] != "length"]
    if early:  # the rates below count n tokens a stream: one that stopped short would overstate them
        raise SystemExit(f"{server.name}: {len(early)} stream(s) ended before {n} tokens (finish_reason {early[0]!r})")
    ttfts = sorted((r["t_first"] - r["t0"]) * 1000 for r in results)
    total = n * len(prompts)
    return {"tps": total / wall, "ttft_ms": ttfts[len(ttfts) // 2], "cpu_ms_per_token": cpu * 1000 / total,
            "wall": wall}


def run(coro):
    return asyncio.run(coro)
