"""Small text helpers shared by the format parsers."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

# One definition for the streaming tool-call parser and the format parsers.
from jan.json_text import MAX_ARGUMENTS_DEPTH, json_number, loads_json, sendable_arguments
from ..tool_calls import partial_suffix

__all__ = ["partial_suffix", "hold", "find_first", "tool_schemas", "json_value_text", "trigger_literals", "WS"]

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
            value = loads_json(raw)
        except ValueError:
            pass
        else:
            # (one level below the arguments object: deeper than arguments may be, or a number past a double's range,
            # it stays a string)
            if sendable_arguments({key: value}):
                return json.dumps(value, ensure_ascii=False)
    return json.dumps(raw, ensure_ascii=False)


def partial_json_string(raw: str) -> str:
    """JSON text of the string ``raw`` without its closing quote: a prefix of the finished value's text."""
    return json.dumps(raw, ensure_ascii=False)[:-1]


# -- JSON arguments written between markers ------------------------------------------------------------------------

_HEX = set("0123456789abcdefABCDEF")
_ESCAPES = set('"\\/bfnrtu')
_NUMBER_CHARS = set("+-0123456789.eE")
_LITERALS = ("true", "false", "null")
# characters that go on a JSON string as they are: no quote, no backslash, no control character
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]+')


def _valid_number(s: str) -> bool:
    return json_number(s)  # (one past a double's range, 1e999, too: no client could send it back)


def scan_json(s: str, start: int = 0, *, ended: bool = False, max_depth: int | None = None) -> tuple[int, int, bool, str]:
    """Scan the JSON value in ``s`` from ``start`` (leading whitespace skipped), as far as it is written.

    Returns ``(safe, end, broken, closure)``: ``s[start:safe]`` is the part that can be shown while the value is
    still being written; ``end`` is the index after the complete value (-1 while it is not complete); ``broken``:
    a character that no JSON value can continue with was met; ``closure``: the text that, appended to
    ``s[start:safe]``, makes it a complete value.

    Why hold back: arguments only grow once shown (a stream cannot take text back), and a call whose JSON breaks
    off must still end with valid JSON arguments. So the shown part always stops where appending closers alone
    (a quote, brackets) finishes it: a member's key and colon wait for the value, a comma for the next member,
    a number or ``true``/``false``/``null`` until it is whole, an escape until it is complete.

    ``max_depth``: arrays/objects nested deeper than that many levels break the value where the one too many opens
    (a call's arguments, :data:`~jan.json_text.MAX_ARGUMENTS_DEPTH`).
    """
    n = len(s)
    i = start
    while i < n and s[i] in WS:
        i += 1
    lead = i
    stack: list[str] = []      # "{" / "[" of the open containers
    expect = "value"           # value | key | colon | comma (after a value inside a container)
    safe = lead
    in_str = False
    is_key = False
    esc = 0                    # 0: none; 1: after a backslash; 2-5: reading \\u hex digits
    token_start = -1           # where the pending number or literal began
    literal = ""
    if i >= n:
        return safe, -1, False, ""
    while i < n:
        if in_str and esc == 0:
            # a run of plain string characters at once (C speed): a model's output is re-scanned on every piece
            # it streams, and a call writing a file as its argument made that a Python loop over the whole of it
            run = _STRING_RUN.match(s, i)
            if run is not None:
                i = run.end()
                if not is_key:
                    safe = i
                continue
        c = s[i]
        if in_str:
            if esc == 1:
                if c not in _ESCAPES:
                    return safe, -1, True, _closing(stack, not is_key)
                esc = 2 if c == "u" else 0
            elif esc >= 2:
                if c not in _HEX:
                    return safe, -1, True, _closing(stack, not is_key)
                esc = 0 if esc == 5 else esc + 1
            elif c == "\\":
                esc = 1
            elif c == '"':
                in_str = False
                if is_key:
                    expect = "colon"
                else:
                    expect = "comma"
                    safe = i + 1
                    if not stack:
                        return safe, i + 1, False, ""
                i += 1
                continue
            elif ord(c) < 0x20:
                return safe, -1, True, _closing(stack, not is_key)
            if not is_key and esc == 0:
                safe = i + 1
            i += 1
            continue
        if token_start >= 0:  # a number or literal being written
            if literal:
                if c == literal[i - token_start]:
                    i += 1
                    if i - token_start == len(literal):
                        token_start, literal = -1, ""
                        expect, safe = "comma", i
                        if not stack:
                            return safe, i, False, ""
                    continue
                return safe, -1, True, _closing(stack, False)
            if c in _NUMBER_CHARS:
                i += 1
                continue
            if not _valid_number(s[token_start:i]):
                return safe, -1, True, _closing(stack, False)
            token_start = -1
            expect, safe = "comma", i
            if not stack:
                return safe, i, False, ""
            continue  # the character after the number is read as structure
        if c in WS:
            i += 1
            continue
        if expect == "value":
            if c in "{[":
                if max_depth is not None and len(stack) >= max_depth:
                    return safe, -1, True, _closing(stack, False)
                stack.append(c)
                expect = "key" if c == "{" else "value"
                safe = i + 1
            elif c == '"':
                in_str, is_key = True, False
                safe = i + 1
            elif c == "-" or c.isdigit():
                token_start = i
            elif c in "tfn":
                literal = next(w for w in _LITERALS if w[0] == c)
                token_start = i
            elif c == "]" and stack and stack[-1] == "[" and s[safe - 1] == "[":  # an empty array
                stack.pop()
                expect, safe = "comma", i + 1
                if not stack:
                    return safe, i + 1, False, ""
            else:
                return safe, -1, True, _closing(stack, False)
            i += 1
            continue
        if expect == "key":
            if c == '"':
                in_str, is_key = True, True
            elif c == "}" and s[safe - 1] == "{":
                stack.pop()
                expect, safe = "comma", i + 1
                if not stack:
                    return safe, i + 1, False, ""
            else:
                return safe, -1, True, _closing(stack, False)
            i += 1
            continue
        if expect == "colon":
            if c != ":":
                return safe, -1, True, _closing(stack, False)
            expect = "value"
            i += 1
            continue
        # expect == "comma": after a value inside a container
        if c == ",":
            expect = "key" if stack[-1] == "{" else "value"
        elif c == "}]"[stack[-1] == "["]:
            stack.pop()
            expect, safe = "comma", i + 1
            if not stack:
                return safe, i + 1, False, ""
        else:
            return safe, -1, True, _closing(stack, False)
        i += 1
    if token_start >= 0 and not literal and ended and _valid_number(s[token_start:]):
        safe = n
        if not stack:
            return safe, n, False, ""
    return safe, -1, False, _closing(stack, in_str and not is_key)


