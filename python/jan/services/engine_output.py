"""What a message engine (an extension's ``chat``/``complete``/``embed``) hands back, checked once for every front end.

jan renders, tokenizes and parses for a local engine itself, so what a ``LocalInferenceExtension`` lends is jan's own
output; an engine that takes messages (the built-in ``remote``, or a third party's) produces its deltas itself. What
its author got wrong reached the dialects unchecked: a dict or a string for a delta, or a bug's ``RuntimeError``,
was an anonymous 500 ``internal_error`` (the log said nothing of which extension); a ``content`` of 42 or a
``finish_reason`` of ``"banana"`` went out in the OpenAI and Ollama streams as it was; a ``choice`` past the request's
``n`` was an extra choice. Each is now an :class:`ExtensionEngineError` naming the engine and its extension: a 500
``extension_error`` (as an extension's failing route is) in every dialect's error shape, or the stream's error event
once it started. An engine's own :class:`~jan.errors.JanError` (the remote one's ``upstream_unreachable``, ...) and
``ValueError`` (bad input: a 400) keep their meaning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from jan.core.engine_answers import engine_label
from jan.core.exceptions import ExtensionCallError
from jan.errors import EngineError, JanError

from .types import FINISH_REASONS, ChatDelta, CompletionDelta, EmbeddingResult, ToolCallDelta

__all__ = ["ExtensionEngineError", "checked_deltas", "checked_embeddings", "embedding_vectors_fault", "engine_failures",
           "engine_label"]

log = logging.getLogger("jan.services.engines")

D = TypeVar("D", ChatDelta, CompletionDelta)


class ExtensionEngineError(EngineError, ExtensionCallError):
    """An engine broke its interface's contract (a malformed delta) or failed with an exception of its own: the
    engine's kind of :class:`~jan.core.ExtensionCallError` (what a storage or catalogue extension's failure is)."""

    http_status = 500
    code = "extension_error"


@contextlib.contextmanager
def engine_failures(engine: Any, what: str) -> Iterator[None]:
    """Re-raise an exception of ``engine``'s own (not a JanError, not a ValueError) as an
    :class:`ExtensionEngineError` naming it; its text stays in the log (it may hold what a client must not see), and
    is the error's ``__cause__``."""
    try:
        yield
    except (JanError, ValueError):
        raise
    except Exception as exc:
        log.error("%s failed in %s", engine_label(engine), what, exc_info=exc)
        # (a server's answer adds where the cause is; the CLI, whose user runs the extension, adds the cause)
        raise ExtensionEngineError(f"{engine_label(engine)} failed in {what} with {type(exc).__name__}") from exc


def _call_piece(piece: Any) -> bool:
    return isinstance(piece, ToolCallDelta) and isinstance(piece.index, int) and piece.index >= 0 \
        and all(v is None or isinstance(v, str) for v in (piece.id, piece.name)) and isinstance(piece.arguments, str)


def _delta_problem(delta: Any, kind: type, choices: int) -> str | None:
    """Why ``delta`` is not a ``kind`` a front end can send (None when it is)."""
    if not isinstance(delta, kind):
        return f"{type(delta).__name__} {delta!r:.60} is not a {kind.__name__}"
    texts = ("content", "reasoning") if kind is ChatDelta else ("text",)
    for field in texts:
        if not isinstance(getattr(delta, field), str):
            return f"its {field} is {type(getattr(delta, field)).__name__}, not text"
    if kind is ChatDelta:
        calls = delta.tool_calls
        if not isinstance(calls, (tuple, list)) or not all(_call_piece(c) for c in calls):
            return f"its tool_calls {calls!r:.80} are not ToolCallDelta pieces (int index, text id/name/arguments)"
    if delta.finish_reason is not None and delta.finish_reason not in FINISH_REASONS:
        return f"its finish_reason {delta.finish_reason!r:.40} is none of {', '.join(FINISH_REASONS)}"
    if not isinstance(delta.choice, int) or not -1 <= delta.choice < choices:
        return f"its choice {delta.choice!r:.20} is not a choice of this request (0 to {choices - 1}, or -1 for usage)"
    return None


async def checked_deltas(engine: Any, deltas: Any, kind: type[D], choices: int, what: str) -> AsyncIterator[D]:
    """``deltas`` (what ``engine.chat``/``complete`` returned) as they are, each checked; closing this closes them."""
    if not hasattr(deltas, "__aiter__"):
        if hasattr(deltas, "close"):  # a coroutine (``async def`` without ``yield``): never awaited, said so
            deltas.close()
        raise ExtensionEngineError(f"{engine_label(engine)}: {what}() returned {type(deltas).__name__}, not an async "
                                   f"generator of {kind.__name__} (write it as 'async def {what}(...)' with 'yield')")
    closing = contextlib.aclosing(deltas) if hasattr(deltas, "aclose") else contextlib.nullcontext(deltas)
    with engine_failures(engine, f"{what}()"):
        async with closing:
            async for delta in deltas:
                problem = _delta_problem(delta, kind, choices)
                if problem is not None:
                    raise ExtensionEngineError(f"{engine_label(engine)} sent a malformed {what}() delta: {problem}")
                yield delta


def _finite_number(x: Any) -> bool:
    # (x == x: not NaN; abs below inf: not infinite -- JSON has neither, so no client could be sent them)
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def embedding_vectors_fault(vectors: Any, count: int) -> str | None:
    """Why ``vectors`` (an engine's or an upstream's answer to ``count`` inputs) are not one vector per input, each a
    non-empty list of finite numbers, all of one length (None when they are): what a client stores and compares, so
    a vector missing, ``null``, of strings, NaN or of another length is no answer (sent on, it was a 500 when written
    out, or a 200 a client's index took as a vector)."""
    if not isinstance(vectors, (tuple, list)):
        return f"its vectors are {type(vectors).__name__}, not a list"
    if len(vectors) != count:
        return f"it answered {len(vectors)} vector{'' if len(vectors) == 1 else 's'} for {count} input{'' if count == 1 else 's'}"
    size = None
    for i, v in enumerate(vectors):
        if not isinstance(v, (tuple, list)) or not v or not all(_finite_number(x) for x in v):
            return f"vector {i} ({v!r:.60}) is not a list of finite numbers"
        if size is not None and len(v) != size:
            return f"vector {i} has {len(v)} components where vector 0 has {size}"
        size = len(v)
    return None


def checked_embeddings(engine: Any, result: Any, count: int) -> EmbeddingResult:
    """What ``engine.embed`` returned for ``count`` inputs, checked (:func:`embedding_vectors_fault`) and its vectors
    made lists of floats; ExtensionEngineError (a 500 naming the engine) when it is no answer."""
    if not isinstance(result, EmbeddingResult):
        problem = f"embed() returned {type(result).__name__}, not an EmbeddingResult"
    else:
        problem = embedding_vectors_fault(result.vectors, count)
        if problem is None and not (isinstance(result.prompt_tokens, int) and result.prompt_tokens >= 0):
            problem = f"its prompt_tokens {result.prompt_tokens!r:.20} is not a count"
    if problem is not None:
        raise ExtensionEngineError(f"{engine_label(engine)} sent a malformed embed() answer: {problem}")
    return EmbeddingResult(result.model, tuple([float(x) for x in v] for v in result.vectors), result.prompt_tokens)
