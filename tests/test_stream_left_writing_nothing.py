"""A streamed answer whose client leaves while its deltas write nothing stops then, in every dialect.

A stream noticed a client that left only when it next wrote. Deltas a dialect has nothing to send for (thinking with
Anthropic's ``display: "omitted"``, an encoder with nothing new to say) wrote nothing, so a generation whose client
had gone went on for nobody, up to its token limit, its slot held. Each streaming loop now asks after every delta.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from endless_engine import STREAMED, EndlessEngine, endless_server
from extension_helpers import call
from server_helpers import http_post



@pytest.fixture(scope="module")
def engine():
    return EndlessEngine()


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine):
    with endless_server(tmp_path_factory.mktemp("quiet") / "data", engine, "quiet") as srv:
        yield srv


def _leave_after_first_words(server, path: str, body: dict) -> bytes:
    """Start the stream, read until its first words arrived, close the connection; what was read."""
    host, port = server.base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:  # (a guard against a hang, no measure)
        sock.sendall(http_post(path, {"model": "quiet", **body}))
        seen = b""
        while b"ok " not in seen:
            more = sock.recv(4096)
            assert more, seen
            seen += more
    return seen


@pytest.mark.parametrize("path", list(STREAMED))
def test_a_stream_that_writes_nothing_stops_when_its_client_leaves(server, engine, path):
    engine.clear()
    seen = _leave_after_first_words(server, path, STREAMED[path])
    assert b" 200 " in seen.split(b"\r\n", 1)[0]
    assert engine.closed.wait(60), "the generation went on after its client left"


def test_a_stored_response_whose_client_left_is_cancelled(server, engine):
    engine.clear()
    seen = _leave_after_first_words(server, "/v1/responses", {"input": "hi", "stream": True, "store": True})
    assert engine.closed.wait(60)
    response_id = re.search(rb'"id":"(resp_[^"]+)"', seen).group(1).decode()
    deadline = time.monotonic() + 60  # (its end is saved a moment after the generation stopped: a bound, no measure)
    while True:
        status, answer = call(server, "GET", f"/v1/responses/{response_id}")
        if status != 200 or answer["status"] != "in_progress" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert status == 200 and answer["status"] == "cancelled", json.dumps(answer)[:300]
