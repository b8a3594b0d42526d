"""What a GGUF file says about itself, for filling in a new model.json."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from typing import Any

from jan.engine.header import read_header
from jan.errors import ModelLoadError
from jan.gguf_extent import cut_short
from jan.gguf_magic import GGUF_MAGIC


def describe_gguf(path: str) -> dict[str, Any]:
    """model.json fields read from the file (its header: :func:`jan.engine.header.read_header`, no weights are
    read). Raises what a vocab-only load of it would (:class:`jan.ModelFileError` for no GGUF llama.cpp reads)."""
    meta = read_header(path)
    arch = meta.get("general.architecture", "")
    n_ctx_train = int(meta.get(f"{arch}.context_length", "0") or 0)
    embedding = bool(meta.get(f"{arch}.pooling_type")) or "bert" in arch
    # ctx_len is left out on purpose: the engine default (the model's own, capped)
    # or the server's --ctx-size applies until the user sets one for this model.
    settings: dict[str, Any] = {}
    if embedding:
        settings["embedding"] = True
    return {
        "name": meta.get("general.name") or os.path.splitext(os.path.basename(path))[0],
        "settings": settings,
        "metadata": {
            "author": meta.get("general.author") or meta.get("general.organization") or "",
            "tags": [t for t in (arch, "embedding" if embedding else "") if t],
            "size": os.path.getsize(path),
            "architecture": arch,
            "context_length": n_ctx_train,
        },
    }


#: GGUF value types of a fixed size, as ``struct`` formats (8: string and 9: array are read apart).
_GGUF_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_SIZES = {vtype: struct.calcsize("<" + fmt) for vtype, fmt in _GGUF_FORMATS.items()}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
#: What ``general.architecture`` a multimodal projector (llama.cpp's libmtmd, ``clip.cpp``) has.
PROJECTOR_ARCHITECTURE = "clip"


class _Header:
    """A GGUF file's header, read key by key in order from its start (never the weights). llama.cpp's metadata API
    renders arrays as no text and cannot read a projector at all, so these few reads are done here; a damaged
    header raises ``ValueError``."""

    def __init__(self, f: Any):
        self.f = f

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("the GGUF header is cut short")
        return data

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def string(self) -> bytes:
        n = self.u64()
        if n > 1 << 24:
            raise ValueError("a GGUF header string is implausibly long")
        return self.read(n)

    def keys(self, max_keys: int) -> Any:
        """Each key in turn, as ``(key, value type)``; the caller reads or skips its value before the next."""
        if self.read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        version = self.u32()
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        self.u64()  # tensors
        for _ in range(min(self.u64(), max_keys)):
            key = self.string().decode("utf-8", "replace")
            yield key, self.u32()

    def array_header(self) -> tuple[int, int]:
        item, count = self.u32(), self.u64()
        if item not in _GGUF_SIZES and item != _GGUF_STRING:
            raise ValueError(f"a GGUF array of value type {item} is not understood")
        return item, count

    def skip(self, vtype: int) -> None:
        if vtype == _GGUF_STRING:
            self.string()
        elif vtype == _GGUF_ARRAY:
            item, count = self.array_header()
            if item == _GGUF_STRING:
                for _ in range(count):
                    self.string()
            else:
                self.f.seek(_GGUF_SIZES[item] * count, os.SEEK_CUR)
        elif vtype in _GGUF_SIZES:
            self.read(_GGUF_SIZES[vtype])
        else:
            raise ValueError(f"GGUF value type {vtype} is not understood")

    def array(self) -> list[Any]:
        item, count = self.array_header()
        if item == _GGUF_STRING:
            return [self.string().decode("utf-8", "replace") for _ in range(count)]
        size = _GGUF_SIZES[item] * count
        if size > 1 << 30:
            raise ValueError("a GGUF header array is implausibly long")
        return list(struct.unpack(f"<{count}{_GGUF_FORMATS[item]}", self.read(size)))


def gguf_architecture(path: str, *, max_keys: int = 4096) -> str | None:
    """``general.architecture`` from a GGUF file's header, read directly (a projector does not load as a model,
    so llama.cpp cannot be asked); ``None`` when the header does not say (or is cut short). Reads the keys in
    order and stops at that one; a damaged header raises ``ValueError``."""
    with open(path, "rb") as f:
        header = _Header(f)
        for key, vtype in header.keys(max_keys):
            if key == "general.architecture" and vtype == _GGUF_STRING:
                return header.string().decode("utf-8", "replace")
            header.skip(vtype)
    return None


def gguf_scalars(path: str, wanted: frozenset[str] | set[str], *, max_keys: int = 4096) -> dict[str, Any]:
    """The ``wanted`` keys of a GGUF file's header that hold one value (a number, a boolean, a string), read
    directly: a projector's (``clip.has_audio_encoder``) cannot be read through llama.cpp. A key the header does
    not have is left out; a damaged header raises ``ValueError``."""
    found: dict[str, Any] = {}
    with open(path, "rb") as f:
        header = _Header(f)
        for key, vtype in header.keys(max_keys):
            if key not in wanted or vtype == _GGUF_ARRAY:
                header.skip(vtype)
            else:
                found[key] = _value(f, header, vtype, None)
            if len(found) == len(wanted):
                break
    return found


def gguf_arrays(path: str, *, longest: int | None = None, max_keys: int = 4096) -> dict[str, list[Any]]:
    """The array-valued keys of a GGUF file's header (the vocabulary's ``tokenizer.ggml.tokens``, ``merges``,
    ``token_type``; per-layer sizes), which llama.cpp's metadata gives no value for. An array of more than
    ``longest`` items (``None``: no limit) is given as ``[]`` without reading it, as Ollama's ``/api/show`` leaves
    the vocabulary out unless asked. A damaged header raises ``ValueError``."""
    arrays: dict[str, list[Any]] = {}
    with open(path, "rb") as f:
        header = _Header(f)
        for key, vtype in header.keys(max_keys):
            if vtype != _GGUF_ARRAY:
                header.skip(vtype)
                continue
            arrays[key] = _value(f, header, vtype, longest)
    return arrays


def gguf_values(path: str, *, longest: int | None = None, max_keys: int = 4096) -> dict[str, Any]:
    """Every key of a GGUF file's header with its value, read directly (a projector, which llama.cpp cannot read):
    numbers, booleans and strings as they are, arrays as :func:`gguf_arrays` gives them (one of more than
    ``longest`` items as ``[]``). A damaged header raises ``ValueError``."""
    values: dict[str, Any] = {}
    with open(path, "rb") as f:
        header = _Header(f)
        for key, vtype in header.keys(max_keys):
            values[key] = _value(f, header, vtype, longest)
    return values


#: ggml's tensor types by their GGUF id (ggml.h's ``enum ggml_type``), named as Ollama's ``/api/show`` names them
#: (upper case; ids ggml no longer has are left out and named "unknown", as Ollama names them).
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
              19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
              27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4",
              41: "Q1_0", 42: "Q2_0"}
#: The most dimensions a GGUF tensor has (ggml's GGML_MAX_DIMS); more is a damaged header.
_MAX_DIMS = 4


def gguf_tensors(path: str, *, max_keys: int = 4096, max_tensors: int = 1 << 16) -> list[dict[str, Any]]:
    """The tensors a GGUF file's header lists, in its order, as Ollama's ``/api/show`` tells them: ``{"name",
    "type" (:data:`GGML_TYPES`), "shape" (its dimensions, innermost first, as the file has them)}`` (blocking: the
    header's keys are walked to reach them, the vocabulary's too). A damaged header raises ``ValueError``."""
    with open(path, "rb") as f:
        header = _Header(f)
        if header.read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        if header.u32() < 2:
            raise ValueError("the GGUF version is too old")
        n_tensors, n_keys = header.u64(), header.u64()
        if n_tensors > max_tensors or n_keys > max_keys:
            raise ValueError("the GGUF header lists implausibly many tensors or keys")
        for _ in range(n_keys):
            header.string()
            header.skip(header.u32())
        tensors = []
        for _ in range(n_tensors):
            name = header.string().decode("utf-8", "replace")
            n_dims = header.u32()
            if n_dims > _MAX_DIMS:
                raise ValueError(f"a GGUF tensor with {n_dims} dimensions")
            shape = [header.u64() for _ in range(n_dims)]
            kind = header.u32()
            header.u64()  # (its offset in the data)
            tensors.append({"name": name, "type": GGML_TYPES.get(kind, "unknown"), "shape": shape})
    return tensors


def _value(f, header: "_Header", vtype: int, longest: int | None) -> Any:
    """The value of type ``vtype`` at the header's place: a number, boolean or string as it is, an array as a
    list (one of more than ``longest`` items as ``[]``, skipped unread). Raises ``ValueError`` for a value type
    this reader does not know."""
    if vtype == _GGUF_STRING:
        return header.string().decode("utf-8", "replace")
    if vtype in _GGUF_FORMATS:
        return struct.unpack("<" + _GGUF_FORMATS[vtype], header.read(_GGUF_SIZES[vtype]))[0]
    if vtype == _GGUF_ARRAY:
        at = f.tell()
        _, count = header.array_header()
        f.seek(at)
        if longest is not None and count > longest:
            header.skip(vtype)
            return []
        return header.array()
    raise ValueError(f"GGUF value type {vtype} is not understood")


def check_projector(path: str) -> None:
    """``ValueError`` unless ``path`` is a multimodal projector GGUF (``general.architecture`` "clip") that holds
    all the tensor data its header describes (one cut short says how many bytes are missing): what ``--mmproj``
    names is checked when the model is made, not first when it loads."""
    try:
        arch = gguf_architecture(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not a multimodal projector: {exc}") from None
    if arch != PROJECTOR_ARCHITECTURE:
        what = f"its architecture is '{arch}'" if arch else "its header names no architecture"
        raise ValueError(f"{path} is not a multimodal projector (mmproj) GGUF: {what}, a projector's is "
                         f"'{PROJECTOR_ARCHITECTURE}'")
    try:  # (a partial download of a projector: accepted, it failed every request's load after)
        short = cut_short(path, "projector file")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if short:
        raise ValueError(short)


def by_url(text: str, path: str, url: str) -> str:
    """An error about the downloaded file at ``path`` said of the ``url`` it came from: the path is a staging file in
    the model's folder, removed with the failed pull, which tells the user nothing."""
    return text.replace(f"'{path}'", f"downloaded from {url}").replace(path, f"the file downloaded from {url}")


@contextlib.contextmanager
def said_by_url(path: str, url: str) -> Iterator[None]:
    """Checks of a downloaded file whose error (one naming ``path``) is said by the URL instead (:func:`by_url`), as
    the same type (with its ``param`` and ``code``)."""
    try:
        yield
    except (ModelLoadError, ValueError) as exc:
        text = str(exc)
        if path not in text:
            raise
        try:
            said = type(exc)(by_url(text, path, url))
        except TypeError:  # an error type made otherwise: left as it was
            raise exc from None
        said.__dict__.update(exc.__dict__)
        raise said from None
