"""``jan.Model``: load a GGUF file and generate, stream, embed and tokenize with it."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import itertools
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence, Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path

from typing import TYPE_CHECKING

from jan import _engine
from jan.errors import (CTX_LEN, LARGER_CONTEXT, Advice, BadRequestError, BadRequestTypeError, ContextOverflowError, EmbeddingCancelledError, EmbeddingStoppedError,
                        JanError, LoraAdapterError, MediaError, ModelClosedError, ModelFileError, ModelLoadError,
                        ModelSettingError)
from jan.engine.fit import (CELL_BOOKKEEPING_BYTES, DEFAULT_MAX_CTX, ContextFit, default_prompt_cache_mib, fit_n_ctx,
                            free_memory_bytes, host_memory_free_bytes, memory_total_bytes)
from jan.engine.gguf_file import check_gguf_file, file_path, load_weights, native_path, native_path_problem
from jan.engine import token_ids
from jan.engine.fill_in import fill_in_tokens
from jan.engine.heap import release_free_memory
from jan.engine.header import read_info
from jan.engine.kv_cache import cache_type_problem, header_int, is_embedding_metadata, kv_bytes_per_cell
from jan.engine.logs import forward_native_logs, native_error_detail
from jan.engine.offload import (AUTO, OffloadPlan, compute_buffer_bytes, gpu_free_bytes, kv_gpu_share,
                                plan_offload)
from jan.engine.media import (DEFAULT_LIMITS, AudioClip, MediaLimits, check_media_cancel, sized_audio_input,
                              sized_image_input)
from jan.image_types import header_pixels
from jan.json_text import finite_number
from jan.engine.params import (DEFAULTS as SAMPLING_DEFAULTS, INT32_MAX, SPECULATIVE_OPTIONS, Range,
                                check_order, check_sampling_options, sampling_params)
from jan.engine.params import (as_int, check_flag, check_seconds, engine_text, lora_request, lora_scale,
                               model_id_text, option_refusal, speculative_mode, type_refusal)
from jan.engine.request import Request
from jan.engine.results import Completion
from jan.engine.room import RoomSignal
from jan.engine.turns import Turns
from jan.near_names import keywords_named, with_guess

if TYPE_CHECKING:  # numpy is imported by embeddings only, not by every server start (resident memory)
    import numpy as np

_log = logging.getLogger("jan.engine")
#: The option an engine check names first ("logit_bias: token id 9 is outside the vocabulary"; cpp/sampling.cpp).
_OPTION_NAMED = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])*): ")

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
#: The GGUF ``<arch>.pooling_type`` of a reranker (llama.cpp's LLAMA_POOLING_TYPE_RANK): its pooled output is the
#: scores of a classifier head, not a vector (:meth:`Model.rerank`).
RANK_POOLING = POOLING["rank"]
#: What a reranker's embed() and a rerank() of a model that is no reranker are refused with ({model}: its id); the
#: server says the same before it loads the model (jan.services.abilities).
IS_A_RERANKER = ("model '{model}' is a reranker (its pooling is rank: it scores a query against documents, it has no "
                 "embedding vectors); use rerank()")
NOT_A_RERANKER = ("model '{model}' is not a reranker (its GGUF's pooling is not rank): it cannot score documents "
                  "against a query")
#: The key of a reranker's own prompt template in its GGUF ({query} and {document} replaced: llama.cpp's
#: ``llama_model_chat_template(model, "rerank")``, as llama-server's format_prompt_rerank reads it).
RERANK_TEMPLATE_KEY = "tokenizer.chat_template.rerank"
#: The poolings :meth:`Model.embed` takes (and the ``pooling`` load option). "none" is llama-server's
#: ``--pooling none``: no pooling, a vector per token of each input (:meth:`Model.embed` says the shape). Only
#: asked for, never a model header's: a model whose own header says none is mean-pooled. OpenAI's and Ollama's
#: embedding endpoints carry one vector per input, so a served model set to "none" is refused there (400), as
#: llama-server refuses it on its OpenAI endpoint.
EMBED_POOLING = ("mean", "cls", "last", "none")


#: An embedding call's share of one turn of the embedding context: inputs (the most one decode packs) and tokens
#: (decodes of the context's size). A few decodes: another request waits for one turn of a big one, not for it all.
EMBED_TURN_INPUTS = 256
EMBED_TURN_DECODES = 4


@contextlib.contextmanager
def _projector_errors():
    """libmtmd's refusals (bad or unsupported media, raised by the binding as ValueError) as MediaError, with the
    native log lines it wrote forwarded either way."""
    try:
        yield
    except MediaError:
        raise  # (the binding's own, typed: it names the item at fault, its item_index, which a rewrap would lose)
    except ValueError as e:
        raise MediaError(str(e)) from None
    finally:
        forward_native_logs()


def _embed_turn_chunks(batch: list, n_ctx: int) -> Iterable[list]:
    """``batch`` (token lists, in order) cut into the calls of one turn each (:data:`EMBED_TURN_INPUTS`); an input
    with media (a native MediaPrompt: its own decodes) is a call of its own."""
    budget = max(1, n_ctx) * EMBED_TURN_DECODES
    chunk: list = []
    tokens = 0
    for item in batch:
        media = isinstance(item, _engine.MediaPrompt)
        if chunk and (media or len(chunk) >= EMBED_TURN_INPUTS or tokens + _embed_len(item) > budget):
            yield chunk
            chunk, tokens = [], 0
        chunk.append(item)
        tokens += _embed_len(item)
        if media:
            yield chunk
            chunk, tokens = [], 0
    if chunk:
        yield chunk


def _embed_len(item) -> int:
    """Positions an embedding input takes: its tokens, an image's or audio clip's included."""
    return item.n_tokens if isinstance(item, _engine.MediaPrompt) else len(item)


@dataclass(frozen=True)
class Ranking:
    """What :meth:`Model.rerank` answers: ``scores`` (one per document, in the documents' order; higher is more
    relevant) and ``prompt_tokens`` (the tokens of every query-document input read)."""

    scores: list[float]
    prompt_tokens: int


def _count_option(name: str, value) -> int | None:
    """A rerank option that counts (tokens, chunks): None, or an integer of at least 1."""
    if value is None:
        return None
    n = as_int(value)
    if n is None:
        raise type_refusal(name, f"{name}: expected an integer, got {type(value).__name__}")
    if n < 1:
        raise option_refusal(name, f"{name}: must be at least 1, got {n}")
    return n


def _cut_text(native, text: str, keep: int, left: bool) -> str:
    """``text`` cut to at most ``keep`` of its tokens (tokenized as text), its end cut, or its beginning with
    ``left``: the kept tokens detokenized, so that the cut is a text read as any other (a few tokens fewer where
    the detokenized text tokenizes longer at its new edge)."""
    tokens = token_ids.tokenize(native, text, False, False)
    if len(tokens) <= keep:
        return text
    limit = keep
    for _ in range(8):  # (bounded: each round keeps fewer tokens, by as many as the last one overshot)
        if keep < 1:
            break
        cut = native.detokenize(tokens[-keep:] if left else tokens[:keep], False, False)
        n = token_ids.count(native, cut, False, False)
        if n <= limit:
            return cut
        keep -= n - limit
    return ""


def _media_list(name: str, value) -> list:
    """A media argument (``images``, ``audio``, ``items``: a list of them) as a list; None is none.
    :class:`~jan.BadRequestTypeError` naming
    it for one that is no list: a number or object was "'int' object is not iterable", and a single path or file's
    bytes was read item by item, as one image per character or per byte."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise type_refusal(name, f"{name}: expected a list of media items (paths, file bytes, arrays), got "
                           f"{type(value).__name__}; a single one goes in a list")
    return list(value)


def _pooling(value):
    if value is None:
        return None
    if not isinstance(value, str) or value not in EMBED_POOLING:  # (an array's "in" was numpy's ambiguous truth)
        raise option_refusal("pooling", f"pooling: expected one of {', '.join(EMBED_POOLING)}, got {value!r}")
    return value
_DEFAULT_MAX_CTX = DEFAULT_MAX_CTX

#: The models loaded in this process and not yet freed (closed or not): what :func:`_close_at_exit` stops.
_LOADED: "weakref.WeakSet[Model]" = weakref.WeakSet()


def _close_at_exit() -> None:
    """Close every model this process loaded, when the interpreter exits (after its non-daemon threads ended, before
    it finalizes): a model a daemon thread still uses (a stream it reads, an embed() it runs) is never freed by the
    interpreter, so its engine thread went on decoding while the process's exit ran llama.cpp's static destructors,
    and the exit died of SIGSEGV. Running requests end cancelled; an embed() in flight stops at its next decode and
    leaves the native call before this returns (its turn is taken after it), so no thread is inside ggml when the
    process exits. Not in a child forked after a load: the model is the parent's (:meth:`Model._forked`)."""
    for model in list(_LOADED):
        if model._forked():
            continue
        try:
            model.close()
            with model._embed_turns:  # (waits for an embed() call running in another thread to leave its decode)
                pass
        except Exception:  # (one model's failure leaves the others to be closed)
            _log.debug("closing model '%s' at exit failed", model.id, exc_info=True)


# registered when the engine is imported, before any handler a program registers after it: those (LIFO) run first,
# with the models still loaded
atexit.register(_close_at_exit)

#: Numbers the loads of this process (see :meth:`Model.metrics`' ``load_id``): a model unloaded and loaded again is
#: a new :class:`Model`, with counters from zero, and a reader comparing two reads of them must know it.
_LOAD_IDS = itertools.count(1)
#: KV cache element types llama.cpp can hold (``cache_type_k``/``cache_type_v``), as llama-server names them.
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")


#: ``adaptive_threads`` values: fewer threads while other processes keep cores busy, except where
#: that would change the output ("exact"), on every step ("always"), or never ("off").
ADAPTIVE_THREADS = ("exact", "always", "off")


def _adaptive_threads(value: bool | str) -> str:
    if value is True or value is False:
        return "exact" if value else "off"
    if not isinstance(value, str) or value.lower() not in ADAPTIVE_THREADS:
        raise option_refusal("adaptive_threads", f"adaptive_threads: expected one of {', '.join(ADAPTIVE_THREADS)} "
                             f"(or true/false), got {value!r}")
    return value.lower()


def _cache_type(name: str, value: str | None) -> str:
    if value is None:
        return "f16"
    if not isinstance(value, str) or value.lower() not in CACHE_TYPES:
        raise option_refusal(name, f"{name}: expected one of {', '.join(CACHE_TYPES)}, got {value!r}")
    return value.lower()


#: The largest embedding context cpp/embedder.cpp makes when none is given (keep the two in step).
EMBED_MAX_CTX = 8192

#: The most tokens ``image_min_tokens``/``image_max_tokens`` may ask of one image (more than any context holds).
IMAGE_TOKENS_MAX = 65536

#: The most threads ggml runs one compute graph on (ggml.h's GGML_MAX_N_THREADS).
GGML_MAX_N_THREADS = 512
#: What a context too large for memory is told to do, as data (:class:`~jan.errors.Advice`): each front end names
#: the setting its own way (the CLI: its flag).
CONTEXT_TOO_LARGE = Advice(CTX_LEN, "use a smaller {setting}, or leave it unset to fit the free memory", name="n_ctx")
#: ... for a model of several slots (each holds a context of that size).
CONTEXT_TOO_LARGE_SLOTS = Advice(CTX_LEN, "use a smaller {setting} (or fewer slots), or leave it unset to fit the free "
                                 "memory", name="n_ctx")

#: What ``speculative`` "draft" without a draft model is told to give (each front end names the setting its way).
NEEDS_DRAFT_MODEL = Advice("draft_model", "give one as {setting}")

#: What each numeric load option of :class:`Model` accepts (the native engine's bounds, cpp/scheduler.cpp,
#: and llama.cpp's: at most 256 sequences; int32 where it stores an int32). ``n_ctx`` 0/None is the
#: model's own context; ``n_threads`` <= 0 the default count; ``n_gpu_layers`` -1 all layers (or "auto"/"all",
#: :func:`check_load_option`).
LOAD_RANGES: dict[str, Range] = {
    "n_ctx": Range(int, ge=8, le=INT32_MAX),
    "n_parallel": Range(int, ge=1, le=256),
    "n_batch": Range(int, ge=1, le=INT32_MAX),
    "n_ubatch": Range(int, ge=1, le=INT32_MAX),
    # ggml's GGML_MAX_N_THREADS: a compute graph runs on at most 512 threads; asked for more, an embedding decode
    # died of std::bad_alloc (2**31 - 1) or SIGSEGV (100000) in ggml's thread setup
    "n_threads": Range(int, ge=-1, le=GGML_MAX_N_THREADS),
    "n_threads_batch": Range(int, ge=-1, le=GGML_MAX_N_THREADS),
    "n_gpu_layers": Range(int, ge=-1, le=INT32_MAX),
    "main_gpu": Range(int, ge=-1, le=INT32_MAX),
    "max_queue": Range(int, ge=0, le=INT32_MAX),
    "cache_ram_mib": Range(int, ge=-1, le=INT32_MAX),
    # llama.cpp's clip counts an image's pixels in 32 bits: tokens x the projector's pixels per token (patch_size^2
    # x merge^2, 784 for Qwen2-VL, up to a few thousand) must stay below 2**31
    # ggml's threadpool: how long (0-100) idle threads spin before they sleep, and their priority
    # (ggml_sched_priority: -1 low, 0 normal, 1 medium, 2 high, 3 realtime)
    "poll": Range(int, ge=0, le=100),
    "prio": Range(int, ge=-1, le=3),
    "n_cpu_moe": Range(int, ge=0, le=INT32_MAX),
    "image_min_tokens": Range(int, ge=1, le=IMAGE_TOKENS_MAX),
    "image_max_tokens": Range(int, ge=1, le=IMAGE_TOKENS_MAX),
}
#: Load options that something else the model loads with is read for, and what (the load option naming it, and the
#: thing in words): given without it, each was taken and had no effect — ``image_min_tokens`` sizes the images of a
#: projector (``mmproj``), as ``media_limits`` bounds its media; ``draft_p_min`` is how sure the draft model must be
#: (``draft_model``: n-gram drafting has no probabilities); ``lora_init_without_apply`` the default scale of LoRA
#: adapters (``lora``). The one table of these rules: :func:`unmet_prerequisite` reads it for :class:`Model` and
#: :class:`~jan.ModelPool`, the model service for a model.json (:func:`jan.services.models.check_prerequisites`),
#: ``jan serve`` for its flags (:func:`jan.services.models.unread_server_defaults`). (``speculative``, ``draft_max``,
#: ``draft_min`` and ``ngram`` are every request's speculative defaults: a request that turns n-gram drafting on reads
#: them, draft model or none, so none of them is here.)
LOAD_PREREQUISITES: dict[str, tuple[str, str]] = {
    "image_min_tokens": ("mmproj", "a multimodal projector"),
    "image_max_tokens": ("mmproj", "a multimodal projector"),
    "draft_p_min": ("draft_model", "a draft model"),
    "lora_init_without_apply": ("lora", "LoRA adapters"),
    # (jan.Model's only: what one request's images and audio may be, and a model without a projector takes none)
    "media_limits": ("mmproj", "a multimodal projector"),
}


#: The values of :data:`LOAD_PREREQUISITES`' options that are their defaults: given, they ask for nothing.
_ASKS_NOTHING = {**{name: SAMPLING_DEFAULTS[name] for name in LOAD_PREREQUISITES if name in SAMPLING_DEFAULTS},
                 "media_limits": DEFAULT_LIMITS}


def opts_out(value: object) -> bool:
    """Whether a load option's value asks for nothing: None (not given), False, 0 or empty (no file, no adapters)."""
    return value is None or value is False or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                               and value == 0) or (isinstance(value, (str, Sequence)) and not value)


