"""Ollama's wire format without a server: request parsing, typed requests, and the exact NDJSON
objects built from typed deltas (golden sequences for a text answer and a tool call)."""

from __future__ import annotations

import base64
import json
import math

import pytest
from pydantic import ValidationError

from jan.engine.results import Usage
from jan.server.dialects import ollama_requests as convert
from jan.server.dialects import ollama_schemas as wire
from jan.server.dialects.ollama_models import parameter_size
from jan.server.dialects.ollama_responses import OllamaEncoder, Timing
from jan.services.types import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    ChoiceResult,
    CompletionDelta,
    ImagePart,
    ReasoningOptions,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
CLOCK = "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("value, seconds", [
    (None, None), ("5m", 300.0), ("1h2m3.5s", 3723.5), ("300ms", 0.3), (0, 0.0), ("0", 0.0), (30, 30.0),
    ("45", 45.0), (-1, math.inf), ("-1", math.inf), ("-1m", math.inf), (-0.5, math.inf),
])
def test_keep_alive_is_ollamas_duration(value, seconds):
    assert wire.parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["abc", "5x", "m5", "", True, "nan", "NaN"])
def test_bad_keep_alive_is_refused(value):
    with pytest.raises((ValueError, ValidationError)):
        wire.OllamaChatRequest.model_validate({"model": "m", "keep_alive": value})


def test_options_become_a_sampling_layer():
    body = wire.OllamaChatRequest.model_validate({
        "model": "m", "messages": [{"role": "USER", "content": "hi"}], "unknown_field": 1,
        "options": {"num_predict": 7, "temperature": 0, "top_k": 3, "top_p": 0.5, "min_p": 0.1, "typical_p": 0.9,
                    "repeat_penalty": 1.2, "repeat_last_n": 16, "presence_penalty": 0.5, "frequency_penalty": 0.25,
                    "seed": 42, "stop": ["\n"], "num_keep": 4, "num_gpu": 99, "mirostat": 0},
    })
    s = convert.sampling(body.options)
    assert (s.max_tokens, s.temperature, s.top_k, s.top_p, s.min_p, s.typical_p) == (7, 0, 3, 0.5, 0.1, 0.9)
    assert (s.repeat_penalty, s.repeat_last_n, s.presence_penalty, s.frequency_penalty) == (1.2, 16, 0.5, 0.25)
    assert s.seed == 42 and s.stop == ("\n",)
    # Ollama's "no limit" and "random seed" are "not given" here (a lower layer or the default decides)
    s = convert.sampling(wire.OllamaOptions(num_predict=-1, seed=-1, stop=[]))
    assert s.max_tokens is None and s.seed is None and s.stop is None
    with pytest.raises(ValidationError):
        wire.OllamaOptions.model_validate({"temperature": "hot"})
    assert wire.OllamaOptions.model_validate({"stop": "END"}).stop == ["END"]


