"""An Anthropic ``document`` block with a ``content`` source (text and image blocks): its text is the document, its
images go to the model as images after it. A model without a projector refuses them with the 400 any image gets,
naming the document's block; they are never dropped. The field named for a later block stays that block's."""

from __future__ import annotations

import base64

import anthropic
import pytest
from api_helpers import running
from cut_off_helpers import png_bytes
from dialect_helpers import anthropic_client

MODEL = "stories260K"
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(png_bytes()).decode()}}


@pytest.fixture(scope="module")
def client(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("doc-content") / "data", stories_path, n_ctx=1024) as server:
        yield anthropic_client(server)


def document(*blocks) -> dict:
    return {"type": "document", "title": "Notes", "source": {"type": "content", "content": list(blocks)}}


def count(client, content) -> int:
    return client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}]).input_tokens


def test_a_content_documents_text_is_read(client):
    plain = count(client, [{"type": "text", "text": "Hi"}])
    with_doc = count(client, [document({"type": "text", "text": "The cat is called Moss."}),
                              {"type": "text", "text": "Hi"}])
    assert with_doc > plain


@pytest.mark.parametrize("where", ["user", "tool_result"])
def test_a_content_documents_image_is_refused_like_any_image_never_dropped(client, where):
    doc = document({"type": "text", "text": "See the picture."}, IMAGE)
    if where == "user":
        content, field = [doc, {"type": "text", "text": "What is it?"}], "messages.0.content"
        messages = [{"role": "user", "content": content}]
    else:
        messages = [{"role": "user", "content": "Look."},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                  "content": [{"type": "text", "text": "found"}, doc]}]}]
        field = "messages.2.content"
    tools = [{"name": "look", "input_schema": {"type": "object"}}]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=4, messages=messages, tools=tools)
    assert info.value.status_code == 400
    message = info.value.body["error"]["message"]
    assert field in message and "projector" in message, message


def test_a_block_after_a_document_with_images_is_named_as_itself(client):
    damaged = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                              "data": base64.b64encode(b"%PDF-1.4 broken").decode()}}
    messages = [{"role": "user", "content": [document({"type": "text", "text": "x"}, IMAGE, IMAGE), damaged]}]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=4, messages=messages)
    # the document's text and two images are three parts of the typed message: the damaged PDF is still block 1
    assert "messages.0.content.1" in info.value.body["error"]["message"], info.value.body


def test_a_search_result_is_read_as_a_document_with_its_title_and_source(client):
    """A ``search_result`` block (in a turn or a tool result) is the text document of its content, its title and
    source first: the prompt is the one a ``document`` block with that title and context makes."""
    text = [{"type": "text", "text": "The lighthouse keeper's cat is called Moss."}, {"type": "text", "text": "Moss."}]
    result = {"type": "search_result", "source": "https://example.com/cats", "title": "Cats", "content": text,
              "citations": {"enabled": True}}
    same = {"type": "document", "title": "Cats", "context": "https://example.com/cats",
            "source": {"type": "text", "media_type": "text/plain", "data": "\n\n".join(t["text"] for t in text)}}
    question = {"type": "text", "text": "What is the cat called?"}
    assert count(client, [result, question]) == count(client, [same, question]) > count(client, [question]) + 8

    def in_tool_result(block) -> int:
        call = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}
        answer = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [block]}
        return client.messages.count_tokens(
            model=MODEL, tools=[{"name": "search", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": "Search."}, {"role": "assistant", "content": [call]},
                      {"role": "user", "content": [answer]}]).input_tokens

    assert in_tool_result(result) == in_tool_result(same)
    with pytest.raises(anthropic.BadRequestError) as err:  # only a user turn holds one
        client.messages.create(model=MODEL, max_tokens=2, messages=[
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": [result]}])
    assert err.value.body["error"]["message"].startswith("messages.1.content: an assistant message cannot hold")
