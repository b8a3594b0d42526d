"""Every answer carries a request id (OpenAI's ``x-request-id``, Anthropic's ``request-id``) that the SDKs read and
the server's log lines carry: successes, streams, errors of each dialect, unknown routes, 413s, parser refusals."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from jan.server.request_id import RequestIdLogFilter, client_request_id
from server_helpers import raw_request, start_server

OURS = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("ids"), [stories_path], max_body_bytes=4096)
    yield srv
    srv.stop()


def call(server, path: str, body: dict | bytes | None = None, headers: dict | None = None,
         method: str | None = None) -> tuple[int, dict, bytes]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def the_id(headers: dict) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-request-id"] == lower["request-id"]
    return lower["x-request-id"]


@pytest.mark.parametrize("path, body, status", [
    ("/v1/models", None, 200),
    ("/health", None, 200),
    ("/v1/nowhere", None, 404),
    ("/v1/messages", {"model": "stories260K"}, 400),  # Anthropic's error shape
    ("/api/chat", {"model": "no-such"}, 404),  # Ollama's
    ("/v1/chat/completions", {"model": "stories260K", "messages": [{"role": "user", "content": "x" * 8000}]}, 413),
])
def test_every_answer_has_a_fresh_id(server, path, body, status):
    got, headers, _ = call(server, path, body)
    assert got == status
    first = the_id(headers)
    assert OURS.fullmatch(first)
    assert the_id(call(server, path, body)[1]) != first  # one per request


def test_a_stream_has_it(server):
    status, headers, body = call(server, "/v1/chat/completions", {
        "model": "stories260K", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True})
    assert status == 200 and b"data: [DONE]" in body
    assert OURS.fullmatch(the_id(headers))


def test_a_parser_refusal_has_it(server):
    answer = raw_request(server.base_url, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n")
    head = answer.split(b"\r\n\r\n")[0].decode().lower()
    assert head.split("\r\n")[0].split()[1] == "400"
    assert re.search(r"\r\nx-request-id: req_[0-9a-f]{32}\r\n", head)


@pytest.mark.parametrize("sent, kept", [
    ("trace-1234", True), ("0f8fad5b-d9cb-469f-a165-70867728950e", True), ("a" * 128, True),
    ("a" * 129, False), ("two words", False), ("x\u00e9", False), ("", False), ("-leading", False),
])
def test_a_client_id_is_kept_when_plain(server, sent, kept):
    assert (client_request_id(sent) == sent) is kept
    if "\u00e9" in sent:
        return  # (not sendable in a header by urllib)
    headers = call(server, "/v1/models", headers={"X-Request-Id": sent})[1]
    assert (the_id(headers) == sent) is kept
    if not kept:
        assert OURS.fullmatch(the_id(headers))


def test_the_sdks_read_it(server):
    oa = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    done = oa.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert OURS.fullmatch(done._request_id)
    with pytest.raises(openai.NotFoundError) as caught:
        oa.models.retrieve("no-such-model")
    assert OURS.fullmatch(caught.value.request_id)
    an = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    message = an.messages.create(model="stories260K", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert OURS.fullmatch(message._request_id)
    with pytest.raises(anthropic.NotFoundError) as caught:
        an.messages.create(model="no-such-model", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert OURS.fullmatch(caught.value.request_id)


def test_the_access_log_line_carries_it(server, caplog):
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        headers = call(server, "/v1/nowhere", headers={"X-Request-Id": "find-me-42"})[1]
        assert the_id(headers) == "find-me-42"
        # the access line is written once the answer is sent: wait on it, bounded
        for _ in range(200):
            lines = [r for r in caplog.records if r.name == "aiohttp.access" and "/v1/nowhere" in r.getMessage()]
            if lines:
                break
            time.sleep(0.05)
    assert lines and lines[-1].request_id == "find-me-42" and " 404 " in lines[-1].getMessage()


def _access_lines(server, caplog, level: int, path: str) -> list[logging.LogRecord]:
    """The access lines for ``path`` written at ``level``, once a later request's line shows that its line (if any)
    was written: access lines are written in order, after each answer is sent."""
    with caplog.at_level(level, logger="aiohttp.access"):
        call(server, path)
        call(server, "/v1/nowhere-after")
        for _ in range(200):  # bounded wait for the later request's line
            if any(r.name == "aiohttp.access" and "/v1/nowhere-after" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.05)
        else:
            pytest.fail("no access line for the later request")
    return [r for r in caplog.records if r.name == "aiohttp.access" and f"{path} " in r.getMessage()]


@pytest.mark.parametrize("path, body, said", [
    ("/v1/chat/completions", {"model": "stories260K", "messages": []},
     "(invalid_value: messages: List should have at least 1 item after validation, not 0)"),
    ("/v1/messages", {"model": "nope", "max_tokens": 3, "messages": [{"role": "user", "content": "x"}]},
     "(model_not_found: model 'nope' not found"),  # (another dialect's shape, the same error)
    ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "(model 'nope' not found"),
    ("/v1/nowhere-%s", None, "(not_found: Unknown route"),  # (a % in the path or the message is text)
])
def test_an_error_answers_access_line_says_why(server, caplog, path, body, said):
    """A bare "400 442" told a server's owner nothing of why a client's request failed: the line ends with the
    error's code and message, as the client got them."""
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        status = call(server, path, body)[0]
        assert status >= 400
        for _ in range(200):  # the access line is written once the answer is sent: a bounded wait on it
            lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access" and path in r.getMessage()]
            if lines:
                break
            time.sleep(0.05)
    assert lines and f" {status} " in lines[-1] and said in lines[-1], lines
    # an answer that is no error says nothing more
    caplog.clear()
    assert all(not m.endswith(")") for m in (r.getMessage() for r in _access_lines(server, caplog, logging.DEBUG,
                                                                                     "/health")))


