"""JSON text that came from outside (a client's tool-call arguments, a model's output, a file someone edited, an
upstream's answer), parsed so that its only failure is :class:`json.JSONDecodeError`.

``json.loads`` raises ``RecursionError`` for arrays or objects nested deeper than the interpreter's recursion
limit (a thousand ``[``); every caller's "not JSON" branch (``except ValueError`` / ``except JSONDecodeError``)
let that through, as a 500 or a traceback. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_ARGUMENTS_DEPTH", "QUOTED_VALUE_CHARS", "escape_lone_surrogates", "fix_lone_surrogate_escapes",
           "double_of", "finite_number", "json_number", "json_text", "json_type_name", "loads_json", "nests_deeper",
           "one_line_json", "replace_lone_surrogates", "sendable_arguments", "utf8_json"]

#: Arrays and objects nested in one tool call's arguments at most (the arguments object itself is level 1), in
#: every chat format's parser: a client sends a call back inside its request body, which may nest 64 levels at most
#: (``jan.server.validation.MAX_JSON_DEPTH``), and the deepest a dialect puts arguments there is level 7 (Ollama's
#: ``messages[].tool_calls[].function.arguments``; Anthropic's ``input`` is level 6). Deeper arguments, which only a
#: model gone astray writes, broke off here like invalid JSON does, rather than make a reply no client could send
#: back (a 400 on the next turn).
MAX_ARGUMENTS_DEPTH = 48

# A UTF-16 surrogate code point: in a Python str read from JSON, always a lone one (json.loads joins a pair into its
# character), since JSON's ``\ud800`` escape parses into one; and a model's JSON may write such an escape (its
# grammar allows any ``\uXXXX``), which a tool call's arguments or input read back into a str.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_lone_surrogates(text: str) -> str:
    """JSON text written with ``ensure_ascii=False``, its lone surrogates (which have no UTF-8 form: writing the
    text out as UTF-8 raised UnicodeEncodeError, a stream cut off, a reply a 500, a store write refused) turned back
    into their ``\\uXXXX`` escapes: the same JSON value. Only for JSON text, where such a code point can only be in a
    string."""
    if _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# What JSON text written with ``ensure_ascii=False`` may hold that no line of a line-framed stream can: a lone
# surrogate (no UTF-8 form, above), and the three line breaks JSON leaves unescaped in a string but Python's
# ``str.splitlines`` breaks a line at: NEL (U+0085) and the line and paragraph separators (U+2028, U+2029). The
# official ollama client reads an NDJSON stream with httpx's ``iter_lines``, which splits as ``str.splitlines`` does
# (so do many hand-written SSE readers): a model that wrote one of these in its answer or a tool call's arguments cut
# that line in two, and the client failed on JSON that ended mid-string. (Go's encoder, Ollama's own, escapes
# U+2028 and U+2029 always; the other control characters ``splitlines`` knows are below U+0020, which JSON escapes.)
_NOT_IN_A_LINE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def one_line_json(text: str) -> str:
    """JSON text written with ``ensure_ascii=False``, fit for one line of NDJSON, JSONL or an SSE ``data:`` line and
    for UTF-8: each lone surrogate (:func:`escape_lone_surrogates`) and each U+0085, U+2028 and U+2029 written as its
    ``\\uXXXX`` escape, the same JSON value. Only for JSON text, where such a code point can only be in a string."""
    if _NOT_IN_A_LINE.search(text) is None:
        return text
    return _NOT_IN_A_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def utf8_json(text: str) -> bytes:
    """JSON text written with ``ensure_ascii=False`` (or lines of it: an SSE event's framing) as UTF-8 bytes, one
    JSON text to a line however a reader splits lines (:func:`one_line_json`)."""
    return one_line_json(text).encode("utf-8")


# What may put a lone surrogate into a parsed value: a high or low surrogate's escape, or the code point itself (in a
# str, or in bytes, which json.loads decodes with "surrogatepass").
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE_HINT_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate code point as U+FFFD (what a UTF-8 decoder makes of bytes that are no
    character, and what llama.cpp's own output holds for them); a high one right before a low one is read as their
    pair, the character they spell."""
    if _LONE_SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# A backslash and what it escapes, read left to right (so ``\\\\ud800``, an escaped backslash then text, is no
# escape): a high surrogate's escape with its low one's (a pair), a lone surrogate's escape, or any other.
_ESCAPE = re.compile(r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
                     re.S)


def fix_lone_surrogate_escapes(text: str) -> str:
    """JSON text (as far as it is written) with each lone surrogate's escape (``\\ud800`` without its pair) written
    ``\\ufffd``: the value :func:`loads_json` reads from it, in text of the same length (a stream's offsets into it
    hold). A high surrogate's escape at the very end is read as lone: a streaming caller holds one back until what
    follows it is known (``jan.templates.formats.text.scan_json``)."""
    if "\\u" not in text:
        return text
    return _ESCAPE.sub(lambda m: "\\ufffd" if m.group(1) else m.group(), text)


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON; its dicts and lists changed in place, so a caller's ``object_pairs_hook`` type stays)
    with every string and key passed through :func:`replace_lone_surrogates`; iterative."""
    if isinstance(value, str):
        return replace_lone_surrogates(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            for i, child in enumerate(item):
                if isinstance(child, str):
                    item[i] = replace_lone_surrogates(child)
                elif isinstance(child, (list, dict)):
                    stack.append(child)
        elif isinstance(item, dict):
            pairs = list(item.items())
            if any(_LONE_SURROGATE.search(key) for key, _ in pairs):  # (keys rewritten in their order)
                item.clear()
                for key, child in pairs:
                    item[replace_lone_surrogates(key)] = child
            for key, child in item.items():
                if isinstance(child, str):
                    item[key] = replace_lone_surrogates(child)
                elif isinstance(child, (list, dict)):
                    stack.append(child)
    return value


def data_file_text(data: bytes) -> str:
    """The text of a JSON or JSONL file of the data folder: UTF-8, a leading byte-order mark left out (Windows
    editors, Notepad among them, write one, which RFC 8259 lets a parser ignore). ``UnicodeDecodeError`` for bytes
    that are no UTF-8. Kept, the mark made a hand-edited thread.json (model.json, settings.json, mcp.json) read as
    damaged, and the first line of a messages.jsonl as no JSON: that message was skipped, and dropped from the file
    by the next rewrite."""
    return data.decode("utf-8-sig")


def loads_json(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)``; JSON nested too deeply to parse is a :class:`json.JSONDecodeError` too.

    A lone UTF-16 surrogate in a string or key (JSON's ``"\\ud800"`` escape without its pair, which a model's output
    may write: its grammar allows any ``\\uXXXX``) is read as U+FFFD: such a code point has no UTF-8 form, so a value
    holding it could not be streamed, stored, or shown to a model again (the engine refuses it in a prompt) — one
    rule for everything jan reads that it did not check itself: a model's tool calls in every format, arguments a
    dialect turns into an object, stored documents, an upstream's answers. A pair's two escapes
    (``"\\ud83d\\ude00"``) are still the one character they spell. (A client's request body is read by
    ``jan.server.validation``, which refuses such an escape instead.)"""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply to read", text if isinstance(text, str) else "", 0) \
            from None
    hint = _SURROGATE_HINT if isinstance(text, str) else _SURROGATE_HINT_BYTES
    return _without_lone_surrogates(value) if hint.search(text) is not None else value


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests arrays/objects deeper than ``limit`` levels (a container at the top is
    level 1); iterative, no recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def double_of(value: Any) -> float:
    """``float(value)`` for a real number (an int, a float, numpy's), with an integer past a double's range (about
    1.8e308: a 400-digit JSON integer, which Python reads exactly) read as the infinity of its sign, as Python's
    parser reads ``1e999``: ``float()`` of such an integer raises OverflowError, which no caller's check of a bad
    number (``math.isfinite``, a bound) expects, and which ended requests as 500s. TypeError for a non-number."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def finite_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number a double holds: an int or a float (not a bool), neither NaN nor an
    infinity, nor an integer past a double's range (:func:`double_of`)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(double_of(value))


def json_number(text: str) -> bool:
    """Whether ``text`` is one JSON number that a request body may hold: within a double's range. ``1e999`` is valid
    JSON that Python reads as infinity, which jan's strict JSON out cannot write (a 500) and its request reader
    refuses (a 400, ``jan.server.validation``): in a model's tool-call arguments it breaks them off, as invalid JSON."""
    try:
        value = loads_json(text)
    except ValueError:
        return False
    return finite_number(value)


def sendable_arguments(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) can be a tool call's arguments: an object nested no deeper than
    :data:`MAX_ARGUMENTS_DEPTH`, holding no number past a double's range (see :func:`json_number`), so that a client
    can send the call back."""
    if not isinstance(value, dict) or nests_deeper(value, MAX_ARGUMENTS_DEPTH):
        return False
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (int, float)) and not isinstance(item, bool) and not math.isfinite(double_of(item)):
            return False  # (a 400-digit integer too: the request reader refuses it, as it refuses 1e999)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def json_type_name(value: Any) -> str:
    """The JSON type of a parsed value, in the words an error message tells it a client or a file wrote it:
    ``"null"``, ``"a boolean"``, ``"a number"``, ``"a string"``, ``"an array"``, ``"an object"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


#: The most characters of a client's value an error message quotes (a 1 MB string is not sent back whole).
QUOTED_VALUE_CHARS = 120


def json_text(value: Any) -> str:
    """A client's value as its JSON spells it, for error messages: ``true``, ``null``, ``"5x"``, ``[1, 2]`` — never
    Python's ``True``, ``None`` or ``'5x'``, which no client sent. Long values are cut (with ``...``)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # (a value no JSON body could hold: said as Python writes it)
        text = str(value)
    return text if len(text) <= QUOTED_VALUE_CHARS else text[:QUOTED_VALUE_CHARS] + "..."
