"""The typed services API (``jan.services.types``) misused by hand, as a library user might: each wrong type, and a
request with nothing in it, is a ``RequestError`` (a ``ValueError``) naming the field when the object is made --
never an AttributeError, a TypeError from a comparison, or a template's "no element 0" later. What the HTTP routes
build (validated already) is unchanged, and a list given for a tuple is that tuple."""

from __future__ import annotations

import asyncio

import pytest

from jan.server.errors import to_api_error
from jan.services.chat import ChatService
from jan.services.errors import RequestError
from jan.services.types import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    NamedToolChoice,
    ReasoningOptions,
    ResponseFormat,
    SamplingOptions,
    TextPart,
    ToolCall,
    ToolSpec,
    merge_options,
    resolve_sampling,
)

HI = ChatMessage.of_text("user", "hi")


def _request(**kw) -> ChatRequest:
    return ChatRequest(**{"model": None, "messages": (HI,), **kw})


MISUSES = {
    "a string for a message": (lambda: _request(messages=("hi",)), "messages[0]", "ChatMessage"),
    "no messages": (lambda: _request(messages=()), "messages", "at least one message"),
    "a string for the messages": (lambda: _request(messages="hi"), "messages", "tuple"),
    "a dict for the sampling": (lambda: _request(sampling={"temperature": 0}), "sampling", "SamplingOptions"),
    "an unknown tool choice": (lambda: _request(tool_choice="any"), "tool_choice", "'required'"),
    "a string n": (lambda: _request(n="2"), "n", "integer"),
    "a number for the model": (lambda: _request(model=3), "model", "string"),
    "a dict for a tool": (lambda: _request(tools=({"name": "f"},)), "tools[0]", "ToolSpec"),
    "a string token id": (lambda: _request(context=(1, "2")), "context[1]", "integer"),
    "a string max_tokens": (lambda: SamplingOptions(max_tokens="3"), "max_tokens", "integer"),
    "a bool temperature": (lambda: SamplingOptions(temperature=True), "temperature", "number"),
    "a float top_k": (lambda: SamplingOptions(top_k=40.5), "top_k", "integer"),
    "a number among the stops": (lambda: SamplingOptions(stop=["a", 3]), "stop[1]", "string"),
    "a string token id as a bias key": (lambda: SamplingOptions(logit_bias={"5": 1.0}), "logit_bias", "integer"),
    "a string bias": (lambda: SamplingOptions(logit_bias={5: "x"}), "logit_bias[5]", "number"),
    "a wrong role": (lambda: ChatMessage("usr"), "role", "assistant"),
    "a string among the parts": (lambda: ChatMessage("user", (TextPart("a"), "b")), "content[1]", "TextPart"),
    "a dict for a call": (lambda: ChatMessage("assistant", tool_calls=({"id": "c"},)), "tool_calls[0]", "ToolCall"),
    "no text": (lambda: TextPart(None), "text", "string"),
    "a string for image bytes": (lambda: ImagePart("abc", "image/png"), "data", "bytes"),
    "a nameless tool": (lambda: ToolSpec(None), "name", "string"),
    "a string for the prompts": (lambda: CompletionRequest(None, prompts="hi"), "prompts", "tuple"),
    "no prompts": (lambda: CompletionRequest(None, prompts=()), "prompts", "at least one prompt"),
    "a string token id in a prompt": (lambda: CompletionRequest(None, prompts=[[1, "2"]]), "prompts[0][1]", "integer"),
    "no inputs": (lambda: EmbeddingRequest(None, inputs=()), "inputs", "at least one input"),
    # a thinking switch that is no boolean: refused for every engine (a remote one was sent it as it was), not only
    # where a local template renders it; llama-server refuses a string, "true" and "false" included
    "a string thinking switch": (lambda: _request(chat_template_kwargs={"enable_thinking": "yes"}),
                                 "chat_template_kwargs.enable_thinking", "boolean"),
    "a string 'false' switch": (lambda: _request(chat_template_kwargs={"enable_thinking": "false"}),
                                "chat_template_kwargs.enable_thinking", "boolean"),
    "a number for thinking": (lambda: _request(chat_template_kwargs={"thinking": 1}),
                              "chat_template_kwargs.thinking", "boolean"),
    # two constraints on one answer: the schema's was used and the GBNF dropped without a word (llama-server: 400)
    "a grammar with a JSON response format": (
        lambda: _request(grammar='root ::= "a"', response_format=ResponseFormat("json_object")), "grammar",
        "response_format"),
    "a grammar with a JSON schema": (
        lambda: _request(grammar='root ::= "a"', response_format=ResponseFormat("json_schema", {"type": "object"})),
        "grammar", "'json_schema'"),
    # out of the engine's range (jan.engine.params.RANGES): once a bare ValueError without its param, and only after
    # the model had loaded for the request
    "a temperature past 2": (lambda: SamplingOptions(temperature=5), "temperature", "<= 2"),
    "a negative top_k": (lambda: SamplingOptions(top_k=-5), "top_k", ">= 0"),
    "a top_p past 1": (lambda: SamplingOptions(top_p=3), "top_p", "<= 1"),
    "a max_tokens of 0": (lambda: SamplingOptions(max_tokens=0), "max_tokens", ">= 1"),
    "a negative repeat_penalty": (lambda: SamplingOptions(repeat_penalty=-1), "repeat_penalty", "> 0"),
    "a bias past 100": (lambda: SamplingOptions(logit_bias={5: 500}), "logit_bias", "<= 100"),
    "a stored layer's temperature past 2": (lambda: SamplingOptions.from_mapping({"temperature": 5}),
                                            "temperature", "<= 2"),
    "a stored layer's string temperature": (lambda: SamplingOptions.from_mapping({"temperature": "0.7"}),
                                            "temperature", "number"),
}


