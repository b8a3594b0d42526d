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
