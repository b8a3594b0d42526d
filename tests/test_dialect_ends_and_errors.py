"""How the dialects tell what the chat path did, by kind: Anthropic Messages (``/v1/messages``), OpenAI Responses
(``/v1/responses``) and, beside them, OpenAI chat completions. On a real server with stories260K (every generation
on it runs to its token limit: ``ignore_eos`` in its parameters) and a tiny reasoning model.

1. A generation the server cuts off (the model stopped under it: ``finish_reason`` ``cancelled``) is never told as a
   normal end: Anthropic has no stop reason for it (an ``error`` event after the partial answer, or an error
   response), a response ends ``cancelled`` (stored so). Every finish reason of the typed path maps explicitly.
2. One table of reasoning effort levels (``xhigh`` and ``max`` too), the field named in the dialect's terms.
3. Anthropic's own checks: ``thinking.budget_tokens`` (>= 1024, < max_tokens), image ``media_type`` (one of four,
   and the data's own), every ``thinking.type``, ``display: "omitted"``.
4. A user message of no content parts is a 400 naming it, in every dialect.
5. A ``tool_choice`` that needs a tool without one to call is a 400.
6. Errors name the dialect's own fields, with one code per kind.
7. A full queue says when to try again (``Retry-After``); Anthropic's clients hear 529 ``overloaded_error``.
"""

from __future__ import annotations

import base64
from typing import get_args

import anthropic
import openai
import pytest
from api_helpers import until
from cut_off_helpers import (
    HOLD_N_CTX,
    LONG,
    LONG_N_CTX,
    MODEL,
    ONCE,
    WAIT_S,
    cut_off_stream,
    cut_off_whole,
    only_slot_held,
    png_bytes,
    post,
    request,
    stop_once_generating,
)
from dialect_helpers import has_reasoning_parser, reasoning_model
from jan.errors import EngineError
from jan.extensions.remote.upstream import UpstreamError
from jan.extensions.remote.wire import finish_reason_of
from jan.server import schemas
from jan.server.dialects import anthropic as am
from jan.server.dialects import responses as rs
from jan.services.errors import GenerationCancelledError
from jan.services.types import FINISH_REASONS, ChatDelta, ToolCallDelta
from jan.templates.formats.plan import EFFORT_LEVELS, EFFORTS, ReasoningRequest
from server_helpers import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("dialect-ends")
    srv = start_server(tmp, [stories_path, reasoning_model(tmp)], n_ctx=LONG_N_CTX, n_parallel=2)
    # every generation on stories260K goes on to its token limit (the model's parameters, a layer under the request's)
    status, _, body = request(srv, "PATCH", f"/v1/models/{MODEL}", {"parameters": {"ignore_eos": True}})
    assert status == 200, body
    yield srv
    srv.stop()


# -- 1. a generation the server cuts off ---------------------------------------------------------------------------
async def test_a_streamed_message_cut_off_ends_with_an_error_event(server):
    events = await cut_off_stream(server, "/v1/messages", {"model": MODEL, "max_tokens": LONG, "messages": ONCE},
                                  b"content_block_delta")
    names = [name for name, _ in events]
    text = "".join(d["delta"]["text"] for name, d in events if name == "content_block_delta")
    assert names[0] == "message_start" and text  # the partial answer was sent ...
    # ... and is not passed off as a whole one: no stop reason (end_turn), an error event (Anthropic's shape) last
    assert "message_delta" not in names and "message_stop" not in names, names
    name, error = events[-1]
    assert name == "error" and error["type"] == "error", events[-3:]
    assert error["error"]["type"] == "overloaded_error" and "stopped" in error["error"]["message"], error
    assert names[-2] == "content_block_stop"  # the open block closed first: what was sent is well formed


async def test_a_message_cut_off_is_an_error_response(server):
    status, body = await cut_off_whole(server, "/v1/messages", {"model": MODEL, "max_tokens": LONG,
                                                                "messages": ONCE})
    # 503 (the model was stopped: try again, which loads it anew; the SDKs retry it), never a 500 or a message
    assert status == 503, body
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error", body
    assert "stopped" in body["error"]["message"]


