"""gpt-oss Harmony output: messages on channels, tool calls addressed to functions.

After the prompt's ``<|start|>assistant`` the model writes messages like::

    <|channel|>analysis<|message|>THINKING<|end|>
    <|start|>assistant<|channel|>final<|message|>ANSWER<|return|>
    <|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>

``analysis`` is reasoning, ``final`` (and ``commentary`` without a recipient:
a preamble) the answer, ``to=functions.NAME`` a tool call whose body is its
JSON arguments. The recipient may also sit in the header before the channel
(``<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>``).
Output without any header is answer text.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .text import WS, hold, json_arguments
from .types import Snapshot

__all__ = ["parse_harmony", "harmony_reasoning_spans", "HARMONY_MARKERS"]

START, CHANNEL, MESSAGE, END, CALL, RETURN = "<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>"
HARMONY_MARKERS = (START, CHANNEL, MESSAGE, END, CALL, RETURN)
_BODY_END = (END, CALL, RETURN, START)
_RECIPIENT = re.compile(r"to=functions\.([^\s<]+)")
_ANY_RECIPIENT = re.compile(r"\bto=\S")


def _join(blocks: list[str], final: bool, keep_tail: bool) -> str:
    """Message bodies joined as one text: each stripped, a blank line between them (two analysis messages are two
    paragraphs of thinking, not one run-on sentence). The last may still be growing: its trailing whitespace
    waits, unless the output is over and ``keep_tail``."""
    parts = [b.strip(WS) for b in blocks[:-1]] + [blocks[-1].lstrip(WS)] if blocks else []
    if parts and not (final and keep_tail):
        parts[-1] = parts[-1].rstrip(WS)
    return "\n\n".join(p for p in parts if p.strip(WS))


def parse_harmony(text: str, final: bool, schemas: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Split Harmony output into reasoning (analysis), content (final/commentary) and calls.

    A message addressed to anything but a declared function (a built-in ``browser.search``, an unknown
    ``functions.X``) is not a call jan can make: its text stays content as the model wrote it, as every family
    keeps a call to an undeclared tool (``formats/marked.py``)."""
    snap = Snapshot()
    reasoning: list[str] = []
    content: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        # a header runs to <|message|>; text before any header is plain answer text
        h = text.find(CHANNEL, pos)
        s = text.find(START, pos)
        head_at = min(x for x in (h, s, n) if x >= 0)
        if head_at > pos:
            plain = text[pos:head_at]
            if head_at == n:
                plain = hold(plain, HARMONY_MARKERS, final)
            content.append(plain)
        if head_at == n:
            break
        m = text.find(MESSAGE, head_at)
        if m < 0:  # header not complete yet; a recipient already whole (more follows it) is the call a cut made
            whole = _RECIPIENT.search(text, head_at)
            if whole is not None and whole.end() < n and whole.group(1) in schemas:
                snap.named = whole.group(1)
            break
        header = text[head_at:m]
        channel = ""
        if CHANNEL in header:
            channel = header.split(CHANNEL, 1)[1].strip().split()[0] if header.split(CHANNEL, 1)[1].strip() else ""
        recipient = _RECIPIENT.search(header)
        addressed = _ANY_RECIPIENT.search(header)
        bs = m + len(MESSAGE)
        e = min((x for x in (text.find(t, bs) for t in _BODY_END) if x >= 0), default=-1)
        closed = e >= 0
        body = text[bs:e] if closed else hold(text[bs:], _BODY_END, final)
        after = e
        if closed:
            after += next((len(t) for t in (END, CALL, RETURN) if text.startswith(t, e)), 0)
        lead = body.lstrip(WS)
        # a body that is no JSON object is no call's arguments (OpenAI's arguments, an Anthropic input, Ollama's
        # arguments are objects): the message stays text, as one to an undeclared tool does
        not_args = bool(lead) and lead[0] != "{"
        if addressed and not (recipient and recipient.group(1) in schemas and not not_args):
            if not (closed or final):
                break  # shown once the message ends
            content.append(text[head_at:after if closed else n])
        elif recipient:
            if not lead and not (closed or final):
                snap.named = recipient.group(1)  # (the call an output cut off here made)
                break  # the arguments decide nothing yet
            args, _ = json_arguments(body, closed, final)
            snap.calls.append((recipient.group(1), args))
        elif channel == "analysis":
            reasoning.append(body)
        else:
            content.append(body)
        if not closed:
            break
        pos = after
    snap.reasoning = _join(reasoning, final, True) if reasoning else ""
    snap.content = _join(content, final, not snap.calls) if content else ""
    return snap


def harmony_reasoning_spans(text: str) -> list[tuple[int, int]]:
    """Where thinking lies in Harmony output ``text``: ``(start, end)`` character ranges, one per ``analysis``
    message, from its header through its end marker (a message never ended runs to the end of ``text``).
    Messages are found as :func:`parse_harmony` finds them; a header the output never finished is none."""
    spans: list[tuple[int, int]] = []
    pos, n = 0, len(text)
    while pos < n:
        head_at = min(x for x in (text.find(CHANNEL, pos), text.find(START, pos), n) if x >= 0)
        m = text.find(MESSAGE, head_at)
        if head_at == n or m < 0:
            break
        after = text[head_at:m].split(CHANNEL, 1)[1].split() if CHANNEL in text[head_at:m] else []
        bs = m + len(MESSAGE)
        e = min((x for x in (text.find(t, bs) for t in _BODY_END) if x >= 0), default=-1)
        end = n if e < 0 else e + next((len(t) for t in (END, CALL, RETURN) if text.startswith(t, e)), 0)
        if after[:1] == ["analysis"] and not _ANY_RECIPIENT.search(text[head_at:m]):
            spans.append((head_at, end))
        if e < 0:
            break
        pos = end
    return spans
