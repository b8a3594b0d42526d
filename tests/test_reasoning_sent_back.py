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
    # each item is its own thinking: the blank line that parts it from the first is no text of the second
    assert [item["content"][0]["text"] for item in stream.output if item["type"] == "reasoning"] == ["A", "B"]
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
    # and under every name a template reads it by (ChatPlan.messages gives them before turns are joined)
    a = {"role": "assistant", "content": "a", "reasoning_content": "A", "thinking": "A", "reasoning": "A"}
    b = {"role": "assistant", "content": "b", "reasoning_content": "B", "thinking": "B", "reasoning": "B"}
    turn = joined_turn(a, b)
    assert (turn["reasoning_content"], turn["thinking"], turn["reasoning"]) == ("A\n\nB",) * 3


# -- the thinking sent back reaches the template under the name it reads --------------------------------------------

_TOOLS = [{"type": "function", "function": {"name": "f", "description": "d",
                                            "parameters": {"type": "object", "properties": {}}}}]


def _tool_loop(content: str = "") -> list[dict]:
    return [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": content, "reasoning_content": "THOUGHT-ONE",
             "tool_calls": [{"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "ok"}]


def _prompt(name: str, messages: list[dict]) -> str:
    from jan.templates import ChatTemplate
    from jan.templates.formats import ChatPlan

    source = (templates_dir() / f"{name}.jinja").read_text()
    plan = ChatPlan(detect_format(source), tools=_TOOLS)
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(
        plan.messages(messages), tools=_TOOLS, add_generation_prompt=True, **plan.template_kwargs())


def test_every_real_template_takes_a_tool_loops_thinking_sent_back():
    for path in sorted(templates_dir().glob("*.jinja")):
        for content in ("", "Let me look."):
            _prompt(path.stem, _tool_loop(content))  # (gpt-oss's raised on a call turn with text and thinking)


def test_templates_that_read_the_thinking_by_another_name_get_it():
    # LFM2.5 reads ``thinking``, Solar Open ``reasoning``, Ministral 3 Reasoning a content chunk of type "thinking":
    # each dropped the tool loop's thinking, which the template keeps
    assert "<think>THOUGHT-ONE</think>" in _prompt("LFM2.5-8B-A1B", _tool_loop())
    assert "<|think|>THOUGHT-ONE<|end|>" in _prompt("upstage-Solar-Open-100B", _tool_loop())
    assert "[THINK]THOUGHT-ONE[/THINK]Let me look.[TOOL_CALLS]f" in _prompt(
        "mistralai-Ministral-3-14B-Reasoning-2512", _tool_loop("Let me look."))
    # still the one thinking where a template reads several names (Cohere's, Hy3's, Laguna's)
    for name in ("Cohere2MoE", "tencent-Hy3", "poolside-Laguna-XS-2.1", "Qwen-Qwen3-0.6B"):
        assert _prompt(name, _tool_loop()).count("THOUGHT-ONE") == 1, name


def test_gpt_oss_call_turn_with_a_preamble_and_thinking_is_rendered():
    # jan's own gpt-oss reply (an analysis, a commentary preamble, a call) sent back: its analysis is the turn's
    prompt = _prompt("openai-gpt-oss-120b", _tool_loop("Let me look."))
    assert "<|channel|>analysis<|message|>THOUGHT-ONE<|end|>" in prompt
    assert "to=functions.f" in prompt


def test_a_conversation_keeps_a_turns_reasoning_items_as_its_one_thinking():
    from jan.server.dialects import conversations

    items = [_msg("user", "hi") | {"id": "msg_u"}, _rs("A") | {"id": "rs_1"},
             _msg("assistant", "Let me check.") | {"id": "msg_a"}, _rs("\n\nB") | {"id": "rs_2"},
             {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": items})
    turns = [turn for turn, _, _ in responses.sourced_turns(body.input)]
    kept = conversations.kept_turns(items, turns, responses.input_sources(body.input))
    assert [k.item for k in kept] == [None, None]  # (B was the next turn's, or an item of no turn)
    listed = [item for item, _ in conversations.message_items("m", kept[1].message, ids=kept[1].item_ids)]
    assert [(item["id"], item["type"]) for item in listed] == [("rs_1", "reasoning"), ("msg_a", "message"),
                                                               ("fc_1", "function_call")]
    assert listed[0]["content"] == [{"type": "reasoning_text", "text": "A\n\nB"}]


def test_anthropic_streamed_thinking_blocks_are_their_own_text_and_join_back():
    fmt = detect_format((templates_dir() / "Qwen-Qwen3-0.6B.jinja").read_text())
    parser = OutputParser(fmt)
    text = "<think>A</think>Let me check.<think>B</think>Done."
    deltas = [d for ch in text for d in parser.feed(ch)] + parser.finish()
    stream = anthropic.MessageStream("msg_1", "m")
    events = [e for d in deltas
              for e in stream.feed(typed.ChatDelta(choice=0, content=d.content, reasoning=d.reasoning))]
    events += stream.feed(typed.ChatDelta(choice=0, finish_reason="stop"))
    events += stream.finish()
    blocks: dict[int, dict] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta" and data["delta"]["type"] == "thinking_delta":
            blocks[data["index"]]["thinking"] += data["delta"]["thinking"]
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            blocks[data["index"]]["text"] += data["delta"]["text"]
        elif name == "content_block_delta" and data["delta"]["type"] == "signature_delta":
            blocks[data["index"]]["signature"] = data["delta"]["signature"]
    content = [blocks[i] for i in sorted(blocks)]
    assert [(b["type"], b.get("thinking", b.get("text"))) for b in content] == [
        ("thinking", "A"), ("text", "Let me check."), ("thinking", "B"), ("text", "Done.")]
    # sent back as they came (signatures and all): the turn's thinking is the whole output's
    turns = _anthropic_turns([{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}])
    assert turns[1][2] == parser.result.reasoning == "A\n\nB"


def test_a_thinking_block_between_two_parts_of_the_answer_never_glues_them():
    # the whitespace after a closing marker is the block's markup where the block leads (or follows whitespace),
    # but after answer text that ends in a word it parts that text from what follows: "Let me check.Found it." was
    # the answer, whole or streamed, and the reasoning tokens counted that whitespace as thinking
    from jan.templates.formats import parse_output

    fmt = detect_format((templates_dir() / "Qwen-Qwen3-0.6B.jinja").read_text())
    cases = {
        "<think>A</think>\n\nLet me check.<think>B</think>\n\nFound it.": "Let me check.\n\nFound it.",
        "<think>A</think>\n\nI will search.\n<think>B</think>\n\nFound it.": "I will search.\nFound it.",
        "Hi<think>b</think> Bye": "Hi Bye",
        "<think>A</think>\n\nAnswer.": "Answer.",
    }
    for text, content in cases.items():
        whole = parse_output(text, fmt)
        assert whole.content == content, text
        parser = OutputParser(fmt)
        deltas = [d for ch in text for d in parser.feed(ch)] + parser.finish()
        assert "".join(d.content for d in deltas) == content, text
        # the spans (what counts as reasoning tokens) leave the answer's whitespace to the answer
        spans = fmt.reasoning_spans(text, False)
        outside = "".join(text[b:a] for (_, b), (a, _) in zip([(0, 0), *spans], [*spans, (len(text), 0)]))
        assert outside == content, text
