"""llama-server's output rules for code completion (:class:`~jan.services.types.LineRules`: ``n_indent``,
``t_max_predict_ms``), applied to one choice's generated text as the engine produces it.

The services feed each chunk's text through a :class:`LineCut`; once it says a rule ended the choice, the service
cancels that choice's engine request (the engine then ends it with its usage) and tells the choice's end as
``length`` (llama-server's ``stop_type: "limit"``). Applied on the raw output, before a chat's parsing, as
llama-server applies them on its generated text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from jan.engine.results import Chunk
from jan.services.types import LineRules

__all__ = ["LineCut", "remote_refusal"]


def remote_refusal(model_id: str, rules: LineRules) -> Exception:
    """A RequestError for ``rules`` asked of a model whose engine is not local: the service cannot stop its server
    mid-line, and sending them on would reach only a llama-server upstream (said, never dropped)."""
    from jan.services.errors import RequestError  # (jan.services imports this module)

    name = "n_indent" if rules.n_indent > 0 else "t_max_predict_ms"
    return RequestError(f"{name}: model '{model_id}' cannot apply it (its engine is not local); leave it out",
                        param=name, code="not_supported")


class LineCut:
    """One choice's state under ``rules``: :meth:`feed` gives the part of each piece of text that is shown and
    sets :attr:`cut` when a rule ended the choice (nothing after that piece is to be shown). ``clock``: seconds,
    monotonic (the time since the choice's first text is what ``t_max_predict_ms`` limits)."""

    def __init__(self, rules: LineRules, clock: Callable[[], float] = time.monotonic):
        self.rules = rules
        self.clock = clock
        self.cut = False
        self._started_at: float | None = None
        # after a newline: the line's indentation is being read (the first line is never held to n_indent)
        self._in_indent = False
        self._indent = 0

    def feed(self, text: str, last: bool = False, generation_ms: float | None = None, tokens: int = 1) -> str:
        """The part of ``text`` (the next piece of the choice's output) shown; ``last``: the engine ended the
        choice with it (a time limit then changes nothing; a line less indented still cuts it).

        ``generation_ms``: the engine's own time from the choice's first token to the last of this piece
        (:attr:`Chunk.progress`), what llama-server measures ``t_max_predict_ms`` by; None: :attr:`clock` since the
        first text, which reads late when the engine's tokens queue up behind a busy loop. ``tokens``: how many
        tokens the piece holds. One token is shown whole, as llama-server shows the token with the newline; a
        piece of several (tokens merged while the reader was busy) ends at its first newline once the time has
        passed: the tokens after it would have come after the cut."""
        if self.cut:
            return ""
        if not text:
            return text
        if self._started_at is None:
            self._started_at = self.clock()
        if self.rules.n_indent > 0:
            for i, ch in enumerate(text):
                if self._in_indent:
                    if ch in " \t":
                        self._indent += 1
                        continue
                    self._in_indent = False
                    if self._indent < self.rules.n_indent:  # (a newline is a character too: an empty line ends it)
                        self.cut = True
                        return text[:i]  # llama-server cuts the line before its first character
                if ch == "\n":
                    self._in_indent, self._indent = True, 0
        limit = self.rules.t_max_predict_ms
        if limit > 0 and not last and "\n" in text:
            elapsed = generation_ms if generation_ms is not None else (self.clock() - self._started_at) * 1000.0
            if elapsed > limit:
                self.cut = True
                if tokens > 1:
                    return text[: text.index("\n") + 1]
        return text

    def chunk(self, chunk: Chunk, cancel: Callable[[], None]) -> Chunk | None:
        """The engine's ``chunk`` of the choice as the rules leave it: its text cut where a rule ends the choice
        (``cancel`` is then called: no token more is generated), ``None`` for a chunk the engine made after that,
        and the choice's end (the engine's last chunk, with its usage) told as ``length`` with no text. A chunk's
        token ids and logprobs stay whole: the services let out those of the text shown (a cut falls inside a token
        as a stop string's cut does)."""
        if self.cut:
            if chunk.finish_reason is None:
                return None  # (made before the cancel reached the engine: never shown)
            return replace(chunk, text="", token_ids=[], logprobs=[] if chunk.logprobs is not None else None,
                           finish_reason="length", stop=None)
        last = chunk.finish_reason is not None
        progress = chunk.progress
        text = self.feed(chunk.text, last, progress.generation_ms if progress is not None else None,
                         max(1, len(chunk.token_ids)))
        if not self.cut:
            return chunk
        if last:
            return replace(chunk, text=text, finish_reason="length", stop=None)
        cancel()
        return replace(chunk, text=text)
