"""Images through the OpenAI-compatible server (official openai client), on the tiny vision pair."""

from __future__ import annotations

import base64
import io
import json
import threading
import warnings

import openai
import pytest

from dialect_helpers import anthropic_prompt_tokens
from server_helpers import start_server


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _png(color=(200, 20, 20), size=(24, 24)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair, stories_path):
    model_path, _mmproj = vision_pair  # mmproj-vision-chat.gguf beside it: picked up on import
    srv = start_server(tmp_path_factory.mktemp("vision-server"), [model_path, stories_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _ask(url: str, text: str = "What is in this picture?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]


def test_models_report_vision(client):
    models = {m.id: m for m in client.models.list()}
    # (Ollama's capability names, as /api/show gives them: "completion" and the template's besides)
    assert "vision" in models["vision-chat"].model_extra["capabilities"]
    assert "vision" not in models["stories260K"].model_extra["capabilities"]


def test_image_chat_with_a_data_url(client, test_image_path):
    url = _data_url(test_image_path.read_bytes(), "image/jpeg")
    result = client.chat.completions.create(model="vision-chat", messages=_ask(url), max_tokens=8, temperature=0)
    assert result.choices[0].message.content
    assert result.usage.prompt_tokens > 64  # the image is 64 tokens of the prompt
    again = client.chat.completions.create(model="vision-chat", messages=_ask(url), max_tokens=8, temperature=0)
    assert again.choices[0].message.content == result.choices[0].message.content


def test_follow_up_turn_reuses_the_cached_image(client):
    url = _data_url(_png((10, 120, 240)), "image/png")
    first = client.chat.completions.create(model="vision-chat", messages=_ask(url), max_tokens=4, temperature=0)
    history = _ask(url) + [{"role": "assistant", "content": first.choices[0].message.content},
                           {"role": "user", "content": "Tell me more."}]
    second = client.chat.completions.create(model="vision-chat", messages=history, max_tokens=4, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens > 64


def test_streamed_image_chat(client):
    stream = client.chat.completions.create(model="vision-chat", messages=_ask(_data_url(_png(), "image/png")),
                                            max_tokens=6, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_two_image_requests_in_parallel_while_text_streams(client):
    text_stream = client.chat.completions.create(
        model="vision-chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=40, temperature=0,
        stream=True, extra_body={"ignore_eos": True})
    pieces = iter(text_stream)
    first = next(pieces)  # generating before the image requests arrive
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        url = _data_url(_png((40 * i, 200, 30), (16 + i, 16)), "image/png")
        results[i] = client.chat.completions.create(model="vision-chat", messages=_ask(url), max_tokens=6,
                                                    temperature=0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    rest = list(pieces)
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive()
    assert set(results) == {0, 1}
    assert all(r.usage.prompt_tokens > 64 and r.choices[0].finish_reason for r in results.values())
    assert [first, *rest][-1].choices[0].finish_reason == "length"


def _huge_png_header() -> bytes:
    """A PNG whose header says 8000x6000 pixels (over the 40-megapixel limit): refused before decoding."""
    import struct
    import zlib

    png = bytearray(_png(size=(1, 1)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    png[ihdr:ihdr + 8] = struct.pack(">II", 8000, 6000)
    png[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(png[ihdr - 4:ihdr + 13])))
    return bytes(png)


@pytest.mark.parametrize(
    "model, content, code",
    [
        ("vision-chat", [{"type": "image_url", "image_url": {"url": _data_url(_huge_png_header(), "image/png")}}],
         "too_large"),
        ("vision-chat", [{"type": "image_url", "image_url": {"url": _data_url(b"GIF89a-not-really", "image/gif")}}],
         "unsupported_format"),
        ("vision-chat", [{"type": "image_url", "image_url": {"url": _data_url(b"plain text", "text/plain")}}],
         "unsupported_format"),
        ("vision-chat", [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}], "not_allowed"),
        ("vision-chat", [{"type": "image_url", "image_url": {"url": _data_url(_png(), "image/png")}}] * 101,
         "too_many"),
        ("stories260K", [{"type": "image_url", "image_url": {"url": _data_url(_png(), "image/png")}}],
         "no_projector"),
        ("vision-chat", [{"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF0000WAVE").decode(),
                                                                "format": "wav"}}], "no_projector"),
    ],
)
def test_bad_media_is_a_400(client, model, content, code):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], max_tokens=2)
    body = info.value.body if isinstance(info.value.body, dict) else json.loads(info.value.response.text)
    error = body.get("error", body)
    if code is not None:
        assert error.get("code") == code, error


def _audio(**fields) -> dict:
    return {"type": "input_audio", "input_audio": fields}


WAV = base64.b64encode(b"RIFF\x24\0\0\0WAVEfmt ").decode()


@pytest.mark.parametrize("part, param, code", [
    # a projector for images only: said of the clip (not of no field at all), as an image to a text model is
    (_audio(data=WAV, format="wav"), "messages[0].content[1]", "no_projector"),
    # input_audio's own fields, checked whatever the model: OpenAI's formats are wav and mp3 (jan decodes flac too)
    (_audio(data="@@@@", format="wav"), "messages[0].content[1].input_audio.data", "unsupported_format"),
    (_audio(format="wav"), "messages[0].content[1].input_audio.data", "unsupported_format"),
    (_audio(data=WAV, format="ogg"), "messages[0].content[1].input_audio.format", "unsupported_format"),
    (_audio(data=WAV), "messages[0].content[1].input_audio.format", "unsupported_format"),
])
def test_bad_audio_is_a_400_naming_its_field(client, part, param, code):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="vision-chat", max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "text", "text": "Listen."}, part]}])
    error = info.value.body if isinstance(info.value.body, dict) else json.loads(info.value.response.text)["error"]
    assert (error.get("param"), error.get("code")) == (param, code), error
    assert error["message"].startswith(param + ": "), error


