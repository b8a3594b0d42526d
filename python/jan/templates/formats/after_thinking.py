"""A grammar that holds the answer, not the thinking before it.

A reasoning model's output is a thinking block, then the answer. A grammar meant for the answer (a response
format, a forced tool call) that applied from the first token would be written inside the thinking, or make the
model skip it; and the thinking budget's forced end marker would be a token the grammar refuses. So the grammar
gets a head: free text up to the end-of-thinking marker (the model's own close or the budget's), a short blank run,
then the answer's grammar. One path for tool calls and response formats in every dialect.
"""

from __future__ import annotations

from ..grammar import MarkerWatch, _char_class, gbnf_literal, prefixed_rules
from .reasoning import ReasoningMarkers

__all__ = ["after_thinking", "until_marker_rules"]

# the blank run after the end of thinking is bounded: unbounded, a model (or a budget that just closed the block)
# can write whitespace until max_tokens and never reach the answer it was made to write
_GAP = "[ \\t\\n]{0,4}"


def until_marker_rules(marker: str, name: str) -> str:
    """GBNF rules ``{name}-0`` .. ``{name}-{len-1}``: any text up to and including the first ``marker``.

    Right-linear rules walking the marker's KMP automaton (:class:`~jan.templates.grammar.MarkerWatch`; rule
    ``{name}-k``: the last ``k`` characters matched its first ``k``), so the text before the marker may hold any
    character, the marker's own included, and only the whole marker ends it. llama.cpp's grammar stacks do not
    grow along such tail references.
    """
    if not marker:
        raise ValueError("until_marker_rules needs a non-empty marker")
    return MarkerWatch((marker,)).rules(name, lambda away: _char_class(away, negate=True), None)


def after_thinking(grammar: str, markers: ReasoningMarkers, *, opened: bool) -> str:
    """``grammar`` (a whole GBNF grammar, root ``root``) after a thinking block in ``markers``.

    ``opened``: the prompt opened the block, so the output starts inside it and must close it first. Otherwise
    the model may open one itself (Qwen3 with thinking on) or go straight to the answer.
    """
    block = f"think-body-0 {_GAP}"
    head = block if opened else f"( {gbnf_literal(markers.start)} {block} )?"
    return (f"root ::= {head} answer-root\n" + until_marker_rules(markers.end, "think-body")
            + prefixed_rules(grammar, "answer-"))
