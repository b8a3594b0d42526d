"""llama-server's prompt objects with media on its native ``/completion``: ``{"prompt_string": "... <__media__>
...", "multimodal_data": ["<base64>", ...]}``, alone or in a list of prompts, served through the completion
service's media prompts (tiny vision and audio pairs, tests/conftest.py; a real photo and speech clip from
../shared/media). The same prompt through jan's Python API gives the same greedy tokens."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

import jan
from server_helpers import start_server

MARKER = "<__media__>"
N_CTX = 2048


@pytest.fixture(scope="module")
def server(tmp_path_factory, audio_pair, vision_pair, stories_path):
    srv = start_server(tmp_path_factory.mktemp("media-completion"), [audio_pair[0], vision_pair[0], stories_path],
                       n_ctx=N_CTX, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def jpeg(test_image_path) -> bytes:
    return test_image_path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chat_prompt(question: str) -> str:
    return f"<|im_start|>user\n{question}\n{MARKER}<|im_end|>\n<|im_start|>assistant\n"


def _complete(server, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + "/completion", json=body, timeout=300)


def _greedy(pair, prompt: str, n: int = 4, **media) -> list[int]:
    """The same prompt's greedy tokens through jan's Python API, the model loaded as the server loads it."""
    model_path, mmproj = pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=N_CTX, n_parallel=2, n_threads=1) as model:
        assert model.media_marker == MARKER  # (libmtmd's default marker: what llama-server's clients write)
        return model.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True, **media).token_ids


def test_an_image_prompt_gives_the_python_apis_greedy_tokens(server, vision_pair, jpeg):
    prompt = _chat_prompt("What is this?")
    response = _complete(server, {"model": "vision-chat", "n_predict": 4, "temperature": 0, "ignore_eos": True,
                                  "return_tokens": True,
                                  "prompt": {"prompt_string": prompt, "multimodal_data": [_b64(jpeg)]}})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["tokens"] == _greedy(vision_pair, prompt, images=[jpeg])
    assert result["tokens_predicted"] == 4 and result["stop_type"] == "limit"
    # the image's tokens are counted among the prompt's, as llama-server counts them
    text_only = _complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": prompt.replace(MARKER, "")})
    assert result["tokens_evaluated"] > text_only.json()["tokens_evaluated"] + 1, (result, text_only.text)
    assert result["prompt"] == prompt


def test_an_audio_prompt_gives_the_python_apis_greedy_tokens(server, audio_pair, mp3):
    prompt = _chat_prompt("What is said?")
    result = _complete(server, {"model": "audio-chat", "n_predict": 3, "temperature": 0, "ignore_eos": True,
                                "return_tokens": True,
                                "prompt": {"prompt_string": prompt, "multimodal_data": [_b64(mp3)]}})
    assert result.status_code == 200, result.text
    assert result.json()["tokens"] == _greedy(audio_pair, prompt, n=3, audio=[mp3])
    assert result.json()["tokens_evaluated"] >= 750  # (one 30 s window of the whisper encoder)


def test_streamed_with_n_probs(server, jpeg):
    prompt = _chat_prompt("What is this?")
    body = {"model": "vision-chat", "n_predict": 3, "temperature": 0, "ignore_eos": True, "n_probs": 2,
            "prompt": {"prompt_string": prompt, "multimodal_data": [_b64(jpeg)]}}
    whole = _complete(server, body).json()
    with httpx.stream("POST", server.base_url + "/completion", json={**body, "stream": True}, timeout=300) as r:
        assert r.status_code == 200
        events = [json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1]["stop"] is True and all(e["stop"] is False for e in events[:-1])
    assert "".join(e["content"] for e in events) == whole["content"]
    assert [t for e in events[:-1] for t in e["tokens"]] == [p["id"] for p in whole["completion_probabilities"]]
    assert all(len(p["top_logprobs"]) == 2 for e in events[:-1] for p in e["completion_probabilities"])
    assert events[-1]["tokens_evaluated"] == whole["tokens_evaluated"]


def test_a_list_of_prompts_mixes_media_and_text(server, jpeg):
    prompt = _chat_prompt("What is this?")
    media = {"prompt_string": prompt, "multimodal_data": [_b64(jpeg)]}
    text = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    common = {"model": "vision-chat", "n_predict": 3, "temperature": 0, "ignore_eos": True, "return_tokens": True}
    both = _complete(server, {**common, "prompt": [media, text]})
    assert both.status_code == 200, both.text
    results = both.json()
    assert [r["index"] for r in results] == [0, 1]
    alone = [_complete(server, {**common, "prompt": p}).json() for p in (media, text)]
    assert [r["tokens"] for r in results] == [r["tokens"] for r in alone]
    assert [r["tokens_evaluated"] for r in results] == [r["tokens_evaluated"] for r in alone]


def _error(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error", error
    return error


def test_markers_and_media_must_be_as_many(server, jpeg):
    for text, media in ((f"{MARKER} and {MARKER}", [_b64(jpeg)]), ("no marker", [_b64(jpeg)]),
                        (f"{MARKER}", [])):
        error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1,
                                          "prompt": {"prompt_string": text, "multimodal_data": media}}))
        assert error["message"].startswith("prompt.multimodal_data: "), error


def test_bad_media_are_named_by_their_field(server, jpeg):
    bad_b64 = {"prompt_string": f"{MARKER}{MARKER}", "multimodal_data": [_b64(jpeg), "not base64!"]}
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": ["Hi", bad_b64]}))
    assert error["message"].startswith("prompt[1].multimodal_data[1]: "), error
    not_an_image = {"prompt_string": f"{MARKER}{MARKER}", "multimodal_data": [_b64(jpeg), _b64(b"hello world")]}
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": not_an_image}))
    assert error["message"].startswith("prompt.multimodal_data[1]: "), error
    # an audio clip for a model with a vision projector only
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": {
        "prompt_string": MARKER, "multimodal_data": [_b64(b"RIFF\0\0\0\0WAVEfmt ")]}}))
    assert error["message"].startswith("prompt.multimodal_data[0]: ") and "audio" in error["message"], error


def test_a_base64_data_url_is_read_as_its_base64_and_any_other_data_url_is_a_400(server, jpeg, mp3):
    """multimodal_data takes bare base64 (llama-server's own form) and a base64 data: URL, as Ollama's images and
    OpenAI's image URLs are read (one decoder, jan.image_types.base64_media): the URL was refused as "not valid
    base64" here while /api/generate took it. The same media, the same tokens; a data: URL that is not base64 is a
    400 saying so, naming the item."""
    prompt = _chat_prompt("What is this?")
    common = {"n_predict": 2, "temperature": 0, "ignore_eos": True, "return_tokens": True}
    for model, data, mime in (("vision-chat", jpeg, "image/jpeg"), ("audio-chat", mp3, "audio/mpeg")):
        answers = []
        for item in (_b64(data), f"data:{mime};base64,{_b64(data)}", f"DATA:{mime};name=a;BASE64,{_b64(data)}"):
            response = _complete(server, {**common, "model": model,
                                          "prompt": {"prompt_string": prompt, "multimodal_data": [item]}})
            assert response.status_code == 200, response.text
            answers.append((response.json()["tokens"], response.json()["tokens_evaluated"]))
        assert answers[0] == answers[1] == answers[2], (model, answers)
    for item, why in (("data:image/jpeg,%FF%D8", "must be base64"), ("data:image/jpeg;base64,@@@", "not valid base64")):
        error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": [
            "Hi", {"prompt_string": MARKER, "multimodal_data": [item]}]}))
        assert error["message"].startswith("prompt[1].multimodal_data[0]: ") and why in error["message"], error


def test_v1_completions_says_a_prompt_object_goes_to_completion(server, jpeg):
    """llama-server's /v1/completions reads a string prompt on a model with a projector; its prompt objects are its
    /completion's. jan's /v1/completions said "prompt[1]: Input should be a valid string" of one; it now says where
    it goes, naming the item."""
    media = {"prompt_string": f"See {MARKER}", "multimodal_data": [_b64(jpeg)]}
    for prompt, field in ((["Hi", media], "prompt[1]"), (media, "prompt")):
        response = httpx.post(server.base_url + "/v1/completions", timeout=300,
                              json={"model": "vision-chat", "max_tokens": 1, "prompt": prompt})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == field and error["message"].startswith(f"{field}: a prompt object"), error
        assert "/completion" in error["message"], error


def test_a_model_without_a_projector_refuses_media(server, jpeg):
    error = _error(_complete(server, {"model": "stories260K", "n_predict": 1, "prompt": [
        "Once", {"prompt_string": f"Once {MARKER}", "multimodal_data": [_b64(jpeg)]}]}))
    assert error["message"].startswith("prompt[1].multimodal_data: ") and "multimodal" in error["message"], error


def test_media_outside_a_prompt_object_are_refused_saying_where_they_go(server, jpeg):
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": f"What? {MARKER}",
                                      "multimodal_data": [_b64(jpeg)]}))
    assert "prompt_string" in error["message"], error
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": [
        1, {"prompt_string": MARKER, "multimodal_data": [_b64(jpeg)]}]}))
    assert "token ids" in error["message"], error


def test_the_media_limits_hold_for_the_requests_prompts_together(server, jpeg):
    """A list of prompts is one request: the media limits (100 items by default) count all of its media, as a
    chat's."""
    # (each item an image's first bytes: counted before any is decoded; bytes of no image at all are refused
    # as such, item by item, before the count)
    one = {"prompt_string": MARKER * 51, "multimodal_data": [_b64(b"\x89PNG\r\n\x1a\n")] * 51}
    error = _error(_complete(server, {"model": "vision-chat", "n_predict": 1, "prompt": [one, one]}))
    assert error["message"].startswith("prompt: ") and "at most 100" in error["message"], error


def test_a_prompt_longer_than_the_context_is_refused(server, mp3):
    four = {"prompt_string": MARKER * 4, "multimodal_data": [_b64(mp3)] * 4}  # (4 x 750 tokens > 2048)
    response = _complete(server, {"model": "audio-chat", "n_predict": 1, "prompt": four})
    assert response.status_code == 400 and response.json()["error"]["type"] == "exceed_context_size_error", \
        response.text


def test_tokenize_takes_no_prompt_object(server, jpeg):
    """llama-server's ``/tokenize`` reads ``content`` as text or token ids only (a prompt object is its 500):
    jan's answers it as a 400."""
    response = httpx.post(server.base_url + "/tokenize", timeout=60, json={
        "model": "vision-chat", "content": {"prompt_string": MARKER, "multimodal_data": [_b64(jpeg)]}})
    assert response.status_code == 400, response.text


def test_several_completions_of_a_media_prompt(server, jpeg):
    """``n_cmpl``: each choice reads the same prompt, decoded and encoded once."""
    body = {"model": "vision-chat", "n_predict": 2, "temperature": 0, "ignore_eos": True, "return_tokens": True,
            "prompt": {"prompt_string": _chat_prompt("What is this?"), "multimodal_data": [_b64(jpeg)]}}
    one = _complete(server, body).json()
    two = _complete(server, {**body, "n_cmpl": 2})
    assert two.status_code == 200, two.text
    assert [r["tokens"] for r in two.json()] == [one["tokens"]] * 2
