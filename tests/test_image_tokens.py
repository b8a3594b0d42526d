"""The tokens one image takes on a dynamic-resolution projector (``image_min_tokens``/``image_max_tokens``,
llama-server's ``--image-min-tokens``/``--image-max-tokens``, libmtmd's ``mtmd_context_params``), and a prompt whose
image does not fit the context.

A tiny random Qwen2-VL pair (tests/conftest.py: qwen2vl_pair) sizes an image by its pixels, as the real ones do: the
shared photo (640x488 pixels, a token per 16x16 of them) takes 1240 tokens by default, fewer under
``image_max_tokens``. The options are judged wherever they are given: ``jan.Model(...)`` (a ValueError naming the
option), model.json ``settings`` (a 400 naming the field), ``jan serve``/``jan run`` flags (exit 1/2 naming the
flag). No timing is measured."""

from __future__ import annotations

import base64

import httpx
import pytest
from server_helpers import start_server
from test_cli_helpers import cli_env, jan, ok

import jan as jan_api
from jan.errors import BadRequestError, ModelSettingError

PROMPT = "<|im_start|>user\nWhat is in this picture?<|im_end|>\n<|im_start|>assistant\n"
MODEL_ID = "qwen2vl-chat"


def _image_tokens(model: jan_api.Model, image) -> int:
    """The tokens ``image`` takes in a prompt of ``model`` (tokenized only: the encoder does not run)."""
    return model.media_prompt(PROMPT, model.prepare_media([image]), encode=False).n_media_tokens


def _load(pair, **kwargs) -> jan_api.Model:
    model, mmproj = pair
    # flash attention: the projector's warm-up image is 8464 patches (0.3 GB of attention scores per head without)
    return jan_api.Model(model, mmproj=mmproj, n_ctx=4096, n_threads=1, flash_attn=True, **kwargs)


# -- jan.Model ------------------------------------------------------------------------------------------------------
def test_the_bounds_reach_the_projector(qwen2vl_pair, test_image_path):
    with _load(qwen2vl_pair) as model:
        own = _image_tokens(model, test_image_path)
        assert model.image_min_tokens is None and model.image_max_tokens is None
    assert own > 1000  # the projector's own bounds (8 to 4096): the photo at its size
    with _load(qwen2vl_pair, image_max_tokens=64) as model:
        assert model.image_max_tokens == 64
        small = _image_tokens(model, test_image_path)
        assert 8 <= small <= 64
        # the tokens an image took are the prompt's: usage counts them
        prompt = model.media_prompt(PROMPT, model.prepare_media([test_image_path]), encode=False)
        done = model.generate(PROMPT, images=[test_image_path], max_tokens=2, temperature=0)
        assert done.usage.prompt_tokens == prompt.n_tokens > len(model.tokenize(PROMPT, parse_special=True)) + small
    with _load(qwen2vl_pair, image_min_tokens=2000) as model:  # a minimum alone: up to the projector's own maximum
        assert _image_tokens(model, test_image_path) >= 2000
    with _load(qwen2vl_pair, image_min_tokens=16, image_max_tokens=16) as model:
        assert _image_tokens(model, test_image_path) <= 16


def test_an_image_the_projector_cannot_preprocess_is_named(qwen2vl_pair, test_image_path):
    """A 3x20000 strip under a 4096-token minimum is an image libmtmd's preprocessing refuses; libmtmd tells only that
    one of the prompt's items failed, so the error named none and a server could not say which part sent it. It is
    now the item's MediaError (its index, "image 2: ..."), the photo beside it accepted."""
    import io

    from PIL import Image

    strip = io.BytesIO()
    Image.new("RGB", (3, 20000), (120, 60, 30)).save(strip, "PNG")
    with _load(qwen2vl_pair, image_min_tokens=4096, image_max_tokens=4096) as model:
        for media, index in (([strip.getvalue()], 0), ([test_image_path, strip.getvalue()], 1)):
            with pytest.raises(jan_api.MediaError) as info:
                model.media_prompt(PROMPT + model.media_marker * len(media), model.prepare_media(media), encode=False)
            assert (info.value.item_index, info.value.reason) == (index, "unsupported_format"), str(info.value)
            assert str(info.value).startswith(f"image {index + 1}: the projector could not preprocess it")


