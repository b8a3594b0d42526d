"""llama-server's prompt objects with media on its embedding endpoint ``/embedding``: ``{"prompt_string": "...
<__media__> ...", "multimodal_data": ["<base64>", ...]}`` in ``input`` (or ``content``), alone or in a list of
prompts, as llama-server's ``handle_embeddings_impl`` takes them (``tokenize_input_subprompt``): embedded through
jan's typed embedding path (the completion service's media preparation, the engine's ``Embedder.embed_media``).
The vector is the one jan's Python API gives the same prompt; what is wrong with an item is a 400 naming it.

The engine pools a media input over every position, text and image alike: checked against the rows of pooling
none (mean, cls and last are their mean, first and last row), and a prompt without media embeds as plain text."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

import jan
from server_helpers import start_server

MARKER = "<__media__>"
N_CTX = 2048
PROMPT = f"A photo: {MARKER} of a thing"


@pytest.fixture(scope="module")
def server(tmp_path_factory, audio_pair, vision_pair, stories_path):
    srv = start_server(tmp_path_factory.mktemp("media-embedding"), [audio_pair[0], vision_pair[0], stories_path],
                       n_ctx=N_CTX, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vision_model(vision_pair):
    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=N_CTX, n_threads=1) as model:
        yield model


@pytest.fixture(scope="module")
def jpeg(test_image_path) -> bytes:
    return test_image_path.read_bytes()


@pytest.fixture(scope="module")
def mp3(test_audio_path) -> bytes:
    return test_audio_path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _embed(server, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + "/embedding", json=body, timeout=300)


def _error(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error", error
    return error


def _media(model, text: str, *items: bytes):
    return model.media_prompt(text, model.prepare_media(list(items)), add_special=True, encode=True)


def test_an_image_prompt_embeds_as_the_python_api_does(server, vision_model, jpeg):
    response = _embed(server, {"model": "vision-chat",
                               "input": {"prompt_string": PROMPT, "multimodal_data": [_b64(jpeg)]}})
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["index"] for r in result] == [0] and len(result[0]["embedding"]) == 1  # llama-server's shape
    vector = np.array(result[0]["embedding"][0])
    assert vector == pytest.approx(vision_model.embed([_media(vision_model, PROMPT, jpeg)])[0], abs=1e-4)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)  # embd_normalize 2, the default
    # the image counts: the same text without it embeds elsewhere
    text_only = vision_model.embed([PROMPT.replace(MARKER, "")])[0]
    assert float(vector @ text_only) < 0.999


def test_a_list_of_prompts_mixes_media_and_text(server, vision_model, jpeg):
    """One result per prompt, in order (``content``: llama-server's other name of the field), each the vector of
    that prompt alone; ``embd_normalize`` -1 answers them unnormalized."""
    body = {"model": "vision-chat", "embd_normalize": -1,
            "content": ["Once upon a time", {"prompt_string": f"{MARKER} and {MARKER}",
                                             "multimodal_data": [_b64(jpeg), _b64(jpeg)]}, PROMPT.replace(MARKER, "")]}
    response = _embed(server, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["index"] for r in result] == [0, 1, 2]
    want = vision_model.embed(["Once upon a time", _media(vision_model, f"{MARKER} and {MARKER}", jpeg, jpeg),
                               PROMPT.replace(MARKER, "")], normalize=False)
    for got, expected in zip(result, want):
        assert np.array(got["embedding"][0]) == pytest.approx(expected, abs=1e-4)


def test_an_audio_prompt_embeds(server, mp3):
    prompt = {"prompt_string": f"Listen: {MARKER}", "multimodal_data": [_b64(mp3)]}
    response = _embed(server, {"model": "audio-chat", "input": [prompt, "Listen: "]})
    assert response.status_code == 200, response.text
    media, text = (np.array(r["embedding"][0]) for r in response.json())
    assert len(media) == len(text) and float(media @ text) < 0.999


@pytest.mark.parametrize("body, param", [
    # not base64: the item
    ({"input": {"prompt_string": PROMPT, "multimodal_data": ["%%%"]}}, "input.multimodal_data[0]"),
    # markers and items not as many: the list, under the field the body used
    ({"content": [{"prompt_string": PROMPT, "multimodal_data": []}]}, "content[0].multimodal_data"),
    # bytes no decoder reads: the item, in a list of prompts
    ({"input": ["Hi", {"prompt_string": PROMPT, "multimodal_data": [_b64(b"not an image at all")]}]},
     "input[1].multimodal_data[0]"),
])
def test_a_bad_item_is_a_400_naming_it(server, body, param):
    """In llama-server's error shape (``code`` the status), the message naming the field, as ``/completion``'s."""
    error = _error(_embed(server, {"model": "vision-chat", **body}))
    assert error["message"].startswith(f"{param}: "), error


def test_a_model_without_a_projector_refuses_media_as_completion_does(server, jpeg):
    """llama-server: "Multimodal data provided, but model does not support multimodal requests." -- jan's 400 for a
    model without a projector, the one ``/completion`` answers the same prompt object, said of the embedding's
    field."""
    prompt = {"prompt_string": PROMPT, "multimodal_data": [_b64(jpeg)]}
    error = _error(_embed(server, {"model": "stories260K", "input": ["Once", prompt]}))
    said = _error(httpx.post(server.base_url + "/completion", json={"model": "stories260K", "prompt": ["Once", prompt]},
                             timeout=300))
    assert error["message"].startswith("input[1].multimodal_data: ") and "multimodal" in error["message"], error
    assert error["message"].replace("input[1]", "prompt[1]", 1) == said["message"]


# -- the engine ------------------------------------------------------------------------------------------------
def test_pooling_a_media_input_is_pooling_all_its_positions(vision_model, jpeg):
    """Text and image are decoded in turn (llama.cpp pools within one decode): the pooled vector is still the
    whole input's, as its rows with pooling none tell it."""
    prompt = _media(vision_model, PROMPT, jpeg)
    rows = vision_model.embed([prompt], pooling="none", normalize=False)[0]
    assert rows.shape == (prompt.n_tokens, vision_model.info.n_embd) and prompt.n_media_tokens > 0

    def unit(v):
        return v / np.linalg.norm(v)

    assert vision_model.embed([prompt])[0] == pytest.approx(unit(rows.mean(axis=0)), abs=1e-4)
    assert vision_model.embed([prompt], pooling="cls")[0] == pytest.approx(unit(rows[0]), abs=1e-4)
    assert vision_model.embed([prompt], pooling="last")[0] == pytest.approx(unit(rows[-1]), abs=1e-4)


def test_a_media_prompt_without_media_embeds_as_its_text(vision_model):
    text = PROMPT.replace(MARKER, "")
    plain = _media(vision_model, text)
    assert plain.n_media_tokens == 0
    assert vision_model.embed([plain])[0] == pytest.approx(vision_model.embed([text])[0], abs=1e-4)


def test_a_media_input_longer_than_the_embedding_context_overflows(server, vision_model, jpeg):
    """Sized with its image's tokens: the engine's ContextOverflowError, and the endpoint's 400 naming ``input``,
    before the encoder runs."""
    text = "once upon a time " * 500 + PROMPT
    prompt = _media(vision_model, text, jpeg)
    assert prompt.n_tokens > vision_model.n_ctx_embed > prompt.n_tokens - prompt.n_media_tokens
    with pytest.raises(jan.ContextOverflowError):
        vision_model.embed([prompt])
    response = _embed(server, {"model": "vision-chat", "input": {"prompt_string": text,
                                                                 "multimodal_data": [_b64(jpeg)]}})
    assert response.status_code == 400 and response.json()["error"]["type"] == "exceed_context_size_error", \
        response.text


def test_a_multi_section_rope_model_embeds_media(qwen2vl_pair, jpeg):
    """Qwen2-VL's images advance positions by less than their tokens (M-RoPE): their rows are placed as a
    generation places them, and the text after them follows on."""
    model_path, mmproj = qwen2vl_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=N_CTX, n_threads=1) as model:
        prompt = _media(model, PROMPT, jpeg)
        rows = model.embed([prompt], pooling="none", normalize=False)[0]
        pooled = model.embed([prompt])[0]
    assert rows.shape[0] == prompt.n_tokens and np.isfinite(rows).all()
    assert pooled == pytest.approx(rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0)), abs=1e-4)


