"""An image a tool returned (a screenshot tool's) reaches the model in every dialect that can send one: OpenAI's
``tool`` message, Anthropic's ``tool_result``, the Responses API's ``function_call_output`` and Ollama's ``tool``
message (Ollama renders every message's ``images``, whatever its role). Never silently dropped: the prompt grows by
the image's 64 tokens on the tiny vision pair, and a damaged one is the dialect's 400 naming the field."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import pytest

from server_helpers import start_server

IMAGE_TOKENS = 64  # the tiny vision pair's projector


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("tool-images"), [vision_pair[0]], n_ctx=1024)
    yield srv
    srv.stop()


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 18), (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


PNG = base64.b64encode(_png()).decode()
DAMAGED = base64.b64encode(_png()[:60]).decode()  # PNG magic bytes, cut off


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(server.base_url + path, json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _openai(image: str | None) -> tuple[str, dict]:
    content = [{"type": "text", "text": "the screen"}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}})
    return "/v1/chat/completions", {"model": "vision-chat", "max_tokens": 1, "messages": [
        {"role": "user", "content": "Look at the screen."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": content}]}


def _anthropic(image: str | None) -> tuple[str, dict]:
    content = [{"type": "text", "text": "the screen"}]
    if image is not None:
        content.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}})
    return "/v1/messages", {"model": "vision-chat", "max_tokens": 1,
                            "tools": [{"name": "screenshot", "input_schema": {"type": "object"}}], "messages": [
        {"role": "user", "content": "Look at the screen."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]}]}


def _responses(image: str | None) -> tuple[str, dict]:
    output = [{"type": "input_text", "text": "the screen"}]
    if image is not None:
        output.append({"type": "input_image", "image_url": "data:image/png;base64," + image})
    return "/v1/responses", {"model": "vision-chat", "max_output_tokens": 1, "store": False, "input": [
        {"role": "user", "content": "Look at the screen."},
        {"type": "function_call", "call_id": "call_1", "name": "screenshot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": output}]}


def _ollama(image: str | None) -> tuple[str, dict]:
    tool = {"role": "tool", "tool_name": "screenshot", "content": "the screen"}
    if image is not None:
        tool["images"] = [image]
    return "/api/chat", {"model": "vision-chat", "stream": False, "options": {"num_predict": 1}, "messages": [
        {"role": "user", "content": "Look at the screen."},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "screenshot", "arguments": {}}}]},
        tool]}


def _prompt_tokens(reply: dict) -> int:
    if "prompt_eval_count" in reply:
        return reply["prompt_eval_count"]
    usage = reply["usage"]
    if "input_tokens" in usage:  # Anthropic's counts a cached prefix apart; the Responses API's does not
        return usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
    return usage["prompt_tokens"]


DIALECTS = {"openai": _openai, "anthropic": _anthropic, "responses": _responses, "ollama": _ollama}
DAMAGED_FIELD = {"openai": "messages[2].content[1]", "anthropic": "messages.2.content.0.content.1",
                 "responses": "input[2].output[1]", "ollama": "messages[2].images[0]"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_tool_results_image_reaches_the_model(server, dialect):
    status, without = _post(server, *DIALECTS[dialect](None))
    assert status == 200, without
    status, with_image = _post(server, *DIALECTS[dialect](PNG))
    assert status == 200, with_image
    assert _prompt_tokens(with_image) >= _prompt_tokens(without) + IMAGE_TOKENS


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_damaged_image_in_a_tool_result_is_a_400_naming_it(server, dialect):
    status, body = _post(server, *DIALECTS[dialect](DAMAGED))
    assert status == 400, body
    error = body["error"]
    message = error if isinstance(error, str) else error["message"]
    assert message.startswith(DAMAGED_FIELD[dialect] + ": cannot decode the image"), message