async def test_a_streamed_response_cut_off_is_cancelled_and_stored_so(server):
    events = await cut_off_stream(server, "/v1/responses", {"model": MODEL, "max_output_tokens": LONG,
                                                            "input": "Once"}, b"response.output_text.delta")
    kinds = [data["type"] for _, data in events]
    assert "response.completed" not in kinds and kinds[-1] == "response.incomplete", kinds[-4:]
    final = events[-1][1]["response"]
    assert final["status"] == "cancelled" and final["incomplete_details"] is None, final
    message = final["output"][-1]
    assert message["status"] == "incomplete" and message["content"][0]["text"], message
    done = [data["item"] for _, data in events if data["type"] == "response.output_item.done"]
    assert done and done[-1]["status"] == "incomplete"
    # stored as it ended: a later previous_response_id sees a cancelled response, not a completed turn
    status, _, stored = request(server, "GET", f"/v1/responses/{final['id']}")
    assert status == 200 and stored["status"] == "cancelled", stored
    assert stored["output"][-1]["content"][0]["text"] == message["content"][0]["text"]


async def test_a_response_cut_off_is_cancelled(server):
    status, body = await cut_off_whole(server, "/v1/responses", {"model": MODEL, "max_output_tokens": LONG,
                                                                 "input": "Once", "store": False})
    assert status == 200 and body["status"] == "cancelled", body
    assert body["output"][-1]["status"] == "incomplete" and body["completed_at"] is None


async def test_a_background_response_cut_off_is_stored_cancelled(server):
    status, created = post(server, "/v1/responses", {"model": MODEL, "max_output_tokens": LONG, "input": "Once",
                                                     "background": True})
    assert status == 200, created
    await stop_once_generating(server, "the background response never started")

    def final() -> dict | None:
        got = request(server, "GET", f"/v1/responses/{created['id']}")[2]
        return got if got["status"] not in ("queued", "in_progress") else None

    done = until(final, "the background response ends")
    assert done["status"] == "cancelled", done
    assert done["output"][-1]["status"] == "incomplete" and done["output"][-1]["content"][0]["text"]


async def test_chat_completions_tell_a_cut_off_as_cancelled(server):
    # (OpenAI's own finish reasons have none for it: jan's, as its engine says it; a whole answer says stop/length)
    status, body = await cut_off_whole(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": LONG,
                                                                        "messages": ONCE})
    assert status == 200 and body["choices"][0]["finish_reason"] == "cancelled", body
    assert body["choices"][0]["message"]["content"]


def test_every_finish_reason_maps_explicitly():
    anthropic_reasons = set(get_args(anthropic.types.StopReason))
    statuses = set(get_args(openai.types.responses.response_status.ResponseStatus))
    assert set(am.STOP_REASONS) | {"cancelled"} == set(FINISH_REASONS) == set(rs.STATUSES)
    for reason in FINISH_REASONS:
        assert rs._status(reason) in statuses
        if reason == "cancelled":
            assert rs._status(reason) == "cancelled"
            with pytest.raises(GenerationCancelledError):
                am.stop_reason(reason)
        else:
            assert am.stop_reason(reason) in anthropic_reasons
    assert rs._status("length") == rs._status("content_filter") == "incomplete"
    assert set(rs.INCOMPLETE_REASONS.values()) <= set(get_args(get_args(
        openai.types.responses.response.IncompleteDetails.model_fields["reason"].annotation)[0]))
    # a reason nobody knows is never a normal end
    with pytest.raises(EngineError):
        am.stop_reason("exploded")
    with pytest.raises(EngineError):
        rs._status("exploded")
    # a remote upstream's reasons become the typed path's at its edge
    assert [finish_reason_of(r) for r in ("stop", "function_call", "model_length", "abort", None)] == \
        ["stop", "tool_calls", "length", "cancelled", None]
    with pytest.raises(UpstreamError):
        finish_reason_of("exploded")


def test_the_encoders_end_a_cut_off_answer_as_such():
    stream = am.MessageStream("msg_1", "m")
    stream.start()
    stream.feed(ChatDelta(content="Once"))
    stream.feed(ChatDelta(tool_calls=(ToolCallDelta(0, "c1", "f", '{"a"'),)))
    stream.feed(ChatDelta(finish_reason="cancelled"))
    events = stream.finish()
    assert [name for name, _ in events] == ["content_block_stop", "error"]
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    responses = rs.ResponseStream()
    for delta in (ChatDelta(content="Once"), ChatDelta(finish_reason="cancelled")):
        responses.feed(delta)
    responses.finish()
    assert responses.status == "cancelled" and responses.output[-1]["status"] == "incomplete"


