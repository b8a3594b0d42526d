"""OpenAI's speech to text (``/v1/audio/transcriptions``, ``/v1/audio/translations``) on the tiny Qwen2-Audio pair
(tests/conftest.py: audio_pair) and a real speech clip, through the official openai client: each answer is the
chat path's answer to the clip with the transcription's instruction (the same tokens, greedy), in OpenAI's shapes
(json, text, streamed events); every bad form is a 4xx in OpenAI's error shape naming its field."""

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

#: the random-weight model writes anything: a few tokens are enough to compare paths
N = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory, audio_pair, stories_path):
    srv = start_server(tmp_path_factory.mktemp("transcribe-server"), [audio_pair[0], stories_path], n_ctx=2048,
                       n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _encoded(test_audio_path, fmt: str) -> bytes:
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    out = io.BytesIO()
    sf.write(out, samples, rate, format=fmt.upper(), subtype="PCM_16")
    return out.getvalue()


def _chat(client, mp3: bytes, instruction: str, **kw) -> openai.types.chat.ChatCompletion:
    """The chat turn a transcription is: the instruction, then the clip."""
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(mp3).decode(), "format": "mp3"}}
    return client.chat.completions.create(model="audio-chat", max_tokens=N, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": instruction}, part]}], **kw)


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.body if isinstance(exc.body, dict) else json.loads(exc.response.text)
    return body.get("error", body)


def test_a_transcription_is_the_chat_answer_to_the_clip(client, mp3):
    result = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3),
                                                extra_body={"max_tokens": N})
    chat = _chat(client, mp3, "Transcribe audio to text")
    assert result.text == chat.choices[0].message.content.strip()
    assert result.usage.type == "tokens"
    assert result.usage.input_tokens == chat.usage.prompt_tokens and result.usage.input_tokens > 750
    assert result.usage.output_tokens == chat.usage.completion_tokens <= N
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens


def test_language_and_prompt_are_told_to_the_model(client, mp3):
    result = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), language="DE",
                                                prompt="Jan, llama.cpp", extra_body={"max_tokens": N})
    chat = _chat(client, mp3, "Transcribe audio to text (language: de)\nJan, llama.cpp")
    assert result.text == chat.choices[0].message.content.strip()


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # (the SDK marks translations so; still served)
def test_a_translation_is_the_chat_answer_to_its_instruction(client, mp3):
    result = client.audio.translations.create(model="audio-chat", file=("clip.mp3", mp3),
                                              extra_body={"max_tokens": N})
    assert result.text == _chat(client, mp3, "Translate the audio into English text").choices[0].message.content.strip()
    text = client.audio.translations.create(model="audio-chat", file=("clip.mp3", mp3), response_format="text",
                                            extra_body={"max_tokens": N})
    assert isinstance(text, str) and text == result.text


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_wav_and_flac_clips(client, test_audio_path, fmt):
    data = _encoded(test_audio_path, fmt)
    result = client.audio.transcriptions.create(model="audio-chat", file=(f"clip.{fmt}", data),
                                                extra_body={"max_tokens": 2})
    assert isinstance(result.text, str) and result.usage.input_tokens > 750


def test_text_format_is_the_transcript_itself(client, mp3):
    whole = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), extra_body={"max_tokens": N})
    text = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), response_format="text",
                                              extra_body={"max_tokens": N})
    assert isinstance(text, str) and text == whole.text


def test_streamed_events_add_up_to_the_transcript(client, mp3):
    whole = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), extra_body={"max_tokens": N})
    events = list(client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), stream=True,
                                                     extra_body={"max_tokens": N}))
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    done = events[-1]
    assert done.type == "transcript.text.done" and done.text == whole.text
    assert "".join(e.delta for e in events[:-1]).strip() == done.text
    assert done.usage.input_tokens == whole.usage.input_tokens
    assert done.usage.output_tokens == whole.usage.output_tokens


