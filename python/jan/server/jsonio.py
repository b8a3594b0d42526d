"""Strict JSON out: every response body and SSE event jan writes is RFC 8259 JSON.

Python's ``json.dumps`` writes ``NaN``/``Infinity`` by default, which no JSON
parser in a browser or another language accepts; here such a value is a bug
to report (a 500 through the error middleware), never a body a client chokes on.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

#: ``json.dumps`` that refuses NaN and the infinities.
dumps = functools.partial(json.dumps, allow_nan=False)


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
