"""The prompt cache never takes one image's KV for another's: two requests with the same text and different images,
one after the other on the same slot, share the text's prefix but not the image -- each answer is the one a fresh
server gives for its own image (greedy, one slot: the same computation, so the same tokens). The image is matched
by its content (a hash of its pixels), whether it comes before the text or after it."""

from __future__ import annotations

import base64
import io
import json
import urllib.request

import pytest

from server_helpers import start_server

TEXT = "What is in this picture?"


def _png(color: tuple[int, int, int]) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


RED, BLUE = _png((220, 30, 30)), _png((30, 30, 220))


def _answer(server, image: str, image_first: bool) -> str:
    parts = [{"type": "text", "text": TEXT}, {"type": "image_url", "image_url": {"url": image}}]
    body = {"model": "vision-chat", "max_tokens": 8, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": parts[::-1] if image_first else parts}]}
    request = urllib.request.Request(server.base_url + "/v1/chat/completions", json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


@pytest.mark.parametrize("image_first", [False, True])
def test_same_text_other_image_is_not_served_from_the_cache(tmp_path, vision_pair, image_first):
    fresh = {}
    for name, image in (("red", RED), ("blue", BLUE)):  # each the first request of a server of its own
        srv = start_server(tmp_path / name, [vision_pair[0]], n_parallel=1)
        try:
            fresh[name] = _answer(srv, image, image_first)
        finally:
            srv.stop()
    assert fresh["red"] != fresh["blue"]  # the images tell apart (else this test could not see a mix-up)

    srv = start_server(tmp_path / "both", [vision_pair[0]], n_parallel=1)
    try:
        for name, image in (("red", RED), ("blue", BLUE), ("red", RED), ("blue", BLUE)):
            assert _answer(srv, image, image_first) == fresh[name], name
    finally:
        srv.stop()
