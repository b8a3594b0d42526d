"""A client that leaves while its request's images are encoded: the request it was to submit frees its slot, the
other requests go on, and nothing is logged as a failure.

The images are encoded on a worker thread, which cannot be stopped midway and submits the request's generation at
its end; the await of it was cancelled as the client left, so that generation ran for nobody (to its token limit,
in a slot others waited for) unless the garbage collector happened to drop it first. What the worker still
submits is cancelled as it returns; and the worker stops before the encoder runs for a client that left. The encoding is held deterministically: it waits on a gate the test opens once
the server has seen the client leave.
"""

from __future__ import annotations

import base64
import io
import logging
import socket
import threading

import pytest
from api_helpers import until
from extension_helpers import call
from server_helpers import http_post, start_server

from jan.core import InferenceStopped
from jan.server.keys import BUS, MANAGER
from jan.services import chat

WAIT_S = 60  # (bounds against a hang, never measures)
MODEL = "vision-chat"


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("left-encoding"), [vision_pair[0]], n_parallel=1)
    yield srv
    srv.stop()


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (28, 20), (240, 180, 20)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_leaving_while_its_images_are_encoded_frees_the_slot(server, monkeypatch, caplog, stream):
    encoding, gate, left, finished = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    encode, submitted = chat._encode_media, []

    def held_encode(local, tokens):
        encoding.set()
        try:
            assert gate.wait(WAIT_S)
            return encode(local, tokens)
        finally:
            finished.set()

    submit = chat._submit

    def noted_submit(*args, **kwargs):
        requests = submit(*args, **kwargs)
        submitted.append(len(requests))  # (a count: a reference kept would keep them from being dropped)
        return requests

    monkeypatch.setattr(chat, "_encode_media", held_encode)
    monkeypatch.setattr(chat, "_submit", noted_submit)
    unsubscribe = server.app[BUS].subscribe(
        InferenceStopped, lambda event: left.set() if event.reason == "client disconnected" else None)
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    body = {"model": MODEL, "max_tokens": 400, "stream": stream,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}
    host, port = server.base_url.split("//")[1].split(":")
    caplog.set_level(logging.WARNING)
    try:
        with socket.create_connection((host, int(port)), timeout=WAIT_S) as sock:
            sock.sendall(http_post("/v1/chat/completions", body))
            assert encoding.wait(WAIT_S)
        assert left.wait(WAIT_S)  # the server saw the client leave while the images were still encoded
    finally:
        gate.set()
        unsubscribe()
    assert finished.wait(WAIT_S), "the worker's encoding did not end"
    # the worker stops before the encoder runs, so nothing is submitted for nobody (jan.engine.media.MEDIA_CANCEL;
    # it used to encode and submit, and what it submitted was cancelled as it returned)
    assert submitted == []
    model = server.app[MANAGER].get_inference("llama.cpp").engine.get(MODEL)
    until(lambda: not model.busy, "the slot of the request whose client left is free", WAIT_S)
    monkeypatch.undo()
    status, answer = call(server, "POST", "/v1/chat/completions",  # the one slot serves the next request
                          {"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