# -- 2. one table of effort levels ---------------------------------------------------------------------------------
def test_one_table_of_effort_levels():
    assert get_args(schemas.ReasoningEffort) == tuple(EFFORT_LEVELS)  # OpenAI chat, Responses, runs, assistants
    assert set(EFFORT_LEVELS.values()) <= set(EFFORTS)  # each a level the templates know
    sdk = get_args(get_args(openai.types.shared.reasoning_effort.ReasoningEffort)[0])
    assert set(sdk) <= set(EFFORT_LEVELS)  # every level OpenAI's SDK sends (Codex: xhigh)
    assert set(get_args(am.OutputConfig.model_fields["effort"].annotation.__args__[0])) <= set(EFFORT_LEVELS)
    assert ReasoningRequest(effort="xhigh").effort == ReasoningRequest(effort="max").effort == "high"
    with pytest.raises(ValueError):
        ReasoningRequest(effort="extreme")


@pytest.mark.parametrize("effort", ["xhigh", "max"])
def test_every_effort_level_is_taken(server, effort):
    status, body = post(server, "/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "Hi",
                                                  "store": False, "reasoning": {"effort": effort}})
    assert status == 200 and body["reasoning"]["effort"] == effort, body
    status, body = post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                                                         "reasoning_effort": effort})
    assert status == 200, body
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                                                 "output_config": {"effort": effort}})
    assert status == 200, body


def test_an_unknown_effort_is_named_as_the_dialect_names_it(server):
    status, body = post(server, "/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "Hi",
                                                  "reasoning": {"effort": "extreme"}})
    assert status == 400 and body["error"]["param"] == "reasoning.effort", body
    assert body["error"]["message"].startswith("reasoning.effort: ") and "xhigh" in body["error"]["message"]
    status, body = post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                                                         "reasoning_effort": "extreme"})
    assert status == 400 and body["error"]["param"] == "reasoning_effort", body
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                                                 "output_config": {"effort": "extreme"}})
    assert status == 400 and body["error"]["message"].startswith("output_config.effort: "), body


# -- 3. Anthropic's own checks -------------------------------------------------------------------------------------
def _image_message(media_type: str, data: bytes) -> list[dict]:
    block = {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                         "data": base64.b64encode(data).decode()}}
    return [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, block]}]


@pytest.mark.parametrize("thinking, max_tokens, field", [
    ({"type": "enabled", "budget_tokens": 1023}, 4000, "thinking.budget_tokens"),  # Anthropic's least: 1024
    ({"type": "enabled", "budget_tokens": 1024}, 1024, "thinking.budget_tokens"),  # less than max_tokens
    ({"type": "enabled"}, 4000, "thinking.budget_tokens"),  # required when enabled
    ({"type": "sometimes"}, 4000, "thinking.type"),
    ({"type": "adaptive", "display": "hidden"}, 4000, "thinking.display"),
])
def test_thinking_is_checked_as_anthropic_checks_it(server, thinking, max_tokens, field):
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": max_tokens, "messages": ONCE,
                                                 "thinking": thinking})
    assert status == 400 and body["type"] == "error", body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"].startswith(f"{field}: "), body


def test_interleaved_thinking_may_budget_past_max_tokens(server):
    # with interleaved thinking (a beta Claude Code sends) the budget spans a tool loop's turns
    body = {"model": MODEL, "max_tokens": 2, "messages": ONCE, "thinking": {"type": "enabled", "budget_tokens": 4096}}
    assert post(server, "/v1/messages", body)[0] == 400
    status, answer = post(server, "/v1/messages", body, {"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert status == 200, answer


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "adaptive", "display": "summarized"},
                                      {"type": "between_tools"}, {"type": "disabled"},
                                      {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}])
def test_every_thinking_type_is_taken(server, thinking):
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2000, "messages": ONCE,
                                                 "thinking": thinking, "stop_sequences": [" "]})
    assert status == 200, body


def test_thinking_types_mean_what_anthropic_says():
    def reasoning(thinking):
        return am.to_chat_request(am.MessagesRequest.model_validate(
            {"max_tokens": 2000, "messages": ONCE, "thinking": thinking})).reasoning

    assert reasoning({"type": "between_tools"}).enabled is False  # thinking off (progress notes: none locally)
    assert reasoning({"type": "adaptive"}).enabled is True and reasoning({"type": "adaptive"}).budget_tokens is None
    assert reasoning({"type": "enabled", "budget_tokens": 1500}).budget_tokens == 1500


@pytest.mark.parametrize("media_type, data, field, says", [
    ("image/bmp", b"BM\x00\x00", "source.media_type", "image/jpeg"),
    ("image/jpeg", "png", "source.data", "image/png"),  # the data is another image than it says
    ("image/png", b"not an image at all", "source.data", "no JPEG, PNG, GIF or WebP"),
])
def test_an_image_block_is_the_image_it_says(server, media_type, data, field, says):
    raw = png_bytes() if data == "png" else data
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2,
                                                 "messages": _image_message(media_type, raw)})
    assert status == 400, body
    message = body["error"]["message"]
    assert message.startswith(f"messages.0.content.1.{field}: ") and says in message, message


