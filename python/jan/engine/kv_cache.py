"""Which KV cache element types (``cache_type_k``/``cache_type_v``) a model can hold, read from its GGUF header.

llama.cpp refuses a context whose cache types the model cannot use (``llama_init_from_model`` in
src/llama-context.cpp): quantized types store blocks of values, so each attention head must be a
whole number of blocks; a quantized V cache is read only by flash attention; models with multi-head
latent attention keep K and V of one type. The rules are here, over the header's key/values, so that
a model.json setting can be refused before it is stored (:mod:`jan.services.models`, which has only
the header) and a load says which option is at fault (:class:`jan.Model`), in the same words.
``cpp/kv_cache.cpp`` keeps the head-size and flash-attention rules too, as the last guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BLOCK_BYTES", "BLOCK_SIZES", "CacheTypeProblem", "cache_type_problem", "head_sizes", "header_int",
           "is_embedding_metadata",
           "kv_bytes_per_cell"]

#: Values per block of each KV cache type (ggml_blck_size): a head must hold whole blocks.
BLOCK_SIZES = {"f32": 1, "f16": 1, "bf16": 1, "q8_0": 32, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32,
               "iq4_nl": 32}

#: Bytes of one block of each KV cache type (ggml_type_size; ggml.c's type traits).
BLOCK_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24,
               "iq4_nl": 18}

#: Architectures llama.cpp runs without flash attention whatever is asked (llama_init_from_model forces it
#: off for Grok), so a quantized V cache, which only flash attention reads, can never be made for them.
_NO_FLASH_ATTN_ARCHS = ("grok",)

#: Architectures whose cache llama.cpp always treats as multi-head latent attention (K and V of one type);
#: others are when the header gives both latent head sizes (deepseek2, deepseek32, ...: is_mla()).
_ALWAYS_MLA_ARCHS = ("deepseek4",)


@dataclass(frozen=True)
class CacheTypeProblem:
    """Why a model cannot use the cache types asked for: ``option`` is the one at fault
    (``cache_type_k``/``cache_type_v``), ``related`` the options whose values make it so
    (``flash_attn``, the other cache type); ``reason`` says why, without the option's name."""

    option: str
    reason: str
    related: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.option}: {self.reason}"


def header_int(metadata: Mapping[str, str], key: str) -> int | None:
    """A numeric header value (llama.cpp renders them as text); None when absent or not a number
    (an array, such as a per-layer head count, is not in the metadata at all)."""
    value = metadata.get(key)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _kind(cache_type) -> str | None:
    """The cache type's name as llama.cpp knows it (lower case); None for one it does not (refused elsewhere)."""
    if not isinstance(cache_type, str) or cache_type.lower() not in BLOCK_SIZES:
        return None
    return cache_type.lower()


