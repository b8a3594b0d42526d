"""A Responses answer's MCP items read again, every way a conversation goes on, as the same turns: one conversion
(:mod:`jan.services.kept_items`). The thinking before an ``mcp_call`` is kept by a stored response (and a
conversation) as a thread message of its own, and was read as an assistant turn of thinking alone before the call's
turn, while the same items sent back in an ``input`` gave the call's turn that thinking: a follow-up's prompt
differed with ``previous_response_id`` and without. A conversation given those items (Conversations API, or a
response's input) kept the thinking as an item of no turn (in no later prompt), and a web-page run continuing the
thread left the MCP calls out altogether. What the model wrote before the call (thinking and text) is the call's turn
everywhere now: in the answer's own loop (mcp_use), an approving answer's prompt, and every later read. Rendered on
real thinking templates (one that keeps earlier turns' thinking, and Qwen3's, which drops it), the prompts are the
same."""

from __future__ import annotations

import pytest

from jan.server.dialects import conversations, responses
from jan.server.dialects.responses_store import thread_entries, to_thread_message
from jan.services.kept_items import history_turns
from jan.services.local import template_messages
from jan.services.runs import history_messages, prompt_window
from jan.services.types import ChatMessage, TextPart
from jan.templates import ChatTemplate
from jan.templates.formats import ChatPlan
from jan.templates.formats.detect import detect_format
from jan.testing.gguf_models import templates_dir

USER = {"type": "message", "id": "msg_u", "role": "user", "content": [{"type": "input_text", "text": "My notes?"}]}
OUTPUT = [
    {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "THINK-BEFORE"}]},
    {"type": "message", "id": "msg_0", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
    {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "notes",
     "tools": [{"name": "list_notes", "input_schema": {"type": "object"}}]},
    {"type": "mcp_call", "id": "mcp_1", "server_label": "notes", "name": "list_notes", "arguments": "{}",
     "output": "groceries, ideas", "error": None},
    {"type": "reasoning", "id": "rs_2", "summary": [], "content": [{"type": "reasoning_text", "text": "THINK-AFTER"}]},
    {"type": "message", "id": "msg_a", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Two notes.", "annotations": []}]},
]
AGAIN = ChatMessage.of_text("user", "And the first one?")


def _sent_back() -> list[ChatMessage]:
    """The items sent back in an input (a client that keeps its items)."""
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [USER, *OUTPUT]})
    return responses.input_messages(body.input)


def _stored() -> list[dict]:
    """The thread messages a stored response keeps of its input and output."""
    return [to_thread_message(ChatMessage.of_text("user", "My notes?")),
            *(to_thread_message(turn) for turn in responses.output_turns(OUTPUT))]


def _read(messages: list[dict]) -> list[ChatMessage]:
    return history_turns(entry for message in messages for entry in thread_entries(message))


def _plain(turns: list[ChatMessage]) -> list[tuple]:
    """The turns as the template reads them (a tool result's text is third-party text either way)."""
    return [(t.role, t.text, t.tool_calls, t.tool_call_id, t.reasoning) for t in turns]


def _prompt(name: str, turns: list[ChatMessage]) -> str:
    source = (templates_dir() / f"{name}.jinja").read_text()
    plan = ChatPlan(detect_format(source))
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(
        plan.messages(template_messages([*turns, AGAIN])), add_generation_prompt=True, **plan.template_kwargs())


def test_a_stored_response_reads_what_came_before_an_mcp_call_as_the_input_does():
    sent, stored = _sent_back(), _read(_stored())
    assert _plain(stored) == _plain(sent)
    assert sent[1].tool_calls[0].name == "notes__list_notes" and sent[1].reasoning == "THINK-BEFORE"
    assert sent[1].text == "Let me look."
    assert [t.role for t in stored] == ["user", "assistant", "tool", "assistant"]  # (no turn of its own before)


def test_the_answers_own_loop_reads_its_calling_turn_as_a_later_response_does():
    """Within one answer (jan.services.mcp_use), the turn after a call read the call alone: the text and thinking
    the model wrote before it were dropped, which every later read of the same answer keeps."""
    from jan.services.mcp_use import McpCallDone, PendingCall, _turn

    live = _turn([PendingCall("mcp_1", "notes__list_notes", "{}")],
                 [McpCallDone("mcp_1", "notes", "list_notes", "{}", "groceries, ideas", None)],
                 "Let me look.", "THINK-BEFORE")
    assert _plain(live) == _plain(_sent_back()[1:3])


