"""Prompts, tool calls and output constraints for chat models.

* :mod:`jan.templates.chat` renders OpenAI chat messages into a model's prompt
  with its Hugging Face Jinja chat template (:class:`ChatTemplate`,
  :func:`resolve_template`);
* :mod:`jan.templates.tool_calls` reads tool calls back out of the model's
  output, whole or streamed (:func:`parse_tool_calls`,
  :class:`ToolCallStreamParser`), and builds the grammar that forces a call
  (:func:`tool_call_grammar`);
* :mod:`jan.templates.formats` knows each model family's markup for thinking
  and tool calls, detected from the template source (:func:`detect_format`),
  with streaming parsers that split ``reasoning`` from ``content`` and read
  every common tool-call format, and the per-format call grammars (see
  docs/chat-formats.md); :mod:`jan.templates.tool_calls` is its generic
  (Hermes / Llama / Mistral) tool-call parser;
* :mod:`jan.templates.grammar` turns JSON schemas into GBNF grammars for
  llama.cpp's grammar sampler (:func:`json_schema_to_grammar`,
  :data:`JSON_OBJECT_GRAMMAR`);
* :mod:`jan.templates.gbnf_check` bounds any GBNF grammar (depth, size,
  rules, alternatives, left-recursion work, character ranges) before
  llama.cpp's recursive parser sees it (:func:`check_gbnf`).

Everything a client sends is bounded here: templates render within a
:class:`RenderBudget`, schemas within the ``MAX_SCHEMA_*`` limits, grammars
within :class:`GrammarLimits`; past a bound the error is a ``ValueError``
naming the field (HTTP 400), never a crash or a stall.

Pure Python (Jinja2 only); nothing here touches the engine.
"""

from __future__ import annotations

from .chat import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    RenderBudget,
    TemplateBudgetError,
    ChatTemplateRenderError,
    TemplateError,
    jan_prompt_template_to_jinja,
    normalize_messages,
    resolve_template,
    template_supports_tools,
    template_variables,
)
from .grammar import (
    JSON_OBJECT_GRAMMAR,
    JSON_VALUE_GRAMMAR,
    GrammarBuilder,
    GrammarError,
    GrammarTypeError,
    gbnf_literal,
    json_schema_to_grammar,
)
from .gbnf_check import GrammarLimits, check_gbnf
from .tool_calls import ToolCallStreamParser, new_call_id, parse_tool_calls, tool_call_grammar, tool_names

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "GrammarBuilder",
    "RenderBudget",
    "TemplateBudgetError",
    "GrammarError",
    "GrammarTypeError",
    "JSON_OBJECT_GRAMMAR",
    "JSON_VALUE_GRAMMAR",
    "ChatTemplateRenderError",
    "TemplateError",
    "ToolCallStreamParser",
    "GrammarLimits",
    "check_gbnf",
    "gbnf_literal",
    "jan_prompt_template_to_jinja",
    "json_schema_to_grammar",
    "new_call_id",
    "normalize_messages",
    "parse_tool_calls",
    "resolve_template",
    "template_supports_tools",
    "template_variables",
    "tool_call_grammar",
    "tool_names",
]