def test_logprobs_when_included(client, mp3):
    result = client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), include=["logprobs"],
                                                extra_body={"max_tokens": N})
    assert len(result.logprobs) == result.usage.output_tokens
    assert all(p.logprob <= 0 and isinstance(p.token, str) for p in result.logprobs)
    events = list(client.audio.transcriptions.create(model="audio-chat", file=("clip.mp3", mp3), stream=True,
                                                     include=["logprobs"], extra_body={"max_tokens": N}))
    assert len(events[-1].logprobs) == result.usage.output_tokens


def test_a_model_without_an_audio_encoder_is_a_400_naming_the_file(client, mp3):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="stories260K", file=("clip.mp3", mp3))
    assert _error(err.value)["param"] == "file" and "audio" in _error(err.value)["message"]


def test_an_unknown_model_is_a_404(client, mp3):
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="no-such-model", file=("clip.mp3", mp3))


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.mark.parametrize("fields, file, status, param", [
    ({"model": "audio-chat"}, None, 400, "file"),
    ({"model": "audio-chat"}, ("pic.png", PNG), 400, "file"),
    ({"model": "audio-chat"}, ("clip.m4a", b"\x00\x00\x00\x20ftypM4A "), 400, "file"),
    ({"model": "audio-chat"}, ("empty.mp3", b""), 400, "file"),
    ({"model": "audio-chat", "response_format": "srt"}, "mp3", 400, "response_format"),
    ({"model": "audio-chat", "response_format": "verbose_json"}, "mp3", 400, "response_format"),
    ({"model": "audio-chat", "response_format": "xml"}, "mp3", 400, "response_format"),
    ({"model": "audio-chat", "timestamp_granularities[]": "word"}, "mp3", 400, "timestamp_granularities"),
    ({"model": "audio-chat", "known_speaker_names[]": "ann"}, "mp3", 400, "known_speaker_names"),
    ({"model": "audio-chat", "chunking_strategy": '{"type": "server_vad"}'}, "mp3", 400, "chunking_strategy"),
    ({"model": "audio-chat", "include[]": "tokens"}, "mp3", 400, "include"),
    ({"model": "audio-chat", "include[]": "logprobs", "response_format": "text"}, "mp3", 400, "include"),
    ({"model": "audio-chat", "temperature": "hot"}, "mp3", 400, "temperature"),
    ({"model": "audio-chat", "temperature": "2"}, "mp3", 400, "temperature"),
    ({"model": "audio-chat", "temperature": "nan"}, "mp3", 400, "temperature"),
    ({"model": "audio-chat", "max_tokens": "0"}, "mp3", 400, "max_tokens"),
    ({"model": "audio-chat", "max_tokens": "1.5"}, "mp3", 400, "max_tokens"),
    ({"model": "audio-chat", "language": "english!"}, "mp3", 400, "language"),
    ({"model": "audio-chat", "stream": "maybe"}, "mp3", 400, "stream"),
    ({"model": "audio-chat", "speed": "2"}, "mp3", 400, "speed"),
    ({"model": "audio-chat", "prompt": "x" * 20_000}, "mp3", 400, "prompt"),
])
def test_bad_forms_are_4xx_naming_the_field(server, mp3, fields, file, status, param):
    if file is None:  # (httpx writes a multipart form only when it has a file: written by hand)
        r = httpx.post(server.base_url + "/v1/audio/transcriptions", timeout=60,
                       content=_form(fields), headers={"Content-Type": "multipart/form-data; boundary=B"})
    else:
        r = httpx.post(server.base_url + "/v1/audio/transcriptions", data=fields, timeout=60,
                       files={"file": ("clip.mp3", mp3) if file == "mp3" else file})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] and error["message"]


