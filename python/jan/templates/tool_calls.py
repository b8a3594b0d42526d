"""Tool calls: parse them out of model output, and force them with a grammar.

Models write tool calls in their own formats. The parser recognises:

* Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  (several in a row; the closing tag may be missing at the end);
* Granite / Phi-4-mini: ``<|tool_call|>[{...}, ...]`` (closing
  ``<|/tool_call|>`` optional); Nemotron: ``<TOOLCALL>[...]</TOOLCALL>``;
* Mistral: ``[TOOL_CALLS][{...}, ...]`` and the newer
  ``[TOOL_CALLS]name[ARGS]{...}``;
* Llama 3.1 / functionary: ``<|python_tag|>{"name": ..., "parameters": ...}``
  (``;``-separated), ``<|python_tag|>tool.call(key="value")``, and raw code
  after ``<|python_tag|>`` when a ``python`` / ``ipython`` /
  ``code_interpreter`` tool exists; ``<function=name>{...}</function>``;
* output that *starts* with a call: a JSON object (Llama 3.x
  ``{"name": ..., "parameters": ...}``), a JSON array of them, the same in a
  ```` ```json ```` fence, or a Python-style list ``[name(key=value), ...]``.

Objects may use ``arguments`` or ``parameters``, as an object or as a JSON
string, in any key order. Only names listed in ``tools`` count as calls;
anything else (text that merely contains braces, unknown function names,
malformed JSON) stays content, verbatim.

There is one parser, :class:`ToolCallStreamParser`; :func:`parse_tool_calls`
feeds it the whole text at once. Every decision the parser makes depends only
on the text seen so far, never on how it was split into pieces, so streaming
and non-streaming results are identical by construction.

Streaming behaviour: content is passed on as soon as it cannot be the start of
a call (a possible marker prefix such as ``<tool`` is held back until the next
piece decides). A call is *committed* once its function name is known and its
arguments object has begun; from then on the arguments are streamed as the
model writes them (the model's own JSON text, so a truncated output leaves
truncated arguments, as with OpenAI). Whitespace around calls is dropped.
"""

from __future__ import annotations

import ast
import hashlib
import json
import secrets
import string
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Mapping, Sequence

from jan.json_text import MAX_ARGUMENTS_DEPTH, json_number, loads_json, sendable_arguments
from .grammar import GrammarBuilder, GrammarError, gbnf_literal, tool_parameters_schema

__all__ = [
    "ToolCallStreamParser",
    "new_call_id",
    "new_short_call_id",
    "CallIdShape",
    "MISTRAL_CALL_IDS",
    "SOLAR_CALL_IDS",
    "short_call_id",
    "parse_tool_calls",
    "partial_suffix",
    "tool_call_grammar",
    "tool_names",
]

# Markers that may appear anywhere in the output. No marker contains another
# one, which keeps "earliest marker wins" independent of chunking.
_MARKERS = ("<tool_call>", "<|tool_call|>", "<TOOLCALL>", "[TOOL_CALLS]", "<|python_tag|>", "<function=")
# Tool names that take raw code after <|python_tag|> (Llama 3.1's code interpreter).
_CODE_TOOLS = ("python", "ipython", "code_interpreter")
_WS = " \t\r\n"
_IDENT_START = set(string.ascii_letters + "_")
_IDENT = set(string.ascii_letters + string.digits + "_.")
_NAME_CHARS = set(string.ascii_letters + string.digits + "_.-")
_MAX_NAME = 256
#: Arrays and objects nested in one call's arguments at most (far past any real arguments, far below the recursion
#: limit, and what a request body sending the call back may hold: one rule for every format)
_MAX_JSON_DEPTH = MAX_ARGUMENTS_DEPTH

_ID_ALPHABET = string.ascii_letters + string.digits
_VALUE_START = set('{["-0123456789tfn')
_ESCAPES = set('"\\/bfnrtu')
_HEX = set(string.hexdigits)

# A region generator gets one character per send() (None = end of text) and
# returns (ok, n_unused): ok=False means "not (the rest of) a call" and the
# uncommitted text becomes content; n_unused trailing characters it read are
# handed back to be scanned again as ordinary text.
_Gen = Generator[None, "str | None", Any]


