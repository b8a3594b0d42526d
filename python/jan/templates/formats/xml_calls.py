"""XML-style tool calls whose arguments are written one parameter at a time.

* Qwen3-Coder (and Nemotron 3, Qwen3.5): ``<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n</function>\\n</tool_call>``
* GLM-4.5/4.6/4.7: ``<tool_call>NAME\\n<arg_key>KEY</arg_key>\\n<arg_value>VALUE</arg_value>\\n</tool_call>``

The arguments become a JSON object, keys in the order written; a value is
taken verbatim when the tool's schema says the parameter is a string, else
parsed as JSON (falling back to the verbatim string). String values stream as
they are written; other values appear once complete.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .text import WS, find_first, hold, is_string_param, json_value_text, partial_json_string
from .types import Snapshot

__all__ = ["parse_qwen3_coder", "parse_glm"]


def _content_before(text: str, first_call: int, final: bool, markers: tuple[str, ...]) -> str:
    if first_call >= 0:
        return text[:first_call].rstrip(WS)
    held = hold(text, markers, final)
    return held if final else held.rstrip(WS)


def _params(
    body: str, schema: Mapping[str, Any], key_open: str, key_close: str, val_open: str, val_close: str, final: bool
) -> tuple[list[str], str, bool]:
    """Complete ``"key": value`` items, the partial item text (may be ""), and whether all was consumed."""
    items: list[str] = []
    pos = 0
    while True:
        k = body.find(key_open, pos)
        if k < 0:
            return items, "", True
        ks = k + len(key_open)
        ke = body.find(key_close, ks)
        if ke < 0:
            return items, "", False
        key = body[ks:ke].strip()
        vs = body.find(val_open, ke + len(key_close)) if val_open else ke + len(key_close)
        if vs < 0:
            return items, "", False
        vs += len(val_open)
        ve = body.find(val_close, vs)
        if ve < 0:
            raw = body[vs:]
            if final:
                items.append(f"{json.dumps(key, ensure_ascii=False)}: {json_value_text(schema, key, _trim_nl(raw))}")
                return items, "", True
            if is_string_param(schema, key):
                raw = hold(raw, (val_close, "\n" + val_close), False)
                if raw.endswith("\n"):
                    raw = raw[:-1]  # may be the newline before the closing tag
                return items, f"{json.dumps(key, ensure_ascii=False)}: {partial_json_string(_trim_nl(raw, end=False))}", False
            return items, "", False
        items.append(f"{json.dumps(key, ensure_ascii=False)}: {json_value_text(schema, key, _trim_nl(body[vs:ve]))}")
        pos = ve + len(val_close)


def _trim_nl(raw: str, end: bool = True) -> str:
    if raw.startswith("\n"):
        raw = raw[1:]
    if end and raw.endswith("\n"):
        raw = raw[:-1]
    return raw


def _args_text(items: list[str], partial: str, closed: bool) -> str:
    parts = items + ([partial] if partial else [])
    return "{" + ", ".join(parts) + ("}" if closed else "")


def parse_qwen3_coder(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Parse Qwen3-Coder XML calls (see the module docstring) from the output so far."""
    markers = ("<tool_call>", "<function=")
    first, _ = find_first(text, markers)
    snap = Snapshot(content=_content_before(text, first, final, markers))
    if first < 0:
        return snap
    pos = first
    while True:
        f = text.find("<function=", pos)
        if f < 0:
            break
        ns = f + len("<function=")
        ne = text.find(">", ns)
        if ne < 0:
            break
        name = text[ns:ne].strip()
        end = text.find("</function>", ne)
        body = text[ne + 1 : end if end >= 0 else len(text)]
        items, partial, _ = _params(
            body, schemas.get(name, {}), "<parameter=", ">", "", "</parameter>", final or end >= 0
        )
        snap.calls.append((name, _args_text(items, partial, end >= 0 or final)))
        if end < 0:
            break
        pos = end + len("</function>")
    return snap


def parse_glm(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Parse GLM-4.5+ calls (``<tool_call>NAME<arg_key>…``) from the output so far."""
    markers = ("<tool_call>",)
    first = text.find("<tool_call>")
    snap = Snapshot(content=_content_before(text, first, final, markers))
    if first < 0:
        return snap
    pos = first
    while True:
        s = text.find("<tool_call>", pos)
        if s < 0:
            break
        ns = s + len("<tool_call>")
        ne, _ = find_first(text, ("\n", "<arg_key>", "</tool_call>"), ns)
        if ne < 0:
            if final and text[ns:].strip():
                snap.calls.append((text[ns:].strip(), "{}"))
            break
        name = text[ns:ne].strip()
        end = text.find("</tool_call>", ne)
        body = text[ne : end if end >= 0 else len(text)]
        items, partial, _ = _params(
            body, schemas.get(name, {}), "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", final or end >= 0
        )
        snap.calls.append((name, _args_text(items, partial, end >= 0 or final)))
        if end < 0:
            break
        pos = end + len("</tool_call>")
    return snap
