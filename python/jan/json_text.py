"""JSON text that came from outside (a client's tool-call arguments, a model's output, a file someone edited, an
upstream's answer), parsed so that its only failure is :class:`json.JSONDecodeError`.

``json.loads`` raises ``RecursionError`` for arrays or objects nested deeper than the interpreter's recursion
limit (a thousand ``[``); every caller's "not JSON" branch (``except ValueError`` / ``except JSONDecodeError``)
let that through, as a 500 or a traceback. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["QUOTED_VALUE_CHARS", "json_text", "json_type_name", "loads_json"]


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
