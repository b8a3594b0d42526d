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

#: ``json.dumps`` that refuses NaN and the infinities.
dumps = functools.partial(json.dumps, allow_nan=False)

#: A response body holding more JSON values than this is built and encoded on a worker thread
#: (:func:`json_response_built`): 20,000 embeddings of 384 floats took 12 s to encode, and the event loop, with
#: every other request, waited for it. Smaller bodies stay on the loop, where a hop would cost more.
ENCODE_OFF_LOOP_VALUES = 100_000


def json_response(data: Any, *, status: int = 200, headers: dict | None = None) -> web.Response:
    """``web.json_response`` with strict JSON."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


#: The most characters of a client's value an error message quotes (a 1 MB string is not sent back whole).
QUOTED_VALUE_CHARS = 120


def json_text(value: Any) -> str:
    """A client's value as its JSON spells it, for error messages: ``true``, ``null``, ``"5x"``, ``[1, 2]`` — never
    Python's ``True``, ``None`` or ``'5x'``, which no client sent. Long values are cut (with ``...``)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # (a value no JSON body could hold: said as Python writes it)
        text = str(value)
    return text if len(text) <= QUOTED_VALUE_CHARS else text[:QUOTED_VALUE_CHARS] + "..."


async def json_response_built(build: Callable[[], Any], *, values: int, status: int = 200,
                              headers: dict | None = None, encode: Callable[[Any], str] | None = None) -> web.Response:
    """:func:`json_response` of ``build()``; ``values``: about how many JSON values it holds (the floats of an
    embeddings list). Past :data:`ENCODE_OFF_LOOP_VALUES` the body is built and encoded on a worker thread.
    ``encode``: the dialect's JSON writer (strict JSON, :data:`dumps`, by default)."""
    encode = encode or dumps
    if values <= ENCODE_OFF_LOOP_VALUES:
        return web.json_response(build(), status=status, headers=headers, dumps=encode)
    text = await asyncio.to_thread(lambda: encode(build()))
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")
