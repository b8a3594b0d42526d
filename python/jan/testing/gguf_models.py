"""Write GGUF model files for jan's tests and benchmarks.

The models are llama-architecture networks with random weights and a *real*
tokenizer copied from one of llama.cpp's vocab-only GGUF files (see
``<shared>/models/vocab``). The weights make the output gibberish, but the
files load in llama.cpp, tokenize exactly like the source vocabulary, carry
its chat template, and run at the speed of a real model of the same shape.

The ``gguf`` package (and numpy) is a test/benchmark extra, not a runtime
dependency of jan, so it is imported inside the functions that need it.

Every writer writes to a temporary name next to the destination and renames
it into place, so an interrupted write never leaves a broken file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "BENCH_LLAMA_CONFIG",
    "BENCH_VOCAB",
    "CHATML_TOOL_TEMPLATE",
    "TINY_AUDIO_CONFIG",
    "TINY_VISION_CONFIG",
    "VISION_CHAT_TEMPLATE",
    "bench_model_path",
    "gguf_param_count",
    "llama_param_count",
    "models_dir",
    "repo_root",
    "vocab_path",
    "write_audio_pair",
    "write_bench_llama",
    "write_llama_from_vocab",
    "write_lora_adapter",
    "write_mlp_mmproj",
    "write_not_gguf",
    "write_phi3_chat_model",
    "write_qwen2a_mmproj",
    "write_qwen25_coder_model",
    "write_harmony_model",
    "write_qwen3_tool_model",
    "write_strict_chat_model",
    "write_tool_template_model",
    "write_truncated_copy",
    "write_vision_chat_model",
    "write_vision_pair",
]

# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------


def repo_root() -> Path:
    """The directory holding ``pyproject.toml``, searched upward from this file.

    Falls back to the current working directory when none is found.
    """
    here = Path(__file__).resolve().parent
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return Path.cwd()


def models_dir() -> Path:
    """Folder with the shared test models.

    ``$JAN_TEST_MODELS`` if set, else ``<repo root>/../shared/models``. The path
    is returned even when it does not exist; callers decide whether to skip.
    """
    env = os.environ.get("JAN_TEST_MODELS")
    if env:
        return Path(env).expanduser()
    return repo_root().parent / "shared" / "models"


def vocab_path(name: str) -> Path:
    """Path of a vocab-only GGUF in ``models_dir()/vocab``.

    ``name`` is either a file name (``"ggml-vocab-phi-3.gguf"``) or the short
    form (``"phi-3"``, ``"llama-spm"``, ``"gpt-2"``, ``"bert-bge"``).
    """
    fname = name if name.endswith(".gguf") else f"ggml-vocab-{name}.gguf"
    return models_dir() / "vocab" / fname


# --------------------------------------------------------------------------
# Small internals
# --------------------------------------------------------------------------

_DTYPES = {"f32": "float32", "f16": "float16", "q8_0": "float32"}  # q8_0: generated as f32, then quantized
# general.file_type values (llama.cpp's LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_Q8_0)
_FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}
# tokenizer.ggml.token_type value of a control token (LLAMA_TOKEN_TYPE_CONTROL)
_TOKEN_TYPE_CONTROL = 3
# ... and of a user-defined one (LLAMA_TOKEN_TYPE_USER_DEFINED): an added token matched in any text and shown
# as text, as Qwen's own <tool_call> is in its GGUFs
_TOKEN_TYPE_USER_DEFINED = 4
# Weights are filled in chunks of this many elements to bound peak memory.
_CHUNK_ELEMENTS = 1 << 22


@contextlib.contextmanager
def _atomic_target(dst: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it to ``dst`` on success."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class _KV:
    """One GGUF key/value with its exact on-disk types."""

    __slots__ = ("value", "vtype", "sub_type")

    def __init__(self, value: Any, vtype: Any, sub_type: Any = None):
        self.value = value
        self.vtype = vtype
        self.sub_type = sub_type


# GGUF value type ids (gguf.GGUFValueType) -> (struct format, size) of scalars
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _read_metadata(path: "str | os.PathLike[str]", want: Any = lambda key: True) -> dict[str, _KV]:
    """Key/values of a little-endian GGUF v2/v3 file whose key satisfies ``want``.

    A small direct parser of the metadata section: gguf.GGUFReader builds a
    numpy view per array item, which takes seconds for a 50k-merge vocab.
    String values are kept as raw bytes (exact, even if not valid UTF-8);
    numeric arrays become Python lists. Tensor data is never read.
    """
    import mmap
    import struct

    import numpy as np
    from gguf import GGUFValueType

    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version} (or big-endian file)")
        pos = 24

        def read_str() -> bytes:
            nonlocal pos
            (n,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
            if pos + n > len(buf):
                raise ValueError(f"{path}: truncated metadata")
            out = buf[pos : pos + n]
            pos += n
            return out

        def read_value(vtype: int) -> Any:
            nonlocal pos
            if vtype == _GGUF_STRING:
                return read_str()
            fmt = _GGUF_SCALARS.get(vtype)
            if fmt is None:
                raise ValueError(f"{path}: unknown GGUF value type {vtype}")
            (v,) = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return v

        out: dict[str, _KV] = {}
        for _ in range(n_kv):
            key = read_str().decode("utf-8")
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if vtype == _GGUF_ARRAY:
                sub, count = struct.unpack_from("<IQ", buf, pos)
                pos += 12
                if sub == _GGUF_STRING:
                    value: Any = [read_str() for _ in range(count)]
                elif sub == _GGUF_ARRAY:
                    raise ValueError(f"{path}: nested GGUF arrays are not supported ({key})")
                else:
                    fmt = _GGUF_SCALARS.get(sub)
                    if fmt is None:
                        raise ValueError(f"{path}: unknown GGUF value type {sub}")
                    arr = np.frombuffer(buf, dtype=np.dtype(fmt), count=count, offset=pos)
                    pos += arr.nbytes
                    value = arr.tolist()
                    del arr  # release the view before the mmap closes
                kv = _KV(value, GGUFValueType(vtype), GGUFValueType(sub))
            else:
                kv = _KV(read_value(vtype), GGUFValueType(vtype))
            if want(key):
                out[key] = kv
    return out


def _read_tokenizer_kv(vocab_gguf: "str | os.PathLike[str]") -> dict[str, _KV]:
    """Every ``tokenizer.*`` key/value of a GGUF file, in file order.

    ``general.name`` is included too (under its own key), since llama.cpp keys
    some tokenizer behaviour on it.
    """
    path = Path(vocab_gguf)
    if not path.is_file():
        raise FileNotFoundError(f"vocab GGUF not found: {path}")
    out = _read_metadata(path, lambda key: key.startswith("tokenizer.") or key == "general.name")
    if "tokenizer.ggml.tokens" not in out:
        raise ValueError(f"{path} has no tokenizer.ggml.tokens; not a vocab GGUF")
    return out


def _infer_kv(key: str, value: Any, existing: _KV | None) -> _KV:
    """Type an ``extra_kv`` value: explicit, else the existing key's type, else guessed."""
    from gguf import GGUFValueType

    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], GGUFValueType):
        val, vtype = value
        sub = None
        if vtype == GGUFValueType.ARRAY:
            sub = _guess_scalar_type(val[0]) if val else None
        return _KV(val, vtype, sub)
    if existing is not None:
        return _KV(value, existing.vtype, existing.sub_type)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"extra_kv[{key!r}]: empty arrays cannot be written")
        return _KV(list(value), GGUFValueType.ARRAY, _guess_scalar_type(value[0]))
    return _KV(value, _guess_scalar_type(value))


def _guess_scalar_type(value: Any) -> Any:
    from gguf import GGUFValueType

    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        return GGUFValueType.UINT32 if 0 <= value < 2**32 else GGUFValueType.INT64
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, (str, bytes)):
        return GGUFValueType.STRING
    raise TypeError(f"cannot infer a GGUF type for {value!r}; pass (value, GGUFValueType)")


