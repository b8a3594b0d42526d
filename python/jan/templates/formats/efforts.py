"""The ``reasoning_effort`` value a template is given, in the template's own terms.

gpt-oss prints any level it is given and cannot stop thinking, so "off" is its least effort, ``low``. Other templates
that read the variable say what they take: Tencent Hy3 raises on anything but ``no_think``/``low``/``high`` (so jan's
``medium`` for a plain "thinking on" was a failed render, and its ``low`` for "off" thought anyway), Cohere's
Command A reasoning turns thinking off for ``none`` only (``low`` thought). The template's source says both: the list
it checks the value against before raising, and the value it compares with to turn thinking off.
"""

from __future__ import annotations

import re

__all__ = ["accepted_efforts", "effort_off", "named_efforts", "template_effort"]

# the levels in order, for the nearest one a template takes
_LADDER = ("none", "minimal", "low", "medium", "high", "max")
# the levels every template that reads the variable knows (gpt-oss was trained on these three)
_COMMON = ("low", "medium", "high")
_OFF_WORDS = ("none", "no_think", "off", "disabled", "no_thinking")
_LITERAL = re.compile(r"""['"]([A-Za-z_]+)['"]""")
_NOT_IN = re.compile(r"""\breasoning_effort\s+not\s+in\s*[\[(]([^\])]*)[\])]""")
_EQUALS = re.compile(r"""\breasoning_effort\s*(?:\|\s*lower\s*)?==\s*['"]([A-Za-z_]+)['"]""")


def accepted_efforts(src: str) -> tuple[str, ...]:
    """The values ``src`` accepts for ``reasoning_effort`` where it refuses the others
    (``{% if reasoning_effort not in ['high', 'low', 'no_think'] %}{{ raise_exception(...) }}``); () for any."""
    m = _NOT_IN.search(src)
    if m is None or "raise_exception" not in src[m.end():m.end() + 400]:
        return ()
    return tuple(_LITERAL.findall(m.group(1)))


def named_efforts(src: str) -> tuple[str, ...]:
    """The levels beyond low/medium/high that ``src`` names as quoted strings (Solar Open's ``"minimal"``, which it
    compares ``reasoning_effort`` with): a template that names one knows what to make of it."""
    return tuple(v for v in _LADDER if v not in _COMMON and re.search(rf"""['"]{v}['"]""", src))


def effort_off(src: str) -> str | None:
    """The ``reasoning_effort`` value with which ``src`` turns thinking off, if it has one."""
    for value in _EQUALS.findall(src):
        if value.lower() in _OFF_WORDS:
            return value
    return next((v for v in accepted_efforts(src) if v.lower() in _OFF_WORDS), None)


def template_effort(effort: str | None, on: bool, accepted: tuple[str, ...], off: str | None,
                    named: tuple[str, ...] = ()) -> str:
    """The value to give a template for a request that turned thinking ``on`` (at ``effort``, None: the middle
    level) or off. Off: the template's own off value, else the least effort (gpt-oss cannot stop thinking). A
    template that accepts only some values gets the nearest of them (a tie goes to more thinking: it was asked for);
    a level beyond low/medium/high that the template does not name (``named``: :func:`named_efforts`) is the nearest
    of those three (``minimal`` is ``low``: it was given ``medium``, more thinking than ``low`` asks for)."""
    if not on:
        return off or "low"
    value = effort or "medium"
    if value not in _COMMON and value not in named and value not in accepted:
        rank = _LADDER.index(value) if value in _LADDER else _LADDER.index("medium")
        value = min(_COMMON, key=lambda v: abs(_LADDER.index(v) - rank))
    levels = [v for v in accepted if v in _LADDER and v != off]
    if not accepted or value in accepted or not levels:
        return value
    rank = _LADDER.index(value)
    return min(levels, key=lambda v: (abs(_LADDER.index(v) - rank), -_LADDER.index(v)))