# -- the OpenAI routes: llama-server's /v1/embeddings takes its prompt objects too ---------------------------------
@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
def test_the_openai_routes_take_prompt_objects(server, vision_model, jpeg, path):
    """In OpenAI's shape (``data``, ``usage``): the vectors ``/embedding`` gives, the image's tokens counted."""
    media = {"prompt_string": PROMPT, "multimodal_data": [_b64(jpeg)]}
    response = httpx.post(server.base_url + path, json={"model": "vision-chat", "input": ["Once upon a time", media]},
                          timeout=300)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [d["index"] for d in answer["data"]] == [0, 1]
    native = _embed(server, {"model": "vision-chat", "input": ["Once upon a time", media]}).json()
    for got, want in zip(answer["data"], native):
        assert got["embedding"] == pytest.approx(want["embedding"][0], abs=1e-5)
    prompt = _media(vision_model, PROMPT, jpeg)
    assert answer["usage"]["prompt_tokens"] == len(vision_model.tokenize("Once upon a time")) + prompt.n_tokens
    alone = httpx.post(server.base_url + path, json={"model": "vision-chat", "input": media}, timeout=300).json()
    assert alone["data"][0]["embedding"] == pytest.approx(answer["data"][1]["embedding"], abs=1e-5)


@pytest.mark.parametrize("body, param", [
    ({"input": {"prompt_string": PROMPT, "multimodal_data": ["%%%"]}}, "input.multimodal_data[0]"),
    ({"input": ["Hi", {"prompt_string": PROMPT, "multimodal_data": [_b64(b"not an image at all")]}]},
     "input[1].multimodal_data[0]"),
    ({"input": [{"prompt_string": PROMPT, "multimodal_data": []}]}, "input[0].multimodal_data"),
    ({"model": "stories260K", "input": {"prompt_string": PROMPT, "multimodal_data": [_b64(b"GIF89a")]}},
     "input.multimodal_data"),
])
def test_the_openai_routes_name_a_bad_item(server, body, param):
    response = httpx.post(server.base_url + "/v1/embeddings", json={"model": "vision-chat", **body}, timeout=300)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


