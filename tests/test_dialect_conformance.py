"""The Anthropic and Responses dialects as their real APIs behave, checked against the installed SDKs.

1. A top-level field a body does not declare is a 400 in the dialect's own error shape naming it (OpenAI's
   ``unknown_parameter``; Anthropic's "...: Extra inputs are not permitted"); every field the installed ``openai``
   and ``anthropic`` SDKs know for these endpoints is declared (derived from their TypedDicts here; a field of a release newer than
   the one jan was checked against is reported as a warning), and what agents send (Codex, Claude Code) is accepted. A field of
   chat completions (``reasoning_budget``) is refused with a pointer, never dropped.
2. Numeric ranges are the dialect's (Anthropic's ``temperature`` is 0-1).
3. A reasoning item the token limit cut off is ``incomplete``, streamed, whole and stored.
4. Anthropic thinking blocks are signed (``signature_delta`` before the block closes; the whole answer's block
   carries the same signature), and a signed block sent back is accepted.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import message_count_tokens_params as anthropic_count
from anthropic.types import message_create_params as anthropic_create
from anthropic.types.beta import message_count_tokens_params as beta_count
from anthropic.types.beta import message_create_params as beta_create
from openai.types.responses import input_token_count_params, response_create_params

from dialect_helpers import collapse, has_reasoning_parser, http_body, openai_client, reasoning_model
from jan.server.dialects import anthropic as am
from jan.server.dialects import responses as rs
from jan.server.errors import APIError
from jan.server.validation import validate_json
from jan.services.types import ChatDelta, ChatMessage, ChatResult, ChoiceResult, TextPart, ToolCallDelta, Usage
from server_helpers import http_post, raw_request, start_server

WAIT_S = 240  # a request's bound on a busy 2-core machine
ASK = [{"role": "user", "content": "Hi"}]
#: The least valid body of each request model (what a field under test is added to).
MINIMAL: dict[type, dict[str, Any]] = {
    rs.ResponsesRequest: {"input": "Hi"}, rs.InputTokensRequest: {"input": "Hi"},
    am.MessagesRequest: {"max_tokens": 2, "messages": ASK}, am.CountTokensRequest: {"messages": ASK},
}


def _keys(typed_dict: type) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


#: Each SDK's request TypedDicts for these endpoints, with the body jan validates them as.
SDK_BODIES = [
    (response_create_params.ResponseCreateParamsNonStreaming, rs.ResponsesRequest),
    (response_create_params.ResponseCreateParamsStreaming, rs.ResponsesRequest),
    (input_token_count_params.InputTokenCountParams, rs.InputTokensRequest),
    (anthropic_create.MessageCreateParamsNonStreaming, am.MessagesRequest),
    (anthropic_create.MessageCreateParamsStreaming, am.MessagesRequest),
    (beta_create.MessageCreateParamsNonStreaming, am.MessagesRequest),
    (beta_create.MessageCreateParamsStreaming, am.MessagesRequest),
    (beta_create.ParseMessageCreateParamsBase, am.MessagesRequest),
    (anthropic_count.MessageCountTokensParams, am.CountTokensRequest),
    (beta_count.MessageCountTokensParams, am.CountTokensRequest),
]


#: The SDK releases jan's declared fields were checked against (a later one may add fields: see the test).
CHECKED = {"openai": (3, 57, 0), "anthropic": (2, 16, 0)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _declared(model: type) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _refusal(model: type, body: dict[str, Any]) -> APIError:
    with pytest.raises(APIError) as err:
        validate_json(json.dumps(body).encode(), model)
    return err.value


# -- 1. request fields ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed_dict, model", SDK_BODIES, ids=lambda v: getattr(v, "__qualname__", str(v)))
def test_every_field_the_sdk_knows_is_declared(typed_dict, model):
    missing = _keys(typed_dict) - _declared(model)
    sdk = {"openai": openai, "anthropic": anthropic}[typed_dict.__module__.split(".")[0]]
    if missing and _version(sdk.__version__) > CHECKED[sdk.__name__]:
        # a release after jan's list was made: told, not failed (the test cannot turn red by itself over time)
        warnings.warn(f"{sdk.__name__} {sdk.__version__} (newer than the {CHECKED[sdk.__name__]} jan was checked "
                      f"against) has fields {model.__name__} does not declare: {sorted(missing)}", stacklevel=1)
    else:
        assert not missing, f"{model.__name__} does not know {sorted(missing)} of the SDK's {typed_dict.__name__}"
    # and null is every optional one's default (what the SDKs' Optional[...] may send)
    for field in sorted(_keys(typed_dict) - set(MINIMAL[model]) - missing):
        model.model_validate({**MINIMAL[model], field: None})


@pytest.mark.parametrize("model", list(MINIMAL), ids=lambda m: m.__name__)
def test_an_unknown_top_level_field_is_refused_naming_it(model):
    err = _refusal(model, {**MINIMAL[model], "bogus_field": 1})
    assert err.status == 400 and err.param == "bogus_field" and err.code == "unknown_parameter"
    if model in (rs.ResponsesRequest, rs.InputTokensRequest):
        assert err.message == "Unknown parameter: 'bogus_field'."  # OpenAI's words
    else:
        assert err.message == "bogus_field: Extra inputs are not permitted"  # Anthropic's
    # a field of chat completions is pointed at: this endpoint's name for it, or that only chat completions has it
    err = _refusal(model, {**MINIMAL[model], "reasoning_budget": 100})
    assert err.param == "reasoning_budget" and "/v1/chat/completions" in err.message


def test_chat_completions_names_are_pointed_at_their_dialect_names():
    assert "max_output_tokens" in _refusal(rs.ResponsesRequest, {"input": "Hi", "max_tokens": 3}).message
    assert "thinking.budget_tokens" in _refusal(am.MessagesRequest, {**MINIMAL[am.MessagesRequest],
                                                                     "reasoning_budget": 3}).message
    assert "stop_sequences" in _refusal(am.MessagesRequest, {**MINIMAL[am.MessagesRequest], "stop": ["x"]}).message


def test_fields_inside_the_body_are_not_refused():
    # blocks and items gain fields often (citations, cache_control, ...): only the top level is checked
    am.MessagesRequest.model_validate({"max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}, "citations": []}]}]})
    rs.ResponsesRequest.model_validate({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Hi", "prompt_cache_breakpoint": {"mode": "explicit"}}]}]})


@pytest.mark.parametrize("model, field, value", [
    (am.MessagesRequest, "compaction", {"type": "compaction"}),  # its answer would be a summary block
    (rs.ResponsesRequest, "moderation", {"model": "omni-moderation-latest"}),  # as chat completions refuses it
])
def test_what_jan_cannot_honour_is_refused_not_ignored(model, field, value):
    err = _refusal(model, {**MINIMAL[model], field: value})
    assert err.param == field and err.code == "unsupported_parameter" and "not supported" in err.message


def test_a_token_count_ignores_compaction_as_anthropics_does():
    am.CountTokensRequest.model_validate({**MINIMAL[am.CountTokensRequest], "compaction": {"type": "compaction"}})


def test_a_responses_token_count_takes_the_body_it_counts():
    # a client counts the request it will send: its answer's fields are taken (and checked), not refused
    rs.InputTokensRequest.model_validate({"input": "Hi", "max_output_tokens": 3, "stream": True, "store": False})
    assert _refusal(rs.InputTokensRequest, {"input": "Hi", "max_output_tokens": 0}).param == "max_output_tokens"


# -- 2. numeric ranges -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, field, good, bad", [
    (am.MessagesRequest, "temperature", [0.0, 0.5, 1.0], [-0.1, 1.01, 2.0]),  # Anthropic's 0-1
    (am.MessagesRequest, "top_p", [0.0, 1.0], [-0.1, 1.1]),
    (am.MessagesRequest, "top_k", [0, 40], [-1]),
    (am.MessagesRequest, "max_tokens", [1], [0, -5]),
    (rs.ResponsesRequest, "temperature", [0.0, 2.0], [-0.1, 2.01]),  # OpenAI's 0-2
    (rs.ResponsesRequest, "top_p", [0.0, 1.0], [-0.1, 1.1]),
    (rs.ResponsesRequest, "top_logprobs", [0, 20], [-1, 21]),
    (rs.ResponsesRequest, "max_output_tokens", [1], [0, -1]),
    (rs.ResponsesRequest, "max_tool_calls", [1], [0]),
])
def test_numeric_ranges_are_the_dialects(model, field, good, bad):
    for value in good:
        model.model_validate({**MINIMAL[model], field: value})
    for value in bad:
        err = _refusal(model, {**MINIMAL[model], field: value})
        assert err.status == 400 and err.param == field, (field, value)


# -- 3. a reasoning item cut off ---------------------------------------------------------------------------------
def _responses_stream(deltas: list[ChatDelta], *, cancelled: bool = False) -> tuple[rs.ResponseStream, list[dict]]:
    stream = rs.ResponseStream(encrypted_reasoning=True)
    events = [e for d in deltas for e in stream.feed(d)]
    if cancelled:  # (a cancel request, a shutdown: the route's way of saying it)
        stream.cancelled()
    return stream, events + stream.finish()


@pytest.mark.parametrize("end", ["length", "cancelled"])
def test_a_streamed_reasoning_item_cut_off_is_incomplete(end):
    deltas = [ChatDelta(reasoning="Let me "), ChatDelta(reasoning="think")]
    stream, events = _responses_stream(deltas + ([ChatDelta(finish_reason=end)] if end == "length" else []),
                                       cancelled=end == "cancelled")
    [item] = stream.output
    assert item["type"] == "reasoning" and item["status"] == "incomplete"
    assert item["content"] == [{"type": "reasoning_text", "text": "Let me think"}]
    assert item["encrypted_content"] == rs.encrypted_reasoning("Let me think")  # what it said, for the next turn
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["status"] for i in done] == ["incomplete"]


def test_a_reasoning_item_the_answer_went_on_from_is_completed():
    stream, _ = _responses_stream([ChatDelta(reasoning="Hmm"), ChatDelta(content="Hi"),
                                   ChatDelta(finish_reason="length")])
    assert [(i["type"], i["status"]) for i in stream.output] == [("reasoning", "completed"), ("message", "incomplete")]
    calls, _ = _responses_stream([ChatDelta(reasoning="Hmm"), ChatDelta(tool_calls=(ToolCallDelta(0, "c", "f", "{"),)),
                                  ChatDelta(finish_reason="length")])
    assert [i["status"] for i in calls.output] == ["completed", "incomplete"]


def test_a_whole_answers_reasoning_cut_off_is_incomplete():
    def items(message: ChatMessage, finish: str) -> list[tuple[str, str]]:
        result = ChatResult("m", (ChoiceResult(message, finish),), Usage())
        out, _ = rs.output_items(result)
        return [(i["type"], i["status"]) for i in out]

    thinking = ChatMessage("assistant", (), reasoning="Let me think")
    assert items(thinking, "length") == [("reasoning", "incomplete")]  # as the stream: no empty message after it
    assert items(thinking, "stop") == [("reasoning", "completed")]
    answered = ChatMessage("assistant", (TextPart("Hi"),), reasoning="Hmm")
    assert items(answered, "length") == [("reasoning", "completed"), ("message", "incomplete")]


# -- 4. signed thinking ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("omitted", [False, True])
def test_every_streamed_thinking_block_is_signed_before_it_closes(omitted):
    stream = am.MessageStream("msg_1", "m", omit_thinking=omitted)
    events = stream.start()
    for delta in [ChatDelta(reasoning="Let me "), ChatDelta(reasoning="think"), ChatDelta(content="Hi"),
                  ChatDelta(finish_reason="stop")]:
        events += stream.feed(delta)
    events += stream.finish()
    block = [(n, d.get("delta", {}).get("type")) for n, d in events if d.get("index") == 0]
    assert block[-2:] == [("content_block_delta", "signature_delta"), ("content_block_stop", None)]
    [signature] = [d["delta"]["signature"] for n, d in events if d.get("delta", {}).get("type") == "signature_delta"]
    whole = am.message_from_result(ChatResult("m", (ChoiceResult(
        ChatMessage("assistant", (TextPart("Hi"),), reasoning="Let me think"), "stop"),), Usage()), "msg_1", "m",
        omit_thinking=omitted)
    assert whole["content"][0]["signature"] == signature and signature
    assert whole["content"][0]["thinking"] == ("" if omitted else "Let me think")
    # sent back, the signed block is the turn's thinking (its text, or the signature's where it is left out)
    body = am.MessagesRequest.model_validate({"max_tokens": 2, "messages": [
        *ASK, {"role": "assistant", "content": [whole["content"][0], {"type": "text", "text": "Hi"}]},
        {"role": "user", "content": "More"}]})
    assert am.to_chat_request(body).messages[1].reasoning == "Let me think"


# -- against a server, with the SDKs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("conformance")
    models = [stories_path] + ([reasoning_model(tmp)] if has_reasoning_parser() else [])
    srv = start_server(tmp, models, n_ctx=1024, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=WAIT_S)


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=WAIT_S)


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    status, payload = http_body(raw_request(server.base_url, http_post(path, body)))
    return status, json.loads(payload)


def test_responses_refuses_unknown_fields_and_takes_what_codex_sends(server, oai):
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="stories260K", input="Hi", max_output_tokens=2, extra_body={"bogus_field": 1})
    assert err.value.body["param"] == "bogus_field" and err.value.body["code"] == "unknown_parameter"
    assert err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="stories260K", input="Hi", max_output_tokens=2,
                             extra_body={"reasoning_budget": 64})
    assert err.value.body["param"] == "reasoning_budget" and "/v1/chat/completions" in err.value.body["message"]
    status, body = _post(server, "/v1/responses/input_tokens", {"model": "stories260K", "input": "Hi", "bogus": 1})
    assert status == 400 and body["error"]["param"] == "bogus"
    # Codex CLI's request: its documented fields, none of which changes a local answer
    kwargs = dict(model="stories260K", input="Hi", max_output_tokens=4, temperature=0)
    plain = oai.responses.create(**kwargs)
    codex = oai.responses.create(
        **kwargs, store=False, include=["reasoning.encrypted_content"], prompt_cache_key="conv-1",
        safety_identifier="user-hash", service_tier="auto", parallel_tool_calls=False, reasoning={"summary": "auto"},
        text={"verbosity": "low"}, context_management=[{"type": "compaction", "compact_threshold": 100000}],
        prompt_cache_options={"mode": "implicit"}, background_options={"completion_window": "soonest"},
        image={"context_compression": "auto"}, access_programs={"cyber": "standard"})
    assert codex.output_text == plain.output_text
    assert oai.responses.input_tokens.count(model="stories260K", input="Hi", personality="friendly").input_tokens


def test_anthropic_refuses_unknown_fields_and_takes_what_claude_code_sends(server, claude):
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="stories260K", max_tokens=2, messages=ASK, extra_body={"bogus_field": 1})
    assert err.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "bogus_field: Extra inputs are not permitted"},
                              "request_id": err.value.request_id}
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.count_tokens(model="stories260K", messages=ASK, extra_body={"bogus_field": 1})
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="stories260K", max_tokens=2, messages=ASK, extra_body={"temperature": 1.5})
    assert err.value.body["error"]["message"].startswith("temperature: ")
    # Claude Code's beta request: betas (a header), context editing, prompt caching, a container, routing hints
    kwargs = dict(model="stories260K", max_tokens=4, messages=ASK, extra_body={"temperature": 0})
    plain = claude.messages.create(**kwargs)
    beta = claude.beta.messages.create(
        **kwargs, betas=["context-management-2025-06-27", "interleaved-thinking-2025-05-14"],
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]}, cache_control={"type": "ephemeral"},
        container="container_1", service_tier="auto", speed="standard", inference_geo="us",
        diagnostics={"previous_message_id": "msg_1"}, metadata={"user_id": "u-1"})
    assert [b.text for b in beta.content] == [b.text for b in plain.content]
    counted = claude.beta.messages.count_tokens(model="stories260K", messages=ASK, betas=["token-counting-2024-11-01"],
                                                context_management={"edits": []})
    assert counted.input_tokens == claude.messages.count_tokens(model="stories260K", messages=ASK).input_tokens


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_a_reasoning_item_cut_off_is_incomplete_streamed_whole_and_stored(oai):
    # QwQ's template opens <think>: the tiny model's few tokens are all reasoning, cut off by the limit
    kwargs = dict(model="qwq-tiny", input="Hi", max_output_tokens=6, temperature=0, reasoning={"effort": "low"})
    whole = oai.responses.create(**kwargs)
    assert whole.status == "incomplete" and [(i.type, i.status) for i in whole.output] == [("reasoning", "incomplete")]
    events = list(oai.responses.create(**kwargs, stream=True))
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, i.status) for i in done] == [("reasoning", "incomplete")]
    assert events[-1].type == "response.incomplete"
    assert [(i.type, i.status) for i in events[-1].response.output] == [("reasoning", "incomplete")]
    for stored in (oai.responses.retrieve(whole.id), oai.responses.retrieve(events[-1].response.id)):
        assert [(i.type, i.status) for i in stored.output] == [("reasoning", "incomplete")]


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_thinking_is_signed_streamed_and_whole_and_goes_back(claude):
    kwargs = dict(model="qwq-tiny", max_tokens=6, messages=ASK, extra_body={"temperature": 0},
                  thinking={"type": "adaptive"})
    whole = claude.messages.create(**kwargs)
    thinking = whole.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    with claude.messages.stream(**kwargs) as stream:
        # the thinking block's raw events (the SDK adds its own "thinking" and "signature" events besides)
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream
                 if e.type.startswith("content_block_") and e.index == 0]
        final = stream.get_final_message()
    assert collapse(kinds) == [("content_block_start", None), ("content_block_delta", "thinking_delta"),
                                    ("content_block_delta", "signature_delta"), ("content_block_stop", None)]
    assert final.content[0].signature == thinking.signature and final.content[0].thinking == thinking.thinking
    # the signed block sent back (as Claude Code does on the next turn) is taken
    again = claude.messages.create(model="qwq-tiny", max_tokens=2, extra_body={"temperature": 0},
                                   thinking={"type": "adaptive"}, messages=[
                                       *ASK, {"role": "assistant", "content": [thinking.model_dump(), {
                                           "type": "text", "text": "Hello"}]}, {"role": "user", "content": "More"}])
    assert again.content