@pytest.mark.parametrize("path, body, field", [
    ("/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": _image_message("image/png", b"")},
     "messages.0.content.1.source.data"),
    ("/api/chat", {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "Hi", "images": [""]}]},
     "messages[0].images[0]"),
    ("/api/generate", {"model": MODEL, "stream": False, "prompt": "Hi", "images": ["data:image/png;base64,"]},
     "images[0]"),
])
def test_empty_image_data_is_told_as_empty(server, path, body, field):
    """An empty image is said to be empty, as the OpenAI routes and the engine say it, not to be of a wrong format
    ("the data is no JPEG, PNG, GIF or WebP image", "unsupported image format")."""
    status, answer = post(server, path, body)
    assert status == 400, answer
    message = answer["error"]["message"] if isinstance(answer["error"], dict) else answer["error"]
    assert message.startswith(f"{field}: ") and "empty" in message and "format" not in message, message


@pytest.mark.parametrize("clip, says", [(b"", "no data (the file is empty)"), (b"OggS" + bytes(40), "convert it")],
                         ids=["empty", "ogg"])
def test_a_clip_to_transcribe_that_is_no_clip_is_told_so_with_the_chat_routes_code(server, clip, says):
    """An empty file is said to be empty (it was "not WAV, MP3, FLAC"); a clip of another format has the code a
    chat's undecodable ``input_audio`` has (``unsupported_format``; it was ``invalid_value``)."""
    import httpx

    answer = httpx.post(server.base_url + "/v1/audio/transcriptions", data={"model": MODEL},
                        files={"file": ("a.wav", clip, "audio/wav")}, timeout=WAIT_S)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "file" and error["code"] == "unsupported_format" and says in error["message"], error


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_omitted_thinking_comes_back_empty_with_its_signature(server):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=WAIT_S)
    kwargs = dict(model="qwq-tiny", max_tokens=6, messages=[{"role": "user", "content": "Hi"}],
                  extra_body={"temperature": 0})
    shown = client.messages.create(**kwargs, thinking={"type": "adaptive"})
    omitted = client.messages.create(**kwargs, thinking={"type": "adaptive", "display": "omitted"})
    assert shown.content[0].type == omitted.content[0].type == "thinking" and shown.content[0].thinking
    assert omitted.content[0].thinking == "" and omitted.content[0].signature  # as Anthropic's
    # streamed: the block opens, its signature comes, it closes; no thinking text on the way
    with client.messages.stream(**kwargs, thinking={"type": "adaptive", "display": "omitted"}) as stream:
        kinds = [(event.type, getattr(getattr(event, "delta", None), "type", None)) for event in stream]
        final = stream.get_final_message()
    assert ("content_block_delta", "thinking_delta") not in kinds
    assert ("content_block_delta", "signature_delta") in kinds
    assert final.content[0].thinking == "" and final.content[0].signature == omitted.content[0].signature
    # sent back as it came, the signature gives the model its thinking again
    body = am.MessagesRequest.model_validate({"max_tokens": 5, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": omitted.content[0].signature}]},
        {"role": "user", "content": "And?"}]})
    assert am.to_chat_request(body).messages[1].reasoning == shown.content[0].thinking


# -- 4. a user message of no content -------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, field", [
    ("/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": []}]},
     "messages.0.content"),
    ("/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": [*ONCE, {"role": "assistant", "content": "Hi"},
                                                                    {"role": "user", "content": []}]},
     "messages.2.content"),
    ("/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": [{"role": "user", "content": []}]},
     "input[0].content"),
    ("/v1/responses", {"model": MODEL, "max_output_tokens": 2,
                       "input": [{"type": "message", "role": "developer", "content": []}, *ONCE]}, "input[0].content"),
    ("/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": []}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": [{"role": "system", "content": []}, *ONCE]},
     "messages[0].content"),
])
def test_a_message_of_no_content_parts_is_a_400_naming_it(server, path, body, field):
    status, answer = post(server, path, body)
    assert status == 400, answer
    if path == "/v1/messages":
        assert answer["error"]["type"] == "invalid_request_error"
    else:
        assert answer["error"]["param"] == field, answer
    assert answer["error"]["message"].startswith(f"{field}: "), answer
    assert "template" not in answer["error"]["message"]