# -- an OpenAI message's content as an input (llama-server's tokenize_oai_content_array) -------------------------
def _content(jpeg: bytes) -> dict:
    return {"content": [{"type": "text", "text": "A photo: "},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + _b64(jpeg)}},
                        {"type": "text", "text": " of a thing"}]}


@pytest.mark.parametrize("path", ["/embedding", "/v1/embeddings", "/embeddings"])
def test_a_content_input_is_its_text_with_a_marker_per_media_part(server, jpeg, path):
    """``{"content": [parts]}``: the parts' text joined, each image or audio part a marker where it stands -- the
    prompt object of that text and media, embedded alike; text parts alone are that text."""
    as_object = {"prompt_string": PROMPT, "multimodal_data": [_b64(jpeg)]}
    text_only = {"content": [{"type": "text", "text": "Once upon "}, {"type": "text", "text": "a time"}]}

    def vectors(inputs):
        response = httpx.post(server.base_url + path, json={"model": "vision-chat", "input": inputs}, timeout=300)
        assert response.status_code == 200, response.text
        answer = response.json()
        return [r["embedding"][0] for r in answer] if path == "/embedding" else [d["embedding"] for d in answer["data"]]

    got = vectors([_content(jpeg), text_only])
    want = vectors([as_object, "Once upon a time"])
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-5)
    assert vectors(_content(jpeg))[0] == pytest.approx(want[0], abs=1e-5)  # (alone: one input)


def test_a_content_input_takes_audio_parts(server, mp3):
    content = {"content": [{"type": "text", "text": "Listen: "},
                           {"type": "input_audio", "input_audio": {"data": _b64(mp3), "format": "mp3"}}]}
    prompt = {"prompt_string": f"Listen: {MARKER}", "multimodal_data": [_b64(mp3)]}
    got, want = (_embed(server, {"model": "audio-chat", "input": x}).json()[0]["embedding"][0]
                 for x in (content, prompt))
    assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("part, param", [
    ({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,%%%"}}, "input[1].content[1].image_url.url"),
    # an image by URL is fetched only from where --allow-media-from allows, as a chat's
    ({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}, "input[1].content[1].image_url.url"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}},
     "input[1].content[1].input_audio.format"),
])
def test_a_bad_content_part_is_named(server, part, param):
    inputs = ["Hi", {"content": [{"type": "text", "text": "See: "}, part]}]
    response = httpx.post(server.base_url + "/v1/embeddings", json={"model": "vision-chat", "input": inputs},
                          timeout=300)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.text
    error = _error(_embed(server, {"model": "vision-chat", "input": inputs}))
    assert error["message"].startswith(param), error


