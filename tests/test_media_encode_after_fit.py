"""Images are run through the projector's encoder only once their prompt is known to fit the context: a request that
does not fit is refused before any encoding (it paid seconds of CPU per image on a real projector, for nothing), and
a conversation shortened to fit (Ollama's truncation, a run's ``truncation_strategy``) encodes only the turns it
keeps. Counted by the server's ``jan_media_encodes_total``, in every dialect; no timing is measured."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.request

import pytest

from api_helpers import post_json
from run_helpers import wait_for_run_sync
from server_helpers import start_server

IMAGE_TOKENS = 64  # the tiny vision pair's projector (tests/conftest.py: vision_pair)
N_CTX = 256  # three pictures fit, five do not
N_PICTURES = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("encode-after-fit"), [vision_pair[0]], n_ctx=N_CTX, n_parallel=1)
    yield srv
    srv.stop()


def _png(i: int) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16 + i, 16), (40 * i, 90, 200)).save(out, "PNG")  # a different picture each: no cache hits
    return base64.b64encode(out.getvalue()).decode()


_seed = iter(range(1000, 100000, 10))


def _pictures() -> list[str]:
    """Pictures no earlier test sent (the encoder's cache would otherwise answer them)."""
    start = next(_seed)
    return [_png(start + i) for i in range(N_PICTURES)]


def _call(server, path: str, body: dict) -> tuple[int, dict]:
    return post_json(server.base_url, path, body)


def _get(server, path: str) -> dict:
    with urllib.request.urlopen(server.base_url + path, timeout=300) as response:
        return json.loads(response.read())


def _encodes(server) -> float:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=60) as response:
        text = response.read().decode()
    found = re.findall(r'^jan_media_encodes_total\{engine="local",model="vision-chat"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def _load(server) -> None:
    """The model loaded (so its counter exists) with one small picture of its own."""
    status, body = _call(server, "/v1/chat/completions", {"model": "vision-chat", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png(0)}}]}]})
    assert status == 200, body


def _openai_content(pictures: list[str]) -> list[dict]:
    return [{"type": "text", "text": "Compare these."}] + [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + p}} for p in pictures]


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "ollama", "responses"])
def test_a_prompt_over_the_context_is_refused_before_its_images_are_encoded(server, dialect):
    _load(server)
    pictures = _pictures()
    before = _encodes(server)
    if dialect == "openai":
        status, body = _call(server, "/v1/chat/completions", {
            "model": "vision-chat", "max_tokens": 1, "messages": [{"role": "user", "content": _openai_content(pictures)}]})
    elif dialect == "anthropic":
        status, body = _call(server, "/v1/messages", {"model": "vision-chat", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Compare these."}] + [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": p}}
                for p in pictures]}]})
    elif dialect == "ollama":  # one message: truncation cannot drop the last turn
        status, body = _call(server, "/api/chat", {"model": "vision-chat", "stream": False,
                                                   "options": {"num_predict": 1}, "messages": [
            {"role": "user", "content": "Compare these.", "images": pictures}]})
    else:
        status, body = _call(server, "/v1/responses", {"model": "vision-chat", "max_output_tokens": 16, "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Compare these."}] + [
                {"type": "input_image", "image_url": "data:image/png;base64," + p} for p in pictures]}]})
    assert status == 400, body
    assert "context" in json.dumps(body), body
    assert _encodes(server) == before  # refused before any of its five pictures was encoded


def test_a_conversation_shortened_to_fit_encodes_only_the_turns_it_keeps(server):
    _load(server)
    pictures = _pictures()
    before = _encodes(server)
    status, body = _call(server, "/api/chat", {"model": "vision-chat", "stream": False, "options": {"num_predict": 1},
                                               "messages": [{"role": "user", "content": f"Picture {i}.", "images": [p]}
                                                            for i, p in enumerate(pictures)]})
    assert status == 200, body
    assert body["prompt_eval_count"] < N_CTX  # the oldest pictures' turns were dropped to fit
    encoded = _encodes(server) - before
    assert 1 <= encoded < N_PICTURES, encoded  # (every one of the five, before)
    assert encoded * IMAGE_TOKENS <= body["prompt_eval_count"]


def test_a_run_shortened_to_fit_encodes_only_the_turns_it_keeps(server):
    _load(server)
    pictures = _pictures()
    turns: list[dict] = []
    for i, p in enumerate(pictures):
        turns.append({"role": "user", "content": [{"type": "text", "text": f"Picture {i}."},
                                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64," + p}}]})
        turns.append({"role": "assistant", "content": "I see it."})
    status, thread = _call(server, "/v1/threads", {"messages": turns[:-1]})
    assert status == 200, thread
    before = _encodes(server)
    status, run = _call(server, f"/v1/threads/{thread['id']}/runs", {"model": "vision-chat", "max_completion_tokens": 1})
    assert status == 200, run
    run = wait_for_run_sync(lambda path: _get(server, path), run)
    assert run["status"] in ("completed", "incomplete"), run
    encoded = _encodes(server) - before
    assert 1 <= encoded < N_PICTURES, encoded
