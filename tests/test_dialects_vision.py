"""Images through every front end, on the tiny vision pair, each with its official client:
Ollama (``images`` on /api/chat and /api/generate), Anthropic (image blocks) and OpenAI
Responses (``input_image``) reach the model the way OpenAI's ``image_url`` does — the same
prompt (64 image tokens in it), so the same greedy answer."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import anthropic
import ollama
import openai
import pytest

from dialect_helpers import anthropic_prompt_tokens
from server_helpers import start_server

QUESTION = "What is in this picture?"
N = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("dialects-vision"), [vision_pair[0]])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (28, 20), (240, 180, 20)).save(out, "PNG")
    return out.getvalue()


def _openai_reference(server, png, image_first: bool) -> tuple[str, int]:
    """The answer and prompt size through OpenAI's chat completions."""
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    parts = [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]
    result = client.chat.completions.create(model="vision-chat", max_tokens=N, temperature=0,
                                            messages=[{"role": "user", "content": parts[::-1] if image_first else parts}])
    assert result.usage.prompt_tokens > 64
    return result.choices[0].message.content, result.usage.prompt_tokens


@pytest.fixture(scope="module")
def reference(server, png):
    """Image after the text."""
    return _openai_reference(server, png, image_first=False)


@pytest.fixture(scope="module")
def image_first_reference(server, png):
    """Image before the text: where Ollama puts a message's images (its ``[img-N]`` prefix)."""
    return _openai_reference(server, png, image_first=True)


def test_ollama_chat_images(server, png, image_first_reference):
    client = ollama.Client(host=server.base_url, timeout=120)
    reply = client.chat(model="vision-chat", messages=[{"role": "user", "content": QUESTION, "images": [png]}],
                        options={"temperature": 0, "num_predict": N})
    assert (reply.message.content, reply.prompt_eval_count) == image_first_reference


def test_ollama_generate_images(server, png, image_first_reference):
    client = ollama.Client(host=server.base_url, timeout=120)
    reply = client.generate(model="vision-chat", prompt=QUESTION, images=[png],
                            options={"temperature": 0, "num_predict": N})
    assert (reply.response, reply.prompt_eval_count) == image_first_reference


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_generate_context_holds_the_images_place_and_a_continuation_of_it_is_refused(server, png, stream):
    """A generate's ``context`` is the exchange's token ids; an image has no token id, so it was left out and a
    follow-up continuing that context went on without the picture it asked about (the model answered from the text
    alone). The image's place is now one -1 in the context, and a continuation of it is a 400 saying how to go on
    (send the image again, or the chat API with the image in its messages); a continuation that sends the image
    again goes on with it, as Ollama binds a context's images to the request's; a context without images continues
    as ever."""
    client = ollama.Client(host=server.base_url, timeout=120)
    options = {"temperature": 0, "num_predict": 2}
    asked = {"model": "vision-chat", "prompt": QUESTION, "images": [png], "options": options}
    first = list(client.generate(**asked, stream=True))[-1] if stream else client.generate(**asked)
    context = list(first.context)
    assert context.count(-1) == 1, context
    # the image's 64 positions are one -1: the rest are the prompt's text tokens and the reply's
    assert len(context) == first.prompt_eval_count - 64 + 1 + first.eval_count, (len(context), first)
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="vision-chat", prompt="And the colour?", context=context, options=options)
    assert info.value.status_code == 400
    assert info.value.error.startswith(f"context[{context.index(-1)}]: stands for image 1"), info.value.error
    assert "send the exchange's images again" in info.value.error and "/api/chat" in info.value.error
    text = client.generate(model="vision-chat", prompt=QUESTION, options=options)
    assert -1 not in text.context
    follow = client.generate(model="vision-chat", prompt="And then?", context=text.context, options=options)
    assert follow.prompt_eval_count > len(text.context)


