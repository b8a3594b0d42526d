"""A stream of typed deltas whose setup happens on the first ``__anext__``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Aggregator(Protocol[T, R]):
    """What folds a stream's deltas into its whole result (:class:`jan.services.chat.ChatAggregator`,
    :class:`jan.services.completions.CompletionAggregator`)."""

    def add(self, delta: T) -> None: ...

    def result(self, model: str) -> R: ...

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

    async def aggregated(self, aggregator: "Aggregator[T, R]", model: str | None) -> R:
        """Every delta folded by ``aggregator``, then closed: its result for the resolved model (``model``, the
        request's, where the stream never told one). The stream's errors raise as they come."""
        async with self:
            async for delta in self:
                aggregator.add(delta)
        return aggregator.result(self.model or model or "")

    async def __aenter__(self) -> "DeltaStream[T]":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
