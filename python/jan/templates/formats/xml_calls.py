"""XML-style tool calls whose arguments are written one parameter at a time.

* Qwen3-Coder (and Nemotron 3, Qwen3.5; Seed-OSS wraps it in ``<seed:tool_call>``): ``<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n</function>\\n</tool_call>``
* GLM-4.5/4.6/4.7: ``<tool_call>NAME\\n<arg_key>KEY</arg_key>\\n<arg_value>VALUE</arg_value>\\n</tool_call>``

The arguments become a JSON object, keys in the order written; a value is
taken verbatim when the tool's schema says the parameter is a string, else
parsed as JSON (falling back to the verbatim string). String values stream as
they are written; other values appear once complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from .marked import PENDING, Block, name_so_far, parse_marked
from .text import WS, find_first, hold, is_string_param, json_value_text, partial_json_string
from .types import Snapshot

__all__ = ["parse_qwen3_coder", "parse_glm", "XmlStops", "QWEN3_CODER_STOPS", "GLM_STOPS"]


@dataclass(frozen=True)
class XmlStops:
    """What a format's parser (below) reads as structure inside the raw text of one call, where a value has no escape:
    a call grammar cannot write a schema's literal holding one of these texts between the tags
    (:func:`~jan.templates.formats.grammars.call_grammar` refuses it).

    ``value``: each text that ends a parameter's value, or the call around it, mapped to what the parser reads it as;
    ``key``: the same for a parameter's name; ``value_trimmed``: whether the parser drops one newline at each end of
    a value the grammar writes with none around it (a literal starting or ending in one would come back without it).
    A parameter's name is read stripped of white space at both ends."""

    value: Mapping[str, str]
    key: Mapping[str, str]
    value_trimmed: bool


# _scan_qwen3_coder: the call's body ends at the first </function>; in it a value ends at </parameter>, or at the next
# <parameter= when the model left the closing tag out; a name ends at the first ">". The grammar writes a newline on
# each side of a value, the ones the parser trims.
QWEN3_CODER_STOPS = XmlStops(
    value={"</parameter>": "the end of a parameter", "<parameter=": "the start of the next parameter",
           "</function>": "the end of the call"},
    key={">": "the end of a parameter's name"},
    value_trimmed=False,
)
# _scan_glm: the call ends at the first </tool_call>; in it a value ends at </arg_value> or at the next <arg_key>, a
# name at </arg_key>; a value written bare between its tags loses one newline at each end.
GLM_STOPS = XmlStops(
    value={"</arg_value>": "the end of a parameter", "<arg_key>": "the start of the next parameter",
           "</tool_call>": "the end of the call"},
    key={"</arg_key>": "the end of a parameter's name", "</tool_call>": "the end of the call"},
    value_trimmed=True,
)


def _params(
    body: str, schema: Mapping[str, Any], key_open: str, key_close: str, val_open: str, val_close: str, final: bool,
    stops: tuple[str, ...] = (),
) -> tuple[list[str], str]:
    """Complete ``"key": value`` items, and the partial item text (may be "").

    A value ends at its closing tag, or where the next parameter starts when the model left the closing tag out;
    ``stops`` are the block's own end tags, held back while partial so that a streamed value never shows a
    piece of markup the whole output would not (the body already ends at a complete one).
    """
    items: list[str] = []
    pos = 0
    while True:
        k = body.find(key_open, pos)
        if k < 0:
            return items, ""
        ks = k + len(key_open)
        ke = body.find(key_close, ks)
        if ke < 0:
            return items, ""
        key = body[ks:ke].strip()
        vs = body.find(val_open, ke + len(key_close)) if val_open else ke + len(key_close)
        if vs < 0:
            return items, ""
        vs += len(val_open)
        ve, which = find_first(body, (val_close, key_open), vs)
        if ve < 0:
            raw = body[vs:]
            if final:
                items.append(f"{json.dumps(key, ensure_ascii=False)}: {json_value_text(schema, key, _trim_nl(raw))}")
                return items, ""
            if is_string_param(schema, key):
                raw = hold(raw, (val_close, "\n" + val_close, key_open, "\n" + key_open, *stops,
                                 *("\n" + t for t in stops)), False)
                if raw.endswith("\n"):
                    raw = raw[:-1]  # may be the newline before the closing tag
                return items, f"{json.dumps(key, ensure_ascii=False)}: {partial_json_string(_trim_nl(raw, end=False))}"
            return items, ""
        items.append(f"{json.dumps(key, ensure_ascii=False)}: {json_value_text(schema, key, _trim_nl(body[vs:ve]))}")
        pos = ve + len(val_close) if which == val_close else ve


