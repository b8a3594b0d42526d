"""jan.services.mcp_use without a model or a server: the answer's MCP sessions close however it ends (never
iterated, cancelled in the middle of a call)."""

from __future__ import annotations

import asyncio

import pytest

from jan.core import Tool, ToolResult
from jan.services import mcp_use
from jan.services.tool_loop import ToolEntry
from jan.services.types import CallDelta, ChatDelta, ChatMessage, ChatRequest

pytestmark = pytest.mark.timeout(60)


class FakeServer:
    def __init__(self):
        self.closed = 0

    async def close(self):
        self.closed += 1


class Hanging(Tool):
    name = "notes__hang"
    source = "mcp:notes"

    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled = False

    async def call(self, arguments, *, timeout=None):
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolResult.text("never")


def session_with(tool: Tool) -> tuple[mcp_use.McpSession, FakeServer]:
    fake = FakeServer()
    session = mcp_use.McpSession([fake], [])
    session.policy.entries[tool.name] = ToolEntry(tool.name, tool.spec(), tool, True)
    session.owners[tool.name] = ("notes", "hang")
    return session, fake


async def first_turn(closed: list):
    try:
        yield ChatDelta(tool_calls=(CallDelta(0, "call_1", "notes__hang", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")
    finally:
        closed.append(True)


def request() -> ChatRequest:
    return ChatRequest(model=None, messages=(ChatMessage.of_text("user", "hi"),))


async def test_never_iterated_closes_the_session_and_the_first_turn():
    session, fake = session_with(Hanging())
    closed: list = []
    first = first_turn(closed)
    await first.__anext__()  # (started, as the route's first turn is)
    rounds = mcp_use.rounds(lambda r: first_turn([]), request(), first, session, new_id=lambda p: p + "_1")
    await rounds.aclose()
    assert fake.closed == 1 and closed == [True]


async def test_cancelled_during_a_call_closes_the_session():
    tool = Hanging()
    session, fake = session_with(tool)
    rounds = mcp_use.rounds(lambda r: first_turn([]), request(), first_turn([]), session, new_id=lambda p: p + "_1")
    seen = []

    async def read():
        async for event in rounds:
            seen.append(event)

    task = asyncio.ensure_future(read())
    await asyncio.wait_for(tool.started.wait(), 30)
    assert isinstance(seen[-1], mcp_use.McpCallStarted) and seen[-1].name == "hang"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rounds.aclose()
    assert tool.cancelled and fake.closed >= 1


class Quick(Tool):
    name = "notes__hang"
    source = "mcp:notes"

    async def call(self, arguments, *, timeout=None):
        return ToolResult.text("done")


async def read_all(rounds) -> list:
    return [event async for event in rounds]


async def test_calls_past_the_last_turn_are_told_not_dropped():
    session, _ = session_with(Quick())
    events = await read_all(mcp_use.rounds(lambda r: first_turn([]), request(), first_turn([]), session,
                                           new_id=lambda p: p + "_1", max_steps=1))
    done = [e for e in events if isinstance(e, mcp_use.McpCallDone)]
    assert len(done) == 1 and done[0].output is None and "1 model turns" in done[0].error
    assert [e.finish_reason for e in events if isinstance(e, ChatDelta) and e.finish_reason] == ["stop"]


async def test_a_turn_calling_the_clients_tools_too_ends_there():
    async def mixed():
        yield ChatDelta(tool_calls=(CallDelta(0, "call_1", "notes__hang", "{}"),))
        yield ChatDelta(tool_calls=(CallDelta(1, "call_2", "client_fn", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")

    turns = []
    session, _ = session_with(Quick())
    events = await read_all(mcp_use.rounds(lambda r: turns.append(r) or first_turn([]), request(), mixed(), session,
                                           new_id=lambda p: p + "_1"))
    done = [e for e in events if isinstance(e, mcp_use.McpCallDone)]
    assert [d.output for d in done] == ["done"] and turns == []  # (run, and no turn after it: the client answers)
    deltas = [e for e in events if isinstance(e, ChatDelta)]
    assert [c.name for d in deltas for c in d.tool_calls] == ["client_fn"]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 18), (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


class Screenshot(Tool):
    name = "notes__hang"
    source = "mcp:notes"

    def __init__(self, image: bytes):
        self.image = image

    async def call(self, arguments, *, timeout=None):
        from jan.core import ToolImage, ToolText

        return ToolResult((ToolText("the screen"), ToolImage(self.image, "image/png")))


async def test_an_mcp_tools_image_goes_to_the_next_turn_as_an_image():
    """The next turn reads the image itself (a model without a projector reads its note: the chat service's
    jan.services.tool_images.seen_as_text); the client is told the text, the image as its note."""
    from jan.services.tool_images import ToolImagePart

    png = _png()
    turns = []
    session, _ = session_with(Screenshot(png))
    events = await read_all(mcp_use.rounds(lambda r: turns.append(r) or first_turn([]), request(), first_turn([]),
                                           session, new_id=lambda p: p + "_1", max_steps=2))
    [done, *_] = [e for e in events if isinstance(e, mcp_use.McpCallDone)]
    assert done.output == f"the screen\n[image image/png, {len(png)} bytes]"
    tool = turns[0].messages[-1]
    assert tool.role == "tool" and [p.text for p in tool.content[:1]] == ["the screen"]
    assert isinstance(tool.content[1], ToolImagePart) and tool.content[1].data == png


async def test_an_mcp_tools_image_that_does_not_decode_is_its_note():
    damaged = _png()[:60]  # (a PNG's magic bytes, cut off: the engine would refuse the whole request)
    turns = []
    session, _ = session_with(Screenshot(damaged))
    await read_all(mcp_use.rounds(lambda r: turns.append(r) or first_turn([]), request(), first_turn([]),
                                  session, new_id=lambda p: p + "_1", max_steps=2))
    tool = turns[0].messages[-1]
    assert all(p.type == "text" for p in tool.content), tool
    assert "image/png, 60 bytes, that cannot be read" in tool.text


async def test_an_approved_call_of_a_tool_not_offered_is_an_error_result_never_another_tools_run():
    """An approval (mcp_approval_response) for a tool the session does not offer (no longer listed, not allowed)
    was run by its plain name, which can be another server's tool's (labels ``a`` and ``a__b``, tools ``b__c`` and
    ``c``: both ``a__b__c``): that tool ran in its place. It is now an error result the model reads, named apart."""
    ran = []

    class Other(Tool):
        name = "a__b__c"
        source = "mcp:a__b"

        async def call(self, arguments, *, timeout=None):
            ran.append(arguments)
            return ToolResult.text("the other server's tool ran")

    tool = Other()
    session = mcp_use.McpSession([FakeServer()], [])
    session.policy.entries[tool.name] = ToolEntry(tool.name, tool.spec(), tool, True)
    session.owners[tool.name] = ("a__b", "c")
    assert mcp_use.jan_name("a", "b__c") == "a__b__c"
    await mcp_use._run_approved(session, [mcp_use.ApprovedCall("mcpr_1", "a", "b__c", "{}", True),
                                          mcp_use.ApprovedCall("mcpr_2", "a", "b__c", "{}", False)])
    assert ran == []
    approved, denied = session.events
    assert approved.output is None and "offers no tool 'b__c'" in approved.error
    assert (approved.server_label, approved.name) == ("a", "b__c")
    assert denied.output is None and "denied" in denied.error.lower()
    calls = [c.name for m in session.messages for c in m.tool_calls]
    assert len(calls) == 2 and "a__b__c" not in calls
    assert [m.text for m in session.messages if m.role == "tool"][0].startswith("Error: not run")
    # the tool it is offered by is still named so
    assert session.name_of("a__b", "c") == "a__b__c"


async def test_a_call_of_a_tool_no_server_offers_is_an_error_result_the_next_turn_reads():
    """The model calls ``notes__nope`` (named as a tool of the session's server ``notes``, which offers no such
    tool): it went to the client as a call of its own tool (a function_call of a tool it never defined). It is an
    error result the next turn reads, in the same turn as the call it made beside it; never asked, never a crash."""
    async def calls_two():
        yield ChatDelta(tool_calls=(CallDelta(0, "call_1", "notes__hang", "{}"),))
        yield ChatDelta(tool_calls=(CallDelta(1, "call_2", "notes__nope", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")

    async def answer():
        yield ChatDelta(content="ok")
        yield ChatDelta(finish_reason="stop")

    turns = []
    session, _ = session_with(Quick())
    events = await read_all(mcp_use.rounds(lambda r: turns.append(r) or answer(), request(), calls_two(), session,
                                           new_id=lambda p: p + "_1"))
    done = {e.id: e for e in events if isinstance(e, mcp_use.McpCallDone)}
    assert done["call_1"].output == "done"
    assert done["call_2"].output is None and "offers no tool 'nope'" in done["call_2"].error
    assert (done["call_2"].server_label, done["call_2"].name) == ("notes", "nope")
    assert not [c for e in events if isinstance(e, ChatDelta) for c in e.tool_calls]  # (nothing for the client)
    assert not [e for e in events if isinstance(e, mcp_use.McpApprovalAsked)]
    [after] = turns
    calling, *results = after.messages[1:]
    assert [c.name for c in calling.tool_calls] == ["notes__hang", "notes__nope"]
    assert [r.text for r in results][1].startswith("Error: not run")


async def test_the_usage_sums_every_turns_tokens_the_thinking_of_a_turn_ending_in_a_call_too():
    """The answer's usage counts each turn's tokens once: a turn that thought, then called the session's tool,
    and the turn that answered. Its reasoning tokens were dropped (the summed usage told 0 of them)."""
    from jan.engine.results import Usage

    async def thinking_then_call():
        yield ChatDelta(reasoning="hmm", tool_calls=(CallDelta(0, "call_1", "notes__hang", "{}"),))
        yield ChatDelta(finish_reason="tool_calls")
        yield ChatDelta(choice=-1, usage=Usage(prompt_tokens=10, completion_tokens=7, cached_tokens=2,
                                               draft_tokens=4, draft_accepted=3), reasoning_tokens=5)

    async def thinking_then_answer(_request):
        yield ChatDelta(reasoning="so", content="done")
        yield ChatDelta(finish_reason="stop")
        yield ChatDelta(choice=-1, usage=Usage(prompt_tokens=20, completion_tokens=4, cached_tokens=9), reasoning_tokens=2)

    session, _ = session_with(Quick())
    events = await read_all(mcp_use.rounds(thinking_then_answer, request(), thinking_then_call(), session,
                                           new_id=lambda p: p + "_1"))
    [last] = [e for e in events if isinstance(e, ChatDelta) and e.usage is not None]
    usage = last.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, last.reasoning_tokens) == (30, 11, 11, 7)
    assert (usage.draft_tokens, usage.draft_accepted) == (4, 3)
