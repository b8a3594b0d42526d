"""A stream of typed deltas whose setup happens on the first ``__anext__``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["DeltaStream"]


class DeltaStream(AsyncIterator[T], Generic[T]):
    """Iterate for deltas; ``model`` is the resolved model id once the first delta (or setup
    error) arrived. Setup errors (unknown model, bad template, context overflow) raise from
    the first ``__anext__``. ``aclose()`` — or leaving ``async with`` — cancels the generation.
    """

    def __init__(self, opener: Callable[[], Awaitable[tuple[str, AsyncIterator[T]]]]):
        self._opener = opener
        self._inner: AsyncIterator[T] | None = None
        self._closed = False
        self.model: str | None = None

    def __aiter__(self) -> "DeltaStream[T]":
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._inner is None:
            self.model, self._inner = await self._opener()
        return await self._inner.__anext__()

    async def aclose(self) -> None:
        self._closed = True
        inner, self._inner = self._inner, None
        if inner is not None:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    async def __aenter__(self) -> "DeltaStream[T]":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
