"""Thinking markers read off what a template writes, for templates that spell them in their own way.

Many templates keep their markers in variables (``think_begin_token = '<seed:think>'``, ``'<think{}>'.format(HYTK)``,
``open_tag('think')``) where no search of the source finds them. As llama.cpp's template analysis does, the template
is asked instead: it renders one exchange whose assistant turn carries thinking, and once more without it; what the
first has that the second has not is the start marker, the thinking, the end marker. A template that keeps no earlier
thinking (Gemma 4) is asked for its generation prompt with thinking on and off: the empty block that turns it off is
the pair. Only markup counts (text that opens with ``<`` or ``[`` and names thinking, as every family's markers do):
a template that writes thinking as prose, or not at all, gets none, and its thinking stays where the model puts it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .reasoning import ReasoningMarkers
from .text import WS

__all__ = ["learned_markers"]

_THOUGHT, _ANSWER, _ASK = "Jan thinks 7f3a", "Jan answers 9c1e", "Jan asks 2b8d"
_OPENERS = ("<", "[")
_TOKEN = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|[^<\[]+")


def _render(template: Any, thinking: bool) -> str:
    # (chat.py reads formats, and Jinja waits for the first template: both imported when first used)
    from ..chat import PROBE_BUDGET
    from ..jinja_env import render_budgeted

    reply: dict[str, Any] = {"role": "assistant", "content": _ANSWER}
    if thinking:
        reply["reasoning_content"] = reply["thinking"] = _THOUGHT
    context = {"messages": [{"role": "user", "content": _ASK}, reply], "add_generation_prompt": False,
               "bos_token": "", "eos_token": "", "enable_thinking": True, "thinking": True, "tools": None}
    return render_budgeted(template, context, PROBE_BUDGET)


@lru_cache(maxsize=64)
def learned_markers(source: str) -> ReasoningMarkers | None:
    """The start/end thinking markers ``source`` writes around an earlier reply's thinking (or, where it keeps no
    earlier thinking, the empty block its generation prompt writes to turn thinking off: Gemma 4's
    ``<|channel>thought\n<channel|>``), or None: it writes none that are markup, or it cannot be rendered this way.
    Cached: a format is detected for every request."""
    from ..jinja_env import compile_template

    try:
        template = compile_template(source)
        return _from_history(template) or _from_switch(template)
    except Exception:  # a template that cannot render this exchange tells nothing; its requests will say why
        return None


def _from_switch(template: Any) -> ReasoningMarkers | None:
    """The markers of the empty block a generation prompt with thinking off ends in, where the prompt with thinking
    on ends without it: split at its last tag (or in halves that both name thinking: <|open|>think<|sep|>...)."""
    from ..chat import PROBE_BUDGET
    from ..jinja_env import render_budgeted

    def prompt(on: bool) -> str:
        context = {"messages": [{"role": "user", "content": _ASK}], "add_generation_prompt": True, "bos_token": "",
                   "eos_token": "", "enable_thinking": on, "thinking": on}
        return render_budgeted(template, context, PROBE_BUDGET)

    on, off = prompt(True), prompt(False)
    anchor = on[-12:]
    at = off.rfind(anchor) if len(on) >= 12 else -1
    block = off[at + len(anchor):].strip(WS) if at >= 0 else ""
    tokens = _tokens(block)
    if len(tokens) < 2 or not block.startswith(_OPENERS):
        return None
    half = len(tokens) // 2
    if len(tokens) % 2 == 0 and _thinky("".join(tokens[:half])) and _thinky("".join(tokens[half:])):
        start, end = "".join(tokens[:half]), "".join(tokens[half:])
    else:
        start, end = "".join(tokens[:-1]), tokens[-1]
    start, end = start.strip(WS), end.strip(WS)
    if not (end.startswith(_OPENERS) and _thinky(start)) or start == end:
        return None
    return ReasoningMarkers(start, end)


def _from_history(template: Any) -> ReasoningMarkers | None:
    """The markers around an earlier reply's thinking: what one exchange renders with thinking and not without it.
    Where the render without thinking writes an empty block (or its end alone), the markup on either side of the
    thinking is read instead, as far as it names thinking."""
    with_thought, without = _render(template, True), _render(template, False)
    if with_thought.count(_THOUGHT) != 1:
        return None
    # the common head and tail; what is left of the first render is start marker + thinking + end marker
    head = 0
    while head < min(len(with_thought), len(without)) and with_thought[head] == without[head]:
        head += 1
    tail = 0
    while (tail < min(len(with_thought), len(without)) - head
           and with_thought[-1 - tail] == without[-1 - tail]):
        tail += 1
    middle = with_thought[head:len(with_thought) - tail]
    prefix = with_thought[:head]
    # two different tags share their first characters (<mm:think> and </mm:think>): the difference starts inside
    # a tag; it belongs to the tag
    cut = max(prefix.rfind("<"), prefix.rfind("["))
    if cut >= 0 and cut > max(prefix.rfind(">"), prefix.rfind("]")):
        middle, prefix = prefix[cut:] + middle, prefix[:cut]
    suffix = with_thought[len(with_thought) - tail:]
    cut = max(middle.rfind("<"), middle.rfind("["))  # and the end of the difference, as well
    if cut >= 0 and cut > max(middle.rfind(">"), middle.rfind("]")):
        middle, suffix = middle[:cut], middle[cut:] + suffix
    # a marker and the text after it may share a beginning (<|open|>think / <|open|>response): the difference
    # is then found shifted into the marker; shift it back while it does not open with markup
    while prefix and middle and not middle.lstrip(WS).startswith(_OPENERS) and prefix[-1] == middle[-1]:
        middle, prefix = prefix[-1] + middle[:-1], prefix[:-1]
    at = middle.find(_THOUGHT)
    if at < 0:
        return None
    start, end = middle[:at].strip(WS), middle[at + len(_THOUGHT):].strip(WS)
    if not start:  # the render without thinking wrote the block's start too (an empty block): read the markup
        start = _marker_before(prefix + middle[:at])
    if start and not end:  # ... or its end: the markup after the thinking, as long as the start marker
        end = "".join(_tokens(middle[at + len(_THOUGHT):] + suffix)[:len(_tokens(start))])
        end = end.strip(WS) if _thinky(end) else ""
    if not (start.startswith(_OPENERS) and end.startswith(_OPENERS)) or start == end or not _thinky(start + end):
        return None  # (a marker that does not name thinking may be a channel's header, which is no marker pair)
    if any(s in start + end for s in (_ANSWER, _ASK)):
        return None
    return ReasoningMarkers(start, end, _answer_wrapper(with_thought, end))


def _answer_wrapper(text: str, end: str) -> tuple[str, ...]:
    """The markers a template wraps the answer in after the thinking (Kimi-K3's ``<|open|>response<|sep|>`` and
    ``<|close|>response<|sep|>``), dropped from the answer where they wrap it, as Granite's ``<response>``; () for
    none: the answer follows the end marker as it is."""
    after = text[text.find(end, text.find(_THOUGHT)) + len(end):]
    at = after.find(_ANSWER)
    opening = after[:at].strip(WS) if at >= 0 else ""
    if not opening.startswith(_OPENERS):
        return ()
    closing = "".join(_tokens(after[at + len(_ANSWER):])[:len(_tokens(opening))]).strip(WS)
    return (opening, closing) if closing.startswith(_OPENERS) and closing != opening else ()


def _tokens(text: str) -> list[str]:
    """Markup cut into tags (``<...>``, ``[...]``) and the text between them."""
    return _TOKEN.findall(text.lstrip(WS))


def _thinky(marker: str) -> bool:
    return "think" in marker.lower() or "thought" in marker.lower()


def _marker_before(text: str) -> str:
    """The start marker that ``text`` (what a template wrote before the thinking) ends in: its last tags, back to the
    nearest one naming thinking (``<think:opensource>``; ``<|open|>think<|sep|>`` whole), or "" where none does:
    without the word the boundary between a turn's header and the marker cannot be told."""
    tokens = _tokens(text.rstrip(WS))
    for k in range(1, min(len(tokens), 4) + 1):
        tail = tokens[-k:]
        if _thinky("".join(tail)):
            while tokens[-k:] and not tokens[-k].startswith(_OPENERS) and k < len(tokens):
                k += 1  # a bare word's marker begins at the tag before it
            return "".join(tokens[-k:]).strip(WS)
    return ""