def test_a_content_input_without_text_or_media_is_refused_as_an_empty_string(server):
    """``/v1/embeddings`` refuses an empty string input: a content input of empty text parts alike."""
    empty = {"content": [{"type": "text", "text": ""}]}
    for inputs, param in (("", "input"), (empty, "input.content"), (["Hi", empty], "input[1].content")):
        response = httpx.post(server.base_url + "/v1/embeddings", json={"model": "vision-chat", "input": inputs},
                              timeout=300)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param, response.text


@pytest.mark.parametrize("content", [
    [],  # no part
    [{"type": "input_video", "input_video": {"url": "data:video/mp4;base64,AAAA"}}],  # video: jan reads none
    [{"type": "file", "file": {"file_data": "data:text/plain;base64,SGk="}}],  # not a part an embedding takes
])
def test_content_llama_server_refuses_is_a_400(server, content):
    for path in ("/embedding", "/v1/embeddings"):
        response = httpx.post(server.base_url + path, json={"model": "vision-chat", "input": {"content": content}},
                              timeout=300)
        assert response.status_code == 400, (path, response.text)


def test_a_content_inputs_media_refused_by_the_model_are_named_by_their_part(server, jpeg, mp3):
    """What the model cannot take (no projector; audio for a vision projector) is said of the content part that
    holds it, as a prompt object's is of its ``multimodal_data``."""
    no_projector = {"model": "stories260K", "input": ["Hi", _content(jpeg)]}
    audio = {"content": [{"type": "text", "text": "Hear: "},
                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + _b64(jpeg)}},
                         {"type": "input_audio", "input_audio": {"data": _b64(mp3), "format": "mp3"}}]}
    for body, param in ((no_projector, "input[1].content"), ({"model": "vision-chat", "input": audio},
                                                            "input.content[2]")):
        response = httpx.post(server.base_url + "/v1/embeddings", json=body, timeout=300)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param, response.text
        assert _error(_embed(server, body))["message"].startswith(param + ": "), body


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embedding"])
def test_a_content_inputs_text_that_spells_the_media_marker_is_named(server, mp3, path):
    """The marker stands for a media part in the joined text: a text part that spells it (beside media) is a 400
    naming that part -- not a "prompt" the body does not have. Without media the text is plain text, embedded."""
    content = {"content": [{"type": "text", "text": f"Hear {MARKER} this: "},
                           {"type": "input_audio", "input_audio": {"data": _b64(mp3), "format": "mp3"}}]}
    response = httpx.post(server.base_url + path, json={"model": "audio-chat", "input": ["Hi", content]}, timeout=300)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith("input[1].content[0].text: "), error
    if path == "/v1/embeddings":
        assert error["param"] == "input[1].content[0].text"
    text_only = {"content": [{"type": "text", "text": f"Hear {MARKER} this"}]}
    response = httpx.post(server.base_url + path, json={"model": "audio-chat", "input": text_only}, timeout=300)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path, field", [("/embedding", "content"), ("/v1/embeddings", "input")])
@pytest.mark.parametrize("value, named, says", [
    # a prompt object with a wrong field: that field, not the other kind of object's ("content: Field required")
    ({"prompt_string": PROMPT, "multimodal_data": "abc"}, "multimodal_data", "valid list"),
    # a content object with a wrong field: that field, not the prompt object's "Unrecognized ... content"
    ({"content": "hi"}, "content", "valid list"),
])
def test_a_prompt_objects_wrong_field_is_the_one_named(server, path, field, value, named, says):
    response = httpx.post(server.base_url + path, json={"model": "vision-chat", field: value}, timeout=300)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(f"{field}.{named}: ") and says in message, message
