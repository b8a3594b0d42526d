"""Tool calls written as one JSON list after a marker; each call appears once its object is complete.

* Command-R7B: ``<|START_ACTION|>[{"tool_call_id": "0", "tool_name": NAME, "parameters": {…}}, …]<|END_ACTION|>``
* firefunction-v2: `` functools[{"name": NAME, "arguments": {…}}, …]``
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .text import WS, hold
from .types import Snapshot

__all__ = ["parse_command_r", "parse_firefunction"]

_DECODER = json.JSONDecoder()


def _list_calls(text: str, start: int, name_keys: tuple[str, ...], arg_keys: tuple[str, ...]) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    pos = start
    n = len(text)
    while pos < n and text[pos] in WS:
        pos += 1
    if pos >= n or text[pos] != "[":
        return calls
    pos += 1
    while True:
        while pos < n and text[pos] in WS + ",":
            pos += 1
        if pos >= n or text[pos] == "]":
            return calls
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            return calls
        if not isinstance(obj, dict):
            return calls
        name = next((obj[k] for k in name_keys if isinstance(obj.get(k), str)), None)
        args = next((obj[k] for k in arg_keys if k in obj), {})
        if isinstance(args, str):
            text_args = args
        else:
            text_args = json.dumps(args, ensure_ascii=False)
        if name:
            calls.append((name, text_args))


def _parse(text: str, final: bool, marker: str, name_keys: tuple[str, ...], arg_keys: tuple[str, ...]) -> Snapshot:
    i = text.find(marker)
    if i < 0:
        held = hold(text, (marker,), final)
        return Snapshot(content=held if final else held.rstrip(WS))
    return Snapshot(content=text[:i].rstrip(WS), calls=_list_calls(text, i + len(marker), name_keys, arg_keys))


def parse_command_r(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Command-R7B ``<|START_ACTION|>`` lists."""
    return _parse(text, final, "<|START_ACTION|>", ("tool_name", "name"), ("parameters", "arguments"))


def parse_firefunction(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """firefunction-v2 ``functools[...]`` lists."""
    return _parse(text, final, "functools", ("name",), ("arguments", "parameters"))