def unmet_prerequisite(options: Mapping[str, object],
                       names: Iterable[str] | None = None) -> tuple[str, str, str] | None:
    """The first option of ``options`` (only of ``names`` when given) set to something (:func:`opts_out`) whose
    prerequisite (:data:`LOAD_PREREQUISITES`) ``options`` leave out: ``(option, prerequisite, its words)``; None
    when every one given has its own. A value that is the option's default (``draft_p_min`` 0.75, the default
    ``media_limits``) asks nothing either."""
    for name in options if names is None else names:
        if name not in LOAD_PREREQUISITES:
            continue
        value = options.get(name)
        if opts_out(value) or (name in _ASKS_NOTHING and value == _ASKS_NOTHING[name]):
            continue
        needed, words = LOAD_PREREQUISITES[name]
        if opts_out(options.get(needed)):
            return name, needed, words
    return None


def prerequisite_error(option: str, needed: str, words: str, *, named: str = "",
                       kind: type[JanError] = BadRequestError) -> JanError:
    """The refusal of ``option`` without its prerequisite ``needed`` (``named``: what the caller's names of both
    begin with, the model.json's ``settings.``): a ``kind`` (a :class:`~jan.errors.BadRequestError`, or the
    services' ``RequestError``) with ``param`` the option and code ``missing_prerequisite``, advising ``needed`` as
    data (:class:`~jan.errors.Advice`: ``jan run`` names its ``-md/--model-draft``)."""
    return kind("", param=f"{named}{option}", code="missing_prerequisite").advise(
        f"needs {words}, and none is given, so it would have no effect",
        Advice(needed, "give one as {setting}, or leave it out", name=f"{named}{needed}"), named=True)


_LOAD_FLAGS = ("flash_attn", "use_mmap", "use_mlock", "kv_unified", "embedding", "extra_buffers", "vocab_only",
               "lora_init_without_apply", "offload_kqv", "output_embeddings", "cpu_strict", "no_host", "op_offload")
#: llama.cpp's llama_split_mode by its name (the value is the enum's)
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
#: llama.cpp's llama_load_mode by its name (llama_load_mode_name's words; the value is the enum's)
LOAD_MODES = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3, "dio": 4}
#: llama.cpp's llama_lazy_mode by its name
LAZY_MODES = {"off": 0, "auto": 1, "on": 2}
#: the expert tensors of a mixture-of-experts layer, after ``blk\.N`` (llama.cpp's pattern for --n-cpu-moe)
MOE_EXPERTS = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


def extra_buffers_by_default() -> bool:
    """Whether a model loaded with ``extra_buffers=None`` uses llama.cpp's extra CPU weight buffers (repacked quants):
    yes, except on a CPU with AMX ones (see :class:`Model`)."""
    return bool(_engine.extra_buffers_by_default())
#: the most hexadecimal digits of a CPU mask: one bit a CPU, GGML_MAX_N_THREADS CPUs
CPU_MASK_DIGITS = GGML_MAX_N_THREADS // 4
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def cpu_mask_bits(name: str, value) -> list[bool]:
    """A CPU mask as llama.cpp's ``--cpu-mask`` takes it (hexadecimal, ``0x`` optional: ``0x5`` is CPUs 0 and 2) as
    one bool a CPU, CPU 0 first (``[True, False, True, False]``); ValueError naming ``name`` for anything else, an
    empty mask or one of more than :data:`CPU_MASK_DIGITS` digits (CPUs past ggml's 512) included."""
    if not isinstance(value, str):
        raise option_refusal(name, f"{name}: expected a hexadecimal CPU mask such as 0x3, got {value!r}")
    digits = value[2:] if value[:2].lower() == "0x" else value
    if not digits or not set(digits) <= _HEX_DIGITS:
        raise option_refusal(name, f"{name}: expected a hexadecimal CPU mask such as 0x3 (bit i: CPU i), got "
                             f"{value!r}")
    if len(digits) > CPU_MASK_DIGITS:
        raise option_refusal(name, f"{name}: at most {CPU_MASK_DIGITS} hexadecimal digits (ggml's "
                             f"{GGML_MAX_N_THREADS} CPUs), got {len(digits)}")
    bits = int(digits, 16)
    return [bool(bits >> i & 1) for i in range(4 * len(digits))]


def tensor_shares(name: str, value) -> tuple[float, ...]:
    """``tensor_split``: each GPU's share of the weights, a sequence of finite numbers >= 0 (the native engine
    refuses more than llama.cpp's devices); ValueError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise option_refusal(name, f"{name}: expected a list of shares (one number a GPU), got {value!r}")
    shares = []
    for i, share in enumerate(value):
        if not finite_number(share) or share < 0:
            raise option_refusal(f"{name}[{i}]", f"{name}[{i}]: expected a finite number >= 0, got {share!r}")
        shares.append(float(share))
    return tuple(shares)


def buffer_overrides(name: str, value) -> tuple[tuple[str, str], ...]:
    """``tensor_buft_overrides``: (tensor name pattern, buffer type) pairs, such as ``("blk\\.0\\..*", "CPU")``
    (a regular expression, and ggml's name of a device's buffer type: ``CPU``, ``CUDA0``, ...); ValueError naming
    ``name`` for anything else. The native engine refuses a buffer type this build lacks and a pattern that is no
    regular expression."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise option_refusal(name, f"{name}: expected a list of (pattern, buffer type) pairs, got {value!r}")
    pairs = []
    for i, pair in enumerate(value):
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(part, str) and part for part in pair)):
            raise option_refusal(f"{name}[{i}]", f"{name}[{i}]: expected a (pattern, buffer type) pair of non-empty "
                                 f"texts, got {pair!r}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


#: llama.cpp's ggml_numa_strategy by its llama-bench/llama-server name
NUMA_STRATEGIES = {"distribute": 1, "isolate": 2, "numactl": 3}


def init_numa(strategy: str) -> None:
    """llama.cpp's NUMA placement (``distribute``, ``isolate`` or ``numactl``: llama-server's and llama-bench's
    ``--numa``) for this process, before any model loads; ggml keeps the first one a process asks for. ValueError
    for another word."""
    _engine.numa_init(NUMA_STRATEGIES[_word("numa", strategy, NUMA_STRATEGIES)])


def gpu_devices(name: str, value) -> tuple[str, ...]:
    """``devices``: the GPU devices by ggml's names (``["CUDA0", "CUDA1"]``; empty: the CPU only); ValueError naming
    ``name`` for anything but a list of non-empty texts (the native engine refuses a name the build lacks)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise option_refusal(name, f"{name}: expected a list of GPU device names (such as CUDA0), got {value!r}")
    for i, device in enumerate(value):
        if not isinstance(device, str) or not device.strip():
            raise option_refusal(f"{name}[{i}]", f"{name}[{i}]: expected a device name, got {device!r}")
    return tuple(value)


def _word(name: str, value, words) -> str:
    if not isinstance(value, str) or value.lower() not in words:
        raise option_refusal(name, f"{name}: expected one of {', '.join(words)}, got {value!r}")
    return value.lower()


def lora_files(value, name: str = "lora") -> tuple[tuple[str, float], ...]:
    """The ``lora`` load option as ``(path, scale)`` pairs: each item a file path (scale 1.0, llama-server's
    ``--lora``), a ``(path, scale)`` pair (``--lora-scaled``) or a model.json's ``{"path": ..., "scale": ...}``
    (scale optional, 1.0). :class:`BadRequestError` naming the item otherwise (a scale that is no finite number
    included); the files themselves are judged when the model loads (:class:`~jan.LoraAdapterError`)."""
    if isinstance(value, (str, os.PathLike, Mapping)) or not isinstance(value, (list, tuple)):
        raise BadRequestError(f"{name}: expected a list of LoRA adapter files (a path, or a (path, scale) pair), "
                              f"got {value!r}", param=name, code="invalid_type")
    out = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        scale: object = 1.0
        if isinstance(item, Mapping):
            unknown = sorted(str(k) for k in item if k not in ("path", "scale"))
            if unknown or "path" not in item:
                raise BadRequestError(f"{where}: expected {{\"path\": file, \"scale\": number}}, got {item!r}",
                                      param=where, code="invalid_value")
            path, scale = item["path"], item.get("scale", 1.0)
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            path, scale = item
        else:
            path = item
        if isinstance(path, (bytes, bytearray)):
            path = os.fsdecode(bytes(path))
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip():
            raise BadRequestError(f"{where}: expected a LoRA adapter file path, got {path!r}", param=where,
                                  code="invalid_value")
        out.append((str(Path(os.fspath(path))), lora_scale(f"{where}.scale", scale)))
    return tuple(out)


def check_lora_files(lora: Sequence[tuple[str, float]]) -> None:
    """:class:`~jan.LoraAdapterError` naming ``lora[i]`` unless each adapter file is there and starts as a GGUF
    does (what can be told before the model is read: :class:`Model` and :mod:`jan.engine.preflight` both ask)."""
    for i, (file, _) in enumerate(lora):
        try:
            check_gguf_file(file, "LoRA adapter file", f"lora[{i}]: ")
        except ModelFileError as exc:
            raise LoraAdapterError(str(exc), param=f"lora[{i}]") from None


def lora_on_embedding_model(model_id: str) -> LoraAdapterError:
    """The refusal of LoRA adapters for a model that only embeds (jan applies them to generation only)."""
    return LoraAdapterError(f"lora: model '{model_id}' is an embedding model; LoRA adapters apply to generation "
                            "only", param="lora")


def check_load_option(name: str, value):
    """``value`` checked as :class:`Model`'s load option ``name`` (None: not given, always fine);
    ValueError naming it otherwise. The one rule for load options: :class:`Model` checks its
    arguments with it, and the server checks a model.json's ``settings`` with it before storing
    them (a bad value there would fail every request to the model)."""
    if value is None:
        return None
    if name == "n_ctx" and value == 0 and not isinstance(value, bool):
        return 0  # the model's own context
    if name == "n_gpu_layers" and isinstance(value, str):  # llama-server's words for -ngl
        if value.strip().lower() in (AUTO, "all"):
            return AUTO if value.strip().lower() == AUTO else -1
        raise option_refusal("n_gpu_layers", "n_gpu_layers: expected a layer count (-1: all), 'auto' or 'all', got "
                             f"{value!r}")
    if name in LOAD_RANGES:
        return LOAD_RANGES[name].check(name, value)
    if name in _LOAD_FLAGS:
        return check_flag(name, value)
    if name == "adaptive_threads":
        return _adaptive_threads(value)
    if name in ("cache_type_k", "cache_type_v"):
        return _cache_type(name, value)
    if name == "pooling":
        return _pooling(value)
    if name in SPECULATIVE_OPTIONS:
        check_sampling_options(**{name: value})  # the request's rules: every request's default
        return value
    if name in ("draft_model", "mmproj"):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise option_refusal(name, f"{name}: expected a file path, got {value!r}")
        return value
    if name == "lora":
        return lora_files(value)
    if name == "split_mode":
        return _word(name, value, SPLIT_MODES)
    if name == "load_mode":
        return _word(name, value, LOAD_MODES)
    if name == "lazy_mode":
        return _word(name, value, LAZY_MODES)
    if name == "cpu_mask":
        cpu_mask_bits(name, value)
        return value
    if name == "tensor_split":
        return tensor_shares(name, value)
    if name == "devices":
        return gpu_devices(name, value)
    if name == "tensor_buft_overrides":
        return buffer_overrides(name, value)
    raise type_refusal(name, f"unknown load option: {with_guess(name, sorted(_LOAD_OPTION_NAMES))}")


#: What clip.cpp logs when a projector's minimum pixels per image exceed its maximum (a load that fails so).
_MIN_OVER_MAX = "is less than image_min_pixels"

#: llama.h's LLAMA_TOKEN_NULL: no token; the engine's placeholder for a media chunk's positions in a prompt.
LLAMA_TOKEN_NULL = -1

# ModelInfo fields the native model has as attributes of the same name (sizes and counts).
_NATIVE_SIZES = ("n_params", "size_bytes", "n_ctx_train", "n_embd", "n_layer", "n_vocab")


#: The files a model may have besides its weights, by option: what they are called in errors.
COMPANION_FILES = {"draft_model": "draft model file", "mmproj": "projector file"}


#: The most context cells of all slots together: llama.cpp counts a context's cells in 32 bits, and the engine
#: asks for ``n_ctx`` × ``n_parallel`` of them (cpp/scheduler.cpp), a product that would wrap past this bound
#: to another size (2**30 tokens for 4 slots loaded as the model's default context, without a word).
MAX_CONTEXT_CELLS = 2**32 - 1


def check_context_total(n_ctx: object, n_parallel: object) -> None:
    """:class:`~jan.ModelSettingError` naming ``n_ctx`` when ``n_ctx`` tokens for each of ``n_parallel`` slots are
    more cells than llama.cpp can count (:data:`MAX_CONTEXT_CELLS`). Values that are no whole numbers are their
    own ranges' errors (:data:`LOAD_RANGES`)."""
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (n_ctx, n_parallel)):
        return
    if n_ctx * n_parallel > MAX_CONTEXT_CELLS:
        raise ModelSettingError(
            f"n_ctx: {n_ctx} tokens for each of {n_parallel} slots (n_parallel) are {n_ctx * n_parallel} tokens of "
            f"context, more than llama.cpp holds ({MAX_CONTEXT_CELLS}); use at most {MAX_CONTEXT_CELLS // n_parallel}",
            param="n_ctx", code="invalid_value")


def check_load_options(options: Mapping[str, object]) -> None:
    """Every load option of :class:`Model` in ``options`` checked without reading any file: TypeError for a name
    it does not take, ValueError naming the option for a value it cannot use or two that contradict each other
    (:func:`~jan.engine.params.check_order`). :class:`Model` runs it before it reads the weights, and
    :class:`~jan.ModelPool` before it unloads a model to make room (a load bound to fail costs no loaded model)."""
    unknown = sorted(set(options) - _LOAD_OPTION_NAMES)
    if unknown:
        # each named with the option it likely meant (n_ctxx), as a mistyped sampling option is
        said = ", ".join(with_guess(n, sorted(_LOAD_OPTION_NAMES)) for n in unknown)
        raise type_refusal(unknown[0], f"unknown load option(s): {said}")
    for name, value in options.items():
        if name == "model_id":
            if value is not None:
                model_id_text(value, empty=True)
        elif name == "media_limits":
            if value is not None and not isinstance(value, MediaLimits):
                raise option_refusal("media_limits", "media_limits: expected a jan.engine.media.MediaLimits, got "
                                     f"{value!r}")
        else:
            check_load_option(name, value)
    check_context_total(options.get("n_ctx"), options.get("n_parallel") or 1)
    # options that contradict each other (jan.engine.params.ORDERS), the speculative ones over a request's defaults
    check_order({k: options.get(k) for k in ("n_batch", "n_ubatch", "draft_min", "draft_max", "image_min_tokens",
                                             "image_max_tokens")},
                {**SAMPLING_DEFAULTS, "n_batch": 512})
    unmet = unmet_prerequisite(options)
    if unmet is not None:
        raise prerequisite_error(*unmet)
    if options.get("draft_model") is None and sampling_params(**{
            k: options[k] for k in SPECULATIVE_OPTIONS if options.get(k) is not None}).use_draft_model:
        # a BadRequestError naming the option, as every other load option's refusal: the server then says whose
        # it is (settings.speculative, the server's flag) rather than blaming a request that never sent it
        # (the setting to give as data: jan serve names its -md/--model-draft, where this said "draft_model", a name
        # its command line does not take)
        raise BadRequestError("", param="speculative", code="conflicting_options").advise(
            "'draft' needs a draft model", NEEDS_DRAFT_MODEL, named=True)


