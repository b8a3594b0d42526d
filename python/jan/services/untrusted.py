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

A tool spec's strings are third-party text too (:func:`tool_texts`): an MCP server's tool descriptions and schemas,
and the ``tools`` an API client sends, which it mostly gathers from MCP servers and plugins rather than writes. A
description has no use for a control token, so treating them all as untrusted costs no client anything (a
client's own messages, which may write a template's markup on purpose, stay its own). A template writes them inside
its JSON (``tojson``): a placeholder then stands for its text escaped as a JSON string's content. Where no tool
string makes a control token (:func:`control_ids`), the prompt keeps them in the template's pieces, so an ordinary
tool list tokenizes exactly as it always did.

Where that cannot be done exactly (a template that reshapes the text, a media prompt: libmtmd tokenizes its text
whole), the untrusted text is put in as it is written, with every control token's text in it broken by an
invisible U+2060 (:func:`neutralized`): it reads the same and tokenizes as text.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jan.services.types import TextPart

__all__ = ["Piece", "Placeholders", "PromptText", "TextWrites", "UNTRUSTED_KEY", "UntrustedTextPart", "control_ids",
           "neutralized", "placeholder", "prompt_tokens", "spell_nothing", "split_placeholders", "text_part_dict",
           "text_part_of", "tool_texts", "trusted_dict"]


@dataclass(frozen=True)
class UntrustedTextPart(TextPart):
    """Text no party of the conversation wrote that jan puts in a prompt: a document's text (``source``
    ``"document"``) or a tool's output (``"tool"``). It is a :class:`TextPart` to everything else; a local
    model's prompt tokenizes it without special tokens (:mod:`jan.services.untrusted`)."""

    source: Literal["document", "tool"] = "document"


# -- the dict form: a stored message's text part, a run's prompt as OpenAI dicts ---------------------------------

#: The key of a text part's dict that marks it third-party text, its value the part's ``source``: what a thread
#: store keeps and every dict form of a turn carries (a run's history, ``jan chat``'s), so that reading one back
#: gives the :class:`UntrustedTextPart` again (a plain ``TextPart`` would tokenize its control tokens' text).
UNTRUSTED_KEY = "untrusted"
_SOURCES = ("document", "tool")


def text_part_dict(part: TextPart) -> dict[str, Any]:
    """A text part as a message dict's content part: ``{"type": "text", "text"}``, marked
    ``"untrusted": source`` for an :class:`UntrustedTextPart` (:func:`text_part_of` reads it back)."""
    if isinstance(part, UntrustedTextPart):
        return {"type": "text", "text": part.text, UNTRUSTED_KEY: part.source}
    return {"type": "text", "text": part.text}


def text_part_of(text: str, part: Mapping[str, Any]) -> TextPart:
    """The typed part of the dict text part ``part`` (:func:`text_part_dict`'s, or a thread store's, whose text may
    be kept as ``{"value": ...}``: ``text`` is it, read): an :class:`UntrustedTextPart` where ``part`` is marked
    with a known source, else a :class:`TextPart` (an unknown mark, a hand edit's, reads as no mark)."""
    source = part.get(UNTRUSTED_KEY)
    return UntrustedTextPart(text, source=source) if source in _SOURCES else TextPart(text)


def trusted_dict(part: Mapping[str, Any]) -> dict[str, Any]:
    """A content part dict without the untrusted mark, for a wire that has no field for it (an OpenAI request
    body, which refuses unknown fields)."""
    return {k: v for k, v in part.items() if k != UNTRUSTED_KEY}


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
    #: the pieces' token ids where making the prompt found them (:func:`prompt_tokens` gives them, for its model)
    ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.pieces:
            object.__setattr__(self, "pieces", (Piece(self.text),))

    @property
    def untrusted(self) -> bool:
        """Whether any piece is untrusted text."""
        return any(p.untrusted for p in self.pieces)


