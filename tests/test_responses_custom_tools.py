"""OpenAI Responses ``custom`` (freeform) tools, as Codex's ``apply_patch`` uses them: the tool definition, the
``custom_tool_call`` output item (plain and streamed, ``response.custom_tool_call_input.delta``/``.done``), the call
and its ``custom_tool_call_output`` sent back (statelessly and through ``previous_response_id``), ``tool_choice``
``{"type": "custom"}``, ``regex`` and ``lark`` grammars enforced (a Lark one GBNF cannot say: a 400); read through the official openai SDK's typed models."""

from __future__ import annotations

import json
import re

import openai
import pytest

from dialect_helpers import collapse, openai_client, tool_model
from jan.server.config import ServerConfig
from jan.server.dialects.responses import ResponseStream, _PartialInput, custom_arguments, custom_input
from jan.services import types as typed
from jan.testing.server import ServerThread

PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to the files"}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
FORCE = {"type": "custom", "name": "apply_patch"}
# a regex grammar the input must match whole (so the tiny model's call ends)
CODE = {**PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": "[a-c]{3}-[0-9]{2}"}}
# a Lark grammar of apply_patch's shape (envelope, file operations, hunk lines), its terminals bounded so that the
# tiny model's call ends; with
# %import common, ?rule inlining, an alias, a repetition range and a case-insensitive literal
PATCH_GRAMMAR = r"""
start: "*** Begin Patch" LF operation ~ 1..2 "*** End Patch"
?operation: add | delete | update
add: "*** Add File: " PATH LF ("+" TEXT? LF) ~ 1..2
delete: "*** Delete File: " PATH LF
update: "*** Update File: " PATH LF "@@"i LF change ~ 1..2 -> hunk
change: ("+" | "-" | " ") TEXT? LF
PATH: /[a-z]{1,6}(\/[a-z]{1,6})?\.(py|txt)/
TEXT: /[^\n]{1,12}/
%import common.LF
"""
LARK = {**PATCH, "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("data"), models=[str(tool_model(models))],
                          n_ctx=2048, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _create(client, **kwargs):
    # (one call a turn: the tiny model repeats a call as long as it may)
    return client.responses.create(**{"model": "tool-model", "max_output_tokens": 60, "temperature": 0,
                                      "parallel_tool_calls": False, **kwargs})


def test_a_forced_custom_tool_is_called_with_text(client):
    response = _create(client, input="Fix the bug", tools=[CODE, WEATHER], tool_choice=FORCE)
    assert [item.type for item in response.output] == ["custom_tool_call"]
    call = response.output[0]
    assert isinstance(call, openai.types.responses.ResponseCustomToolCall)
    assert call.name == "apply_patch" and call.id.startswith("ctc_") and call.call_id
    assert isinstance(call.input, str) and not call.input.startswith('{"input"')  # the text, not JSON arguments
    assert response.tool_choice.type == "custom" and response.tool_choice.name == "apply_patch"
    assert [t.type for t in response.tools] == ["custom", "function"]


@pytest.mark.parametrize("tool, status", [(CODE, "completed"), (PATCH, "incomplete")])
def test_the_stream_sends_the_input_as_text_deltas(client, tool, status):
    # (the tiny model never ends a free text: cut off by the token limit, its input so far is the call's)
    plain = _create(client, input="Fix the bug", tools=[tool], tool_choice=FORCE)
    events = list(_create(client, input="Fix the bug", tools=[tool], tool_choice=FORCE, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert collapse([e.type for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done", f"response.{status}"]
    added, done = events[2], events[-2]
    assert added.item.type == done.item.type == "custom_tool_call" and added.item.input == ""
    deltas = [e for e in events if e.type == "response.custom_tool_call_input.delta"]
    assert all(e.item_id == added.item.id and e.output_index == 0 for e in deltas)
    text = "".join(e.delta for e in deltas)
    assert text and not text.startswith("{")  # the text, not the JSON arguments the model wrote it in
    assert text == events[-3].input == done.item.input == plain.output[0].input
    assert events[-1].response.output[0].input == text and plain.status == status


def test_the_sdk_stream_helper_folds_a_custom_call(client):
    with client.responses.stream(model="tool-model", input="Fix the bug", tools=[CODE], tool_choice=FORCE,
                                 max_output_tokens=60, temperature=0, parallel_tool_calls=False) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.custom_tool_call_input.delta")
        final = stream.get_final_response()
    assert final.status == "completed" and [item.type for item in final.output] == ["custom_tool_call"]
    assert final.output[0].input == deltas and re.fullmatch("[a-c]{3}-[0-9]{2}", deltas)


def test_a_custom_call_and_its_output_continue_the_conversation(client):
    first = _create(client, input="Fix the bug", tools=[CODE], tool_choice=FORCE)
    call = first.output[0]
    output = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done: 1 file changed"}
    second = _create(client, previous_response_id=first.id, tools=[CODE], input=[output], max_output_tokens=8)
    assert second.status in ("completed", "incomplete")
    # the same conversation sent whole, statelessly: the same prompt
    manual = _create(client, tools=[CODE], store=False, max_output_tokens=8, input=[
        {"role": "user", "content": "Fix the bug"},
        {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
        output])
    assert manual.usage.input_tokens == second.usage.input_tokens
    assert manual.output_text == second.output_text
    # (the response it continues first: its input and its call, with the call's id)
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "custom_tool_call", "custom_tool_call_output"]
    assert items[1].id == call.id and items[2].call_id == call.call_id


def test_a_custom_output_answering_no_call_is_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, tools=[PATCH], input=[{"role": "user", "content": "Hi"},
                                             {"type": "custom_tool_call_output", "call_id": "nope", "output": "x"}])
    assert err.value.body["param"] == "input"


def test_a_regex_grammar_constrains_the_input(client):
    response = _create(client, input="Go", tools=[CODE], tool_choice=FORCE)
    assert response.status == "completed" and re.fullmatch("[a-c]{3}-[0-9]{2}", response.output[0].input)


@pytest.mark.parametrize("definition", ["^[a-c]{3}-[0-9]{2}$", "^[a-c]{3}-[0-9]{2}", "[a-c]{3}-[0-9]{2}$",
                                        "^(?:[a-c]{3}|[0-9]{2})$"])
def test_a_regex_written_with_its_own_anchors_constrains_the_input(client, definition):
    """The whole input matches the regex: its own outer ^ and $ (OpenAI's examples write them) say nothing more.
    Inside jan's anchoring they were anchors the grammar cannot translate, and the input went unconstrained."""
    tool = {**PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": definition}}
    response = _create(client, input="Go", tools=[tool], tool_choice=FORCE)
    assert response.status == "completed" and re.fullmatch(definition, response.output[0].input), response.output


@pytest.mark.parametrize("definition, words", [
    ("(?=a)[a-c]+", ["lookaround"]),
    (r"\bword\b", [r"\b"]),
    ("^a$|^b$", ["anchors"]),
    (r"(a)\1", [r"\1"]),
])
@pytest.mark.parametrize("choice", [FORCE, "auto", "none"])
def test_a_regex_grammar_that_cannot_be_held_is_a_400(client, definition, words, choice):
    """As a Lark definition's construct GBNF cannot express is: a regex format is all the input's format, so one
    the grammar cannot hold the input to is refused, not let through unenforced (as a JSON schema's ``pattern`` is,
    beside its schema's other keywords)."""
    tool = {**PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": definition}}
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, input="Hi", tools=[WEATHER, tool], tool_choice=choice)
    body = err.value.body
    assert err.value.status_code == 400 and body["param"] == "tools[1].format.definition", body
    assert body["message"].startswith("tools[1].format.definition: ") and all(w in body["message"] for w in words), body


@pytest.mark.parametrize("stream", [False, True])
def test_a_lark_grammar_constrains_the_input(client, stream):
    lark = pytest.importorskip("lark")
    if stream:
        events = list(_create(client, input="Fix the bug", tools=[LARK, WEATHER], tool_choice=FORCE,
                              max_output_tokens=400, stream=True))
        response = events[-1].response
    else:
        response = _create(client, input="Fix the bug", tools=[LARK, WEATHER], tool_choice=FORCE,
                           max_output_tokens=400)
    assert response.status == "completed" and [item.type for item in response.output] == ["custom_tool_call"]
    text = response.output[0].input
    assert text.startswith("*** Begin Patch\n") and text.endswith("*** End Patch"), text
    lark.Lark(PATCH_GRAMMAR, parser="earley", lexer="dynamic_complete").parse(text)  # (raises if it does not parse)


@pytest.mark.parametrize("definition, words", [
    ('start: /a(?=b)/ "b"', ["apply_patch", "lookahead", "terminal __ANON_0"]),
    (r'start: WORD " " WORD' + "\n" + r'WORD: /(\w+)\1/', ["apply_patch", "backreference", "terminal WORD"]),
    ('start: ("a" | ', ["apply_patch", "does not load"]),
    ('start: X\n%import nowhere.X', ["apply_patch", "%import"]),
    ('start: "(" start ")"', ["apply_patch", "rule 'start' can never end"]),  # (no finite text: never finished)
])
@pytest.mark.parametrize("choice", [FORCE, "auto", "none"])
def test_a_lark_grammar_that_cannot_be_held_is_a_400(client, definition, words, choice):
    # (whatever tool_choice says, before anything is generated: a tool the server cannot hold to its format)
    tool = {**PATCH, "format": {"type": "grammar", "syntax": "lark", "definition": definition}}
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, input="Hi", tools=[WEATHER, tool], tool_choice=choice)
    body = err.value.body
    assert err.value.status_code == 400 and body["param"] == "tools[1].format.definition", body
    assert body["message"].startswith("tools[1].format.definition: ") and all(w in body["message"] for w in words), body
    assert body["type"] == "invalid_request_error", body


@pytest.mark.parametrize("body, param", [
    ({"tools": [PATCH], "tool_choice": {"type": "custom", "name": "other"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "custom", "name": "get_weather"}}, "tool_choice"),
    ({"tools": [{**PATCH, "format": {"type": "grammar", "syntax": "lark"}}]}, "tools[0].format"),
    ({"tools": [{**PATCH, "name": "bad name"}]}, "tools[0].name"),
    ({"tools": [{"type": "local_shell"}]}, "tools[0]"),
    ({"tools": [WEATHER, {**PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": "(("}}],
      "tool_choice": FORCE}, "tools[1].format.definition"),
    ({"tools": [{**PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": "x" * 5000}}],
      "tool_choice": FORCE}, "tools[0].format.definition"),
])
def test_bad_custom_tools_are_a_400(client, body, param):
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, input="Hi", **body)
    assert err.value.status_code == 400 and (err.value.body.get("param") or "").startswith(param), err.value.body
    assert "^(?:" not in err.value.body["message"]  # the definition as written, not as jan anchors it


def test_a_lark_grammar_is_shown_to_the_model(client):
    tool = {**PATCH, "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "x"+'}}
    plain = client.responses.input_tokens.count(model="tool-model", input="Go", tools=[PATCH])
    with_grammar = client.responses.input_tokens.count(model="tool-model", input="Go", tools=[tool])
    assert with_grammar.input_tokens > plain.input_tokens


# -- the streamed input's decoding, in pieces as a model makes them -------------------------------------------------
@pytest.mark.parametrize("text", ["plain", 'quote " and \\ backslash\nnewline', "emoji \U0001F600 é", ""])
def test_streamed_input_is_decoded_whatever_the_pieces(text):
    arguments = custom_arguments(text).replace("\U0001F600", "\\ud83d\\ude00")  # (a model may escape it)
    for size in (1, 2, 5):
        partial = _PartialInput()
        got = "".join(partial.more(arguments[i:i + size]) for i in range(0, len(arguments), size))
        assert got == text


def test_arguments_cut_off_give_the_text_so_far():
    # (the token limit can end the arguments inside an escape: the text before it is the input)
    assert custom_input('{"input": "ab\\u00') == "ab" and custom_input('{"input": "a\\nb') == "a\nb"
    stream = ResponseStream(custom=frozenset({"apply_patch"}))
    events = stream.feed(typed.ChatDelta(tool_calls=(typed.ToolCallDelta(0, "c1", "apply_patch", '{"input": "x\\'),)))
    events += stream.feed(typed.ChatDelta(finish_reason="length")) + stream.finish()
    assert [e["input"] for e in events if e["type"] == "response.custom_tool_call_input.done"] == ["x"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta") == "x"


def test_arguments_of_another_shape_are_the_input():
    stream = ResponseStream(custom=frozenset({"apply_patch"}))
    events = stream.feed(typed.ChatDelta(tool_calls=(typed.ToolCallDelta(0, "c1", "apply_patch", "not json"),)))
    events += stream.feed(typed.ChatDelta(finish_reason="tool_calls")) + stream.finish()
    done = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done[0]["input"] == "not json" and stream.output[0]["input"] == "not json"
    assert json.loads(custom_arguments("a\"b")) == {"input": "a\"b"}


def test_a_lark_grammar_that_ignores_whitespace_still_ends(client):
    """``%ignore WS`` lets Lark skip any run of blanks between tokens; the GBNF bounds each run as llama.cpp bounds
    JSON's whitespace (20 spaces or tabs, two line breaks each with 20 of indentation), so a model cannot fill the
    input with blanks: each run the random-weight model wrote is within the bound, and the input is one the Lark
    grammar accepts."""
    import re

    import lark

    definition = 'start: "x" "=" DIGIT ~ 1..3 ";"\n%import common.DIGIT\n%import common.WS\n%ignore WS'
    tool = {**PATCH, "name": "emit", "format": {"type": "grammar", "syntax": "lark", "definition": definition}}
    response = _create(client, input="Emit", tools=[tool], tool_choice={"type": "custom", "name": "emit"},
                       max_output_tokens=400)
    assert response.status == "completed" and [item.type for item in response.output] == ["custom_tool_call"]
    text = response.output[0].input
    lark.Lark(definition, parser="earley", lexer="dynamic_complete").parse(text)
    for run in re.findall(r"\s+", text):
        assert re.fullmatch(r"[ \t]{0,20}(?:(?:\r\n|\n)[ \t]{0,20}){0,2}", run), (run, text)


def test_a_forced_custom_call_cut_before_its_input_is_the_call(client):
    """The token limit cut the forced call inside its markup: the call is still the reply, its input empty."""
    response = _create(client, input="Fix the bug", tools=[CODE], tool_choice=FORCE, max_output_tokens=2)
    assert response.status == "incomplete"
    assert [(item.type, item.name, item.input) for item in response.output] == [("custom_tool_call", "apply_patch", "")]