def new_call_id() -> str:
    """A fresh OpenAI-style tool call id: ``call_`` and 24 random letters/digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


#: Length of the call ids Mistral's templates demand (they raise on any other: "Tool call IDs should be
#: alphanumeric strings with length 9!"); llama.cpp gives Mistral Nemo's calls ids of this shape too.
SHORT_CALL_ID_LENGTH = 9


@dataclass(frozen=True)
class CallIdShape:
    """The call ids a chat template takes or its model was trained on: ``length`` characters of ``alphabet``."""

    length: int
    alphabet: str


#: Mistral's: 9 ASCII letters and digits (its templates raise on others).
MISTRAL_CALL_IDS = CallIdShape(SHORT_CALL_ID_LENGTH, _ID_ALPHABET)
#: Solar Open's: 10 lowercase letters and digits, which its template tells the model to write and reads back in the
#: tool results (``<|tool_response:begin|>ID``).
SOLAR_CALL_IDS = CallIdShape(10, string.ascii_lowercase + string.digits)


def new_short_call_id(shape: CallIdShape = MISTRAL_CALL_IDS) -> str:
    """A fresh tool call id of ``shape`` (by default the 9-character alphanumeric one Mistral's templates accept)."""
    return "".join(secrets.choice(shape.alphabet) for _ in range(shape.length))


def is_short_call_id(value: Any, shape: CallIdShape = MISTRAL_CALL_IDS) -> bool:
    """Whether ``value`` already has ``shape`` (by default 9 ASCII letters and digits)."""
    return isinstance(value, str) and len(value) == shape.length and all(c in shape.alphabet for c in value)


def short_call_id(key: str, shape: CallIdShape = MISTRAL_CALL_IDS) -> str:
    """An id of ``shape`` (by default 9 alphanumerics) derived from ``key`` (a hash): the same key always gives the
    same id, so a call and the result that names it still match after both are rewritten, in any request."""
    n = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest(), "big")
    out = []
    for _ in range(shape.length):
        n, r = divmod(n, len(shape.alphabet))
        out.append(shape.alphabet[r])
    return "".join(out)


def tool_names(tools: Iterable[Any] | None) -> list[str]:
    """Function names from OpenAI tool dicts.

    Accepts ``{"type": "function", "function": {"name": ...}}``, a bare
    ``{"name": ...}`` function dict, or a name string.
    """
    names: list[str] = []
    for tool in tools or ():
        if isinstance(tool, str):
            names.append(tool)
        elif isinstance(tool, Mapping):
            fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
            name = fn.get("name")
            if isinstance(name, str) and name:
                names.append(name)
    return names


