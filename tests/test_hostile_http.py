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


def test_a_long_llama_logit_bias_list_is_walked_off_the_event_loop(server, monkeypatch):
    """llama-server's ``logit_bias`` list on ``/completion`` is walked for tokens given as text (and rebuilt with
    their ids) before the request is typed: a 10 MB list of a million pairs was walked on the event loop, over a
    second during which no other request was answered. A long body's walk runs on a worker thread, as its parsing
    does (:func:`jan.server.body_size.body_step`); a short one stays on the loop."""
    import threading

    from jan.server.body_size import PARSE_OFF_LOOP_BYTES
    from jan.server.dialects import llamacpp as native

    where: dict[str, list[str]] = {"bias_texts": [], "biases_with_ids": []}
    for name in where:
        def recorded(*args, _name=name, _real=getattr(native, name)):
            where[_name].append(threading.current_thread().name)
            return _real(*args)
        monkeypatch.setattr(native, name, recorded)
    short = [[1, 0.5], ["Once", -1.0]]
    long = [[i % 200, 0.5] for i in range(PARSE_OFF_LOOP_BYTES // 8)] + [["Once", -1.0]]
    for bias in (short, long):
        response = httpx.post(server.base_url + "/completion", json={"prompt": "Once", "n_predict": 1,
                                                                     "logit_bias": bias}, timeout=120)
        assert response.status_code == 200, response.text
    loop = "jan-test-server"  # (the server's event loop thread: jan.testing.server.ServerThread)
    assert where["bias_texts"][0] == loop and where["biases_with_ids"][0] == loop, where
    assert loop not in where["bias_texts"][1:] + where["biases_with_ids"][1:], where
    assert len(where["bias_texts"]) == len(where["biases_with_ids"]) == 2, where
