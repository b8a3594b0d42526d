"""Small helpers shared by the resource stores: clock, JSON encoding, argument checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from jan.json_text import utf8_json

from .errors import InvalidArgumentError
from .ids import clock_ms, stamp_ms


class _Unset:
    """Marks an optional argument the caller did not pass (``None`` is a real value)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()

# Timestamps above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 100_000_000_000


def now_ms() -> int:
    """Jan-style timestamp (``created``/``updated``), in milliseconds: strictly later than every stamp and id made
    before it in this process (:func:`jan.store.ids.stamp_ms`), so lists sorted by it keep creation order."""
    return stamp_ms()


def now_s() -> int:
    """OpenAI-style timestamp (``created_at``/``completed_at``), in seconds: from the same clock as :func:`now_ms`
    and the ids, so an id made after it never carries an earlier second (a deleted file's id places its cursor)."""
    return clock_ms() // 1000


def as_seconds(value: Any) -> int | None:
    """Read a timestamp that may be seconds or milliseconds; ``None`` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value // 1000) if value >= _MS_THRESHOLD else int(value)


def as_millis(value: Any) -> int | None:
    """Read a timestamp that may be seconds or milliseconds as milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value >= _MS_THRESHOLD else int(value * 1000)


def dumps_json(doc: Any, *, indent: int | None = 2) -> bytes:
    """Serialize strictly (no NaN, only JSON types) so every file stays standard JSON.

    Done before touching the disk: a bad value in a request must fail the
    request, not leave a half-updated folder.
    """
    try:
        if indent is None:
            text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        else:
            text = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent) + "\n"
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"value is not JSON-serializable: {exc}") from exc
    return utf8_json(text)  # (a lone surrogate, from a model's JSON escape, kept as its escape)


def check_str(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, not {type(value).__name__}")
    return value


def check_dict(name: str, value: Any) -> dict[str, Any]:
    """Accept a mapping with string keys and return a plain ``dict`` copy; ``None`` gives ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{name} must be an object, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"{name} keys must be strings")
    return dict(value)


def check_list(name: str, value: Any) -> list[Any]:
    """Accept a list/tuple and return a list copy; ``None`` gives ``[]``."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidArgumentError(f"{name} must be a list, not {type(value).__name__}")
    return list(value)


#: JSON types by name, for :func:`field_type_error` (a bool is no whole number, a whole number is a number).
_KINDS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "number": (int, float), "dict": (dict,),
                                       "list": (list,), "bool": (bool,)}
_WORDS = {"str": "a string", "int": "a whole number", "number": "a number", "dict": "an object", "list": "an array",
          "bool": "true or false"}


def field_type_error(doc: Mapping[str, Any], types: Mapping[str, str]) -> str | None:
    """Which field of a document read from disk is not of the type jan writes there (``types``: field -> "str",
    "int", "number", "dict", "list", "bool"; a field absent or null is no error), in words naming the field and its
    value, or ``None``. Strict, as JSON types are: ``"yes"`` is no boolean, ``"1"`` no whole number, ``true`` no
    number. What a shape check of a stored document (:func:`jan.store.context.register_shape`) says."""
    for key, kind in types.items():
        value = doc.get(key)
        if value is None:
            continue
        wanted = _KINDS[kind]
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            return f"{key} is {str(value)[:40]!r} ({type(value).__name__}), not {_WORDS[kind]}"
    return None
