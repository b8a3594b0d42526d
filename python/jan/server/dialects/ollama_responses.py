"""Typed deltas and results -> Ollama's response objects (``/api/chat``, ``/api/generate``).

Field names and order follow Ollama's ``api/types.go`` (``ChatResponse``,
``GenerateResponse``, ``Metrics``): every streamed object has ``model``,
``created_at``, the text piece (``message`` or ``response``) and ``done``; the
last one adds ``done_reason`` and the statistics, durations in nanoseconds. A
generation the server cut off ends as Ollama's does when it fails mid-way: an
``{"error": ...}`` line after what was streamed, or an error status.
Tool calls are whole objects with parsed ``arguments``, as Ollama sends them,
so they go out once a call is complete (when the choice finishes). The last
``/api/generate`` object also has ``context``: the exchange's token ids (the
prompt as evaluated, then the generated tokens), which a next request sends
back to continue it.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from jan.json_text import loads_json
from jan.errors import EngineError
from jan.services.errors import GenerationCancelledError
from jan.services.types import ChatDelta, ChatResult, CompletionDelta, TokenLogprob, ToolCall, Usage
from jan.templates.formats.text import closed_json

__all__ = ["DONE_REASONS", "Clock", "OllamaEncoder", "Timing", "created_at", "done_reason", "metrics", "tool_call"]

Kind = Literal["chat", "generate"]
_ID_ALPHABET = string.ascii_lowercase + string.digits


def created_at() -> str:
    """Now, as Ollama writes it (RFC 3339, UTC, ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Clock = Callable[[], str]


@dataclass
class Timing:
    """When the request started and how long loading the model took (monotonic nanoseconds)."""

    started_ns: int = field(default_factory=time.perf_counter_ns)
    load_ns: int = 0

    def total_ns(self) -> int:
        return time.perf_counter_ns() - self.started_ns


def metrics(usage: Usage | None, timing: Timing) -> dict[str, int]:
    """Ollama's ``Metrics`` (zero values left out, as Go's ``omitempty`` does)."""
    usage = usage or Usage()
    values = {
        "total_duration": timing.total_ns(),
        "load_duration": timing.load_ns,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": int(usage.prompt_ms * 1_000_000),
        "eval_count": usage.completion_tokens,
        "eval_duration": int(usage.generation_ms * 1_000_000),
    }
    return {k: v for k, v in values.items() if v}


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))  # Ollama's id shape


def tool_call(call: ToolCall, index: int) -> dict[str, Any]:
    """A tool call in Ollama's shape: ``arguments`` as a JSON object, not text."""
    try:  # arguments a token limit cut off are closed (closed_json), as Anthropic's input is
        arguments = loads_json(closed_json(call.arguments)) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        # Ollama's arguments are always an object; keep what the model wrote rather than drop it
        arguments = {"arguments": call.arguments} if call.arguments else {}
    return {"id": call.id or _call_id(), "function": {"index": index, "name": call.name, "arguments": arguments}}


