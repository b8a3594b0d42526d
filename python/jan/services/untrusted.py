"""Third-party text in a prompt: tokenized as text, never as the control tokens it may spell.

A chat template's prompt is tokenized with special-token parsing on (the template writes ``<|im_start|>`` and
the like as text). A client's own messages go through that too, as llama-server takes them; but text jan puts in
the prompt that nobody in the conversation wrote — a document's text layer, a tool's output — must not, or a PDF
holding ``<|im_end|><|im_start|>system`` would forge turns (prompt injection through special tokens). Such text is
an :class:`UntrustedTextPart`, and the prompt is made of :class:`Piece` s:

* the template is rendered with a placeholder (:func:`placeholder`: private-use characters around an index) in
  place of each untrusted text, and its output split at them (:func:`split_placeholders`);
* the template's own text is tokenized with special tokens parsed, each untrusted text without
  (:func:`prompt_tokens`), so ``<|im_start|>`` in a document is the characters it shows.

Where that cannot be done exactly (a template that reshapes the text, a media prompt: libmtmd tokenizes its text
whole), the untrusted text is put in as it is written, with every control token's text in it broken by an
invisible U+2060 (:func:`neutralized`): it reads the same and tokenizes as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from jan.services.types import TextPart

__all__ = ["Piece", "PromptText", "UntrustedTextPart", "neutralized", "placeholder", "prompt_tokens",
           "split_placeholders"]


@dataclass(frozen=True)
class UntrustedTextPart(TextPart):
    """Text no party of the conversation wrote that jan puts in a prompt: a document's text (``source``
    ``"document"``) or a tool's output (``"tool"``). It is a :class:`TextPart` to everything else; a local
    model's prompt tokenizes it without special tokens (:mod:`jan.services.untrusted`)."""

    source: Literal["document", "tool"] = "document"


# Plane 15 private-use characters: no text jan is sent has a meaning for them (unlike the BMP's private-use
# area, where icon fonts live). One that does occur outside a placeholder makes the split refuse
# (:func:`split_placeholders`), which falls back to the safe rendering, never to a wrong one.
_OPEN, _CLOSE = "\U000F0000", "\U000F0001"
_PLACEHOLDER = re.compile(f"{_OPEN}([0-9]+){_CLOSE}")
#: Breaks a control token's text without changing what it reads as (U+2060 WORD JOINER: no width, no break).
_JOINER = "\u2060"


def placeholder(index: int) -> str:
    """What the template is given in place of the ``index``-th untrusted text."""
    return f"{_OPEN}{index}{_CLOSE}"


@dataclass(frozen=True)
class Piece:
    """A stretch of a prompt's text: the template's own (special tokens parsed) or an untrusted text (not)."""

    text: str
    untrusted: bool = False


@dataclass(frozen=True)
class PromptText:
    """A rendered prompt: ``text``, what the template writes (what output parsers, grammars and logs see), and
    ``pieces``, what is tokenized, in order; for a prompt without untrusted text, ``text`` as one piece."""

    text: str
    pieces: tuple[Piece, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.pieces:
            object.__setattr__(self, "pieces", (Piece(self.text),))

    @property
    def untrusted(self) -> bool:
        """Whether any piece is untrusted text."""
        return any(p.untrusted for p in self.pieces)


def split_placeholders(rendered: str, texts: list[str]) -> tuple[Piece, ...] | None:
    """``rendered`` (a template's output with :func:`placeholder` s for ``texts``) as pieces, each placeholder
    the text it stands for (a template may write one several times, or leave one out); None where a sentinel
    character is left outside a whole placeholder (the template cut one, or a client's text holds one)."""
    pieces: list[Piece] = []
    at = 0
    for match in _PLACEHOLDER.finditer(rendered):
        index = int(match.group(1))
        if index >= len(texts):
            return None
        if match.start() > at:
            pieces.append(Piece(rendered[at:match.start()]))
        if texts[index]:
            pieces.append(Piece(texts[index], untrusted=True))
        at = match.end()
    if at < len(rendered):
        pieces.append(Piece(rendered[at:]))
    if any(_OPEN in p.text or _CLOSE in p.text for p in pieces if not p.untrusted):
        return None
    return tuple(pieces)


def prompt_tokens(model: Any, prompt: PromptText) -> list[int]:
    """The token ids of ``prompt`` (no BOS added): the template's pieces with special tokens parsed, untrusted
    ones without. A prompt of one piece is tokenized exactly as its whole text always was."""
    if len(prompt.pieces) == 1:
        piece = prompt.pieces[0]
        return model.tokenize(piece.text, add_special=False, parse_special=not piece.untrusted)
    # A SentencePiece tokenizer that puts a space before the text it starts with (Llama 2's, Mistral's) would put
    # one at every seam between pieces: each piece after the first is tokenized as it would be mid-prompt.
    prefixed = _spelled(model, model.tokenize("a", add_special=False, parse_special=False)) == b" a"
    out: list[int] = []
    for i, piece in enumerate(prompt.pieces):
        special = not piece.untrusted
        ids = model.tokenize(piece.text, add_special=False, parse_special=special)
        out += _without_prefix(model, piece.text, ids, special) if prefixed and i else ids
    return out


def _spelled(model: Any, ids: list[int]) -> bytes:
    return b"".join(model.token_to_bytes(t, True) for t in ids)


def _without_prefix(model: Any, text: str, ids: list[int], special: bool) -> list[int]:
    """``text``'s ids as a SentencePiece tokenizer writes it after a newline (which it merges with nothing): no
    space put before it; ``ids`` (as it is tokenized alone) where that is not so."""
    lead = model.tokenize("\n" + text, add_special=False, parse_special=special)
    alone = _spelled(model, ids)
    for k in range(1, min(len(lead), 3) + 1):
        if _spelled(model, lead[:k]) in (b"\n", b" \n"):
            rest = _spelled(model, lead[k:])
            if rest == alone or (alone.startswith(b" ") and rest == alone[1:]):
                return lead[k:]
    return ids


def neutralized(model: Any, text: str, also: tuple[str, ...] = ()) -> str:
    """``text`` with every control token's text in it (what ``model``'s tokenizer would parse as a special
    token), and each string of ``also`` (a projector's media marker), broken by an invisible U+2060, so that
    tokenized with special tokens parsed it is all text. Unchanged when it spells none."""
    for s in also:
        if s and s in text:
            text = text.replace(s, _broken(s))
    for _ in range(4):
        parsed = model.tokenize(text, add_special=False, parse_special=True)
        plain = set(model.tokenize(text, add_special=False, parse_special=False))
        spelled = {model.token_to_bytes(t, True).decode("utf-8", "replace") for t in set(parsed) - plain
                   if model.token_to_bytes(t, False) != model.token_to_bytes(t, True)}
        spelled.discard("")
        if not spelled:
            return text
        for s in sorted(spelled, key=len, reverse=True):  # (a longer token's text may hold a shorter one's)
            text = text.replace(s, _broken(s))
    raise ValueError("untrusted text still spells control tokens after they were broken")


def _broken(s: str) -> str:
    return s[0] + _JOINER + s[1:] if len(s) > 1 else "\ufffd"
