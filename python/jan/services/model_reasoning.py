"""A model.json's thinking defaults (``settings.reasoning_effort``, ``reasoning_format``, ``reasoning_budget``):
the one reading of them, for every request to the model and for the check before they are stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jan.services.errors import RequestError
from jan.templates.formats import ReasoningRequest

#: model.json ``settings`` key -> the :class:`ReasoningRequest` field it is the default of.
REASONING_SETTINGS = {"reasoning_effort": "effort", "reasoning_format": "format", "reasoning_budget": "budget_tokens"}


def reasoning_budget(value: Any, name: str = "reasoning_budget") -> int | None:
    """A thinking budget as a :class:`ReasoningRequest` takes it (None and -1: no cap); ValueError naming ``name``
    for a value that is no integer."""
    if value is None or (value == -1 and not isinstance(value, bool)):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer (-1: no limit), got {value!r}")
    return value


def model_reasoning(settings: Any, keys: Any = None, *, prefix: str = "settings") -> ReasoningRequest:
    """The thinking defaults a model.json's ``settings`` give every request (``keys``: only those of
    :data:`REASONING_SETTINGS` to read; None: all). :class:`RequestError` naming the field (``<prefix>.reasoning_budget``)
    for a value no request could use, so that storing it is refused and a hand-edited one names itself."""
    if not isinstance(settings, Mapping):
        return ReasoningRequest()
    given: dict[str, Any] = {}
    for key, field in REASONING_SETTINGS.items():
        value = settings.get(key)
        if value is None or (keys is not None and key not in keys):
            continue
        param = f"{prefix}.{key}" if prefix else key
        try:
            if field == "budget_tokens":
                value = reasoning_budget(value, key)
            given[field] = getattr(ReasoningRequest(**{field: value}), field)
        except (TypeError, ValueError) as exc:
            text = str(exc)
            detail = text[len(key):].lstrip(": ") if text.startswith(key) else text
            raise RequestError(f"{param}: {detail}", param=param, code="invalid_value") from None
    return ReasoningRequest(**given)
