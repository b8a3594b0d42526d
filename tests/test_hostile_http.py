"""Hostile or unusual HTTP against every kind of route (hunt 18): what the schema fuzz (``test_server_fuzz.py``) does
not send. Each test is one kind of fault, over every route it can reach."""

from __future__ import annotations

import json

import httpx
import pytest
from server_helpers import start_server

ONCE = [{"role": "user", "content": "Once"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("hostile-http"), [stories_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def streamed_gets(server):
    """The GET routes that answer with a stream, each with something to stream: a finished run's events and a
    background response's replayed events."""
    base = server.base_url
    with httpx.Client(base_url=base, timeout=120) as client:
        assistant = client.post("/v1/assistants", json={"model": "stories260K"}).json()["id"]
        thread = client.post("/v1/threads", json={"messages": ONCE}).json()["id"]
        run = client.post(f"/v1/threads/{thread}/runs", json={"assistant_id": assistant, "max_completion_tokens": 2,
                                                               "stream": True})
        assert run.status_code == 200, run.text
        run_id = _events(run.text)[0]["id"]
        response = client.post("/v1/responses", json={"model": "stories260K", "input": "Once", "max_output_tokens": 2,
                                                      "background": True, "stream": True})
        assert response.status_code == 200, response.text
        response_id = _events(response.text)[0]["response"]["id"]
    return [f"/v1/threads/{thread}/runs/{run_id}/events", f"/v1/responses/{response_id}?stream=true"]


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_a_head_of_a_streamed_get_is_its_headers_alone_and_the_connection_goes_on(server, streamed_gets):
    """aiohttp answers HEAD with the GET handler and drops a plain answer's body, but a streamed one's handler wrote
    on: its events followed headers that frame no body, and the client read them as its next answer's status line
    (httpx: "illegal status line: id: 0")."""
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        for path in streamed_gets:
            assert client.get(path).status_code == 200, path  # (the stream is there to be sent)
            head = client.head(path)
            assert head.status_code == 200, path
            assert head.headers["content-type"].startswith("text/event-stream"), path
            assert head.content == b""
            after = client.get("/health")  # the same connection
            assert after.status_code == 200 and after.json()["status"] == "ok", (path, after.text)