def test_ollama_generate_context_puts_an_image_sent_again_back_at_its_place(server, png):
    """The official clients' usage: an exchange about a picture is continued with the picture sent again
    (``generate(context=..., images=[picture])``). Ollama binds the context's ``[img-n]`` tags to the request's
    images by index, so the picture stands where it was in the exchange and in the new turn; jan put it in the new
    turn only, the exchange's place left out (the model read the earlier turn without its picture, and a slot holding
    the exchange could not be reused). It is now put back at its place too (its 64 positions), and the reply's
    context names each place's image (-1 - n: ``images[n]``), so that a chain of continuations sending the picture
    again goes on, and a place whose image a request lacks is refused, named."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 28), (20, 90, 200)).save(out, "PNG")
    blue = out.getvalue()
    client = ollama.Client(host=server.base_url, timeout=120)
    options = {"temperature": 0, "num_predict": 2}
    first = client.generate(model="vision-chat", prompt=QUESTION, images=[png], options=options)
    context = list(first.context)
    again = client.generate(model="vision-chat", prompt="And the colour?", context=context, images=[png],
                            options=options)
    alone = client.generate(model="vision-chat", prompt="And the colour?", images=[png], options=options)
    # the exchange whole (its image's 64 positions back in place of its -1), then the new turn (one BOS)
    assert again.prompt_eval_count == len(context) - 1 + 64 + alone.prompt_eval_count - 1, (again, alone)
    assert again.context[:len(context)] == context  # (the exchange as it was: the place names images[0])
    assert again.context.count(-1) == 2  # (and the new turn's)
    third = client.generate(model="vision-chat", prompt="Why?", context=again.context, images=[png], options=options)
    assert third.prompt_eval_count == len(again.context) - 2 + 2 * 64 + \
        client.generate(model="vision-chat", prompt="Why?", images=[png], options=options).prompt_eval_count - 1
    # two pictures: each place names its own (images[0] is -1, images[1] is -2), and both must be sent again
    two = client.generate(model="vision-chat", prompt=QUESTION, images=[png, blue], options=options)
    assert [t for t in two.context if t < 0] == [-1, -2], two.context
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="vision-chat", prompt="And?", context=two.context, images=[png], options=options)
    assert info.value.status_code == 400
    assert info.value.error.startswith(f"context[{list(two.context).index(-2)}]: stands for image 2"), info.value.error
    both = client.generate(model="vision-chat", prompt="And?", context=two.context, images=[png, blue],
                           options=options)
    assert [t for t in both.context if t < 0] == [-1, -2, -1, -2], both.context


def test_anthropic_image_blocks(server, png, reference):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    reply = client.messages.create(model="vision-chat", max_tokens=N, extra_body={"temperature": 0}, messages=[{
        "role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(png).decode()}}]}])
    assert ("".join(b.text for b in reply.content if b.type == "text"), anthropic_prompt_tokens(reply.usage)) == reference


def test_anthropic_image_block_of_an_uploaded_file(server, png, reference):
    """An image uploaded with Anthropic's Files API, named by an image block's ``file`` source: the same image."""
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    upload = client.beta.files.upload(file=("picture.png", io.BytesIO(png), "image/png"))
    reply = client.messages.create(model="vision-chat", max_tokens=N, extra_body={"temperature": 0}, messages=[{
        "role": "user", "content": [
            {"type": "text", "text": QUESTION}, {"type": "image", "source": {"type": "file", "file_id": upload.id}}]}])
    assert ("".join(b.text for b in reply.content if b.type == "text"), anthropic_prompt_tokens(reply.usage)) == reference


def test_responses_input_image(server, png, reference):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.responses.create(model="vision-chat", max_output_tokens=N, temperature=0, store=False, input=[{
        "role": "user", "content": [
            {"type": "input_text", "text": QUESTION},
            {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}]}])
    assert (reply.output_text, reply.usage.input_tokens) == reference


def test_responses_previous_response_id_keeps_the_image(server, png):
    """A stored response keeps its image as a file in its thread; continuing it sends the image again."""
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    first = client.responses.create(model="vision-chat", max_output_tokens=3, temperature=0, input=[{
        "role": "user", "content": [
            {"type": "input_text", "text": QUESTION},
            {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}]}])
    follow = client.responses.create(model="vision-chat", max_output_tokens=3, temperature=0,
                                     previous_response_id=first.id, input="Tell me more.")
    assert first.usage.input_tokens > 64
    assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert follow.usage.input_tokens_details.cached_tokens > 64  # the image's KV reused, not re-encoded


def _wrapped(data: bytes) -> str:
    """Base64 broken into 76-column lines, as Linux's ``base64`` (and MIME) writes it."""
    text = base64.b64encode(data).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def test_wrapped_base64_and_an_upper_case_data_url_in_every_dialect(server, png, reference, image_first_reference):
    """Line breaks in base64 are skipped (Go's decoder, Ollama's, skips them; ``base64`` on Linux writes them) and a
    data: URL's scheme and ``;base64`` are case-insensitive (RFC 2397): the same image, the same answer, in every
    dialect (one decoder for all, jan.image_types)."""
    assert "\n" in _wrapped(png)
    ollama_client = ollama.Client(host=server.base_url, timeout=120)
    reply = ollama_client.chat(model="vision-chat", options={"temperature": 0, "num_predict": N}, messages=[
        {"role": "user", "content": QUESTION, "images": [_wrapped(png)]}])
    assert (reply.message.content, reply.prompt_eval_count) == image_first_reference

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    for url in ("data:image/png;base64," + _wrapped(png), "DATA:IMAGE/PNG;BASE64," + base64.b64encode(png).decode()):
        chat = client.chat.completions.create(model="vision-chat", max_tokens=N, temperature=0, messages=[
            {"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]}])
        assert (chat.choices[0].message.content, chat.usage.prompt_tokens) == reference
        response = client.responses.create(model="vision-chat", max_output_tokens=N, temperature=0, store=False, input=[{
            "role": "user", "content": [{"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": url}]}])
        assert (response.output_text, response.usage.input_tokens) == reference

    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    message = claude.messages.create(model="vision-chat", max_tokens=N, extra_body={"temperature": 0}, messages=[{
        "role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _wrapped(png)}}]}])
    assert ("".join(b.text for b in message.content if b.type == "text"),
            anthropic_prompt_tokens(message.usage)) == reference

    with pytest.raises(ollama.ResponseError) as info:  # anything else that is not base64 is still refused
        ollama_client.chat(model="vision-chat", messages=[{"role": "user", "content": QUESTION, "images": ["@@@@"]}])
    assert info.value.status_code == 400


def test_bare_base64_in_an_image_url_is_the_image_as_llama_server_reads_it(server, png, reference):
    """llama-server reads an image_url.url that is no URL as bare base64 (its clients send it so); jan refused it
    as a URL it does not fetch, while its multimodal_data and Ollama's images take bare base64. The same image,
    the same answer, on chat completions and Responses; text that is no base64 image is still a URL refused."""
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    bare = base64.b64encode(png).decode()
    chat = client.chat.completions.create(model="vision-chat", max_tokens=N, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                     {"type": "image_url", "image_url": {"url": bare}}]}])
    assert (chat.choices[0].message.content, chat.usage.prompt_tokens) == reference
    response = client.responses.create(model="vision-chat", max_output_tokens=N, temperature=0, store=False, input=[{
        "role": "user", "content": [{"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": bare}]}])
    assert (response.output_text, response.usage.input_tokens) == reference
    for url in ("picture.png", base64.b64encode(b"not an image at all").decode()):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="vision-chat", max_tokens=1, messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
        assert info.value.body["param"] == "messages[0].content[0].image_url.url", info.value.body


def test_a_background_response_with_a_damaged_image_is_a_400(server, png):
    """A background response is answered before its prompt is made: its images are checked first, so a damaged or
    over-size one is the 400 a foreground request gets (naming its input), not an answered id that failed, could not
    be stored (a 404 to the client polling it) and left an empty conversation in the thread list."""
    import struct
    import zlib

    huge = bytearray(png)  # the header says 20000x20000 pixels, over the 40-megapixel limit
    huge[16:24] = struct.pack(">II", 20000, 20000)
    huge[29:33] = struct.pack(">I", zlib.crc32(bytes(huge[12:29])))
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)

    def threads() -> list[str]:
        with urllib.request.urlopen(server.base_url + "/v1/threads?limit=100", timeout=120) as listed:
            return [t["id"] for t in json.loads(listed.read())["data"]]

    threads_before = threads()
    for data, code in ((png[:60], "unsupported_format"), (bytes(huge), "too_large")):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="vision-chat", background=True, max_output_tokens=2, input=[{
                "role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                            {"type": "input_image", "image_url": url}]}])
        assert (info.value.body["param"], info.value.body["code"]) == ("input[0].content[1]", code), info.value.body
    assert threads() == threads_before
    # a good one is answered at once and runs
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    started = client.responses.create(model="vision-chat", background=True, max_output_tokens=2, input=[{
        "role": "user", "content": [{"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": url}]}])
    for _ in range(600):
        done = client.responses.retrieve(started.id)
        if done.status not in ("queued", "in_progress"):
            break
        threading.Event().wait(0.1)
    assert done.status in ("completed", "incomplete") and done.usage.input_tokens > 64, done


@pytest.mark.parametrize("payload", ["@@@@", "iVBORw0KGgo", "iVBORw0KGgo_-A="])  # not base64, cut, url-safe
def test_data_that_is_not_base64_is_a_400_naming_the_field_in_every_dialect(server, payload):
    """Each dialect's own error shape, naming the field that holds the data (Anthropic's named only the message)."""
    def post(path: str, body: dict) -> tuple[int, str]:
        request = urllib.request.Request(server.base_url + path, json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    url = "data:image/png;base64," + payload
    cases = [
        ("/v1/chat/completions", {"model": "vision-chat", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]},
         "messages[0].content[0].image_url.url"),
        ("/v1/responses", {"model": "vision-chat", "max_output_tokens": 1, "store": False, "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}, "input[0].content[0]"),
        ("/v1/messages", {"model": "vision-chat", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": payload}}]}]},
         "messages.0.content.0.source.data"),
        ("/api/chat", {"model": "vision-chat", "stream": False, "messages": [
            {"role": "user", "content": QUESTION, "images": [payload]}]}, "messages[0].images[0]"),
    ]
    for path, body, field in cases:
        status, text = post(path, body)
        assert status == 400, (path, text)
        error = json.loads(text)["error"]
        message = error if isinstance(error, str) else error["message"]
        assert message.startswith(field), (path, message)


def test_image_detail_takes_openais_values_and_refuses_others(server, png):
    """``detail`` changes nothing here (the projector decides how an image is seen), but a value OpenAI refuses is a
    400 naming it, not a typo silently taken -- in chat completions and the Responses API alike."""
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    for detail in ("auto", "low", "high", "original"):
        client.chat.completions.create(model="vision-chat", max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url, "detail": detail}}]}])
        client.responses.create(model="vision-chat", max_output_tokens=1, store=False, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": url, "detail": detail}]}])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="vision-chat", max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url, "detail": "hgih"}}]}])
    assert info.value.body["param"] == "messages[0].content[0].image_url.detail", info.value.body
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="vision-chat", max_output_tokens=1, store=False, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": url, "detail": "hgih"}]}])
    assert info.value.body["param"] == "input[0].content[0].detail", info.value.body
