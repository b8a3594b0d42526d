"""Write (once) and print the benchmark model.

    python benchmarks/models.py                 # cached under benchmarks/.cache or $JAN_BENCH_CACHE
    python benchmarks/models.py --cache-dir DIR
    python benchmarks/models.py --out model.gguf   # write a fresh copy to an explicit path

Prints the model's path, hyperparameters, parameter count and file size.
Needs the ``gguf`` package and the shared vocab files (``$JAN_TEST_MODELS``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from jan.testing import gguf_models
except ImportError:  # running from a checkout without jan installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from jan.testing import gguf_models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--cache-dir", type=Path, help="cache folder (default: $JAN_BENCH_CACHE or benchmarks/.cache)")
    group.add_argument("--out", type=Path, help="write the model to this path (always rewrites)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.out is not None:
        path = gguf_models.write_bench_llama(args.out)
    else:
        path = gguf_models.bench_model_path(args.cache_dir)
    elapsed = time.perf_counter() - t0

    cfg = gguf_models.BENCH_LLAMA_CONFIG
    n_params = gguf_models.gguf_param_count(path)
    print(path)
    print(
        "llama (random weights, {dtype}): n_embd={n_embd} n_layer={n_layer} n_head={n_head} "
        "n_head_kv={n_head_kv} n_ff={n_ff} n_ctx={n_ctx}, vocab {vocab}".format(vocab=gguf_models.BENCH_VOCAB, **cfg)
    )
    print(f"params: {n_params:,} ({n_params / 1e6:.1f}M)")
    print(f"size: {path.stat().st_size:,} bytes ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"ready in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
