"""JSON text that came from outside (a client's tool-call arguments, a model's output, a file someone edited, an
upstream's answer), parsed so that its only failure is :class:`json.JSONDecodeError`.

``json.loads`` raises ``RecursionError`` for arrays or objects nested deeper than the interpreter's recursion
limit (a thousand ``[``); every caller's "not JSON" branch (``except ValueError`` / ``except JSONDecodeError``)
let that through, as a 500 or a traceback. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_json"]


def loads_json(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)``; JSON nested too deeply to parse is a :class:`json.JSONDecodeError` too."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply to read", text if isinstance(text, str) else "", 0) \
            from None
