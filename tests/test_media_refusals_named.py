"""Media a request cannot send, said alike in every dialect: images for a model without a projector name the model
and what it lacks (its projector, mmproj), before a load and after one."""

from __future__ import annotations

import base64
import io

import pytest

from cut_off_helpers import MODEL, post
from server_helpers import start_server


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("media-named"), [stories_path], n_parallel=1)
    yield srv
    srv.stop()


def _error_text(path: str, body) -> str:
    """The message of an error body in its dialect's shape (Ollama's is a bare string)."""
    error = body["error"]
    return error if isinstance(error, str) else error["message"]


def test_images_for_a_model_without_a_projector_name_the_model_in_every_dialect(server):
    b64 = base64.b64encode(_png()).decode()
    url = "data:image/png;base64," + b64
    bodies = {
        "/v1/chat/completions": {"model": MODEL, "max_tokens": 2, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": url}}]}]},
        "/v1/responses": {"model": MODEL, "max_output_tokens": 16, "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": url}]}]},
        "/v1/messages": {"model": MODEL, "max_tokens": 2, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                       "data": b64}}]}]},
        "/api/chat": {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "Hi", "images": [b64]}]},
        "/api/generate": {"model": MODEL, "stream": False, "prompt": "Hi", "images": [b64]},
        "/completion": {"model": MODEL, "n_predict": 2, "prompt": {"prompt_string": "<__media__> Hi",
                                                                    "multimodal_data": [b64]}},
    }
    for path, body in bodies.items():
        status, answer = post(server, path, body)
        assert status == 400, (path, answer)
        text = _error_text(path, answer)
        assert f"'{MODEL}'" in text and "projector" in text, (path, text)


def test_the_prompt_s_rendering_names_the_model_too():
    """After a load the template's rendering refuses what the files did not settle: in the same words."""
    import jan
    from jan.services.local import template_messages
    from jan.services.types import ChatMessage, ImagePart, TextPart

    message = ChatMessage("user", (TextPart("Hi"), ImagePart(_png(), "image/png")))
    with pytest.raises(jan.MediaError) as info:
        template_messages([message], None, model_id="tiny")
    assert info.value.reason == "no_projector" and "model 'tiny'" in str(info.value), str(info.value)


# -- a data: URL, read one way in every dialect (jan.image_types.data_url_media) -----------------------------------
@pytest.fixture(scope="module")
def vision(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("media-data-urls"), [vision_pair[0]], n_parallel=1)
    yield srv
    srv.stop()


def _bodies(url: str) -> dict[str, tuple[dict, str, str]]:
    """path -> (body giving the image as ``url``, the field named, the dialect's path style of it)."""
    return {
        "/v1/chat/completions": ({"model": "vision-chat", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": url}}]}]},
            "messages[0].content[1].image_url.url", "messages[0].content[1].image_url.url"),
        "/v1/responses": ({"model": "vision-chat", "max_output_tokens": 16, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "Hi"}, {"type": "input_image", "image_url": url}]}]},
            "input[0].content[1].image_url", "input[0].content[1].image_url"),
        # (an Anthropic url source may be a data: URL too; its errors are written dotted, as Anthropic's)
        "/v1/messages": ({"model": "vision-chat", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": url}}, {"type": "text", "text": "Hi"}]}]},
            "messages[0].content[0].source.url", "messages.0.content.0.source.url"),
    }


@pytest.mark.parametrize("head", ["DATA:IMAGE/PNG;BASE64,", "data:;base64,", "data:image/jpeg;base64,",
                                  "data:image/png;name=a.png;base64,"])
def test_a_base64_data_url_is_taken_alike_in_every_dialect(vision, head):
    """Scheme and flag in any case, no type or the wrong one (the bytes tell), parameters: an image everywhere.
    (An Anthropic url source's data: URL was split by hand: these were refused naming "media_type".)"""
    url = head + base64.b64encode(_png()).decode()
    for path, (body, _, _) in _bodies(url).items():
        status, answer = post(vision, path, body)
        assert status == 200, (path, head, answer)


@pytest.mark.parametrize("url, code", [
    ("data:image/png," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(), "unsupported_format"),  # no ;base64
    ("data:image/png,%89PNG", "unsupported_format"),
    ("data:image/png;base64,@@not-base64@@", "unsupported_format"),
])
def test_a_data_url_that_is_not_base64_is_refused_naming_its_field_in_every_dialect(vision, url, code):
    """(An Anthropic url source took the first, and said the others of "data", a field its client never sent.)"""
    for path, (body, field, written) in _bodies(url).items():
        status, answer = post(vision, path, body)
        assert status == 400, (path, url, answer)
        text = _error_text(path, answer)
        assert text.startswith(written + ": "), (path, text)
        if path != "/v1/messages":  # (Anthropic's error has no param or code)
            assert (answer["error"]["param"], answer["error"]["code"]) == (field, code), (path, answer)


def test_a_thread_s_data_url_image_is_read_as_the_dialects_read_it():
    from jan.services.thread_turns import data_url_image

    png = _png()
    for head in ("data:image/png;base64,", "DATA:image/png;BASE64,", "data:image/png;name=a.png;base64,"):
        image = data_url_image(head + base64.b64encode(png).decode())
        assert image is not None and image.data == png, head
    assert data_url_image("data:image/png,abc") is None


# -- llama-server's prompt objects: an item that is no image nor audio is said to be so ----------------------------
@pytest.fixture(scope="module")
def hearing(tmp_path_factory, audio_pair):
    srv = start_server(tmp_path_factory.mktemp("media-hearing"), [audio_pair[0]], n_parallel=1, n_ctx=2048)
    yield srv
    srv.stop()


