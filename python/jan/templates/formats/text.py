"""Small text helpers shared by the format parsers."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

# One definition for the streaming tool-call parser and the format parsers.
from ..tool_calls import partial_suffix

__all__ = ["partial_suffix", "hold", "find_first", "tool_schemas", "json_value_text", "WS"]

WS = " \t\r\n"


def hold(text: str, markers: Iterable[str], final: bool) -> str:
    """``text`` without a trailing partial marker (kept back until the next piece decides), unless ``final``."""
    if final:
        return text
    n = partial_suffix(text, markers)
    return text[: len(text) - n] if n else text


def find_first(text: str, markers: Iterable[str], start: int = 0) -> tuple[int, str]:
    """Position and text of the earliest of ``markers`` in ``text`` from ``start``; ``(-1, "")`` if none."""
    best, which = -1, ""
    for m in markers:
        i = text.find(m, start)
        if i >= 0 and (best < 0 or i < best):
            best, which = i, m
    return best, which


def tool_schemas(tools: Iterable[Any] | None) -> dict[str, Mapping[str, Any]]:
    """Function name -> its ``parameters`` JSON schema, from OpenAI tool dicts."""
    out: dict[str, Mapping[str, Any]] = {}
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = fn.get("name")
        if isinstance(name, str) and name:
            params = fn.get("parameters")
            out[name] = params if isinstance(params, Mapping) else {}
    return out


def _param_type(schema: Mapping[str, Any], key: str) -> Any:
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    prop = props.get(key) if isinstance(props, Mapping) else None
    return prop.get("type") if isinstance(prop, Mapping) else None


def is_string_param(schema: Mapping[str, Any], key: str) -> bool:
    """Whether parameter ``key`` is a plain string (its value is taken verbatim, not as JSON)."""
    t = _param_type(schema, key)
    return t == "string" or (isinstance(t, list) and t and all(x in ("string", "null") for x in t) and "string" in t)


def json_value_text(schema: Mapping[str, Any], key: str, raw: str) -> str:
    """JSON text of an XML-style parameter value: verbatim string for string parameters, else parsed JSON.

    A non-string value that is not valid JSON stays a string (what the model wrote).
    """
    if not is_string_param(schema, key):
        try:
            return json.dumps(json.loads(raw), ensure_ascii=False)
        except ValueError:
            pass
    return json.dumps(raw, ensure_ascii=False)


def partial_json_string(raw: str) -> str:
    """JSON text of the string ``raw`` without its closing quote: a prefix of the finished value's text."""
    return json.dumps(raw, ensure_ascii=False)[:-1]