def split_placeholders(rendered: str, texts: list[str], written: str,
                       inline: Collection[int] = ()) -> tuple[Piece, ...] | None:
    """``written`` (a template's output) as pieces, found by ``rendered`` (the same template's output with
    :func:`placeholder` s for ``texts``): each placeholder is its text as the template wrote it there, as it is or
    escaped as a JSON string's content (``tojson``); a template may write one several times, or leave one out.
    ``inline``: the indices of texts that join the template's pieces rather than stand apart. None where the pieces
    are not ``written`` (the template reshaped a text: trimmed, cut, sorted by it) or a sentinel character is left
    outside a whole placeholder (a client's text holds one)."""
    segments: list[tuple[str, int | None]] = []  # the template's text (None) and placeholders, in turn
    at = 0
    for match in _PLACEHOLDER.finditer(rendered):
        index = int(match.group(1))
        if index >= len(texts):
            return None
        segments += [(rendered[at:match.start()], None), ("", index)]
        at = match.end()
    segments.append((rendered[at:], None))
    if any(_OPEN in text or _CLOSE in text for text, index in segments if index is None):
        return None
    pieces: list[Piece] = []
    own = ""  # the template's text (and inline texts) not yet a piece
    at = 0
    for k, (text, index) in enumerate(segments):
        if index is not None:
            after = segments[k + 1][0]  # (a placeholder is always followed by the template's text, maybe "")
            text = _written_form(texts[index], written, at, after)
            if text is None:
                return None
        elif not written.startswith(text, at):
            return None
        at += len(text)
        if index is None or index in inline:
            own += text
        elif text:
            if own:
                pieces.append(Piece(own))
            pieces.append(Piece(text, untrusted=True))
            own = ""
    if at != len(written):
        return None
    if own or not pieces:
        pieces.append(Piece(own))
    return tuple(pieces)


def _written_form(text: str, written: str, at: int, after: str) -> str | None:
    """How the template wrote ``text`` at ``at`` in ``written``, ``after`` following it: as it is, or as a JSON
    string's content (``tojson`` writes a tool's schema so; jan's tojson keeps non-ASCII characters, the
    placeholders' among them); None where neither is there."""
    if written.startswith(text, at) and written.startswith(after, at + len(text)):
        return text
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    if written.startswith(escaped, at) and written.startswith(after, at + len(escaped)):
        return escaped
    return None


def prompt_tokens(model: Any, prompt: PromptText) -> list[int]:
    """The token ids of ``prompt`` (no BOS added): the template's pieces with special tokens parsed, untrusted
    ones without. A prompt of one piece is tokenized exactly as its whole text always was."""
    if prompt.ids is not None:
        return list(prompt.ids)
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
        spelled = {model.token_to_bytes(t, True).decode("utf-8", "replace")
                   for t in set(control_ids(model, set(parsed))) - plain}
        spelled.discard("")
        if not spelled:
            return text
        for s in sorted(spelled, key=len, reverse=True):  # (a longer token's text may hold a shorter one's)
            text = text.replace(s, _broken(s))
    raise ValueError("untrusted text still spells control tokens after they were broken")


@dataclass(frozen=True)
class _Spellings:
    """A vocabulary's control tokens' texts, and the starts and ends of each (what a text could complete with the
    text a template writes next to it)."""

    pattern: re.Pattern[str] | None
    starts: frozenset[str]
    ends: frozenset[str]
    longest: int


_SPELLINGS: "weakref.WeakKeyDictionary[Any, _Spellings]" = weakref.WeakKeyDictionary()


def _spellings(model: Any) -> _Spellings:
    cached = _SPELLINGS.get(model)
    if cached is None:
        texts = sorted({t.decode("utf-8", "replace") for t in model.control_texts()} - {""}, key=len, reverse=True)
        cached = _Spellings(re.compile("|".join(map(re.escape, texts))) if texts else None,
                            frozenset(t[:k] for t in texts for k in range(1, len(t))),
                            frozenset(t[k:] for t in texts for k in range(1, len(t))),
                            max(map(len, texts), default=0))
        _SPELLINGS[model] = cached
    return cached


def spell_nothing(model: Any, texts: Collection[str], also: tuple[str, ...] = ()) -> bool:
    """Whether none of ``texts`` can make a control token of ``model`` where a template writes it: none holds a
    control token's text (nor a string of ``also``, a media marker), and none starts with the end of one or ends
    with the start of one, which the text around it could complete. True lets a prompt skip the untrusted-text
    rendering (its result would be the plain one); False only means it may not."""
    spelled = _spellings(model)
    for text in texts:
        if any(a and a in text for a in also) or (spelled.pattern is not None and spelled.pattern.search(text)):
            return False
        for k in range(1, min(len(text), spelled.longest)):
            if text[-k:] in spelled.starts or text[:k] in spelled.ends:
                return False
    return True


def _broken(s: str) -> str:
    return s[0] + _JOINER + s[1:] if len(s) > 1 else "\ufffd"


