"""Chat formats: thinking and tool calls in every common model family, streamed or whole.

Usage (the whole API)::

    fmt = detect_format(template_source)               # ChatFormat, from the template, not the model name
    kwargs = fmt.template_kwargs(effort="low")          # -> render(..., **kwargs)
    messages = fmt.apply_switch(messages, effort, enabled)  # /think-style templates
    prompt = template.render(messages, tools=tools, **kwargs)
    options = {**fmt.budget_options(budget, prompt),    # engine: cap thinking tokens
               **fmt.grammar_options(tools, tool_choice, parallel=True, prompt=prompt),
               "render_special": fmt.render_special}
    parser = OutputParser(fmt, tools, open_at_start=fmt.starts_in_reasoning(prompt))
    for piece in engine_text_pieces:
        for delta in parser.feed(piece):                # OutputDelta(content, reasoning, tool_calls)
            ...
    parser.finish(); parser.result                      # ParsedOutput(content, reasoning, tool_calls)

``parse_output(text, fmt, tools, open_at_start=...)`` parses a finished
output; it gives exactly what the streamed deltas add up to. See
docs/chat-formats.md for the families and their markers.
"""

from __future__ import annotations

from .detect import THINK_TAGS, ChatFormat, detect_format
from .grammars import call_grammar
from .parser import OutputParser, parse_output
from .plan import ChatPlan, ReasoningRequest, format_for_template, request_reasoning
from .reasoning import ReasoningMarkers, ReasoningSplitter, joined_thoughts, split_reasoning
from .types import CallDelta, OutputDelta, ParsedCall, ParsedOutput, Snapshot

__all__ = [
    "CallDelta",
    "ChatPlan",
    "ReasoningRequest",
    "ChatFormat",
    "OutputDelta",
    "OutputParser",
    "ParsedCall",
    "ParsedOutput",
    "ReasoningMarkers",
    "ReasoningSplitter",
    "Snapshot",
    "THINK_TAGS",
    "call_grammar",
    "detect_format",
    "format_for_template",
    "joined_thoughts",
    "parse_output",
    "request_reasoning",
    "split_reasoning",
]
