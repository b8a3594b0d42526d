"""A small validator for the JSON-schema subset that settings schemas use.

Supported keywords: ``type`` (a name or a list), ``enum``, ``const``,
``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
``multipleOf``, ``minLength``, ``maxLength``, ``pattern``, ``items``,
``minItems``, ``maxItems``, ``uniqueItems``, ``properties``, ``required``,
``additionalProperties``, ``anyOf``, ``oneOf``. Other keywords (``title``,
``description``, ``default``, UI hints, ...) are ignored.
"""

from __future__ import annotations

import json
import operator
import re
from typing import Any

__all__ = ["schema_problems", "validate"]

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# The bounds keywords: (keyword, whether the value fails it, the message for the bound).
_NUMBER_BOUNDS = (("minimum", operator.lt, "must be >= {}"), ("maximum", operator.gt, "must be <= {}"),
                  ("exclusiveMinimum", operator.le, "must be > {}"), ("exclusiveMaximum", operator.ge, "must be < {}"))
_STRING_BOUNDS = (("minLength", operator.lt, "must be at least {} characters"),
                  ("maxLength", operator.gt, "must be at most {} characters"))
_LIST_BOUNDS = (("minItems", operator.lt, "must have at least {} items"),
                ("maxItems", operator.gt, "must have at most {} items"))


def _size_errors(path: str, size: int, schema: dict[str, Any], bounds) -> list[tuple[str, str]]:
    return [(path, message.format(schema[key])) for key, fails, message in bounds
            if key in schema and fails(size, schema[key])]


def validate(value: Any, schema: Any, path: str = "") -> list[tuple[str, str]]:
    """Problems of ``value`` against ``schema`` as ``(field path, message)`` pairs; empty if valid."""
    if schema is True or schema is None or schema == {}:
        return []
    if schema is False:
        return [(path, "no value is allowed here")]
    if not isinstance(schema, dict):
        return [(path, f"invalid schema {schema!r}")]
    errors: list[tuple[str, str]] = []

    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        checks = [_TYPES.get(n) for n in names]
        if not any(c is not None and c(value) for c in checks):
            errors.append((path, f"expected {' or '.join(map(str, names))}, got {_describe(value)}"))
            return errors

    if "const" in schema and value != schema["const"]:
        errors.append((path, f"must be {schema['const']!r}"))
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(c) for c in schema["enum"])
        errors.append((path, f"must be one of {choices}, got {json.dumps(value, default=repr)}"))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        errors.extend((path, f"{message.format(schema[key])}, got {value}")
                      for key, fails, message in _NUMBER_BOUNDS if key in schema and fails(value, schema[key]))
        m = schema.get("multipleOf")
        if m and abs(value / m - round(value / m)) > 1e-9:
            errors.append((path, f"must be a multiple of {m}"))

    if isinstance(value, str):
        errors.extend(_size_errors(path, len(value), schema, _STRING_BOUNDS))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append((path, f"must match {schema['pattern']!r}"))

    if isinstance(value, list):
        errors.extend(_size_errors(path, len(value), schema, _LIST_BOUNDS))
        if schema.get("uniqueItems"):
            seen = [json.dumps(v, sort_keys=True, default=repr) for v in value]
            if len(set(seen)) != len(seen):
                errors.append((path, "items must be unique"))
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                errors.extend(validate(item, items, _join(path, i)))

    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                errors.append((_join(path, key), "is required"))
        additional = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors.extend(validate(item, props[key], _join(path, key)))
            elif additional is False:
                errors.append((_join(path, key), "is not a known setting"))
            elif isinstance(additional, dict):
                errors.extend(validate(item, additional, _join(path, key)))

    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if options:
            ok = sum(1 for option in options if not validate(value, option, path))
            if ok == 0 or (keyword == "oneOf" and ok > 1):
                errors.append((path, f"does not match {'exactly one' if keyword == 'oneOf' else 'any'} of the allowed forms"))
    return errors


_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                    "maxLength", "minItems", "maxItems")


def schema_problems(schema: Any, path: str = "") -> list[str]:
    """What makes ``schema`` unusable by :func:`validate` (empty if nothing): a ``type`` that is no JSON type, a
    property, ``items`` or option that is not a schema, a ``pattern`` that is no regular expression, a bound
    that is no number. Such a schema would refuse every value (or none) with a message about the value."""
    where = path or "the schema"
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [f"{where} must be a JSON schema object, not {type(schema).__name__}"]
    problems: list[str] = []
    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        unknown = [n for n in names if not isinstance(n, str) or n not in _TYPES]
        if unknown or not names:
            problems.append(f"{where}: 'type' {json.dumps(t, default=repr)} is not a JSON schema type "
                            f"(one of {', '.join(_TYPES)})")
    for key in _NUMBER_KEYWORDS:
        if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], (int, float))):
            problems.append(f"{where}: {key!r} must be a number")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            problems.append(f"{where}: 'pattern' {schema['pattern']!r} is not a regular expression ({exc})")
    if "enum" in schema and not isinstance(schema["enum"], list):
        problems.append(f"{where}: 'enum' must be a list")
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        problems.append(f"{where}: 'required' must be a list of names")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            problems.append(f"{where}: 'properties' must be an object")
        else:
            for key, sub in props.items():
                problems.extend(schema_problems(sub, _join(path, key)))
    for key in ("items", "additionalProperties"):
        if key in schema:
            problems.extend(schema_problems(schema[key], f"{path}.{key}" if path else key))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = schema[key]
            if not isinstance(options, list):
                problems.append(f"{where}: {key!r} must be a list of schemas")
            else:
                for i, option in enumerate(options):
                    problems.extend(schema_problems(option, f"{path}.{key}[{i}]" if path else f"{key}[{i}]"))
    return problems


def _describe(value: Any) -> str:
    for name, check in _TYPES.items():
        if name != "number" and check(value):
            return f"{name} {json.dumps(value, default=repr)}" if name != "object" else "object"
    if isinstance(value, float):
        return f"number {value}"
    return type(value).__name__
