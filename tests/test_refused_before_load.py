"""A request for something its model cannot do is refused before anything loads the model, in every dialect, with
the dialect's own 4xx: thinking insisted on (Ollama's ``think``) from a model whose chat template cannot think,
tools insisted on (Ollama) from one whose template has none, images or audio sent to a model without a projector
for them, a ``suffix`` (fill-in-the-middle) for a model without FIM tokens. Its GGUF header, its projector's
header and its model.json say so (jan.services.abilities): loading gigabytes only to refuse (perhaps evicting
another model to make room) is the fault these tests catch. So are the other refusals the files (or the load
options) settle: token ids outside the vocabulary, embeddings of another size, more generations at once than the
model's slots and queue, an Ollama body no model could answer, an assistants run whose thread holds images for a
model without a projector. Each refusal is checked against the loaded-model list: the model was unloaded before,
and is still not loaded after.

stories260K has no chat template (ChatML stands in), no FIM tokens and no projector; vision-chat's projector has
a vision encoder and no audio encoder."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from api_helpers import running
from extension_helpers import call as request, kept_unloaded

WAIT_S = 300
STORIES = "stories260K"
VISION = "vision-chat"


def _png() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 20, 20)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


PNG = _png()
PNG_URL = "data:image/png;base64," + PNG
MP3 = base64.b64encode(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(64)).decode()  # (never decoded: refused first)
HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, vision_pair):
    model_path, _mmproj = vision_pair  # mmproj-vision-chat.gguf beside it: picked up on import
    # 2 slots and 2 queued: a request for 5 generations at once can never be served
    with running(tmp_path_factory.mktemp("before-load") / "data", stories_path, model_path, n_parallel=2,
                 max_queue=2) as srv:
        yield srv


def call(server, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return request(server, method, path, body, timeout=WAIT_S)


@pytest.fixture
def unloaded(server):
    """Both models unloaded: a refusal must load neither."""
    with kept_unloaded(server, STORIES, VISION, timeout=WAIT_S):
        yield


def _openai_image(text: str = "what is this?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": PNG_URL}}]}]


def _openai_audio() -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "input_audio", "input_audio": {"data": MP3, "format": "mp3"}}]}]


ANTHROPIC_IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]
RESPONSES_IMAGE = [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                                {"type": "input_image", "image_url": PNG_URL}]}]

#: name -> (path, body without its model, the words the refusal says). Each is asked of stories260K.
NO_IMAGES = "no projector"
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # -- thinking insisted on (Ollama's think: true or a level) from a template that cannot think
    "ollama chat think": ("/api/chat", {"messages": HI, "think": True, "stream": False},
                          f'"{STORIES}" does not support thinking'),
    "ollama chat think stream": ("/api/chat", {"messages": HI, "think": "high"}, "does not support thinking"),
    "ollama generate think": ("/api/generate", {"prompt": "hi", "think": True, "stream": False},
                              "does not support thinking"),
    "ollama generate think stream": ("/api/generate", {"prompt": "hi", "think": "low"}, "does not support thinking"),
    # (a raw prompt, which no template wraps, too: Ollama checks the capability whatever the prompt)
    "ollama generate raw think": ("/api/generate", {"prompt": "hi", "raw": True, "think": True, "stream": False},
                                  f'"{STORIES}" does not support thinking'),
    "ollama generate raw think stream": ("/api/generate", {"prompt": "hi", "raw": True, "think": "high"},
                                         "does not support thinking"),
    # -- tools insisted on (Ollama) from a model without a template of its own
    "ollama chat tools": ("/api/chat", {"messages": HI, "tools": [TOOL], "stream": False},
                          f'"{STORIES}" does not support tools'),
    # -- a suffix (fill-in-the-middle) without FIM tokens
    "ollama generate suffix": ("/api/generate", {"prompt": "def f(", "suffix": "return 1", "stream": False},
                               "has no fill-in-the-middle tokens"),
    "ollama generate suffix stream": ("/api/generate", {"prompt": "def f(", "suffix": "return 1"},
                                      "has no fill-in-the-middle tokens"),
    # -- images without a projector, every dialect and path
    "openai chat image": ("/v1/chat/completions", {"messages": _openai_image(), "max_tokens": 2}, NO_IMAGES),
    "openai chat image stream": ("/v1/chat/completions", {"messages": _openai_image(), "max_tokens": 2,
                                                          "stream": True}, NO_IMAGES),
    "openai chat audio": ("/v1/chat/completions", {"messages": _openai_audio(), "max_tokens": 2}, NO_IMAGES),
    "apply-template image": ("/apply-template", {"messages": _openai_image()}, NO_IMAGES),
    "anthropic image": ("/v1/messages", {"messages": ANTHROPIC_IMAGE, "max_tokens": 2}, NO_IMAGES),
    "anthropic image stream": ("/v1/messages", {"messages": ANTHROPIC_IMAGE, "max_tokens": 2, "stream": True},
                               NO_IMAGES),
    "anthropic count_tokens image": ("/v1/messages/count_tokens", {"messages": ANTHROPIC_IMAGE}, NO_IMAGES),
    "responses image": ("/v1/responses", {"input": RESPONSES_IMAGE, "max_output_tokens": 16}, NO_IMAGES),
    "responses image stream": ("/v1/responses", {"input": RESPONSES_IMAGE, "max_output_tokens": 16,
                                                 "stream": True}, NO_IMAGES),
    "responses image background": ("/v1/responses", {"input": RESPONSES_IMAGE, "max_output_tokens": 16,
                                                     "background": True}, NO_IMAGES),
    "responses input_tokens image": ("/v1/responses/input_tokens", {"input": RESPONSES_IMAGE}, NO_IMAGES),
    "ollama chat image": ("/api/chat", {"messages": [{"role": "user", "content": "hi", "images": [PNG]}],
                                        "stream": False}, "messages[0].images: model 'stories260K' cannot take images"),
    "ollama generate image": ("/api/generate", {"prompt": "hi", "images": [PNG], "stream": False},
                              "images: model 'stories260K' cannot take images"),
    # -- token ids outside the vocabulary (stories260K has 512), embeddings of another size (its own are 64)
    "openai completions token ids": ("/v1/completions", {"prompt": [1, 99999], "max_tokens": 2},
                                     "prompt[1]: token id 99999 is outside the model's vocabulary"),
    "openai completions token ids stream": ("/v1/completions", {"prompt": [[1], [2, 99999]], "max_tokens": 2,
                                                                "stream": True}, "prompt[1][1]: token id 99999"),
    "openai embeddings token ids": ("/v1/embeddings", {"input": [[1, 99999]]}, "input[0][1]: token id 99999"),
    "openai embeddings dimensions": ("/v1/embeddings", {"input": "hi", "dimensions": 65},
                                     "dimensions: this model returns 64-dimensional embeddings"),
    "ollama generate context": ("/api/generate", {"prompt": "hi", "context": [1, 99999], "stream": False},
                                "context[1]: token id 99999 is outside the model's vocabulary"),
    # -- more generations at once than the model's slots and queue (2 + 2) can ever hold
    "openai chat n": ("/v1/chat/completions", {"messages": HI, "n": 5, "max_tokens": 2},
                      "n: this request needs 5 generations at once"),
    "openai completions n": ("/v1/completions", {"prompt": "hi", "n": 5, "max_tokens": 2},
                             "n: this request needs 5 generations at once"),
    "openai completions prompts": ("/v1/completions", {"prompt": ["a", "b", "c"], "n": 2, "max_tokens": 2},
                                   "prompt: this request needs 6 generations at once"),
    "openai chat logit_bias": ("/v1/chat/completions", {"messages": HI, "logit_bias": {"99999": 5}, "max_tokens": 2},
                               "logit_bias: token id 99999 is outside the vocabulary"),
    "openai completions logit_bias": ("/v1/completions", {"prompt": "hi", "logit_bias": {"99999": 5},
                                                          "max_tokens": 2}, "token id 99999 is outside the vocabulary"),
    # -- a constraint no model could use (a schema that does not compile, a grammar that does not parse)
    "openai chat schema": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/defs/nope"}}}},
        "response_format.json_schema.schema.$ref: $ref '#/defs/nope' does not resolve"),
    "openai chat grammar": ("/v1/chat/completions", {"messages": HI, "grammar": "root ::= foo", "max_tokens": 2},
                            "rule 'foo' is used but never defined"),
    "openai completions grammar": ("/v1/completions", {"prompt": "hi", "grammar": "root ::= foo", "max_tokens": 2},
                                   "rule 'foo' is used but never defined"),
    "openai chat tool schema": ("/v1/chat/completions", {"messages": HI, "max_tokens": 2, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/x"}}}]},
        "tools[0].function.parameters.$ref: $ref '#/x' does not resolve"),
    "anthropic tool schema": ("/v1/messages", {"messages": HI, "max_tokens": 2, "tools": [
        {"name": "f", "input_schema": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}}]},
        "tools.0.input_schema.properties.a.$ref: $ref '#/x' does not resolve"),
    "responses schema": ("/v1/responses", {"input": "hi", "max_output_tokens": 16, "text": {"format": {
        "type": "json_schema", "name": "x", "schema": {"$ref": "#/x"}}}}, "$ref '#/x' does not resolve"),
    "ollama chat format": ("/api/chat", {"messages": HI, "format": {"$ref": "#/x"}, "stream": False},
                           "format.$ref: $ref '#/x' does not resolve"),
    "ollama generate raw format": ("/api/generate", {"prompt": "hi", "raw": True, "format": {"$ref": "#/x"},
                                                     "stream": False}, "format.$ref: $ref '#/x' does not resolve"),
    # -- a body no model could answer, refused before the model is loaded for it
    "ollama generate raw system": ("/api/generate", {"prompt": "hi", "raw": True, "system": "be brief",
                                                     "stream": False}, "raw mode does not support"),
    "ollama generate raw images": ("/api/generate", {"prompt": "hi", "raw": True, "images": [PNG],
                                                     "stream": False}, "images cannot be sent with raw"),
}


def _error(path: str, answer: Any) -> tuple[str | None, str]:
    """(type or code, message) of a refusal in its dialect's shape."""
    if path.startswith("/api/"):
        assert set(answer) == {"error"} and isinstance(answer["error"], str), answer  # Ollama's {"error": "..."}
        return None, answer["error"]
    if path.startswith("/v1/messages"):
        assert answer["type"] == "error", answer  # Anthropic's {"type": "error", "error": {type, message}}
        return answer["error"]["type"], answer["error"]["message"]
    if isinstance(answer["error"].get("code"), int):  # llama-server's {"error": {code: status, message, type}}
        return answer["error"]["type"], answer["error"]["message"]
    return answer["error"].get("code"), answer["error"]["message"]