def test_a_fixed_resolution_projector_ignores_them(vision_pair, test_image_path):
    model, mmproj = vision_pair  # LLaVA-style: every image is resized to 64x64 pixels, 64 tokens
    with jan_api.Model(model, mmproj=mmproj, n_ctx=256, n_threads=1, image_max_tokens=16) as loaded:
        assert _image_tokens(loaded, test_image_path) == 64


def test_a_slice_of_a_prompt_goes_before_another_with_its_media(vision_pair, test_image_path):
    """``MediaPrompt.prepend_slice``: an image of a continued exchange put back at its place (Ollama's ``context``
    with the image sent again: jan.services.local._context_pieces) -- the source's entries and whole chunks go first,
    the prompt's own chunks move after them; a range that cuts a chunk, or lies outside the source, is a ValueError."""
    model, mmproj = vision_pair
    with jan_api.Model(model, mmproj=mmproj, n_ctx=512, n_threads=1) as loaded:
        media = loaded.prepare_media([test_image_path])
        prompt = loaded.media_prompt(PROMPT, media, add_special=False, encode=False)
        alone = loaded.media_prompt(loaded.media_marker, media, add_special=False, encode=False)
        (start, n, *_), = alone.media
        before = prompt.n_tokens
        tokens = list(prompt.tokens)
        prompt.prepend_slice(alone, start, start + n)
        prompt.prepend(7)
        assert prompt.n_tokens == before + n + 1 and prompt.n_media_tokens == 2 * n
        assert list(prompt.tokens) == [7, *[-1] * n, *tokens]
        assert [m[0] for m in prompt.media] == [1, 1 + n + tokens.index(-1)]
        for begin, end in ((start + 1, start + n), (start, start + n - 1), (0, alone.n_tokens + 1)):
            with pytest.raises(ValueError):
                prompt.prepend_slice(alone, begin, end)
        loaded.encode_media(prompt)  # (the chunks it took are encoded with the prompt's own)
        assert all(m[5] for m in prompt.media)


@pytest.mark.parametrize("kwargs, param", [
    ({"image_min_tokens": 0}, "image_min_tokens"),
    ({"image_max_tokens": -1}, "image_max_tokens"),
    ({"image_max_tokens": 65537}, "image_max_tokens"),
    ({"image_max_tokens": "64"}, "image_max_tokens"),
    ({"image_min_tokens": True}, "image_min_tokens"),
    ({"image_max_tokens": 1.5}, "image_max_tokens"),
])
def test_a_bad_value_is_a_value_error_before_the_load(vision_pair, kwargs, param):
    model, mmproj = vision_pair
    with pytest.raises(ValueError, match=f"^{param}: "):
        jan_api.Model(model.parent / "no-such-file.gguf", mmproj=mmproj, **kwargs)  # judged before any file is read


def test_a_minimum_over_the_maximum_is_refused(vision_pair, qwen2vl_pair):
    model, mmproj = vision_pair
    with pytest.raises(BadRequestError) as info:
        jan_api.Model(model.parent / "no-such-file.gguf", mmproj=mmproj, image_min_tokens=100, image_max_tokens=50)
    assert info.value.param == "image_min_tokens" and info.value.code == "conflicting_options"
    assert "image_min_tokens (100) must not exceed image_max_tokens (50)" in str(info.value)
    # over the projector's own maximum (4096 for Qwen2-VL), which only libmtmd knows: said in tokens, not pixels
    with pytest.raises(ModelSettingError) as info:
        _load(qwen2vl_pair, image_min_tokens=5000)
    assert info.value.param == "image_min_tokens" and "projector's own maximum" in str(info.value)


