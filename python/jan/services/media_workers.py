"""Worker threads of their own for making prompts that hold images or audio.

Making such a prompt decodes every image (up to 40 megapixels each) and runs the projector: seconds of work per
request. On the event loop's shared worker threads (``asyncio.to_thread``: a handful, cpu count + 4) a few such
requests at once took every one of them, and each request that needs one for a moment -- listing models, reading a
thread, a text chat's prompt -- waited behind the pictures (35 s for ``GET /v1/models`` on a 2-core machine, ten
image requests in flight). Here they queue among themselves instead, at most one per core at a time (which also
bounds how many requests' decoded pixels are held at once), and leave the shared threads to everything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from jan.services.local import has_media, off_loop
from jan.services.types import ChatRequest

T = TypeVar("T")

__all__ = ["MEDIA_WORKERS", "off_loop_for", "on_media_worker"]

#: How many media prompts are made at once (the rest wait their turn).
MEDIA_WORKERS = max(2, os.cpu_count() or 2)

_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:  # (made on first use: threads are started only as work comes)
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=MEDIA_WORKERS, thread_name_prefix="jan-media")
    return _pool


async def on_media_worker(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (decoding images, making a prompt of them) on one of the media workers. The context goes
    along, as ``asyncio.to_thread`` takes it."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_executor(), functools.partial(context.run, fn, *args))


async def off_loop_for(request: ChatRequest, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread: one of the media workers when ``request`` holds images or audio, else a
    shared one (:func:`jan.services.local.off_loop`)."""
    if not has_media(request):
        return await off_loop(fn, *args)
    return await on_media_worker(fn, *args)
