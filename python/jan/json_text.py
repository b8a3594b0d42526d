"""JSON text that came from outside (a client's tool-call arguments, a model's output, a file someone edited, an
upstream's answer), parsed so that its only failure is :class:`json.JSONDecodeError`.

``json.loads`` raises ``RecursionError`` for arrays or objects nested deeper than the interpreter's recursion
limit (a thousand ``[``); every caller's "not JSON" branch (``except ValueError`` / ``except JSONDecodeError``)
let that through, as a 500 or a traceback. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["QUOTED_VALUE_CHARS", "escape_lone_surrogates", "json_text", "json_type_name", "loads_json", "utf8_json"]

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


def utf8_json(text: str) -> bytes:
    """JSON text written with ``ensure_ascii=False`` as UTF-8 bytes, a lone surrogate in it escaped
    (:func:`escape_lone_surrogates`); the common case costs one encode."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_lone_surrogates(text).encode("utf-8")


def loads_json(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)``; JSON nested too deeply to parse is a :class:`json.JSONDecodeError` too."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply to read", text if isinstance(text, str) else "", 0) \
            from None


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