def _closing(stack: list[str], in_value_string: bool) -> str:
    """What finishes the shown part: the quote of a value string, then the open containers' closers. A key string
    broken off is never part of the shown part (it waits for its value), so it gets no quote: ``{"\x00k`` closes
    as ``{}``, never ``{"}``."""
    return ('"' if in_value_string else "") + "".join("}" if c == "{" else "]" for c in reversed(stack))


def json_arguments(body: str, closed: bool, final: bool) -> tuple[str, int]:
    """The arguments to show for the JSON ``body`` of a call, and where its value ends in ``body`` (-1: not yet).

    A complete value is shown as written. One that breaks off (a character no JSON can continue with) or whose
    call closed before it was complete is shown up to the break, finished with closers: a closed call never has
    invalid JSON arguments. An output that simply ended (``final``) shows what was written, as a cut-off call
    does; otherwise the part that can be shown so far (:func:`scan_json`). Empty ``body``: ``{}`` once closed, or
    once the output ended there (a call the model ended before its arguments has none, never ``""``, which no
    client can read as JSON).
    """
    safe, end, broken, closure = scan_json(body, ended=closed, max_depth=MAX_ARGUMENTS_DEPTH)
    lead = len(body) - len(body.lstrip(WS))
    if end >= 0:
        return body[lead:end], end
    if broken or closed:
        text = body[lead:safe] + closure
        return (text if text else "{}"), (len(body) if closed else -1)
    if final:
        return body.strip(WS) or "{}", -1
    return body[lead:safe], -1


def shown_json(text: str) -> str:
    """The part of ``text`` (a JSON value as far as it is written) that can be streamed now and only ever grows
    as more is written: the complete value, else the part :func:`scan_json` lets out (closers alone finish it)."""
    safe, end, _, _ = scan_json(text)
    lead = len(text) - len(text.lstrip(WS))
    return text[lead:end] if end >= 0 else text[lead:safe]


def closed_json(text: str) -> str:
    """``text`` (a JSON value as far as it is written: a call's arguments cut off by the token limit, say) as a
    complete value: :func:`shown_json` finished with closers; ``"{}"`` when nothing of it can be shown. For the
    dialects whose tool input is an object, not text (Anthropic's ``input``, Ollama's ``arguments``): the
    streamed pieces (:func:`shown_json`, then the closers at the block's end) and the whole answer agree."""
    safe, end, _, closure = scan_json(text)
    lead = len(text) - len(text.lstrip(WS))
    if end >= 0:
        return text[lead:end]
    return (text[lead:safe] + closure) or "{}"


_META = set(".^$*+?{}[]()")


def trigger_literals(trigger: str | None) -> list[str] | None:
    """The literal texts a format's call ``trigger`` regex (:attr:`ChatFormat.trigger`) is an alternation of,
    e.g. ``r"<tool_call>|<function="`` -> ``["<tool_call>", "<function="]``; None when it is not only
    escaped literals joined by ``|`` (an optional character, a class, a group) or there is none."""
    if not trigger:
        return None
    out, text, i = [], "", 0
    while i < len(trigger):
        c = trigger[i]
        if c == "\\":
            if i + 1 >= len(trigger) or trigger[i + 1].isalnum():  # \s, \d, \b...: a class, not a character
                return None
            text += trigger[i + 1]
            i += 2
            continue
        if c == "|":
            out.append(text)
            text = ""
        elif c in _META:
            return None
        else:
            text += c
        i += 1
    out.append(text)
    return out if all(out) else None