def test_a_picture_with_damaged_exif_is_answered(server, client):
    """EXIF that Pillow could not write back made its exif_transpose raise struct.error: a 500 in chat and in a
    thread message (the store decodes its images too) for a picture a browser shows."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "cam"  # Make, retagged NumberOfInks (a number) below: text where a number belongs
    raw = exif.tobytes().replace(b"\x01\x0f\x00\x02", b"\x01\x4e\x00\x02")
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 200, 30)).save(out, "JPEG", exif=raw)
    url = _data_url(out.getvalue(), "image/jpeg")
    result = client.chat.completions.create(model="vision-chat", messages=_ask(url), max_tokens=2, temperature=0)
    assert result.usage.prompt_tokens > 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (the SDK's: the Assistants API is deprecated)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}])
    assert thread.id


def test_server_still_serves_after_bad_media(client):
    ok = client.chat.completions.create(model="vision-chat", messages=_ask(_data_url(_png(), "image/png")),
                                        max_tokens=2, temperature=0)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_images_through_every_dialect(server, client):
    """An image in Anthropic's, the Responses API's and Ollama's own shape gives the same answer from the same
    prompt as the chat completion: each dialect is a thin layer over the one chat path."""
    import anthropic
    import ollama

    png = _png((30, 160, 60))
    b64 = base64.b64encode(png).decode()
    text = "What is in this picture?"
    chat = client.chat.completions.create(model="vision-chat", messages=_ask(_data_url(png, "image/png"), text),
                                          max_tokens=8, temperature=0)
    expected = chat.choices[0].message.content
    assert chat.usage.prompt_tokens > 64

    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    message = claude.messages.create(model="vision-chat", max_tokens=8, extra_body={"temperature": 0}, messages=[
        {"role": "user", "content": [{"type": "text", "text": text},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": b64}}]}])
    assert message.content[0].text == expected and anthropic_prompt_tokens(message.usage) == chat.usage.prompt_tokens

    response = client.responses.create(model="vision-chat", max_output_tokens=8, temperature=0, store=False, input=[
        {"role": "user", "content": [{"type": "input_text", "text": text},
                                     {"type": "input_image", "image_url": _data_url(png, "image/png")}]}])
    assert response.output_text == expected and response.usage.input_tokens == chat.usage.prompt_tokens

    # Ollama puts a message's images before its text, as Ollama does
    first = client.chat.completions.create(model="vision-chat", max_tokens=8, temperature=0, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(png, "image/png")}},
                                     {"type": "text", "text": text}]}])
    local = ollama.Client(host=server.base_url, timeout=120)
    answer = local.chat(model="vision-chat", options={"temperature": 0, "num_predict": 8},
                        messages=[{"role": "user", "content": text, "images": [b64]}])
    assert answer.message.content == first.choices[0].message.content
    assert answer.prompt_eval_count == first.usage.prompt_tokens
    generated = local.generate(model="vision-chat", prompt=text, images=[b64], options={"temperature": 0, "num_predict": 8})
    assert generated.response == answer.message.content