def _token_id(name: str, token, n_vocab: int) -> int:
    """``token`` checked as an id of this vocabulary: :class:`~jan.BadRequestTypeError` for no integer (a bool
    neither), :class:`~jan.BadRequestError` naming ``name`` for one
    outside it (an id past the C int32 the engine holds too, which pybind11 would refuse with a TypeError
    dumping its signature)."""
    as_integer = as_int(token)  # an int or numpy's integers (np.argmax's, a token array's items); never a bool
    if as_integer is None:
        raise type_refusal(name, f"{name}: expected a token id (an integer), got {token!r}")
    token = as_integer
    if not 0 <= token < n_vocab:
        # a BadRequestError (a ValueError) carrying its field and code: a server answers it as the services' own
        # refusal of such an id ("invalid_value"), where a bare ValueError was a 400 with no code (/detokenize's)
        raise BadRequestError(f"{name}: token id {token} is outside the vocabulary (0..{n_vocab - 1})", param=name,
                              code="invalid_value")
    return token


def _piece(native, token: int) -> tuple[str, bytes]:
    raw = native.token_to_piece(token, True)
    return raw.decode("utf-8", errors="replace"), raw


@contextlib.contextmanager
def _stopped_on_the_way_out(request: Request):
    """The generation :meth:`Model.generate` / :meth:`Model.agenerate` made, cancelled when waiting for it ends with
    anything but its result: the caller never held the handle, and the traceback that holds it (a REPL's, a task's)
    would otherwise keep it generating to its token limit for nobody."""
    try:
        yield
    except BaseException:
        request.cancel()
        raise


def _token_sequence(tokens):
    """``tokens`` as a sequence of token ids when it can be one: a Sequence (list, tuple) or a one-dimensional
    array (numpy's, which is no Sequence); None for anything else (text, bytes, a scalar, a 2-D array)."""
    if isinstance(tokens, (str, bytes, bytearray, memoryview)):
        return None
    if isinstance(tokens, Sequence):
        return tokens
    if getattr(tokens, "ndim", None) == 1 and callable(getattr(tokens, "tolist", None)):
        return tokens.tolist()  # (a float array's items are then refused one by one, naming the first)
    return None


def _token_ids(name: str, tokens, n_vocab: int) -> list[int]:
    seq = _token_sequence(tokens)
    if seq is None:
        raise type_refusal(name, f"{name}: expected a list of token ids, got {type(tokens).__name__}")
    return [_token_id(f"{name}[{i}]", t, n_vocab) for i, t in enumerate(seq)]


def _tokenize(native, text: str, add_special: bool, parse_special: bool) -> list[int]:
    if not isinstance(text, str):
        raise type_refusal("text", f"text: expected a string, got {type(text).__name__}")
    # each flag checked here: pybind11 refuses a non-bool with "incompatible function arguments", naming none
    return token_ids.tokenize(native, engine_text("text", text), check_flag("add_special", add_special),
                           check_flag("parse_special", parse_special))


def _token_bytes(native, token: int, special: bool) -> bytes:
    return native.token_to_piece(_token_id("token", token, native.n_vocab), check_flag("special", special))


def _detokenize(native, tokens, remove_special: bool, unparse_special: bool) -> str:
    return native.detokenize(_token_ids("tokens", tokens, native.n_vocab), check_flag("remove_special", remove_special),
                             check_flag("unparse_special", unparse_special))


