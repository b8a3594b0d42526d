"""Tool calls written as one JSON list after a marker; a call shows once its name is read, its arguments streaming.

* Command-R7B: ``<|START_ACTION|>[{"tool_call_id": "0", "tool_name": NAME, "parameters": {…}}, …]<|END_ACTION|>``
* firefunction-v2: `` functools[{"name": NAME, "arguments": {…}}, …]``
* Apriel 1.5/1.6: ``<tool_calls>[{"name": NAME, "arguments": {…}}, …]</tool_calls>``
* Apertus: ``<|tools_prefix|>[{NAME: {…}}, …]<|tools_suffix|>`` (each call an object of one member, named after
  the function)
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from jan.json_text import loads_json, sendable_arguments
from .marked import PENDING, Block, named, parse_marked
from .text import WS, hold, json_arguments, scan_json
from .types import Snapshot

__all__ = ["parse_apertus", "parse_apriel", "parse_command_r", "parse_firefunction"]

# A call object's name member, then its arguments member (scalar members such as ``tool_call_id`` may come before
# or between): what lets a call show, and its arguments stream, before its object is complete.
_SCALAR_MEMBER = r'"[^"\\]*"\s*:\s*(?:"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)\s*,\s*'
_HEAD = re.compile(
    r'\{\s*(?:' + _SCALAR_MEMBER + r')*?"(?:tool_name|name)"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*(?:'
    + _SCALAR_MEMBER + r')*?"(?:parameters|arguments)"\s*:\s*(?=\{)'
)
# Apertus's short form: the object's one member is named after the function, its value the arguments
_SHORT_HEAD = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"\s*:\s*(?=\{)')
# A call object's name as far as it is whole, its arguments member not begun yet (what a call cut off there names):
# whole at its closing quote, as in every family (the generic parser's JSON names too)
_NAME_HEAD = re.compile(r'\{\s*(?:' + _SCALAR_MEMBER + r')*?"(?:tool_name|name)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_SHORT_NAME_HEAD = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"')


def _object_call(obj: Any, name_keys: tuple[str, ...], arg_keys: tuple[str, ...]) -> tuple[str, str] | None:
    if not isinstance(obj, dict):
        return None
    if not name_keys:  # the short form: {NAME: {arguments}}
        if len(obj) != 1:
            return None
        (name, args), = obj.items()
        return (name, json.dumps(args, ensure_ascii=False)) if name and _arguments(args) else None
    name = next((obj[k] for k in name_keys if isinstance(obj.get(k), str)), None)
    if not name:
        return None
    args = next((obj[k] for k in arg_keys if k in obj), {})
    if isinstance(args, str):  # arguments given as a JSON string: the object it holds
        try:
            args = loads_json(args)
        except ValueError:
            return None
    # arguments that are no object (a list, a number, a string of either) are no call's: OpenAI's arguments, an
    # Anthropic input, Ollama's arguments are all objects (the generic parser's rule, and DeepSeek's, Kimi's)
    return (name, json.dumps(args, ensure_ascii=False)) if _arguments(args) else None


def _arguments(value: Any) -> bool:
    """Whether ``value`` can be a call's arguments: an object a client can send back (nested no deeper than
    :data:`~jan.json_text.MAX_ARGUMENTS_DEPTH`, no number past a double's range: every format's rule)."""
    return sendable_arguments(value)


def _scan_list(
    text: str, at: int, marker: str, final: bool, end_marker: str | None, name_keys: tuple[str, ...],
    arg_keys: tuple[str, ...], list_at: int, head_re: re.Pattern[str] = _HEAD,
    name_re: re.Pattern[str] = _NAME_HEAD, schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """A JSON list of call objects from ``list_at`` (up to ``end_marker``, when the family has one).

    Calls show as soon as their name is read, their arguments streaming (:func:`json_arguments`). A list that
    breaks off keeps the calls read before the break (the one being written finished with closers); one
    where no call could be read is text."""
    end = text.find(end_marker, list_at) if end_marker else -1
    stop = end if end >= 0 else len(text)
    region = text[:stop] if end >= 0 or not end_marker else hold(text[:stop], (end_marker,), final)
    stop = len(region)
    i = list_at
    while i < stop and region[i] in WS:
        i += 1
    if i >= stop:
        return None if final or end >= 0 else PENDING
    if region[i] != "[":
        return None
    ended = end >= 0 or final
    calls: list[tuple[str, str]] = []
    list_end = -1
    pending_name = ""  # the name of a call object whose arguments have not begun, at the text's end
    i += 1
    while True:
        while i < stop and region[i] in WS + ",":
            i += 1
        if i >= stop:
            break
        if region[i] == "]":
            list_end = i + 1
            break
        if region[i] != "{":
            break  # not a call object: the list breaks off here
        safe, oend, broken, _ = scan_json(region, i, ended=ended)
        head = head_re.match(region, i)
        if head is not None and broken and safe <= head.end():
            # the object broke before its arguments began (a control character in a key, a bad number: the head's
            # pattern is looser than JSON): no call, the list breaks off here. Read as a call, its arguments were
            # closed at once ({}) in a stream, then written out in the whole output.
            head = None
        if head is not None:
            try:
                name = loads_json('"' + head.group(1) + '"')
            except ValueError:
                break
            if schemas is not None and name not in schemas:
                # a call to a tool not declared ends the list as a break does: the calls before it stay (a stream
                # has shown them), and with none before it the list is text
                break
            # closed by the end marker or a break; an output that simply ended shows them as written, as in every
            # family (json_arguments)
            args, _ = json_arguments(region[head.end():], end >= 0 or broken, final)
            calls.append((name, args))
        elif oend >= 0:
            call = _object_call(loads_json(region[i:oend]), name_keys, arg_keys)
            if call is None or (schemas is not None and call[0] not in schemas):
                break
            calls.append(call)
        elif not broken and not ended and (head := name_re.match(region, i)) is not None:
            try:
                pending_name = loads_json('"' + head.group(1) + '"')
            except ValueError:
                pass
        if oend < 0:
            break
        i = oend
    if pending_name and schemas is not None:
        if not calls:
            return named(pending_name, schemas)
        if pending_name in schemas:  # (only a cut-off output shows it: Snapshot.named)
            return Block(len(text), calls, False, named=pending_name)
    if not calls:
        return None if ended or list_end >= 0 or (i < stop and region[i] not in "{") else PENDING
    if end_marker:
        block_end = end + len(end_marker) if end >= 0 else len(text)
        return Block(block_end, calls, ended)
    # no end marker (firefunction): the block is the list; text after it is the model's again
    if list_end >= 0:
        return Block(list_end, calls, True)
    return Block(len(text), calls, final)


def _scan_command_r(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    return _scan_list(text, at, marker, final, "<|END_ACTION|>", ("tool_name", "name"), ("parameters", "arguments"),
                      at + len(marker), schemas=schemas)


def _scan_firefunction(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    # the marker ends in the list's "[": read the list from there
    return _scan_list(text, at, marker, final, None, ("name",), ("arguments", "parameters"), at + len(marker) - 1,
                      schemas=schemas)


def _scan_apriel(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    return _scan_list(text, at, marker, final, "</tool_calls>", ("name",), ("arguments", "parameters"), at + len(marker),
                      schemas=schemas)


def _scan_apertus(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    return _scan_list(text, at, marker, final, "<|tools_suffix|>", (), (), at + len(marker), _SHORT_HEAD,
                      _SHORT_NAME_HEAD, schemas)


def parse_apriel(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Apriel 1.5/1.6 ``<tool_calls>[...]</tool_calls>`` lists."""
    return parse_marked(text, final, schemas, ("<tool_calls>",), _scan_apriel)


def parse_apertus(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Apertus ``<|tools_prefix|>[{NAME: {...}}, ...]<|tools_suffix|>`` lists."""
    return parse_marked(text, final, schemas, ("<|tools_prefix|>",), _scan_apertus)


def parse_command_r(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Command-R7B ``<|START_ACTION|>`` lists."""
    return parse_marked(text, final, schemas, ("<|START_ACTION|>",), _scan_command_r)


def parse_firefunction(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """firefunction-v2 `` functools[...]`` lists. The marker is ``functools[``, not the word alone: prose about
    Python's functools module is not a call."""
    return parse_marked(text, final, schemas, ("functools[",), _scan_firefunction)
