"""Parallel MCP calls (one model turn calling two tools, then both results) read back by every store as that one
turn. The answer's own loop (jan.services.mcp_use) feeds the next turn one assistant turn with both calls, then the
two results; a stored Responses answer (previous_response_id, a conversation, a web-page run continuing its thread)
and an Anthropic reply (a thread, or the content sent back) read them as two assistant turns, one call each: the
template rendered another prompt than the model had read (another format, and the prefix cache missed). Each read
is compared with the live turn, rendered on real tool-calling templates; calls of two turns in a row (no text
between) stay two turns."""

from __future__ import annotations

import asyncio

import pytest

from jan.server.dialects import anthropic, responses
from jan.server.dialects.anthropic_mcp import message_of_events
from jan.server.dialects.anthropic_threads import _reply
from jan.server.dialects.responses_store import thread_entries, to_thread_message
from jan.services.kept_items import history_turns
from jan.services.local import template_messages
from jan.services.mcp_use import McpCallDone, McpCallStarted, PendingCall, _turn
from jan.services.runs import history_messages, prompt_window
from jan.services.types import ChatDelta, ChatMessage
from jan.templates import ChatTemplate
from jan.templates.formats import ChatPlan
from jan.templates.formats.detect import detect_format
from jan.testing.gguf_models import templates_dir

USER = ChatMessage.of_text("user", "My notes and the time?")
AGAIN = ChatMessage.of_text("user", "Thanks. And the first note?")
#: (Kimi K2's shows a result's tool by its message's name: a result is named by its call, as the live loop names it)
#: (Mistral's and Kimi K2's (moonshotai) show a call's id: a kept call is read by the id the model gave it)
TEMPLATES = ["Qwen-Qwen3-0.6B", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "Mistral-Small-3.2-24B-Instruct-2506",
             "ibm-granite-granite-4.0", "Kimi-K2-Instruct", "moonshotai-Kimi-K2"]


def _events(turns: list[list[tuple[str, str, str]]]) -> list:
    """The events an answer's loop yields (jan.services.mcp_use._rounds) for model turns each calling ``(id, tool,
    output)``s: text, the turn's calls started, then each result; the answer's last text."""
    events: list = [ChatDelta(content="Let me look.")]
    for step, calls in enumerate(turns):
        events += [McpCallStarted(i, "notes", tool, "{}", step) for i, tool, _ in calls]
        events += [McpCallDone(i, "notes", tool, "{}", output, None) for i, tool, output in calls]
    return [*events, ChatDelta(content="Two notes; noon."), ChatDelta(finish_reason="stop")]


def _live(turns: list[list[tuple[str, str, str]]], ids: dict[str, str]) -> list[ChatMessage]:
    """The turns the answer's own loop read (``ids``: the call ids a store keeps, by the model's call ids)."""
    out: list[ChatMessage] = [USER]
    for k, calls in enumerate(turns):
        out += _turn([PendingCall(ids[i], f"notes__{tool}", "{}") for i, tool, _ in calls],
                     [McpCallDone(ids[i], "notes", tool, "{}", output, None) for i, tool, output in calls],
                     "Let me look." if k == 0 else "")
    return [*out, ChatMessage.of_text("assistant", "Two notes; noon.")]


def _responses(turns):
    """A stored Responses answer's thread messages, and the live turns by its items' ids."""
    encoder = responses.ResponseStream()
    for event in _events(turns):
        encoder.feed(event)
    encoder.finish()
    # (each call read by the id the model gave it, not its item's: templates such as Mistral's show it)
    ids = {i: i for t in turns for i, _, _ in t}
    return [to_thread_message(USER), *(to_thread_message(k) for k in encoder.kept(encoder.output))], _live(turns, ids)


def _anthropic(turns):
    """An Anthropic reply read again (a thread, or its content sent back), and the live turns."""
    stream = anthropic.MessageStream("msg_1", "m")

    async def events():
        for name_data in stream.start():
            yield name_data
        for event in _events(turns):
            for name_data in stream.feed(event):
                yield name_data
        for name_data in stream.finish():
            yield name_data

    message = asyncio.run(message_of_events(events()))
    ids = {i: i for t in turns for i, _, _ in t}
    return [USER, *_reply(message)], _live(turns, ids)


def _plain(turns) -> list[tuple]:
    return [(t.role, t.text, tuple((c.id, c.name, c.arguments) for c in t.tool_calls), t.tool_call_id, t.name)
            for t in turns]


