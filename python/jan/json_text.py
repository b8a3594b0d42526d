"""JSON text that came from outside (a client's tool-call arguments, a model's output, a file someone edited, an
upstream's answer), parsed so that its only failure is :class:`json.JSONDecodeError`.

``json.loads`` raises ``RecursionError`` for arrays or objects nested deeper than the interpreter's recursion
limit (a thousand ``[``); every caller's "not JSON" branch (``except ValueError`` / ``except JSONDecodeError``)
let that through, as a 500 or a traceback. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_type_name", "loads_json"]


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