def _llama_tensor_specs(
    n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int, arch: str = "llama"
) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape, is_norm) of every llama tensor; for ``arch="gemma3"`` Gemma 3's as well
    (per-head q/k norms, post-attention and post-FFN norms; the output matrix is the tied embedding).
    ``arch="qwen2vl"`` has llama's tensors (its q/k/v biases are optional in llama.cpp).

    numpy shapes are row-major, i.e. the reverse of ggml's ``ne``: a weight
    mapping n_in -> n_out is stored as ``(n_out, n_in)``.
    """
    head_dim = n_embd // n_head
    n_embd_kv = head_dim * n_head_kv
    specs: list[tuple[str, tuple[int, ...], bool]] = [
        ("token_embd.weight", (n_vocab, n_embd), False),
        ("output_norm.weight", (n_embd,), True),
    ]
    if arch in ("llama", "qwen2vl"):
        specs.append(("output.weight", (n_vocab, n_embd), False))
    for i in range(n_layer):
        b = f"blk.{i}."
        specs += [
            (b + "attn_norm.weight", (n_embd,), True),
            (b + "attn_q.weight", (n_embd, n_embd), False),
            (b + "attn_k.weight", (n_embd_kv, n_embd), False),
            (b + "attn_v.weight", (n_embd_kv, n_embd), False),
            (b + "attn_output.weight", (n_embd, n_embd), False),
            (b + "ffn_norm.weight", (n_embd,), True),
            (b + "ffn_gate.weight", (n_ff, n_embd), False),
            (b + "ffn_up.weight", (n_ff, n_embd), False),
            (b + "ffn_down.weight", (n_embd, n_ff), False),
        ]
        if arch == "gemma3":
            specs += [
                (b + "attn_q_norm.weight", (head_dim,), True),
                (b + "attn_k_norm.weight", (head_dim,), True),
                (b + "post_attention_norm.weight", (n_embd,), True),
                (b + "post_ffw_norm.weight", (n_embd,), True),
            ]
    return specs


def llama_param_count(
    n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int | None, n_ff: int
) -> int:
    """Number of parameters of the llama written by :func:`write_llama_from_vocab`."""
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    total = 0
    for _, shape, _ in _llama_tensor_specs(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff):
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def gguf_param_count(path: "str | os.PathLike[str]") -> int:
    """Sum of the element counts of every tensor in a GGUF file."""
    from gguf import GGUFReader

    return int(sum(int(t.n_elements) for t in GGUFReader(path).tensors))


def _write_clip(path, kv: list[tuple[str, Any, Any, Any]], specs, *, seed: int, projector_std: float,
                weight_std: float) -> Path:
    """A clip (mmproj) GGUF at ``path`` (atomically): the key/values ``kv`` as (key, value, type, array item type),
    then the f32 tensors ``specs`` as (name, shape, kind): ``n`` ones (norm weights), ``b`` zeros (biases), ``p``
    random with ``projector_std``, anything else random with ``weight_std``."""
    import numpy as np
    from gguf import GGUFWriter

    f32 = np.dtype(np.float32)
    with _atomic_target(path) as tmp:
        writer = GGUFWriter(None, "clip")
        try:
            for key, value, vtype, sub in kv:
                writer.add_key_value(key, value, vtype, sub)
            for name, shape, _ in specs:
                writer.add_tensor_info(name, shape, f32, int(np.prod(shape)) * f32.itemsize)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            rng = np.random.default_rng(seed)
            for name, shape, kind in specs:
                if kind == "n":
                    data = np.ones(shape, dtype=f32)
                elif kind == "b":
                    data = np.zeros(shape, dtype=f32)
                else:
                    data = _random_tensor(rng, shape, projector_std if kind == "p" else weight_std, "float32")
                writer.write_tensor_data(data)
        finally:
            writer.close()
    return Path(path)


def _random_tensor(rng: Any, shape: tuple[int, ...], std: float, dtype: str) -> "np.ndarray":
    """Normal(0, std) weights as ``dtype``, generated in bounded chunks."""
    import numpy as np

    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    n = flat.size
    for start in range(0, n, _CHUNK_ELEMENTS):
        end = min(n, start + _CHUNK_ELEMENTS)
        buf = rng.standard_normal(end - start, dtype=np.float32)
        buf *= np.float32(std)
        flat[start:end] = buf  # casts to float16 when dtype is f16
    return out


# --------------------------------------------------------------------------
# The general writer
# --------------------------------------------------------------------------


def write_llama_from_vocab(
    path: "str | os.PathLike[str]",
    vocab_gguf: "str | os.PathLike[str]",
    *,
    n_embd: int,
    n_layer: int,
    n_head: int,
    n_head_kv: int | None = None,
    n_ff: int,
    n_ctx: int = 2048,
    dtype: str = "f32",
    seed: int = 0,
    chat_template: str | None = None,
    extra_kv: Mapping[str, Any] | None = None,
    extra_special_tokens: Sequence[str] | None = None,
    user_defined_tokens: Sequence[str] = (),
    name: str | None = None,
    weight_std: float = 0.02,
    arch: str = "llama",
    sliding_window: int | None = None,
    tensor_dtypes: Mapping[str, str] | None = None,
) -> Path:
    """Write a random-weight llama GGUF that uses the tokenizer of ``vocab_gguf``.

    ``arch="qwen2vl"`` writes Qwen2-VL's text model (llama's tensors, M-RoPE positions: the text model of a
    dynamic-resolution projector, :func:`write_qwen2vl_mmproj`). ``arch="gemma3"`` writes Gemma 3's layout instead (llama.cpp's ``gemma3``: q/k norms, post norms,
    tied output); with ``sliding_window`` (tokens) five of every six layers attend only to that many
    recent positions, as Gemma 3 does, so its KV cache has sliding-window layers.

    Every ``tokenizer.*`` key of the vocab file is copied with its exact type
    (tokens, scores, token types, merges, special token ids, add_bos/eos flags,
    pre-tokenizer, chat template, ...). The model gets the llama tensors
    (token_embd, output_norm, output, and per block attn_norm, attn_q/k/v/output,
    ffn_norm, ffn_gate/up/down) filled with ``normal * weight_std`` (norms are
    ones) and the ``llama.*`` hyperparameter keys.

    ``dtype`` is ``"f32"``, ``"f16"`` or ``"q8_0"`` (gguf's own Q8_0 quantizer; every row
    length must be a multiple of 32). Norm vectors always stay F32, as in llama.cpp's converters. ``tensor_dtypes``
    gives tensors (by name, ``"blk.0.attn_q.weight"``) a dtype of their own, ``"f32"`` or ``"f16"`` (a file of
    mixed types; not with ``dtype="q8_0"``). ``chat_template`` sets/overrides
    ``tokenizer.chat_template``. ``extra_kv`` adds or overrides keys last: the
    value keeps the type of the key it replaces, is guessed (int -> UINT32,
    float -> FLOAT32, str -> STRING, bool -> BOOL, list -> ARRAY), or is given as
    ``(value, gguf.GGUFValueType.X)``; ``None`` removes the key.
    ``extra_special_tokens`` appends control tokens (e.g. ``"<|im_start|>"``)
    to the vocabulary; their ids are ``n_vocab_source + i``; ``user_defined_tokens`` then appends
    user-defined ones (matched in text as one token, shown as text). ``name`` is
    ``general.name``; it defaults to the vocab file's, because llama.cpp picks
    some tokenizer quirks by model name (phi-3's special tokens eat the
    whitespace after them), and a different name would tokenize differently.

    Returns ``path``.
    """
    import numpy as np
    from gguf import GGUFValueType, GGUFWriter

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    tensor_dtypes = dict(tensor_dtypes or {})
    if tensor_dtypes and (dtype == "q8_0" or not set(tensor_dtypes.values()) <= {"f32", "f16"}):
        raise ValueError("tensor_dtypes are 'f32' or 'f16', of a model whose dtype is")
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    if min(n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx) <= 0:
        raise ValueError("model dimensions must be positive")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if n_head % n_head_kv:
        raise ValueError(f"n_head ({n_head}) must be a multiple of n_head_kv ({n_head_kv})")
    head_dim = n_embd // n_head
    if head_dim % 2:
        raise ValueError(f"head dimension ({head_dim}) must be even for RoPE")

    tok = _read_tokenizer_kv(vocab_gguf)

    added = [(text, _TOKEN_TYPE_CONTROL) for text in extra_special_tokens or ()]
    added += [(text, _TOKEN_TYPE_USER_DEFINED) for text in user_defined_tokens]
    if added:
        existing = set(tok["tokenizer.ggml.tokens"].value)
        for text, kind in added:
            raw = text.encode("utf-8")
            if raw in existing:
                raise ValueError(f"token {text!r} is already in {vocab_gguf}")
            existing.add(raw)
            tok["tokenizer.ggml.tokens"].value.append(raw)
            if "tokenizer.ggml.scores" in tok:
                tok["tokenizer.ggml.scores"].value.append(0.0)
            if "tokenizer.ggml.token_type" in tok:
                tok["tokenizer.ggml.token_type"].value.append(kind)
    n_vocab = len(tok["tokenizer.ggml.tokens"].value)

    if chat_template is not None:
        tok["tokenizer.chat_template"] = _KV(chat_template, GGUFValueType.STRING)

    # llama.cpp keys some tokenizer quirks on general.name (e.g. phi-3's special
    # tokens strip the whitespace after them), so the source's name is kept.
    source_name = tok.pop("general.name", None)
    if name is None:
        name = source_name.value if source_name is not None else f"jan-test-llama-{Path(vocab_gguf).stem}"

    if arch not in ("llama", "gemma3", "qwen2vl"):
        raise ValueError(f"arch must be 'llama', 'gemma3' or 'qwen2vl', got {arch!r}")
    if sliding_window is not None and arch != "gemma3":
        raise ValueError("sliding_window needs arch='gemma3'")
    u32 = GGUFValueType.UINT32
    kv: dict[str, _KV] = {
        "general.name": _KV(name, GGUFValueType.STRING),
        f"{arch}.vocab_size": _KV(n_vocab, u32),
        f"{arch}.context_length": _KV(n_ctx, u32),
        f"{arch}.embedding_length": _KV(n_embd, u32),
        f"{arch}.block_count": _KV(n_layer, u32),
        f"{arch}.feed_forward_length": _KV(n_ff, u32),
        f"{arch}.attention.head_count": _KV(n_head, u32),
        f"{arch}.attention.head_count_kv": _KV(n_head_kv, u32),
        f"{arch}.attention.layer_norm_rms_epsilon": _KV(1e-5, GGUFValueType.FLOAT32),
        f"{arch}.rope.dimension_count": _KV(head_dim, u32),
        f"{arch}.rope.freq_base": _KV(10000.0, GGUFValueType.FLOAT32),
        "general.file_type": _KV(_FILE_TYPES[dtype], u32),
        "general.quantization_version": _KV(2, u32),
    }
    if arch == "gemma3":
        del kv[f"{arch}.vocab_size"], kv[f"{arch}.rope.dimension_count"]
        kv[f"{arch}.attention.key_length"] = _KV(head_dim, u32)
        kv[f"{arch}.attention.value_length"] = _KV(head_dim, u32)
        if sliding_window is not None:
            kv[f"{arch}.attention.sliding_window"] = _KV(sliding_window, u32)
    if arch == "qwen2vl":
        # M-RoPE: the rotated pairs of a head split among (time, height, width, unused), as Qwen2-VL's
        # [16, 24, 24, 0] of 64 pairs
        pairs = head_dim // 2
        kv[f"{arch}.rope.dimension_sections"] = _KV(
            [pairs - 2 * (pairs * 3 // 8), pairs * 3 // 8, pairs * 3 // 8, 0], GGUFValueType.ARRAY, GGUFValueType.INT32)
    kv.update(tok)
    for key, value in (extra_kv or {}).items():
        if key == "general.architecture":
            raise ValueError("general.architecture is set by arch")
        if value is None:
            kv.pop(key, None)
        else:
            kv[key] = _infer_kv(key, value, kv.get(key))

    specs = _llama_tensor_specs(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, arch)
    if set(tensor_dtypes) - {tname for tname, _, _ in specs}:
        raise ValueError(f"tensor_dtypes name no such tensor: {sorted(set(tensor_dtypes) - {t for t, _, _ in specs})}")
    np_dtype = np.dtype(_DTYPES[dtype])

    def dtype_of(tname: str) -> "np.dtype":
        return np.dtype(_DTYPES[tensor_dtypes[tname]]) if tname in tensor_dtypes else np_dtype
    f32 = np.dtype(np.float32)

    quantized = dtype == "q8_0"
    if quantized:
        from gguf import GGMLQuantizationType, quant_shape_to_byte_shape, quants

        q8 = GGMLQuantizationType.Q8_0
    with _atomic_target(path) as tmp:
        writer = GGUFWriter(None, arch)
        try:
            for key, v in kv.items():
                writer.add_key_value(key, v.value, v.vtype, v.sub_type)
            for tname, shape, is_norm in specs:
                if quantized and not is_norm:
                    byte_shape = quant_shape_to_byte_shape(shape, q8)
                    writer.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=q8)
                    continue
                dt = f32 if is_norm else dtype_of(tname)
                nbytes = int(np.prod(shape)) * dt.itemsize
                writer.add_tensor_info(tname, shape, dt, nbytes)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            # Tensors are generated and written one at a time (same order as
            # their infos), so peak memory is about the largest tensor.
            rng = np.random.default_rng(seed)
            for tname, shape, is_norm in specs:
                if is_norm:
                    data = np.ones(shape, dtype=f32)
                else:
                    data = _random_tensor(rng, shape, weight_std, dtype_of(tname).name)
                    if quantized:
                        data = quants.quantize(data, q8)
                writer.write_tensor_data(data)
                del data
        finally:
            writer.close()
    return Path(path)


# --------------------------------------------------------------------------
# Ready-made test models
# --------------------------------------------------------------------------

PHI3_VOCAB = "ggml-vocab-phi-3.gguf"

# Shape of the tiny chat/tool test models (about 4.1M parameters, ~16 MB F32,
# almost all of it the 32064 x 64 embedding and output matrices).
TINY_CHAT_CONFIG: dict[str, Any] = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=176, n_ctx=2048)

# ChatML conversation markers with Hermes-style tool calling: the tools are
# listed as JSON lines inside <tools></tools> in the system turn, assistant
# tool calls are rendered as <tool_call>{"name": ..., "arguments": ...}</tool_call>
# and tool results as a "tool" turn wrapped in <tool_response></tool_response>.
# Written for jan's tests; uses only features common to Jinja2 and llama.cpp's
# template engine, and only whitespace-controlled tags, so trim_blocks /
# lstrip_blocks settings do not change the output.
CHATML_TOOL_TEMPLATE = (
    r"""{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system_text = messages[0]['content'] -%}
{%- else -%}
{%- set system_text = '' -%}
{%- endif -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if system_text -%}{{- system_text + '\n\n' -}}{%- endif -%}
{{- '# Tools\n\nYou may call the functions described below. Each line inside <tools></tools> is one function signature as JSON.\n<tools>\n' -}}
{%- for tool in tools -%}{{- tool | tojson -}}{{- '\n' -}}{%- endfor -%}
{{- '</tools>\n\nTo call a function, answer with a JSON object holding its "name" and "arguments", wrapped in <tool_call></tool_call> tags, one tag per call:\n<tool_call>\n{"name": "function_name", "arguments": {"argument": "value"}}\n</tool_call><|im_end|>\n' -}}
{%- elif system_text -%}
{{- '<|im_start|>system\n' + system_text + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' and loop.first -%}
{%- elif message['role'] == 'assistant' -%}
{{- '<|im_start|>assistant\n' -}}
{%- if message['content'] -%}{{- message['content'] -}}{%- endif -%}
{%- if message['tool_calls'] -%}
{%- for call in message['tool_calls'] -%}
{%- if call['function'] is defined -%}{%- set fn = call['function'] -%}{%- else -%}{%- set fn = call -%}{%- endif -%}
{%- if message['content'] or not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- '<tool_call>\n{"name": ' + (fn['name'] | tojson) + ', "arguments": ' -}}
{%- if fn['arguments'] is string -%}{{- fn['arguments'] -}}{%- else -%}{{- fn['arguments'] | tojson -}}{%- endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- elif message['role'] == 'tool' -%}
{{- '<|im_start|>tool\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""
)

CHATML_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")


def write_phi3_chat_model(
    path: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> Path:
    """Tiny llama (n_embd 64, 2 layers, F32) with the phi-3 vocab and its chat template."""
    return write_llama_from_vocab(
        path,
        vocab_gguf or vocab_path(PHI3_VOCAB),
        **TINY_CHAT_CONFIG,
        dtype="f32",
        seed=seed,
    )


QWEN2_VOCAB = "ggml-vocab-qwen2.gguf"


def write_qwen2_chat_model(
    path: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> Path:
    """Tiny llama (n_embd 64, 2 layers, F32) with the Qwen2 vocab and the chat template that vocab GGUF carries
    (plain ChatML with a default system prompt, no tools: :func:`write_tool_template_model` gives a template with
    tools; ``<|im_start|>``/``<|im_end|>`` are special tokens of the vocab)."""
    return write_llama_from_vocab(
        path,
        vocab_gguf or vocab_path(QWEN2_VOCAB),
        **TINY_CHAT_CONFIG,
        dtype="f32",
        seed=seed,
    )


#: Qwen2.5-Coder's fill-in-the-middle and repository tokens at their ids in its vocabulary (the qwen2 vocab file
#: holds ``[PAD...]`` placeholders there), and the GGUF keys a converted Qwen2.5-Coder file gives them.
QWEN25_CODER_TOKENS = {151659: "<|fim_prefix|>", 151660: "<|fim_middle|>", 151661: "<|fim_suffix|>",
                       151662: "<|fim_pad|>", 151663: "<|repo_name|>", 151664: "<|file_sep|>"}
_QWEN25_CODER_KEYS = {"fim_pre": 151659, "fim_mid": 151660, "fim_suf": 151661, "fim_pad": 151662,
                      "fim_rep": 151663, "fim_sep": 151664}


def write_qwen25_coder_model(path: "str | os.PathLike[str]", *, seed: int = 0, chat_template: bool = True,
                             fim_keys: bool = True) -> Path:
    """Tiny llama (:data:`TINY_CHAT_CONFIG`) with Qwen2.5-Coder's tokenizer: the qwen2 vocabulary with
    :data:`QWEN25_CODER_TOKENS` as control tokens at their real ids, and (``fim_keys``) the
    ``tokenizer.ggml.fim_{pre,suf,mid,pad,rep,sep}_token_id`` keys a converted Qwen2.5-Coder GGUF has; without them
    llama.cpp finds the tokens by their text. ``chat_template=False`` drops the vocab's chat template (a base coder
    model with none)."""
    tok = _read_tokenizer_kv(vocab_path(QWEN2_VOCAB))
    tokens, types = list(tok["tokenizer.ggml.tokens"].value), list(tok["tokenizer.ggml.token_type"].value)
    for i, text in QWEN25_CODER_TOKENS.items():
        tokens[i], types[i] = text.encode("utf-8"), _TOKEN_TYPE_CONTROL
    kv: dict[str, Any] = {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types}
    if fim_keys:
        kv |= {f"tokenizer.ggml.{name}_token_id": i for name, i in _QWEN25_CODER_KEYS.items()}
    if not chat_template:
        kv["tokenizer.chat_template"] = None
    return write_llama_from_vocab(path, vocab_path(QWEN2_VOCAB), **TINY_CHAT_CONFIG, dtype="f32", seed=seed,
                                  extra_kv=kv)


def write_tool_template_model(
    path: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> Path:
    """Tiny llama with the phi-3 vocab and a ChatML + Hermes-style tool template.

    ``<|im_start|>`` and ``<|im_end|>`` are appended to the vocabulary as
    control tokens (ids ``n_vocab`` and ``n_vocab + 1`` of the source vocab), and
    ``<|im_end|>`` is the EOS/EOT token. Text without those markers tokenizes
    exactly as with the phi-3 vocab. The template is :data:`CHATML_TOOL_TEMPLATE`.
    """
    return _write_chatml_phi3(path, vocab_gguf, seed, CHATML_TOOL_TEMPLATE)


def _write_chatml_phi3(path: "str | os.PathLike[str]", vocab_gguf: "str | os.PathLike[str] | None", seed: int,
                       chat_template: str) -> Path:
    """Tiny llama (:data:`TINY_CHAT_CONFIG`) with the phi-3 vocab plus ChatML's two control tokens
    (``<|im_end|>`` is the EOS/EOT token) and ``chat_template``."""
    vocab = Path(vocab_gguf) if vocab_gguf is not None else vocab_path(PHI3_VOCAB)
    n_source = len(_read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value)
    im_end = n_source + CHATML_SPECIAL_TOKENS.index("<|im_end|>")
    return write_llama_from_vocab(
        path,
        vocab,
        **TINY_CHAT_CONFIG,
        dtype="f32",
        seed=seed,
        chat_template=chat_template,
        extra_special_tokens=CHATML_SPECIAL_TOKENS,
        extra_kv={"tokenizer.ggml.eos_token_id": im_end, "tokenizer.ggml.eot_token_id": im_end},
    )


QWEN2_VOCAB = "ggml-vocab-qwen2.gguf"
QWEN3_TEMPLATE = "Qwen-Qwen3-0.6B.jinja"


def templates_dir() -> Path:
    """Folder with the shared chat templates (``<models_dir()>/../templates``)."""
    return models_dir().parent / "templates"


MISTRAL_NEMO_TEMPLATE = "mistralai-Mistral-Nemo-Instruct-2407.jinja"


def write_strict_chat_model(path: "str | os.PathLike[str]", *, seed: int = 0) -> Path:
    """Tiny llama (:data:`TINY_CHAT_CONFIG`) with the phi-3 vocabulary and Mistral Nemo's real chat template,
    which raises unless user and assistant turns alternate (as Llama 2's and Gemma's do): for tests of what
    jan sends such templates (truncation, run histories, prompt budgets)."""
    template = (templates_dir() / MISTRAL_NEMO_TEMPLATE).read_text(encoding="utf-8")
    return write_llama_from_vocab(path, vocab_path(PHI3_VOCAB), **TINY_CHAT_CONFIG, seed=seed,
                                  chat_template=template)


def write_qwen3_tool_model(path: "str | os.PathLike[str]", *, seed: int = 0, tool_tokens: bool = False) -> Path:
    """Tiny llama with the qwen2 vocabulary and Qwen3's real chat template (Hermes ``<tool_call>`` tools).

    The qwen2 vocab holds ``<|im_start|>`` and ``<|im_end|>`` (the EOS/EOT token, as in Qwen's own files) but
    not Qwen 2.5/3's ``<tool_call>`` and ``</tool_call>``, which it spells in several tokens; ``tool_tokens``
    adds them as the user-defined tokens Qwen's own files have (ids 151936 and 151937). Output is gibberish
    (random weights), so tests force tool calls with ``tool_choice``.
    """
    template = (templates_dir() / QWEN3_TEMPLATE).read_text(encoding="utf-8")
    vocab = vocab_path(QWEN2_VOCAB)
    tokens = _read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value
    names = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in tokens]
    im_end = names.index("<|im_end|>")
    return write_llama_from_vocab(
        path, vocab, **TINY_CHAT_CONFIG, dtype="f32", seed=seed, chat_template=template,
        extra_kv={"tokenizer.ggml.eos_token_id": im_end, "tokenizer.ggml.eot_token_id": im_end},
        user_defined_tokens=("<tool_call>", "</tool_call>") if tool_tokens else (),
    )


GPT_OSS_TEMPLATE = "openai-gpt-oss-120b.jinja"
#: gpt-oss's Harmony control tokens (o200k_harmony), in the order :func:`write_harmony_model` appends them.
HARMONY_SPECIAL_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>",
                          "<|constrain|>")


def write_harmony_model(path: "str | os.PathLike[str]", *, seed: int = 0) -> Path:
    """Tiny llama with the qwen2 vocabulary, gpt-oss's real chat template and Harmony's control tokens
    (:data:`HARMONY_SPECIAL_TOKENS`, appended: ids ``151936`` on, in that order). ``<|return|>`` is the EOS token;
    with ``<|return|>`` and ``<|call|>`` in the vocabulary llama.cpp ends generation on both and not on ``<|end|>``,
    as with gpt-oss's own o200k_harmony, so a reply can write an analysis message and go on. Output is gibberish
    (random weights): tests steer it with grammars and ``logit_bias``."""
    template = (templates_dir() / GPT_OSS_TEMPLATE).read_text(encoding="utf-8")
    vocab = vocab_path(QWEN2_VOCAB)
    n_source = len(_read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value)
    ret = n_source + HARMONY_SPECIAL_TOKENS.index("<|return|>")
    return write_llama_from_vocab(
        path, vocab, **TINY_CHAT_CONFIG, dtype="f32", seed=seed, chat_template=template,
        extra_special_tokens=HARMONY_SPECIAL_TOKENS, extra_kv={"tokenizer.ggml.eos_token_id": ret},
    )


# --------------------------------------------------------------------------
# Benchmark model
# --------------------------------------------------------------------------

BENCH_VOCAB = "ggml-vocab-llama-spm.gguf"
# ~245.5M parameters with the 32000-token llama vocab, ~491 MB as F16.
BENCH_LLAMA_CONFIG: dict[str, Any] = dict(
    n_embd=1024, n_layer=14, n_head=16, n_head_kv=16, n_ff=2816, n_ctx=4096, dtype="f16", seed=0
)
# Bump when the writer changes what it writes, to invalidate cached files.
_BENCH_FORMAT_VERSION = 1


def write_bench_llama(
    path: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None
) -> Path:
    """Write the ~250M-parameter random-weight F16 llama used by the benchmarks.

    Shape: :data:`BENCH_LLAMA_CONFIG` with the llama SentencePiece vocab
    (32000 tokens). Peak memory stays well under 1 GB: tensors are generated
    and written one at a time.
    """
    return write_llama_from_vocab(
        path,
        vocab_gguf or vocab_path(BENCH_VOCAB),
        **BENCH_LLAMA_CONFIG,
    )


def _bench_cache_name() -> str:
    cfg = json.dumps({"v": _BENCH_FORMAT_VERSION, "vocab": BENCH_VOCAB, **BENCH_LLAMA_CONFIG}, sort_keys=True)
    return f"bench-llama-250m-f16-{hashlib.sha256(cfg.encode()).hexdigest()[:10]}.gguf"


def _looks_like_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def bench_model_path(cache_dir: "str | os.PathLike[str] | None" = None) -> Path:
    """Path of the cached benchmark model, writing it first if needed.

    The cache folder is ``cache_dir``, else ``$JAN_BENCH_CACHE``, else
    ``<repo root>/benchmarks/.cache``. The file name encodes the model's
    configuration, so changing it writes a new file. Concurrent callers are
    serialised with a lock file where the platform has ``fcntl``.
    """
    if cache_dir is None:
        env = os.environ.get("JAN_BENCH_CACHE")
        cache_dir = Path(env).expanduser() if env else repo_root() / "benchmarks" / ".cache"
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / _bench_cache_name()
    if _looks_like_gguf(target):
        return target
    with _file_lock(cache / (target.name + ".lock")):
        if not _looks_like_gguf(target):  # another process may have written it
            write_bench_llama(target)
    return target


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------


def write_truncated_copy(
    src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]", fraction: float
) -> Path:
    """Copy the first ``fraction`` (0 < fraction < 1) of ``src``'s bytes to ``dst``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    src = Path(src)
    n = int(src.stat().st_size * fraction)
    with _atomic_target(dst) as tmp:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            remaining = n
            while remaining > 0:
                chunk = fin.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                fout.write(chunk)
                remaining -= len(chunk)
    return Path(dst)


def write_not_gguf(dst: "str | os.PathLike[str]", size: int = 4096) -> Path:
    """Write a ``size``-byte file that is not GGUF (plain text, wrong magic)."""
    line = b"this is not a GGUF model file\n"
    data = (line * (size // len(line) + 1))[:size]
    with _atomic_target(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)



# --------------------------------------------------------------------------
# LoRA adapters
# --------------------------------------------------------------------------

#: The weight matrices of each block a test adapter changes.
LORA_TARGETS = ("attn_q", "attn_v", "ffn_up", "ffn_down")


def write_lora_adapter(
    dst: "str | os.PathLike[str]",
    base: "str | os.PathLike[str]",
    *,
    rank: int = 4,
    std: float = 0.5,
    alpha: float | None = None,
    seed: int = 0,
    targets: Sequence[str] = LORA_TARGETS,
    architecture: str | None = None,
    general_type: str = "adapter",
    wrong_shapes: bool = False,
    alora_invocation_tokens: Sequence[int] | None = None,
) -> Path:
    """A LoRA adapter GGUF for the model ``base`` at ``dst`` (atomically), as llama.cpp's convert_lora_to_gguf.py
    writes one: ``general.type`` "adapter", ``adapter.type`` "lora", ``adapter.lora.alpha`` (default: ``rank``, a
    scale of 1), and for each block's ``targets`` matrix ``W`` (out x in) the pair ``<W>.lora_a`` (rank x in) and
    ``<W>.lora_b`` (out x rank), Normal(0, ``std``): big enough that scale 1 changes a tiny model's greedy output.
    For the refusals: ``architecture`` (default: the base's), ``general_type``, ``wrong_shapes`` (lora_a one column
    short) and ``alora_invocation_tokens`` (an activated LoRA)."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(base))
    arch_field = reader.fields["general.architecture"]
    base_arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    rng = np.random.default_rng(seed)
    pairs = []
    for tensor in reader.tensors:
        parts = tensor.name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in targets or parts[3] != "weight":
            continue
        n_in, n_out = int(tensor.shape[0]), int(tensor.shape[1])  # (GGUF's ne order: columns first)
        a = (rng.standard_normal((rank, n_in - (1 if wrong_shapes else 0))) * std).astype(np.float32)
        b = (rng.standard_normal((n_out, rank)) * std).astype(np.float32)
        pairs.append((tensor.name, a, b))
    with _atomic_target(dst) as tmp:
        writer = GGUFWriter(str(tmp), architecture or base_arch)
        try:
            writer.add_string("general.type", general_type)
            writer.add_string("adapter.type", "lora")
            writer.add_float32("adapter.lora.alpha", float(rank if alpha is None else alpha))
            if alora_invocation_tokens is not None:
                writer.add_key_value("adapter.alora.invocation_tokens", [int(t) for t in alora_invocation_tokens],
                                     GGUFValueType.ARRAY, GGUFValueType.UINT32)
            for name, a, b in pairs:
                writer.add_tensor(f"{name}.lora_a", a)
                writer.add_tensor(f"{name}.lora_b", b)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return Path(dst)


# --------------------------------------------------------------------------
# Vision pair: a tiny text model plus a LLaVA-style projector (mmproj)
# --------------------------------------------------------------------------

# ChatML whose turns take either a string or a list of content parts (the
# text of each part joined by newlines, as jan flattens parts); the media
# marker of an image arrives as a text part. Whitespace-controlled tags only,
# so trim_blocks / lstrip_blocks settings do not change the output.
VISION_CHAT_TEMPLATE = (
    r"""{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' -}}
{%- if message['content'] is string -%}
{{- message['content'] -}}
{%- else -%}
{%- for part in message['content'] -%}
{%- if not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- part['text'] -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""
)

# The CLIP vision tower and projector of the test mmproj: 64x64 pixels in
# 8x8 patches (64 image tokens), a 2-block ViT of width 32 (the LLaVA graph
# stops one block early, as llava-1.5 does) and a 2-layer GELU MLP projecting
# into the text model's n_embd.
TINY_VISION_CONFIG: dict[str, Any] = dict(
    image_size=64, patch_size=8, n_embd=32, n_head=4, n_ff=64, n_layer=2, n_mm_hidden=64
)


def write_vision_chat_model(
    path: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> Path:
    """Tiny llama (the shape of :data:`TINY_CHAT_CONFIG`) for the vision pair.

    phi-3 vocabulary with ``<|im_start|>``/``<|im_end|>`` appended as control
    tokens (``<|im_end|>`` ends a turn) and :data:`VISION_CHAT_TEMPLATE`.
    Its mmproj is written by :func:`write_mlp_mmproj` with ``n_embd_text=64``.
    """
    return _write_chatml_phi3(path, vocab_gguf, seed, VISION_CHAT_TEMPLATE)


def _encoder_block_specs(prefix: str, *, n_embd: int, n_ff: int,
                         key_bias: bool = True) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) of one pre-norm transformer block of a clip encoder (ViT or Whisper), as
    :func:`_mlp_mmproj_tensor_specs`; ``key_bias`` False for Whisper, whose key projection has none."""
    specs = [
        (prefix + "ln1.weight", (n_embd,), "n"),
        (prefix + "ln1.bias", (n_embd,), "b"),
        (prefix + "attn_q.weight", (n_embd, n_embd), "w"),
        (prefix + "attn_q.bias", (n_embd,), "b"),
        (prefix + "attn_k.weight", (n_embd, n_embd), "w"),
        *([(prefix + "attn_k.bias", (n_embd,), "b")] if key_bias else []),
        (prefix + "attn_v.weight", (n_embd, n_embd), "w"),
        (prefix + "attn_v.bias", (n_embd,), "b"),
        (prefix + "attn_out.weight", (n_embd, n_embd), "w"),
        (prefix + "attn_out.bias", (n_embd,), "b"),
        (prefix + "ln2.weight", (n_embd,), "n"),
        (prefix + "ln2.bias", (n_embd,), "b"),
        (prefix + "ffn_up.weight", (n_ff, n_embd), "w"),
        (prefix + "ffn_up.bias", (n_ff,), "b"),
        (prefix + "ffn_down.weight", (n_embd, n_ff), "w"),
        (prefix + "ffn_down.bias", (n_embd,), "b"),
    ]
    return specs


def _mlp_mmproj_tensor_specs(
    *, image_size: int, patch_size: int, n_embd: int, n_ff: int, n_layer: int, n_mm_hidden: int, n_embd_text: int,
) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) of every tensor of a LLaVA-1.5-style mmproj.

    Names follow llama.cpp's clip loader (tools/mtmd/clip-impl.h); numpy
    shapes are the reverse of ggml's ``ne``. ``kind`` is ``"w"`` (random
    weight), ``"b"`` (zeros: a bias), ``"n"`` (ones: a norm scale) or
    ``"p"`` (random, larger: the projector, so images move the text model).
    """
    n_patches = (image_size // patch_size) ** 2
    specs: list[tuple[str, tuple[int, ...], str]] = [
        ("v.patch_embd.weight", (n_embd, 3, patch_size, patch_size), "w"),
        ("v.class_embd", (n_embd,), "w"),
        ("v.position_embd.weight", (n_patches + 1, n_embd), "w"),
        ("v.pre_ln.weight", (n_embd,), "n"),
        ("v.pre_ln.bias", (n_embd,), "b"),
    ]
    for i in range(n_layer):
        specs += _encoder_block_specs(f"v.blk.{i}.", n_embd=n_embd, n_ff=n_ff)
    specs += [
        ("mm.0.weight", (n_mm_hidden, n_embd), "p"),
        ("mm.0.bias", (n_mm_hidden,), "b"),
        ("mm.2.weight", (n_embd_text, n_mm_hidden), "p"),
        ("mm.2.bias", (n_embd_text,), "b"),
    ]
    return specs


def write_mlp_mmproj(
    path: "str | os.PathLike[str]",
    *,
    n_embd_text: int,
    image_size: int = TINY_VISION_CONFIG["image_size"],
    patch_size: int = TINY_VISION_CONFIG["patch_size"],
    n_embd: int = TINY_VISION_CONFIG["n_embd"],
    n_head: int = TINY_VISION_CONFIG["n_head"],
    n_ff: int = TINY_VISION_CONFIG["n_ff"],
    n_layer: int = TINY_VISION_CONFIG["n_layer"],
    n_mm_hidden: int = TINY_VISION_CONFIG["n_mm_hidden"],
    seed: int = 0,
    weight_std: float = 0.1,
    projector_std: float = 0.3,
) -> Path:
    """Write a random-weight CLIP vision tower with an ``mlp`` projector (LLaVA-1.5 layout).

    libmtmd loads it as a vision projector (``clip.projector_type = "mlp"``):
    an ``image_size`` x ``image_size`` RGB image (resized and padded by
    libmtmd) becomes ``(image_size // patch_size) ** 2`` embeddings of
    ``n_embd_text`` floats, which must equal the text model's ``n_embd``.
    All tensors are F32. Returns ``path``.
    """
    from gguf import GGUFValueType

    if image_size % patch_size:
        raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if n_ff == n_embd:
        # clip.cpp swaps ffn up/down of old llava conversions when down's input width is n_embd.
        raise ValueError("n_ff must differ from n_embd")
    specs = _mlp_mmproj_tensor_specs(image_size=image_size, patch_size=patch_size, n_embd=n_embd, n_ff=n_ff,
                                     n_layer=n_layer, n_mm_hidden=n_mm_hidden, n_embd_text=n_embd_text)
    u32 = GGUFValueType.UINT32
    kv: list[tuple[str, Any, Any, Any]] = [
        ("general.name", "jan-test-mmproj", GGUFValueType.STRING, None),
        ("general.file_type", _FILE_TYPES["f32"], u32, None),
        ("clip.has_vision_encoder", True, GGUFValueType.BOOL, None),
        ("clip.projector_type", "mlp", GGUFValueType.STRING, None),
        ("clip.use_gelu", True, GGUFValueType.BOOL, None),
        ("clip.vision.image_size", image_size, u32, None),
        ("clip.vision.patch_size", patch_size, u32, None),
        ("clip.vision.embedding_length", n_embd, u32, None),
        ("clip.vision.feed_forward_length", n_ff, u32, None),
        ("clip.vision.block_count", n_layer, u32, None),
        ("clip.vision.projection_dim", n_embd_text, u32, None),
        ("clip.vision.attention.head_count", n_head, u32, None),
        ("clip.vision.attention.layer_norm_epsilon", 1e-5, GGUFValueType.FLOAT32, None),
        # CLIP's own normalization constants, as the llava-1.5 conversions carry them.
        ("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
        ("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
    ]
    return _write_clip(path, kv, specs, seed=seed, projector_std=projector_std, weight_std=weight_std)


#: The test Qwen2-VL projector's vision tower: 8x8 patches merged 2x2 into one token (one token per 16x16
#: pixels), a 1-block ViT of width 32. Its image sizes are dynamic: 8 to 4096 tokens by default, as Qwen2-VL's.
TINY_QWEN2VL_VISION_CONFIG: dict[str, Any] = dict(patch_size=8, n_embd=32, n_head=2, n_ff=48, n_layer=1,
                                                   n_mm_hidden=64)


def _qwen2vl_mmproj_tensor_specs(
    *, patch_size: int, n_embd: int, n_ff: int, n_layer: int, n_mm_hidden: int, n_embd_text: int,
) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) of every tensor of a Qwen2-VL mmproj, as :func:`_mlp_mmproj_tensor_specs`:
    two patch convolutions (one per frame of a 2-frame temporal patch) with no position embedding (M-RoPE
    rotates the attention instead), and the merger's MLP from 2x2 patches (4 * n_embd) to the text width."""
    specs: list[tuple[str, tuple[int, ...], str]] = [
        ("v.patch_embd.weight", (n_embd, 3, patch_size, patch_size), "w"),
        ("v.patch_embd.weight.1", (n_embd, 3, patch_size, patch_size), "w"),
    ]
    for i in range(n_layer):
        specs += _encoder_block_specs(f"v.blk.{i}.", n_embd=n_embd, n_ff=n_ff)
    specs += [
        ("mm.0.weight", (n_mm_hidden, 4 * n_embd), "p"),
        ("mm.0.bias", (n_mm_hidden,), "b"),
        ("mm.2.weight", (n_embd_text, n_mm_hidden), "p"),
        ("mm.2.bias", (n_embd_text,), "b"),
    ]
    return specs


def write_qwen2vl_mmproj(
    path: "str | os.PathLike[str]",
    *,
    n_embd_text: int,
    patch_size: int = TINY_QWEN2VL_VISION_CONFIG["patch_size"],
    n_embd: int = TINY_QWEN2VL_VISION_CONFIG["n_embd"],
    n_head: int = TINY_QWEN2VL_VISION_CONFIG["n_head"],
    n_ff: int = TINY_QWEN2VL_VISION_CONFIG["n_ff"],
    n_layer: int = TINY_QWEN2VL_VISION_CONFIG["n_layer"],
    n_mm_hidden: int = TINY_QWEN2VL_VISION_CONFIG["n_mm_hidden"],
    seed: int = 0,
    weight_std: float = 0.1,
    projector_std: float = 0.3,
) -> Path:
    """Write a random-weight Qwen2-VL vision tower (``clip.projector_type = "qwen2vl_merger"``): a
    dynamic-resolution projector. libmtmd resizes an image to a multiple of ``2 * patch_size`` pixels each way
    within its token bounds (8 to 4096 tokens unless ``image_min_tokens``/``image_max_tokens`` say otherwise)
    and makes one embedding of ``n_embd_text`` floats per 2x2 patches, placed by M-RoPE (the text model must be
    ``arch="qwen2vl"``: :func:`write_qwen2vl_pair`). All tensors are F32. Returns ``path``.

    llama.cpp warms the encoder up on a 2116-token image (92x92 patches): with ``n_head`` 2 that is about
    0.6 GB of attention scores without flash attention, so load it with ``flash_attn=True`` in tests."""
    from gguf import GGUFValueType

    if n_embd % n_head or (n_embd // n_head) % 4:
        raise ValueError(f"n_embd ({n_embd}) / n_head ({n_head}) must be a multiple of 4 (M-RoPE's 4 sections)")
    if n_ff == n_embd:
        # clip.cpp swaps ffn up/down of old Qwen2-VL conversions when down's input width is n_embd.
        raise ValueError("n_ff must differ from n_embd")
    specs = _qwen2vl_mmproj_tensor_specs(patch_size=patch_size, n_embd=n_embd, n_ff=n_ff, n_layer=n_layer,
                                         n_mm_hidden=n_mm_hidden, n_embd_text=n_embd_text)
    u32 = GGUFValueType.UINT32
    kv: list[tuple[str, Any, Any, Any]] = [
        ("general.name", "jan-test-qwen2vl-mmproj", GGUFValueType.STRING, None),
        ("general.file_type", _FILE_TYPES["f32"], u32, None),
        ("clip.has_vision_encoder", True, GGUFValueType.BOOL, None),
        ("clip.projector_type", "qwen2vl_merger", GGUFValueType.STRING, None),
        ("clip.use_gelu", True, GGUFValueType.BOOL, None),
        # the size a fixed-resolution tower would take; Qwen2-VL's preprocessing ignores it
        ("clip.vision.image_size", 16 * patch_size, u32, None),
        ("clip.vision.patch_size", patch_size, u32, None),
        ("clip.vision.spatial_merge_size", 2, u32, None),
        ("clip.vision.embedding_length", n_embd, u32, None),
        ("clip.vision.feed_forward_length", n_ff, u32, None),
        ("clip.vision.block_count", n_layer, u32, None),
        ("clip.vision.projection_dim", n_embd_text, u32, None),
        ("clip.vision.attention.head_count", n_head, u32, None),
        ("clip.vision.attention.layer_norm_epsilon", 1e-6, GGUFValueType.FLOAT32, None),
        # Qwen2-VL's normalization constants (CLIP's)
        ("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
        ("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
    ]
    return _write_clip(path, kv, specs, seed=seed, projector_std=projector_std, weight_std=weight_std)


def write_qwen2vl_pair(
    folder: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``qwen2vl-chat.gguf`` (:data:`TINY_CHAT_CONFIG`'s shape, ``arch="qwen2vl"``, the phi-3 vocabulary
    with ChatML's control tokens and :data:`VISION_CHAT_TEMPLATE`) and ``mmproj-qwen2vl-chat.gguf``
    (:func:`write_qwen2vl_mmproj` sized to it) into ``folder``: a tiny dynamic-resolution vision pair, whose
    images take as many tokens as their size asks within the projector's bounds. Returns ``(model, mmproj)``."""
    folder = Path(folder)
    vocab = Path(vocab_gguf) if vocab_gguf is not None else vocab_path(PHI3_VOCAB)
    n_source = len(_read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value)
    im_end = n_source + CHATML_SPECIAL_TOKENS.index("<|im_end|>")
    model = write_llama_from_vocab(
        folder / "qwen2vl-chat.gguf", vocab, **TINY_CHAT_CONFIG, dtype="f32", seed=seed, arch="qwen2vl",
        chat_template=VISION_CHAT_TEMPLATE, extra_special_tokens=CHATML_SPECIAL_TOKENS,
        extra_kv={"tokenizer.ggml.eos_token_id": im_end, "tokenizer.ggml.eot_token_id": im_end})
    mmproj = write_qwen2vl_mmproj(folder / "mmproj-qwen2vl-chat.gguf", n_embd_text=TINY_CHAT_CONFIG["n_embd"],
                                  seed=seed + 1)
    return model, mmproj


def write_vision_pair(
    folder: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``vision-chat.gguf`` and ``mmproj-vision-chat.gguf`` into ``folder``.

    The text model is :func:`write_vision_chat_model`; the projector is
    :func:`write_mlp_mmproj` sized to it. Returns ``(model, mmproj)``.
    """
    folder = Path(folder)
    model = write_vision_chat_model(folder / "vision-chat.gguf", vocab_gguf=vocab_gguf, seed=seed)
    mmproj = write_mlp_mmproj(folder / "mmproj-vision-chat.gguf", n_embd_text=TINY_CHAT_CONFIG["n_embd"],
                              seed=seed + 1)
    return model, mmproj


#: llama.cpp's LLAMA_POOLING_TYPE_RANK: a reranker's ``<arch>.pooling_type``.
_POOLING_RANK = 4


def write_reranker_from_bert(
    src: "str | os.PathLike[str]", path: "str | os.PathLike[str]", *, seed: int = 0,
    rerank_template: str | None = None,
) -> Path:
    """A reranker made from the BERT embedding GGUF ``src`` (all-MiniLM-L6-v2): its tensors, tokenizer and
    metadata, plus a random classification head (``cls.weight``/``cls.bias``, ``cls.output.weight``/
    ``cls.output.bias``: one score, as bge-reranker's) and ``bert.pooling_type`` set to rank — what llama.cpp's
    converter writes for a ``*ForSequenceClassification`` model. The scores mean nothing, but they come from the
    real graph: a query read with a document, pooled at CLS, through the head. ``rerank_template``: the model's own
    prompt (``tokenizer.chat_template.rerank``, with ``{query}`` and ``{document}``)."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    kv = _read_metadata(src)
    arch = kv["general.architecture"].value.decode()
    reader = GGUFReader(src)
    n_embd = int(kv[f"{arch}.embedding_length"].value)
    rng = np.random.default_rng(seed)
    head = [("cls.weight", _random_tensor(rng, (n_embd, n_embd), 0.05, "float32")),
            ("cls.bias", np.zeros(n_embd, dtype=np.float32)),
            ("cls.output.weight", _random_tensor(rng, (1, n_embd), 0.5, "float32")),
            ("cls.output.bias", np.zeros(1, dtype=np.float32))]
    with _atomic_target(path) as tmp:
        writer = GGUFWriter(None, arch)
        try:
            for key, v in kv.items():
                if key in ("general.architecture", f"{arch}.pooling_type") or key.startswith("GGUF."):
                    continue
                writer.add_key_value(key, v.value, v.vtype, v.sub_type)
            writer.add_key_value(f"{arch}.pooling_type", _POOLING_RANK, GGUFValueType.UINT32)
            if rerank_template is not None:
                writer.add_key_value("tokenizer.chat_template.rerank", rerank_template, GGUFValueType.STRING)
            for t in reader.tensors:
                writer.add_tensor_info(t.name, [int(x) for x in reversed(t.shape)], np.dtype(t.data.dtype),
                                       int(t.n_bytes), t.tensor_type)
            for name, data in head:
                writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for t in reader.tensors:
                writer.write_tensor_data(np.asarray(t.data))
            for _, data in head:
                writer.write_tensor_data(data)
        finally:
            writer.close()
    return Path(path)


#: The test audio projector: a Qwen2-Audio (``qwen2a``) whisper encoder, the simplest audio projector llama.cpp's
#: libmtmd has (whisper's two convolutions and ViT blocks, a 2x average pool, then one linear layer into the
#: text model). Its input is libmtmd's own: 16 kHz audio as ``n_mel`` log-mel bins every 10 ms, cut into 30 s
#: windows of 3000 frames; each window becomes 750 tokens (the stride-2 convolution halves it to 1500 positions,
#: the pool halves that), whatever the encoder's width.
TINY_AUDIO_CONFIG: dict[str, Any] = dict(n_mel=80, n_embd=32, n_head=2, n_ff=48, n_layer=1)

#: Positions of whisper's encoder: one 30 s window after the stride-2 convolution (the graph asserts the
#: position table has at least that many rows).
_WHISPER_N_POS = 1500

#: Qwen2-Audio's markers around a clip's embeddings (libmtmd adds them as special text): control tokens of the
#: audio pair's text model, as Qwen2-Audio's vocabulary has them.
QWEN2_AUDIO_SPECIAL_TOKENS = ("<|audio_bos|>", "<|audio_eos|>")


def _qwen2a_mmproj_tensor_specs(
    *, n_mel: int, n_embd: int, n_ff: int, n_layer: int, n_embd_text: int,
) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) of every tensor of a Qwen2-Audio mmproj, as :func:`_mlp_mmproj_tensor_specs`
    (``a.`` for the audio encoder). Whisper's key projection has no bias (the graph asserts there is none); its
    convolution biases are (n_embd, 1), one per output channel, as llama.cpp's converter writes them."""
    specs: list[tuple[str, tuple[int, ...], str]] = [
        ("a.conv1d.1.weight", (n_embd, n_mel, 3), "w"),
        ("a.conv1d.1.bias", (n_embd, 1), "b"),
        ("a.conv1d.2.weight", (n_embd, n_embd, 3), "w"),
        ("a.conv1d.2.bias", (n_embd, 1), "b"),
        ("a.position_embd.weight", (_WHISPER_N_POS, n_embd), "w"),
    ]
    for i in range(n_layer):
        specs += _encoder_block_specs(f"a.blk.{i}.", n_embd=n_embd, n_ff=n_ff, key_bias=False)
    specs += [
        ("a.post_ln.weight", (n_embd,), "n"),
        ("a.post_ln.bias", (n_embd,), "b"),
        ("mm.a.fc.weight", (n_embd_text, n_embd), "p"),
        ("mm.a.fc.bias", (n_embd_text,), "b"),
    ]
    return specs


def write_qwen2a_mmproj(
    path: "str | os.PathLike[str]",
    *,
    n_embd_text: int,
    n_mel: int = TINY_AUDIO_CONFIG["n_mel"],
    n_embd: int = TINY_AUDIO_CONFIG["n_embd"],
    n_head: int = TINY_AUDIO_CONFIG["n_head"],
    n_ff: int = TINY_AUDIO_CONFIG["n_ff"],
    n_layer: int = TINY_AUDIO_CONFIG["n_layer"],
    seed: int = 0,
    weight_std: float = 0.1,
    projector_std: float = 0.3,
) -> Path:
    """Write a random-weight Qwen2-Audio audio encoder (``clip.projector_type = "qwen2a"``, audio only).

    libmtmd decodes a clip (WAV, MP3, FLAC), resamples it to 16 kHz, computes ``n_mel`` log-mel bins and encodes
    each 30 s window into 750 embeddings of ``n_embd_text`` floats (the text model's ``n_embd``), between
    ``<|audio_bos|>`` and ``<|audio_eos|>``. All tensors are F32. Returns ``path``."""
    from gguf import GGUFValueType

    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    specs = _qwen2a_mmproj_tensor_specs(n_mel=n_mel, n_embd=n_embd, n_ff=n_ff, n_layer=n_layer,
                                        n_embd_text=n_embd_text)
    u32 = GGUFValueType.UINT32
    kv: list[tuple[str, Any, Any, Any]] = [
        ("general.name", "jan-test-qwen2a-mmproj", GGUFValueType.STRING, None),
        ("general.file_type", _FILE_TYPES["f32"], u32, None),
        ("clip.has_audio_encoder", True, GGUFValueType.BOOL, None),
        ("clip.projector_type", "qwen2a", GGUFValueType.STRING, None),
        ("clip.audio.num_mel_bins", n_mel, u32, None),
        ("clip.audio.embedding_length", n_embd, u32, None),
        ("clip.audio.feed_forward_length", n_ff, u32, None),
        ("clip.audio.block_count", n_layer, u32, None),
        ("clip.audio.projection_dim", n_embd_text, u32, None),
        ("clip.audio.attention.head_count", n_head, u32, None),
        ("clip.audio.attention.layer_norm_epsilon", 1e-5, GGUFValueType.FLOAT32, None),
    ]
    return _write_clip(path, kv, specs, seed=seed, projector_std=projector_std, weight_std=weight_std)


def write_audio_pair(
    folder: "str | os.PathLike[str]", *, vocab_gguf: "str | os.PathLike[str] | None" = None, seed: int = 0,
    n_ctx: int = 4096,
) -> tuple[Path, Path]:
    """Write ``audio-chat.gguf`` (:data:`TINY_CHAT_CONFIG`'s shape with an ``n_ctx``-token context, the phi-3
    vocabulary with ChatML's and Qwen2-Audio's control tokens, :data:`VISION_CHAT_TEMPLATE`) and
    ``mmproj-audio-chat.gguf`` (:func:`write_qwen2a_mmproj` sized to it) into ``folder``: a tiny audio pair.
    A clip takes 750 tokens per started 30 s (plus the two markers), so the context is longer than the other
    pairs' to hold a clip of several windows. Returns ``(model, mmproj)``."""
    folder = Path(folder)
    vocab = Path(vocab_gguf) if vocab_gguf is not None else vocab_path(PHI3_VOCAB)
    n_source = len(_read_tokenizer_kv(vocab)["tokenizer.ggml.tokens"].value)
    special = CHATML_SPECIAL_TOKENS + QWEN2_AUDIO_SPECIAL_TOKENS
    im_end = n_source + special.index("<|im_end|>")
    model = write_llama_from_vocab(
        folder / "audio-chat.gguf", vocab, **{**TINY_CHAT_CONFIG, "n_ctx": n_ctx}, dtype="f32", seed=seed,
        chat_template=VISION_CHAT_TEMPLATE, extra_special_tokens=special,
        extra_kv={"tokenizer.ggml.eos_token_id": im_end, "tokenizer.ggml.eot_token_id": im_end})
    mmproj = write_qwen2a_mmproj(folder / "mmproj-audio-chat.gguf", n_embd_text=TINY_CHAT_CONFIG["n_embd"],
                                 seed=seed + 1)
    return model, mmproj