class ToolCallStreamParser:
    """Incremental tool-call parser for one model output.

    ``feed(piece)`` returns a list of OpenAI streaming deltas (the objects that
    go into ``choices[0].delta``), in order:

    * ``{"content": "..."}``
    * ``{"tool_calls": [{"index": i, "id": "call_...", "type": "function",
      "function": {"name": "...", "arguments": ""}}]}`` when call ``i`` starts
    * ``{"tool_calls": [{"index": i, "function": {"arguments": "..."}}]}`` for
      pieces of its arguments.

    ``finish()`` flushes whatever was held back and must be called once at
    the end. ``content`` and ``tool_calls`` give the accumulated result.
    With no ``tools`` every piece is content, unchanged.
    """

    def __init__(self, tools: Iterable[Any] | None, *, id_factory: Callable[[], str] | None = None):
        self._names = frozenset(tool_names(tools))
        self._code_tool = next((n for n in _CODE_TOOLS if n in self._names), None)
        self._new_id = id_factory or new_call_id
        self._out: list[dict[str, Any]] = []
        self._args_buf: list[str] = []
        self._content: list[str] = []
        self._calls: list[dict[str, Any]] = []
        # ordinary-text state
        self._pending = ""  # text that might still be the start of a marker
        self._ws = ""  # trailing whitespace held until we know what follows it
        self._at_start = True  # nothing but whitespace seen so far
        self._after_call = False  # drop whitespace that directly follows a call
        self._sep = ""  # whitespace written after the last call (the separator, if text follows)
        self._ws_before = ""  # whitespace written before the first of the last calls
        # call-region state
        self._region: _Gen | None = None
        self._raw = ""  # region text not yet committed to a call
        self._region_calls = 0
        # the region's next call: its name is read whole (a declared tool), none of its arguments yet; the call a
        # cut there makes (OpenAI's cut call: the name, the arguments as far as written, here none)
        self._named: str | None = None
        self._finished = False

    # -- public --------------------------------------------------------------

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Process the next piece of model output; return the deltas it produces."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if text:
            if self._names:
                self._process(text)
            else:
                self._push_content(text)
        return self._take()

    def finish(self, *, truncated: bool = False) -> list[dict[str, Any]]:
        """End of output: settle any open call or held text; return the last deltas.

        ``truncated``: the output was cut off (the token limit). Markup of a call that never
        closed is then dropped instead of being handed back as content, and so is held text
        that could only have been the start of a marker (and trailing whitespace, held while a
        call may follow it); a call cut off after its name (its closing quote, ``>``, ``[``, ``(``),
        before its arguments, is a call with empty arguments.
        """
        if self._finished:
            return []
        self._finished = True
        if truncated and self._region is not None and self._named is not None:
            self._begin_call(self._named)
        if truncated and self._region is not None and (self._raw_is_markup() or self._region_calls):
            self._region = None
            self._raw = ""
            self._pending = ""
            self._ws = ""
            return self._take()
        if truncated:
            self._pending = ""
        while self._region is not None:
            leftover = self._send(None)
            if leftover:
                self._process(leftover)
        if self._pending and self._after_call and self._calls:
            # the output ended in a marker's first characters right after a call (whitespace between): the calls'
            # markup, as a cut leaves it (a next call begun, Mistral's [TOOL_CALLS] or <tool_call> again), never text
            self._pending = ""
        if self._pending:
            buf, self._pending = self._pending, ""
            self._text_out(buf)
        # trailing whitespace waits for what follows it (a call drops it): a cut leaves it unsaid, as it leaves a
        # held marker and the whitespace before an unfinished call's markup, so that the cut output's text does
        # not depend on whether the cut came before or inside the markup (the format parsers do the same)
        if self._ws and not self._calls and not truncated:
            self._push_content(self._ws)
        self._ws = ""
        return self._take()

    @property
    def in_call_markup(self) -> bool:
        """Whether the text so far ends inside a call's markup: a region opened at a marker, or one that made a
        call (what an output cut off here has of it is dropped, never shown as content)."""
        return self._region is not None and (self._raw_is_markup() or self._region_calls > 0 or self._named is not None)

    @property
    def content(self) -> str | None:
        """Content so far (text outside calls); ``None`` when there is none."""
        text = "".join(self._content)
        return text or None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Calls so far, in the OpenAI message shape (``arguments`` is a JSON string)."""
        return [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
            for c in self._calls
        ]

    # -- output ----------------------------------------------------------------

    def _flush_args(self) -> None:
        if self._args_buf:
            piece = "".join(self._args_buf)
            self._args_buf = []
            self._out.append({"tool_calls": [{"index": len(self._calls) - 1, "function": {"arguments": piece}}]})

    def _take(self) -> list[dict[str, Any]]:
        self._flush_args()
        out, self._out = self._out, []
        return out

    def _push_content(self, text: str) -> None:
        if not text:
            return
        self._flush_args()
        self._content.append(text)
        if self._out and "content" in self._out[-1]:
            self._out[-1]["content"] += text
        else:
            self._out.append({"content": text})

    def _text_out(self, text: str) -> None:
        """Emit ordinary text, holding back trailing whitespace and dropping it after calls."""
        if self._after_call:
            body = text.lstrip(_WS)
            self._sep += text[: len(text) - len(body)]
            if not body:
                return
            self._after_call = False
            # text on both sides of a call stays apart: the whitespace written after the call (else before it,
            # else a newline) separates them, where gluing them would run two sentences together
            sep = self._sep or self._ws_before or "\n"
            self._sep = ""
            text = (sep + body) if self._content else body
        body = text.rstrip(_WS)
        if body:
            self._push_content(self._ws + body)
            self._ws = ""
        self._ws += text[len(body):]

    def _begin_call(self, name: str) -> None:
        self._flush_args()
        self._named = None
        if not self._after_call:
            self._ws_before = self._ws
        self._sep = ""
        self._ws = ""  # whitespace before a call is not content
        call = {"id": self._new_id(), "name": name, "arguments": []}
        self._calls.append(call)
        self._region_calls += 1
        self._raw = ""
        self._out.append(
            {
                "tool_calls": [
                    {
                        "index": len(self._calls) - 1,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )

    def _args(self, text: str) -> None:
        self._calls[-1]["arguments"].append(text)
        self._args_buf.append(text)
        self._raw = ""

    def _consume(self) -> None:
        """Everything read so far in the region belongs to a committed call."""
        self._raw = ""

    # -- driver ------------------------------------------------------------------

    def _process(self, text: str) -> None:
        while text:
            if self._region is None:
                text = self._scan_text(text)
                continue
            i = 0
            n = len(text)
            leftover = None
            while i < n:
                ch = text[i]
                i += 1
                leftover = self._send(ch)
                if self._region is None:
                    break
            text = (leftover or "") + text[i:]

    def _send(self, ch: str | None) -> str | None:
        """Give one character (None = end) to the open region; return text to rescan when it closes."""
        assert self._region is not None
        if ch is not None:
            self._raw += ch
        try:
            self._region.send(ch)
            return None
        except StopIteration as stop:
            ok, n_unused = stop.value
        raw = self._raw
        if ch is not None and n_unused > len(raw):
            # a number or literal is whole only at the character after it, which it hands back: its sink (a call's
            # arguments) committed the region, that character included, so the character is all there is to hand back
            raw = ch
        assert 0 <= n_unused <= len(raw), (n_unused, raw)
        cut = len(raw) - n_unused
        used, unused = raw[:cut], raw[cut:]
        self._region = None
        self._raw = ""
        self._named = None
        # what a region that made calls leaves unfinished when the output ends (a list's next object begun) is that
        # list's markup, as the rest of a broken list is: dropped, as the JSON-list families drop it. A region that
        # made none is text that never became a call.
        if not ok and used and not (ch is None and self._region_calls):
            self._text_out(used)
        if self._region_calls:
            self._after_call = True
            if ok:
                self._ws = ""
        self._region_calls = 0
        return unused

    def _raw_is_markup(self) -> bool:
        """The open region began at an explicit tool-call marker (not at a bare ``{``/``[``)."""
        return any(self._raw.startswith(m) for m in _MARKERS)

    def _open(self, gen: _Gen, marker: str) -> None:
        next(gen)  # run to the first `yield`
        self._region = gen
        self._raw = marker
        self._region_calls = 0

    def _scan_text(self, text: str) -> str:
        """Ordinary text: emit what cannot start a call; open a region at a marker.

        Returns the text that follows a marker (to be fed to the region), or "".
        """
        buf = self._pending + text
        self._pending = ""
        pos, marker = _earliest_marker(buf)
        if self._at_start:
            stripped = buf.lstrip(_WS)
            if not stripped:
                self._pending = buf
                return ""
            lead = buf[: len(buf) - len(stripped)]
            if pos == len(lead):
                self._at_start = False  # a marker right at the start: handled below
            elif any(m.startswith(stripped) for m in _MARKERS):
                self._pending = buf  # could still become a marker
                return ""
            elif stripped[0] in "{[`":
                self._at_start = False
                self._ws += lead
                self._open(self._start_region(), "")
                return stripped
            else:
                self._at_start = False
        if pos >= 0:
            self._text_out(buf[:pos])
            self._open(self._marker_region(marker), marker)
            return buf[pos + len(marker) :]
        keep = partial_suffix(buf, _MARKERS)
        self._text_out(buf[: len(buf) - keep])
        self._pending = buf[len(buf) - keep :]
        return ""

    # -- region parsers (generators) -------------------------------------------

    def _marker_region(self, marker: str) -> _Gen:
        if marker == "<tool_call>":
            return self._tagged_json_region("</tool_call>")
        if marker == "<|tool_call|>":
            return self._tagged_json_region("<|/tool_call|>")
        if marker == "<TOOLCALL>":
            return self._tagged_json_region("</TOOLCALL>")
        if marker == "[TOOL_CALLS]":
            return self._mistral_region()
        if marker == "<|python_tag|>":
            return self._python_tag_region()
        return self._function_tag_region()

    def _start_region(self) -> _Gen:
        """Output that begins with ``{``, ``[`` or a code fence."""
        ch = yield
        if ch == "`":
            ok, ch = yield from self._expect(ch, "```")
            if not ok:
                return False, _n(ch)
            tag = ""
            while ch is not None and ch.isalpha() and len(tag) < 16:
                tag += ch
                ch = yield
            if tag.lower() not in ("", "json"):
                return False, _n(ch)
            ch = yield from self._skip_ws(ch)
            if ch not in ("{", "["):
                return False, _n(ch)
            ok, ch = yield from self._json_calls(ch, pythonic=False)
            if not ok:
                if self._broke(ch):
                    return (yield from self._swallow(ch, "```"))
                return False, _n(ch)
            return (yield from self._closing(ch, "```"))
        ok, ch = yield from self._json_calls(ch, pythonic=True)
        return ok or self._broke(ch), _n(ch)

    def _tagged_json_region(self, closing: str) -> _Gen:
        ch = yield
        ch = yield from self._skip_ws(ch)
        if ch not in ("{", "["):
            return False, _n(ch)
        ok, ch = yield from self._json_calls(ch, pythonic=False)
        if not ok:
            if self._broke(ch):
                return (yield from self._swallow(ch, closing))
            return False, _n(ch)
        return (yield from self._closing(ch, closing))

    def _broke(self, ch: str | None) -> bool:
        """A call of this region had begun when its markup broke off at ``ch`` (None: the output ended, which is
        a cut, not a break). Its arguments are then finished into valid JSON: they were streamed, and cannot be
        taken back, and a finished block never yields invalid JSON arguments."""
        if ch is None or not self._region_calls:
            return False
        args = "".join(self._calls[-1]["arguments"])
        rest = _finish_json(args)
        if rest:
            self._calls[-1]["arguments"].append(rest)
            self._args_buf.append(rest)
        return True

    def _swallow(self, ch: str | None, closing: str) -> _Gen:
        """The rest of a broken call block, through its closing tag, is its markup, not text: drop it. A new
        marker ends it too (handed back: the model may go on with a good call)."""
        seen = ""
        while ch is not None:
            seen += ch
            if seen.endswith(closing):
                self._consume()
                return True, 0
            for m in _MARKERS:
                if seen.endswith(m):
                    return True, len(m)
            ch = yield
        return True, 0

    def _mistral_region(self) -> _Gen:
        ch = yield
        ch = yield from self._skip_ws(ch)
        if ch in ("{", "["):
            ok, ch = yield from self._json_calls(ch, pythonic=False)
            return ok or self._broke(ch), _n(ch)
        # [TOOL_CALLS]name[ARGS]{...}  (optionally name[CALL_ID]id[ARGS]{...})
        name, ch = yield from self._read_name(ch, "[")
        if name not in self._names:
            return False, _n(ch)
        self._named = name
        ok, ch = yield from self._expect(ch, "[")
        if ok and ch == "C":
            ok, ch = yield from self._expect(ch, "CALL_ID]")
            while ok and ch is not None and ch in _NAME_CHARS:
                ch = yield
            ok = ok and ch == "["
            if ok:
                ch = yield
        if not ok:
            return False, _n(ch)
        ok, ch = yield from self._expect(ch, "ARGS]")
        if not ok:
            return False, _n(ch)
        ch = yield from self._skip_ws(ch)
        if ch != "{":
            return False, _n(ch)
        self._begin_call(name)
        # the _args sink has taken every character of the value
        ok, ch = yield from self._json_value(ch, self._args)
        return ok or self._broke(ch), _n(ch)

    def _function_tag_region(self) -> _Gen:
        """``<function=name>{...}</function>`` (Llama 3.1 custom tools, functionary)."""
        ch = yield
        name, ch = yield from self._read_name(ch, ">")
        if name not in self._names or ch != ">":
            return False, _n(ch)
        self._named = name
        ch = yield
        ch = yield from self._skip_ws(ch)
        if ch == "<":  # no arguments at all
            self._begin_call(name)
            self._args("{}")
        elif ch == "{":
            self._begin_call(name)
            ok, ch = yield from self._json_value(ch, self._args)
            if not ok:
                if self._broke(ch):
                    return (yield from self._swallow(ch, "</function>"))
                return False, _n(ch)
        else:
            return False, _n(ch)
        return (yield from self._closing(ch, "</function>"))

    def _python_tag_region(self) -> _Gen:
        """``<|python_tag|>``: JSON call(s) separated by ``;``, a ``tool.call(...)``, or code."""
        ch = yield
        ch = yield from self._skip_ws(ch)
        if ch == "{":
            while True:
                ok, ch = yield from self._call_object(ch)
                if not ok:
                    return self._broke(ch), _n(ch)
                ch = yield from self._skip_ws(ch)
                if ch != ";":
                    return True, _n(ch)
                ch = yield
                ch = yield from self._skip_ws(ch)
                if ch != "{":
                    return True, _n(ch)
        seen: list[str] = []
        if ch is not None and ch in _IDENT_START:
            ok, ch = yield from self._pythonic_calls(ch, listed=False, seen=seen)
            if ok:
                return True, _n(ch)
            if self._region_calls:
                return False, _n(ch)
        if self._code_tool is None or (not seen and ch is None):
            return False, _n(ch)
        # Raw code for the code interpreter: stream it as {"code": "..."}.
        self._begin_call(self._code_tool)
        self._args('{"code": ' + json.dumps("".join(seen), ensure_ascii=False)[:-1])
        held = ""  # trailing whitespace is dropped at the end, so hold it
        while ch is not None:
            if ch in _WS:
                held += ch
            else:
                self._args(json.dumps(held + ch, ensure_ascii=False)[1:-1])
                held = ""
            ch = yield
        self._args('"}')
        return True, 0

    # -- building blocks ---------------------------------------------------------

    def _name_written(self, name: str) -> None:
        """A call object's name string is written whole (its closing quote): a declared tool's name is the call an
        output cut off from here on makes, as when the cut comes after the comma that follows it."""
        if name in self._names:
            self._named = name

    def _skip_ws(self, ch: str | None) -> _Gen:
        while ch is not None and ch in _WS:
            ch = yield
        return ch

    def _expect(self, ch: str | None, literal: str) -> _Gen:
        for c in literal:
            if ch != c:
                return False, ch
            ch = yield
        return True, ch

    def _read_name(self, ch: str | None, stop: str) -> _Gen:
        name = ""
        while ch is not None and ch in _NAME_CHARS and len(name) < _MAX_NAME:
            name += ch
            ch = yield
        return (name if ch == stop else ""), ch

    def _closing(self, ch: str | None, tag: str) -> _Gen:
        """Swallow optional whitespace and ``tag`` after a call; hand back anything else."""
        ch = yield from self._skip_ws(ch)
        for k, c in enumerate(tag):
            if ch is None and k:  # the output ended inside the closing tag: its markup, never text
                self._consume()
                return True, 0
            if ch != c:
                return True, len(self._raw)
            if k == len(tag) - 1:
                self._consume()
                return True, 0
            ch = yield
        return True, 0  # pragma: no cover - tag is never empty

    def _json_calls(self, ch: str | None, *, pythonic: bool) -> _Gen:
        """One call object, or an array of them (or of Python-style calls)."""
        if ch == "{":
            return (yield from self._call_object(ch))
        ch = yield  # past '['
        ch = yield from self._skip_ws(ch)
        if pythonic and ch is not None and ch in _IDENT_START:
            return (yield from self._pythonic_calls(ch, listed=True, seen=[]))
        while True:
            if ch != "{":
                return False, ch
            ok, ch = yield from self._call_object(ch)
            if not ok:
                return False, ch
            ch = yield from self._skip_ws(ch)
            if ch == ",":
                ch = yield
                ch = yield from self._skip_ws(ch)
                continue
            if ch == "]":
                self._consume()
                ch = yield
                return True, ch
            return False, ch

    def _call_object(self, ch: str | None) -> _Gen:
        """``{"name": ..., "arguments"|"parameters": ...}`` with other keys ignored.

        Commits as soon as the name is known to be a tool and the arguments
        object has begun; arguments given as a JSON string or before the name
        are emitted in one piece when both are known.
        """
        name: str | None = None
        args: str | None = None  # complete arguments text, held while the name is unknown
        args_seen = False
        committed = False
        ch = yield  # past '{'
        ch = yield from self._skip_ws(ch)
        while True:
            if ch != '"':
                return False, ch
            ok, ch, key = yield from self._json_string(ch, None)
            if not ok:
                return False, ch
            ch = yield from self._skip_ws(ch)
            if ch != ":":
                return False, ch
            ch = yield
            ch = yield from self._skip_ws(ch)
            if (key == "name" or (key == "function" and ch == '"')) and name is None:
                if ch != '"':
                    return False, ch
                ok, ch, value = yield from self._json_string(ch, None, self._name_written)
                if not ok or value not in self._names:
                    return False, ch
                name = value
                self._named = name
                if args is not None:
                    self._begin_call(name)
                    self._args(args)
                    committed = True
            elif key in ("arguments", "parameters") and not args_seen:
                args_seen = True
                if ch == "{":
                    buf: list[str] = []
                    if name is not None:
                        self._begin_call(name)
                        committed = True
                        sink: Callable[[str], None] = self._args
                    else:
                        sink = buf.append
                    ok, ch = yield from self._json_value(ch, sink)
                    if not ok:
                        return False, ch
                    if not committed:
                        args = "".join(buf)
                elif ch == '"':
                    ok, ch, value = yield from self._json_string(ch, None)
                    if not ok or not _is_json_object(value):
                        return False, ch
                    if name is not None:
                        self._begin_call(name)
                        self._args(value)
                        committed = True
                    else:
                        args = value
                else:
                    return False, ch
            else:
                ok, ch = yield from self._json_value(ch, None)
                if not ok:
                    return False, ch
            ch = yield from self._skip_ws(ch)
            if ch == ",":
                ch = yield
                ch = yield from self._skip_ws(ch)
                continue
            if ch == "}":
                break
            return False, ch
        if not committed:
            if name is None:
                ch = yield  # past '}', so that the '}' stays with the rejected text
                return False, ch
            self._begin_call(name)
            self._args(args if args is not None else "{}")
        self._consume()
        ch = yield
        return True, ch

    def _pythonic_calls(self, ch: str | None, *, listed: bool, seen: list[str]) -> _Gen:
        """``name(key=value, ...)`` calls; in a list (``[a(), b()]``) when ``listed``.

        The characters read are appended to ``seen`` so that a caller can fall
        back to treating them as code.
        """
        while True:
            src: list[str] = []
            while ch is not None and ch in _IDENT and len(src) < _MAX_NAME:
                src.append(ch)
                seen.append(ch)
                ch = yield
            ident = "".join(src)
            name = ident[:-5] if ident.endswith(".call") else ident
            if ch != "(" or name not in self._names:
                return False, ch
            self._named = name
            # read up to the matching ')', minding strings and nesting
            depth = 0
            quote: str | None = None
            escaped = False
            while True:
                if ch is None:
                    return False, ch
                src.append(ch)
                seen.append(ch)
                if quote:
                    if escaped:
                        escaped = False
                    elif ch == "\\":
                        escaped = True
                    elif ch == quote:
                        quote = None
                elif ch in "'\"":
                    quote = ch
                elif ch in "([{":
                    depth += 1
                elif ch in ")]}":
                    depth -= 1
                    if depth == 0:
                        break
                ch = yield
            arguments = _pythonic_arguments("".join(src))
            if arguments is None:
                ch = yield
                return False, ch
            self._begin_call(name)
            self._args(arguments)
            self._consume()
            ch = yield
            if not listed:
                return True, ch
            ch = yield from self._skip_ws(ch)
            if ch == "]":
                self._consume()
                ch = yield
                return True, ch
            if ch != ",":
                return False, ch
            ch = yield
            ch = yield from self._skip_ws(ch)

    # -- JSON scanning (validating, one character at a time) ------------------------

    def _json_value(self, ch: str | None, sink: Callable[[str], None] | None, depth: int = 0) -> _Gen:
        """Scan one JSON value starting at ``ch``; feed its characters to ``sink``.

        Arrays and objects nested deeper than :data:`_MAX_JSON_DEPTH` are no call's arguments (``ok`` false, the
        text stays text): each level is a generator more in the ``yield from`` chain, and a model writing a
        thousand ``[`` ended the stream in a ``RecursionError``.

        Returns ``(ok, next_char)``. What reaches ``sink`` can always be finished into valid JSON by appending
        (see :func:`_finish_json`): a comma waits for the member after it, a number or literal until it is
        whole, an escape until it is complete. So a call whose JSON breaks off after its arguments began to
        stream still gets valid arguments.
        """
        if ch == "{" or ch == "[":
            if depth >= _MAX_JSON_DEPTH:
                return False, ch
            close = "}" if ch == "{" else "]"
            is_obj = ch == "{"
            if sink:
                sink(ch)
            ch = yield
            ch = yield from self._skip_ws_into(ch, sink)
            if ch == close:
                if sink:
                    sink(ch)
                ch = yield
                return True, ch
            while True:
                if is_obj:
                    if ch != '"':
                        return False, ch
                    ok, ch, _ = yield from self._json_string(ch, sink)
                    if not ok:
                        return False, ch
                    ch = yield from self._skip_ws_into(ch, sink)
                    if ch != ":":
                        return False, ch
                    if sink:
                        sink(ch)
                    ch = yield
                    ch = yield from self._skip_ws_into(ch, sink)
                ok, ch = yield from self._json_value(ch, sink, depth + 1)
                if not ok:
                    return False, ch
                ch = yield from self._skip_ws_into(ch, sink)
                if ch == ",":
                    held = [ch]
                    ch = yield
                    ch = yield from self._skip_ws_into(ch, held.append)
                    # the comma shows only once what follows it can start a member
                    if ch is None or (ch != '"' if is_obj else ch not in _VALUE_START):
                        return False, ch
                    if sink:
                        sink("".join(held))
                    continue
                if ch == close:
                    if sink:
                        sink(ch)
                    ch = yield
                    return True, ch
                return False, ch
        if ch == '"':
            ok, ch, _ = yield from self._json_string(ch, sink)
            return ok, ch
        if ch is not None and (ch == "-" or ch.isdigit()):
            return (yield from self._json_number(ch, sink))
        for literal in ("true", "false", "null"):
            if ch == literal[0]:
                for c in literal:
                    if ch != c:
                        return False, ch
                    ch = yield
                if sink:
                    sink(literal)
                return True, ch
        return False, ch

    def _skip_ws_into(self, ch: str | None, sink: Callable[[str], None] | None) -> _Gen:
        while ch is not None and ch in _WS:
            if sink:
                sink(ch)
            ch = yield
        return ch

    def _json_string(self, ch: str | None, sink: Callable[[str], None] | None,
                     closed: Callable[[str], None] | None = None) -> _Gen:
        """Scan a JSON string; returns ``(ok, next_char, decoded)``. Escapes are checked as they come and
        reach ``sink`` whole. ``closed`` is told the decoded string at its closing quote, before the next
        character is read: what the string says is settled there (a function name is written whole at its
        quote, so an output cut right after it still names the call)."""
        raw = [ch]
        if sink:
            sink(ch)
        ch = yield
        while True:
            if ch is None or ord(ch) < 0x20:
                return False, ch, ""
            if ch == "\\":
                esc = [ch]
                ch = yield
                if ch is None or ch not in _ESCAPES:
                    return False, ch, ""
                esc.append(ch)
                if ch == "u":
                    for _ in range(4):
                        ch = yield
                        if ch is None or ch not in _HEX:
                            return False, ch, ""
                        esc.append(ch)
                raw += esc
                if sink:
                    sink("".join(esc))
                ch = yield
                continue
            raw.append(ch)
            if sink:
                sink(ch)
            if ch == '"':
                break
            ch = yield
        try:
            value = loads_json("".join(raw))
        except ValueError:
            ch = yield
            return False, ch, ""
        if closed is not None:
            closed(value)
        ch = yield
        return True, ch, value

    def _json_number(self, ch: str, sink: Callable[[str], None] | None) -> _Gen:
        text = ""
        while ch is not None and ch in "+-0123456789.eE":
            text += ch
            ch = yield
        if not json_number(text):  # (1e999 too: past a double's range, no client could send it back)
            return False, ch
        if sink:
            sink(text)  # whole: a cut number (``1.``) is not JSON
        return True, ch


def _n(ch: str | None) -> int:
    """How many characters to hand back: the unconsumed current one, if any."""
    return 0 if ch is None else 1


def _earliest_marker(buf: str) -> tuple[int, str]:
    best, which = -1, ""
    for m in _MARKERS:
        i = buf.find(m)
        if i >= 0 and (best < 0 or i < best):
            best, which = i, m
    return best, which


def partial_suffix(text: str, markers: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``markers``."""
    longest = 0
    for m in markers:
        for k in range(min(len(m) - 1, len(text)), longest, -1):
            if text.endswith(m[:k]):
                longest = k
                break
    return longest


def _finish_json(args: str) -> str:
    """What to append to streamed JSON ``args`` (a prefix of a JSON value, as the scanner passes it on) to make
    it complete: a key being written gets its quote and a null value, then the open strings and containers
    close. "" when it is complete already."""
    from .formats.text import scan_json

    safe, end, _, closure = scan_json(args)
    if end >= 0 or not args.strip(_WS):
        return ""
    try:
        # a last value that is whole (a number or literal, which the scanner holds back while it may go on)
        loads_json(args + closure)
        return closure
    except ValueError:
        pass
    tail = args[safe:].strip(_WS)  # a member whose value has not started (the scanner holds those back)
    if tail.startswith(","):  # (the comma before it, which the scanner held until the member's key began)
        tail = tail[1:].lstrip(_WS)
    if not tail:
        return closure
    if tail.endswith(":"):
        return " null" + closure
    try:
        loads_json(tail)
        return ": null" + closure
    except ValueError:
        return '": null' + closure


def _is_json_object(text: str) -> bool:
    """Whether ``text`` (arguments written as a JSON string) holds arguments: an object a client can send back
    (:func:`~jan.json_text.sendable_arguments`), as the ones written as an object."""
    try:
        value = loads_json(text)
    except ValueError:
        return False
    return sendable_arguments(value)


def _pythonic_arguments(src: str) -> str | None:
    """``name(key=literal, ...)`` -> JSON arguments text, or None when it is not such a call."""
    try:
        node = ast.parse(src.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.Call) or node.args:
        return None
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError, TypeError):
            return None
    try:
        return json.dumps(args, ensure_ascii=False)
    except (TypeError, ValueError):  # sets, bytes, complex numbers...
        return None


def parse_tool_calls(
    text: str, tools: Iterable[Any] | None, *, id_factory: Callable[[], str] | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """Split a finished model output into ``(content, tool_calls)``.

    ``tool_calls`` is a list in the OpenAI message shape
    (``{"id", "type": "function", "function": {"name", "arguments"}}``, the
    arguments a JSON string); ``content`` is the remaining text or ``None``.
    Same result as :class:`ToolCallStreamParser` fed in any pieces.
    """
    parser = ToolCallStreamParser(tools, id_factory=id_factory)
    parser.feed(text)
    parser.finish()
    return parser.content, parser.tool_calls


# --------------------------------------------------------------------------
# Forcing a call with a grammar
# --------------------------------------------------------------------------


def _function_of(tool: Any) -> Mapping[str, Any]:
    if isinstance(tool, Mapping):
        fn = tool.get("function")
        return fn if isinstance(fn, Mapping) else tool
    raise GrammarError(f"a tool must be an object, got {type(tool).__name__}")


def tool_call_grammar(
    tools: Sequence[Any],
    tool_choice: str | Mapping[str, Any] = "required",
    *,
    parallel_tool_calls: bool = True,
) -> str:
    """GBNF that forces the model to answer with Hermes-style tool call(s) only.

    The output is one (or, with ``parallel_tool_calls``, one or more)
    ``<tool_call>{"name": "<fn>", "arguments": {...}}</tool_call>`` blocks,
    the arguments constrained by each function's ``parameters`` schema; that
    is a format :func:`parse_tool_calls` reads back.

    ``tool_choice`` is ``"required"`` (or ``"any"``: any of ``tools``), a
    function name, or ``{"type": "function", "function": {"name": ...}}``
    (that one function); ``"auto"``/``"none"`` force nothing and are errors.
    Raises :class:`GrammarError` (a ``ValueError``) for an unknown name or no
    tools.
    """
    funcs = [_function_of(t) for t in tools or ()]
    funcs = [f for f in funcs if isinstance(f.get("name"), str) and f.get("name")]
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        wanted = fn.get("name") if isinstance(fn, Mapping) else tool_choice.get("name")
        if not isinstance(wanted, str):
            raise GrammarError("tool_choice must name a function")
        funcs = [f for f in funcs if f["name"] == wanted]
        if not funcs:
            raise GrammarError(f"tool_choice names {wanted!r}, which is not in tools")
    elif tool_choice in ("auto", "none"):
        raise GrammarError(f"tool_choice {tool_choice!r} does not force a call; no grammar applies")
    elif tool_choice not in ("required", "any"):
        wanted = tool_choice
        funcs = [f for f in funcs if f["name"] == wanted]
        if not funcs:
            raise GrammarError(f"tool_choice names {wanted!r}, which is not in tools")
    if not funcs:
        raise GrammarError("tool_choice requires at least one tool")

    b = GrammarBuilder()
    ws = b.primitive("ws")
    alts = []
    for f in funcs:
        try:
            args_rule = b.add_schema(tool_parameters_schema(f), f"{f['name']}-args")
        except GrammarError as exc:  # (said of the tool's field, the place in its schema kept)
            i = next((k for k, t in enumerate(tools) if t is f or (isinstance(t, Mapping) and t.get("function") is f)),
                     None)
            raise exc.said_of(f"tools[{i}].function.parameters" if i is not None else "tools") from None
        name_lit = gbnf_literal(json.dumps(f["name"], ensure_ascii=False))
        alts.append(
            b.add_rule(f"{f['name']}-call", f'{name_lit} {ws} "," {ws} "\\"arguments\\"" {ws} ":" {ws} {args_rule}')
        )
    body = alts[0] if len(alts) == 1 else "( " + " | ".join(alts) + " )"
    call = b.add_rule(
        "tool-call",
        f'"<tool_call>" {ws} "{{" {ws} "\\"name\\"" {ws} ":" {ws} {body} "}}" {ws} "</tool_call>"',
    )
    b.add_rule("root", f"{call} ( {ws} {call} )*" if parallel_tool_calls else call)
    return b.format()
