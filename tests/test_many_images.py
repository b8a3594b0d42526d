"""A conversation with many pictures goes on: every turn sends the conversation's images again, so a cap of 8 per
request (what jan had) made a chat, a thread or an Ollama client's history with a ninth picture impossible to answer
again, in every dialect. Requests may hold up to 100 (Anthropic's cap); their memory is bounded by the pixels of all
their images together (jan.engine.media.MediaLimits.max_total_pixels)."""

from __future__ import annotations

import base64
import io
import json
import urllib.request

import pytest

from run_helpers import wait_for_run_sync
from server_helpers import start_server

N_PICTURES = 12
IMAGE_TOKENS = 64  # the tiny vision pair's projector


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("many-images"), [vision_pair[0]], n_ctx=2048, n_parallel=1)
    yield srv
    srv.stop()


def _png(i: int) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16 + i, 16), (20 * i, 90, 200)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def _post(server, path: str, body: dict | None = None, method: str = "POST") -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _openai_turns() -> list[dict]:
    turns: list[dict] = []
    for i in range(N_PICTURES):
        turns.append({"role": "user", "content": [
            {"type": "text", "text": f"Picture {i}."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png(i)}}]})
        if i < N_PICTURES - 1:
            turns.append({"role": "assistant", "content": "I see it."})
    return turns


def test_chat_completions(server):
    reply = _post(server, "/v1/chat/completions", {"model": "vision-chat", "max_tokens": 1, "messages": _openai_turns()})
    assert reply["usage"]["prompt_tokens"] > N_PICTURES * IMAGE_TOKENS


def test_ollama_history(server):
    reply = _post(server, "/api/chat", {"model": "vision-chat", "stream": False, "options": {"num_predict": 1},
                                        "messages": [{"role": "user", "content": f"Picture {i}.", "images": [_png(i)]}
                                                     for i in range(N_PICTURES)]})
    assert reply["prompt_eval_count"] > N_PICTURES * IMAGE_TOKENS


def test_a_thread_with_many_pictures_still_runs(server):
    thread = _post(server, "/v1/threads", {"messages": _openai_turns()})
    run = wait_for_run_sync(lambda path: _post(server, path, method="GET"),
                            _post(server, f"/v1/threads/{thread['id']}/runs",
                                  {"model": "vision-chat", "max_completion_tokens": 1}))
    assert run["status"] in ("completed", "incomplete"), run
    assert run["usage"]["prompt_tokens"] > N_PICTURES * IMAGE_TOKENS