def _prompt(name: str, turns: list[ChatMessage]) -> str:
    source = (templates_dir() / f"{name}.jinja").read_text()
    plan = ChatPlan(detect_format(source))
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(
        plan.messages(template_messages([*turns, AGAIN])), add_generation_prompt=True, **plan.template_kwargs())


PARALLEL = [[("c1", "list_notes", "groceries, ideas"), ("c2", "clock", "noon")]]
#: two model turns in a row, the second with no text: two turns, however their items lie side by side
SEQUENTIAL = [[("c1", "list_notes", "groceries, ideas")], [("c2", "clock", "noon")]]
#: a parallel turn, then a turn of one call
BOTH = [[("c1", "list_notes", "groceries, ideas"), ("c2", "clock", "noon")], [("c3", "list_notes", "again")]]


@pytest.mark.parametrize("turns", [PARALLEL, SEQUENTIAL, BOTH], ids=["parallel", "sequential", "both"])
def test_a_stored_response_reads_a_turns_calls_as_that_turn(turns):
    messages, live = _responses(turns)
    stored = history_turns(e for m in messages for e in thread_entries(m))
    run = list(history_messages(prompt_window(messages), ""))
    assert _plain(stored) == _plain(live)
    assert _plain(run) == _plain(live)
    assert sum(1 for t in live if t.tool_calls) == len(turns)
    for template in TEMPLATES:
        sent = _prompt(template, live)
        assert _prompt(template, stored) == sent, template
        assert _prompt(template, run) == sent, template


@pytest.mark.parametrize("turns", [PARALLEL, SEQUENTIAL, BOTH], ids=["parallel", "sequential", "both"])
def test_an_anthropic_reply_reads_a_turns_calls_as_that_turn(turns):
    read, live = _anthropic(turns)
    assert _plain(read) == _plain(live)
    for template in TEMPLATES:
        assert _prompt(template, read) == _prompt(template, live), template


def test_the_answers_stream_starts_a_turns_calls_before_their_results():
    """The events' order is what tells a turn's calls apart from the next turn's: both started, then the results
    (an Anthropic reply's blocks, a Responses answer's items added)."""
    stream = anthropic.MessageStream("msg_1", "m")
    blocks = [data["content_block"]["type"] for event in _events(PARALLEL) for name, data in stream.feed(event)
              if name == "content_block_start"]
    assert blocks == ["text", "mcp_tool_use", "mcp_tool_use", "mcp_tool_result", "mcp_tool_result", "text"]