def test_chat_request_is_typed():
    body = wire.OllamaChatRequest.model_validate({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?", "images": [PNG]},
            {"role": "assistant", "content": "", "thinking": "call it",
             "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                     "parameters": {"type": "object"}}}],
        "format": {"type": "object"}, "think": "high", "logprobs": True, "top_logprobs": 2,
    })
    req = convert.chat_request(body, "m")
    system, user, assistant, tool = req.messages
    assert system == ChatMessage("system", (TextPart("Be brief."),))
    assert user.content == (ImagePart(base64.b64decode(PNG), "image/png"), TextPart("Weather?"))
    assert assistant.reasoning == "call it" and assistant.tool_calls[0].name == "get_weather"
    assert json.loads(assistant.tool_calls[0].arguments) == {"city": "Paris"}
    # the tool result names its tool; it is matched to that call's id
    assert tool.tool_call_id == assistant.tool_calls[0].id and tool.name == "get_weather"
    assert req.tools[0].name == "get_weather" and req.tools[0].parameters == {"type": "object"}
    assert req.response_format == ResponseFormat(type="json_schema", schema={"type": "object"})
    # Ollama's think insists: a model that cannot think is a 400, not an answer without thinking
    assert req.reasoning == ReasoningOptions(enabled=True, effort="high", required=True)
    assert req.logprobs and req.top_logprobs == 2
    assert convert.response_format("json") == ResponseFormat(type="json_object")
    assert convert.response_format("") is None
    assert convert.reasoning(False) == ReasoningOptions(enabled=False)


def test_tool_results_are_matched_to_calls_without_a_search_through_them(monkeypatch):
    """Each tool result was matched by a search through the calls still open, by id or tool name: n^2/2 looks at a
    call for n calls and results (10,000 of each, a 1 MB body, held a worker for seconds; 20,000, half a minute).
    Matching is as before: by ``tool_call_id``, else by ``tool_name`` (the earliest open call of that tool), else
    the earliest open call."""
    looked = {"n": 0}

    class Counted(convert.ToolCall):
        def __getattribute__(self, name):
            if name in ("id", "name"):
                looked["n"] += 1
            return super().__getattribute__(name)

    monkeypatch.setattr(convert, "ToolCall", Counted)
    n = 2000

    def messages(results):
        return convert.chat_request(wire.OllamaChatRequest.model_validate({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": f"t{i % 3}", "arguments": {}}} for i in range(n)]},
            *results]}), "m").messages

    by_order = messages([{"role": "tool", "content": "x"}] * n)
    assert [m.tool_call_id for m in by_order[2:]] == [c.id for c in by_order[1].tool_calls]
    assert looked["n"] <= 20 * n, looked
    looked["n"] = 0
    by_name = messages([{"role": "tool", "content": "x", "tool_name": f"t{i % 3}"} for i in reversed(range(n))])
    assert looked["n"] <= 20 * n, looked
    calls = by_name[1].tool_calls
    firsts = {name: [c.id for c in calls if c.name == name] for name in ("t0", "t1", "t2")}
    got = {name: [m.tool_call_id for m in by_name[2:] if m.name == name] for name in ("t0", "t1", "t2")}
    assert got == firsts  # (each tool's results answer its calls in their order)
    by_id = messages([{"role": "tool", "content": "x", "tool_call_id": c.id} for c in reversed(calls)])
    assert [m.tool_call_id for m in by_id[2:]] == [c.id for c in reversed(calls)]
    assert [m.name for m in by_id[2:]] == [c.name for c in reversed(calls)]


def test_bad_requests_are_clear():
    with pytest.raises(ValidationError, match="role"):
        wire.OllamaChatRequest.model_validate({"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    with pytest.raises(ValidationError):
        wire.OllamaChatRequest.model_validate({"model": "m", "think": "extreme"})
    body = wire.OllamaChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "images": ["%%%"]}]})
    with pytest.raises(convert.OllamaRequestError, match=r"messages\[0\]\.images\[0\]: invalid base64"):
        convert.chat_request(body, "m")
    generate = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "template": "{{ .Prompt }}"})
    with pytest.raises(convert.OllamaRequestError, match="template"):
        convert.generate_chat_request(generate, "m")
    raw = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "images": [PNG]})
    with pytest.raises(convert.OllamaRequestError, match="images"):
        convert.completion_request(raw, "m")
    raw = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "system": "S"})
    with pytest.raises(convert.OllamaRequestError, match="raw mode does not support template, system, or context"):
        convert.completion_request(raw, "m")  # no template wraps a raw prompt: the system prompt would be lost


def test_a_refusal_names_what_made_the_prompt_one_no_template_wraps():
    # a template with raw is Ollama's raw-mode 400 (not "send raw: true", which the body did)
    raw = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "template": "T"})
    with pytest.raises(convert.OllamaRequestError, match="raw mode does not support template, system, or context"):
        convert.check_completion(raw)
    # images with a suffix (no raw sent) are said of the suffix
    fim = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "suffix": "s", "images": [PNG]})
    with pytest.raises(convert.OllamaRequestError) as err:
        convert.check_completion(fim)
    assert "with a suffix" in str(err.value) and "raw" not in str(err.value)
    raw = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "images": [PNG]})
    with pytest.raises(convert.OllamaRequestError, match="images cannot be sent with raw: true"):
        convert.check_completion(raw)


def test_generate_is_one_user_turn_or_a_raw_prompt():
    body = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "Hi", "system": "S",
                                                "options": {"num_predict": 3}})
    req = convert.generate_chat_request(body, "m")
    assert [(m.role, m.text) for m in req.messages] == [("system", "S"), ("user", "Hi")]
    raw = convert.completion_request(wire.OllamaGenerateRequest(model="m", prompt="Once", raw=True), "m")
    assert raw.prompts == ("Once",) and raw.n == 1
    assert convert.format_grammar("json") and convert.format_grammar(None) is None
    assert "root" in convert.format_grammar({"type": "object", "properties": {"a": {"type": "integer"}}})


