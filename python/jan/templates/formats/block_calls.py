"""Tool calls between dedicated marker tokens, with JSON arguments streamed as written.

* DeepSeek R1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{…}\\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>``
* DeepSeek V3.1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>…``
* Kimi-K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{…}<|tool_call_end|>…<|tool_calls_section_end|>``
* gpt-oss-style functionary v3.2: ``NAME\\n{…}>>>all\\ntext`` (after the prompt's ``>>>``)
"""

from __future__ import annotations

from typing import Any, Mapping

from .text import WS, find_first, hold
from .types import Snapshot

__all__ = ["parse_deepseek", "parse_kimi", "parse_functionary_v32"]

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


def _content(text: str, first: int, final: bool, markers: tuple[str, ...]) -> str:
    if first >= 0:
        return text[:first].rstrip(WS)
    held = hold(text, markers, final)
    return held if final else held.rstrip(WS)


def _args(body: str, terminators: tuple[str, ...], closed: bool, final: bool) -> str:
    """The arguments text of a call body: stripped, without a held-back partial terminator."""
    if not closed:
        body = hold(body, terminators, final)
    body = body.lstrip(WS)
    return body.rstrip(WS) if (closed or final) else body.rstrip(WS)


def parse_deepseek(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """DeepSeek R1 and V3.1 tool-call blocks (both shapes are accepted)."""
    markers = (DS_CALLS_BEGIN, DS_CALL_BEGIN)
    first, _ = find_first(text, markers)
    snap = Snapshot(content=_content(text, first, final, markers))
    pos = max(first, 0)
    while first >= 0:
        b = text.find(DS_CALL_BEGIN, pos)
        if b < 0:
            break
        hs = b + len(DS_CALL_BEGIN)
        sep = text.find(DS_SEP, hs)
        if sep < 0:
            break
        head = text[hs:sep].strip()
        body_start = sep + len(DS_SEP)
        end = text.find(DS_CALL_END, body_start)
        body = text[body_start : end if end >= 0 else len(text)]
        if head == "function":  # R1: the name follows on its own line, then a ```json fence
            nl = body.find("\n")
            if nl < 0:
                if end >= 0 or final:
                    snap.calls.append((body.strip(), "{}"))
                break
            name = body[:nl].strip()
            rest = body[nl + 1 :]
            lead = rest.lstrip(WS)
            if end < 0 and not final and len(lead) < 3 and "```".startswith(lead):
                break  # a fence may be starting
            if lead.startswith("```"):
                fence = rest.find("```")
                line = rest.find("\n", fence)
                if line < 0:
                    if end >= 0 or final:
                        snap.calls.append((name, "{}"))
                    break  # the fence line is still being written
                rest = rest[line + 1 :]
                close = rest.find("```")
                args = rest[:close] if close >= 0 else rest
                done = close >= 0 or end >= 0
                snap.calls.append((name, _args(args, ("```", "\n```"), done, final)))
            else:
                snap.calls.append((name, _args(rest, (DS_CALL_END,), end >= 0, final)))
        else:
            snap.calls.append((head, _args(body, (DS_CALL_END,), end >= 0, final)))
        if end < 0:
            break
        pos = end + len(DS_CALL_END)
    return snap


def parse_kimi(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Kimi-K2 tool-call sections (ids ``functions.NAME:N``)."""
    markers = (KIMI_SECTION_BEGIN, KIMI_CALL_BEGIN)
    first, _ = find_first(text, markers)
    snap = Snapshot(content=_content(text, first, final, markers))
    pos = max(first, 0)
    while first >= 0:
        b = text.find(KIMI_CALL_BEGIN, pos)
        if b < 0:
            break
        hs = b + len(KIMI_CALL_BEGIN)
        a = text.find(KIMI_ARGS_BEGIN, hs)
        if a < 0:
            break
        head = text[hs:a].strip()
        name = head.rsplit(":", 1)[0] if ":" in head else head
        name = name.removeprefix("functions.")
        bs = a + len(KIMI_ARGS_BEGIN)
        end = text.find(KIMI_CALL_END, bs)
        body = text[bs : end if end >= 0 else len(text)]
        snap.calls.append((name, _args(body, (KIMI_CALL_END,), end >= 0, final)))
        if end < 0:
            break
        pos = end + len(KIMI_CALL_END)
    return snap


def parse_functionary_v32(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """functionary v3.2: segments ``RECIPIENT\\nBODY`` separated by ``>>>``; recipient ``all`` is the answer."""
    snap = Snapshot()
    segments = text.split(">>>")
    content: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        body_text = hold(seg, (">>>",), final) if last else seg
        nl = body_text.find("\n")
        if nl < 0:
            if last and not final:
                break  # the recipient is still being written
            recipient, body = body_text.strip(), ""
        else:
            recipient, body = body_text[:nl].strip(), body_text[nl + 1 :]
        if recipient == "all" or (not recipient and body):
            if snap.calls:
                continue  # text after calls: functionary puts it in its own turn; ignore stray text
            content.append(body if (final or not last) else body.rstrip(WS))
        elif recipient:
            done = final or not last
            args = body.strip(WS) if done else body.lstrip(WS).rstrip(WS)
            snap.calls.append((recipient, args if args or not done else "{}"))
    snap.content = "".join(content)
    if snap.calls:
        snap.content = snap.content.rstrip(WS)
    return snap
