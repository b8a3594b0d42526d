"""A text's token ids as a Python list, made in pieces so that a long text does not hold every other thread.

The tokenizing itself runs without the GIL (``_engine.Model.tokenize_packed``), but a list's ints are made under it:
pybind11 made a 16 MiB text's 8.4 M ids in one conversion, ~0.6 s in which the server's event loop, and every other
request with it, waited. A C++ loop cannot hand the GIL over by itself (a release and a retake between pieces starves a
waiting thread: CPython's hand-over is asked for by a waiter that timed out, and each retake resets its timer), while
the interpreter hands it over at a loop's back edge when asked: the ids come packed (native int32, one copy) and are
made into ints here, :data:`PIECE_IDS` at a time.
"""

from __future__ import annotations

from array import array
from typing import Any

__all__ = ["PIECE_IDS", "count", "tokenize"]

#: Ids made into ints per piece: a millisecond or two of work.
PIECE_IDS = 65_536

_INT32 = "i" if array("i").itemsize == 4 else "l"  # (llama_token is int32_t; C's int is 4 bytes wherever jan builds)


def tokenize(native: Any, text: str, add_special: bool, parse_special: bool) -> list[int]:
    """``native.tokenize(text, add_special, parse_special)`` (``native``: an ``_engine.Model``): the ids as a list of
    ints; a long text's made in pieces. Raises what the engine's tokenize raises."""
    ids = array(_INT32)
    ids.frombytes(native.tokenize_packed(text, add_special, parse_special))
    if len(ids) <= PIECE_IDS:
        return ids.tolist()
    out: list[int] = []
    for start in range(0, len(ids), PIECE_IDS):
        out += ids[start:start + PIECE_IDS].tolist()
    return out


def count(native: Any, text: str, add_special: bool, parse_special: bool) -> int:
    """How many tokens ``text`` is (as :func:`tokenize` gives them), without making their ints."""
    return len(native.tokenize_packed(text, add_special, parse_special)) // array(_INT32).itemsize