@pytest.mark.parametrize("name", list(CASES))
def test_what_a_model_cannot_do_is_refused_before_it_loads(server, unloaded, name):
    path, body, words = CASES[name]
    status, answer = call(server, "POST", path, {"model": STORIES, **body})
    assert status == 400, answer
    code, message = _error(path, answer)
    assert words in message, answer
    assert code in (None, "invalid_request_error", "not_supported", "no_projector", "invalid_value",
                    "too_many_generations", "invalid_schema", "invalid_grammar"), answer


# llama-server's /completion and /embedding tokenize each prompt of a list before the request goes on: a count the
# model (or any request) can never take is refused before that, not after a hop or two per prompt to a worker
# thread (100,000 one-letter prompts took 40 s to be refused, loading the model first).
NATIVE_COUNTS = {
    "completion prompts": ("/completion", {"prompt": ["a", "b", "c"], "n": 2, "n_predict": 2},
                           "prompt: this request needs 6 generations at once"),
    "completion n": ("/completion", {"prompt": "hi", "n": 5, "n_predict": 2}, "n: this request needs 5 generations"),
    "completion many prompts": ("/completion", {"prompt": [[1, 2]] * 20000, "n_predict": 2},
                                "prompt: this request needs 20000 generations at once"),
    "embedding inputs": ("/embedding", {"content": ["x"] * 2049},
                         "content: at most 2048 inputs in one embedding request"),
}


