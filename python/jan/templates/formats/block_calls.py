"""Tool calls between dedicated marker tokens, with JSON arguments streamed as written.

* DeepSeek R1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{…}\\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>``
* DeepSeek V3.1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>…``
* Kimi-K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{…}<|tool_call_end|>…<|tool_calls_section_end|>``
* gpt-oss-style functionary v3.2: ``NAME\\n{…}>>>all\\ntext`` (after the prompt's ``>>>``)
* Solar Open: ``<|begin|>assistant<|tool_calls|><|tool_call:begin|>ID<|tool_call:name|>NAME<|tool_call:args|>{…}<|tool_call:end|>…<|calls|>``
"""

from __future__ import annotations

from typing import Any, Mapping

from .marked import PENDING, Block, add_text, name_so_far, named, parse_marked
from .text import WS, hold, json_arguments, scan_json
from .types import Snapshot

__all__ = ["parse_deepseek", "parse_kimi", "parse_functionary_v32", "parse_solar_open", "SOLAR_HEADER"]

DS_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DS_CALL_BEGIN = "<｜tool▁call▁begin｜>"
DS_SEP = "<｜tool▁sep｜>"
DS_CALL_END = "<｜tool▁call▁end｜>"
DS_CALLS_END = "<｜tool▁calls▁end｜>"

KIMI_SECTION_BEGIN = "<|tool_calls_section_begin|>"
KIMI_CALL_BEGIN = "<|tool_call_begin|>"
KIMI_ARGS_BEGIN = "<|tool_call_argument_begin|>"
KIMI_CALL_END = "<|tool_call_end|>"
KIMI_SECTION_END = "<|tool_calls_section_end|>"

SOLAR_HEADER = "<|begin|>assistant"  # a message's header: the prompt ends in it, the model writes the next ones
SOLAR_CALLS = "<|tool_calls|>"
SOLAR_CALL_BEGIN = "<|tool_call:begin|>"
SOLAR_NAME = "<|tool_call:name|>"
SOLAR_ARGS = "<|tool_call:args|>"
SOLAR_CALL_END = "<|tool_call:end|>"
SOLAR_CALLS_END = "<|calls|>"


def _section_marker(text: str, at: int, marker: str) -> Block:
    """A section's begin/end marker: markup around calls, dropped (they are control tokens, never prose)."""
    return Block(at + len(marker))