@pytest.mark.parametrize("template", ["ByteDance-Seed-OSS", "Qwen-Qwen3-0.6B"])
def test_the_follow_ups_prompt_is_the_same_either_way(template):
    sent = _prompt(template, _sent_back())
    assert _prompt(template, _read(_stored())) == sent
    # a web-page run continuing the thread (services/runs): the MCP call is in its prompt, read the same way
    run = history_messages(prompt_window(_stored()), "")
    assert _prompt(template, list(run)) == sent
    assert "groceries, ideas" in sent
    if template == "ByteDance-Seed-OSS":  # (keeps earlier turns' thinking: the call's is there, once)
        assert sent.count("THINK-BEFORE") == 1


def test_a_web_page_run_reads_a_threads_mcp_calls():
    run = history_messages(prompt_window(_stored()), "")
    assert _plain(list(run)) == _plain(_sent_back())
    # the result is a tool's output: third-party text, tokenized as text (jan.services.untrusted)
    assert [type(p).__name__ for p in run[2].content] == ["UntrustedTextPart"]
    # thinking alone before the call (no text): in the window, as the call's; thinking alone before a user turn (a
    # reply cut off in its thinking) is an answer's turn of its own, as the Responses API reads it
    thought_only = [to_thread_message(ChatMessage.of_text("user", "My notes?")),
                    *(to_thread_message(turn) for turn in responses.output_turns(OUTPUT[:1] + OUTPUT[2:]))]
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [USER, *OUTPUT[:1], *OUTPUT[2:]]})
    assert _plain(list(history_messages(prompt_window(thought_only), ""))) == _plain(
        responses.input_messages(body.input))
    cut = [thought_only[0], to_thread_message(ChatMessage("assistant", (), reasoning="cut")),
           to_thread_message(ChatMessage.of_text("user", "again"))]
    assert prompt_window(cut) == cut
    assert [(m.role, m.reasoning) for m in history_messages(cut, "")] == [
        ("user", None), ("assistant", "cut"), ("user", None)]
    # a web search call, a listing: no turn; a call that names no tool: none either (a conversation keeps any)
    odd = [to_thread_message(ChatMessage.of_text("user", "q")),
           {"role": "assistant", "content": [], "metadata": {"item": {"type": "mcp_call", "id": "mcp_x"}}},
           {"role": "assistant", "content": [], "metadata": {"item": {"type": "web_search_call", "id": "ws_1"}}},
           to_thread_message(ChatMessage.of_text("assistant", "a"))]
    assert [m.role for m in history_messages(prompt_window(odd), "")] == ["user", "assistant"]


def test_a_conversation_keeps_the_thinking_before_an_mcp_call_as_its_reasoning_item():
    items = [USER, *OUTPUT]
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": items})
    turns = [turn for turn, _, _ in responses.sourced_turns(body.input)]
    kept = conversations.kept_turns(items, turns, responses.input_sources(body.input))
    # what the model wrote before the call is a turn of its own (listed as its items, their ids kept), then the
    # listing and the call
    assert [(k.item or {}).get("type") for k in kept] == [None, None, "mcp_list_tools", "mcp_call", None]
    listed = [item for item, _ in conversations.message_items("m", kept[1].message, ids=kept[1].item_ids)]
    assert [(i["id"], i["type"]) for i in listed] == [("rs_1", "reasoning"), ("msg_0", "message")]
    messages = [to_thread_message(k) for k in kept]
    assert _plain(_read(messages)) == _plain(_sent_back())


def test_thinking_alone_before_anything_else_stays_a_turn():
    # (an answer cut off in its thinking, then the user: not a call's, nothing joined)
    cut = ChatMessage("assistant", (), reasoning="cut")
    turns = history_turns([ChatMessage.of_text("user", "q"), cut, ChatMessage.of_text("user", "again"),
                           {"type": "web_search_call", "id": "ws_1"}])
    assert turns[1] == cut and len(turns) == 3
    assert isinstance(turns[0].content[0], TextPart)


def test_an_approved_call_ends_the_turn_that_asked_for_it():
    """A call approved in a later request (mcp_approval_response) ran before the answer and was read as a turn of
    its own after the text and thinking the model wrote before asking; every later read of its mcp_call item joins
    them (history_turns): the approving answer's prompt is now that one."""
    from jan.server.dialects import responses_mcp
    from jan.services.mcp_use import McpCallDone, McpSession, PendingCall, _turn
    from jan.services.types import ChatRequest

    asked = [USER, OUTPUT[0], OUTPUT[1],
             {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "notes", "name": "list_notes",
              "arguments": "{}"}]
    approval = {"type": "mcp_approval_response", "approve": True, "approval_request_id": "mcpr_1"}
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [*asked, approval]})
    session = McpSession([], [], messages=_turn([PendingCall("mcpr_1", "notes__list_notes", "{}")], [
        McpCallDone("mcpr_1", "notes", "list_notes", "{}", "groceries, ideas", None)]))
    request = ChatRequest(None, tuple(responses.input_messages(body.input)))
    live = responses_mcp.with_tools(body, request, session).messages
    ran = {**OUTPUT[3], "id": "mcpr_1", "approval_request_id": "mcpr_1"}
    later = responses.ResponsesRequest.model_validate({"model": "m", "input": [*asked, approval, ran]})
    assert _plain(list(live)) == _plain(responses.input_messages(later.input))
    assert live[1].text == "Let me look." and live[1].reasoning == "THINK-BEFORE" and live[1].tool_calls


