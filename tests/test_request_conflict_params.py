"""A check of the request as a whole (two fields that conflict, one that needs another) names the field at fault
in ``param`` and in front of its message, as every check of one field does.

Found probing the server: ``top_logprobs`` without ``logprobs``, ``functions`` beside ``tools``, ``function_call``
beside ``tool_choice``, a ``json_schema`` response format without its schema and ``/tokenize`` with ``content``
and ``text`` that differ were 400s with ``"param": null`` — a client (or an SDK's error
display) could not tell which field to fix.
"""

from __future__ import annotations

import httpx
import pytest

from server_helpers import start_server

USER = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "stories260K", "max_tokens": 2, "messages": USER}
FN = {"name": "f", "parameters": {"type": "object", "properties": {}}}

CASES = [
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {**CHAT, "logprobs": False, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {**CHAT, "functions": [FN], "tools": [{"type": "function", "function": FN}]}, "functions"),
    ("/v1/chat/completions", {**CHAT, "function_call": "auto", "tool_choice": "auto",
                              "tools": [{"type": "function", "function": FN}]}, "function_call"),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    # (n_probs does not stand in for the logprobs: true that top_logprobs needs)
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 2, "n_probs": 2}, "top_logprobs"),
    ("/v1/tokenize", {"model": "stories260K", "content": "a", "text": "b"}, "text"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("hunt-params"), [stories_path], n_ctx=256, n_parallel=1)
    yield srv
    srv.__exit__(None, None, None)


@pytest.mark.parametrize("path, body, param", CASES, ids=[f"{p}:{param}" for p, _, param in CASES])
def test_a_check_of_the_whole_request_names_its_field(server, path, body, param):
    response = httpx.post(server.base_url + path, json=body, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(param + ": "), error
    assert error["type"] == "invalid_request_error", error


@pytest.mark.parametrize("where", ["new thread", "thread"])
def test_a_runs_malformed_assistant_id_names_the_field(server, where):
    """The run's ``assistant_id`` that is no id (``"a b"``) was refused by the store with ``"param": null``."""
    if where == "new thread":
        path, body = "/v1/threads/runs", {"assistant_id": "a b", "model": "stories260K",
                                          "thread": {"messages": USER}}
    else:
        thread = httpx.post(server.base_url + "/v1/threads", json={"messages": USER}, timeout=120).json()
        path, body = f"/v1/threads/{thread['id']}/runs", {"assistant_id": "a b", "model": "stories260K"}
    response = httpx.post(server.base_url + path, json=body, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "assistant_id" and error["code"] == "invalid_id", error
    assert error["message"].startswith("assistant_id: "), error
