"""jan.templates.tool_calls: parsing tool calls from model output, whole and streamed."""

from __future__ import annotations

import json
import random

import pytest

from jan.templates.grammar import GrammarError
from jan.templates.tool_calls import (
    ToolCallStreamParser,
    new_call_id,
    parse_tool_calls,
    tool_call_grammar,
    tool_names,
)


def _tool(name: str, properties: dict | None = None, required: list[str] | None = None) -> dict:
    params = {"type": "object", "properties": properties or {}}
    if required:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": name, "parameters": params}}


TOOLS = [
    _tool("get_weather", {"city": {"type": "string"}}, ["city"]),
    _tool("search", {"q": {"type": "string"}, "n": {"type": "integer"}}, ["q"]),
    _tool("python", {"code": {"type": "string"}}, ["code"]),
]


def _fixed_ids():
    counter = iter(range(1000))
    return lambda: f"call_{next(counter)}"


def _from_deltas(deltas: list[dict]) -> tuple[str | None, list[dict]]:
    """Reassemble a message from streaming deltas, the way an OpenAI client does."""
    content = "".join(d.get("content", "") for d in deltas) or None
    calls: dict[int, dict] = {}
    for d in deltas:
        for tc in d.get("tool_calls", []):
            call = calls.setdefault(tc["index"], {"id": None, "type": None, "function": {"name": None, "arguments": ""}})
            if "id" in tc:
                assert call["id"] is None, "id sent twice"
                call["id"] = tc["id"]
                call["type"] = tc["type"]
                call["function"]["name"] = tc["function"]["name"]
            call["function"]["arguments"] += tc["function"].get("arguments", "")
    assert sorted(calls) == list(range(len(calls))), "indexes must count up from 0"
    return content, [calls[i] for i in sorted(calls)]


def _stream(text: str, pieces: list[str], tools=TOOLS) -> tuple[str | None, list[dict]]:
    parser = ToolCallStreamParser(tools, id_factory=_fixed_ids())
    deltas: list[dict] = []
    for piece in pieces:
        deltas += parser.feed(piece)
    deltas += parser.finish()
    assert "".join(pieces) == text
    result = _from_deltas(deltas)
    assert result == (parser.content, parser.tool_calls)
    return result


def _check_all_ways(text: str, tools=TOOLS) -> tuple[str | None, list[tuple[str, object]]]:
    """Parse whole, char by char and in random pieces; all must agree. Returns (content, [(name, args)])."""
    whole = parse_tool_calls(text, tools, id_factory=_fixed_ids())
    assert _stream(text, list(text), tools) == whole
    rng = random.Random(len(text))
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 5)))) if len(text) > 1 else []
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert _stream(text, pieces, tools) == whole
    content, calls = whole
    for call in calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
    return content, [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


PARIS = ("get_weather", {"city": "Paris"})

FORMATS = [
    # Hermes / Qwen
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', None, [PARIS]),
    (
        'Let me check.\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "search", "arguments": {"q": "a \\"b\\" {c} </tool_call>", "n": 3}}\n</tool_call>\n',
        "Let me check.",
        [PARIS, ("search", {"q": 'a "b" {c} </tool_call>', "n": 3})],
    ),
    ('<tool_call>{"arguments": {"city": "Paris"}, "name": "get_weather"}</tool_call>', None, [PARIS]),
    ('<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>', None, [PARIS]),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}', None, [PARIS]),  # unclosed at the end
    (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call> Anything else?',
        "Anything else?",
        [PARIS],
    ),
    # Llama 3.x: the whole output is a JSON object
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', None, [PARIS]),
    ('\n {"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}', None, [PARIS]),
    # Mistral
    (
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}, '
        '{"name": "search", "arguments": {"q": "x"}}]',
        None,
        [PARIS, ("search", {"q": "x"})],
    ),
    ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]search[ARGS]{"q": "x"}', None, [PARIS, ("search", {"q": "x"})]),
    ('[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}', None, [PARIS]),
    # Llama 3.1 / functionary
    (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "search", "parameters": {"q": "x"}}',
        None,
        [PARIS, ("search", {"q": "x"})],
    ),
    ("<|python_tag|>search.call(q=\"what's up\", n=3)", None, [("search", {"q": "what's up", "n": 3})]),
    ("<|python_tag|>import math\nprint(math.pi)\n", None, [("python", {"code": "import math\nprint(math.pi)"})]),
    ('<function=get_weather>{"city": "Paris"}</function>', None, [PARIS]),
    ("I'll look.<function=search></function>", "I'll look.", [("search", {})]),
    # Granite / Phi-4-mini, Nemotron
    ('<|tool_call|>[{"arguments": {"city": "Paris"}, "name": "get_weather"}]<|/tool_call|>', None, [PARIS]),
    ('<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>', None, [PARIS]),
    # generic: JSON array / fenced JSON / Python-style list at the start
    ('[{"name": "get_weather", "arguments": {"city": "Paris"}}]', None, [PARIS]),
    ('```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```', None, [PARIS]),
    ('[get_weather(city="Paris"), search(q="x", n=2)]', None, [PARIS, ("search", {"q": "x", "n": 2})]),
]