@pytest.mark.parametrize("name", list(NATIVE_COUNTS))
def test_more_prompts_than_can_be_taken_are_refused_before_they_are_tokenized(server, unloaded, name):
    path, body, words = NATIVE_COUNTS[name]
    status, answer = call(server, "POST", path, {"model": STORIES, **body})
    assert status == 400, answer
    assert answer["error"]["code"] == 400 and words in answer["error"]["message"], answer  # (llama-server's shape)


# A token id outside the vocabulary is named as the body's element that holds it, in the message and in ``param``:
# one list of ids inside a list was told "input[2]" (param "input") where the id is input[0][2], and llama-server's
# native routes said "token: ..." naming no place at all.
ELEMENTS = [
    ("/v1/embeddings", {"input": [[1, 2, 99999]]}, "input[0][2]"),
    ("/v1/embeddings", {"input": [1, 2, 99999]}, "input[2]"),
    ("/v1/embeddings", {"input": [[1], [1, 2, 99999]]}, "input[1][2]"),
    ("/v1/completions", {"prompt": [[1, 2, 99999]], "max_tokens": 2}, "prompt[0][2]"),
    ("/v1/completions", {"prompt": [1, 2, 99999], "max_tokens": 2}, "prompt[2]"),
    ("/embedding", {"content": [[1, 2, 99999]]}, "content[0][2]"),
    ("/embedding", {"content": [1, 2, 99999]}, "content[2]"),
    ("/embedding", {"input": [1, "hi", 99999]}, "input[2]"),  # (a mixed prompt: the wire's place, not the tokens')
    ("/embeddings", {"input": [[1, 2, 99999]]}, "input[0][2]"),
    ("/completion", {"prompt": [[1, 2, 99999]], "n_predict": 2}, "prompt[0][2]"),
    ("/completion", {"prompt": [1, "hi", 99999], "n_predict": 2}, "prompt[2]"),
]