# -- the server -----------------------------------------------------------------------------------------------------
def _photo_url(path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def _chat(server, photo: str, **extra) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/chat/completions", timeout=300, json={
        "model": MODEL_ID, "max_tokens": 1, "temperature": 0, **extra, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                         {"type": "image_url", "image_url": {"url": photo}}]}]})


@pytest.fixture(scope="module")
def server(tmp_path_factory, qwen2vl_pair):
    model, _mmproj = qwen2vl_pair  # its mmproj-<name> beside it: imported with it
    srv = start_server(tmp_path_factory.mktemp("image-tokens"), [model], n_ctx=512, n_parallel=1,
                       image_max_tokens=64)
    yield srv
    srv.stop()


def _patch(server, settings: dict) -> httpx.Response:
    return httpx.patch(f"{server.base_url}/v1/models/{MODEL_ID}", json={"settings": settings}, timeout=300)


def _status(server) -> dict:
    system = httpx.get(server.base_url + "/v1/system", timeout=60).json()
    return next(m for m in system["models"] if m["id"] == MODEL_ID)


def test_the_servers_flag_reaches_the_model_and_its_status(server, test_image_path):
    """``jan serve --image-max-tokens 64`` (ServerConfig.image_max_tokens): the photo fits a 512-token context."""
    response = _chat(server, _photo_url(test_image_path))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] < 64 + 40
    status = _status(server)
    assert status["image_max_tokens"] == 64 and status["image_min_tokens"] is None


def test_model_json_settings_are_checked_stored_and_loaded(server, test_image_path):
    for settings, param, code in [({"image_max_tokens": 0}, "settings.image_max_tokens", "invalid_value"),
                                  ({"image_min_tokens": "many"}, "settings.image_min_tokens", "invalid_value"),
                                  ({"image_min_tokens": 100, "image_max_tokens": 50}, "settings.image_min_tokens",
                                   "conflicting_options")]:
        response = _patch(server, settings)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and error["code"] == code, error
    try:
        response = _patch(server, {"image_min_tokens": 8, "image_max_tokens": 32})  # wins over the server's flag
        assert response.status_code == 200, response.text
        shown = httpx.get(f"{server.base_url}/v1/models/{MODEL_ID}", timeout=60).json()
        assert shown["settings"]["image_min_tokens"] == 8 and shown["settings"]["image_max_tokens"] == 32
        response = _chat(server, _photo_url(test_image_path))
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["prompt_tokens"] < 32 + 40
        status = _status(server)
        assert (status["image_min_tokens"], status["image_max_tokens"]) == (8, 32)
        # a minimum alone may be stored (another layer may give the maximum); over the server's --image-max-tokens
        # 64 it fails the load: a 400 naming the model.json's field
        response = _patch(server, {"image_min_tokens": 100, "image_max_tokens": None})
        assert response.status_code == 200, response.text
        response = _chat(server, _photo_url(test_image_path))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "settings.image_min_tokens" and "image_max_tokens (64)" in error["message"], error
    finally:
        _patch(server, {"image_min_tokens": None, "image_max_tokens": None})


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "ollama", "responses"])
def test_an_image_over_the_context_is_a_400_in_each_dialect_saying_what_to_set(server, test_image_path, dialect):
    """The photo at the projector's own size (over a thousand tokens) in a 512-token context: each dialect's
    context error (never a 500 or a stall), with the image's share and the setting that shrinks it."""
    photo = _photo_url(test_image_path)
    data = photo.partition(",")[2]
    question = "What is in this picture?"
    bodies = {
        "openai": ("/v1/chat/completions", {"model": MODEL_ID, "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": question},
                                         {"type": "image_url", "image_url": {"url": photo}}]}]}),
        "anthropic": ("/v1/messages", {"model": MODEL_ID, "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": question}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/jpeg", "data": data}}]}]}),
        "ollama": ("/api/chat", {"model": MODEL_ID, "stream": False, "options": {"num_predict": 1}, "messages": [
            {"role": "user", "content": question, "images": [data]}]}),
        "responses": ("/v1/responses", {"model": MODEL_ID, "max_output_tokens": 16, "input": [
            {"role": "user", "content": [{"type": "input_text", "text": question},
                                         {"type": "input_image", "image_url": photo}]}]}),
    }
    path, body = bodies[dialect]
    try:
        assert _patch(server, {"image_max_tokens": 4096}).status_code == 200  # the projector's own maximum
        response = httpx.post(server.base_url + path, json=body, timeout=300)
        assert response.status_code == 400, response.text
        answer = response.json()
        message = answer["error"] if dialect == "ollama" else answer["error"]["message"]
        assert "context" in message and "image_max_tokens" in message, answer
        if dialect == "openai":
            assert answer["error"]["code"] == "context_length_exceeded", answer
        if dialect == "anthropic":
            assert answer["type"] == "error" and message.startswith("prompt is too long: "), answer
        # the same photo under a smaller maximum fits
        assert _patch(server, {"image_max_tokens": 128}).status_code == 200
        response = httpx.post(server.base_url + path, json=body, timeout=300)
        assert response.status_code == 200, response.text
    finally:
        _patch(server, {"image_max_tokens": None})


