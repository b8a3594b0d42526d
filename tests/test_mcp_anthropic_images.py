"""An image an MCP tool returned, in an Anthropic reply (``mcp_servers``) and read again: the reply's
``mcp_tool_result`` gave only the image's note, and a follow-up sending an ``mcp_tool_result`` with an image block
back was refused, so a vision model never saw the image again (the Responses API's and a run's keep it:
tests/test_mcp_parallel_turns.py)."""

from __future__ import annotations

import asyncio

from test_mcp_parallel_turns import _png, _screenshot_events, _seen

from jan.server.dialects import anthropic
from jan.server.dialects.anthropic_mcp import message_of_events
from jan.server.dialects.anthropic_threads import _reply


def test_an_anthropic_mcp_image_is_in_the_reply_and_read_again_as_an_image():
    """An ``mcp_tool_result`` gave only the image's note, and one sent back with an image block was refused or
    read as text: the reply carries the image (an image block in the result's content) and a follow-up (the
    content sent back, or a thread's) gives it to the model as an image."""
    png = _png()
    stream = anthropic.MessageStream("msg_1", "m")

    async def events():
        for name_data in stream.start():
            yield name_data
        for event in _screenshot_events(png):
            for name_data in stream.feed(event):
                yield name_data
        for name_data in stream.finish():
            yield name_data

    message = asyncio.run(message_of_events(events()))
    [result] = [b for b in message["content"] if b["type"] == "mcp_tool_result"]
    assert [b["type"] for b in result["content"]] == ["text", "image"]
    read = _reply(message)
    _seen(read[1], png)
    # sent back by a client: the same
    param = anthropic.MessageParam.model_validate({"role": "assistant", "content": message["content"]})
    _seen(anthropic._assistant_messages(param.content)[1], png)
    # an error result stays its text
    error = anthropic.MessageParam.model_validate({"role": "assistant", "content": [
        {"type": "mcp_tool_use", "id": "c1", "name": "screenshot", "server_name": "notes", "input": {}},
        {"type": "mcp_tool_result", "tool_use_id": "c1", "is_error": True,
         "content": [{"type": "text", "text": "boom"}]}]})
    assert anthropic._assistant_messages(error.content)[1].text == "Error: boom"
