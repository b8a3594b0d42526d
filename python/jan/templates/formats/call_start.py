"""The tokens that open a tool call, banned for ``tool_choice: "none"`` (the tools stay in the prompt).

OpenAI's ``none`` means the model answers in text; the tools are still the conversation's, and OpenAI and
llama-server keep them in the prompt. Rendering it without them (as jan once did) changes its text from the
system prompt on, so an agent loop that alternates ``auto`` and ``none`` (a final answer after tool turns)
prefills its whole conversation again: thousands of tokens of tool definitions on a CPU are seconds. With the
tools kept the model, shown them, may still start a call, which ``none`` does not parse: the output is read
with no tools, so whatever it writes is content. A grammar cannot say "anything but this marker" cheaply, but
where every marker that opens a call is one token of the vocabulary (Qwen's ``<tool_call>``, Mistral's
``[TOOL_CALLS]``, Kimi's ``<|tool_calls_section_begin|>``...), a logit bias of -100 on those tokens keeps the
model from ever writing one (OpenAI's documented meaning of -100: a ban). Formats whose call opens with
ordinary text (Llama 3's JSON, firefunction's `` functools[``, gpt-oss's ``to=functions.x``, or a marker the
vocabulary spells in several tokens) cannot be held so: a call the model writes there comes back as content,
as llama-server returns it.
"""

from __future__ import annotations

from collections.abc import Callable

from .detect import ChatFormat
from .text import trigger_literals

#: OpenAI's strongest logit bias, which it documents as banning the token.
BAN = -100.0

def call_start_tokens(fmt: ChatFormat, tokenize: Callable[[str], list[int]]) -> tuple[int, ...] | None:
    """The token ids that open a call in ``fmt``'s syntax when each of its openings is a single token
    (``tokenize``: the model's tokenizer with special tokens parsed, no BOS), else None. Formats whose whole
    output is channels (gpt-oss) have none: their calls open with text."""
    if fmt.whole_output is not None:
        return None
    literals = trigger_literals(fmt.trigger)
    if literals is None:
        return None
    ids = []
    for literal in literals:
        tokens = tokenize(literal)
        if len(tokens) != 1:
            return None
        ids.append(tokens[0])
    return tuple(dict.fromkeys(ids))
