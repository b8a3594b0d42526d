"""Audio through the server (official openai client, httpx for the other dialects), on the tiny Qwen2-Audio pair
(tests/conftest.py: audio_pair) and a real speech clip (../shared/media/test-2.mp3, 17 s: one 30 s window, 750
tokens). OpenAI's Chat Completions takes audio (``input_audio`` parts, wav and mp3); its Responses API, Anthropic's
Messages and Ollama's API take none, and say so in their own shapes."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest

from server_helpers import start_server

sf = pytest.importorskip("soundfile", reason="the soundfile package is not installed (test extra)")

#: one 30 s window of the encoder and the two markers around a clip
CLIP_TOKENS = 750 + 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, audio_pair, vision_pair, stories_path):
    # each projector beside its model (mmproj-<name>.gguf): picked up on import; 2048 tokens a slot hold a
    # 17 s clip, not a 70 s one
    srv = start_server(tmp_path_factory.mktemp("audio-server"), [audio_pair[0], vision_pair[0], stories_path],
                       n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def wav(test_audio_path) -> bytes:
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def long_wav(test_audio_path) -> bytes:
    """70 s: three windows, 2250 tokens, more than a 2048-token slot holds."""
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    out = io.BytesIO()
    sf.write(out, np.concatenate([samples] * 4), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _audio_part(data: bytes, fmt: str) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def _ask(data: bytes, fmt: str, text: str = "What is said?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, _audio_part(data, fmt)]}]


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.body if isinstance(exc.body, dict) else json.loads(exc.response.text)
    return body.get("error", body)


def test_models_report_audio(client):
    caps = {m.id: m.model_extra["capabilities"] for m in client.models.list()}
    assert "audio" in caps["audio-chat"] and "vision" not in caps["audio-chat"]
    assert "audio" not in caps["vision-chat"] and "audio" not in caps["stories260K"]


def test_mp3_and_wav_clips_in_a_chat(client, mp3, wav):
    """The clip's tokens are counted in usage exactly: the same text with an empty part in the clip's place is
    CLIP_TOKENS fewer. WAV of the clip's samples takes as many tokens (libmtmd resamples both to 16 kHz)."""
    answers = {fmt: client.chat.completions.create(model="audio-chat", messages=_ask(data, fmt), max_tokens=6,
                                                   temperature=0) for fmt, data in (("mp3", mp3), ("wav", wav))}
    for answer in answers.values():
        assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")
    text_only = client.chat.completions.create(model="audio-chat", max_tokens=1, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is said?"}, {"type": "text", "text": ""}]}])
    assert answers["mp3"].usage.prompt_tokens == text_only.usage.prompt_tokens + CLIP_TOKENS
    assert answers["wav"].usage.prompt_tokens == answers["mp3"].usage.prompt_tokens
    # the same clip again: its encoding and KV are reused, the answer is the same
    again = client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=6, temperature=0)
    assert again.choices[0].message.content == answers["mp3"].choices[0].message.content


def test_input_audio_data_may_be_a_base64_data_url_as_multimodal_data_and_ollamas_images(client, mp3):
    """input_audio.data is bare base64; a base64 data: URL there is read as its base64, as every dialect's media
    text is (jan.image_types.base64_media): it was "not valid base64". One that is not base64 says so."""
    bare = client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=2, temperature=0)
    url = {"type": "input_audio", "input_audio": {"data": "data:audio/mpeg;base64," + base64.b64encode(mp3).decode(),
                                                  "format": "mp3"}}
    as_url = client.chat.completions.create(model="audio-chat", max_tokens=2, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is said?"}, url]}])
    assert (as_url.choices[0].message.content, as_url.usage.prompt_tokens) == \
        (bare.choices[0].message.content, bare.usage.prompt_tokens)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="audio-chat", max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "data:audio/mpeg,%FF%FB", "format": "mp3"}}]}])
    error = _error(info.value)
    assert error["message"].startswith("messages[0].content[0].input_audio.data: a data: URL here must be base64"), \
        error


def test_streamed_audio_chat_with_usage(client, mp3):
    whole = client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=6, temperature=0)
    chunks = list(client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=6,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_follow_up_turn_reuses_the_clip(client, mp3):
    first = client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=4, temperature=0)
    history = _ask(mp3, "mp3") + [{"role": "assistant", "content": first.choices[0].message.content},
                                  {"role": "user", "content": "And then?"}]
    second = client.chat.completions.create(model="audio-chat", messages=history, max_tokens=4, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens > CLIP_TOKENS


def test_a_clip_too_long_for_the_context_is_context_length_exceeded(client, long_wav):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="audio-chat", messages=_ask(long_wav, "wav"), max_tokens=2)
    error = _error(info.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages", error
    assert "2250" in error["message"], error  # what the audio takes of it


@pytest.mark.parametrize("model, param, words", [
    ("vision-chat", "messages[0].content[1]", "does not accept audio"),
    # a model with no projector at all: said of the message's content, as the template's rendering says it
    ("stories260K", "messages[0].content", "audio"),
])
def test_audio_for_a_model_without_an_audio_encoder_is_a_400(client, mp3, model, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=_ask(mp3, "mp3"), max_tokens=2)
    error = _error(info.value)
    assert (error["code"], error["param"]) == ("no_projector", param), error
    assert words in error["message"] and error["message"].startswith(param + ": "), error


def test_an_image_for_an_audio_only_model_is_a_400_naming_the_part(client, test_image_path):
    url = "data:image/jpeg;base64," + base64.b64encode(test_image_path.read_bytes()).decode()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="audio-chat", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url}}]}])
    error = _error(info.value)
    assert (error["code"], error["param"]) == ("no_projector", "messages[0].content[1]"), error


