"""Strict JSON out: every response body and SSE event jan writes is RFC 8259 JSON.

Python's ``json.dumps`` writes ``NaN``/``Infinity`` by default, which no JSON
parser in a browser or another language accepts; here such a value is a bug
to report (a 500 through the error middleware), never a body a client chokes on.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from jan.json_text import QUOTED_VALUE_CHARS, json_text  # noqa: F401  (re-exported)

#: ``json.dumps`` that refuses NaN and the infinities.
dumps = functools.partial(json.dumps, allow_nan=False)

#: A response body holding more JSON values than this is built and encoded on a worker thread
#: (:func:`json_response_built`): 20,000 embeddings of 384 floats took 12 s to encode, and the event loop, with
#: every other request, waited for it. Smaller bodies stay on the loop, where a hop would cost more.
ENCODE_OFF_LOOP_VALUES = 100_000


def json_response(data: Any, *, status: int = 200, headers: dict | None = None) -> web.Response:
    """``web.json_response`` with strict JSON."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


# (json_text lives in jan.json_text, which the request schemas use without aiohttp; kept importable from here)


async def json_response_built(build: Callable[[], Any], *, values: int, status: int = 200,
                              headers: dict | None = None, encode: Callable[[Any], str] | None = None) -> web.Response:
    """:func:`json_response` of ``build()``; ``values``: about how many JSON values it holds (the floats of an
    embeddings list). Past :data:`ENCODE_OFF_LOOP_VALUES` the body is built and encoded on a worker thread, in
    pieces (:func:`encode_in_pieces`). ``encode``: the dialect's JSON writer (strict JSON, :data:`dumps`, by
    default)."""
    encode = encode or dumps
    if values <= ENCODE_OFF_LOOP_VALUES:
        return web.json_response(build(), status=status, headers=headers, dumps=encode)
    # (made into UTF-8 bytes there too: the text of a 16 MB answer took milliseconds more on the loop)
    body = await asyncio.to_thread(lambda: encode_in_pieces(build(), encode).encode("utf-8"))
    return web.Response(body=body, status=status, headers=headers, content_type="application/json", charset="utf-8")


#: The most JSON values one call of the JSON writer encodes in a big body. The C encoder holds the GIL from the
#: start of a call to its end (it never returns to the interpreter, where threads take turns), so a worker thread
#: encoding a 3,000-embedding body in one call still held the event loop, with every other request, for a second
#: (a tokenized 6 MB text with its pieces: six). A piece this size is about a millisecond of encoding.
PIECE_VALUES = 20_000

#: The characters of a text that weigh as much as one JSON value for the writer (:func:`text_values`): a text is
#: one value, but a 16 MB one (a detokenized book, a prompt rendered from 16 MB of messages) took ~0.1 s in one call
#: of the C encoder, on the event loop with every other request waiting. At this rate a piece of
#: :data:`PIECE_VALUES` is about a MiB of text, about as long to encode as a piece of numbers.
TEXT_CHARS_PER_VALUE = 52


def json_values(value: Any) -> int:
    """How many JSON values ``value`` holds, itself included (a list of 384 floats: 385)."""
    if isinstance(value, dict):
        return 1 + sum(map(json_values, value.values()))
    if isinstance(value, (list, tuple)):
        return 1 + sum(map(json_values, value))
    return 1


def text_values(text: str) -> int:
    """What the text ``text`` weighs for the JSON writer, in JSON values (:data:`TEXT_CHARS_PER_VALUE`): the
    ``values`` of :func:`json_response_built` for an answer that is mostly one text."""
    return 1 + len(text) // TEXT_CHARS_PER_VALUE


def _weight(value: Any) -> int:
    """:func:`json_values`, a text counted by :func:`text_values`: what a piece of :func:`encode_in_pieces` holds."""
    if isinstance(value, str):
        return text_values(value)
    if isinstance(value, dict):
        return 1 + sum(map(_weight, value.values()))
    if isinstance(value, (list, tuple)):
        return 1 + sum(map(_weight, value))
    return 1


def encode_in_pieces(value: Any, encode: Callable[[Any], str] = dumps, *, piece_values: int | None = None) -> str:
    """``encode(value)``, the same text, written by calls of ``encode`` on parts of at most ``piece_values`` JSON
    values each (see :data:`PIECE_VALUES`; a long text weighs by its length, :func:`text_values`, and is written a
    slice at a time): between them the interpreter runs, and other threads with it.
    ``encode`` is a ``json.dumps`` with its own options (strictness, separators, ASCII), which every piece keeps;
    its separators are read from what it writes."""
    piece_values = piece_values or PIECE_VALUES
    item_sep, key_sep = encode([0, 0])[2:-2], encode({"": 0})[3:-2]

    def key_text(key: Any) -> str:  # (json.dumps writes a non-string key as the text of its JSON value)
        return encode(key if isinstance(key, str) else encode(key))

    def write(value: Any, size: int) -> str:
        if size <= piece_values:
            return encode(value)
        if isinstance(value, str):
            # (each character is escaped on its own, so the slices' texts joined are the whole text's)
            step = piece_values * TEXT_CHARS_PER_VALUE
            return '"' + "".join(encode(value[i:i + step])[1:-1] for i in range(0, len(value), step)) + '"'
        if isinstance(value, dict):
            return "{" + item_sep.join(key_text(k) + key_sep + write(v, _weight(v)) for k, v in value.items()) + "}"
        parts: list[str] = []
        batch: list[Any] = []
        held = 1  # (the batch's own list)
        for item in value:
            n = _weight(item)
            if batch and held + n > piece_values:
                parts.append(encode(batch)[1:-1])
                batch, held = [], 1
            if n > piece_values:
                parts.append(write(item, n))
            else:
                batch.append(item)
                held += n
        if batch:
            parts.append(encode(batch)[1:-1])
        return "[" + item_sep.join(parts) + "]"

    return write(value, _weight(value))