@pytest.mark.parametrize("item, says", [(b"hello, I am a text file", "not a PNG, JPEG, WebP or GIF image nor a WAV"),
                                        (b"", "no data (the file is empty)")])
@pytest.mark.parametrize("path", ["/completion", "/embedding"])
def test_an_item_of_neither_kind_is_no_image_a_hearing_model_refuses(hearing, item, says, path):
    """(Taken for an image, it was "model 'audio-chat' does not accept images (no vision projector loaded)": a
    capability refusal of what was no image at all.)"""
    field = "content" if path == "/embedding" else "prompt"
    body = {"model": "audio-chat", "n_predict": 1,
            field: {"prompt_string": "<__media__> Hi", "multimodal_data": [base64.b64encode(item).decode()]}}
    status, answer = post(hearing, path, body)
    assert status == 400, answer
    text = _error_text(path, answer)
    assert text.startswith(f"{field}.multimodal_data[0]: {says}"), text
    assert "does not accept" not in text, text


def test_a_thread_message_s_data_url_that_is_not_base64_is_refused_not_kept_as_a_link():
    """(It was kept as a link, and a run then left the image out without a word.)"""
    from jan.store.errors import InvalidArgumentError
    from jan.store.files import extract_images

    for url in ("data:image/png,abc", "DATA:image/png,%89PNG"):
        with pytest.raises(InvalidArgumentError) as info:
            extract_images([{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": url}}])
        assert info.value.param == "content[1].image_url.url" and "base64" in str(info.value), str(info.value)
    link = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert extract_images([link]) == ([link], {})  # (a link is kept as sent)
    content, files = extract_images([{"type": "image_url", "image_url": {
        "url": "DATA:image/png;BASE64," + base64.b64encode(_png()).decode()}}])
    assert content[0]["type"] == "image_file" and len(files) == 1


# -- a part that names its content twice: one was read, the other left unsaid ---------------------------------------
@pytest.mark.parametrize("path, part, field, says", [
    ("/v1/responses", {"type": "input_image", "file_id": "file-nope", "image_url": "URL"}, "input[0].content[1]",
     "not image_url and file_id together"),
    ("/v1/responses", {"type": "input_file", "file_id": "file-nope", "file_data": "DOC", "filename": "a.txt"},
     "input[0].content[1]", "not file_data and file_id together"),
    ("/v1/responses", {"type": "input_file", "file_url": "https://example.com/a.txt", "file_data": "DOC",
                       "filename": "a.txt"}, "input[0].content[1]", "not file_data and file_url together"),
    ("/v1/chat/completions", {"type": "file", "file": {"file_id": "file-nope", "file_data": "DOC",
                                                       "filename": "a.txt"}},
     "messages[0].content[1].file", "not file_data and file_id together"),
    # (said of the part: its tag, input_file, is no field of it)
    ("/v1/responses", {"type": "input_file"}, "input[0].content[1]", "give file_data"),
])
def test_a_part_giving_its_content_twice_is_refused_naming_the_part(vision, path, part, field, says):
    """(The file_id was ignored unsaid, even one of no upload at all: the client could not tell what the model saw.)"""
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    doc = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
    part = {k: (url if v == "URL" else doc if v == "DOC" else v) for k, v in part.items()}
    if "file" in part:
        part["file"] = {k: (doc if v == "DOC" else v) for k, v in part["file"].items()}
    text = {"type": "input_text" if path == "/v1/responses" else "text", "text": "Hi"}
    body = {"model": "vision-chat", "input": [{"role": "user", "content": [text, part]}], "max_output_tokens": 16} \
        if path == "/v1/responses" else \
        {"model": "vision-chat", "messages": [{"role": "user", "content": [text, part]}], "max_tokens": 1}
    status, answer = post(vision, path, body)
    assert status == 400, answer
    assert answer["error"]["param"] == field and says in answer["error"]["message"], answer


def test_a_tool_without_its_function_is_still_said_of_that_field():
    from jan.server import schemas
    from jan.server.errors import from_validation_error
    from pydantic import ValidationError

    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}
    with pytest.raises(ValidationError) as info:
        schemas.ChatCompletionRequest.model_validate(body)
    assert str(from_validation_error(info.value, body)).startswith("tools[0].function: ")


def test_an_embedding_s_media_are_decoded_under_the_request_s_cancel_event(vision, monkeypatch):
    """An embedding request's images are decoded on the embedding workers, not the media ones: the event that stops
    its batches when the client leaves stops their decoding too (jan.engine.media.MEDIA_CANCEL), as a chat's."""
    from jan.engine.media import MEDIA_CANCEL
    from jan.services import embeddings

    seen = []
    real = embeddings.completion_media_prompts

    def noted(*args, **kwargs):
        seen.append(MEDIA_CANCEL.get())
        return real(*args, **kwargs)

    monkeypatch.setattr(embeddings, "completion_media_prompts", noted)
    b64 = base64.b64encode(_png()).decode()
    status, answer = post(vision, "/embedding", {"model": "vision-chat", "content": {
        "prompt_string": "<__media__> Hi", "multimodal_data": [b64]}})
    assert status == 200, answer
    assert len(seen) == 1 and seen[0] is not None and not seen[0].is_set(), seen


def test_an_input_image_without_its_image_says_both_ways_to_give_it(vision):
    status, answer = post(vision, "/v1/responses", {"model": "vision-chat", "max_output_tokens": 16, "input": [
        {"role": "user", "content": [{"type": "input_image"}]}]})
    assert status == 400 and answer["error"]["param"] == "input[0].content[0].image_url", answer
    assert "image_url" in answer["error"]["message"] and "file_id" in answer["error"]["message"], answer
