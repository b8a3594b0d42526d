"""Quantized weights decode on jan's scheduler thread, whatever llama.cpp's CPU backend would repack them into.

On an Intel CPU with AMX, this llama.cpp puts Q4_0/Q4_1/Q8_0/K-quant weights into AMX buffers, and its AMX
matmul dies with SIGSEGV when the graph runs off the process's main thread (ggml-org/llama.cpp#20824) —
as jan's always does. Each case runs in a child process, so a crash fails the test instead of pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest
from api_helpers import running

from jan.testing.gguf_models import write_llama_from_vocab

CHILD = textwrap.dedent("""
    import sys
    import jan
    extra = {"default": None, "off": False}[sys.argv[2]]
    with jan.Model(sys.argv[1], n_ctx=256, n_threads=2, n_parallel=2, extra_buffers=extra) as model:
        one = model.generate("Hello world", max_tokens=8, temperature=0, ignore_eos=True)
        prompt = model.generate(" ".join(["Hello world"] * 40), max_tokens=4, temperature=0, ignore_eos=True)
        again = model.generate("Hello world", max_tokens=8, temperature=0, ignore_eos=True)
    print(one.usage.completion_tokens, prompt.usage.completion_tokens, one.token_ids == again.token_ids)
""")


@pytest.fixture(scope="module")
def q8_model(tmp_path_factory, vocab_dir):
    # Row lengths are multiples of 32 and 64, so every matmul qualifies for the AMX kernels where they exist.
    return write_llama_from_vocab(tmp_path_factory.mktemp("q8") / "q8.gguf", vocab_dir / "ggml-vocab-llama-spm.gguf",
                                  n_embd=128, n_layer=2, n_head=4, n_ff=256, dtype="q8_0")


@pytest.mark.parametrize("extra_buffers", ["default", "off"])
def test_q8_0_weights_generate_on_the_scheduler_thread(q8_model, extra_buffers):
    """One-token steps and a multi-token prompt (the batched matmul path) both decode, greedily repeatable,
    with llama.cpp's extra weight layouts as jan picks them (off on AMX CPUs) and turned off."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(q8_model), extra_buffers], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"the child died (code {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.split() == ["8", "4", "True"]


def test_q8_0_weights_through_the_server(q8_model, tmp_path):
    """The same model served: the scheduler thread of ``jan serve`` answers."""
    with running(tmp_path / "data", q8_model) as srv:
        reply = httpx.post(f"{srv.base_url}/v1/completions", timeout=120,
                           json={"model": "q8", "prompt": "Hello world", "max_tokens": 6, "temperature": 0})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] >= 1
