"""Where the work on a request's body runs: on the event loop for a small body, on a worker thread for a large one.

Parsing, validating, walking (for media and documents) and converting a body each take time in proportion to its
size: seconds for a 16 MB body of 470,000 messages, during which the event loop, and so every other request, would
wait. Every step of that work goes through :func:`body_step`, which decides by the size of the body of the request
being handled (told once, by whoever reads it: :func:`body_is_large`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["PARSE_OFF_LOOP_BYTES", "PARSE_OFF_LOOP_VALUES", "body_is_large", "body_step"]

#: Bodies larger than this are parsed, validated, walked and converted on worker threads (:func:`body_step`), so
#: a big body never holds the event loop; a smaller one stays on the loop, where a hop would cost more than the
#: work, unless it holds many values (:data:`PARSE_OFF_LOOP_VALUES`).
PARSE_OFF_LOOP_BYTES = 256 * 1024

#: Bodies of more JSON values than this (counted before they are parsed, :func:`jan.server.validation
#: .check_json_values`) are worked on off the loop whatever their bytes: the work grows with the values, and a
#: 255 KB body of 9,000 empty messages took ~0.3 s to validate and convert on the loop of a busy 2-core host. At
#: ~10 us a value, this many are a few tens of milliseconds at most; an everyday request holds far fewer.
PARSE_OFF_LOOP_VALUES = 2048

# Whether the body of the request this task handles is over PARSE_OFF_LOOP_BYTES. Set by body_is_large when the
# body is read (aiohttp handles each request in a task of its own, with a copy of the context, so it never leaks
# to another request) and read by body_step: the media and document walks and the dialects' converters run on the body well after
# it was read, in code that is not given the request.
_LARGE_BODY: contextvars.ContextVar[bool] = contextvars.ContextVar("jan_large_body", default=False)


def body_is_large(size: int, values: int = 0) -> None:
    """Say how many bytes the body of the request being handled has, and once counted how many JSON values it
    holds (:func:`body_step` decides by them); for a route that reads its body itself rather than through
    :func:`read_json`."""
    _LARGE_BODY.set(size > PARSE_OFF_LOOP_BYTES or values > PARSE_OFF_LOOP_VALUES)


async def body_step(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)``: work on the request's body that grows with it (validating, walking it for media,
    converting it to the typed request). On the event loop for a small body; on a worker thread for one over
    :data:`PARSE_OFF_LOOP_BYTES` or of more than :data:`PARSE_OFF_LOOP_VALUES` values (470,000 messages take
    seconds in each step, and every other request would wait for them)."""
    if _LARGE_BODY.get():
        return await asyncio.to_thread(fn, *args, **kw)
    return fn(*args, **kw)
