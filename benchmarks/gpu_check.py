"""GPU check of a CUDA/Metal/Vulkan build: offload works, greedy output equals the CPU's, and speed
(one stream and 8) of the 245M F16 llama on the GPU vs all CPU cores.

    python benchmarks/gpu_check.py [DIR]   # DIR holds stories260K.gguf and vocab/ggml-vocab-llama-spm.gguf
                                           # (default: $JAN_TEST_MODELS, else ../shared/models, as the tests')

The 245M model is written once to the benchmarks' cache (``$JAN_BENCH_CACHE``, else benchmarks/.cache), as the
other benchmarks write it.
"""
import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("models", nargs="?", metavar="DIR",
                    help="folder of stories260K.gguf and vocab/ (default: $JAN_TEST_MODELS, else ../shared/models)")
args = parser.parse_args()
if args.models:  # the bench model's vocabulary comes from the same folder (jan.testing reads $JAN_TEST_MODELS)
    os.environ["JAN_TEST_MODELS"] = os.path.abspath(args.models)

import jan  # noqa: E402 - after the arguments: `--help` answers without loading llama.cpp
from jan.testing.gguf_models import bench_model_path, models_dir  # noqa: E402

here = str(models_dir())
if not os.path.isfile(os.path.join(here, "stories260K.gguf")):
    sys.exit(f"gpu_check: no stories260K.gguf in {here}: give the folder that holds it (DIR or $JAN_TEST_MODELS)")
info = jan.system_info()
print(json.dumps({k: info[k] for k in ("llama_cpp_commit", "backends", "devices", "supports_gpu_offload")}, indent=1))

stories = os.path.join(here, "stories260K.gguf")
with jan.Model(stories, n_ctx=512, n_gpu_layers=0) as cpu, jan.Model(stories, n_ctx=512, n_gpu_layers=-1) as gpu:
    a = cpu.generate("Once upon a time", max_tokens=60, temperature=0)
    b = gpu.generate("Once upon a time", max_tokens=60, temperature=0)
    print("stories cpu:", repr(a.text[:80]))
    print("stories gpu:", repr(b.text[:80]))
    print("greedy tokens identical cpu/gpu:", a.token_ids == b.token_ids)

t = time.time()
bench = bench_model_path()
print(f"245M model ready in {time.time() - t:.1f}s ({bench})")


def tg(model, n, streams):
    reqs = [model.stream([1] + [300 + i] * 16, max_tokens=n, temperature=0, ignore_eos=True) for i in range(streams)]
    t0 = time.perf_counter()
    total = sum(len(r.result().token_ids) for r in reqs)
    return total / (time.perf_counter() - t0)


for ngl in (-1, 0):
    with jan.Model(bench, n_ctx=1024, n_parallel=8, n_gpu_layers=ngl) as m:
        tg(m, 8, 1)
        one = tg(m, 128 if ngl else 32, 1)
        eight = tg(m, 128 if ngl else 32, 8)
        print(f"245M F16 {'GPU' if ngl else 'CPU'}: 1 stream {one:.1f} t/s, 8 streams {eight:.1f} t/s ({eight / one:.2f}x)")
sys.stdout.flush()
