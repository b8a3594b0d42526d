"""Run several engine requests at once (OpenAI's ``n``) and interleave their chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import jan


async def merged(requests: list[jan.Request]) -> AsyncIterator[tuple[int, jan.Chunk]]:
    """Yield ``(choice_index, chunk)`` as each request produces them.

    Closing this generator (a client that went away) cancels every request,
    so their slots are free at the engine's next step.
    """
    if len(requests) == 1:
        try:
            async for chunk in requests[0]:
                yield 0, chunk
        finally:
            requests[0].cancel()
        return

    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, request: jan.Request) -> None:
        try:
            async for chunk in request:
                queue.put_nowait((index, chunk))
        except BaseException as exc:  # forwarded to the consumer, which re-raises
            queue.put_nowait((index, exc))
        finally:
            queue.put_nowait((index, done))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for request in requests:
            request.cancel()
        for task in tasks:
            task.cancel()


def check_finish(chunk: jan.Chunk) -> None:
    if chunk.finish_reason == "error":
        raise jan.EngineError(chunk.error or "generation failed")


def seeds(seed: int | None, n: int, fresh: Callable[[], int]) -> list[int]:
    """One seed per choice: consecutive from the request's seed (reproducible), else fresh ones."""
    base = seed if seed is not None else fresh()
    return [(base + i) & 0xFFFFFFFF for i in range(n)]