@pytest.mark.parametrize("data, fmt", [
    (b"RIFF\x24\0\0\0WAVEfmt " + b"\0" * 40, "wav"),  # a WAV header, then nothing libmtmd's decoder can read
    (b"hello, not audio", "mp3"),
    # one sample: it decodes, but libmtmd's preprocessing asserted (an abort of the server) on so short a clip
    (b"RIFF\x26\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\x02\0\0\0\x00\x10", "wav"),
])
def test_a_clip_that_does_not_decode_is_a_400_naming_its_part(client, mp3, data, fmt):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Compare"}, _audio_part(mp3, "mp3"),
                                             _audio_part(data, fmt)]}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="audio-chat", messages=messages, max_tokens=2)
    error = _error(info.value)
    assert (error["code"], error["param"]) == ("unsupported_format", "messages[0].content[2]"), error
    assert error["message"].startswith("messages[0].content[2]: "), error
    # and the server goes on serving
    ok = client.chat.completions.create(model="audio-chat", messages=_ask(mp3, "mp3"), max_tokens=1, temperature=0)
    assert ok.choices[0].finish_reason


def test_a_clip_longer_than_the_limit_by_its_header_is_a_400_naming_its_part(client):
    """A 1 KB FLAC claiming ten hours: refused from its header (libmtmd's decoder sized its buffer by that claim:
    gigabytes, or the server killed for memory), said of its part."""
    import io

    import numpy as np
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.zeros(1600, dtype=np.float32), 16000, format="FLAC")
    data = bytearray(out.getvalue())
    packed = int.from_bytes(data[18:26], "big")  # STREAMINFO's rate, channels, bits and total samples (36 bits)
    data[18:26] = ((packed & ~((1 << 36) - 1)) | 600_000_000).to_bytes(8, "big")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="audio-chat", messages=_ask(bytes(data), "flac"), max_tokens=2)
    error = _error(info.value)
    assert (error["code"], error["param"]) == ("too_large", "messages[0].content[1]"), error


def test_the_responses_api_takes_no_audio_as_openais(server, mp3):
    """OpenAI's Responses API has no input_audio content part (input_text, input_image and input_file only):
    a 400 in its shape naming the part, the same for every model."""
    response = httpx.post(server.base_url + "/v1/responses", timeout=120, json={
        "model": "audio-chat", "max_output_tokens": 2, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is said?"}, _audio_part(mp3, "mp3")]}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "input[0].content[1]"), error
    assert "input_audio" in error["message"], error


def test_anthropic_and_ollama_take_no_audio(server, mp3):
    b64 = base64.b64encode(mp3).decode()
    claude = httpx.post(server.base_url + "/v1/messages", timeout=120, json={
        "model": "audio-chat", "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is said?"}, _audio_part(mp3, "mp3")]}]})
    assert claude.status_code == 400 and claude.json()["type"] == "error", claude.text
    assert "messages.0.content.1" in claude.json()["error"]["message"], claude.text
    # Ollama's messages carry images only: an MP3 there is no image
    ollama = httpx.post(server.base_url + "/api/chat", timeout=120, json={
        "model": "audio-chat", "stream": False, "messages": [{"role": "user", "content": "Hi", "images": [b64]}]})
    assert ollama.status_code == 400 and "messages[0].images[0]" in ollama.json()["error"], ollama.text


def test_llama_servers_completion_takes_a_clip_in_a_prompt_object(server, mp3):
    """Media go in a prompt object (tests/test_server_media_completion.py); a body's own ``multimodal_data``,
    which llama-server does not read, is refused saying where they go; a clip that is no audio file is said of
    its field."""
    clip = base64.b64encode(mp3).decode()
    response = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "audio-chat", "n_predict": 1, "prompt": {"prompt_string": "What is said? <__media__>",
                                                          "multimodal_data": [clip]}})
    assert response.status_code == 200 and response.json()["tokens_evaluated"] >= CLIP_TOKENS, response.text
    response = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "audio-chat", "n_predict": 1, "prompt": "What is said? <__media__>", "multimodal_data": [clip]})
    error = response.json()["error"]
    assert response.status_code == 400 and "prompt_string" in error["message"], response.text
    response = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "audio-chat", "n_predict": 1, "prompt": [{"prompt_string": "What is said? <__media__>",
                                                           "multimodal_data": ["AAAA"]}]})
    error = response.json()["error"]
    assert response.status_code == 400 and error["message"].startswith("prompt[0].multimodal_data[0]: "), error


def test_llama_servers_prompt_object_of_text_is_its_text(server):
    """``{"prompt_string": ...}`` without media is the text it holds, as llama-server reads it."""
    plain = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "stories260K", "prompt": "Once upon a time", "n_predict": 4, "temperature": 0}).json()
    wrapped = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "stories260K", "prompt": {"prompt_string": "Once upon a time"}, "n_predict": 4,
        "temperature": 0}).json()
    assert wrapped["content"] == plain["content"] and wrapped["tokens_evaluated"] == plain["tokens_evaluated"]