def _json_call(text: str, body_start: int, end_marker: str, name: str, final: bool,
               schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    """A call whose JSON arguments run from ``body_start`` to ``end_marker``. Not a call when the body is
    something other than a JSON object, or the tool is not declared (decided before waiting for the body)."""
    if name not in schemas:
        return None
    end = text.find(end_marker, body_start)
    body = text[body_start : end if end >= 0 else len(text)]
    if end < 0:
        body = hold(body, (end_marker,), final)
    lead = body.lstrip(WS)
    if lead and lead[0] != "{":
        return None
    args, _ = json_arguments(body, end >= 0, final)
    if end < 0 and not final and not args:
        return named(name, schemas)  # nothing of the arguments yet
    return Block(end + len(end_marker) if end >= 0 else len(text), [(name, args)], end >= 0 or final)


def _scan_deepseek(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    if marker != DS_CALL_BEGIN:
        return _section_marker(text, at, marker)
    hs = at + len(DS_CALL_BEGIN)
    sep = text.find(DS_SEP, hs)
    if sep < 0:
        head = hold(text[hs:], (DS_SEP,), final)
        return PENDING if not final and "function".startswith(head.strip(WS)) else name_so_far(head, schemas, final)
    head = text[hs:sep].strip(WS)
    bs = sep + len(DS_SEP)
    if head != "function":  # V3.1: NAME<｜tool▁sep｜>{…}
        return _json_call(text, bs, DS_CALL_END, head, final, schemas)
    # R1: the name on its own line, then a ```json fenced object, then the end marker
    end = text.find(DS_CALL_END, bs)
    stop = end if end >= 0 else len(text)
    nl = text.find("\n", bs, stop)
    if nl < 0:
        if end < 0 and not final:
            return name_so_far(hold(text[bs:], (DS_CALL_END,), False), schemas, False)
        if end >= 0 or final:
            name = text[bs:stop].strip(WS)
            return Block(end + len(DS_CALL_END) if end >= 0 else len(text), [(name, "{}")]) if name else None
        return PENDING
    name = text[bs:nl].strip(WS)
    if name not in schemas:
        return None
    rest = text[nl + 1 : stop]
    lead = rest.lstrip(WS)
    if end < 0 and len(lead) < 3 and "```".startswith(lead):
        if not final:
            return named(name, schemas)  # a fence may be starting
        if lead:  # the output ended in the fence's first backticks: as after the fence's line, no arguments
            return Block(len(text), [(name, "{}")])
    if not lead.startswith("```"):  # no fence: the JSON itself
        return _json_call(text, nl + 1, DS_CALL_END, name, final, schemas)
    fence = nl + 1 + rest.find("```")
    line = text.find("\n", fence, stop)
    if line < 0:
        if end >= 0 or final:
            return Block(end + len(DS_CALL_END) if end >= 0 else len(text), [(name, "{}")])
        return named(name, schemas)  # the fence line is still being written
    # The value ends where its JSON ends, not at the first ``` (a string may hold one): scan it, then the
    # closing fence and the end marker follow.
    body = text[line + 1 : stop]
    if end < 0:
        body = hold(body, (DS_CALL_END,), final)
    lead = body.lstrip(WS)
    if lead and lead[0] != "{":  # no JSON object: not a call (as V3.1's unfenced arguments, _json_call)
        return None
    args, _ = json_arguments(body, end >= 0, final)
    if end < 0 and not final and not args:
        return named(name, schemas)
    return Block(end + len(DS_CALL_END) if end >= 0 else len(text), [(name, args)], end >= 0 or final)


def parse_deepseek(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """DeepSeek R1 and V3.1 tool-call blocks (both shapes are accepted)."""
    return parse_marked(text, final, schemas, (DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_CALLS_END), _scan_deepseek)


def _scan_kimi(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    if marker != KIMI_CALL_BEGIN:
        return _section_marker(text, at, marker)
    hs = at + len(KIMI_CALL_BEGIN)
    a = text.find(KIMI_ARGS_BEGIN, hs)
    if a < 0:
        head = hold(text[hs:], (KIMI_ARGS_BEGIN,), final).lstrip(WS)
        if not final and "functions.".startswith(head):
            return PENDING
        name, colon, _ = head.removeprefix("functions.").partition(":")
        if colon and not final and name in schemas:  # the name is whole (the call's number follows it)
            return named(name, schemas)
        return name_so_far(name, schemas, final)
    head = text[hs:a].strip(WS)
    name = head.rsplit(":", 1)[0] if ":" in head else head  # ids are functions.NAME:N
    return _json_call(text, a + len(KIMI_ARGS_BEGIN), KIMI_CALL_END, name.removeprefix("functions."), final, schemas)


def parse_kimi(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Kimi-K2 tool-call sections (ids ``functions.NAME:N``)."""
    return parse_marked(text, final, schemas, (KIMI_SECTION_BEGIN, KIMI_CALL_BEGIN, KIMI_SECTION_END), _scan_kimi)


def _scan_solar_open(text: str, at: int, marker: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    if marker != SOLAR_CALL_BEGIN:
        return _section_marker(text, at, marker)  # (the calls message's header, with the header before it, or its end)
    hs = at + len(SOLAR_CALL_BEGIN)
    n = text.find(SOLAR_NAME, hs)
    if n < 0:  # the call's id is being written (ten letters and digits, then the name's marker)
        return None if final else PENDING
    ns = n + len(SOLAR_NAME)
    a = text.find(SOLAR_ARGS, ns)
    if a < 0:
        return name_so_far(hold(text[ns:], (SOLAR_ARGS,), final), schemas, final)
    return _json_call(text, a + len(SOLAR_ARGS), SOLAR_CALL_END, text[ns:a].strip(WS), final, schemas)


def parse_solar_open(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Solar Open's calls message (its header ``<|begin|>assistant`` written or not: the prompt's ends in it); the
    call ids the model writes are its own, jan gives each call one as for every family."""
    return parse_marked(text, final, schemas, (SOLAR_HEADER + SOLAR_CALLS, SOLAR_CALLS, SOLAR_CALL_BEGIN, SOLAR_CALLS_END),
                        _scan_solar_open)


def _fv32_recipient(text: str, s: int, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Any:
    """The recipient line at a functionary v3.2 segment start: ``(recipient, body_start)``, :data:`PENDING`, or
    ``None`` when the text there is not a recipient. Only ``all`` (the answer) and the declared tools are
    recipients: ``>>>`` in prose (Python's prompt) does not start a segment."""
    nl = text.find("\n", s)
    if nl < 0:
        head = text[s:].strip(WS)
        if not final:
            return PENDING if any(r.startswith(head) for r in ("all", *schemas)) else None
        return (head, len(text)) if head == "all" or head in schemas else None
    head = text[s:nl].strip(WS)
    return (head, nl + 1) if head == "all" or head in schemas else None


def _fv32_next(text: str, q: int, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> tuple[int, Any]:
    """The next ``>>>`` from ``q`` that starts a segment, and its recipient (or PENDING); ``(-1, None)``: none yet."""
    while True:
        k = text.find(">>>", q)
        if k < 0:
            return -1, None
        r = _fv32_recipient(text, k + 3, final, schemas)
        if r is not None:
            return k, r
        q = k + 3


def parse_functionary_v32(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """functionary v3.2: segments ``RECIPIENT\\nBODY`` separated by ``>>>`` (the prompt wrote the first one);
    recipient ``all`` is the answer, a declared tool's name a call with JSON arguments. Runs without tools
    too: the ``all`` line is the format's framing, never the answer's text."""
    snap = Snapshot()
    r = _fv32_recipient(text, 0, final, schemas)
    if r is None:  # the model did not write a recipient: its text is the answer, as written
        held = hold(text, (">>>",), final)
        snap.content = held if final else held.rstrip(WS)
        return snap
    content = ""
    after_call = False
    ws_before = ""
    while r is not PENDING:
        recipient, bs = r
        if recipient == "all":
            k, r = _fv32_next(text, bs, final, schemas)
            body = text[bs:k] if k >= 0 else hold(text[bs:], (">>>",), final)
            if body.strip(WS) or not after_call:
                content = add_text(content, body, after_call, ws_before)
                after_call = False
            if k < 0:
                break
            continue
        lead = text[bs:].lstrip(WS)
        if not lead:
            if final:
                snap.calls.append((recipient, "{}"))
            else:
                snap.named = recipient  # (the call an output cut off here made)
            break
        if lead[0] != "{":  # not JSON arguments: not a call after all; its text is the answer's
            content = add_text(content, recipient + "\n" + text[bs:], after_call, ws_before)
            break
        _, vend, broken, _ = scan_json(text, bs, ended=final)
        if vend < 0 and not broken and not final:
            # a ">>>" that starts a next segment ends this body if its JSON breaks later (a string never closed):
            # the arguments shown wait there until the JSON decides, as the whole output reads them
            k, _ = _fv32_next(text, bs, final, schemas)
            args, _ = json_arguments(text[bs:k] if k >= 0 else hold(text[bs:], (">>>",), False), False, False)
            if not after_call:
                ws_before = content[len(content.rstrip(WS)):]
            snap.calls.append((recipient, args))
            break
        k, r = _fv32_next(text, vend if vend >= 0 else bs, final, schemas)
        body = text[bs:k] if k >= 0 else text[bs:]
        args, _ = json_arguments(body, k >= 0, final)  # (an output that simply ended: as written, as in every family)
        if not after_call:
            ws_before = content[len(content.rstrip(WS)):]
        after_call = True
        snap.calls.append((recipient, args))
        if k < 0:
            break
    snap.content = content.rstrip(WS) if (not final or snap.calls) else content
    return snap