def test_the_answers_loop_starts_a_turns_calls_before_their_results():
    """jan.services.mcp_use._rounds itself: a turn of two calls yields both starts, then both results, each start
    with the turn it is of; the next turn's call has the next."""
    from jan.core import Tool, ToolResult
    from jan.services import mcp_use
    from jan.services.tool_loop import ToolEntry
    from jan.services.types import CallDelta, ChatRequest

    class Quick(Tool):
        source = "mcp:notes"

        def __init__(self, name: str):
            self.name = name

        async def call(self, arguments, *, timeout=None):
            return ToolResult.text(self.name + " done")

    class Server:
        async def close(self):
            pass

    session = mcp_use.McpSession([Server()], [])
    for tool in ("list_notes", "clock"):
        entry = Quick(f"notes__{tool}")
        session.policy.entries[entry.name] = ToolEntry(entry.name, entry.spec(), entry, True)
        session.owners[entry.name] = ("notes", tool)

    async def parallel():
        yield ChatDelta(tool_calls=(CallDelta(0, "c1", "notes__list_notes", "{}"),))
        yield ChatDelta(tool_calls=(CallDelta(1, "c2", "notes__clock", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")

    async def one():
        yield ChatDelta(tool_calls=(CallDelta(0, "c3", "notes__clock", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")

    async def done():
        yield ChatDelta(content="ok")
        yield ChatDelta(finish_reason="stop")

    later = iter([one(), done()])
    request = ChatRequest(model=None, messages=(USER,))

    async def read():
        return [e async for e in mcp_use.rounds(lambda r: next(later), request, parallel(), session,
                                                new_id=lambda p: p + "_1")]

    events = [e for e in asyncio.run(read()) if not isinstance(e, ChatDelta)]
    assert [(type(e).__name__, e.id, getattr(e, "turn", None)) for e in events] == [
        ("McpCallStarted", "c1", 0), ("McpCallStarted", "c2", 0), ("McpCallDone", "c1", None),
        ("McpCallDone", "c2", None), ("McpCallStarted", "c3", 1), ("McpCallDone", "c3", None)]


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 18), (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


def _screenshot_events(png: bytes) -> list:
    """An answer whose call of ``screenshot`` returned a caption and an image (its client is told the image's
    note: an ``mcp_call``'s output is text; the model read the image: jan.services.mcp_use._run)."""
    from jan.services.tool_images import ToolImagePart
    from jan.services.untrusted import UntrustedTextPart

    note = f"the screen\n[image image/png, {len(png)} bytes]"
    parts = (UntrustedTextPart("the screen", source="tool"), ToolImagePart(png, "image/png"))
    return [McpCallStarted("c1", "notes", "screenshot", "{}", 0),
            McpCallDone("c1", "notes", "screenshot", "{}", note, None, parts),
            ChatDelta(content="A blue screen."), ChatDelta(finish_reason="stop")]


def _seen(turn: ChatMessage, png: bytes) -> None:
    from jan.services.tool_images import ToolImagePart

    assert turn.role == "tool" and [type(p).__name__ for p in turn.content] == ["UntrustedTextPart", "ToolImagePart"]
    assert turn.content[0].text == "the screen" and isinstance(turn.content[1], ToolImagePart)
    assert turn.content[1].data == png and turn.content[1].mime_type == "image/png"


def test_a_stored_responses_mcp_image_is_read_again_as_an_image():
    """A stored ``mcp_call`` whose tool returned an image kept only its note: a follow-up (previous_response_id,
    a conversation, a web-page run) showed a vision model no image. The thread message keeps the result's parts
    beside the item (never in it: the client's item is listed as it was), read again as the live loop fed them."""
    png = _png()
    encoder = responses.ResponseStream()
    for event in _screenshot_events(png):
        encoder.feed(event)
    encoder.finish()
    [call] = [item for item in encoder.output if item["type"] == "mcp_call"]
    assert call["output"] == f"the screen\n[image image/png, {len(png)} bytes]"  # (the client's item: text)
    messages = [to_thread_message(USER), *(to_thread_message(k) for k in encoder.kept(encoder.output))]
    assert [m["metadata"].get("item") for m in messages if m["metadata"].get("item")] == [call]
    stored = history_turns(e for m in messages for e in thread_entries(m))
    _seen(stored[2], png)
    run = history_messages(prompt_window(messages), "")
    _seen(run[2], png)
    # (a damaged kept image is left out, never a failed read)
    for m in messages:
        for part in m["metadata"].get("result_content", []):
            if part["type"] == "image_url":
                part["image_url"]["url"] = "data:image/png;base64,!!"
    assert [type(p).__name__ for p in history_turns(e for m in messages for e in thread_entries(m))[2].content] \
        == ["UntrustedTextPart"]



def test_a_kept_call_of_a_tool_not_listed_is_never_named_as_a_listed_one():
    """A kept ``mcp_call`` of a tool its server's listing does not have took its plain name, which can be a listed
    tool's (``a.b`` is offered as ``notes__a_b``; a call of ``a_b``, plainly ``notes__a_b`` too): the prompt read
    it as a call of the other tool."""
    from jan.extensions.mcp.server import tool_names

    offered = tool_names("notes", ["a.b"])
    listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "notes",
               "tools": [{"name": "a.b", "input_schema": {"type": "object"}}]}
    call = {"type": "mcp_call", "id": "mcp_1", "server_label": "notes", "name": "a_b", "arguments": "{}",
            "output": "ok"}
    turns = history_turns([USER, listing, call])
    [name] = [c.name for t in turns for c in t.tool_calls]
    assert name != offered["a.b"] and name.startswith("notes__a_b")


async def test_a_conversation_reads_a_turns_calls_as_that_turn_and_keeps_their_images(tmp_path):
    """A conversation (Conversations API: a thread of the conversation store) an answer with a parallel turn and an
    image was added to: what a response made in it reads (ConversationStore.history) is the live turns, the image
    an image; its items are listed as the client was given them (nothing kept beside an item shows)."""
    import types

    from jan.extensions.conversational.extension import ConversationalStoreExtension
    from jan.server.dialects.conversations_store import ConversationStore
    from jan.server.dialects.responses_store import ResponsesStore

    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    store = ConversationStore(ResponsesStore(tmp_path / "responses", lambda: threads))
    png = _png()
    encoder = responses.ResponseStream()
    for event in [*_events(BOTH)[:-2], *_screenshot_events(png)]:
        encoder.feed(event)
    encoder.finish()
    kept = encoder.kept(encoder.output)
    conversation = (await store.create([USER], None))["id"]
    await store.add(conversation, kept)
    turns, _ = await store.history(conversation)
    assert [(t.role, len(t.tool_calls)) for t in turns] == [
        ("user", 0), ("assistant", 2), ("tool", 0), ("tool", 0), ("assistant", 1), ("tool", 0),
        ("assistant", 1), ("tool", 0), ("assistant", 0)]
    _seen(turns[-2], png)
    items = [item for item in await store.items(conversation) if item["type"] == "mcp_call"]
    assert items == [item for item in encoder.output if item["type"] == "mcp_call"]


def test_an_mcp_result_a_thread_keeps_is_read_back_as_a_tools_images_and_named():
    """An Anthropic thread keeps its reply's turns as thread messages: an MCP result's image was read back as an
    image a client sent (a 400 for a model without a projector, though nobody chose to send it), and the result
    lost the name its call gave it (what templates like Kimi K2's show)."""
    from jan.server.dialects.responses_store import from_thread_message
    from jan.services.tool_images import ToolImagePart
    from jan.services.untrusted import UntrustedTextPart

    png = _png()
    turn = ChatMessage("tool", (UntrustedTextPart("the screen", source="tool"), ToolImagePart(png, "image/png")),
                       tool_call_id="c1", name="notes__screenshot")
    read = from_thread_message(to_thread_message(turn))
    _seen(read, png)
    assert read.name == "notes__screenshot" and read.tool_call_id == "c1"
    # a client's own result keeps its images as the client's (a model that cannot see them is told so)
    from jan.services.types import ImagePart, TextPart

    theirs = from_thread_message(to_thread_message(ChatMessage("tool", (TextPart("x"), ImagePart(png, "image/png")),
                                                               tool_call_id="c2")))
    assert not any(isinstance(p, ToolImagePart) for p in theirs.content) and theirs.name is None


async def test_a_kept_mcp_image_is_decoded_off_the_event_loop(tmp_path, monkeypatch):
    """A stored MCP call's image (kept beside its item, base64, :data:`jan.services.kept_items.RESULT_KEY`) is
    decoded whenever a follow-up reads the conversation (its history, a previous_response_id's turns, a web-page
    run's prompt): that ran on
    the event loop, however many screenshots the conversation held, stalling every other request. It is a worker's
    now, as a conversation's items with images are made."""
    import threading
    import types

    from jan.extensions.conversational.extension import ConversationalStoreExtension
    from jan.server.dialects.conversations_store import ConversationStore
    from jan.server.dialects.responses_store import ResponsesStore
    from jan.services import kept_items

    png = _png()
    encoder = responses.ResponseStream()
    for event in _screenshot_events(png):
        encoder.feed(event)
    encoder.finish()
    threads = ConversationalStoreExtension()
    await threads.on_load(types.SimpleNamespace(data_folder=tmp_path, bus=None))
    responses_store = ResponsesStore(tmp_path / "responses", lambda: threads)
    store = ConversationStore(responses_store)
    conversation = (await store.create([*encoder.kept(encoder.output)], None))["id"]

    decoded_on: list[bool] = []
    decode = kept_items.result_parts_of

    def recorded(content):
        decoded_on.append(threading.current_thread() is threading.main_thread())
        return decode(content)

    monkeypatch.setattr(kept_items, "result_parts_of", recorded)
    turns, _ = await store.history(conversation)
    _seen(next(t for t in turns if t.role == "tool"), png)
    messages = [m for m in await threads.list_messages(conversation)]
    _seen(next(t for t in await responses_store.turns(conversation, messages) if t.role == "tool"), png)
    assert decoded_on == [False, False]
    # and a web-page run continuing the thread (its window, then its prompt: each reads the kept image)
    from jan.services.runs import window_messages

    run = await window_messages(threads, conversation, messages, None, "")
    _seen(next(t for t in run if t.role == "tool"), png)
    assert len(decoded_on) > 2 and not any(decoded_on), decoded_on
