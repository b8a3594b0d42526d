"""API key, CORS, Host allowlist."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread

KEY = "sk-test-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("sec") / "data", models=[str(stories_path)], n_ctx=256,
                       n_parallel=1, n_threads=1, api_key=KEY,
                       # (the second as a user types it, with a trailing slash: matched as the browser's Origin)
                       cors_origins=["http://app.example", "HTTP://Other.Example:8080/"],
                       allowed_hosts=["jan.internal"])
    with ServerThread(cfg) as srv:
        yield srv


def request(server, method, path, headers=None, body=None):
    req = urllib.request.Request(server.base_url + path, method=method, headers=headers or {},
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_missing_and_wrong_keys_are_401(server):
    status, headers, body = request(server, "GET", "/v1/models")
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert headers.get("WWW-Authenticate") == "Bearer"
    status, _, _ = request(server, "GET", "/v1/models", {"Authorization": "Bearer wrong"})
    assert status == 401
    status, _, _ = request(server, "GET", "/v1/models", {"Authorization": f"Basic {KEY}"})
    assert status == 401


def test_right_key_works_with_the_openai_client(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)
    assert client.completions.create(model="stories260K", prompt="Once", max_tokens=3).choices[0].text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url + "/v1", api_key="nope", max_retries=0).models.list()


def test_health_stays_open(server):
    status, _, body = request(server, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_cors_preflight(server):
    status, headers, _ = request(server, "OPTIONS", "/v1/chat/completions", {
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()
    status, headers, _ = request(server, "OPTIONS", "/v1/chat/completions", {
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_cors_headers_on_responses_even_errors(server):
    _, headers, _ = request(server, "GET", "/v1/models", {"Origin": "http://app.example",
                                                           "Authorization": f"Bearer {KEY}"})
    assert headers["Access-Control-Allow-Origin"] == "http://app.example"
    status, headers, _ = request(server, "GET", "/v1/models", {"Origin": "http://app.example"})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "http://app.example"
    _, headers, _ = request(server, "GET", "/v1/models", {"Origin": "http://evil.example",
                                                           "Authorization": f"Bearer {KEY}"})
    assert "Access-Control-Allow-Origin" not in headers


@pytest.mark.parametrize("host,allowed", [("localhost", True), ("127.0.0.1:1337", True), ("[::1]:80", True),
                                          ("jan.internal", True), ("evil.example", False),
                                          ("127.0.0.1.evil.example", False), ("localhost.evil.example", False)])
def test_host_allowlist_blocks_dns_rebinding(server, host, allowed):
    status, _, body = request(server, "GET", "/health", {"Host": host})
    if allowed:
        assert status == 200
    else:
        assert status == 403 and json.loads(body)["error"]["code"] == "host_not_allowed"


def test_binding_elsewhere_disables_the_host_check(tmp_path, stories_path):
    cfg = ServerConfig(host="0.0.0.0", data_folder=tmp_path / "data", n_threads=1)
    assert not cfg.bound_to_loopback
    assert ServerConfig().bound_to_loopback


def test_an_origin_given_with_a_slash_or_in_capitals_is_matched_as_a_browser_sends_it(server):
    """An allowed origin is matched exactly against the browser's ``Origin`` (``scheme://host[:port]``, lower case, no
    slash): ``http://localhost:3000/`` as configured never matched, and the page's calls failed with nothing said."""
    status, headers, _ = request(server, "OPTIONS", "/v1/chat/completions", {
        "Origin": "http://other.example:8080", "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "http://other.example:8080"


@pytest.mark.parametrize("given, read", [("*", "*"), ("null", "null"), ("http://localhost:3000/", "http://localhost:3000"),
                                         ("HTTPS://App.Example", "https://app.example"), ("http://[::1]:8080", "http://[::1]:8080"),
                                         ("chrome-extension://abcdef", "chrome-extension://abcdef")])
def test_cors_origin_reads_an_origin_as_the_browser_spells_it(given, read):
    from jan.server.security import cors_origin

    assert cors_origin(given) == read


@pytest.mark.parametrize("given", ["localhost:3000", "app.example", "http://app.example/path", "http://x.com?q=1",
                                   "http://user@x.com", "http://x.com:99999", ""])
def test_a_value_that_is_no_origin_is_refused(given):
    from jan.server.security import cors_origin

    with pytest.raises(ValueError, match="is no origin: give scheme://host"):
        cors_origin(given)