def logprobs(tokens: tuple[TokenLogprob, ...] | None) -> list[dict[str, Any]] | None:
    """Ollama's ``logprobs``: per token ``token``, ``logprob``, ``bytes`` and ``top_logprobs``."""
    if not tokens:
        return None
    out = []
    for t in tokens:
        item: dict[str, Any] = {"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)}
        if t.top:
            item["top_logprobs"] = [{"token": a.token, "logprob": a.logprob, "bytes": list(a.bytes)} for a in t.top]
        out.append(item)
    return out


#: Ollama's ``done_reason`` for each finish reason of the typed path (:data:`~jan.services.types.FINISH_REASONS`),
#: but ``cancelled``: Ollama says ``stop`` and ``length``; a turn that ends in tool calls is a ``stop``, as Ollama's;
#: a remote upstream's ``content_filter`` (its filter withheld the rest) is said as it is: Ollama's ``done_reason``
#: is free text (``load`` and ``unload`` too), and ``stop`` would pass a withheld answer for a whole one. A
#: generation the server cut off (``cancelled``: the model stopped or unloaded under it) has no done reason: it
#: fails as Ollama's does when the runner goes away mid-generation (:func:`done_reason`).
DONE_REASONS: dict[str, str] = {"stop": "stop", "length": "length", "tool_calls": "stop",
                                "content_filter": "content_filter"}


def done_reason(finish_reason: str | None) -> str:
    """Ollama's ``done_reason`` for the typed path's ``finish_reason`` (None, a stream that told none, reads as
    ``stop``). A generation the server cut off raises :class:`GenerationCancelledError`: Ollama's answer is then an
    ``{"error": ...}`` line after what was streamed, or an error status with ``{"error": ...}``, never a ``done``
    object; a reason jan does not know is an :class:`EngineError`, never a normal end."""
    reason = finish_reason or "stop"
    if reason == "cancelled":
        raise GenerationCancelledError()
    if reason not in DONE_REASONS:
        raise EngineError(f"the generation ended with finish_reason {reason!r}, which jan does not know")
    return DONE_REASONS[reason]


class OllamaEncoder:
    """Builds the response objects of one ``/api/chat`` (``kind="chat"``) or ``/api/generate``
    (``kind="generate"``) request for ``model`` (the name the client used).

    Feed the service's deltas to :meth:`delta` (streaming) and send what it returns, then
    :meth:`final`; or turn a whole result into one object with :meth:`whole`. Only choice 0
    exists (Ollama has no ``n``). With ``context`` (a generate request that is not ``raw``, as
    Ollama), the done object carries the exchange's token ids when the deltas told them (the
    prompt's on the first one: local engines); left out otherwise, as Go's ``omitempty`` does.
    """

    def __init__(self, kind: Kind, model: str, timing: Timing, *, clock: Clock = created_at, context: bool = False):
        self.kind = kind
        self.model = model
        self.timing = timing
        self.clock = clock
        self.context = context and kind == "generate"  # Ollama's chat replies have none
        #: Ollama's ``remote_model``/``remote_host`` of a model another server answers, on every object after
        #: ``model`` (:func:`jan.server.dialects.ollama_models.remote_fields`); none for a local model
        self.remote: dict[str, str] = {}
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._tokens: list[int] | None = None  # the exchange so far; None until the prompt's ids come

    # -- streaming -------------------------------------------------------------
    def delta(self, delta: ChatDelta | CompletionDelta) -> list[dict[str, Any]]:
        """The objects to send for one delta (none while a tool call is still being written)."""
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.choice != 0:
            return []
        if self.context:
            self._add_tokens(delta.prompt_token_ids, delta.token_ids)
        out: list[dict[str, Any]] = []
        text = delta.content if isinstance(delta, ChatDelta) else delta.text
        thinking = delta.reasoning if isinstance(delta, ChatDelta) else ""
        lp = logprobs(delta.logprobs)
        if text or thinking or lp:
            out.append(self._object(text, thinking, lp=lp))
        for piece in getattr(delta, "tool_calls", ()):
            call = self._calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = call["id"] or piece.id
            call["name"] += piece.name or ""
            call["arguments"] += piece.arguments
        if delta.finish_reason is not None:
            self._finish = delta.finish_reason
            if self._calls and delta.finish_reason == "cancelled":
                self._calls.clear()  # cut off mid-call, perhaps: never sent (final() fails the stream)
            if self._calls:
                calls = [ToolCall(c["id"] or "", c["name"], c["arguments"]) for _, c in sorted(self._calls.items())]
                out.append(self._object("", "", calls=calls))
                self._calls.clear()
        return out

    def final(self) -> dict[str, Any]:
        """The last object: ``done``, ``done_reason``, ``context`` and the statistics. Raises
        :class:`GenerationCancelledError` for a generation the server cut off (:func:`done_reason`): the stream
        ends in Ollama's ``{"error": ...}`` line instead."""
        return self._object("", "", done=True, stats=metrics(self._usage, self.timing))

    def _add_tokens(self, prompt: tuple[int, ...] | None, generated: tuple[int, ...]) -> None:
        if prompt is not None:
            self._tokens = list(prompt)
        if self._tokens is not None:
            self._tokens += generated

    def rendered(self, prompt: str, images: int) -> dict[str, Any]:
        """The answer to a ``_debug_render_only`` request, as Ollama's: the prompt the model would be given
        (``_debug_info.rendered_template``) and the request's image count (``image_count``, left out at 0), with
        Go's zero values for what was not generated (an empty ``message`` or ``response``, ``done: false``)."""
        obj: dict[str, Any] = {"model": self.model, **self.remote, "created_at": self.clock()}
        if self.kind == "chat":
            obj["message"] = {"role": "", "content": ""}
        else:
            obj["response"] = ""
        obj["done"] = False
        obj["_debug_info"] = {"rendered_template": prompt, **({"image_count": images} if images else {})}
        return obj

    # -- one object --------------------------------------------------------------
    def whole(self, result: ChatResult | None = None, *, text: str = "", finish_reason: str | None = None,
              usage: Usage | None = None, token_logprobs: tuple[TokenLogprob, ...] | None = None,
              prompt_token_ids: tuple[int, ...] | None = None, token_ids: tuple[int, ...] = ()) -> dict[str, Any]:
        """The single object of a ``"stream": false`` request, from a chat result (or generated text,
        with the prompt's and the generated token ids where known). Raises :class:`GenerationCancelledError` for
        a generation the server cut off: Ollama answers an error status then (:func:`done_reason`)."""
        thinking, calls = "", []
        if result is not None:
            choice = result.choices[0]
            text, thinking = choice.message.text, choice.message.reasoning or ""
            calls = list(choice.message.tool_calls)
            finish_reason, usage, token_logprobs = choice.finish_reason, result.usage, choice.logprobs
            prompt_token_ids, token_ids = choice.prompt_token_ids, choice.token_ids
        self._finish, self._usage = finish_reason, usage
        if self.context:
            self._add_tokens(prompt_token_ids, token_ids)
        return self._object(text, thinking, calls=calls, lp=logprobs(token_logprobs), done=True,
                            stats=metrics(usage, self.timing))

    def _object(self, text: str, thinking: str, *, calls: list[ToolCall] | None = None,
                lp: list[dict[str, Any]] | None = None, done: bool = False,
                stats: dict[str, int] | None = None) -> dict[str, Any]:
        # keys in the order Ollama's structs declare them (chat: logprobs, then metrics;
        # generate: metrics, then tool_calls and logprobs)
        obj: dict[str, Any] = {"model": self.model, **self.remote, "created_at": self.clock()}
        tool_calls = [tool_call(c, i) for i, c in enumerate(calls or ())]
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            obj["message"] = message
        else:
            obj["response"] = text
            if thinking:
                obj["thinking"] = thinking
        obj["done"] = done
        if done:
            obj["done_reason"] = done_reason(self._finish)
            if self.context and self._tokens:  # after done_reason, before the metrics: GenerateResponse's order
                obj["context"] = self._tokens
        if self.kind == "chat":
            if lp:
                obj["logprobs"] = lp
            obj.update(stats or {})
        else:
            obj.update(stats or {})
            if tool_calls:
                obj["tool_calls"] = tool_calls
            if lp:
                obj["logprobs"] = lp
        return obj