def test_a_call_is_read_by_the_name_its_tool_was_offered_by():
    """Two tools whose names meet once made function names (``検索`` and ``取得``: both ``wild____``) are offered by
    distinct names (jan.extensions.mcp.server.tool_names); a call read again was named ``<label>__<tool>`` plainly,
    a tool the model was not offered, and the same for both. Read again after its listing (stored, sent back, a
    run), a call has the name its tool was offered by."""
    from jan.extensions.mcp.server import tool_names

    offered = tool_names("wild", ["検索", "取得"])
    assert len(set(offered.values())) == 2
    listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "wild",
               "tools": [{"name": n, "input_schema": {"type": "object"}} for n in ("検索", "取得")]}
    call = {"type": "mcp_call", "id": "mcp_1", "server_label": "wild", "name": "取得", "arguments": "{}",
            "output": "ok"}
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [USER, listing, call]})
    sent = responses.input_messages(body.input)
    messages = [to_thread_message(ChatMessage.of_text("user", "My notes?")),
                *(to_thread_message(turn) for turn in responses.output_turns([listing, call]))]
    for turns in (sent, _read(messages), list(history_messages(prompt_window(messages), ""))):
        assert [c.name for t in turns for c in t.tool_calls] == [offered["取得"]], turns


def test_reasoning_kept_alone_then_parallel_calls_reads_the_same_every_way():
    """A conversation keeps reasoning no turn took (the last item added) as it was sent; MCP calls added after it
    (parallel ones, kept as joining the call before) end that thinking's turn, as an input with those items reads
    them. The Responses history (history_turns) read so, while a web-page run continuing the thread (chat_messages)
    left the thinking a turn of its own before the calls' turn: two prompts of one conversation. A reasoning item
    kept after the calls' results is an answer's turn of its own in both."""
    from jan.server.dialects.responses_store import KeptTurn

    def thought(item_id: str, text: str) -> dict:
        return {"type": "reasoning", "id": item_id, "summary": [], "content": [{"type": "reasoning_text",
                                                                               "text": text}]}

    alone, last = thought("rs_a", "THINK-ALONE"), thought("rs_z", "THINK-LAST")
    second = {**OUTPUT[3], "id": "mcp_2", "arguments": '{"page": 2}', "output": "more notes"}
    items = [(alone, False), (OUTPUT[2], False), (OUTPUT[3], False), (second, True), (last, False)]
    stored = [to_thread_message(ChatMessage.of_text("user", "My notes?")),
              *(to_thread_message(KeptTurn(None, item=item, joins=joins)) for item, joins in items),
              to_thread_message(AGAIN)]
    read = _read(stored)
    assert [(t.role, t.reasoning, [c.id for c in t.tool_calls], t.tool_call_id) for t in read] == [
        ("user", None, [], None), ("assistant", "THINK-ALONE", ["mcp_1", "mcp_2"], None), ("tool", None, [], "mcp_1"),
        ("tool", None, [], "mcp_2"), ("assistant", "THINK-LAST", [], None), ("user", None, [], None)]
    assert _plain(list(history_messages(prompt_window(stored), ""))) == _plain(read)
    # one call (an input cannot say calls are parallel): the items sent back in an input read the same too
    one = [message for message in stored if (message["metadata"].get("item") or {}).get("id") != "mcp_2"]
    body = responses.ResponsesRequest.model_validate({"model": "m", "input": [
        USER, alone, OUTPUT[2], OUTPUT[3], last, {"type": "message", "role": "user", "content": AGAIN.text}]})
    sent = responses.input_messages(body.input)
    assert _plain(_read(one)) == _plain(list(history_messages(prompt_window(one), ""))) == _plain(sent)
    assert sent[1].reasoning == "THINK-ALONE" and sent[1].tool_calls