def test_names_and_sizes():
    assert convert.model_id("llama3:latest") == "llama3" and convert.model_id("a:b") == "a:b"
    assert [parameter_size(n) for n in (7_615_616_512, 22_565_376, 292_800, 12, 0)] == ["7.6B", "22.6M", "292.8K",
                                                                                       "12", ""]


# -- golden streams ------------------------------------------------------------------------------
def _lines(encoder: OllamaEncoder, deltas) -> list[str]:
    objects = [obj for d in deltas for obj in encoder.delta(d)] + [encoder.final()]
    return [json.dumps(o, separators=(",", ":")) for o in objects]


def _encoder(kind="chat", context=False) -> OllamaEncoder:
    timing = Timing(started_ns=0, load_ns=1_000)
    timing.total_ns = lambda: 9_000_000  # a fixed clock: the golden bytes must not depend on speed
    return OllamaEncoder(kind, "m", timing, clock=lambda: CLOCK, context=context)


USAGE = Usage(prompt_tokens=5, completion_tokens=2, prompt_ms=1.5, generation_ms=2.0)


def test_golden_text_answer():
    deltas = [ChatDelta(content="Hel"), ChatDelta(content="lo"), ChatDelta(finish_reason="stop"),
              ChatDelta(choice=-1, usage=USAGE)]
    assert _lines(_encoder(), deltas) == [
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":"Hel"},"done":false}' % CLOCK,
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":"lo"},"done":false}' % CLOCK,
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":""},"done":true,'
        '"done_reason":"stop","total_duration":9000000,"load_duration":1000,"prompt_eval_count":5,'
        '"prompt_eval_duration":1500000,"eval_count":2,"eval_duration":2000000}' % CLOCK,
    ]


def test_golden_tool_call():
    deltas = [ChatDelta(reasoning="need weather"),
              ChatDelta(tool_calls=(ToolCallDelta(0, id="call_abc", name="get_weather", arguments='{"city":'),)),
              ChatDelta(tool_calls=(ToolCallDelta(0, arguments=' "Paris"}'),)),
              ChatDelta(finish_reason="tool_calls"), ChatDelta(choice=-1, usage=USAGE)]
    assert _lines(_encoder(), deltas) == [
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":"","thinking":"need weather"},'
        '"done":false}' % CLOCK,
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_abc",'
        '"function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}' % CLOCK,
        '{"model":"m","created_at":"%s","message":{"role":"assistant","content":""},"done":true,'
        '"done_reason":"stop","total_duration":9000000,"load_duration":1000,"prompt_eval_count":5,'
        '"prompt_eval_duration":1500000,"eval_count":2,"eval_duration":2000000}' % CLOCK,
    ]


def test_golden_generate_and_whole_objects():
    deltas = [CompletionDelta(text="Once"), CompletionDelta(text=" more", finish_reason="length"),
              CompletionDelta(choice=-1, usage=USAGE)]
    lines = _lines(_encoder("generate"), deltas)
    assert lines[0] == '{"model":"m","created_at":"%s","response":"Once","done":false}' % CLOCK
    assert json.loads(lines[-1])["done_reason"] == "length" and json.loads(lines[-1])["response"] == ""
    result = ChatResult("m", (ChoiceResult(ChatMessage("assistant", (TextPart("Hi"),), reasoning="hmm",
                                                       tool_calls=(ToolCall("c1", "f", '{"a": 1}'),)),
                                           "tool_calls"),), USAGE)
    whole = _encoder().whole(result)
    assert whole["message"] == {"role": "assistant", "content": "Hi", "thinking": "hmm", "tool_calls": [
        {"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]}
    assert whole["done"] is True and whole["done_reason"] == "stop" and whole["eval_count"] == 2


# -- context (/api/generate) -------------------------------------------------------------------------
def test_context_continues_a_generate_and_raw_refuses_it():
    body = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "Hi", "context": [1, 5, 9]})
    assert convert.generate_chat_request(body, "m").context == (1, 5, 9)
    assert convert.generate_chat_request(wire.OllamaGenerateRequest(model="m", prompt="Hi"), "m").context == ()
    raw = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "context": [1]})
    with pytest.raises(convert.OllamaRequestError, match="raw mode does not support template, system, or context"):
        convert.completion_request(raw, "m")
    # as Ollama counts it, an empty list is no context
    empty = wire.OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", "raw": True, "context": []})
    assert convert.completion_request(empty, "m").prompts == ("p",)
    for bad in (["1"], [True], [1.5], "1 2", [-(2**31)]):
        with pytest.raises(ValidationError, match="context"):
            wire.OllamaGenerateRequest.model_validate({"model": "m", "context": bad})
    # a negative id is an image's place, -1 - n for images[n] (jan.services.types.media_place: Ollama's [img-n]):
    # taken by the schema and passed on as it is, for the service to bind to the request's images, or refuse
    def context(ids: list[int], images: int) -> tuple[int, ...]:
        return convert.generate_chat_request(wire.OllamaGenerateRequest.model_validate(
            {"model": "m", "prompt": "Hi", "context": ids, "images": [PNG] * images}), "m").context

    assert context([1, -1], 0) == (1, -1) and context([1, -1, 5, -2], 1) == (1, -1, 5, -2)
    assert context([1, -1, 5], 2) == (1, -1, 5)


