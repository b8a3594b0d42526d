"""What a GGUF file says about itself, for filling in a new model.json."""

from __future__ import annotations

import os
import struct
from typing import Any

from jan.engine.header import read_header
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


#: GGUF value types: fixed sizes (8: string and 9: array are read apart).
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
#: What ``general.architecture`` a multimodal projector (llama.cpp's libmtmd, ``clip.cpp``) has.
PROJECTOR_ARCHITECTURE = "clip"


def gguf_architecture(path: str, *, max_keys: int = 4096) -> str | None:
    """``general.architecture`` from a GGUF file's header, read directly (a projector does not load as a model,
    so llama.cpp cannot be asked); ``None`` when the header does not say (or is cut short). Reads the keys in
    order and stops at that one; a damaged header raises ``ValueError``."""
    with open(path, "rb") as f:
        def read(n: int) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise ValueError("the GGUF header is cut short")
            return data

        def u32() -> int:
            return struct.unpack("<I", read(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", read(8))[0]

        def string() -> bytes:
            n = u64()
            if n > 1 << 24:
                raise ValueError("a GGUF header string is implausibly long")
            return read(n)

        def skip(vtype: int) -> None:
            if vtype == 8:
                string()
            elif vtype == 9:
                item, count = u32(), u64()
                if item in _GGUF_SIZES:
                    f.seek(_GGUF_SIZES[item] * count, os.SEEK_CUR)
                elif item == 8:
                    for _ in range(count):
                        string()
                else:
                    raise ValueError(f"a GGUF array of value type {item} is not understood")
            elif vtype in _GGUF_SIZES:
                read(_GGUF_SIZES[vtype])
            else:
                raise ValueError(f"GGUF value type {vtype} is not understood")

        if read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        version = u32()
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        u64()  # tensors
        for _ in range(min(u64(), max_keys)):
            key = string()
            vtype = u32()
            if key == b"general.architecture" and vtype == 8:
                return string().decode("utf-8", "replace")
            skip(vtype)
    return None


def check_projector(path: str) -> None:
    """``ValueError`` unless ``path`` is a multimodal projector GGUF (``general.architecture`` "clip"): what
    ``--mmproj`` names is checked when the model is made, not first when it loads."""
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