def test_every_short_mix_of_kept_items_and_turns_reads_the_same_both_ways():
    """The two readers of a conversation's thread (history_turns, the Responses API's; chat_messages, a web-page
    run's, the Assistants API's and jan chat's) are one conversion of one history: every mix of up to three kept
    items (reasoning kept alone, a listing, an MCP call, one that failed, a parallel one, a web search call), turns
    (a user's, an answer with and without its thinking) and Jan thread messages of every kind (a run's reply cut off
    in its thinking, thinking kept in metadata, a pending, failed, interrupted or empty reply, a run's calling turn
    and its tool result, a result whose call is missing) between two user turns gives the same turns. A thinking-only
    answer was left out of a run's prompt and read as a turn of its own by the Responses API: a turn of its own in
    both now."""
    import itertools

    from jan.server.dialects.responses_store import KeptTurn
    from jan.services.tool_loop import chat_messages

    def call(i: int, error: bool = False) -> dict:
        return {**OUTPUT[3], "id": f"mcp_{i}", "arguments": f'{{"n": {i}}}',
                **({"output": None, "error": {"type": "mcp_tool_execution_error",
                                              "content": [{"type": "text", "text": "gone"}]}} if error else
                   {"output": f"out {i}"})}

    def kept(item: dict, joins: bool = False) -> dict:
        return to_thread_message(KeptTurn(None, item=item, joins=joins))

    kinds = {
        "user": lambda i: to_thread_message(ChatMessage.of_text("user", f"u{i}")),
        "answer": lambda i: to_thread_message(ChatMessage.of_text("assistant", f"a{i}")),
        "thought answer": lambda i: to_thread_message(ChatMessage.of_text("assistant", f"a{i}", reasoning=f"t{i}")),
        "reasoning": lambda i: kept({"type": "reasoning", "id": f"rs_{i}", "summary": [],
                                     "content": [{"type": "reasoning_text", "text": f"r{i}"}]}),
        "listing": lambda i: kept(OUTPUT[2]),
        "call": lambda i: kept(call(i)),
        "failed call": lambda i: kept(call(i, error=True)),
        "parallel call": lambda i: kept(call(i), joins=True),
        "web search": lambda i: kept({"type": "web_search_call", "id": f"ws_{i}"}),
        # Jan thread messages as runs (the web page, the Assistants API, jan chat) save them
        "run answer": lambda i: {"role": "assistant", "status": "completed", "metadata": {}, "content": [
            {"type": "reasoning", "text": {"value": f"rt{i}", "annotations": []}},
            {"type": "text", "text": {"value": f"ra{i}", "annotations": []}}]},
        "thinking only": lambda i: {"role": "assistant", "status": "stopped", "metadata": {}, "content": [
            {"type": "reasoning", "text": {"value": f"cut{i}", "annotations": []}}]},
        "metadata thinking": lambda i: {"role": "assistant", "status": "completed", "content": [],
                                        "metadata": {"reasoning_content": f"m{i}"}},
        "pending": lambda i: {"role": "assistant", "status": "pending", "metadata": {},
                              "content": [{"type": "text", "text": {"value": f"p{i}", "annotations": []}}]},
        "failed": lambda i: {"role": "assistant", "status": "error", "metadata": {},
                             "content": [{"type": "text", "text": {"value": f"e{i}", "annotations": []}}]},
        "interrupted": lambda i: {"role": "assistant", "status": "completed",
                                  "metadata": {"stop_reason": "interrupted"},
                                  "content": [{"type": "text", "text": {"value": f"x{i}", "annotations": []}}]},
        "empty": lambda i: {"role": "assistant", "status": "completed", "metadata": {}, "content": []},
        "run call": lambda i: {"role": "assistant", "status": "completed", "content": [], "metadata": {
            "tool_calls": [{"id": "call_r", "type": "function", "function": {"name": "f", "arguments": f'{{"i": {i}}}'}}]}},
        "run result": lambda i: {"role": "tool", "status": "ready", "metadata": {"tool_call_id": "call_r", "name": "f"},
                                 "content": [{"type": "text", "text": {"value": f"res{i}", "annotations": []}}]},
    }

    def as_chat(message: dict) -> tuple:
        calls = tuple((c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls")
                      or ())
        return (message["role"], message.get("content") or "", calls, message.get("tool_call_id"),
                message.get("reasoning_content"))

    for n in range(1, 4):
        for mix in itertools.product(kinds, repeat=n):
            thread = [kinds["user"](-1), *(kinds[kind](i) for i, kind in enumerate(mix)), kinds["user"](n)]
            # (a result whose call is missing: the Responses API keeps it to refuse the request, naming it; a run
            # goes on without it)
            read = history_turns((e for m in thread for e in thread_entries(m)), stray_results=False)
            stored = [(t.role, t.text, tuple((c.id, c.name, c.arguments) for c in t.tool_calls), t.tool_call_id,
                       t.reasoning) for t in read]
            assert [as_chat(m) for m in chat_messages(prompt_window(thread), "")] == stored, mix
