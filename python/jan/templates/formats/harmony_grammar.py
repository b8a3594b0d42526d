"""Where an answer grammar sits in gpt-oss Harmony output: a ``final`` message, after an ``analysis`` one.

A reply opens after the prompt's ``<|start|>assistant``; gpt-oss writes its thinking as an analysis message, then
its answer as a final message (or a call as a commentary message to ``functions.NAME``)::

    <|channel|>analysis<|message|>THINKING<|end|><|start|>assistant<|channel|>final<|message|>{"sky": "clear"}

A response format holds the final message's body and a forced call the call message (``call_grammar``'s
``harmony`` grammar writes its header); from the first token they would leave gpt-oss no room to think, and a
bare JSON answer would have no channel at all. So the answer's grammar is framed as a final message
(:func:`final_message`) and the reply's grammar gets a head (:func:`after_analysis`): at most one analysis
message, then the answer or call. With thinking off there is no head: the final message or call comes at once.
This is the Harmony case of :meth:`ChatFormat.answer_grammar` (marker pairs: ``after_thinking.py``).
"""

from __future__ import annotations

from typing import Any

from ..grammar import gbnf_literal, prefixed_rules
from .harmony import CHANNEL, END, MESSAGE, START

__all__ = ["after_analysis", "final_message", "harmony_budget", "harmony_reply_tail"]

_NEW_MESSAGE = START + "assistant"
_ANALYSIS = CHANNEL + "analysis" + MESSAGE

# The analysis body: text without "<|" up to "<|end|>". The parser ends a body at the first of <|end|>, <|call|>,
# <|return|> and <|start|> (harmony.py); text that could hold another marker than <|end|> would end the message
# there for the parser while the grammar read on, and the answer it holds would not be the one parsed.
_ANALYSIS_BODY = (
    'analysis-body ::= [^<] analysis-body | "<" analysis-lt\n'
    'analysis-lt ::= [^<|] analysis-body | "<" analysis-lt | "|end|>"\n'
)


def harmony_reply_tail(prompt: str, continued: str = "") -> str | None:
    """None where the reply opens a new assistant message (``prompt`` ends in the generation prompt's
    ``<|start|>assistant``): the output writes the message's header, and may think first. ``"closed"`` otherwise
    (a continued reply's text, ``continued``, inside its message; a template that left a header written): the
    output is the message's text, which the parser reads as the answer, and the grammar holds it from the first
    token (the vocabulary of :meth:`ChatFormat._reply_tail`)."""
    if continued and prompt.endswith(continued):
        return "closed"
    return None if prompt.rstrip().endswith(_NEW_MESSAGE) else "closed"


def final_message(answer: str) -> str:
    """``answer`` (a whole GBNF grammar, root ``root``) as the body of a final message, its header written as
    gpt-oss writes it for structured output (optionally ``<|constrain|>json``; the parser reads the channel only)."""
    return (f'root ::= {gbnf_literal(CHANNEL + "final")} ( " " "<|constrain|>"? "json" )? {gbnf_literal(MESSAGE)} '
            "final-root\n" + prefixed_rules(answer, "final-"))


def after_analysis(grammar: str) -> str:
    """``grammar`` (a whole GBNF grammar, root ``root``: a final message, a call message, or either) after at most
    one analysis message and the next message's ``<|start|>assistant``. One, as ``after_thinking``'s one block:
    the thinking is free, the answer comes after it."""
    head = f"( {gbnf_literal(_ANALYSIS)} analysis-body {gbnf_literal(_NEW_MESSAGE)} )?"
    return f"root ::= {head} answer-root\n" + _ANALYSIS_BODY + prefixed_rules(grammar, "answer-")


def harmony_budget(budget: int, prompt: str, continued: str = "", calls: bool = False) -> dict[str, Any]:
    """The engine's thinking-budget options for gpt-oss (:meth:`ChatFormat.budget_options`): its budget sampler
    counts the tokens of the reply's analysis message, from its header to its ``<|end|>``, as it counts a marker
    pair's block. Spent, it writes the end of that message and the next message's header as far as the answer
    must go: the ``final`` channel, or where the request lets the model call a tool (``calls``) only up to
    ``<|channel|>``, so that the model (or a call grammar, whose messages start there) picks ``final`` or a
    ``commentary`` call. The budget covers every analysis message of the reply (:meth:`ChatFormat.budget_options`
    asks that of every format): a second one counts on from what the first spent, and once the budget is spent none
    is opened again (after that forced ``<|channel|>`` the model could write ``analysis`` and think on, uncapped). A
    reply that continues a message's text (:func:`harmony_reply_tail` not None) opens no analysis: no options."""
    if harmony_reply_tail(prompt, continued) is not None:
        return {}
    return {
        "reasoning_budget": int(budget),
        "reasoning_start": _ANALYSIS,
        "reasoning_end": END,
        "reasoning_close": END + _NEW_MESSAGE + CHANNEL + ("" if calls else "final" + MESSAGE),
        "reasoning_open": False,
    }