@pytest.mark.parametrize("path,body,element", ELEMENTS)
def test_a_token_id_outside_the_vocabulary_is_named_as_its_element(server, path, body, element):
    status, answer = call(server, "POST", path, {"model": STORIES, **body})
    assert status == 400, answer
    assert answer["error"]["message"].startswith(f"{element}: token id 99999 is outside"), answer
    assert answer["error"].get("param", element) == element, answer  # (llama-server's shape has no param)


def test_audio_to_a_projector_without_an_audio_encoder_is_refused_before_it_loads(server, unloaded):
    status, answer = call(server, "POST", "/v1/chat/completions", {"model": VISION, "messages": _openai_audio(),
                                                                   "max_tokens": 2})
    assert status == 400, answer
    message = answer["error"]["message"]
    assert f"model '{VISION}' does not accept audio" in message and "content[1]" in message, answer


def test_a_run_with_an_image_for_a_model_without_a_projector_is_refused_when_asked(server, unloaded):
    """A run is refused when asked (as an embedding model's is), not accepted and failed later; its model is not
    loaded for it."""
    thread = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                          {"type": "image_url", "image_url": {"url": PNG_URL}}]}]}
    status, answer = call(server, "POST", "/v1/threads/runs", {"assistant_id": "jan", "model": STORIES,
                                                                "thread": thread})
    assert status == 400 and NO_IMAGES in answer["error"]["message"], answer


def test_what_a_model_can_do_still_works(server):
    """The checks refuse nothing a model can do: an image to the vision model; thinking left to the default, tools
    through the OpenAI dialect (ChatML's own tool polyfill) and plain text to stories260K."""
    status, answer = call(server, "POST", "/v1/chat/completions", {"model": VISION, "messages": _openai_image(),
                                                                   "max_tokens": 2})
    assert status == 200, answer
    status, answer = call(server, "POST", "/api/chat", {"model": STORIES, "messages": HI, "think": False,
                                                        "stream": False, "options": {"num_predict": 2}})
    assert status == 200, answer
    status, answer = call(server, "POST", "/v1/chat/completions", {"model": STORIES, "messages": HI,
                                                                   "tools": [TOOL], "max_tokens": 2})
    assert status == 200, answer
    # tool_choice "none" builds no grammar from the tools, yet a schema that would not compile is refused (as
    # OpenAI's API does), whether the model is loaded or not, and before a load
    bad = {"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/x"}}}
    for loaded in (True, False):
        if not loaded:
            call(server, "POST", f"/v1/models/{STORIES}/stop")
        status, answer = call(server, "POST", "/v1/chat/completions", {
            "model": STORIES, "messages": HI, "tools": [bad], "tool_choice": "none", "max_tokens": 2})
        assert status == 400 and answer["error"]["param"] == "tools[0].function.parameters", answer


def test_the_model_lists_say_what_is_refused(server):
    """``/api/show`` and ``/v1/models`` list none of what the refusals above say a model cannot do (read from the
    same files, without loading it): a client reading them does not ask."""
    for model, expected in ((STORIES, ["completion"]), (VISION, ["completion", "vision"])):
        status, shown = call(server, "POST", "/api/show", {"model": model})
        assert status == 200 and shown["capabilities"] == expected, shown.get("capabilities")
        status, listed = call(server, "GET", f"/v1/models/{model}")
        assert status == 200 and listed["capabilities"] == expected, listed.get("capabilities")


@pytest.fixture
def pooling_none(server, unloaded):
    """stories260K set to load with pooling none (a vector per token), as a PATCH of its model.json sets it."""
    status, answer = call(server, "PATCH", f"/v1/models/{STORIES}", {"settings": {"pooling": "none"}})
    assert status == 200, answer
    yield
    status, answer = call(server, "PATCH", f"/v1/models/{STORIES}", {"settings": {"pooling": None}})
    assert status == 200, answer


@pytest.mark.parametrize("path, body", [("/v1/embeddings", {"input": "hi"}), ("/api/embed", {"input": "hi"}),
                                        ("/api/embeddings", {"prompt": "hi"})])
def test_embeddings_from_a_model_set_to_pooling_none_are_refused_before_it_loads(server, pooling_none, path, body):
    status, answer = call(server, "POST", path, {"model": STORIES, **body})
    assert status == 400, answer
    _, message = _error(path, answer)
    assert "Pooling type 'none' is not OAI compatible" in message, answer