# -- 5. a tool choice without a tool -------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body", [
    ("/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "Hi", "tool_choice": "required"}),
    ("/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "Hi",
                       "tool_choice": {"type": "function", "name": "get_weather"}}),
    ("/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": ONCE, "tool_choice": "required"}),
    ("/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                              "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
])
def test_a_tool_choice_without_its_tool_is_a_400(server, path, body):
    status, answer = post(server, path, body)
    assert status == 400 and answer["error"]["param"] == "tool_choice", answer
    assert answer["error"]["code"] == "invalid_value" and answer["error"]["message"].startswith("tool_choice: ")


def test_anthropic_names_a_tool_choice_not_among_the_tools(server):
    tools = [{"name": "get_time", "input_schema": {"type": "object"}}]
    for choice, says in (({"type": "tool", "name": "get_weather"}, "tool_choice.name: "),
                         ({"type": "any"}, "tool_choice: ")):
        status, answer = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": ONCE,
                                                       "tool_choice": choice, "tools": [] if "any" in choice.values()
                                                       else tools})
        assert status == 400 and answer["error"]["message"].startswith(says), answer


# -- 6. errors in the dialect's own terms --------------------------------------------------------------------------
@pytest.mark.parametrize("part, field", [
    # (a file_id names an upload of the Files API: one that is not there is file_not_found, test_files_api.py)
    ({"type": "input_image", "image_url": "https://example.com/a.png"}, "input[1].content[0].image_url"),
])
def test_an_image_jan_does_not_fetch_has_one_code(server, part, field):
    status, body = post(server, "/v1/responses", {"model": MODEL, "max_output_tokens": 2,
                                                  "input": [*ONCE, {"role": "user", "content": [part]}]})
    assert status == 400 and body["error"]["code"] == "not_allowed" and body["error"]["param"] == field, body


def test_media_a_model_cannot_take_is_said_of_the_field_that_sent_it(server):
    png = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    status, body = post(server, "/v1/responses", {
        "model": MODEL, "max_output_tokens": 2, "instructions": "Be brief.",
        "input": [*ONCE, {"role": "user", "content": [{"type": "input_image", "image_url": png}]}]})
    assert status == 400 and body["error"]["code"] == "no_projector", body
    assert body["error"]["param"] == "input[1].content" and body["error"]["message"].startswith("input[1].content: ")
    # Anthropic: a system prompt and a turn of tool results are no messages[i] of their own
    status, body = post(server, "/v1/messages", {"model": MODEL, "max_tokens": 2, "system": "Be brief.",
                                                 "tools": [{"name": "f", "input_schema": {"type": "object"}}], "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "42"},
                                     {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "Hm."},
        *_image_message("image/png", png_bytes())]})
    assert status == 400 and body["error"]["message"].startswith("messages.4.content: "), body
    status, body = post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": [
        *ONCE, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png}}]}]})
    assert status == 400 and body["error"]["param"] == "messages[1].content", body


def test_an_image_of_a_stored_turn_is_said_of_previous_response_id(tmp_path, stories_path, vision_pair):
    srv = start_server(tmp_path, [stories_path, vision_pair[0]], n_ctx=1024, n_parallel=1)
    try:
        png = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
        status, first = post(srv, "/v1/responses", {"model": "vision-chat", "max_output_tokens": 2, "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is it?"},
                                         {"type": "input_image", "image_url": png}]}]})
        assert status == 200, first
        status, body = post(srv, "/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "And now?",
                                                   "previous_response_id": first["id"]})
        assert status == 400 and body["error"]["param"] == "previous_response_id", body
        assert body["error"]["code"] == "no_projector" and "messages" not in body["error"]["message"], body
    finally:
        srv.stop()


# -- 7. a full queue -----------------------------------------------------------------------------------------------
def test_a_full_queue_says_when_to_try_again(tmp_path, stories_path):
    srv = start_server(tmp_path, [stories_path], n_parallel=1, max_queue=0, n_ctx=HOLD_N_CTX)
    try:
        with only_slot_held(srv):
            for path, body in (("/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": ONCE}),
                               ("/v1/responses", {"model": MODEL, "max_output_tokens": 2, "input": "Hi"})):
                status, headers, answer = request(srv, "POST", path, body)
                assert status == 503 and answer["error"]["code"] == "queue_full", answer
                assert int(headers["Retry-After"]) >= 1
            # Anthropic's clients hear their overloaded status (which they retry as such), with the same hint
            status, headers, answer = request(srv, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 2,
                                                                           "messages": ONCE})
            assert status == 529 and answer["error"]["type"] == "overloaded_error", answer
            assert int(headers["Retry-After"]) >= 1
    finally:
        srv.stop()
