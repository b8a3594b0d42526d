"""One driver for the families whose calls start at a marker in free text (DeepSeek, Kimi, Qwen3-Coder, GLM,
Command-R7B, firefunction-v2).

Each family gives a *scan* that reads the one call block starting at a marker; this driver walks the output
from marker to marker and applies the rules every family shares, so they cannot drift apart:

* a marker that does not start a call in the family's syntax is text (prose may say ``functools`` or
  ``<tool_call>``), and so is a whole block that calls a tool the request did not declare: the text stays
  content as the model wrote it, the rule of the generic parser (``templates/tool_calls.py``);
* whitespace around calls is not content, but text on both sides of a call keeps a separator (the whitespace
  the model wrote after the call, else before it, else a newline) instead of being glued together;
* undecided text (a partial marker, a block whose name is still being written) is held back, so the result
  only grows and a streamed output parses exactly like the whole one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from .text import WS, find_first, hold, partial_suffix
from .types import Snapshot

__all__ = ["Block", "PENDING", "add_text", "named", "parse_marked", "name_so_far"]


class _Pending:
    """A scan's answer while its block cannot be decided yet; ``name``: the block's call has a whole, declared
    name (its arguments not begun), the call an output cut off there still made (:attr:`Snapshot.named`)."""

    def __init__(self, name: str = ""):
        self.name = name

    def __repr__(self) -> str:
        return f"PENDING({self.name!r})" if self.name else "PENDING"


#: A scan's answer while the block cannot be decided from the text so far.
PENDING: Any = _Pending()


def named(name: str, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    """:data:`PENDING` for a block whose call's name is written whole (the arguments not begun yet): the call is
    not shown while more may come (the markup may still break), but an output cut off here ends in it."""
    return _Pending(name) if name in schemas else PENDING


@dataclass
class Block:
    """A call block read by a scan: ``end`` is the index after its markup (``len(text)`` while it is open);
    ``calls`` its ``(name, arguments so far)``; ``closed``: its end was seen. An empty ``calls`` with ``closed``
    is markup around calls (a section marker) that is dropped."""

    end: int
    calls: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = True
    named: str = ""  # an open block: one more call of it has its name whole, no arguments yet (Snapshot.named)


#: ``scan(text, at, marker, final, schemas)``: the block at ``text[at:]`` (which starts with ``marker``):
#: a :class:`Block`, ``None`` (not a call: the marker is text) or :data:`PENDING`.
ScanFn = Callable[[str, int, str, bool, Mapping[str, Mapping[str, Any]]], Union[Block, None, Any]]


def parse_marked(
    text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]], markers: tuple[str, ...], scan: ScanFn
) -> Snapshot:
    """The snapshot of ``text`` for a family whose blocks start at ``markers`` (see the module docstring)."""
    snap = Snapshot()
    content = ""
    after_call = False   # the last thing read was a call (or markup around calls)
    ws_before = ""       # the whitespace the model wrote before that call
    span = search = 0    # the text span being read starts at span; markers are searched from search
    while True:
        at, marker = find_first(text, markers, search)
        if at < 0:
            tail = text[span:]
            # an output that ended in a marker's first characters right after a call (whitespace between): the
            # calls' markup (a section's end, a next call begun), as a cut leaves it, never the reply's text
            ended_in_markup = after_call and partial_suffix(tail, markers) == len(tail.lstrip(WS)) > 0
            content = add_text(content, hold(tail, markers, final and not ended_in_markup), after_call, ws_before)
            break
        block = scan(text, at, marker, final, schemas)
        if block is None:  # not a call: the marker is text
            search = at + len(marker)
            continue
        pending = isinstance(block, _Pending)
        if not pending and not all(name in schemas for name, _ in block.calls):
            search = at + len(marker)  # a call to a tool not declared: not a call, its text stays as written
            continue
        piece = text[span:at]
        content = add_text(content, piece, after_call, ws_before)
        if pending:
            snap.named = block.name
            break  # undecided until more text comes
        if not block.calls:  # markup around calls (a section marker): dropped, the text on either side joins
            if piece.strip(WS):
                after_call = False
            span = search = block.end
            continue
        if piece.strip(WS) or not after_call:
            ws_before = piece[len(piece.rstrip(WS)):]
        after_call = True
        snap.calls.extend(block.calls)
        if not block.closed:
            snap.named = block.named
            break
        span = search = block.end
    # trailing whitespace waits: a call may follow it (and text that ends in calls keeps none)
    snap.content = content.rstrip(WS) if (not final or snap.calls) else content
    return snap


def name_so_far(partial: str, schemas: Mapping[str, Mapping[str, Any]], final: bool) -> Any:
    """For a scan reading a tool name that is not finished yet: :data:`PENDING` while it can still become a
    declared name, else ``None`` (text: no declared tool starts so). A declared name followed by whitespace is
    still undecided: the scans strip the name they read once its end comes (``<function=get_weather >``), so
    the stream must not show it as text first."""
    partial = partial.lstrip(WS)
    if not final and (any(name.startswith(partial) for name in schemas) or partial.rstrip(WS) in schemas):
        return PENDING
    return None


def add_text(content: str, piece: str, after_call: bool, ws_before: str) -> str:
    """``content`` with ``piece`` added. After a call, the piece's leading whitespace becomes the separator from
    the text before the call (or the whitespace before the call, or a newline), when there is text on both sides."""
    if not after_call:
        return content + piece
    body = piece.lstrip(WS)
    if not body.strip(WS):
        return content
    lead = piece[: len(piece) - len(body)]
    if content.strip(WS):
        return content.rstrip(WS) + (lead or ws_before or "\n") + body
    return body
