"""Prompt-processing and generation tokens/s: jan vs llama-cpp-python, same model, same run.

    python benchmarks/bench_engine.py                      # stories260K and the ~250M F16 llama
    python benchmarks/bench_engine.py --quick              # smoke run (few tokens, 2 reps)
    python benchmarks/bench_engine.py --models stories260K --reps 9 --json out.json
    python benchmarks/bench_engine.py --threads 2          # both engines get 2 threads

For every model both engines load the same file with the same n_ctx, n_batch
(= n_ubatch), thread counts and flash-attention setting. Each repetition runs
one engine then the other (the order alternates), each with fresh random
prompt tokens that share no prefix with anything evaluated before, so neither
side reuses a cache. The tables show medians over the repetitions and the
ratio jan / llama-cpp-python (> 1: jan is faster).

- ``ppN``: an N-token prompt evaluated and one token sampled; tokens/s =
  N / (time from submitting to receiving that token).
- ``tgN``: N tokens generated greedily (EOS ignored) after a short prompt;
  tokens/s counts the tokens received after the first one over the time
  between receiving the first and the last, so prompt processing is excluded.

- ``tgN stream``: the same generation, but llama-cpp-python runs its
  streaming text API, ``create_completion(stream=True)`` with EOS banned by
  ``logit_bias`` -- the feature-for-feature counterpart of ``Model.stream``
  (text chunks, detokenization, stop handling per token).

Both sides are timed from the caller's Python code: jan always through
``Model.stream`` (its public streaming API); llama-cpp-python through
``Llama.generate`` (its lowest-level token loop: token ids only, no
detokenization -- the strictest baseline) except in ``tgN stream``. The
``jan engine`` column is jan's own engine-side number (``Usage``) for the
same runs: the gap to ``jan t/s`` is the cost of delivering tokens to Python.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DEFAULT_MODELS = ("stories260K", "bench-250M")
# Generation lengths per model: the 250M model runs ~60 tokens/s on one core.
TG_TOKENS = {"stories260K": 128, "bench-250M": 64}
TG_TOKENS_DEFAULT = 64
TG_PROMPT = 8  # prompt length of the tg test
GOALS = {"bench-250M": 1.0, "stories260K": 1.5}  # tg ratio jan / llama-cpp-python


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma-separated: stories260K, bench-250M (short: stories, bench) or GGUF paths")
    ap.add_argument("--pp", default=None, help="prompt lengths, comma-separated (default 128,512; quick 64)")
    ap.add_argument("--tg", type=int, default=None,
                    help="tokens to generate (default 128 on stories260K, 64 on bench-250M; quick 16)")
    ap.add_argument("--n-ctx", type=int, default=1024, help="context size, both engines (default 1024)")
    ap.add_argument("--no-stream-test", action="store_true",
                    help="skip the 'tgN stream' test (llama-cpp-python's create_completion(stream=True))")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.reps = min(args.reps, 2)
    args.pp_sizes = [int(x) for x in (args.pp or ("64" if args.quick else "128,512")).split(",") if x]
    return args


def tg_tokens(args: argparse.Namespace, name: str) -> int:
    if args.tg:
        return args.tg
    if args.quick:
        return 16
    return TG_TOKENS.get(name, TG_TOKENS_DEFAULT)


def bench_model(bm: C.BenchModel, args: argparse.Namespace) -> list[dict]:
    n_tg = tg_tokens(args, bm.name)
    need = max(max(args.pp_sizes) + 1, TG_PROMPT + n_tg)
    if need > args.n_ctx:
        raise SystemExit(f"--n-ctx {args.n_ctx} is too small: the tests need {need} tokens")

    jan_model = C.load_jan(bm.path, args, n_ctx=args.n_ctx)
    llm = C.load_llama_cpp(bm.path, args, n_ctx=args.n_ctx)
    try:
        n_vocab = jan_model.info.n_vocab
        if llm.n_vocab() != n_vocab:
            raise SystemExit(f"{bm.name}: vocab sizes differ ({n_vocab} vs {llm.n_vocab()})")
        prompts = C.PromptMaker(n_vocab, args.seed)

        # Warm-up (page the weights in, build the graphs once); not timed.
        for _ in range(2):
            C.run_jan(jan_model, prompts(TG_PROMPT), 4)
            C.run_llama_cpp(llm, prompts(TG_PROMPT), 4)
        C.run_jan(jan_model, prompts(max(args.pp_sizes)), 1)
        C.run_llama_cpp(llm, prompts(max(args.pp_sizes)), 1)

        tests = [(f"pp{n}", n, 1, "generate") for n in args.pp_sizes] + [(f"tg{n_tg}", TG_PROMPT, n_tg, "generate")]
        if not args.no_stream_test:
            tests.append((f"tg{n_tg} stream", TG_PROMPT, n_tg, "completion"))
        rows = []
        for test, n_prompt, n_gen, lcp_api in tests:
            jan_runs: list[C.TimedRun] = []
            lcp_runs: list[C.TimedRun] = []
            for rep in range(args.reps):
                prompt = prompts(n_prompt)  # same tokens for both, new every repetition
                order = ("jan", "lcp") if rep % 2 == 0 else ("lcp", "jan")
                for who in order:
                    if who == "jan":
                        # token ids vs token ids: jan's non-streaming generate(); text chunks vs text: stream()
                        run = C.run_jan(jan_model, prompt, n_gen) if lcp_api == "completion" or n_gen == 1 \
                            else C.run_jan_generate(jan_model, prompt, n_gen)
                        if run.cached:
                            raise RuntimeError(f"jan reused {run.cached} cached tokens in {test}; prompts must be fresh")
                        jan_runs.append(run)
                    elif lcp_api == "completion":
                        lcp_runs.append(C.run_llama_cpp_completion(llm, prompt, n_gen))
                    else:
                        lcp_runs.append(C.run_llama_cpp(llm, prompt, n_gen))
            if n_gen == 1:  # prompt processing: whole request
                jan_each = [r.n_prompt / r.t_total for r in jan_runs]
                lcp_each = [r.n_prompt / r.t_total for r in lcp_runs]
                eng_tps = C.median(r.n_prompt / (r.engine_prompt_ms / 1000) for r in jan_runs)
            else:  # generation: first token -> last token
                jan_each = [r.gen_tps for r in jan_runs]
                lcp_each = [r.gen_tps for r in lcp_runs]
                eng_tps = C.median(r.engine_gen_tps for r in jan_runs)
            jan_tps, lcp_tps = C.median(jan_each), C.median(lcp_each)
            # Both engines ran back to back in each repetition: the median of
            # the per-repetition ratios cancels slow drifts in machine load.
            paired = C.median(C.ratio(a, b) for a, b in zip(jan_each, lcp_each))
            row = {
                "model": bm.name,
                "test": test,
                "n_prompt": n_prompt,
                "n_gen": n_gen,
                "llama_cpp_python_api": "create_completion(stream=True)" if lcp_api == "completion" else "generate",
                "jan_tps": jan_tps,
                "llama_cpp_python_tps": lcp_tps,
                "ratio": C.ratio(jan_tps, lcp_tps),
                "paired_ratio": paired,
                "jan_engine_tps": eng_tps,
                "jan_runs": [r.__dict__ for r in jan_runs],
                "llama_cpp_python_runs": [r.__dict__ for r in lcp_runs],
            }
            rows.append(row)
            print(
                f"  {bm.name} {test}: jan {C.fmt_num(jan_tps)} t/s, llama-cpp-python {C.fmt_num(lcp_tps)} t/s, "
                f"ratio {C.fmt_num(row['ratio'], 2)} (paired {C.fmt_num(paired, 2)})",
                flush=True,
            )
        return rows
    finally:
        jan_model.close()
        llm.close()
        del jan_model, llm
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [C.resolve_model(s.strip()) for s in args.models.split(",") if s.strip()]
    print(f"# bench_engine: {C.settings_line(args)}", flush=True)
    env = C.environment(args)
    t0 = time.perf_counter()
    rows: list[dict] = []
    for bm in models:
        print(f"{bm.name}: {bm.path}", flush=True)
        rows += bench_model(bm, args)

    print()
    print(
        C.markdown_table(
            ["model", "test", "jan t/s", "llama-cpp-python t/s", "ratio", "paired ratio", "jan engine t/s"],
            [
                [r["model"], r["test"], C.fmt_num(r["jan_tps"]), C.fmt_num(r["llama_cpp_python_tps"]),
                 C.fmt_num(r["ratio"], 2), C.fmt_num(r["paired_ratio"], 2), C.fmt_num(r["jan_engine_tps"])]
                for r in rows
            ],
        )
    )
    goals = []
    lines = []
    for r in rows:
        if r["test"].startswith("tg") and r["model"] in GOALS:
            label = f"{r['model']} {r['test']} (vs llama-cpp-python {r['llama_cpp_python_api']})"
            line, ok = C.goal_line(label, r["ratio"], GOALS[r["model"]])
            lines.append(line)
            goals.append({"model": r["model"], "test": r["test"], "baseline": r["llama_cpp_python_api"],
                          "ratio": r["ratio"],
                          "target": GOALS[r["model"]], "met": ok})
    if lines:
        print("\nGoals (generation tokens/s, jan / llama-cpp-python):")
        print("\n".join(lines))
    print(f"\n({C.settings_line(args)}; took {time.perf_counter() - t0:.0f}s)")
    env["loadavg_at_end"] = C.environment(args)["loadavg_at_start"]
    C.write_json(args.json, {"benchmark": "bench_engine", "environment": env,
                             "results": rows, "goals": goals})
    return 0


if __name__ == "__main__":
    sys.exit(main())