@pytest.mark.parametrize("make,param,said", MISUSES.values(), ids=MISUSES.keys())
def test_a_misuse_is_a_request_error_naming_the_field(make, param, said):
    with pytest.raises(RequestError) as caught:
        make()
    assert caught.value.param == param and said in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(param.partition(" ")[0])
    assert isinstance(caught.value, ValueError)  # what every front end answers as a 400 naming the field
    error = to_api_error(caught.value)
    assert error.status == 400 and error.param == param


def test_what_a_front_end_builds_is_accepted_as_it_was():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = ChatRequest(
        model="m", messages=[ChatMessage("system", [TextPart("Be brief.")]), HI,
                             ChatMessage("assistant", (), tool_calls=[ToolCall("c1", "f", "{}")]),
                             ChatMessage("tool", (TextPart("sunny"),), tool_call_id="c1", name="f"),
                             ChatMessage("user", (ImagePart(memoryview(b"png"), "image/png"),))],
        tools=[ToolSpec("f", "weather", schema, True)], tool_choice=NamedToolChoice("f"), parallel_tool_calls=None,
        response_format=ResponseFormat("json_schema", schema, "out", True), grammar=None,
        sampling=SamplingOptions(max_tokens=3, temperature=0, top_p=1, stop=("END",), logit_bias={5: 1}, seed=-1,
                                 speculative="ngram"),
        n=2, logprobs=True, top_logprobs=3, reasoning=ReasoningOptions(effort="low", budget_tokens=10),
        chat_template_kwargs={"enable_thinking": False}, context=[1, 2, 3], context_keep=-1, truncation="auto")
    # lists given for tuples are those tuples, all the way down
    assert isinstance(request.messages, tuple) and isinstance(request.messages[0].content, tuple)
    assert isinstance(request.messages[2].tool_calls, tuple) and request.tools[0].name == "f"
    assert request.context == (1, 2, 3)
    prompts = CompletionRequest("m", prompts=["Once", [1, 2]]).prompts
    assert prompts == ("Once", (1, 2))


