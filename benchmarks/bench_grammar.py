"""Structured output's cost: tokens/s under a JSON schema (OpenAI's ``response_format``) against plain output, jan
and llama-server side by side (built from the same llama.cpp commit: ``python benchmarks/build_llama_server.py``).

A grammar's filter over the whole vocabulary (262k tokens on Gemma 3) is the costly part of sampling under it, on
the thread that samples for every slot. llama.cpp's common sampler (llama-server) draws first and has the grammar
check the one token drawn, filtering the vocabulary only where it refuses it; jan does the same since 2026-12-04
(greedy first, then sampled requests), and filtered first before; since 2026-12-05 a refused greedy pick has jan
check the next best candidates one by one (up to 64) before it filters. This measures what a grammar costs each:
under a JSON schema, and under a grammar that refuses the model's favourites often (a lipogram: prose without the
letter e, in llama-server's ``grammar`` field).

Each request is a chat completion, non-streamed, of at most ``--tokens`` tokens: greedy, or sampled with
``--temperature`` and a fixed seed per repetition (the same seeds on both servers; their draws differ, so the
outputs do); tokens/s is its ``usage.completion_tokens`` over its wall time (the short prompt's evaluation included,
the same on both sides), the median of ``--reps``. Plain output runs to the limit (``ignore_eos``); a schema output
ends where its document does.

    python benchmarks/bench_grammar.py --model gemma3-270m
    python benchmarks/bench_grammar.py --model gemma3-270m --temperature 0.8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from _common import resolve_model  # noqa: E402

#: A schema a base model fills at length: a list of named things with a free-text field each.
SCHEMA = {"type": "object", "properties": {"characters": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string"}, "story": {"type": "string"}},
    "required": ["name", "story"]}}}, "required": ["characters"]}
PROMPT = "Write a list of characters of a fairy tale, as JSON, each with a name and a short story."
#: A grammar that refuses what the model wants most, often: prose without the letter e (a lipogram), in
#: llama-server's ``grammar`` field, to the token limit. A refused greedy pick is where jan checks the next best
#: candidates one by one and llama.cpp's common sampler filters the whole vocabulary.
LIPOGRAM = "root ::= [^eE\\x00]*"
STORY = "Once upon a time, there was a little girl named Emma. She loved the"

#: (output, what the request adds to its body, its prompt): plain text to the token limit on both (a base model's
#: stand-in template ends turns differently), a JSON schema's document, a lipogram.
KINDS = (
    ("plain", {"ignore_eos": True}, PROMPT),
    ("json_schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "tale", "schema": SCHEMA}}},
     PROMPT),
    ("lipogram", {"grammar": LIPOGRAM, "ignore_eos": True}, STORY),
)


def ask(server: _servers.Server, n: int, extra: dict, prompt: str, temperature: float = 0.0,
        seed: int = 0) -> tuple[int, float, str]:
    body = {"model": server.model_id, "max_tokens": n, "temperature": temperature, "seed": seed,
            "messages": [{"role": "user", "content": prompt}], **extra}
    request = urllib.request.Request(server.base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=1800) as resp:
        answer = json.loads(resp.read())
    wall = time.perf_counter() - t0
    return answer["usage"]["completion_tokens"], wall, answer["choices"][0]["message"]["content"] or ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); else sampled, seeded")
    ap.add_argument("--work", type=Path, default=Path("/tmp/jan-bench-grammar"))
    args = ap.parse_args()
    bench = resolve_model(args.model)
    args.work.mkdir(parents=True, exist_ok=True)
    rates: dict[str, dict[str, float]] = {}
    with _servers.both(bench.path, parallel=1, ctx=4096, threads=args.threads, work=args.work) as servers:
        for name, server in servers.items():
            ask(server, 8, KINDS[0][1], PROMPT)  # warm-up (the chat template, the first decode)
            for kind, extra, prompt in KINDS:
                runs = [ask(server, args.tokens, extra, prompt, args.temperature, seed) for seed in range(args.reps)]
                rates.setdefault(name, {})[kind] = statistics.median(n / wall for n, wall, _ in runs)
                rates[name][kind + "_tokens"] = runs[0][0]
                if kind == "json_schema" and runs[0][0] < args.tokens:
                    json.loads(runs[0][2])  # a whole document where it ended before the limit
                if kind == "lipogram" and "e" in runs[0][2].lower():
                    raise SystemExit(f"{name} wrote an e under the lipogram grammar: {runs[0][2]!r}")
    how = "greedy" if args.temperature <= 0 else f"temperature {args.temperature:g}, seeds 0..{args.reps - 1}"
    print(f"model {bench.name}, 1 stream, {how}, at most {args.tokens} tokens, median of {args.reps}")
    print("| output | jan t/s | llama-server t/s | jan / llama-server |")
    print("|---|---|---|---|")
    for kind, _extra, _prompt in KINDS:
        a, b = rates["jan"][kind], rates["llama-server"][kind]
        print(f"| {kind} ({rates['jan'][kind + '_tokens']} / {rates['llama-server'][kind + '_tokens']} tokens) "
              f"| {a:,.1f} | {b:,.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
