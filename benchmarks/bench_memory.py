"""Where jan's resident memory goes, next to llama-server's: the floor its stack sets before any of jan's code.

``bench_llama_server.py`` reports one number per server (resident memory right after the model is loaded). This
script splits jan's into what a process holds after each step towards serving, so the share that is jan's own
code can be told from the share any server on this stack carries:

1. a bare Python interpreter;
2. + ``asyncio`` (which imports ``ssl``, and with it OpenSSL);
3. + the third-party libraries ``jan serve`` imports at start: aiohttp's server (its client deferred as ``jan serve``
   defers it: ``jan.server.aiohttp_import``), pydantic, click, filelock, ``importlib.metadata`` (extension discovery);
4. + ``jan._engine``: libllama, ggml and libmtmd, the native module (loaded with jan's OpenMP spin count);
5. + the model itself, loaded by ``jan.Model`` with the same slots, context, threads as both servers: weights
   (mmap'd), KV cache, compute buffers, the scheduler thread, and the engine's Python façade.

Step 5 is a process with no line of jan's server, services, store or extensions in it: the floor. Then the real
``jan serve`` (the same command ``bench_llama_server.py`` runs, measured the same way: after its ``/v1/models``
answers, and again after a streamed chat completion and a plain completion) and ``llama-server`` with the same GGUF
and settings, measured at the same two points. Each step's process is measured from outside
(psutil's RSS of the child; the child imports nothing to measure itself), after a ``gc.collect()`` and glibc's
``malloc_trim`` as ``jan serve`` does after start-up (``jan.engine.heap``).

    python benchmarks/bench_memory.py --model stories260K
    python benchmarks/bench_memory.py --model gemma3-270m
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

from jan.testing.server import free_port  # noqa: E402

#: (label, statement run in the child to reach it); each builds on the ones before it
STEPS = [
    ("bare Python", "pass"),
    ("+ asyncio (with ssl/OpenSSL)", "import asyncio"),
    ("+ aiohttp's server (its client deferred, as `jan serve` does), pydantic, click, filelock, importlib.metadata",
     "from jan.server.aiohttp_import import defer_client; defer_client(); "
     "from aiohttp import web; import pydantic, click, filelock, importlib.metadata"),
    ("+ jan._engine (libllama, ggml, libmtmd)",
     # the native module alone (``from jan import _engine`` would run jan.engine's package, the façade, too), with
     # jan's OpenMP spin count as jan.engine.openmp sets it around the load
     "import os, importlib.util; os.environ.setdefault('GOMP_SPINCOUNT', '30000'); "
     "spec = importlib.util.find_spec('jan._engine'); native = importlib.util.module_from_spec(spec); "
     "sys.modules['jan._engine'] = native; spec.loader.exec_module(native); os.environ.pop('GOMP_SPINCOUNT')"),
    ("+ the model: jan.Model (the engine's Python façade) with the servers' slots, context, threads (the floor)",
     "import jan; model = jan.Model(MODEL, n_ctx=CTX, n_parallel=PARALLEL, n_threads=THREADS)"),
]

CHILD = r"""
import ctypes, gc, sys
def settle():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
for line in sys.stdin:
    exec(line.strip())
    settle()
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"""


def steps_rss(model: Path, *, parallel: int, ctx: int, threads: int) -> list[tuple[str, float]]:
    """RSS in MiB after each of :data:`STEPS`, in one child process."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out = []
    try:
        setup = f"MODEL, CTX, PARALLEL, THREADS = {str(model)!r}, {ctx}, {parallel}, {threads}"
        for label, stmt in [("", setup)] + STEPS:
            proc.stdin.write(stmt + "\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "ok":
                raise SystemExit(f"the step {label or 'set-up'!r} failed in the child")
            time.sleep(1)  # (the model's scheduler thread settles; nothing else runs)
            if label:
                out.append((label, psutil.Process(proc.pid).memory_info().rss / 2**20))
    finally:
        proc.kill()
        proc.wait()
    return out


def first_requests(port: int, model: str) -> None:
    """A user's first requests: a streamed chat completion and a plain completion, 16 tokens each."""
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story."}],
                                                 "stream": True}),
                       ("/v1/completions", {"prompt": "Once upon a time"})):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                         data=json.dumps({"model": model, "max_tokens": 16, **body}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stories260K", help="stories260K, bench-250M, gemma3-270m or a GGUF path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot (8 slots, as bench_llama_server.py)")
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / ".cache" / "memory-bench"))
    args = ap.parse_args()
    bench = resolve_model(args.model)
    parallel = 8
    steps = steps_rss(bench.path, parallel=parallel, ctx=args.ctx, threads=args.threads)
    work = Path(args.workdir) / bench.name
    served, used = {}, {}
    for name in ("jan", "llama-server"):
        port = free_port()
        cmd = (_servers.jan_cmd(bench.path, port, parallel=parallel, ctx=args.ctx, threads=args.threads,
                                data=work / "data") if name == "jan" else
               _servers.llama_server_cmd(_servers.llama_server_binary(), bench.path, port, parallel=parallel,
                                         ctx=args.ctx, threads=args.threads))
        with _servers.running(name, cmd, port, bench.path.stem, work / f"{name}.log") as server:
            time.sleep(1)
            served[name] = server.rss_bytes() / 2**20
            # what a user's first requests add (a lazily imported module counts here, not only after load)
            first_requests(port, bench.path.stem)
            time.sleep(1)
            used[name] = server.rss_bytes() / 2**20
    ref = served["llama-server"]
    floor = steps[-1][1]
    print(f"model {bench.name}, {parallel} slots x {args.ctx} tokens, {args.threads} threads")
    print("| process | resident MiB | over llama-server |")
    print("|---|---|---|")
    for label, rss in steps:
        print(f"| {label} | {rss:.1f} | {rss - ref:+.1f} |")
    print(f"| `jan serve` after /v1/models answers | {served['jan']:.1f} | {served['jan'] - ref:+.1f} |")
    print(f"| llama-server after /v1/models answers | {ref:.1f} | |")
    print(f"| `jan serve` after a chat (streamed) and a completion | {used['jan']:.1f} | {used['jan'] - used['llama-server']:+.1f} |")
    print(f"| llama-server after a chat (streamed) and a completion | {used['llama-server']:.1f} | |")
    print(f"\njan's own code (serve minus the floor): {served['jan'] - floor:+.1f} MiB; "
          f"the floor over llama-server: {floor - ref:+.1f} MiB (issue 16's goal for the whole: +38.1 MiB, 40 MB)")


if __name__ == "__main__":
    main()
