"""How many layers to offload to the GPU when ``n_gpu_layers`` is ``"auto"`` (llama-server's ``-ngl auto``,
Ollama's default).

llama.cpp places a model's layers by one number, ``n_gpu_layers``: the input layer (``token_embd``) always stays
on the CPU; with ``n_gpu_layers = k`` the output layer and the last ``k - 1`` repeating layers go to the GPUs
(``llama_model::load_tensors`` in src/llama-model.cpp: layers from ``n_layer + 1 - k`` on, the output layer
counted as layer ``n_layer``); a negative value is all of them. A layer on a GPU keeps its share of the KV cache
there too (``offload_kqv``). So "auto" offloads everything when the weights, the KV cache of the context asked
for and the compute buffers fit the GPUs' free memory with :data:`GPU_HEADROOM_BYTES` to spare (llama-server's
``--fit-target``, 1 GiB per device), and otherwise as many layers from the end as fit. A build without a GPU
backend, or a machine without a GPU, offloads nothing.

The sizes come from the GGUF tensor table (``_engine.gguf_layer_bytes``: the exact bytes of each layer's weights)
and the model's KV cache per token (``kv_cache_bytes``); llama.cpp's compute buffers are estimated
(:func:`compute_buffer_bytes`), where llama-server's ``--fit`` measures them with a trial load: a plan that
misjudges them by a little is taken back by the headroom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["AUTO", "GPU_HEADROOM_BYTES", "OffloadPlan", "compute_buffer_bytes", "gpu_free_bytes", "kv_gpu_share",
           "plan_offload"]

#: The ``n_gpu_layers`` value that asks jan to choose.
AUTO: Literal["auto"] = "auto"

#: Memory left free on each GPU beside the model (llama-server's ``--fit-target`` default: 1024 MiB per device).
GPU_HEADROOM_BYTES = 1024 * 1024 * 1024

#: llama.cpp's compute buffer beside the logits (the attention and feed-forward activations of one micro-batch);
#: measured on CUDA for models to 8B with ``n_ubatch`` 512 and flash attention: 100-400 MiB.
_ACTIVATIONS_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class OffloadPlan:
    """What "auto" chose: ``n_gpu_layers`` as llama.cpp takes it (``-1``: all, ``0``: none); ``n_layer`` the
    model's repeating layers; ``gpu_bytes`` the weights and KV cache planned on the GPUs; ``free_bytes`` what the
    GPUs had free (0 without a GPU); ``reason`` one line for the log and the model's status."""

    n_gpu_layers: int
    n_layer: int
    gpu_bytes: int
    free_bytes: int
    reason: str



def kv_gpu_share(n_gpu_layers: int, n_layer: int) -> float:
    """The fraction of the KV cache on the GPUs when ``n_gpu_layers`` are offloaded (on a machine with one): that
    of the repeating layers there, ``n_gpu_layers - 1`` of them (the first one offloaded is the output layer,
    which has no cache), all of them for a negative count."""
    if n_gpu_layers < 0:
        return 1.0
    return min(max(n_gpu_layers - 1, 0), n_layer) / n_layer if n_layer > 0 else 0.0


def gpu_free_bytes(devices: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(free bytes, GPU count) over llama.cpp's GPU devices (``system_info()["devices"]`` entries of type
    ``gpu``), each less :data:`GPU_HEADROOM_BYTES`; llama.cpp splits the layers over them in proportion to
    their free memory (``LLAMA_SPLIT_MODE_LAYER``, its default)."""
    gpus = [d for d in devices if d.get("type") == "gpu"]
    free = sum(max(int(d.get("memory_free") or 0) - GPU_HEADROOM_BYTES, 0) for d in gpus)
    return free, len(gpus)


def compute_buffer_bytes(n_vocab: int, n_ubatch: int) -> int:
    """An estimate of llama.cpp's compute buffer on the GPU: the logits of one micro-batch (``n_vocab`` floats
    per row, ``n_ubatch`` rows: the worst case its graph reserve plans for) and the activations beside them."""
    return 4 * max(int(n_vocab), 0) * max(int(n_ubatch), 1) + _ACTIVATIONS_BYTES


def plan_offload(layers: dict[str, Any], *, kv_bytes: int, n_layer: int, n_vocab: int, n_ubatch: int,
                 devices: Sequence[dict[str, Any]], gpu_offload: bool) -> OffloadPlan:
    """The layers "auto" offloads. ``layers``: ``_engine.gguf_layer_bytes`` of the file (``layers``: bytes of
    each ``blk.<i>``, ``output``, ``token_embd``, ``output_tied``); ``kv_bytes``: the whole KV cache of the
    context asked for (all slots, all layers); ``n_layer``: the model's repeating layers (llama.cpp's, which may
    count fewer than the file's ``blk`` indices, as for models with next-token-prediction layers);
    ``devices``: ``system_info()["devices"]``; ``gpu_offload``: ``llama_supports_gpu_offload()``."""
    free, n_gpus = gpu_free_bytes(devices)
    if not gpu_offload or n_gpus == 0:
        return OffloadPlan(0, n_layer, 0, 0, "no GPU: every layer on the CPU")
    blocks = [int(b) for b in layers.get("layers", [])][:max(n_layer, 0)]
    kv_layer = kv_bytes / n_layer if n_layer > 0 else 0.0
    # the output layer: its weights, or a copy of the token embeddings it shares with the input layer
    output = int(layers.get("output", 0)) + (int(layers.get("token_embd", 0)) if layers.get("output_tied") else 0)
    budget = free - compute_buffer_bytes(n_vocab, n_ubatch)
    total = output + sum(blocks) + int(kv_bytes)
    mib = 1024 * 1024
    if total <= budget:
        return OffloadPlan(-1, n_layer, total, free, f"all {n_layer} layers on the GPU ({total / mib:.0f} MiB of "
                                                     f"{free / mib:.0f} MiB free beside the headroom)")
    used = output
    if used > budget:
        return OffloadPlan(0, n_layer, 0, free, f"not even the output layer fits the GPU ({output / mib:.0f} MiB, "
                                                f"{max(budget, 0) / mib:.0f} MiB free beside the compute buffers)")
    k = 1
    for size in reversed(blocks):  # llama.cpp offloads the last layers first
        if used + size + kv_layer > budget:
            break
        used += int(size + kv_layer)
        k += 1
    return OffloadPlan(k, n_layer, used, free, f"{k - 1} of {n_layer} layers and the output layer on the GPU "
                                               f"({used / mib:.0f} MiB of {free / mib:.0f} MiB free beside the "
                                               "headroom); the rest on the CPU")