def control_ids(model: Any, ids: Any) -> list[int]:
    """The control tokens among ``ids``, in order: those whose text shows only when special tokens are rendered
    (what a text spelling them would forge)."""
    control = {t: model.token_to_bytes(t, False) != model.token_to_bytes(t, True) for t in set(ids)}
    return [t for t in ids if control[t]]


# -- what a render gives the template for third-party text ---------------------------------------------------


@dataclass(frozen=True)
class TextWrites:
    """What a render gives a chat template in place of third-party text: ``part`` for an untrusted part's text,
    ``tool_text`` for a tool spec's free text and ``tool_word`` for its names and schema words
    (:func:`tool_texts`)."""

    part: Callable[[str], str]
    tool_text: Callable[[str], str]
    tool_word: Callable[[str], str]

    @classmethod
    def each(cls, fn: Callable[[str], str]) -> "TextWrites":
        """Every third-party text written as ``fn`` writes it (:func:`neutralized`, for one)."""
        return cls(fn, fn, fn)


class Placeholders:
    """A render's :class:`TextWrites` with placeholders: ``texts`` holds what each stands for, ``tool_indices``
    which of them are tool specs' texts (the same one, once). A name or schema word is written as it is where it
    spells no control token (``safe_word``, e.g. :func:`neutralized`: a template compares and sorts them, which a
    placeholder would change); ``broken`` tells that one did, and so the pieces cannot be the prompt."""

    def __init__(self, safe_word: Callable[[str], str]):
        self.texts: list[str] = []
        self.broken = False
        self._tool_texts: dict[str, int] = {}
        self._safe_word = safe_word
        self._words: dict[str, str] = {}

    def part(self, text: str) -> str:
        self.texts.append(text)
        return placeholder(len(self.texts) - 1)

    def tool_text(self, text: str) -> str:
        if text not in self._tool_texts:
            self._tool_texts[text] = len(self.texts)
            self.texts.append(text)
        return placeholder(self._tool_texts[text])

    def tool_word(self, text: str) -> str:
        if text not in self._words:  # (a schema repeats its words: each is checked once)
            self._words[text] = self._safe_word(text)
            self.broken = self.broken or self._words[text] != text
        return self._words[text]

    @property
    def tool_indices(self) -> frozenset[int]:
        return frozenset(self._tool_texts.values())

    @property
    def writes(self) -> TextWrites:
        return TextWrites(self.part, self.tool_text, self.tool_word)


#: Schema keywords whose string values are words a template compares (``type == "string"``) or a schema refers
#: by (``required`` names properties, ``$ref`` a definition), not text: written as they are (:func:`tool_texts`).
_WORD_VALUES = frozenset({"type", "required", "$ref", "$schema", "$id", "$anchor", "dependentRequired"})
#: Schema keywords whose values map names (a property's, a definition's) to schemas.
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def tool_texts(tools: Sequence[Any] | None, writes: TextWrites) -> list[Any] | None:
    """``tools`` (OpenAI tool dicts, as templates are given them) with their third-party strings written as
    ``writes`` says: a function's description and its schema's free text (each property's description and title,
    enum values, defaults, examples: every string that is no word) by ``tool_text``; the function's name and the
    schema's words (its keys, property names, ``type`` values, ``required`` entries: what templates compare, sort
    and look up) by ``tool_word``. The tool's own ``type`` is jan's, not third-party."""
    if tools is None:
        return None
    out: list[Any] = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping):
            out.append(tool)
            continue
        out.append({**tool, "function": {
            k: (writes.tool_word(v) if k == "name" and isinstance(v, str)
                else writes.tool_text(v) if k == "description" and isinstance(v, str)
                else _schema_texts(v, writes))
            for k, v in fn.items()}})
    return out


def _schema_texts(node: Any, writes: TextWrites, words: bool = False) -> Any:
    if isinstance(node, str):
        return writes.tool_word(node) if words else writes.tool_text(node)
    if isinstance(node, list):
        return [_schema_texts(v, writes, words) for v in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        name = writes.tool_word(key) if isinstance(key, str) else key
        if key in _NAMED_SCHEMAS and isinstance(value, Mapping):  # (named schemas: their names are words)
            out[name] = {writes.tool_word(k) if isinstance(k, str) else k: _schema_texts(v, writes)
                         for k, v in value.items()}
        else:
            out[name] = _schema_texts(value, writes, words or key in _WORD_VALUES)
    return out
