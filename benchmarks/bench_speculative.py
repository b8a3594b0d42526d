"""Tokens/s with and without n-gram (prompt lookup) speculative decoding on a prompt-copying task.

    python benchmarks/bench_speculative.py                       # stories260K from $JAN_TEST_MODELS
    python benchmarks/bench_speculative.py --model gemma3-270m --threads 2   # real weights (the bench extra)
    python benchmarks/bench_speculative.py --model PATH --max-tokens 200 --threads 2

The prompt holds a text twice and then its beginning again, so greedy continuation copies it: the
drafts come from the prompt. Both runs are greedy and are compared token by token (a near-tie between the two best logits may
flip under batched verification: llama.cpp's CPU matmuls are not batch-invariant).
One run each after a warm-up; the ratio is speculative / plain generation tokens per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import resolve_model  # noqa: E402

import jan  # noqa: E402

TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
        "friends. One day, she saw a big red ball under a tall tree. She ran to the tree and picked up the ball. "
        "Her mom smiled and said they could play with it together after lunch.")
PROMPT = f"{TEXT}\n{TEXT}\n{TEXT[:60]}"


def run(model: jan.Model, max_tokens: int, **spec) -> tuple[float, jan.Completion]:
    t0 = time.perf_counter()
    out = model.generate(PROMPT, max_tokens=max_tokens, temperature=0, ignore_eos=True, **spec)
    wall = time.perf_counter() - t0
    return out.usage.completion_tokens / wall, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stories260K", help="stories260K, bench-250M, gemma3-270m or a GGUF path")
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--draft-max", type=int, default=16)
    ap.add_argument("--ngram", type=int, default=3)
    args = ap.parse_args(argv)
    path = resolve_model(args.model).path
    with jan.Model(path, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads) as model:
        spec = dict(speculative="ngram", draft_max=args.draft_max, ngram=args.ngram)
        run(model, 16)  # warm-up
        plain_tps, plain = run(model, args.max_tokens)
        spec_tps, fast = run(model, args.max_tokens, **spec)
    same = fast.token_ids == plain.token_ids
    u = fast.usage
    rate = u.draft_accepted / u.draft_tokens if u.draft_tokens else 0.0
    print(f"model: {path.name}  tokens: {plain.usage.completion_tokens}  threads: {args.threads}")
    print(f"plain:       {plain_tps:10.1f} t/s")
    print(f"speculative: {spec_tps:10.1f} t/s  (drafted {u.draft_tokens}, accepted {u.draft_accepted}, {rate:.0%})")
    print(f"ratio:       {spec_tps / plain_tps:10.2f}x  greedy output identical: {same}")
    if not same:
        # Verifying drafts evaluates several positions in one batch; llama.cpp's CPU matmuls are not
        # batch-invariant, so a near-tie between the two best logits can flip (as with any batching).
        i = next(k for k, (x, y) in enumerate(zip(plain.token_ids, fast.token_ids)) if x != y)
        print(f"first difference at token {i} (check its top logprobs for a near-tie)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