def test_health_checks_get_an_access_line_only_at_debug(server, caplog):
    """A page left open checks /health every 5 s: at INFO those lines would drown the real requests' lines."""
    assert _access_lines(server, caplog, logging.INFO, "/health") == []
    caplog.clear()
    assert len(_access_lines(server, caplog, logging.DEBUG, "/health")) == 1


def test_an_internal_error_names_the_id_its_log_line_carries(server, caplog, monkeypatch):
    from jan.server.keys import SERVICES

    async def broken():
        raise RuntimeError("boom")

    # a bug of jan's own (an extension's is an extension_error naming it: tests/test_extension_failures.py)
    monkeypatch.setattr(server.app[SERVICES].models, "leftovers", broken)
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.ERROR, logger="jan.server"):
        status, headers, body = call(server, "/v1/models", headers={"X-Request-Id": "err-7"})
    assert status == 500 and the_id(headers) == "err-7"
    assert "request id err-7" in json.loads(body)["error"]["message"]
    [line] = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert line.request_id == "err-7" and "boom" in caplog.text


# Anthropic's API puts the request's id in every error body too ({"type": "error", "error": {...}, "request_id"}),
# which its SDKs' ErrorResponse reads and Claude Code prints; OpenAI's and Ollama's bodies carry none (the header
# alone). The id in the body is the one the answer's headers carry, whoever raised the error.
AN = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize("path, body, headers, method, status", [
    ("/v1/messages", {"model": "stories260K"}, {}, None, 400),  # the route's validation
    ("/v1/messages", {"model": "no-such", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}, {},
     None, 404),  # the service's refusal
    ("/v1/messages", None, {}, "GET", 405),  # the router's
    ("/v1/messages/nowhere", None, {}, None, 404),
    ("/v1/messages", b"{" + b" " * 8000 + b"}", {}, None, 413),  # the size limit, before any handler
    ("/v1/models/no-such", None, AN, None, 404),  # Anthropic's SDK on a path OpenAI's shares
    ("/v1/skills", None, AN, None, 404),  # ... and on a route jan does not serve
])
def test_every_anthropic_error_body_carries_the_answers_id(server, path, body, headers, method, status):
    got, answer_headers, raw = call(server, path, body, headers, method)
    assert got == status, raw
    error = json.loads(raw)
    assert error["type"] == "error" and error["request_id"] == the_id(answer_headers), error
    got, answer_headers, raw = call(server, path, body, {**headers, "X-Request-Id": "trace-9"}, method)
    assert json.loads(raw)["request_id"] == the_id(answer_headers) == "trace-9"


def test_an_anthropic_parser_refusal_carries_it_in_its_body(server):
    answer = raw_request(server.base_url, b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                                          b"zz\r\n{}\r\n0\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400", answer
    sent = re.search(rb"\r\nx-request-id: (\S+)", head.lower()).group(1).decode()
    assert json.loads(rest[rest.index(b"{"):rest.rindex(b"}") + 1])["request_id"] == sent


def test_the_anthropic_sdk_reads_the_bodys_id(server):
    an = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    with pytest.raises(anthropic.NotFoundError) as caught:
        an.messages.create(model="no-such-model", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["request_id"] == caught.value.request_id


def test_a_streams_error_event_carries_it():
    # (an error event comes only mid-stream, from a stop or an engine's failure: the encoder's own event here)
    from jan.server.dialects.anthropic import MessageStream
    from jan.server.request_id import current_request_id

    token = current_request_id.set("stream-5")
    try:
        encoder = MessageStream("msg_1", "stories260K", [])
        encoder._finish_reason = "cancelled"
        [*_, (name, event)] = encoder.finish()
    finally:
        current_request_id.reset(token)
    assert name == "error" and event["type"] == "error" and event["request_id"] == "stream-5", event


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "no-such", "messages": [{"role": "user", "content": "hi"}]}),
    ("/api/chat", {"model": "no-such", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/nowhere", None),
])
def test_other_dialects_bodies_carry_no_id(server, path, body):
    # OpenAI's and Ollama's APIs answer the id in a header only (x-request-id; Ollama none): their bodies are as theirs
    got, headers, raw = call(server, path, body)
    assert got == 404 and OURS.fullmatch(the_id(headers))
    assert "request_id" not in json.loads(raw) and "request_id" not in str(json.loads(raw).get("error"))
