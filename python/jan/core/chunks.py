"""Turning streamed OpenAI chunks into one response (for non-streaming callers).

Engines only stream (see :class:`~jan.core.InferenceExtension`); a caller
that wants a single ``chat.completion`` / ``text_completion`` object
aggregates the chunks::

    response = await collect_chat_completion(engine.chat(model, request))

The stream is always closed (``aclose``), also when the caller is cancelled,
which cancels the request in the engine.
"""

from __future__ import annotations

import copy
from typing import Any, AsyncIterator, Iterable

__all__ = [
    "ChatChunkAggregator",
    "CompletionChunkAggregator",
    "aggregate_chat_chunks",
    "aggregate_completion_chunks",
    "collect_chat_completion",
    "collect_completion",
]

_HEADER_KEYS = ("id", "created", "model", "system_fingerprint")


class _Aggregator:
    object_name = ""

    def __init__(self) -> None:
        self._header: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None
        self._extra: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        """Fold one chunk in."""
        for key in _HEADER_KEYS:
            if key not in self._header and chunk.get(key) is not None:
                self._header[key] = chunk[key]
        if chunk.get("usage"):
            self._usage = copy.deepcopy(chunk["usage"])
        if chunk.get("timings"):  # llama.cpp's server adds these
            self._extra["timings"] = copy.deepcopy(chunk["timings"])
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = self._new_choice(index)
            self._add_choice(state, choice)
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]

    def _new_choice(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _add_choice(self, state: dict[str, Any], choice: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _finish_choice(self, state: dict[str, Any]) -> dict[str, Any]:
        return state

    def result(self) -> dict[str, Any]:
        """The aggregated response so far."""
        out: dict[str, Any] = {
            "id": self._header.get("id"),
            "object": self.object_name,
            "created": self._header.get("created"),
            "model": self._header.get("model"),
        }
        if "system_fingerprint" in self._header:
            out["system_fingerprint"] = self._header["system_fingerprint"]
        out["choices"] = [self._finish_choice(copy.deepcopy(self._choices[i])) for i in sorted(self._choices)]
        out["usage"] = copy.deepcopy(self._usage)
        out.update(copy.deepcopy(self._extra))
        return out


class ChatChunkAggregator(_Aggregator):
    """Builds a ``chat.completion`` from ``chat.completion.chunk`` dicts: text and reasoning are
    concatenated, ``tool_calls`` merged by index (arguments concatenated), logprobs appended,
    the last ``finish_reason`` and any ``usage`` kept."""

    object_name = "chat.completion"

    def _new_choice(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "message": {"role": "assistant", "content": None},
            "logprobs": None,
            "finish_reason": None,
            "_tool_calls": {},
        }

    def _add_choice(self, state: dict[str, Any], choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        message = state["message"]
        if delta.get("role"):
            message["role"] = delta["role"]
        for key in ("content", "reasoning_content", "refusal"):
            piece = delta.get(key)
            if piece is not None:
                message[key] = (message.get(key) or "") + piece
        for call in delta.get("tool_calls") or []:
            calls: dict[int, dict[str, Any]] = state["_tool_calls"]
            index = int(call.get("index", len(calls)))
            merged = calls.setdefault(index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                merged["id"] = call["id"]
            if call.get("type"):
                merged["type"] = call["type"]
            function = call.get("function") or {}
            if function.get("name"):
                merged["function"]["name"] += function["name"]
            if function.get("arguments"):
                merged["function"]["arguments"] += function["arguments"]
        logprobs = choice.get("logprobs")
        if logprobs:
            target = state["logprobs"] = state["logprobs"] or {"content": []}
            for key in ("content", "refusal"):
                if logprobs.get(key):
                    target.setdefault(key, []).extend(copy.deepcopy(logprobs[key]))

    def _finish_choice(self, state: dict[str, Any]) -> dict[str, Any]:
        calls = state.pop("_tool_calls")
        if calls:
            state["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
        return state


class CompletionChunkAggregator(_Aggregator):
    """Builds a ``text_completion`` from its streamed chunks (text concatenated, logprobs lists appended)."""

    object_name = "text_completion"

    def _new_choice(self, index: int) -> dict[str, Any]:
        return {"index": index, "text": "", "logprobs": None, "finish_reason": None}

    def _add_choice(self, state: dict[str, Any], choice: dict[str, Any]) -> None:
        state["text"] += choice.get("text") or ""
        logprobs = choice.get("logprobs")
        if logprobs:
            target = state["logprobs"] = state["logprobs"] or {}
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                if logprobs.get(key) is not None:
                    target.setdefault(key, []).extend(copy.deepcopy(logprobs[key]))


def aggregate_chat_chunks(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One ``chat.completion`` dict from an iterable of ``chat.completion.chunk`` dicts."""
    agg = ChatChunkAggregator()
    for chunk in chunks:
        agg.add(chunk)
    return agg.result()


def aggregate_completion_chunks(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One ``text_completion`` dict from an iterable of streamed completion chunks."""
    agg = CompletionChunkAggregator()
    for chunk in chunks:
        agg.add(chunk)
    return agg.result()


async def collect_chat_completion(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Consume (and always close) an engine's chat stream; return the aggregated ``chat.completion``."""
    agg = ChatChunkAggregator()
    await _drain(stream, agg)
    return agg.result()


async def collect_completion(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Consume (and always close) an engine's completion stream; return the aggregated ``text_completion``."""
    agg = CompletionChunkAggregator()
    await _drain(stream, agg)
    return agg.result()


async def _drain(stream: AsyncIterator[dict[str, Any]], agg: _Aggregator) -> None:
    try:
        async for chunk in stream:
            agg.add(chunk)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