def head_sizes(metadata: Mapping[str, str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The widths of the model's key and value heads (``n_embd_head_k``/``n_embd_head_v``, every layer's),
    as llama.cpp reads them: ``<arch>.attention.key_length``/``value_length``, by default
    ``embedding_length / head_count``, and the ``_swa`` sizes of sliding-window layers when given.
    Empty when the header does not say for sure: no attention (a recurrent model, head count 0) or a
    head count per layer (an array, which llama.cpp's rendered metadata leaves out)."""
    arch = metadata.get("general.architecture") or ""
    n_head = header_int(metadata, f"{arch}.attention.head_count")
    if not n_head or n_head <= 0:
        return (), ()
    n_embd = header_int(metadata, f"{arch}.embedding_length")
    default = n_embd // n_head if n_embd and n_embd > 0 else None
    sizes = []
    for kind in ("key", "value"):
        full = header_int(metadata, f"{arch}.attention.{kind}_length") or default
        swa = header_int(metadata, f"{arch}.attention.{kind}_length_swa") or full
        sizes.append(tuple(sorted({s for s in (full, swa) if s and s > 0})))
    return sizes[0], sizes[1]


def kv_bytes_per_cell(metadata: Mapping[str, str], cache_type_k: str = "f16", cache_type_v: str = "f16") -> int:
    """Bytes one token of context takes in the KV cache of every layer (K and V), from the header alone, as
    ``cpp/kv_cache.cpp``'s ``kv_cache_size`` counts them for a loaded model: ``block_count`` layers of
    ``head_count_kv`` heads of the widest key and value heads (:func:`head_sizes`). An upper bound where layers
    differ (sliding-window layers keep fewer cells; latent attention stores less); 0 without attention, or where the
    header gives its head counts per layer (an array, not in the rendered metadata)."""
    arch = metadata.get("general.architecture") or ""
    n_layer = header_int(metadata, f"{arch}.block_count") or 0
    n_head_kv = header_int(metadata, f"{arch}.attention.head_count_kv") or header_int(metadata, f"{arch}.attention.head_count")
    keys, values = head_sizes(metadata)
    type_k, type_v = _kind(cache_type_k) or "f16", _kind(cache_type_v) or "f16"
    if not n_layer or not n_head_kv or not keys or not values:
        return 0

    def row(kind: str, width: int) -> int:
        return -(-width * n_head_kv // BLOCK_SIZES[kind]) * BLOCK_BYTES[kind]

    return n_layer * (row(type_k, max(keys)) + row(type_v, max(values)))


def is_embedding_metadata(metadata: Mapping[str, str]) -> bool:
    """Whether the header describes an embedding model (a pooling type, or a BERT-like architecture):
    :class:`jan.Model` then makes no generation context, so no KV cache either."""
    arch = metadata.get("general.architecture") or ""
    return bool(metadata.get(f"{arch}.pooling_type")) or "bert" in arch


def _is_mla(metadata: Mapping[str, str]) -> bool:
    arch = metadata.get("general.architecture") or ""
    if arch in _ALWAYS_MLA_ARCHS:
        return True
    return bool(header_int(metadata, f"{arch}.attention.key_length_mla")) and \
        bool(header_int(metadata, f"{arch}.attention.value_length_mla"))


def cache_type_problem(metadata: Mapping[str, str], cache_type_k, cache_type_v,
                       flash_attn: bool | None = None) -> CacheTypeProblem | None:
    """Why a generation context with these cache types cannot be made for the model whose header is
    ``metadata`` (None: it can, as far as the header tells). ``flash_attn`` False is off, None auto
    (a quantized V cache turns it on). Unknown type names are not judged here (the load option's own
    check refuses them). An empty ``metadata`` judges what needs no file: a quantized V cache with
    flash attention off."""
    type_k, type_v = _kind(cache_type_k), _kind(cache_type_v)
    arch = metadata.get("general.architecture") or ""
    if type_v is not None and BLOCK_SIZES[type_v] > 1:
        # a quantized V cache is stored transposed only for flash attention; llama.cpp refuses it without
        if flash_attn is False:
            return CacheTypeProblem("cache_type_v", f"a quantized V cache ({type_v}) needs flash attention; "
                                    "flash_attn is off", ("flash_attn",))
        if arch in _NO_FLASH_ATTN_ARCHS:
            return CacheTypeProblem("cache_type_v", f"a quantized V cache ({type_v}) needs flash attention, which "
                                    f"llama.cpp turns off for {arch} models; use f16, bf16 or f32")
    if type_k is not None and type_v is not None and type_k != type_v and _is_mla(metadata):
        # the latent cache holds K and V in one tensor (llama.cpp: "does not support different K and V types")
        return CacheTypeProblem("cache_type_v", f"this model ({arch}) uses multi-head latent attention, whose K and "
                                f"V caches must be of one type (cache_type_k is {type_k}, cache_type_v is {type_v})",
                                ("cache_type_k",))
    keys, values = head_sizes(metadata)
    for option, kind, sizes in (("cache_type_k", type_k, keys), ("cache_type_v", type_v, values)):
        if kind is None:
            continue
        block = BLOCK_SIZES[kind]
        for size in sizes:
            if size % block:
                # the cache is viewed head by head: a head that ends inside a block cannot be addressed
                return CacheTypeProblem(option, f"{kind} stores blocks of {block} values, which do not divide "
                                        f"this model's head size {size}; use f16, bf16 or f32")
    return None
