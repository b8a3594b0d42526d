"""A turn's thinking sent back in pieces, in every dialect, is all of that turn's thinking, a paragraph a piece: an
Anthropic turn's several thinking blocks (interleaved thinking: one before the text, one before the tool use) were
glued into one run-on word ("check.Now"), a Responses turn's reasoning items kept only the last one, its summary's
parts were glued, and a reasoning item between the turn's message and its function call (jan streams thinking the
model writes between its text and its call as an item of its own) went to the *next* assistant turn. The pieces jan
streamed itself (a second block's text begins with the blank line that parts it from the first) join back to the
whole output's thinking."""

from __future__ import annotations

from jan.server.dialects import anthropic, responses
from jan.server.dialects.responses import ResponseStream, output_message
from jan.services import types as typed
from jan.templates.chat import joined_turn
from jan.templates.formats import OutputParser, joined_thoughts
from jan.templates.formats.detect import detect_format
from jan.testing.gguf_models import templates_dir


def test_joined_thoughts_parts_pieces_with_one_blank_line():
    assert joined_thoughts([]) == ""
    assert joined_thoughts([None, "", "  "]) == ""
    assert joined_thoughts([" only one, as it is\n"]) == " only one, as it is\n"
    assert joined_thoughts(["A", "B"]) == "A\n\nB"
    assert joined_thoughts(["A\n", "\n\nB", None, "C "]) == "A\n\nB\n\nC "


def _responses_turns(items):
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": items})
    return [(m.role, m.text, [c.name for c in m.tool_calls], m.reasoning) for m in responses.input_messages(body.input)]


def _rs(text=None, summary=()):
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": s} for s in summary],
            **({"content": [{"type": "reasoning_text", "text": text}]} if text is not None else {})}


def _msg(role, text):
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def test_responses_reasoning_items_of_one_turn_are_all_its_thinking():
    turns = _responses_turns([_msg("user", "hi"), _rs("First."), _rs(summary=["**Plan**", "Then this."]),
                              _msg("assistant", "Answer.")])
    assert turns[1] == ("assistant", "Answer.", [], "First.\n\n**Plan**\n\nThen this.")


def test_responses_reasoning_between_a_message_and_its_call_stays_in_that_turn():
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    result = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    turns = _responses_turns([_msg("user", "hi"), _rs("A"), _msg("assistant", "Let me check."), _rs("\n\nB"), call,
                              result, _msg("assistant", "Done.")])
    assert turns[1] == ("assistant", "Let me check.", ["f"], "A\n\nB")
    assert turns[3] == ("assistant", "Done.", [], None)  # (it was given B, the turn before's thinking)
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [
        _msg("user", "hi"), _rs("A"), _msg("assistant", "x"), _rs("B"), call, result]})
    assert responses.input_sources(body.input) == [[0], [1, 2, 3, 4], [5]]


def test_jans_own_streamed_items_sent_back_are_the_whole_outputs_thinking():
    # Qwen3 thinking between its text and its call: streamed, that is four items, and sent back statelessly they
    # are the turn the whole output was
    fmt = detect_format((templates_dir() / "Qwen-Qwen3-0.6B.jinja").read_text())
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    text = '<think>A</think>Let me check.<think>B</think><tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    parser = OutputParser(fmt, tools)
    deltas = [d for ch in text for d in parser.feed(ch)] + parser.finish()
    stream = ResponseStream()
    for d in deltas:
        stream.feed(typed.ChatDelta(choice=0, content=d.content, reasoning=d.reasoning, tool_calls=d.tool_calls))
    stream.feed(typed.ChatDelta(choice=0, finish_reason="tool_calls"))
    stream.finish()
    assert [item["type"] for item in stream.output] == ["reasoning", "message", "reasoning", "function_call"]
    whole = parser.result.reasoning
    assert whole == "A\n\nB"
    assert output_message(stream.output).reasoning == whole  # (a stored response, previous_response_id)
    sent_back = [_msg("user", "hi"), *stream.output]
    assert _responses_turns(sent_back)[1] == ("assistant", "Let me check.", ["f"], whole)


def _anthropic_turns(messages):
    body = anthropic.MessagesRequest.model_validate({"model": "m", "max_tokens": 9, "messages": messages})
    return [(m.role, m.text, m.reasoning) for m in anthropic.to_chat_request(body).messages]


def test_anthropic_thinking_blocks_of_one_turn_are_paragraphs_of_its_thinking():
    think = lambda text: {"type": "thinking", "thinking": text, "signature": "x"}  # noqa: E731
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body = anthropic.MessagesRequest.model_validate({"model": "m", "max_tokens": 9, "tools": tools, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [think("I should check."), {"type": "text", "text": "Checking."},
                                          think("Now call f."), tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]})
    turn = anthropic.to_chat_request(body).messages[1]
    assert turn.reasoning == "I should check.\n\nNow call f."
    # two assistant messages in a row are one turn: their thinking joins the same way
    turns = _anthropic_turns([{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": [think("One."), {"type": "text", "text": "a"}]},
                              {"role": "assistant", "content": [think("Two."), {"type": "text", "text": "b"}]}])
    assert turns[1][2] == "One.\n\nTwo."


def test_joined_turns_never_double_the_blank_line():
    turn = joined_turn({"role": "assistant", "content": "a", "reasoning_content": "A\n\n"},
                       {"role": "assistant", "content": "b", "reasoning_content": "\n\nB"})
    assert turn["reasoning_content"] == "A\n\nB"
