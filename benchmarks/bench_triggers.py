"""A lazy grammar's cost while it waits for its trigger: tokens/s of free text under trigger patterns that never
fire, against plain output, on stories260K (the real tiny llama the tests use).

llama.cpp's lazy grammar searched the whole output with every pattern at every token until one matched: quadratic
in the output's length. jan searches its own way since 2026-12-05 (cpp/grammar_trigger.h); the engine keeps
llama.cpp's sampler as the reference (``SamplingParams.lazy_grammar_reference``, not a request option), which this
runs beside it where the build has it.

Each row is one greedy request of exactly ``--tokens`` tokens (``ignore_eos``; the prompt is one word), timed from
submit to its end; tokens/s is the tokens over that time, the best of ``--reps`` (the cells interleaved). On a tiny
model the search's share shows, but a busy host's noise is as large; ``--scan`` times the search alone instead
(``_engine.trigger_scan`` over the pieces of the same greedy output, jan's search and llama.cpp's whole-text one):
the whole output's search time in ms, the best of ``--reps``.

    python benchmarks/bench_triggers.py --tokens 1000 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jan
from jan.engine import model as engine_model

#: jan's own trigger shapes (a format's call marker; after the end of thinking) and a user's unanchored one.
PATTERNS = {
    "marker": [r"(<tool_call>)"],
    "after-think": [r"</think>[\s\S]*?(<tool_call>)"],
    "unanchored": [r"[\s\S]*?(<tool_call>)"],
}
GRAMMAR = 'root ::= "<tool_call>" [a-z]+ "</tool_call>"'


def run(model, tokens: int, patterns, reference: bool) -> float:
    real = engine_model.sampling_params

    def params(**options):
        p = real(**options)
        if reference:
            p.lazy_grammar_reference = True
        return p

    engine_model.sampling_params = params
    try:
        options = {"max_tokens": tokens, "temperature": 0, "ignore_eos": True}
        if patterns:
            options.update(grammar=GRAMMAR, grammar_triggers=patterns)
        t0 = time.perf_counter()
        out = model.generate("Once", **options)
        elapsed = time.perf_counter() - t0
    finally:
        engine_model.sampling_params = real
    assert out.usage.completion_tokens == tokens, out.usage
    return tokens / elapsed


def scan(model, args) -> None:
    out = model.generate("Once", max_tokens=max(args.tokens), temperature=0, ignore_eos=True)
    pieces = [model.token_to_piece(t, special=True).encode() for t in out.token_ids]
    print(f"{'row':<12} {'search':<10}" + "".join(f" {n:>7} tok" for n in args.tokens))
    for row in args.rows:
        if row == "plain":
            continue
        for mode in args.modes:
            cells = []
            for n in args.tokens:
                times = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    fired = jan._engine.trigger_scan(PATTERNS[row], pieces[:n], everywhere=mode == "llama.cpp")
                    times.append(time.perf_counter() - t0)
                assert fired is None
                cells.append(f" {min(times) * 1000:>7.1f} ms")
            print(f"{row:<12} {mode:<10}" + "".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, nargs="+", default=[1000, 2000])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", nargs="+", default=["plain", *PATTERNS])
    ap.add_argument("--modes", nargs="+", default=["jan", "llama.cpp"])
    ap.add_argument("--scan", action="store_true", help="time the trigger search alone")
    ap.add_argument("--model", default=os.path.join(os.environ.get("JAN_TEST_MODELS", "../shared/models"),
                                                     "stories260K.gguf"))
    args = ap.parse_args()
    has_reference = hasattr(jan._engine.SamplingParams(), "lazy_grammar_reference")
    model = jan.Model(args.model, n_ctx=max(args.tokens) + 64, n_parallel=1, n_threads=1)
    try:
        if args.scan:
            return scan(model, args)
        cells = [(row, mode) for row in args.rows for mode in (args.modes if row != "plain" else ["-"])]
        if not has_reference:  # (a build before 2026-12-05: its lazy grammar is llama.cpp's)
            cells = [(row, "llama.cpp" if mode != "-" else mode) for row, mode in cells if mode != "llama.cpp"]
        best: dict[tuple[str, str, int], float] = {}
        for _ in range(args.reps):  # (interleaved: a busy host slows every cell alike)
            for row, mode in cells:
                for n in args.tokens:
                    rate = run(model, n, PATTERNS.get(row), mode == "llama.cpp" and has_reference)
                    best[row, mode, n] = max(best.get((row, mode, n), 0.0), rate)
        print(f"{'row':<12} {'search':<10}" + "".join(f" {n:>7} tok" for n in args.tokens))
        for row, mode in cells:
            print(f"{row:<12} {mode:<10}" + "".join(f" {best[row, mode, n]:>7.0f} t/s" for n in args.tokens))
    finally:
        model.close()


if __name__ == "__main__":
    sys.exit(main())