@pytest.mark.parametrize("text, content, calls", FORMATS, ids=[f[0][:40] for f in FORMATS])
def test_formats_parse_the_same_whole_and_streamed(text, content, calls):
    assert _check_all_ways(text) == (content, calls)


NOT_CALLS = [
    "Hello world",
    "Use {curly} braces in format strings: {name}.",
    'In JSON, write {"name": "get_weather", "arguments": {}} to call it.',
    '{"a": 1, "b": [1, 2]}',
    '{"name": "Alice", "arguments": {"age": 3}}',  # "Alice" is not a tool
    '<tool_call>\n{"name": "unknown_fn", "arguments": {"city": "Paris"}}\n</tool_call>',
    "[TOOL_CALLS] nothing here",
    "[1, 2, 3]",
    "[a link](http://example.com)",
    "```python\nprint(1)\n```",
    "a < b and c <tool d <|python",
    "<function=unknown>{}</function>",
    '<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>',
    "\n\nIndented\n\n",
]


@pytest.mark.parametrize("text", NOT_CALLS)
def test_text_that_is_not_a_call_stays_content_verbatim(text):
    assert _check_all_ways(text) == (text, [])


def test_unknown_function_next_to_a_known_one():
    text = (
        '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    )
    content, calls = _check_all_ways(text)
    assert content == '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>'
    assert calls == [PARIS]


def test_without_tools_everything_is_content():
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert parse_tool_calls(text, None) == (text, [])
    assert parse_tool_calls(text, []) == (text, [])
    parser = ToolCallStreamParser(None)
    assert parser.feed("<tool") == [{"content": "<tool"}]  # nothing is held back


def test_truncated_call_keeps_what_was_streamed():
    content, calls = parse_tool_calls('Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Pa', TOOLS)
    assert content == "Sure."
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Pa'}


def test_streaming_deltas_shape_and_timing():
    parser = ToolCallStreamParser(TOOLS, id_factory=lambda: "call_X")
    # plain text goes out at once; trailing whitespace waits to see what follows
    assert parser.feed("Checking ") == [{"content": "Checking"}]
    assert parser.feed("now.\n<tool") == [{"content": " now."}]  # "<tool" may start a call: held
    assert parser.feed('_call>\n{"name": "get_weather", ') == []
    # committed once the arguments object starts: header first, then argument pieces
    assert parser.feed('"arguments": {"ci') == [
        {"tool_calls": [{"index": 0, "id": "call_X", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
    ]
    assert parser.feed('ty": "Paris"}') == [{"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}]
    assert parser.feed("}\n</tool_call>") == []
    assert parser.finish() == []
    assert parser.finish() == []  # idempotent
    assert parser.content == "Checking now."
    assert parser.tool_calls == [
        {"id": "call_X", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    with pytest.raises(RuntimeError):
        parser.feed("more")


def test_held_marker_prefix_is_released_when_it_is_not_a_marker():
    parser = ToolCallStreamParser(TOOLS)
    assert parser.feed("x <") == [{"content": "x"}]
    assert parser.feed("b") == [{"content": " <b"}]
    assert parser.feed(" <tool_") == []
    assert parser.finish() == [{"content": " <tool_"}]


def test_arguments_stream_before_the_call_ends():
    text = '<tool_call>{"name": "python", "arguments": {"code": "' + "x = 1\\n" * 50 + '"}}</tool_call>'
    parser = ToolCallStreamParser(TOOLS)
    pieces_before_end = 0
    for i, ch in enumerate(text):
        for delta in parser.feed(ch):
            if "tool_calls" in delta and i < len(text) - 20:
                pieces_before_end += 1
    parser.finish()
    assert pieces_before_end > 100
    assert json.loads(parser.tool_calls[0]["function"]["arguments"]) == {"code": "x = 1\n" * 50}


def test_call_ids():
    content, calls = parse_tool_calls(
        '<tool_call>{"name": "search", "arguments": {"q": "a"}}</tool_call><tool_call>{"name": "search", "arguments": {"q": "b"}}</tool_call>',
        TOOLS,
    )
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 2
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)
    assert new_call_id() != new_call_id()


def test_tool_names_accepts_the_usual_shapes():
    assert tool_names([_tool("a"), {"name": "b"}, "c", {"type": "function"}, 3]) == ["a", "b", "c"]
    assert tool_names(None) == []


def test_chunking_never_changes_the_result():
    # Random soups of markers, JSON pieces, names and text: streaming in any
    # pieces must give exactly the non-streaming result.
    fragments = [
        "<tool_call>", "</tool_call>", "<|tool_call|>", "[TOOL_CALLS]", "<|python_tag|>", "<function=", "</function>",
        "<TOOLCALL>", "{", "}", "[", "]", '"name"', ":", ",", '"get_weather"', '"search"', '"arguments"',
        '"parameters"', '{"city": "Paris"}', '"x\\"y"', "1", "-2.5e3", "true", "null", " ", "\n", "hello", "<",
        ">", "[ARGS]", 'search(q="x")', "(", ")", ";", "```", "```json\n", "get_weather", '"{\\"a\\": 1}"', "ü",
    ]
    rng = random.Random(1234)
    n_with_calls = 0
    for _ in range(1500):
        text = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 20)))
        whole = parse_tool_calls(text, TOOLS, id_factory=_fixed_ids())
        assert _stream(text, list(text)) == whole, text
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 5))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert _stream(text, pieces) == whole, text
        n_with_calls += bool(whole[1])
    assert n_with_calls > 100  # the soup does exercise calls


# --------------------------------------------------------------------------
# tool_choice grammar (the grammar itself is checked against llama.cpp in test_grammar.py)
# --------------------------------------------------------------------------


def test_tool_call_grammar_structure():
    g = tool_call_grammar(TOOLS, "required")
    assert g.startswith("root ::= tool-call ( ws tool-call )*\n")
    assert '"<tool_call>" ws "{" ws "\\"name\\"" ws ":" ws ( get-weather-call | search-call | python-call ) "}" ws "</tool_call>"' in g
    assert 'get-weather-call ::= "\\"get_weather\\"" ws "," ws "\\"arguments\\"" ws ":" ws get-weather-args' in g

    single = tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "search"}}, parallel_tool_calls=False)
    assert single.startswith("root ::= tool-call\n")
    assert "get_weather" not in single and '"\\"search\\""' in single
    assert tool_call_grammar(TOOLS, "search") == tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "search"}})