# -- the command line -----------------------------------------------------------------------------------------------
def test_jan_serve_flags_parse_into_the_servers_config(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import jan.cli.serve as serve_cli

    seen = {}

    async def fake_run_server(config):
        seen["config"] = config

    monkeypatch.setattr(serve_cli, "run_server", fake_run_server)
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path), "--image-min-tokens", "256",
                                                  "--image-max-tokens", "1024"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.image_min_tokens, config.image_max_tokens) == (256, 1024)
    assert config.engine_defaults()["image_min_tokens"] == 256 and config.engine_defaults()["image_max_tokens"] == 1024
    for flags in (["--image-max-tokens", "0"], ["--image-min-tokens", "65537"], ["--image-max-tokens", "x"]):
        result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path), *flags])
        assert result.exit_code == 2 and flags[0] in result.output, result.output


def test_jan_serve_refuses_a_minimum_over_the_maximum_before_it_starts(tmp_path):
    result = jan("serve", "--image-min-tokens", "512", "--image-max-tokens", "256", env=cli_env(tmp_path / "data"))
    assert result.returncode == 2, result  # (flags that contradict each other: a usage error)
    assert "--image-min-tokens (512) must not exceed --image-max-tokens (256)" in result.stderr, result.stderr


def test_jan_run_takes_the_flags_for_a_model_it_loads(tmp_path, qwen2vl_pair, test_image_path):
    model, _mmproj = qwen2vl_pair  # mmproj-<name> beside the .gguf: picked up for a model given by path
    env = cli_env(tmp_path / "jan")
    args = [model, "What is in this picture?", "-n", "1", "--temperature", "0", "--threads", "1", "-v",
            "--image", test_image_path]
    small = ok(jan("run", *args, "--image-max-tokens", "32", env=env))
    larger = ok(jan("run", *args, "--image-max-tokens", "256", env=env))
    assert _prompt_tokens(small.stderr) < 32 + 40 < _prompt_tokens(larger.stderr)
    bad = jan("run", *args, "--image-min-tokens", "64", "--image-max-tokens", "32", env=env)
    assert bad.returncode == 2, bad  # (flags that contradict each other: a usage error)
    assert "--image-min-tokens (64) must not exceed --image-max-tokens (32)" in bad.stderr, bad.stderr


def _prompt_tokens(stderr: str) -> int:
    import re

    found = re.search(r"prompt: (\d+) tokens", stderr)
    assert found, stderr
    return int(found.group(1))
