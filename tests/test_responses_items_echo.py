"""Every item ``GET /v1/responses/{id}/input_items`` lists back is one the official openai SDK's own item types
validate strictly: the input as it was sent, with the defaults the dialect fills in where the client left a field out
(an ``input_image``'s ``detail``, ``"auto"``; an ``output_text``'s ``annotations``, ``[]``), in messages and in a
tool's output alike. (A listed ``input_image`` without ``detail`` was read by the SDK as another kind of part.)"""

from __future__ import annotations

import base64
import io

import openai
import pytest
from openai.types import responses as rt
from pydantic import TypeAdapter

from dialect_helpers import openai_client
from server_helpers import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("items-echo"), [vision_pair[0]], n_ctx=1024)
    yield srv
    srv.stop()


def _png_url() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 18), (30, 90, 200)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _item_type(item: dict) -> type:
    """The SDK's type of a listed item (its ``ResponseItem`` union, told apart by ``type`` and, for a message,
    ``role``)."""
    if item["type"] == "message":
        return rt.ResponseOutputMessage if item["role"] == "assistant" else rt.ResponseInputMessageItem
    return {"function_call": rt.ResponseFunctionToolCallItem,
            "function_call_output": rt.ResponseFunctionToolCallOutputItem,
            "custom_tool_call": rt.ResponseCustomToolCallItem,
            "custom_tool_call_output": rt.ResponseCustomToolCallOutputItem,
            "reasoning": rt.ResponseReasoningItem}[item["type"]]


def test_listed_input_items_are_the_sdks_own_items(server):
    client = openai_client(server)
    image = _png_url()
    text_file = "data:text/plain;base64," + base64.b64encode(b"notes").decode()
    response = client.responses.create(
        model="vision-chat", max_output_tokens=2,
        tools=[{"type": "function", "name": "shot", "parameters": {"type": "object"}}, {"type": "custom", "name": "cu"}],
        input=[{"role": "developer", "content": "be brief"},
               {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                            {"type": "input_image", "image_url": image},
                                            {"type": "input_image", "image_url": image, "detail": "low"},
                                            {"type": "input_file", "filename": "a.txt", "file_data": text_file}]},
               {"role": "assistant", "content": "a said"},
               {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c1",
                "output": [{"type": "input_text", "text": "shot"}, {"type": "input_image", "image_url": image}]},
               {"type": "custom_tool_call", "call_id": "c2", "name": "cu", "input": "zz"},
               {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"},
               {"role": "user", "content": "go on"}])

    items = client.responses.input_items.list(response.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message", "function_call", "function_call_output",
                                       "custom_tool_call", "custom_tool_call_output", "message"]
    for item in items:
        raw = item.model_dump(mode="json", exclude_unset=True)  # what the server sent, nothing the SDK filled in
        TypeAdapter(_item_type(raw)).validate_python(raw)  # strict: a required field missing raises

    user, assistant, output = items[1], items[2], items[4]
    assert [(p.type, getattr(p, "detail", None)) for p in user.content] == [
        ("input_text", None), ("input_image", "auto"), ("input_image", "low"), ("input_file", None)]
    assert [(p.type, p.annotations) for p in assistant.content] == [("output_text", [])]
    assert isinstance(output.output, list) and output.output[1].type == "input_image"
    assert output.output[1].detail == "auto"


def test_an_unknown_detail_is_still_refused(server):
    client = openai_client(server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="vision-chat", max_output_tokens=2, input=[
            {"role": "user", "content": [{"type": "input_image", "image_url": _png_url(), "detail": "huge"}]}])
    assert "detail" in str(caught.value)