def _trim_nl(raw: str, end: bool = True) -> str:
    if raw.startswith("\n"):
        raw = raw[1:]
    if end and raw.endswith("\n"):
        raw = raw[:-1]
    return raw


def _args_text(items: list[str], partial: str, closed: bool) -> str:
    parts = items + ([partial] if partial else [])
    return "{" + ", ".join(parts) + ("}" if closed else "")


# the wrapper around a call: Qwen3-Coder's, and Seed-OSS's own (its template's toolcall_begin_token)
_QC_WRAPPERS = {"<tool_call>": "</tool_call>", "<seed:tool_call>": "</seed:tool_call>"}
_QC_STOPS = ("</function>", *_QC_WRAPPERS.values())


def _scan_qwen3_coder(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    f = at
    closing = _QC_WRAPPERS.get(marker)
    if closing:  # the wrapper must hold a <function=…> call, else it is text
        rest = text[at + len(marker):]
        lead = rest.lstrip(WS)
        if not lead:
            return None if final else PENDING
        if not lead.startswith("<function="):
            return None if final or not "<function=".startswith(lead) else PENDING
        f = at + len(marker) + (len(rest) - len(lead))
    ns = f + len("<function=")
    ne = text.find(">", ns)
    name = text[ns:ne if ne >= 0 else len(text)]
    if ne < 0:
        return name_so_far(name, schemas, final)
    name = name.strip()
    end = text.find("</function>", ne)
    body = text[ne + 1 : end if end >= 0 else len(text)]
    closed = end >= 0
    items, partial = _params(body, schemas.get(name, {}), "<parameter=", ">", "", "</parameter>",
                             final or closed, _QC_STOPS)
    stop = len(text)
    if closed:
        stop = end + len("</function>")
        after = text[stop:]
        tail = after.lstrip(WS)
        if closing:
            if tail.startswith(closing):
                stop += len(after) - len(tail) + len(closing)
            elif closing.startswith(tail):
                if not final:
                    # the wrapper's end tag may be coming: the call is whole, its block not yet
                    return Block(len(text), [(name, _args_text(items, partial, True))], False)
                stop = len(text)  # the output ended in the wrapper's end tag: its markup, never text
    return Block(stop, [(name, _args_text(items, partial, closed or final))], closed or final)


def parse_qwen3_coder(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Parse Qwen3-Coder XML calls (see the module docstring) from the output so far."""
    return parse_marked(text, final, schemas, (*_QC_WRAPPERS, "<function="), _scan_qwen3_coder)


_GLM_STOPS = ("</tool_call>",)


def _scan_glm(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    ns = at + len("<tool_call>")
    ne, _ = find_first(text, ("\n", "<arg_key>", "</tool_call>"), ns)
    if ne < 0:
        name = text[ns:].strip()
        if not final:  # (a partial "</tool_call>" or "<arg_key>" after the name is not part of it)
            return name_so_far(hold(text[ns:], ("<arg_key>", "</tool_call>"), False), schemas, final)
        return Block(len(text), [(name, "{}")]) if name else None
    name = text[ns:ne].strip()
    end = text.find("</tool_call>", ne)
    body = text[ne : end if end >= 0 else len(text)]
    closed = end >= 0
    items, partial = _params(body, schemas.get(name, {}), "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
                             final or closed, _GLM_STOPS)
    stop = end + len("</tool_call>") if closed else len(text)
    return Block(stop, [(name, _args_text(items, partial, closed or final))], closed or final)


def parse_glm(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Parse GLM-4.5+ calls (``<tool_call>NAME<arg_key>…``) from the output so far."""
    return parse_marked(text, final, schemas, ("<tool_call>",), _scan_glm)