def test_tool_call_grammar_errors():
    with pytest.raises(GrammarError, match="not in tools"):
        tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(GrammarError):
        tool_call_grammar([], "required")
    with pytest.raises(ValueError):  # GrammarError is a ValueError: HTTP 400
        tool_call_grammar(TOOLS, "nope")
    with pytest.raises(GrammarError, match="does not force"):
        tool_call_grammar(TOOLS, "auto")
    assert tool_call_grammar(TOOLS, "any") == tool_call_grammar(TOOLS, "required")


def test_images_count_against_the_output_limit_as_the_notes_a_model_reads():
    """Fifty thousand small images were fifty thousand notes for the model, none counted against the limit."""
    from jan.core import ToolImage, ToolResult, ToolText
    from jan.core.tools import limit_result

    many = ToolResult((ToolText("before"),) + (ToolImage(b"\x89PNG", "image/png"),) * 50_000)
    cut = limit_result(many, 1000)
    assert cut.truncated and len(cut.as_text()) < 1000 + 200
    assert "image(s) left out" in cut.parts[-1].text
    kept = sum(isinstance(p, ToolImage) for p in cut.parts)
    assert 0 < kept < 100 and str(50_000 - kept) in cut.parts[-1].text
    few = ToolResult((ToolText("before"), ToolImage(b"\x89PNG", "image/png")))
    assert limit_result(few, 1000) is few  # within the limit: as it was
