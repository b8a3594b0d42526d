"""A tool whose ``parameters`` (and ``description``) are left out, as OpenAI's and Ollama's tools allow: OpenAI's rule
is that it takes no parameters. A forced call of one wrote any object, random keys and all (until the token limit
cut it), and half a dozen real chat templates failed to render it (Hermes, Seed-OSS, Command-R7B print the
parameters; gpt-oss, Apertus, functionary read the description) -- a valid request answered with a template error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jan.services.local import template_tools
from jan.services.types import ChatMessage, ChatRequest, ToolSpec
from jan.templates import ChatTemplate, tool_call_grammar
from jan.templates.formats.grammars import call_grammar
from jan.testing.gguf_models import templates_dir

BARE = [{"type": "function", "function": {"name": "now"}}]


def test_a_forced_call_of_a_tool_without_parameters_takes_none(llama):
    for grammar in (tool_call_grammar(BARE, "required", parallel_tool_calls=False),
                    call_grammar("hermes", BARE, "required", parallel=False)):
        assert llama.parses(grammar), grammar
        assert llama.accepts(grammar, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>')
        assert not llama.accepts(grammar, '<tool_call>\n{"name": "now", "arguments": {"x": 1}}\n</tool_call>')
    # a schema that says any object still means any object
    open_object = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    assert llama.accepts(call_grammar("hermes", open_object, "required", parallel=False),
                         '<tool_call>\n{"name": "now", "arguments": {"x": 1}}\n</tool_call>')


def _templates() -> list[Path]:
    # (firefunction-v2 takes its tools in a variable of its own, which its chat plan gives it)
    return [p for p in sorted(templates_dir().glob("*.jinja")) if "firefunction" not in p.name]


@pytest.mark.parametrize("path", _templates(), ids=lambda p: p.stem)
def test_every_real_template_renders_a_tool_without_parameters_or_description(path):
    request = ChatRequest(None, (ChatMessage.of_text("user", "What time is it?"),), tools=(ToolSpec("now"),))
    template = ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>")
    prompt = template.render([{"role": "user", "content": "What time is it?"}], tools=template_tools(request),
                             add_generation_prompt=True)
    assert "now" in prompt


def test_what_a_template_gets_for_a_bare_tool():
    request = ChatRequest(None, (ChatMessage.of_text("user", "hi"),), tools=(ToolSpec("now"),))
    assert template_tools(request) == [{"type": "function", "function": {
        "name": "now", "description": "", "parameters": {"type": "object", "properties": {}}}}]
    given = {"type": "object", "properties": {"tz": {"type": "string"}}}
    request = ChatRequest(None, request.messages, tools=(ToolSpec("now", "The time", given),))
    assert json.dumps(template_tools(request)[0]["function"]) == json.dumps(
        {"name": "now", "description": "The time", "parameters": given})
