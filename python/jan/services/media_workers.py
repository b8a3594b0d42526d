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
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from jan.engine.media import MEDIA_CANCEL
from jan.services.local import has_media, off_loop
from jan.services.types import ChatRequest
from jan.services.worker_pool import WorkerPool

T = TypeVar("T")

__all__ = ["MEDIA_WORKERS", "off_loop_for", "on_media_worker"]

#: How many media prompts are made at once (the rest wait their turn).
MEDIA_WORKERS = max(2, os.cpu_count() or 2)

_workers = WorkerPool("jan-media", MEDIA_WORKERS)


async def on_media_worker(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (decoding images, making a prompt of them) on one of the media workers. When the await is
    cancelled (the client left) the work stops at its next image or clip (:data:`jan.engine.media.MEDIA_CANCEL`):
    it went on decoding every image of the request for nobody, holding a worker the next request's pictures waited
    for (two clients that left with eight large images each held a small picture 40 s on a 2-core machine)."""
    cancel = threading.Event()
    token = MEDIA_CANCEL.set(cancel)  # (the worker runs in a copy of this context: jan.services.worker_pool)
    try:
        return await _workers.run(fn, *args)
    except asyncio.CancelledError:
        cancel.set()
        raise
    finally:
        MEDIA_CANCEL.reset(token)


async def off_loop_for(request: ChatRequest, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread: one of the media workers when ``request`` holds images or audio, else a
    shared one (:func:`jan.services.local.off_loop`)."""
    if not has_media(request):
        return await off_loop(fn, *args)
    return await on_media_worker(fn, *args)
