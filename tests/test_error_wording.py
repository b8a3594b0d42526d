"""Error messages speak the client's language: the formats and types it may send, never jan's internal names
(a validator's function name), never a format that is then refused elsewhere."""

from __future__ import annotations

import base64

import pytest
from cut_off_helpers import post
from server_helpers import start_server

BMP = b"BM" + b"\0" * 64


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("wording"), [stories_path])
    yield srv
    srv.stop()


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"model": "stories260K", "prompt": "hi", "images": [base64.b64encode(BMP).decode()]}),
    ("/api/chat", {"model": "stories260K", "messages": [
        {"role": "user", "content": "hi", "images": [base64.b64encode(BMP).decode()]}]}),
])
def test_ollama_names_the_image_formats_every_front_end_takes(server, path, body):
    status, data = post(server, path, {**body, "stream": False})
    assert status == 400, data
    assert "expected PNG, JPEG, WebP or GIF" in data["error"] and "BMP" not in data["error"], data


def test_an_unknown_responses_item_type_lists_the_types_taken(server):
    status, data = post(server, "/v1/responses", {"model": "stories260K",
                                                  "input": [{"type": "file_search_call", "id": "fs_1"}]})
    assert status == 400, data
    message = data["error"]["message"]
    assert "_item_kind" not in message and "'function_call_output'" in message and "item_reference" in message


def test_reasoning_items_alone_are_no_turn_to_answer(server):
    status, data = post(server, "/v1/responses", {"model": "stories260K", "input": [
        {"type": "reasoning", "summary": []}]})
    assert status == 400, data
    assert data["error"]["param"] == "input" and "no message to answer" in data["error"]["message"], data


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory, minilm_path):
    srv = start_server(tmp_path_factory.mktemp("embed-only"), [minilm_path])
    yield srv
    srv.stop()


@pytest.mark.parametrize("path, body, error_of", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "truncation": "auto"},
     lambda d: (d["error"]["code"], d["error"]["message"])),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]},
     lambda d: (d["error"]["code"], d["error"]["message"])),
    ("/v1/responses", {"input": "hi", "truncation": "auto"}, lambda d: (d["error"]["code"], d["error"]["message"])),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": False},
     lambda d: ("model_not_supported" if "embedding model" in d["error"] else None, d["error"])),
])
def test_chatting_with_an_embedding_model_says_so_whether_or_not_the_prompt_is_fitted(embedding_server, path, body,
                                                                                   error_of):
    """(Fitting a prompt to the context ran first and told of a context that holds 0 tokens.)"""
    status, data = post(embedding_server, path, {"model": "all-MiniLM-L6-v2-f32", **body})
    assert status == 400, data
    code, message = error_of(data)
    assert code == "model_not_supported" and "embedding model" in message, data


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "tools": [{"type": "function", "function": {"name": "bad name!"}}]}),
    ("/v1/messages", {"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],
                      "tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}),
    ("/v1/responses", {"input": "hi", "tools": [{"type": "function", "name": "bad name!"}]}),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": False,
                   "tools": [{"type": "function", "function": {"name": "bad name!"}}]}),
])
def test_a_tool_name_one_dialect_refuses_every_dialect_refuses(server, path, body):
    status, data = post(server, path, {"model": "stories260K", **body})
    assert status == 400, data


def test_an_anthropic_tool_input_is_an_object(server):
    status, data = post(server, "/v1/messages", {"model": "stories260K", "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": "hi"}],
                                                 "tools": [{"name": "t", "input_schema": {"type": "string"}}]})
    assert status == 400 and "input_schema.type" in data["error"]["message"], data


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("path, body, said", [
    ("/v1/chat/completions", {"messages": HI, "max_token": 3},
     "Unrecognized request argument supplied: max_token (did you mean 'max_tokens'?)"),
    ("/v1/completions", {"prompt": "hi", "temprature": 0},
     "Unrecognized request argument supplied: temprature (did you mean 'temperature'?)"),
    ("/v1/embeddings", {"input": "hi", "dimension": 3},
     "Unrecognized request argument supplied: dimension (did you mean 'dimensions'?)"),
    ("/v1/responses", {"input": "hi", "max_output_token": 16},
     "Unknown parameter: 'max_output_token'. (did you mean 'max_output_tokens'?)"),
    ("/v1/messages", {"messages": HI, "max_tokens": 3, "temprature": 0},
     "temprature: Extra inputs are not permitted (did you mean 'temperature'?)"),
])
def test_a_mistyped_body_field_names_the_one_meant_in_every_dialect(server, path, body, said):
    """An unknown top-level field was refused in the dialect's words alone ("Unrecognized request argument
    supplied: max_token"); one a letter off a field the body has is told with that field, as a field of another
    endpoint is told with this one's name for it."""
    status, data = post(server, path, {"model": "stories260K", **body})
    assert status == 400, data
    assert data["error"]["message"] == said, data


def test_a_field_like_none_is_refused_as_before(server):
    status, data = post(server, "/v1/chat/completions", {"model": "stories260K", "messages": HI, "zzz": 1})
    assert status == 400 and data["error"]["message"] == "Unrecognized request argument supplied: zzz", data


@pytest.mark.parametrize("loc, data, path", [
    # a field missing beside a tag that is a field's name too (Anthropic's thinking block): the object's field, not
    # the text's (it said "messages[1].content[0].thinking: Field required" of a block that has its thinking)
    (("messages", 1, "content", "list[...]", 0, "thinking", "signature"),
     {"messages": [{}, {"content": [{"type": "thinking", "thinking": "hm"}]}]}, ("messages", 1, "content", 0,
                                                                                "signature")),
    # ... as before: a field inside the object the tag names, a field of the tagged object itself
    (("tools", 0, "function", "name"), {"tools": [{"type": "function", "function": {}}]}, ("tools", 0, "function",
                                                                                         "name")),
    (("x", 0, "text", "text"), {"x": [{"type": "text", "text": 5}]}, ("x", 0, "text")),
    (("x", 0, "text", "cache_control"), {"x": [{"type": "text", "text": "a", "cache_control": 5}]},
     ("x", 0, "cache_control")),
])
def test_a_missing_field_is_named_where_it_belongs(loc, data, path):
    from jan.server.errors import field_path

    assert field_path(loc, data) == path
