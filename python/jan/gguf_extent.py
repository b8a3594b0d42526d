"""How long a GGUF file must be for the tensor data its header describes: a file cut short (a partial download, a
copy that stopped) is told from its header alone, before any weights are read. One check for every file of a
model, its weights and its companions (draft model, projector, LoRA adapters): :func:`missing_bytes`.

The header is read here, in order (never the weights): the key/values are skipped, each tensor's shape and type
give its size, the data section starts at ``general.alignment`` (32 by default) past the header. No dependencies,
so the store and the services can use it without the native engine."""

from __future__ import annotations

import functools
import os
import struct
from typing import BinaryIO

from jan.file_stamps import FileVersion, file_version
from jan.gguf_magic import GGUF_MAGIC

__all__ = ["cut_short", "missing_bytes", "tensor_data_end"]

#: Bytes of each fixed-size GGUF value type (8: string and 9: array are read apart).
_VALUE_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
#: ggml tensor types as (elements per block, bytes per block), from ggml's type traits; a type not listed
#: (a newer one) leaves the file's length unjudged rather than misjudged.
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}
_DEFAULT_ALIGNMENT = 32
#: Bounds past which a header is damaged, not large (a count read from garbage).
_MAX_COUNT = 1 << 24
_MAX_STRING = 1 << 24
_U64 = struct.Struct("<Q")


class _Unjudged(Exception):
    """The header cannot say how long the file must be (damaged, or a type this reader does not know)."""


class _Reader:
    """The header's bytes in order, read a MiB at a time (a vocabulary of 262k strings is skipped in ~50 ms, not
    one read call per string)."""

    CHUNK = 1 << 20

    def __init__(self, f: BinaryIO):
        self.f = f
        self.buf = b""
        self.pos = 0
        self.base = 0  # the file offset of buf[0]

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            self.base += self.pos
            self.buf = self.buf[self.pos:] + self.f.read(max(n, self.CHUNK))
            self.pos = 0
            if n > len(self.buf):
                raise _Unjudged  # the header itself is cut short: llama.cpp's own check says so

    def tell(self) -> int:
        return self.base + self.pos

    def read(self, n: int) -> bytes:
        self._need(n)
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:  # (past what is read: a long array of numbers)
            self.f.seek(self.tell() + n)
            self.base, self.buf, self.pos = self.tell() + n, b"", 0

    def u32(self) -> int:
        self._need(4)
        value = struct.unpack_from("<I", self.buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self) -> int:
        self._need(8)
        value = struct.unpack_from("<Q", self.buf, self.pos)[0]
        self.pos += 8
        return value

    def string(self) -> bytes:
        n = self.u64()
        if n > _MAX_STRING:
            raise _Unjudged
        return self.read(n)

    def skip_string(self) -> None:
        n = self.u64()
        if n > _MAX_STRING:
            raise _Unjudged
        self.skip(n)

    def skip_strings(self, count: int) -> None:
        """Skips ``count`` strings (a vocabulary): a tight loop over the buffer, the edge of it the slow way."""
        unpack = _U64.unpack_from
        while count:
            buf, pos, end = self.buf, self.pos, len(self.buf)
            while count and pos + 8 <= end:
                n = unpack(buf, pos)[0]
                if n > _MAX_STRING:
                    raise _Unjudged
                if pos + 8 + n > end:
                    break
                pos += 8 + n
                count -= 1
            self.pos = pos
            if count:
                self.skip_string()
                count -= 1

    def value(self, vtype: int) -> int | None:
        """Reads (or skips) one value; a uint32 comes back (``general.alignment``), anything else None."""
        if vtype == _STRING:
            self.skip_string()
        elif vtype == _ARRAY:
            item, count = self.u32(), self.u64()
            if count > _MAX_COUNT * 16:
                raise _Unjudged
            if item == _STRING:
                self.skip_strings(count)
            elif item in _VALUE_BYTES:
                self.skip(_VALUE_BYTES[item] * count)
            else:
                raise _Unjudged
        elif vtype == _UINT32:
            return self.u32()
        elif vtype in _VALUE_BYTES:
            self.read(_VALUE_BYTES[vtype])
        else:
            raise _Unjudged
        return None


def _data_end(f: BinaryIO) -> int | None:
    r = _Reader(f)
    if r.read(4) != GGUF_MAGIC or r.u32() < 2:
        return None
    n_tensors, n_kv = r.u64(), r.u64()
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        return None
    alignment = _DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.u32())
        if key == b"general.alignment" and value:
            alignment = value
    end = 0
    for _ in range(n_tensors):
        r.skip_string()
        n_dims = r.u32()
        if n_dims > 8:
            return None
        dims = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims))
        ggml_type, offset = r.u32(), r.u64()
        if ggml_type not in _BLOCKS:
            return None
        block, block_bytes = _BLOCKS[ggml_type]
        elements = 1
        for d in dims:
            elements *= d
        end = max(end, offset + elements // block * block_bytes)
    start = r.tell()
    if not end:  # no tensor data (a vocabulary-only file): nothing past the header, and no padding before it
        return start
    start += -start % alignment
    return start + end


@functools.lru_cache(maxsize=64)
def _end_of(version: FileVersion) -> int | None:
    try:
        with open(version[0], "rb") as f:
            return _data_end(f)
    except (_Unjudged, struct.error, OverflowError, ValueError):
        return None


def tensor_data_end(path: str | os.PathLike[str]) -> int | None:
    """How many bytes the GGUF at ``path`` must have to hold every tensor its header describes; None when the
    header cannot say (no GGUF, a damaged header, a tensor type this reader does not know). Kept per file version;
    reads the header only. OSError when the file cannot be read."""
    return _end_of(file_version(path))


def missing_bytes(path: str | os.PathLike[str]) -> int:
    """How many bytes the GGUF at ``path`` lacks of the tensor data its header describes (0: none, or the header
    cannot say). OSError when the file cannot be read."""
    end = tensor_data_end(path)
    return max(0, end - os.path.getsize(path)) if end is not None else 0


def cut_short(path: str | os.PathLike[str], what: str) -> str | None:
    """Why the GGUF at ``path`` cannot be loaded whole (``what`` names it: "draft model file"), or None:
    ``"draft model file '/m/d.gguf' is cut short: 585376 of its 1185376 bytes are missing (a partial download?)"``.
    OSError when the file cannot be read."""
    missing = missing_bytes(path)
    if not missing:
        return None
    return (f"{what} '{path}' is cut short: {missing} of its {missing + os.path.getsize(path)} bytes are missing "
            "(a partial download? fetch it again)")
