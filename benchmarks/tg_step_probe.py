"""One `jan bench -p 0 -n N -t 1` repetition in-process, for a deterministic tool to count (callgrind): a one-token
prompt, then N - 1 greedy decode steps with ignore_eos on stories260K (or the GGUF given), one thread, the thread
governor off, a ggml threadpool of its own (poll 50) as `jan bench` computes on.

    python benchmarks/tg_step_probe.py N [ENGINE_SO] [MODEL]

ENGINE_SO: an engine module to load as ``jan._engine`` instead of the installed one (an unstripped build, for
function names; it must sit in site-packages/jan so that its rpath finds libllama). Run it twice (N = 9 and 129)
under ``valgrind --tool=callgrind --separate-threads=yes``: the difference of the engine thread's counts, over 120,
is one step's. See benchmarks/FINDINGS.md, "jan bench vs llama-bench" (2026-12-07)."""

import importlib.util
import sys

n = int(sys.argv[1])
if len(sys.argv) > 2 and sys.argv[2]:
    spec = importlib.util.spec_from_file_location("jan._engine", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    sys.modules["jan._engine"] = module
    spec.loader.exec_module(module)
import jan  # noqa: E402  (after the engine module above, when one is given)

model_path = sys.argv[3] if len(sys.argv) > 3 else "../shared/models/stories260K.gguf"
model = jan.Model(model_path, n_ctx=256, n_parallel=1, n_threads=1, n_threads_batch=1, adaptive_threads="off",
                  poll=50)
with model:
    model.generate([5], add_special=False, max_tokens=1, temperature=0, ignore_eos=True)  # (warm: as jan bench's)
    done = model.generate([7], add_special=False, max_tokens=n, temperature=0, ignore_eos=True)
    print(done.usage.completion_tokens, f"{done.usage.generation_ms:.3f} ms", file=sys.stderr)