def test_a_grammar_with_a_text_response_format_is_one_constraint():
    assert _request(grammar='root ::= "a"', response_format=ResponseFormat("text")).grammar == 'root ::= "a"'


def test_conveniences_that_mean_one_thing():
    assert SamplingOptions(stop="END").stop == ("END",)  # one stop string, not its characters
    assert ChatMessage("user", "hi").content == (TextPart("hi"),)  # a text turn, as of_text makes it
    assert ChatMessage("assistant", "").content == ()


def test_layers_still_merge_and_resolve():
    merged = merge_options(SamplingOptions(temperature=0), SamplingOptions(temperature=1.0, max_tokens=5))
    assert (merged.temperature, merged.max_tokens) == (0, 5)
    assert resolve_sampling(SamplingOptions.from_mapping({"max_tokens": -1, "stop": []})).top_k == 40


def test_the_chat_service_takes_a_chat_request():
    service = ChatService(models=None)  # (refused before the models are asked)
    with pytest.raises(TypeError, match="ChatRequest"):
        service.stream({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(TypeError, match="ChatRequest"):
        asyncio.run(service.render("hi"))


def _entries():
    from jan.services.completions import CompletionService
    from jan.services.embeddings import EmbeddingService

    chat, completions, embeddings = ChatService(models=None), CompletionService(models=None), EmbeddingService(None)
    return {  # (each refused before the models are asked)
        "chat.stream": (lambda r: chat.stream(r), "ChatRequest"),
        "chat.complete": (lambda r: asyncio.run(chat.complete(r)), "ChatRequest"),
        "chat.count": (lambda r: asyncio.run(chat.count(r)), "ChatRequest"),
        "chat.render": (lambda r: asyncio.run(chat.render(r)), "ChatRequest"),
        "completions.stream": (lambda r: completions.stream(r), "CompletionRequest"),
        "completions.complete": (lambda r: asyncio.run(completions.complete(r)), "CompletionRequest"),
        "embeddings.embed": (lambda r: asyncio.run(embeddings.embed(r)), "EmbeddingRequest"),
        "embeddings.rerank": (lambda r: asyncio.run(embeddings.rerank(r)), "RerankRequest"),
    }


@pytest.mark.parametrize("wrong", [None, {"model": "m", "input": ["hi"]}, "hi"], ids=["None", "dict", "str"])
@pytest.mark.parametrize("entry", list(_entries()))
def test_every_service_entry_takes_its_typed_request(entry, wrong):
    """Anything but the entry's typed request is a TypeError naming the type it takes, at the call: the embeddings'
    and rerank's were an AttributeError ('NoneType' object has no attribute 'model') from inside the service, and
    completions.stream's came only when the stream was read."""
    call, kind = _entries()[entry]
    with pytest.raises(TypeError, match=f"takes a jan.services.types.{kind}, got {type(wrong).__name__}"):
        call(wrong)


def test_a_prompt_closed_after_its_last_turn_is_rendered_and_never_run():
    """``generation_prompt=False`` (/apply-template's ``add_generation_prompt: false``) is for a rendering: a
    generation of such a request is a RequestError naming the field, before the models are asked."""
    closed = ChatRequest(model=None, messages=(ChatMessage("user", (TextPart("hi"),)),), generation_prompt=False)
    with pytest.raises(RequestError, match="add_generation_prompt") as caught:
        ChatService(models=None).stream(closed)
    assert caught.value.param == "add_generation_prompt"


def test_a_whole_float_is_an_integer_option_as_the_engine_takes_it():
    # model.json / stored parameters written by hand or by a JSON tool: "top_k": 40.0 worked before the checks
    options = SamplingOptions.from_mapping({"top_k": 40.0, "max_tokens": 12.0, "seed": 7.0})
    assert (options.top_k, options.max_tokens, options.seed) == (40, 12, 7)
    with pytest.raises(ValueError, match="top_k"):
        SamplingOptions.from_mapping({"top_k": 40.5})