class Vocabulary:
    """A model's tokenizer, for reading the output of requests made before the model closed: a request's text goes on
    arriving after an unload cancelled it, and its token ids still have to be spelled (stop strings, reasoning
    tokens, ids shown with the text). It holds the native model as a running request does, so use it for as long as
    such a request's output is read, not longer: the model's memory is freed once nothing holds it
    (:meth:`Model.vocabulary`)."""

    __slots__ = ("_native", "n_vocab")

    def __init__(self, native) -> None:
        if not hasattr(native, "n_vocab") or not hasattr(native, "token_to_piece"):
            # (jan.Vocabulary("model.gguf") failed with "'str' object has no attribute 'n_vocab'")
            raise BadRequestTypeError(f"native: expected the engine's native model (a jan.Vocabulary is made by "
                                      f"Model.vocabulary()), got {type(native).__name__}", param="native",
                                      code="invalid_type")
        self._native = native
        self.n_vocab = native.n_vocab

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """As :meth:`Model.tokenize`."""
        return _tokenize(self._native, text, add_special, parse_special)

    def token_to_bytes(self, token: int, special: bool = False) -> bytes:
        """As :meth:`Model.token_to_bytes`."""
        return _token_bytes(self._native, token, special)

    # (the reading half of the tokenizer as Model has it: a request's token ids spelled after the close, where
    # ``vocabulary().detokenize`` was an AttributeError)
    def detokenize(self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = False) -> str:
        """As :meth:`Model.detokenize`."""
        return _detokenize(self._native, tokens, remove_special, unparse_special)

    def token_to_piece(self, token: int, special: bool = False) -> str:
        """As :meth:`Model.token_to_piece`."""
        return _token_bytes(self._native, token, special).decode("utf-8", errors="replace")

    # A read-only view of the loaded model: a copy is the same view (as a copy of a tuple is the tuple). Pickling
    # failed on the native model with "cannot pickle 'jan._engine.Model' object", naming nothing the user holds.
    def __copy__(self) -> "Vocabulary":
        return self

    def __deepcopy__(self, memo) -> "Vocabulary":
        return self

    def __reduce__(self):
        raise TypeError("a jan.Vocabulary cannot be pickled: it reads the tokenizer of a model loaded in this process "
                        "(pickle the token ids, or load the model again where they are read)")

    def __repr__(self) -> str:
        return f"<jan.Vocabulary n_vocab={self.n_vocab}>"


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF file says about the model."""

    path: str
    architecture: str
    description: str
    n_params: int
    size_bytes: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_vocab: int
    special_tokens: dict[str, int]
    chat_template: str | None
    metadata: dict[str, str] = field(repr=False)
    #: Each of :attr:`special_tokens` as its text (the piece a template writes for it, e.g. ``"bos": "<s>"``).
    special_texts: dict[str, str] = field(default_factory=dict, repr=False)
    #: llama.cpp's ``enum llama_vocab_type`` of the tokenizer (1 SPM, 2 BPE, 3 WPM, 4 UGM, ...; 0 none).
    vocab_type: int = 0
    #: llama.cpp's name of the weights' type ("Q4_K - Medium", "(guessed) all F32"): the file's ``general.file_type``,
    #: else the type llama.cpp guesses from its tensors (the type most have), a header read's (vocab-only) as a
    #: load's; "" where unknown.
    ftype: str = ""
    #: The same as llama.cpp's ``enum llama_ftype`` value (``general.file_type``'s numbering; 1024,
    #: ``LLAMA_FTYPE_GUESSED``, added where guessed); -1 where unknown.
    file_type: int = -1


def _physical_cores() -> int:
    """Generation threads by default, as llama.cpp picks them: one per physical core
    (hyper-threads share a core's bandwidth and only add barrier stalls)."""
    cores = _linux_physical_cores()
    if cores is None:
        import psutil

        cores = psutil.cpu_count(logical=False)
    return cores or max(1, (os.cpu_count() or 2) // 2)


def _linux_physical_cores() -> int | None:
    """Physical cores as Linux's sysfs tells them (one per distinct set of hyper-thread siblings), or ``None``
    elsewhere. Read here rather than through psutil (which reads the same files) because a ``jan serve`` that
    imports psutil only for this count carries its 0.6 MiB resident for its whole life (issue 16's memory goal);
    psutil stays the answer on other systems and for the ``/v1/system`` readings."""
    import glob

    siblings = set()
    for cpu in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology"):
        for name in ("core_cpus_list", "thread_siblings_list"):  # (the second: kernels before 5.7)
            try:
                with open(f"{cpu}/{name}", encoding="ascii") as f:
                    siblings.add(f.read().strip())
                break
            except (OSError, ValueError):
                continue
    return len(siblings) or None


def _is_embedding_model(native) -> bool:
    return is_embedding_metadata(native.metadata())


def _check_cache_types(native, cache_type_k, cache_type_v, flash_attn, what: str = "") -> None:
    """:class:`ModelSettingError` when the model cannot hold these KV cache types (the rules of
    :mod:`jan.engine.kv_cache`, the very ones the server applies to a model.json before storing it):
    said here, before llama.cpp is asked, because some of its refusals (K and V of different types
    for latent attention, a quantized V for Grok) come back only as a context it could not create,
    which reads as running out of memory. ``what`` prefixes the message (the draft model)."""
    problem = cache_type_problem(native.metadata(), cache_type_k, cache_type_v, flash_attn)
    if problem is not None:
        raise ModelSettingError(f"{what}{problem}", param=problem.option, code="unsupported_cache_type")


class Model:
    """A loaded GGUF model.

    Generation runs on the model's own engine thread with ``n_parallel`` slots
    (each with ``n_ctx`` tokens of context); every call that can take long
    releases the GIL. Embeddings use a separate context created on first use.
    ``cache_type_k``/``cache_type_v`` pick the KV cache's element type (``CACHE_TYPES``; default
    f16; q8_0 halves the cache, a quantized V turns flash attention on and raises ValueError
    when ``flash_attn=False``). ``speculative``/``draft_max``/``draft_min``/``ngram`` are every
    request's defaults for speculative decoding (see :meth:`stream`). ``draft_model`` is a GGUF
    with the same vocabulary (ValueError otherwise, and for a model that only embeds) that drafts for this one:
    loaded beside it,
    with its own KV cache (as many slots and as much context), it makes ``speculative="draft"``
    every request's default. ``kv_unified`` puts all slots in one KV buffer (faster batched steps
    on some CPUs; separate buffers keep slots fully independent). ``cache_ram_mib`` (MiB; -1 no
    limit, 0 off; default: llama-server's ``--cache-ram`` 8192, at most a quarter of the RAM,
    :func:`jan.engine.fit.default_prompt_cache_mib`) keeps more conversations' KV caches than there
    are slots: a slot taken by another conversation first saves its sequence to host memory, and a
    later prompt that continues a saved one has it copied back instead of evaluated (the oldest
    saved ones go first past the limit or past 256 of them; prompts with images or audio are not
    saved; off for recurrent and hybrid models). See ``cpp/prompt_cache.h``.

    ``n_threads`` (default: the physical cores) and ``n_threads_batch`` (prompt processing; default:
    all hardware threads) are what a step uses on a quiet machine. ``adaptive_threads`` (Linux):
    "exact" (the default, or True) lets a step use fewer while other processes keep cores busy — the
    free cores, rounded — so that OpenMP threads do not spin waiting for one that lost its core (a
    10-100x slowdown otherwise), except, for a request that expects its output again (greedy, or a
    seed the caller chose: the ``reproducible`` option), one-token steps over more than 256 cached
    tokens with flash attention and an f16/f32 cache, whose attention sums depend on the thread
    count: such output is the same under any load. "always" adapts those steps too (fastest under
    load; a long lone generation may then differ from a quiet one); "off" (or False) keeps the
    configured counts. A q8_0 cache has no such steps. ``metrics()`` reports the governor's counts (``n_threads``,
    ``n_threads_batch``) and ``cpu_busy_elsewhere`` (cores). See ``cpp/thread_governor.h``.

    Without ``n_ctx`` every slot gets the model's training context, at most 4096 tokens — or, when
    that KV cache would not fit in free memory, the largest multiple of 256 that does
    (:mod:`jan.engine.fit`; :attr:`context_fit` says what was chosen). ModelLoadError when not
    even 256 tokens fit.

    ``extra_buffers``: llama.cpp's extra weight layouts for the CPU (repacked quants, AMX tiles,
    KleidiAI). None (the default) uses them except on CPUs with AMX, where this llama.cpp's AMX
    matmul crashes off the process's main thread (ggml-org/llama.cpp#20824; see cpp/model.cpp);
    True forces them on (for a llama.cpp with the fix), False off.

    llama.cpp's placement options, as ``jan bench`` passes llama-bench's (each None: llama.cpp's default):
    ``split_mode`` (``SPLIT_MODES``: how the weights spread over several GPUs; ``main_gpu`` holds them all with
    "none"), ``tensor_split`` (each GPU's share, numbers >= 0; at most llama.cpp's device count),
    ``tensor_buft_overrides`` ((regular expression, buffer type) pairs such as ``("blk\\.0\\..*", "CPU")``: the
    tensors whose names match are kept in that device buffer; a type the build lacks is a ValueError naming the
    ones it has), ``load_mode`` (``LOAD_MODES``; else ``use_mmap``/``use_mlock`` say it), ``offload_kqv`` (False:
    the KV cache stays on the CPU), ``op_offload`` (False: operations on weights in host memory stay on the CPU),
    ``no_host`` (no pinned host buffer), ``lazy_mode`` (``LAZY_MODES``: rows of large marked tensors read on demand),
    ``n_cpu_moe`` (the first N layers' mixture-of-experts weights kept in CPU memory), ``devices`` (the GPUs the
    weights may go to, by ggml's names such as ``CUDA0``; an empty list: none; a name the build lacks is a
    ValueError naming the ones it has), ``output_embeddings`` (the
    generation context also outputs every token's embeddings). ``cpu_mask`` (hexadecimal, bit i: CPU i), ``cpu_strict``, ``poll`` (0-100) and ``prio`` (-1 low to
    3 realtime): once any is given, the context computes on a ggml threadpool of its own made with them, as
    llama-bench's and llama-server's ``--cpu-mask``/``--cpu-strict``/``--poll``/``--prio``.

    ``lora``: LoRA adapter GGUFs for this model, each a path (scale 1) or a ``(path, scale)`` pair (ids in that
    order); their scales are the defaults of requests that name none (``lora_init_without_apply``: all 0), changed
    at runtime by setting :attr:`lora_adapters`; a request's own ``lora=[{"id": i, "scale": s}]`` runs the others at
    0. A file that cannot be an adapter of this model is a :class:`~jan.LoraAdapterError` (activated LoRAs are
    refused). Requests of different scales are never batched together nor share KV (see README "LoRA adapters").

    ``mmproj`` is a multimodal projector GGUF for this model (llama.cpp's
    libmtmd loads it): prompts may then carry images (and audio, when the
    projector has an audio encoder) — see :meth:`stream`. ``media_limits``
    bounds what one request may carry. ``image_min_tokens``/``image_max_tokens`` (1 to
    :data:`IMAGE_TOKENS_MAX`, min <= max; None: the projector's own, e.g. 8 to 4096 for Qwen2/2.5/3-VL) bound
    the tokens one image takes on projectors that resize images to a number of tokens (dynamic resolution:
    Qwen2/2.5/3-VL, Pixtral, Kimi-VL, LFM2, ...; llama-server's ``--image-min-tokens``/``--image-max-tokens``):
    a big photo takes at most ``image_max_tokens`` of the context. Fixed-resolution projectors (LLaVA, Gemma 3)
    ignore them. A minimum above the projector's own maximum, with no maximum given, is a ModelSettingError
    naming ``image_min_tokens``.

    >>> m = Model("stories260K.gguf")
    >>> m.generate("Once upon a time", max_tokens=30, temperature=0).text
    """

    @keywords_named  # (n_ctxx: Python's TypeError, with the option it likely meant)
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_ctx: int | None = None,
        n_parallel: int = 1,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        adaptive_threads: bool | str = "exact",
        n_gpu_layers: int | str = AUTO,
        main_gpu: int = 0,
        split_mode: str | None = None,
        tensor_split: Sequence[float] | None = None,
        tensor_buft_overrides: Sequence[tuple[str, str]] | None = None,
        use_mmap: bool = True,
        use_mlock: bool = False,
        load_mode: str | None = None,
        lazy_mode: str | None = None,
        devices: Sequence[str] | None = None,
        no_host: bool | None = None,
        n_cpu_moe: int | None = None,
        op_offload: bool | None = None,
        offload_kqv: bool | None = None,
        output_embeddings: bool | None = None,
        cpu_mask: str | None = None,
        cpu_strict: bool | None = None,
        poll: int | None = None,
        prio: int | None = None,
        extra_buffers: bool | None = None,
        flash_attn: bool | None = None,
        max_queue: int = 64,
        kv_unified: bool = False,
        cache_type_k: str | None = None,
        cache_type_v: str | None = None,
        cache_ram_mib: int | None = None,
        speculative: bool | str | None = None,
        draft_max: int | None = None,
        draft_min: int | None = None,
        ngram: int | None = None,
        draft_p_min: float | None = None,
        draft_model: str | os.PathLike | None = None,
        lora: Sequence | None = None,
        lora_init_without_apply: bool | None = None,
        embedding: bool | None = None,
        pooling: str | None = None,
        vocab_only: bool = False,
        model_id: str | None = None,
        mmproj: str | os.PathLike | None = None,
        image_min_tokens: int | None = None,
        image_max_tokens: int | None = None,
        media_limits: MediaLimits | None = None,
    ):
        self._pid = os.getpid()  # the process that loads it (see _forked)
        self.path = file_path(path, "path")
        # None is "not given" for every load option (check_load_option's rule, a model.json's null, a caller passing
        # its own optional setting through): the option's default, not int(None)'s TypeError naming nothing or a
        # bool(None) that turned use_mmap off
        n_parallel, n_batch, adaptive_threads, n_gpu_layers, main_gpu, use_mmap, use_mlock, max_queue, kv_unified, \
            vocab_only = (LOAD_OPTION_DEFAULTS[name] if value is None else value for name, value in (
                ("n_parallel", n_parallel), ("n_batch", n_batch), ("adaptive_threads", adaptive_threads),
                ("n_gpu_layers", n_gpu_layers), ("main_gpu", main_gpu), ("use_mmap", use_mmap),
                ("use_mlock", use_mlock), ("max_queue", max_queue), ("kv_unified", kv_unified),
                ("vocab_only", vocab_only)))
        if model_id is not None:
            model_id_text(model_id, empty=True)  # ("" is the file's name, as None)
        self.id = model_id or Path(self.path).stem
        # every option and every file checked before the weights are read: a bad one costs no load
        check_load_options({name: value for name, value in locals().items() if name in _LOAD_OPTION_NAMES})
        check_gguf_file(self.path, "model file")
        if not vocab_only:
            for option, value in (("draft_model", draft_model), ("mmproj", mmproj)):
                if value is not None:
                    check_gguf_file(str(Path(value)), COMPANION_FILES[option], f"{option}: ")
        lora = lora_files(lora) if lora is not None else ()
        if not vocab_only:
            check_lora_files(lora)
        n_gpu_layers = check_load_option("n_gpu_layers", n_gpu_layers)
        #: What ``n_gpu_layers="auto"`` chose and why (:mod:`jan.engine.offload`); None when a count was given.
        self.offload: OffloadPlan | None = None
        if n_gpu_layers == AUTO and vocab_only:
            n_gpu_layers = 0  # no weights to place (and the header read a plan makes is such a load)
        elif n_gpu_layers == AUTO:
            self.offload = self._plan_offload(n_ctx, n_parallel, n_ubatch or n_batch, cache_type_k, cache_type_v,
                                              bool(embedding))
            n_gpu_layers = self.offload.n_gpu_layers
        #: The layers offloaded to the GPU, as llama.cpp took them (-1: all; "auto" resolved).
        self.n_gpu_layers = int(n_gpu_layers)
        mp = _engine.ModelParams()
        mp.n_gpu_layers = self.n_gpu_layers
        mp.main_gpu = int(main_gpu)
        mp.use_mmap = bool(use_mmap)
        mp.use_mlock = bool(use_mlock)
        mp.vocab_only = bool(vocab_only)
        mp.extra_buffers = -1 if extra_buffers is None else int(bool(extra_buffers))
        if split_mode is not None:
            mp.split_mode = SPLIT_MODES[split_mode.lower()]
        if tensor_split is not None:
            mp.tensor_split = list(tensor_shares("tensor_split", tensor_split))
        overrides = list(buffer_overrides("tensor_buft_overrides", tensor_buft_overrides or ()))
        # the first n_cpu_moe layers' experts kept in CPU memory, after the caller's own overrides (llama.cpp's order)
        overrides += [(rf"blk\.{i}{MOE_EXPERTS}", "CPU") for i in range(int(n_cpu_moe or 0))]
        if overrides:
            mp.tensor_buft_overrides = overrides
        if lazy_mode is not None:
            mp.lazy_mode = LAZY_MODES[lazy_mode.lower()]
        mp.no_host = bool(no_host)
        if devices is not None:
            mp.devices = list(gpu_devices("devices", devices))
        if load_mode is not None:  # (else use_mmap and use_mlock say it)
            mp.load_mode = LOAD_MODES[load_mode.lower()]
        self._native = load_weights(self.path, mp)

        self._pooling = pooling
        # read once: it describes the weights, so it is still answered once the model is closed
        self._rank_pooling = self._native.pooling_type == RANK_POOLING
        self._rerank_template = self._native.meta(RERANK_TEMPLATE_KEY) or None
        self.vocab_only = bool(vocab_only)
        self.embedding_only = bool(embedding) if embedding is not None else (
            not vocab_only and _is_embedding_model(self._native))
        if not self.vocab_only and not self.embedding_only:  # only a generation context has a KV cache
            kv_types = (_cache_type("cache_type_k", cache_type_k), _cache_type("cache_type_v", cache_type_v))
            _check_cache_types(self._native, *kv_types, flash_attn)  # before a draft model is read too
        if not self.vocab_only and self.embedding_only:
            # kept as every request's defaults, they were never read (a model that embeds makes no text to draft):
            # refused, as a draft model and LoRA adapters are for it
            for option, value in (("speculative", speculative), ("draft_max", draft_max), ("draft_min", draft_min),
                                  ("ngram", ngram), ("draft_p_min", draft_p_min)):
                if value is not None and not (option == "speculative" and speculative_mode(value) == "none"):
                    raise ModelSettingError(f"{option}: '{self.path}' is an embedding model; speculative decoding "
                                            "applies to text generation only", param=option, code="invalid_value")
        # Per-model speculative-decoding defaults; a request's own options win.
        if speculative is None and draft_model is not None:
            speculative = "draft"
        self._request_defaults = {k: v for k, v in (("speculative", speculative), ("draft_max", draft_max),
                                                     ("draft_min", draft_min), ("ngram", ngram),
                                                     ("draft_p_min", draft_p_min)) if v is not None}
        self.draft_model: str | None = None
        self._native_draft = None
        if draft_model is not None and not vocab_only and self.embedding_only:
            # it was dropped without a word (a LoRA adapter is refused here): a model.json's draft_model stayed in
            # force in the user's eyes, and jan serve's --model-draft told no draft_model_skipped for the model; the
            # words are a draft mismatch's, so the server handles both as it handles another vocabulary
            raise ValueError(f"draft_model: '{draft_model}' cannot draft for '{self.path}': it is an embedding "
                             "model (speculative decoding applies to text generation only)")
        if draft_model is not None and not vocab_only and not self.embedding_only:
            self.draft_model = str(Path(draft_model))
            self._native_draft = load_weights(self.draft_model, mp, what="draft_model: ")
            # the draft's own cache has the same types (cpp/draft_model.cpp)
            _check_cache_types(self._native_draft, *kv_types, flash_attn, what="draft_model: ")
        self._loras: list = []  # the native LoraAdapters, in id order (held by the scheduler too)
        if lora and self.embedding_only:
            raise lora_on_embedding_model(self.id)
        if lora and not vocab_only:
            for i, (file, _) in enumerate(lora):
                try:
                    self._loras.append(_engine.LoraAdapter(self._native, native_path(file, f"lora[{i}]: ")))
                except LoraAdapterError as exc:
                    raise LoraAdapterError(f"lora[{i}]: {exc}", param=f"lora[{i}]") from None
                finally:
                    forward_native_logs()
        # the scales requests that name none run under (llama-server's --lora-init-without-apply: all 0)
        lora_scales = [0.0 if lora_init_without_apply else scale for _, scale in lora][:len(self._loras)]
        #: How the context size was chosen when ``n_ctx`` was not given (None when it was).
        self.context_fit: ContextFit | None = None
        self._n_threads = n_threads
        #: "exact", "always" or "off" (``ADAPTIVE_THREADS``).
        self.adaptive_threads = _adaptive_threads(adaptive_threads)
        self._embedder = None
        self._embedder_lock = threading.Lock()
        # an embedding model's n_ctx (model.json's ctx_len) is its embedding context, as llama-server's -c is: without
        # it the training context (8 to EMBED_MAX_CTX), and never more (past its positions a BERT reads garbage)
        self._embed_n_ctx = min(int(n_ctx), self._training_embed_ctx()) \
            if n_ctx and self.embedding_only and not self.vocab_only else None
        #: The embedding context's turns (see _embed_turn_chunks): first come, first served.
        self._embed_turns = Turns()
        # uses of the model outside the scheduler (embed() calls, hold() blocks), which has none of them in its
        # counters: how many run now, how many began since load, and this thread's nesting (one use, counted once)
        self._uses_running = 0
        self._uses_started = 0
        # generations submitted inside a hold() (a request's render-and-submit): begun with the hold, so not counted
        # again. Counted twice, one request's begun uses stood for another's claim too, and the pool closed the
        # model under that other request before its submit (a keep_alive 0's 503)
        self._uses_within = 0
        self._uses_lock = threading.Lock()
        self._use_depth = threading.local()
        self._scheduler = None
        self._load_id = next(_LOAD_IDS)
        self._closed = False
        self._control_texts: tuple[bytes, ...] | None = None  # (control_texts(), read on first use)
        self._close_lock = threading.Lock()
        #: Requests that may wait for a slot (beyond ``n_parallel`` running) before QueueFullError.
        self.max_queue = int(max_queue)
        self._room = RoomSignal()  # told when one of this model's requests ends
        # over the native model itself, not self: a request with logprobs keeps it to name its last tokens after
        # a close (which drops the model's own reference, so that the weights go with the last user)
        self._piece_cache = functools.lru_cache(maxsize=65536)(functools.partial(_piece, self._native))

        if not self.vocab_only and not self.embedding_only:
            cp = _engine.ContextParams()
            cp.n_parallel = int(n_parallel)
            cp.cache_type_k = _cache_type("cache_type_k", cache_type_k)
            cp.cache_type_v = _cache_type("cache_type_v", cache_type_v)
            if n_ctx:
                cp.n_ctx = int(n_ctx)
            else:
                self.context_fit = self._fit_context(cp)
                cp.n_ctx = self.context_fit.n_ctx
                if self.context_fit.fitted:  # (a smaller context than the default, said: it was chosen unsaid)
                    _log.warning("%s: context fitted to %d tokens a slot, not the %d wanted, for the KV cache of %d "
                                 "slot(s) to fit the %.0f MiB of memory free; give a context size (n_ctx, ctx_len, "
                                 "-c) to choose one", self.id, cp.n_ctx, self.context_fit.wanted, cp.n_parallel,
                                 self.context_fit.free_bytes / 2**20)
            cp.n_batch = int(n_batch)
            cp.n_ubatch = int(n_ubatch or n_batch)
            cp.n_threads = int(n_threads or _physical_cores())
            cp.n_threads_batch = int(n_threads_batch or -1)
            cp.adaptive_threads = self.adaptive_threads != "off"
            cp.exact_threads = self.adaptive_threads == "exact"
            # None keeps llama.cpp's auto (on for CPU), as llama-server. Neither setting makes a
            # request's output independent of the others in its steps: on CPU, flash attention sums a
            # lone one-token step over > 256 cached tokens in per-thread chunks (the split-KV path),
            # but a batched step row by row, and without flash attention the matmuls group sums by
            # batch shape. Measured on Gemma 3 270M (2026-12-01, 80 greedy tokens after a 400-token
            # prompt): lone and batched differed for 3 of 4 prompts with flash attention, none without.
            cp.flash_attn = -1 if flash_attn is None else int(bool(flash_attn))
            cp.max_queue = int(max_queue)
            cp.kv_unified = bool(kv_unified)
            cp.cache_ram_mib = int(cache_ram_mib) if cache_ram_mib is not None else default_prompt_cache_mib()
            cp.offload_kqv = offload_kqv is not False
            cp.embeddings = bool(output_embeddings)
            cp.op_offload = op_offload is not False
            # a threadpool of its own, as llama-bench makes, once any of its settings is given (else llama.cpp's
            # default one, made for each compute)
            if any(v is not None for v in (cpu_mask, cpu_strict, poll, prio)):
                cp.threadpool = True
                cp.cpumask = cpu_mask_bits("cpu_mask", cpu_mask) if cpu_mask is not None else []
                cp.cpu_strict = bool(cpu_strict)
                cp.poll = 50 if poll is None else int(poll)
                cp.prio = 0 if prio is None else int(prio)
            # a cache larger than all the machine's memory is refused before llama.cpp tries: its cell bookkeeping
            # alone grows with n_ctx (gigabytes of RAM, and minutes on a busy machine, for 2**31 cells) before the
            # cache's own allocation fails
            too_big = None
            if n_ctx and self._context_too_big(cp, memory_total_bytes(swap=False), "") is not None:
                too_big = self._context_too_big(cp, memory_total_bytes(), "of memory this machine has")
            if n_ctx and too_big is None:
                # llama.cpp clears the whole cache once made, so a host part past what is free now is not refused by
                # the allocator (Linux overcommits) but ends the process in the OOM killer, with every model and
                # request it serves; refused here instead, as the setting's 400
                too_big = self._context_too_big(cp, host_memory_free_bytes(), "of memory free (RAM and swap)",
                                                host_only=True)
            if too_big is not None:
                raise too_big
            try:
                self._scheduler = _engine.Scheduler(self._native, cp, self._native_draft, self._loras, lora_scales)
            except ModelLoadError as exc:
                too_big = self._context_too_big(cp, free_memory_bytes(), "of memory free") if n_ctx else None
                if too_big is None:
                    raise
                raise too_big from exc
            finally:
                forward_native_logs()

        self._projector = None
        self.media_limits = media_limits or DEFAULT_LIMITS
        #: The ``image_min_tokens``/``image_max_tokens`` the projector was loaded with (None: its own).
        self.image_min_tokens = image_min_tokens if mmproj is not None else None
        self.image_max_tokens = image_max_tokens if mmproj is not None else None
        if mmproj is not None:
            self._load_projector(str(Path(mmproj)), n_threads_batch, self.n_gpu_layers, flash_attn)
        _LOADED.add(self)

    def _context_too_big(self, cp, memory: int, what: str, host_only: bool = False) -> ModelSettingError | None:
        """Why the context of an ``n_ctx`` the caller chose cannot be made, when its KV cache and llama.cpp's
        bookkeeping of its cells are more than ``memory`` bytes (``what`` names them: "of memory free", "of memory
        this machine has"; ``host_only``: the part of the cache in host memory, the offloaded layers' left out):
        that setting's fault (a 400 naming it, as a bad value is), not a failure of the server. None when the cache
        fits (a backend's own failure stays a ModelLoadError)."""
        per_cell = self._native.kv_cache_bytes(1, cp.cache_type_k, cp.cache_type_v)
        if self._native_draft is not None:
            per_cell += self._native_draft.kv_cache_bytes(1, cp.cache_type_k, cp.cache_type_v)
        if host_only:
            per_cell *= 1.0 - self._kv_gpu_share()
        need = int((per_cell + CELL_BOOKKEEPING_BYTES) * cp.n_ctx * cp.n_parallel)
        if need <= memory:
            return None
        gib = 1024 ** 3
        # (one slot: the context alone is the way; several: fewer of them is one too)
        advice = CONTEXT_TOO_LARGE_SLOTS if cp.n_parallel > 1 else CONTEXT_TOO_LARGE
        slots = f"for each of {cp.n_parallel} slots " if cp.n_parallel > 1 else ""
        return ModelSettingError("", param="n_ctx", code="context_too_large").advise(
            f"a context of {cp.n_ctx} tokens {slots}needs {need / gib:.1f} GiB of KV cache, more than the "
            f"{memory / gib:.1f} GiB {what}, so llama.cpp could not make it", advice, named=True)

    def _kv_gpu_share(self) -> float:
        """The part of the KV cache llama.cpp puts on GPUs (0.0 without one): that of the offloaded layers."""
        info = _engine.system_info()
        if info["supports_gpu_offload"] and gpu_free_bytes(info["devices"])[1]:
            return kv_gpu_share(self.n_gpu_layers, self._native.n_layer)
        return 0.0

    def _fit_context(self, cp) -> ContextFit:
        """The default context per slot, shrunk to what free memory holds (see :mod:`jan.engine.fit`): the KV
        cache of the layers on the CPU in the RAM free, and that of the layers offloaded in what the GPUs have
        free now, after their weights (less llama.cpp's compute buffers and the per-device headroom)."""
        wanted = min(self._native.n_ctx_train or _DEFAULT_MAX_CTX, _DEFAULT_MAX_CTX)
        per_cell = self._native.kv_cache_bytes(1, cp.cache_type_k, cp.cache_type_v)
        if self._native_draft is not None:
            per_cell += self._native_draft.kv_cache_bytes(1, cp.cache_type_k, cp.cache_type_v)
        info = _engine.system_info()
        gpu_free, n_gpus = gpu_free_bytes(info["devices"])
        share = 0.0
        if n_gpus and info["supports_gpu_offload"]:
            share = kv_gpu_share(self.n_gpu_layers, self._native.n_layer)
        fits = []
        if share < 1.0:
            fits.append(fit_n_ctx(wanted, cp.n_parallel, per_cell * (1.0 - share), free_memory_bytes()))
        if share > 0.0:
            fits.append(fit_n_ctx(wanted, cp.n_parallel, per_cell * share, gpu_free,
                                  headroom=compute_buffer_bytes(self._native.n_vocab, cp.n_ubatch or cp.n_batch)))
        fit = min(fits, key=lambda f: f.n_ctx)
        return ContextFit(fit.n_ctx, wanted, int(per_cell * fit.n_ctx * max(1, cp.n_parallel)), fit.free_bytes)

    def _plan_offload(self, n_ctx, n_parallel, n_ubatch, cache_type_k, cache_type_v, no_kv: bool) -> OffloadPlan:
        """``n_gpu_layers="auto"``: without a GPU, none (nothing read); with one, the layers that fit it with the
        KV cache of the context asked for (the default's when none is: the fit may only shrink it), from the
        file's tensor table and its header (:mod:`jan.engine.offload`)."""
        info = _engine.system_info()
        if not info["supports_gpu_offload"] or not gpu_free_bytes(info["devices"])[1]:
            return OffloadPlan(0, 0, 0, 0, "no GPU: every layer on the CPU")
        path = native_path(self.path, "model file: ")
        try:
            layers = _engine.gguf_layer_bytes(path)
        except RuntimeError as exc:
            raise ModelFileError(f"model file: {exc}", param="path") from None
        header = read_info(self.path)  # (a vocab-only read, kept per file version: the listings read it too)
        arch = header.metadata.get("general.architecture") or ""
        n_layer = header_int(header.metadata, f"{arch}.block_count") or len(layers["layers"])
        n_ctx_train = header_int(header.metadata, f"{arch}.context_length") or 0
        wanted = int(n_ctx) if n_ctx else min(n_ctx_train or _DEFAULT_MAX_CTX, _DEFAULT_MAX_CTX)
        no_kv = no_kv or is_embedding_metadata(header.metadata)  # (an embedding model makes no KV cache)
        kv = 0 if no_kv else wanted * max(1, int(n_parallel)) * kv_bytes_per_cell(
            header.metadata, _cache_type("cache_type_k", cache_type_k), _cache_type("cache_type_v", cache_type_v))
        n_vocab = header.n_vocab
        plan = plan_offload(layers, kv_bytes=kv, n_layer=n_layer, n_vocab=n_vocab, n_ubatch=int(n_ubatch),
                            devices=info["devices"], gpu_offload=True)
        _log.info("model '%s': n_gpu_layers auto: %s", self.id, plan.reason)
        return plan

    def _load_projector(self, path: str, n_threads_batch: int | None, n_gpu_layers: int, flash_attn: bool | None) -> None:
        if self._scheduler is None:
            raise ModelLoadError(f"model '{self.id}' cannot generate, so it takes no projector (mmproj)")
        try:
            check_gguf_file(path, COMPANION_FILES["mmproj"], "mmproj: ")  # checked at the start; gone since?
        except ModelFileError:
            self.close()  # as when llama.cpp refuses the projector: no half-loaded model is left running
            raise
        pp = _engine.ProjectorParams()
        pp.n_threads = int(n_threads_batch or -1)
        pp.use_gpu = n_gpu_layers != 0
        # None: libmtmd's auto, as llama-server (off, a Qwen-VL projector's warm-up reserves gigabytes of attention)
        pp.flash_attn = -1 if flash_attn is None else int(bool(flash_attn))
        # -1: the projector's own bounds (mtmd_context_params' default)
        pp.image_min_tokens = -1 if self.image_min_tokens is None else int(self.image_min_tokens)
        pp.image_max_tokens = -1 if self.image_max_tokens is None else int(self.image_max_tokens)
        try:
            self._projector = _engine.Projector(self._native, path, pp)
        except ModelLoadError as e:
            detail = native_error_detail(forward_native_logs())
            self.close()
            if self.image_min_tokens is not None and self.image_max_tokens is None and _MIN_OVER_MAX in detail:
                # clip refuses a minimum above the projector's own maximum (clip.cpp's "image_max_pixels (..) is
                # less than image_min_pixels"): the option's fault, said in its terms rather than in pixels
                raise ModelSettingError(
                    f"image_min_tokens: {self.image_min_tokens} is more than this projector's own maximum tokens per "
                    "image; give a larger image_max_tokens too, or a smaller image_min_tokens",
                    param="image_min_tokens", code="conflicting_options") from None
            detail = f": {detail}" if detail else ""
            # libmtmd refusing the file is a fact about it, as llama.cpp refusing weights or a draft model is
            raise ModelFileError(f"mmproj: {e}{detail}", param="mmproj") from None
        forward_native_logs()

    # -- description ---------------------------------------------------
    @functools.cached_property
    def info(self) -> ModelInfo:
        n = self._native
        special = {k: v for k, v in n.special_tokens().items() if 0 <= v < n.n_vocab}
        return ModelInfo(
            path=self.path,
            architecture=n.architecture(),
            description=n.description(),
            **{name: getattr(n, name) for name in _NATIVE_SIZES},
            special_tokens=special,
            chat_template=n.chat_template() or None,
            metadata=n.metadata(),
            special_texts={k: _token_bytes(n, v, True).decode("utf-8", errors="replace") for k, v in special.items()},
            vocab_type=n.vocab_type,
            ftype=n.ftype_name,
            file_type=n.ftype,
        )

    @property
    def metadata(self) -> dict[str, str]:
        """Every GGUF key/value (arrays and numbers rendered as strings by llama.cpp)."""
        return self.info.metadata

    @property
    def chat_template(self) -> str | None:
        return self.info.chat_template

    @property
    def n_ctx(self) -> int:
        """Context tokens available to one request (one slot); for an embedding model, to one input (its
        embedding context, made on first use: the size it will have until then). 0 once closed, or vocab-only."""
        scheduler = self._scheduler
        if scheduler is not None:
            return scheduler.n_ctx_slot
        if self.embedding_only and not self.vocab_only and not self._closed:
            embedder = self._embedder
            if embedder is not None:
                return embedder.n_ctx
            # what the embedding context will be (_get_embedder: ctx_len, or cpp/embedder.cpp's training context)
            return self._embed_n_ctx or self._training_embed_ctx()
        return 0

    def _training_embed_ctx(self) -> int:
        """cpp/embedder.cpp's embedding context where none is asked for: the training context, 8 to 8192 tokens."""
        return min(max(self.info.n_ctx_train, 8), EMBED_MAX_CTX)

    @property
    def n_ctx_embed(self) -> int:
        """Tokens one input to :meth:`embed` may have (the embedding context; made on first use). What
        :meth:`embed` raises where it cannot embed: ModelClosedError once closed, BadRequestError for a vocab-only
        model."""
        embedder = self._embedder  # any pooling's context holds as many tokens: no new context just to read it
        if embedder is not None and not self._closed:
            return embedder.n_ctx
        return self._get_embedder(None).n_ctx

    @property
    def pooling(self) -> str | None:
        """The ``pooling`` this model was loaded with (mean, cls, last, none), None: the model's own (mean when
        its header names none). "none": :meth:`embed` answers a vector per token unless a call asks otherwise."""
        return self._pooling

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes of the KV cache for all slots (0 for embedding and vocab-only models): every layer at the full
        context. For sliding-window models (Gemma 2/3, gpt-oss, ...) an upper bound: their window layers hold
        about window + n_ubatch cells per slot (llama.cpp's public API does not say which layers those are)."""
        scheduler = self._scheduler
        return scheduler.kv_cache_bytes if scheduler is not None else 0

    @property
    def draft_kv_cache_bytes(self) -> int:
        """Bytes of the draft model's KV cache (0 without a draft model)."""
        scheduler = self._scheduler
        return scheduler.draft_kv_cache_bytes if scheduler is not None else 0

    @property
    def draft_memory_bytes(self) -> int:
        """Bytes of the draft model's weights (0 without a draft model, or once closed)."""
        draft = self._native_draft
        return draft.size_bytes if draft is not None else 0

    @property
    def n_parallel(self) -> int:
        scheduler = self._scheduler
        return scheduler.n_parallel if scheduler is not None else 0

    @property
    def mmproj(self) -> str | None:
        """Path of the loaded projector, or None."""
        projector = self._projector
        return projector.path if projector is not None else None

    @property
    def capabilities(self) -> dict[str, bool]:
        """What prompts may carry besides text: ``{"vision": bool, "audio": bool}``."""
        p = self._projector
        return {"vision": bool(p and p.vision), "audio": bool(p and p.audio)}

    @property
    def media_marker(self) -> str | None:
        """The text standing for one image/audio item in a prompt (None without a projector)."""
        projector = self._projector
        return projector.marker if projector is not None else None

    @property
    def add_bos(self) -> bool:
        """Whether the model expects a BOS token at the start of every prompt."""
        return self._live().add_bos

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT and the like)."""
        native = self._live()
        return native.is_eog(_token_id("token", token, native.n_vocab))

    # -- tokens --------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Text to token ids. ``add_special`` adds BOS/EOS as the model wants; ``parse_special`` turns
        special-token text like ``<|im_start|>`` into the special token instead of plain text — as :meth:`generate`
        and :meth:`stream` read a text prompt, so ``tokenize(prompt, parse_special=True)`` is the prompt's tokens
        there (``usage.prompt_tokens``)."""
        return _tokenize(self._live(), text, add_special, parse_special)

    def detokenize(self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = False) -> str:
        """Token ids to text (invalid UTF-8 shows as U+FFFD). Ids outside the vocabulary are a
        :class:`~jan.BadRequestError` naming ``tokens[i]``; anything but a list of ids (a 1-D array too), a
        TypeError."""
        return _detokenize(self._live(), tokens, remove_special, unparse_special)

    def spell(self, tokens: Sequence[int]) -> str:
        """Token ids as llama-server spells them (its ``/detokenize``, a result's ``prompt``): each token's piece,
        special tokens as their text, joined as they are (a first piece's leading space too, which
        :meth:`detokenize` drops), then read as UTF-8 (invalid bytes as U+FFFD). Ids outside the vocabulary are a
        :class:`~jan.errors.BadRequestError` naming ``tokens[i]``."""
        native = self._live()
        ids = _token_ids("tokens", tokens, native.n_vocab)
        return b"".join(native.token_to_piece(t, True) for t in ids).decode("utf-8", errors="replace")

    def token_to_piece(self, token: int, special: bool = False) -> str:
        """One token's text. A token holding part of a UTF-8 character shows as U+FFFD; use
        :meth:`token_to_bytes` for the raw bytes."""
        return _token_bytes(self._live(), token, special).decode("utf-8", errors="replace")

    def token_to_bytes(self, token: int, special: bool = False) -> bytes:
        return _token_bytes(self._live(), token, special)

    def vocabulary(self) -> Vocabulary:
        """The tokenizer alone, which stays usable after :meth:`close` (a :class:`Vocabulary`): for reading what
        requests made before the close go on returning. ModelClosedError once closed."""
        return Vocabulary(self._live())

    def control_texts(self) -> tuple[bytes, ...]:
        """The text of each control token: what shows only when special tokens are rendered (``<|im_end|>``),
        so what a text spelling it would turn into that token when tokenized with ``parse_special``. Read from
        the vocabulary once (a whole vocabulary in one native call), then kept."""
        native = self._live()
        texts = self._control_texts
        if texts is None:
            texts = self._control_texts = tuple(native.control_texts())
        return texts

    # -- generation ----------------------------------------------------
    @staticmethod
    def _prompt_tokens(native, prompt: str | Sequence[int], add_special: bool) -> list[int]:
        if isinstance(prompt, str):
            # Prompts come from chat templates, which write special tokens as text.
            return token_ids.tokenize(native, engine_text("prompt", prompt), add_special, True)
        if isinstance(prompt, (bytes, bytearray, memoryview)):  # a Sequence of ints, but surely meant as text
            raise type_refusal("prompt", "prompt: bytes are not a prompt; decode them to a string (or pass a list of "
                               "token ids)")
        if _token_sequence(prompt) is None:
            raise type_refusal("prompt", "prompt: expected a string or a sequence of token ids (a list, a tuple, a 1-D "
                               f"array), got {type(prompt).__name__}")
        # every id in the vocabulary (LLAMA_TOKEN_NULL, the engine's media placeholder, is outside it too)
        return _token_ids("prompt", prompt, native.n_vocab)

    def media_inputs(self, images: Sequence = (), audio: Sequence = ()) -> list:
        """Decode and check media for this model: ``images`` (paths, file bytes, numpy arrays, PIL
        images) then ``audio`` clips (paths or bytes of WAV/MP3/FLAC files); see :meth:`prepare_media`."""
        return self.prepare_media([*_media_list("images", images),
                                   *(AudioClip(a) for a in _media_list("audio", audio))])

    def prepare_media(self, items: Sequence) -> list:
        """Decode and check media in prompt order: an :class:`~jan.engine.media.AudioClip` is audio,
        anything else an image. Slow (image decoding): call it off the event loop.
        Raises :class:`~jan.MediaError` (bad format, over :attr:`media_limits`, no projector for it)."""
        self._live()
        items = _media_list("items", items)
        if not items:
            return []
        caps = self.capabilities
        for i, x in enumerate(items):
            # a projector for one kind only (vision, or audio): said of the first item of the other kind, so a
            # caller names the part that sent it, as for an item that does not decode
            kind = "audio" if isinstance(x, AudioClip) else "vision"
            if not caps[kind]:
                exc = MediaError(f"model '{self.id}' does not accept {'audio' if kind == 'audio' else 'images'} "
                                 f"(no {kind} projector loaded)", reason="no_projector")
                exc.item_index = i
                raise exc
        limit = self.media_limits.max_items
        if len(items) > limit:
            raise MediaError(f"{len(items)} images/audio clips; at most {limit} per request", reason="too_many")
        self._check_total_pixels(items)
        prepared = []
        pixels, seconds = 0, 0.0
        for i, x in enumerate(items):
            check_media_cancel()  # (between items: one image's decoding cannot be stopped midway)
            try:
                if isinstance(x, AudioClip):
                    clip, length = sized_audio_input(x, self.media_limits, f"audio {i + 1}",
                                                     budget=self.media_limits.max_total_audio_seconds - seconds)
                    seconds += length
                    prepared.append(clip)
                    continue
                item, size = sized_image_input(x, self.media_limits, f"image {i + 1}")
                pixels += size
                if pixels > self.media_limits.max_total_pixels:
                    raise MediaError(f"image {i + 1}: the request's images have more than the "
                                     f"{self.media_limits.max_total_pixels} pixels accepted together",
                                     reason="too_large")
                prepared.append(item)
            except MediaError as exc:
                exc.item_index = i  # which item: a caller names the field it came from
                raise
        return prepared

    def _check_total_pixels(self, items: Sequence) -> None:
        """:attr:`MediaLimits.max_total_pixels` held to the images' sizes as their files' headers say, before any
        is decoded, as audio's total length is (its headers): the check after each decode let a request of many
        large images decode the first several (seconds of CPU each, and a gigabyte of pixels) only to be refused
        at the image that went over. Files given as bytes (every front end's) are read here; a header that does not
        read ends the check here, for the decoding in order to say what is wrong with that file first; a path, a
        PIL image or an array is counted as it is decoded."""
        limit, pixels = self.media_limits.max_total_pixels, 0
        for i, x in enumerate(items):
            if isinstance(x, AudioClip) or not isinstance(x, (bytes, bytearray, memoryview)):
                continue
            size = header_pixels(x if isinstance(x, bytes) else bytes(x))
            if size is None or size > self.media_limits.max_pixels:
                return  # (the decoding says it: not an image, damaged, or over the one image's limit)
            pixels += size
            if pixels > limit:
                exc = MediaError(f"image {i + 1}: the request's images have more than the {limit} pixels accepted "
                                 "together", reason="too_large")
                exc.item_index = i
                raise exc

    def media_prompt(self, prompt: str, media: Sequence, *, add_special: bool = True, encode: bool = True):
        """Tokenize ``prompt`` with its media and run the vision/audio encoder: a prompt ready to submit.

        ``prompt`` holds one :attr:`media_marker` per item of ``media`` (from :meth:`media_inputs`),
        in order; without any marker, one per item is put at the start. Slow (the encoder runs,
        without the GIL): call it off the event loop. Raises :class:`~jan.MediaError`.

        ``encode=False`` stops after tokenizing (cheap: the prompt's size, media included, is known then):
        a caller that may still refuse or shorten the prompt checks it first and calls :meth:`encode_media`
        on the one it submits, so a prompt that does not fit never pays for the encoder.
        """
        projector = self._live_projector()
        marker = projector.marker
        if not isinstance(prompt, str):
            raise type_refusal("prompt", f"prompt: expected text holding media markers, got {type(prompt).__name__}")
        engine_text("prompt", prompt)  # before the try below: a bad prompt is no MediaError
        media = _media_list("media", media)
        for i, item in enumerate(media):
            if not isinstance(item, _engine.MediaInput):
                # (pybind11's "incompatible function arguments" otherwise, naming no item)
                raise type_refusal(f"media[{i}]", f"media[{i}]: expected an item from media_inputs() or "
                                   f"prepare_media(), got {type(item).__name__}")
        if media and marker not in prompt:
            prompt = "".join(marker + "\n" for _ in media) + prompt
        with _projector_errors():
            mp = projector.tokenize(prompt, list(media), check_flag("add_special", add_special), True)
        if encode:
            self.encode_media(mp)
        return mp

    def encode_media(self, prompt) -> None:
        """Run the vision/audio encoder on a prompt from :meth:`media_prompt` (``encode=False``): its media
        chunks not yet encoded (or cached by content) get their embeddings. Slow, without the GIL: call it off
        the event loop. Raises :class:`~jan.MediaError`."""
        projector = self._live_projector()
        if not isinstance(prompt, _engine.MediaPrompt):
            raise type_refusal("prompt", f"prompt: expected a prompt from media_prompt(), got {type(prompt).__name__}")
        check_media_cancel()
        with _projector_errors():
            projector.encode(prompt)

    def _live_projector(self):
        """The loaded projector; raises ModelClosedError on a closed model, MediaError without a projector."""
        projector = self._projector
        self._live()  # (after the read: a projector gone because the model closed is no MediaError)
        if projector is None:
            raise MediaError(f"model '{self.id}' takes no images or audio (no projector loaded)",
                             reason="no_projector")
        return projector

    def stream(self, prompt, *, add_special: bool = True, images: Sequence = (), audio: Sequence = (),
               suffix: str | None = None, **options) -> Request:
        """Start generating and return the request handle: iterate it (``for`` or ``async for``)
        for :class:`~jan.Chunk` pieces, ``cancel()`` it, or call ``result()``.

        ``prompt`` is text, token ids, or a prompt from :meth:`media_prompt`. ``images`` / ``audio``
        (models with a projector) are decoded, encoded and placed at the prompt's media markers
        here, in the calling thread — see :meth:`media_inputs` and :meth:`media_prompt`.

        ``suffix`` (text) fills in the middle, as llama-cpp-python's ``create_completion(suffix=...)`` and the
        server's ``suffix``: ``prompt`` (text) is the code before the gap, ``suffix`` the code after it, and the
        output is what goes between. The model reads ``[BOS] <fim_pre> prompt <fim_suf> suffix <fim_mid>`` in its
        own FIM tokens (:func:`jan.engine.fill_in.fill_in_tokens`, the server's builder; the BOS where
        ``add_special`` and the model wants one), both texts as plain text. A model without FIM tokens is a
        :class:`~jan.errors.BadRequestError` with ``param="suffix"`` (``code="not_supported"``); a suffix that is
        no string, or a prompt that is not text, a ``TypeError``; a suffix with images or audio, a BadRequestError
        (``param="suffix"``).

        Options: max_tokens, temperature (<= 0: greedy), top_k, top_p, min_p, typical_p,
        repeat_penalty, presence_penalty, frequency_penalty, repeat_last_n, seed, logit_bias,
        grammar (GBNF), grammar_prefix (text the grammar reads before the output, as though the model had written
        it: the end of a prompt that the output continues inside the grammar's text; one the grammar cannot start
        with is a :class:`jan.errors.GrammarPrefixError`, a ``ValueError`` with the ``offset`` of the first byte it
        refuses), grammar_first (filter the vocabulary with the grammar before sampling, every token, instead of
        having it check the token drawn: the allowed tokens' own distribution under top_k/top_p/min_p, slower on
        big vocabularies), ignore_eos, stop, logprobs, top_logprobs, prompt_logprobs (each prompt token's
        log-probability given the ones before it, on the first chunks' ``prompt_logprobs``, with
        ``top_logprobs`` alternatives; the prompt is evaluated whole, no prefix reuse; not for media
        prompts); speculative ("ngram" or True:
        draft-free n-gram drafting; "draft": the model's draft model; "none"; output unchanged),
        draft_max, draft_min, ngram, draft_p_min (defaults: the model's); reproducible (whether the
        same output is expected again, so it must not follow machine load — see ``adaptive_threads``;
        default: when greedy or ``seed`` is given); infill (llama.cpp's infill sampler after the temperature,
        for fill-in-the-middle code completion, as llama-server's ``samplers`` ``infill``; sampled requests only);
        post_sampling_probs (with logprobs: each token's and its alternatives' log-probabilities in the
        distribution the sampler chain drew from, its candidates as the alternatives; a greedy pick's is itself at 0).
        Raises ContextOverflowError when the prompt does not fit, QueueFullError when the wait
        queue is full, :class:`~jan.BadRequestError` (a ValueError) for a bad option or argument value, its ``param``
        naming it (``top_k``, ``stop[1]``, ``logit_bias``), TypeError for an unknown option or a prompt of no
        prompt's type.
        """
        pieces = self._piece_cache
        native = self._live()
        scheduler = self._require_scheduler()
        add_special = check_flag("add_special", add_special)
        images, audio = _media_list("images", images), _media_list("audio", audio)
        if suffix is not None:
            if images or audio:
                raise BadRequestError(f"suffix: fill-in-the-middle takes no {'images' if images else 'audio'} (its "
                                      "prompt is the code before the gap)", param="suffix", code="conflicting_options")
            prompt = self._fill_in_prompt(prompt, suffix, add_special)
        elif images or audio:
            if not isinstance(prompt, str):
                raise type_refusal("prompt", "prompt: with images or audio the prompt must be text (holding media "
                                   f"markers), not {type(prompt).__name__}")
            # sized before it is encoded: a clip of several 30 s windows (or many images) that cannot fit is refused
            # without running the encoder over all of it first, as the server refuses one
            prompt = self.media_prompt(prompt, self.media_inputs(images, audio), add_special=add_special,
                                       encode=False)
            n_ctx = scheduler.n_ctx_slot
            if prompt.n_tokens >= n_ctx:
                raise ContextOverflowError("", prompt.n_tokens, n_ctx).advise(
                    f"the prompt has {prompt.n_tokens} tokens but the context holds {n_ctx} (one more is needed to "
                    "generate)", replace(LARGER_CONTEXT, name="n_ctx"),
                    f"; its images and audio take {prompt.n_media_tokens} of them")
            self.encode_media(prompt)
        for key, value in self._request_defaults.items():
            if options.get(key) is None:
                options[key] = value
        params = sampling_params(**options)
        if params.lora_set:
            self._check_lora_ids([index for index, _ in params.lora])
        if params.id_slot >= scheduler.n_parallel:  # (the engine refuses it too; this names the model)
            raise BadRequestError(f"id_slot: model '{self.id}' has no slot {params.id_slot} (its slots are 0.."
                                  f"{scheduler.n_parallel - 1}, or -1 for any)", param="id_slot", code="invalid_value")
        try:
            if isinstance(prompt, _engine.MediaPrompt):
                request = scheduler.submit_media(prompt, params)
            else:
                request = scheduler.submit(self._prompt_tokens(native, prompt, add_special), params)
        except ContextOverflowError as exc:
            if exc.advice is None:  # the engine's (C++) words say what did not fit; what to change is data
                exc.advise(str(exc), replace(LARGER_CONTEXT, name="n_ctx"))
            raise
        except ValueError as exc:
            # the engine's own checks (cpp/sampling.cpp: a logit_bias id past this vocabulary) begin with the option
            # they refuse: the same BadRequestError naming it as the checks made here before the submit
            named = None if isinstance(exc, JanError) else _OPTION_NAMED.match(str(exc))
            if named is None:
                raise
            raise option_refusal(named.group(1), str(exc)) from None
        if getattr(self._use_depth, "n", 0) > 0:
            # (after the submit: a snapshot between the two counts one use too many, while the hold keeps the model
            # busy anyway, and a claim taken then waits for one use more; counted before, a snapshot could count one
            # too few, and a claim taken then would end with another request's use)
            with self._uses_lock:
                self._uses_within += 1
        return Request(request, self, pieces, logprobs=params.logprobs, seed=params.seed,
                       thinking_budget=params.reasoning_budget >= 0 and bool(params.reasoning_end))

    submit = stream

    def _fill_in_prompt(self, prefix, suffix, add_special: bool) -> list[int]:
        """The token ids :meth:`stream` generates from for a ``suffix``: the FIM prompt, a BOS first where asked."""
        if not isinstance(prefix, str):
            raise type_refusal("prompt", "prompt: with a suffix the prompt is the code before the gap, a string (not "
                               f"{type(prefix).__name__})")
        tokens = fill_in_tokens(self, engine_text("prompt", prefix), suffix)
        bos = self.info.special_tokens.get("bos")
        if add_special and bos is not None and self.add_bos:
            tokens = [bos, *tokens]
        return tokens

    # -- LoRA adapters ---------------------------------------------------
    def _check_lora_ids(self, ids: Iterable[int], name: str = "lora") -> None:
        n = len(self._loras)
        for i, index in enumerate(ids):
            if index >= n:
                have = f"its adapter ids are 0..{n - 1}" if n else "it was loaded without LoRA adapters"
                raise BadRequestError(f"{name}[{i}].id: model '{self.id}' has no LoRA adapter {index} ({have})",
                                      param=f"{name}[{i}].id", code="invalid_value")

    @property
    def lora_adapters(self) -> list[dict]:
        """The LoRA adapters loaded with the model (the ``lora`` option), in id order, as llama-server's
        ``GET /lora-adapters`` lists them: ``id``, ``path``, ``scale`` (what a request that names no ``lora`` runs
        under now), ``task_name`` and ``prompt_prefix`` (the adapter's metadata, "" when it has none). Set it to a
        list of ``{"id": i, "scale": s}`` (llama-server's ``POST /lora-adapters``) to change those scales for
        requests submitted afterwards (adapters not listed: 0); :class:`~jan.BadRequestError` naming ``lora``
        for an id the model does not have, one given twice or a scale that is no finite number."""
        scheduler = self._scheduler
        scales = list(scheduler.lora_defaults) if scheduler is not None else [0.0] * len(self._loras)
        return [{"id": i, "path": a.path, "scale": scales[i], "task_name": a.meta("adapter.lora.task_name"),
                 "prompt_prefix": a.meta("adapter.lora.prompt_prefix")} for i, a in enumerate(self._loras)]

    @lora_adapters.setter
    def lora_adapters(self, adapters) -> None:
        if adapters is None:  # (a request's None is "the defaults"; as the defaults themselves it meant every one 0)
            raise BadRequestError('lora: expected a list of {"id": adapter id, "scale": number} ([] turns every '
                                  "adapter off), got None", param="lora", code="invalid_type")
        pairs = lora_request(adapters) or ()
        self._check_lora_ids([index for index, _ in pairs])
        scheduler = self._require_scheduler()
        scales = [0.0] * len(self._loras)
        for index, scale in pairs:
            scales[index] = scale
        scheduler.lora_defaults = scales

    # -- slots (llama-server's POST /slots/{id}?action=...) -------------
    #: The actions :meth:`slot_action` takes.
    SLOT_ACTIONS = ("save", "restore", "erase")

    def slot_action(self, action: str, id_slot: int, path: "str | os.PathLike[str] | None" = None) -> dict:
        """llama-server's slot actions on slot ``id_slot`` (0 .. ``n_parallel`` - 1): ``"save"`` writes its cached
        tokens and their KV to the file ``path`` (whole or not at all: written under a temporary name, then renamed),
        ``"restore"`` reads such a file back into the slot (a next prompt that continues those tokens evaluates only
        the rest), ``"erase"`` empties the slot. A busy slot's action waits for its request to end; this blocks
        until the action ran. A dict: ``id_slot``, ``n_tokens`` (saved, restored or erased), ``n_bytes`` (written or
        read) and ``ms``. A slot holding images or audio is saved with its media chunks, as llama-server packs them
        (its restore reads them back, and jan's reads llama-server's). :class:`BadRequestError` naming (``param``, and
        the message's start) ``id_slot`` for a slot the model does not have, ``path`` for none given, a save's path
        that is a folder or a name the engine cannot open as named (a NUL in it, bytes that are not UTF-8) and
        ``action`` for another action; :class:`~jan.BadRequestTypeError` naming ``path`` for one that is no path
        (str, bytes or os.PathLike); :class:`~jan.errors.SlotFileError` naming ``path`` for a file restore cannot use
        (the slot is left empty); EngineError for a save that could not be written. (The server's route says them in
        llama-server's words, naming its body's ``filename``.)
        With LoRA adapters a save also writes the scales the slot's KV was computed under beside the file (``path`` +
        ``..lora``: a name no slot file llama-server's or jan's server takes may have, and one this refuses as a slot
        file, so that it never overwrites a slot file), and a restore tags the slot with them, so that only requests
        under those scales reuse it; a file without them (llama-server's) is taken as computed under the default
        scales, one saved under another count of adapters is a :class:`~jan.errors.SlotFileError`. A file holding
        images or audio restored into a model loaded without a projector is a :class:`~jan.errors.SlotFileError`."""
        try:
            return self._slot_action(action, id_slot, path)
        except BadRequestError as exc:
            # the library's rule for its own arguments: llama-server's wording ("Invalid slot ID: 3"), which the
            # server's route keeps for its dialect, and its body's ``filename`` said as this call's ``path``
            param = "path" if exc.param == "filename" else exc.param
            if param in ("action", "id_slot", "path") and not str(exc).startswith(f"{param}: "):
                exc.args = (f"{param}: {exc}", *exc.args[1:])
            exc.param = param
            raise

    def _slot_action(self, action, id_slot, path) -> dict:
        scheduler = self._require_scheduler()
        if action not in self.SLOT_ACTIONS:
            # (one that is no string at all is the wrong type: a TypeError too)
            kind = BadRequestError if isinstance(action, str) else BadRequestTypeError
            raise kind(f"Invalid action: {action!r} (one of {', '.join(self.SLOT_ACTIONS)})",
                       param="action", code="invalid_value" if kind is BadRequestError else "invalid_type")
        index = as_int(id_slot)
        if index is None or not 0 <= index < scheduler.n_parallel:
            kind = BadRequestError if index is not None else BadRequestTypeError  # ("0", True: no slot number)
            raise kind(f"Invalid slot ID: {id_slot!r} (model '{self.id}' has slots 0..{scheduler.n_parallel - 1})",
                       param="id_slot", code="invalid_value" if kind is BadRequestError else "invalid_type")
        if action != "erase":
            if path is None or (isinstance(path, (str, bytes, bytearray)) and not path):
                raise BadRequestError(f"a slot {action} needs a file path", param="filename", code="invalid_value")
            # as every file argument (a TypeError naming it, bytes decoded), and one the engine can open as named
            path = file_path(path, "path")
            problem = native_path_problem(path)
            if problem is not None:
                raise BadRequestError(f"path: the file name {path!r} {problem}", param="filename",
                                      code="invalid_value")
        suffix = _engine.Scheduler.SLOT_LORA_SUFFIX
        if action != "erase" and os.fspath(path).endswith(suffix):
            raise BadRequestError(f"a slot file's name cannot end in {suffix!r}: such names are kept for the LoRA "
                                  "scales a save writes beside its slot file", param="filename", code="invalid_value")
        if action == "save" and os.path.isdir(path):
            # (the save's rename over it would fail: the caller's name is at fault, not the engine)
            raise BadRequestError(f"Unable to save slot: {os.fspath(path)} is a folder, not a slot file",
                                  param="filename", code="invalid_value")
        try:
            # (an erase names no file: its path, whatever it is, is not read, as llama-server's erase reads no filename)
            return scheduler.slot_action(action, index, path if action != "erase" else "", self._projector is not None)
        except BadRequestError:
            raise
        except ValueError as exc:  # (the engine's invalid_argument: a slot it does not have)
            raise BadRequestError(str(exc), param="id_slot", code="not_supported") from None

    def slots_info(self) -> list:
        """Each slot as llama-server's ``GET /slots`` tells it (``jan._engine.SlotInfo``): ``id``, ``is_processing``,
        ``n_cache_tokens``, and of the request it runs (else the last one it ran; ``has_task`` False: none since
        load) ``id_task``, ``n_prompt_tokens`` with ``n_prompt_processed`` and ``n_prompt_cached``, ``n_decoded``,
        ``n_remain``, ``has_next_token``, ``has_new_line``, its sampling ``params`` and the ``lora`` scales it runs
        under. Taken on the engine thread between two steps: this blocks until the current step ends."""
        return list(self._require_scheduler().slots_info())

    async def wait_for_room(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until one of this model's requests ends, which may make
        room in a full wait queue: for a caller that got ``QueueFullError`` and would rather queue
        than fail. Returns either way; submitting again tells whether there is room now. ModelClosedError once
        closed (a close wakes those waiting: their next submit says so)."""
        self._live()
        await self._room.wait(check_seconds("timeout", timeout, finite=True))

    def generate(self, prompt, *, add_special: bool = True, **options) -> Completion:
        """Generate to the end and return the whole :class:`~jan.Completion` (same options as :meth:`stream`).
        Interrupted (Ctrl-C, an exception from another thread), the generation stops with it."""
        request = self.stream(prompt, add_special=add_special, **options)
        with _stopped_on_the_way_out(request):
            return request.result()

    async def agenerate(self, prompt, *, add_special: bool = True, **options) -> Completion:
        """:meth:`generate` for asyncio code; never blocks the event loop (tokenizing the prompt,
        preparing media and parsing the grammar happen on a worker thread)."""
        request = await asyncio.to_thread(functools.partial(self.stream, prompt, add_special=add_special, **options))
        with _stopped_on_the_way_out(request):  # (the task cancelled: asyncio.wait_for's timeout, a Ctrl-C)
            return await request.aresult()

    def require_generation(self) -> None:
        """Raise now what generating would: ``BadRequestError`` (``model_not_supported``) for an embedding or
        vocab-only model, ``ModelClosedError`` for one unloaded — for callers that do work before submitting
        (templates, fitting the prompt to the context), so that work never hides the real error."""
        self._require_scheduler()

    def _require_scheduler(self):
        scheduler = self._scheduler  # read before the check: one a close takes away after it is still whole
        self._live()
        if scheduler is None:
            kind = "vocab-only" if self.vocab_only else "an embedding model"
            raise BadRequestError(f"model '{self.id}' is {kind}; it cannot generate text", param="model",
                                  code="model_not_supported")
        return scheduler

    def _live(self):
        """The native model, or :class:`ModelClosedError` once closed: what every use of the engine starts with.
        Callers keep the reference it returns rather than read ``self._native`` again, which a close in another
        thread may have dropped meanwhile (the native objects are reference-counted: one held is never freed)."""
        native = self._native  # read before the check, as close() sets the flag before it drops anything
        if self._closed:
            raise ModelClosedError(f"model '{self.id}' is closed (unloaded) and cannot serve the request")
        if self._forked():
            raise ModelClosedError(f"model '{self.id}' was loaded by another process (this is a child forked from "
                                   "it, where the model's engine thread does not run); load it again in this process")
        return native

    def _forked(self) -> bool:
        """Whether this is a child process forked after the load: the engine thread (and the OpenMP workers, and
        whatever lock they held at the fork) is the parent's alone, so a generation would wait forever for it and
        a decode may hang. A model belongs to the process that loaded it, as llama.cpp's contexts and libgomp's
        thread pools do."""
        return os.getpid() != self._pid

    # -- embeddings ----------------------------------------------------
    def embed(
        self,
        inputs: str | Sequence[str] | Sequence[Sequence[int]],
        *,
        normalize: bool = True,
        pooling: str | None = None,
        cancel: threading.Event | None = None,
        field: str = "inputs",
    ) -> np.ndarray | list[np.ndarray]:
        """Embed one or many inputs (strings or token lists) in as few decodes as fit.

        Returns a float32 array of shape (n_inputs, n_embd): one vector per input, L2-normalized by default.
        ``pooling`` (mean, cls, last, none) overrides the model's ``pooling`` load option, which overrides the
        model's own (a model whose own header says none is mean-pooled).

        With ``pooling="none"`` (llama-server's ``--pooling none``, for late interaction such as ColBERT and other
        token-level work) nothing is pooled: the result is a list with one float32 array per input, of shape
        (n_tokens_i, n_embd) — a row per token of that input, in order, including the special tokens a string's
        tokenizing adds (``model.tokenize(text)``'s tokens) — each row L2-normalized when ``normalize``. Their
        mean (unnormalized) is the mean-pooled vector.

        An input may also hold images or audio: a prompt from :meth:`media_prompt` (tokenized as llama-server tokenizes
        its prompt objects; encoded, or encoded here), embedded alone (its text and media are decoded in turn, so a
        model that reads its input in one pass, an encoder-only one, refuses it with ValueError) and pooled over all
        its positions, media included (mean: every position's state weighs the same; with pooling none its rows are
        one per position, media included).

        Inputs are strings or token id lists (lists, tuples, 1-D integer arrays). An empty string or token list, a
        token id outside the vocabulary, a lone surrogate, a ``normalize`` that is not a bool raise
        :class:`~jan.BadRequestError` naming the argument as this call takes it (``inputs[1]``, ``inputs[0][2]``,
        ``normalize``; as the server's embedding routes answer it with a 400); an input of the wrong type (a number,
        bytes, a set) :class:`~jan.BadRequestTypeError` (also a ``TypeError``); an input longer than the embedding
        context (:attr:`n_ctx_embed`) ContextOverflowError. ``field``: the name those errors give the inputs (a server
        names its body's own field, ``input``).

        ``cancel`` (a ``threading.Event``), once set from another thread, stops the call before its next batch with
        :class:`~jan.errors.EmbeddingStoppedError`: a caller that no longer wants the vectors (its client went away)
        frees the embedding context instead of computing thousands of them for no one.
        """
        # busy from its first step (tokenizing, making the embedding context: slow), not from its first decode:
        # a model that looks idle meanwhile is unloaded for a load of another one (keep-alive, max_loaded)
        # checked here, not in _embed: "rank" is rerank()'s own pooling, which a caller's embed(pooling="rank") ran on
        # any model — on one without a classifier head, one number per input that scores nothing
        _pooling(pooling)
        if not isinstance(field, str):  # (the name every error of the inputs begins with)
            raise type_refusal("field", f"field: expected the inputs' name (a string), got {field!r}")
        with self.hold():
            return self._embed(inputs, normalize, pooling, cancel, field)

    def _embed(self, inputs, normalize: bool, pooling: str | None,
               cancel: threading.Event | None = None, field: str = "inputs") -> np.ndarray | list[np.ndarray]:
        native = self._live()
        if self.vocab_only:
            raise BadRequestError(f"model '{self.id}' is vocab-only; it cannot embed", param="model",
                                  code="model_not_supported")
        if pooling != "rank":  # (rank: rerank()'s own, never a caller's)
            _pooling(pooling)
        # a bool, as every flag (check_flag): normalize="no" or 0.0 read as truthy/falsy would silently do the opposite
        normalize = check_flag("normalize", normalize)
        if cancel is not None and not callable(getattr(cancel, "is_set", None)):  # said now, not at its first turn
            raise type_refusal("cancel", f"cancel: expected a threading.Event, got {type(cancel).__name__}")
        if isinstance(inputs, str):
            inputs = [inputs]
        elif (isinstance(inputs, (bytes, bytearray, memoryview, AbstractSet, Mapping))
              or not isinstance(inputs, Iterable)):
            # said here, not as the "'NoneType' object is not iterable" of the loop below; a set's order is arbitrary
            # (the rows could not be matched to the inputs) and a dict's iteration is its keys alone
            raise type_refusal(field, f"{field}: expected a string or a list of strings or token id lists, "
                               f"got {type(inputs).__name__}")
        batch = []
        for i, item in enumerate(inputs):
            if isinstance(item, _engine.MediaPrompt):
                self.encode_media(item)  # (its chunks already encoded: none runs again)
                batch.append(item)
            elif isinstance(item, str):
                if not item:
                    # refused, as OpenAI's /v1/embeddings and every jan route refuse it: tokenized, "" is the model's
                    # special tokens alone (BOS, or CLS and SEP), whose vector says nothing of any text
                    raise BadRequestError(f"{field}[{i}]: is an empty string; there is no text to embed",
                                          param=f"{field}[{i}]", code="invalid_value")
                batch.append(token_ids.tokenize(native, engine_text(f"{field}[{i}]", item), True, False))
            elif _token_sequence(item) is not None:
                batch.append(_token_ids(f"{field}[{i}]", item, native.n_vocab))
            else:
                raise type_refusal(f"{field}[{i}]", f"{field}[{i}]: expected a string or a list of token ids, got "
                                   f"{type(item).__name__}")
        if not batch:
            raise option_refusal(field, f"{field}: at least one input is required")
        if pooling is None and self.is_reranker:
            raise BadRequestError(IS_A_RERANKER.format(model=self.id), param="model", code="model_not_supported")
        embedder = self._get_embedder(pooling)
        # checked whole before the first call (each call checks its own inputs, numbered from its first): a bad
        # input is told by its place in the request, before any of the work
        for i, tokens in enumerate(batch):
            if not _embed_len(tokens):
                raise BadRequestError(f"{field}[{i}]: is empty", param=f"{field}[{i}]", code="invalid_value")
            if _embed_len(tokens) > embedder.n_ctx:
                raise ContextOverflowError(f"{field}[{i}] has {_embed_len(tokens)} tokens but the embedding context "
                                           f"holds {embedder.n_ctx}", _embed_len(tokens), embedder.n_ctx)
        per_token = embedder.pooling == POOLING["none"]
        run = embedder.embed_tokens if per_token else embedder.embed
        parts = []
        try:
            # one call per few decodes, each a turn of the embedding context: another request that asked meanwhile
            # (one input) has the next turn, instead of waiting for all of a big one's (thousands)
            for chunk in _embed_turn_chunks(batch, embedder.n_ctx):
                with self._embed_turns:
                    if cancel is not None and cancel.is_set():  # (also while it waited for this turn)
                        raise EmbeddingStoppedError(f"the embedding on model '{self.id}' was stopped by its caller "
                                                    f"after {sum(len(p) for p in parts)} of {len(batch)} inputs")
                    if isinstance(chunk[0], _engine.MediaPrompt):  # (alone in its call: _embed_turn_chunks)
                        with _projector_errors():  # (the engine's refusal of it: a ValueError, said as media's)
                            rows = embedder.embed_media(chunk[0], normalize)
                        parts.append([rows] if per_token else rows[None, :])
                    else:
                        parts.append(run(chunk, normalize))
        except ModelClosedError:  # close() cancelled it between two decodes (an admin's stop, shutdown)
            raise EmbeddingCancelledError(f"model '{self.id}' was unloaded while embedding: the embedding was "
                                          "stopped before it finished") from None
        if per_token:
            return [rows for part in parts for rows in part]
        if len(parts) == 1:
            return parts[0]
        import numpy as np  # (only embeddings need it: see the import above)

        return np.concatenate(parts)

    @property
    def is_reranker(self) -> bool:
        """Whether the GGUF is a reranker (its header's pooling is rank: a classifier head scores a query and a
        document read together, bge-reranker, jina-reranker, Qwen3-Reranker...): :meth:`rerank` answers, not
        :meth:`embed`. Answered on a closed model too (it describes the GGUF)."""
        return self._rank_pooling

    def rerank(self, query: str, documents: Sequence[str], *, cancel: threading.Event | None = None,
               max_tokens_per_doc: int | None = None, max_chunks_per_doc: int | None = None,
               truncate: bool = False, truncation_direction: str = "right") -> "Ranking":
        """The relevance of each of ``documents`` to ``query``: :attr:`Ranking.scores`, one per document in their
        order (higher is more relevant; the classifier head's raw output, a logit, as llama-server's ``/rerank``
        answers it), and :attr:`Ranking.prompt_tokens`, the tokens read (every query-document pair's).

        Cutting a document (the query is always read whole): ``max_tokens_per_doc`` (Cohere's) reads at most that
        many of each document's tokens; ``truncate`` (Text Embeddings Inference's) reads of a document whose pair
        does not fit the embedding context as many tokens as fit, instead of raising ContextOverflowError.
        ``truncation_direction`` says which end is kept: ``"right"`` cuts the end (the beginning is read),
        ``"left"`` the beginning. ``max_chunks_per_doc`` (Cohere's v1 chunking) reads a document too long for the
        context as consecutive chunks that fit, at most that many from its beginning (the rest unread), and scores
        it as its best chunk (before ``truncate``: a document it chunks is not cut). A document or chunk is cut
        as text (its kept tokens detokenized), so that it is read exactly as that shorter text would be.

        Each document is read with the query as one input: the model's own rerank prompt template when its GGUF has
        one (``tokenizer.chat_template.rerank``, ``{query}`` and ``{document}`` replaced), else ``[BOS] query [EOS]
        [SEP] document [EOS]``, each special token where the vocabulary adds it (llama.cpp's
        ``format_prompt_rerank``). Raises BadRequestError (``code="model_not_supported"``) for a model that is no
        reranker (:attr:`is_reranker`), ValueError for an empty query or document list or a document that is not
        a string, ContextOverflowError for a pair longer than the embedding context (its ``param``: the
        ``documents[i]`` at fault, or ``query`` when the query alone is too long), and
        :class:`~jan.errors.EmbeddingStoppedError` once ``cancel`` is set (as :meth:`embed`)."""
        with self.hold():
            native = self._live()
            if not self.is_reranker:
                raise BadRequestError(NOT_A_RERANKER.format(model=self.id), param="model", code="model_not_supported")
            if cancel is not None and not callable(getattr(cancel, "is_set", None)):  # said now, as embed() says it
                raise type_refusal("cancel", f"cancel: expected a threading.Event, got {type(cancel).__name__}")
            if not isinstance(query, str):
                raise type_refusal("query", f"query: expected a string, got {type(query).__name__}")
            if not query:  # (as the server's min_length: no pair is read against nothing)
                raise option_refusal("query", "query: is empty")
            query = engine_text("query", query)
            if (isinstance(documents, (str, bytes, bytearray, memoryview, AbstractSet, Mapping))
                    or not isinstance(documents, Iterable)):
                # as embed() refuses them: a set's order is arbitrary (the scores could not be matched to the
                # documents), a dict's iteration is its keys alone, and bytes are numbers one by one
                raise type_refusal("documents", f"documents: expected a list of strings, got {type(documents).__name__}")
            documents = list(documents)
            for i, d in enumerate(documents):
                if not isinstance(d, str):
                    raise type_refusal(f"documents[{i}]", f"documents[{i}]: expected a string, got {type(d).__name__}")
            documents = [engine_text(f"documents[{i}]", d) for i, d in enumerate(documents)]
            if not documents:
                raise option_refusal("documents", "documents: at least one document is required")
            max_tokens_per_doc = _count_option("max_tokens_per_doc", max_tokens_per_doc)
            max_chunks_per_doc = _count_option("max_chunks_per_doc", max_chunks_per_doc)
            truncate = check_flag("truncate", truncate)
            if not isinstance(truncation_direction, str) or truncation_direction not in ("right", "left"):
                raise option_refusal("truncation_direction", "truncation_direction: expected 'right' or 'left', got "
                                     f"{truncation_direction!r}")
            left = truncation_direction == "left"
            n_ctx = self._get_embedder("rank").n_ctx if truncate or max_chunks_per_doc is not None else 0
            pairs, owners = [], []  # (owners: the document each pair reads, a chunked document's several)
            for i, d in enumerate(documents):
                if cancel is not None and cancel.is_set():  # (tokenizing thousands of documents takes a while)
                    raise EmbeddingStoppedError(f"the reranking on model '{self.id}' was stopped by its caller")
                if max_tokens_per_doc is not None:
                    d = _cut_text(native, d, max_tokens_per_doc, left)
                pair = self._rerank_tokens(native, query, d)
                if max_chunks_per_doc is not None and len(pair) > n_ctx:
                    chunks = self._rerank_chunks(native, query, d, pair, n_ctx, max_chunks_per_doc)
                    pairs += chunks
                    owners += [i] * len(chunks)
                    continue
                if truncate and len(pair) > n_ctx:
                    pair = self._fit_rerank_pair(native, query, d, pair, n_ctx, left)
                pairs.append(pair)
                owners.append(i)
            self._check_rerank_pairs(native, query, pairs, owners)
            rows = self._embed(pairs, False, "rank", cancel)
            scores: list[float | None] = [None] * len(documents)
            for owner, row in zip(owners, rows):  # (a chunked document scores as its best chunk)
                score = float(row[0])
                if scores[owner] is None or score > scores[owner]:
                    scores[owner] = score
            return Ranking(scores, sum(len(p) for p in pairs))

    def _rerank_chunks(self, native, query: str, document: str, pair: list[int], n_ctx: int,
                       most: int) -> list[list[int]]:
        """The pairs of ``query`` and each of the first ``most`` consecutive chunks of ``document`` that fit
        ``n_ctx`` with it (each chunk as text: its tokens detokenized). The whole pair when the query leaves no
        room (:meth:`_check_rerank_pairs` names the query)."""
        tokens = token_ids.tokenize(native, document, False, False)
        size = len(tokens) - (len(pair) - n_ctx)  # (the document's tokens that fit beside the query)
        if size < 1:
            return [pair]
        chunks = []
        for start in range(0, len(tokens), size):
            if len(chunks) == most:
                break
            text = native.detokenize(tokens[start:start + size], False, False)
            chunk = self._rerank_tokens(native, query, text)
            if len(chunk) > n_ctx:  # (a chunk's text may tokenize a token longer at its edges)
                chunk = self._fit_rerank_pair(native, query, text, chunk, n_ctx, False)
            chunks.append(chunk)
        return chunks

    def _check_rerank_pairs(self, native, query: str, pairs: list[list[int]], owners: list[int]) -> None:
        """Each query-document pair fits the embedding context, said of rerank()'s own fields (the query, or the
        document: ``owners[i]``, the document pair i reads), not of the embed() inputs the pairs become
        (``input[i]``, a field no rerank request has)."""
        n_ctx = self._get_embedder("rank").n_ctx
        for i, pair in zip(owners, pairs):
            if not pair:  # (only a rerank template of the document alone makes none, for an empty document)
                raise option_refusal(f"documents[{i}]", f"documents[{i}]: is empty (the model's rerank template reads "
                                     "nothing else)")
            if len(pair) > n_ctx:
                query_alone = len(self._rerank_tokens(native, query, ""))
                if query_alone > n_ctx:
                    raise ContextOverflowError(f"query: it has {query_alone} tokens (framed as the model reads it) "
                                               f"but the embedding context holds {n_ctx}", query_alone, n_ctx,
                                               param="query")
                raise ContextOverflowError(f"documents[{i}]: read with the query it has {len(pair)} tokens but the "
                                           f"embedding context holds {n_ctx}", len(pair), n_ctx,
                                           param=f"documents[{i}]")

    def _fit_rerank_pair(self, native, query: str, document: str, pair: list[int], n_ctx: int,
                         left: bool) -> list[int]:
        """The pair of ``query`` and as much of ``document`` as fits ``n_ctx`` (a query that alone does not fit
        is left as it is: :meth:`_check_rerank_pairs` names it)."""
        n_doc = token_ids.count(native, document, False, False)
        for _ in range(8):  # (a cut text may tokenize a token longer at its new edge: cut again, a bit more)
            keep = n_doc - (len(pair) - n_ctx)
            if keep < 1:
                return pair
            document = _cut_text(native, document, keep, left)
            pair = self._rerank_tokens(native, query, document)
            if len(pair) <= n_ctx:
                return pair
            n_doc = token_ids.count(native, document, False, False)
        return pair

    @property
    def rerank_template(self) -> str | None:
        """The reranker's own prompt template (its GGUF's ``tokenizer.chat_template.rerank``, ``{query}`` and
        ``{document}`` replaced in it), None where it has none. :meth:`rerank` tokenizes the filled template with
        special tokens parsed, as llama-server does: a caller that passes third-party text breaks the control
        tokens it may spell first (the server does: :mod:`jan.services.untrusted`). Answered on a closed model too
        (it describes the GGUF), as :attr:`is_reranker`."""
        return self._rerank_template

    def _rerank_tokens(self, native, query: str, document: str) -> list[int]:
        template = native.meta(RERANK_TEMPLATE_KEY)
        if template:
            text = template.replace("{query}", query).replace("{document}", document)
            return token_ids.tokenize(native, text, False, True)  # (its special tokens are the template's own text)
        special = native.special_tokens()
        eos = special["eos"] if special["eos"] >= 0 else special["sep"]
        tokens: list[int] = [special["bos"]] if native.add_bos and special["bos"] >= 0 else []
        tokens += token_ids.tokenize(native, query, False, False)
        if native.add_eos and eos >= 0:
            tokens.append(eos)
        if native.add_sep and special["sep"] >= 0:
            tokens.append(special["sep"])
        tokens += token_ids.tokenize(native, document, False, False)
        if native.add_eos and eos >= 0:
            tokens.append(eos)
        return tokens

    def hold(self, *, begins: bool = True) -> "contextlib.AbstractContextManager[Model]":
        """Count the caller's use of the model as a running request for the whole block: a :class:`ModelPool`
        unloads it neither to make room for another model nor at its keep-alive while the block runs (only an
        explicit stop does), and a claim the pool made for the caller's request ends here, as a submit ends it.
        For work on the model that is not a generation (:meth:`embed` holds it itself), and for work before one
        (tokenizing, encoding media) that must find the model still loaded. ``begins=False``: a use no claim was
        made for (a tokenize between requests), which keeps the model loaded while it runs but begins no claimed
        request: counted as one, it ended another request's claim, and the model could be unloaded under that
        request before its submit. Nested holds in one thread are one use, as the outermost says.
        ModelClosedError once closed (on entering the block); :class:`~jan.BadRequestTypeError` naming ``begins`` for
        anything but True or False, at the call (a ``with`` never entered would not tell)."""
        return self._held(check_flag("begins", begins))  # (begins="no" counted as a claimed request begun)

    @contextlib.contextmanager
    def _held(self, begins: bool):
        self._live()
        depth = getattr(self._use_depth, "n", 0)
        if depth == 0:
            with self._uses_lock:
                self._uses_running += 1
                self._uses_started += 1 if begins else 0
        self._use_depth.n = depth + 1
        try:
            yield self
        finally:
            self._use_depth.n = depth
            if depth == 0:
                with self._uses_lock:
                    self._uses_running -= 1

    def activity(self) -> tuple[int, bool]:
        """``(started, busy)``: requests begun since load (generations submitted, :meth:`hold` uses begun; the
        generations a hold submits are its one use) and whether one is queued or running now — each part read in
        one snapshot, so that a request just begun shows in one or the other (the pool's claims count on it)."""
        with self._uses_lock:
            started, busy = self._uses_started - self._uses_within, self._uses_running > 0
        scheduler = self._scheduler
        if scheduler is not None and not self._forked():  # (a forked child's copy serves nothing)
            m = scheduler.metrics()
            started += m.requests_total
            busy = busy or m.slots_busy > 0 or m.queue_depth > 0
        return started, busy

    def _get_embedder(self, pooling: str | None):
        pooling = "rank" if pooling == "rank" else (_pooling(pooling) or self._pooling)
        wanted = -1 if pooling is None else POOLING[pooling]
        native = self._live()
        if self.vocab_only:
            # (a vocab-only load has no weights: n_ctx_embed made an embedding context over none, where embed() says
            # this; every way to an embedding context says it)
            raise BadRequestError(f"model '{self.id}' is vocab-only; it cannot embed", param="model",
                                  code="model_not_supported")
        with self._embedder_lock:
            self._live()  # again, under the lock: close() cancels only the embedder it finds, none made after it
            current = self._embedder
            # The pooling the embedder would have, the model's own (-1) spelled out as cpp/embedder.cpp does (its
            # header's, mean where that is unspecified or none): an embedder an earlier call asked for another
            # pooling is not it, so a call that names none never gets what the last call asked for.
            own = native.pooling_type
            resolved = wanted if wanted >= 0 else (own if own > POOLING["none"] else POOLING["mean"])
            if current is None or current.pooling != resolved:
                ep = _engine.EmbedderParams()
                ep.pooling = wanted
                if self._embed_n_ctx:
                    ep.n_ctx = self._embed_n_ctx
                ep.n_threads = int(self._n_threads or -1)
                ep.adaptive_threads = self.adaptive_threads != "off"  # embedding steps are thread-exact
                try:
                    self._embedder = _engine.Embedder(native, ep)
                finally:
                    forward_native_logs()
            return self._embedder

    # -- status --------------------------------------------------------
    def metrics(self) -> dict:
        """Counters since load: requests, prompt/generated/cached tokens, decode time, busy slots, queue depth;
        ``load_id`` (an int, unique in this process) names the load they count since: a model loaded again has
        another, so a reader comparing two reads (``/metrics``' throughput window) starts over rather than taking the
        new load's totals for growth of the old one's. A closed model (or one in a child process forked after its
        load, which serves nothing there) has no slots, and no counters or ``load_id``."""
        scheduler, projector = self._scheduler, self._projector
        if scheduler is None or self._forked():  # (a forked child: the counters' lock may be the parent's thread's)
            return {"slots_total": 0, "slots_busy": 0, "queue_depth": 0}
        m = scheduler.metrics().to_dict()
        m["load_id"] = self._load_id
        busy = m["busy_seconds"]
        m["generation_tokens_per_second"] = m["generated_tokens_total"] / busy if busy > 0 else 0.0
        if projector is not None:
            m["media_encodes_total"] = projector.encode_count
            m["media_encode_seconds"] = projector.encode_seconds
        return m

    @property
    def projector_memory_bytes(self) -> int:
        """Memory of the projector (weights and compute buffers), 0 without one."""
        projector = self._projector
        return projector.memory_bytes if projector is not None else 0

    @property
    def busy(self) -> bool:
        """Whether a request is queued or running: a generation, or an embedding (the pool never unloads a busy
        model but by an explicit stop)."""
        return self.activity()[1]

    def close(self) -> None:
        """Stop the engine thread (running requests end as ``cancelled``), free the context and let go of the
        weights (freed once no request handle still reading its output holds them). Closing twice is harmless.

        A closed model raises :class:`~jan.ModelClosedError` from every use of the engine (generating,
        embedding, tokenizing, media, :meth:`hold`, :meth:`wait_for_room`); what describes it stays readable:
        ``id``, ``path``, :attr:`info` (and ``metadata``, ``chat_template``), and the status reads, which answer
        for a model with nothing loaded (``n_ctx`` 0, no slots, no projector, :meth:`metrics`' zeros, not busy).
        """
        with self._close_lock:
            if self._closed:
                return
            self.info  # noqa: B018 - read while the weights are here: a closed model still says what it was
            self._closed = True  # first: every use checks it after taking what it needs (see _live)
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.shutdown()
        self._scheduler = None
        self._native_draft = None
        self._loras = []  # (after the scheduler's context, which refers to them)
        self._projector = None
        with self._embedder_lock:  # (not while one is being made: that one is cancelled too)
            embedder, self._embedder = self._embedder, None
        if embedder is not None:
            # a running embed() ends before its next decode, as running generations end cancelled: the stopped
            # model frees its memory once that call returns, not after the whole batch
            embedder.cancel()
        self._native = None
        self._piece_cache = None
        self._room.notify()  # those waiting for room try again, and hear that the model is closed
        forward_native_logs()
        # the vocabulary's many small allocations stay resident in malloc's arenas after they are freed (tens of
        # MiB for a large vocabulary); a request still holding the weights frees them later, untrimmed
        release_free_memory()

    def __enter__(self) -> "Model":
        self._live()  # as a closed file's ``with``
        return self

    def __reduce__(self):
        # copy.copy() made a second Model over the same engine: closing either one shut down the other's engine
        # thread under it (and pickling failed on the native model with no word of why)
        raise TypeError(f"a jan.Model cannot be copied or pickled: it holds a loaded model and its engine thread "
                        f"(share the one object, or load '{self.path}' again)")

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        # a closed model looked loaded in a debugger or a log line; its every use raises ModelClosedError
        return f"<jan.Model {self.id!r} path={self.path!r}{' closed' if self._closed else ''}>"


#: The keyword options :class:`Model` takes (what :func:`check_load_options` knows).
_LOAD_OPTION_NAMES = frozenset(inspect.signature(Model.__init__).parameters) - {"self", "path"}
#: Their defaults: what a load that does not give one gets (:mod:`jan.engine.preflight` judges with them).
LOAD_OPTION_DEFAULTS = {name: p.default for name, p in inspect.signature(Model.__init__).parameters.items()
                        if name in _LOAD_OPTION_NAMES}