def test_the_done_object_of_a_generate_carries_the_exchange():
    deltas = [ChatDelta(content="Hel", prompt_tokens=3, prompt_token_ids=(1, 7, 8), token_ids=(20,)),
              ChatDelta(content="lo", token_ids=(21, 22)), ChatDelta(finish_reason="stop", token_ids=(23,)),
              ChatDelta(choice=-1, usage=USAGE)]
    lines = _lines(_encoder("generate", context=True), deltas)
    assert all("context" not in json.loads(line) for line in lines[:-1])
    assert lines[-1] == (f'{{"model":"m","created_at":"{CLOCK}","response":"","done":true,"done_reason":"stop",'
                         '"context":[1,7,8,20,21,22,23],"total_duration":9000000,"load_duration":1000,'
                         '"prompt_eval_count":5,"prompt_eval_duration":1500000,"eval_count":2,'
                         '"eval_duration":2000000}')
    # a raw prompt (context=False), a chat reply and deltas without the prompt's ids (a remote engine) have none
    for kind, context, first in (("generate", False, deltas[0]), ("chat", True, deltas[0]),
                                 ("generate", True, ChatDelta(content="Hel", token_ids=(20,)))):
        assert "context" not in json.loads(_lines(_encoder(kind, context), [first, *deltas[1:]])[-1])
    # the whole object of a "stream": false request: from the chat result, or from a completion's ids
    result = ChatResult("m", (ChoiceResult(ChatMessage("assistant", (TextPart("Hi"),)), "stop",
                                           prompt_token_ids=(1, 7), token_ids=(30, 31)),), USAGE)
    whole = OllamaEncoder("generate", "m", Timing(), context=True).whole(result)
    assert whole["context"] == [1, 7, 30, 31] and list(whole).index("context") == list(whole).index("done_reason") + 1
    whole = OllamaEncoder("generate", "m", Timing(), context=True).whole(text="x", prompt_token_ids=(1, 2),
                                                                        token_ids=(3,))
    assert whole["context"] == [1, 2, 3]
    assert "context" not in OllamaEncoder("generate", "m", Timing(), context=True).whole(text="")  # a load


def test_a_replys_ids_hold_one_place_per_image_however_many_chunks_it_is():
    """The reply's prompt ids (Ollama's context) hold one -1 per image or clip: an image sliced into tiles, or a clip
    over one 30 s window, is several chunks sharing its item's id (``<id>#k``), and one place per chunk made an
    exchange of one sliced image need as many images sent again as it had tiles to be continued. Each place names
    the request's item it is (-1 - n: Ollama's ``[img-n]``); a continued context's places come first, named as the
    context named them, and an item tokenized anew (its chunk ``#0``: put back at a context's place) is a place of its
    own even where the same picture comes just before it."""
    from types import SimpleNamespace

    from jan.services.chat import _token_ids

    prompt = SimpleNamespace(tokens=[1, 2, -1, -1, 5, -1, -1, -1, 6, -1, 7, -1],
                             media=[(2, 2, 2, "a#0", "image", True), (5, 3, 3, "a#1", "image", True),
                                    (9, 1, 1, "b#0", "image", True), (11, 1, 1, "", "audio", True)])
    assert _token_ids(prompt) == (1, 2, -1, 5, 6, -2, 7, -3)
    assert _token_ids([1, 2, 3]) == (1, 2, 3)
    # a context's place (naming images[1]) put back, then the new turn's images[0] and [1] (the same picture as
    # the place's: a "#0" of its own tokenizing)
    again = SimpleNamespace(tokens=[1, -1, 2, -1, -1], media=[(1, 1, 1, "b#0", "image", True),
                                                             (3, 1, 1, "a#0", "image", True),
                                                             (4, 1, 1, "b#0", "image", True)])
    assert _token_ids(again, (1, -2, 2)) == (1, -2, 2, -1, -2)