def _form(fields: dict[str, str]) -> bytes:
    parts = [f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return ("".join(parts) + "--B--\r\n").encode()


def test_translations_take_no_language_or_stream(server, mp3):
    for field in ("language", "stream", "include[]"):
        r = httpx.post(server.base_url + "/v1/audio/translations", data={"model": "audio-chat", field: "en"},
                       files={"file": ("clip.mp3", mp3)}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_parameter", r.text


def test_a_json_body_is_a_415(server):
    r = httpx.post(server.base_url + "/v1/audio/transcriptions", json={"model": "audio-chat", "file": "x"}, timeout=60)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


def test_a_clip_past_the_size_limit_is_a_413(server):
    big = b"RIFF" + b"\x00" * 4 + b"WAVE" + b"\x00" * (21 * 1024 * 1024)
    r = httpx.post(server.base_url + "/v1/audio/transcriptions", data={"model": "audio-chat"},
                   files={"file": ("big.wav", big)}, timeout=120)
    assert r.status_code == 413 and r.json()["error"]["param"] == "file"


def test_served_without_v1_as_llama_server(server, mp3):
    r = httpx.post(server.base_url + "/audio/transcriptions", data={"model": "audio-chat", "max_tokens": "2"},
                   files={"file": ("clip.mp3", mp3)}, timeout=120)
    assert r.status_code == 200 and isinstance(r.json()["text"], str)


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/audio/translations"])
@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_clip_too_long_for_the_context_names_the_file(server, test_audio_path, path, stream):
    # 70 s: three 30 s windows of 750 tokens, more than the 2048-token slot holds. The error names the form's file
    # (there are no messages here) and says what a clip costs, not the image setting (none of it is an image).
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    out = io.BytesIO()
    sf.write(out, np.concatenate([samples] * 4), rate, format="WAV", subtype="PCM_16")
    fields = {"model": "audio-chat", **({"stream": stream} if path.endswith("transcriptions") else {})}
    r = httpx.post(server.base_url + path, data=fields, files={"file": ("long.wav", out.getvalue())}, timeout=120)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("file", "context_length_exceeded")
    assert "audio takes 2250 tokens" in error["message"] and "image" not in error["message"]


@pytest.mark.parametrize("truncation", ["auto", "disabled"])
@pytest.mark.parametrize("repeats, windows", [(8, 5), (4, 3)])
def test_a_long_clips_every_window_is_counted_in_a_chats_context_error(server, test_audio_path, repeats, windows,
                                                                      truncation):
    # A clip is one chunk per 30 s window: the context error of a chat that does not fit counts them all (with
    # truncation auto, as the CLI asks, the conversation's fitting counted the first window alone: "audio takes 750
    # tokens" of 3750, and sized the turns it may drop by it).
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    out = io.BytesIO()
    sf.write(out, np.concatenate([samples] * repeats), rate, format="WAV", subtype="PCM_16")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(out.getvalue()).decode(), "format": "wav"}}
    r = httpx.post(server.base_url + "/v1/chat/completions", timeout=120, json={
        "model": "audio-chat", "max_tokens": 2, "truncation": truncation,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is said?"}, part]}]})
    assert r.status_code == 400, r.text
    assert f"audio takes {750 * windows} tokens" in r.json()["error"]["message"]


def test_media_tokens_per_message_count_every_chunk_of_a_part():
    # (the fitting's bookkeeping, by the chunks' content ids: a clip's windows and an image's slices share one id;
    # the same clip twice in a row shares one run of chunks, split evenly)
    from jan.services.fit import _media_tokens
    from jan.services.types import AudioPart, ChatMessage, ImagePart, TextPart

    class Prompt:
        def __init__(self, *ids_and_sizes):
            self.media = [(0, n, n, i, "audio", False) for i, n in ids_and_sizes]

    clip, other, image = AudioPart(b"a", "mp3"), AudioPart(b"b", "wav"), ImagePart(b"p", "image/png")
    messages = (ChatMessage("user", (TextPart("hi"), clip)), ChatMessage("assistant", (TextPart("ok"),)),
                ChatMessage("user", (clip, clip, image, other)))
    prompt = Prompt(*[(f"A#{k}", 750) for k in range(3)], *[(f"A#{k}", 750) for k in range(3, 9)],
                    ("P#0", 64), ("P#1", 64), ("B#0", 750))
    assert _media_tokens(messages, prompt) == [2250, 0, 4500 + 128 + 750]
    assert _media_tokens(messages[:2], Prompt(("", 10), ("", 20))) == [30, 0]  # (no ids: nothing left out)
