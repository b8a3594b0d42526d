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
