"""Every failure is an OpenAI-shaped error with the right status; nothing leaks, nothing hangs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from jan.services.types import ChatDelta

from jan.core import BUILTIN_PRIORITY, Extension, InferenceExtension
from jan.store import DataFolder
from cut_off_helpers import HOLD_N_CTX, only_slot_held
from server_helpers import http_post, raw_request, sse_events, start_server


class BrokenEngine(Extension, InferenceExtension):
    """An engine that fails in the ways a real one can: before streaming, and in the middle."""

    name = "test-broken-engine"
    engine_name = "broken"
    priority = BUILTIN_PRIORITY

    async def on_load(self, ctx):
        ctx.add_route("GET", "/v1/test/crash", self.crash)

    async def crash(self, request):
        raise RuntimeError("secret internal detail")

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...
    async def loaded_models(self): return []
    async def model_status(self, model_id): return {"id": model_id, "status": "ready"}

    async def chat(self, model, request):
        yield ChatDelta(content="partial")
        raise RuntimeError("the engine crashed mid-stream")

    async def complete(self, model, request):
        raise RuntimeError("boom before streaming")
        yield  # pragma: no cover

    async def embed(self, model, request): raise RuntimeError("no")
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): return []
    async def detokenize(self, model, tokens): return ""


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("errors")
    DataFolder(tmp / "data").models.create({"id": "broken-model", "engine": "broken", "object": "model"})
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    cfg = ServerConfig(data_folder=tmp / "data", models=[str(stories_path)], n_ctx=256, n_parallel=1, max_queue=0,
                       n_threads=1, max_body_bytes=64 * 1024)
    with ServerThread(cfg, extensions=[BrokenEngine()]) as srv:
        yield srv


def call(server, method, path, body=None, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(server.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def error_of(body: bytes) -> dict:
    payload = json.loads(body)
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    return payload["error"]


CHAT = {"model": "stories260K", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_malformed_json(server):
    status, body = call(server, "POST", "/v1/chat/completions", raw=b'{"model": "stories260K", "messages": [')
    assert status == 400 and error_of(body)["code"] == "invalid_json"


def test_body_must_be_an_object(server):
    status, body = call(server, "POST", "/v1/chat/completions", raw=b"[1, 2]")
    assert status == 400 and error_of(body)["type"] == "invalid_request_error"


@pytest.mark.parametrize("field,value", [("temperature", "hot"), ("max_tokens", "ten"), ("n", 1.5),
                                         ("stream", "maybe"), ("messages", "hello")])
def test_wrong_types_name_the_param(server, field, value):
    status, body = call(server, "POST", "/v1/chat/completions", {**CHAT, field: value})
    assert status == 400
    assert error_of(body)["param"].startswith(field)


@pytest.mark.parametrize("field,value", [("temperature", 5), ("top_p", 1.5), ("n", 0), ("max_tokens", 0),
                                         ("presence_penalty", -3), ("top_logprobs", 30), ("logit_bias", {"x": 1})])
def test_out_of_range_values(server, field, value):
    status, body = call(server, "POST", "/v1/chat/completions", {**CHAT, field: value})
    assert status == 400
    assert error_of(body)["param"].startswith(field)


def test_unknown_field_is_refused_by_name(server):
    status, body = call(server, "POST", "/v1/chat/completions", {**CHAT, "max_token": 3})
    err = error_of(body)
    assert status == 400 and err["param"] == "max_token" and "max_token" in err["message"]


def test_bad_message_shapes(server):
    for messages in ([{"role": "wizard", "content": "hi"}], [{"role": "tool", "content": "x"}], [],
                     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]):
        status, body = call(server, "POST", "/v1/chat/completions", {**CHAT, "messages": messages})
        assert status == 400, messages
        assert error_of(body)["param"].startswith("messages")


def test_context_overflow(server):
    status, body = call(server, "POST", "/v1/chat/completions",
                        {**CHAT, "messages": [{"role": "user", "content": "Once upon a time " * 200}]})
    err = error_of(body)
    assert status == 400 and err["code"] == "context_length_exceeded"
    assert "256" in err["message"]


def test_unknown_model(server):
    status, body = call(server, "POST", "/v1/chat/completions", {**CHAT, "model": "nope"})
    err = error_of(body)
    assert status == 404 and err["code"] == "model_not_found" and err["param"] == "model"


def test_unknown_route_and_wrong_method(server):
    status, body = call(server, "GET", "/v1/nothing-here")
    assert status == 404 and error_of(body)["code"] == "not_found"
    status, body = call(server, "GET", "/v1/embeddings")
    assert status == 405 and error_of(body)["code"] == "method_not_allowed"


def test_a_base_url_with_one_v1_too_many_is_named(server):
    # the Anthropic and Ollama SDKs add /v1/messages and /api/chat to their base URL: given the OpenAI one
    # (http://HOST:PORT/v1, as the README's OpenAI examples have it) they ask for /v1/v1/... and /v1/api/...
    # ... each told in its own client's error shape (they were OpenAI's: the ollama package showed the body as a
    # dict, {'message': ..., 'type': ...}, where it reads Ollama's {"error": "..."})
    status, body = call(server, "POST", "/v1/v1/messages", {})
    payload = json.loads(body)
    assert status == 404 and payload["type"] == "error" and payload["error"]["type"] == "not_found_error", payload
    assert "did you mean /v1/messages?" in payload["error"]["message"]
    assert "one /v1 too many" in payload["error"]["message"]
    for method, path in (("POST", "/v1/api/chat"), ("GET", "/v1/api/tags")):
        status, body = call(server, method, path, {} if method == "POST" else None)
        payload = json.loads(body)
        assert status == 404 and list(payload) == ["error"] and isinstance(payload["error"], str), payload
        assert f"did you mean {path[3:]}?" in payload["error"], payload
    status, body = call(server, "POST", "/v1/v1/chat/completions", {})  # an OpenAI route meant: OpenAI's shape
    assert status == 404 and "did you mean /v1/chat/completions?" in error_of(body)["message"]
    # no guess where the shorter path is no route either
    status, body = call(server, "GET", "/v1/v1/nothing-here")
    assert status == 404 and error_of(body)["message"] == "Unknown route"
    # and the other way: an OpenAI client given http://HOST:PORT (no /v1) asks for /threads, /files, ... (/responses,
    # as /chat/completions, is served without /v1 too, as llama-server serves it)
    for path, method in (("/threads", "POST"), ("/assistants", "GET"), ("/files", "GET")):
        status, body = call(server, method, path, {} if method == "POST" else None)
        err = error_of(body)
        assert status == 404 and f"did you mean /v1{path}?" in err["message"] and "lacks /v1" in err["message"], err
    status, body = call(server, "GET", "/nothing-here")  # no guess where /v1/... is no route either
    assert status == 404 and error_of(body)["message"] == "Unknown route"


def test_a_base_url_ending_in_a_slash_is_named_in_its_dialects_shape(server):
    # a base URL given as http://HOST:PORT/ where the client adds /v1/messages (or /api/chat) asks for //v1/messages:
    # the 404 was OpenAI's bare "Unknown route", to an Anthropic or Ollama client too
    status, body = call(server, "POST", "//v1/messages", {})
    payload = json.loads(body)
    assert status == 404 and payload["type"] == "error" and payload["error"]["type"] == "not_found_error", payload
    assert "did you mean /v1/messages?" in payload["error"]["message"] and "//" in payload["error"]["message"]
    for method, path in (("POST", "//api/chat"), ("GET", "/api//tags")):
        status, body = call(server, method, path, {} if method == "POST" else None)
        payload = json.loads(body)
        assert status == 404 and list(payload) == ["error"] and isinstance(payload["error"], str), payload
        assert f"did you mean {path.replace('//', '/')}?" in payload["error"], payload
    for path in ("//v1/chat/completions", "/v1//chat/completions", "//v1/v1/chat/completions"):
        status, body = call(server, "POST", path, {})
        assert status == 404 and "did you mean /v1/chat/completions?" in error_of(body)["message"], (path, body)
    status, body = call(server, "POST", "//completion", {})  # llama-server's shape for its route
    payload = json.loads(body)
    assert status == 404 and payload["error"]["code"] == 404 and "did you mean /completion?" in \
        payload["error"]["message"], payload
    status, body = call(server, "GET", "//nothing-here")  # no guess where the single-slashed path is no route either
    assert status == 404 and error_of(body)["message"] == "Unknown route"


def test_openais_apis_jan_does_not_serve_are_named(server):
    # an OpenAI SDK user who stored a chat completion (store: true is accepted) and retrieved it, or asked for speech
    # or images, got a bare "Unknown route" / "Method not allowed", which reads as a wrong base URL or a bug
    for method, path, status, said in (
            ("GET", "/v1/chat/completions/chatcmpl-1", 404, "stored chat completions"),
            ("GET", "/v1/chat/completions", 404, "stored chat completions"),
            ("DELETE", "/chat/completions/chatcmpl-1", 404, "stored chat completions"),
            ("POST", "/v1/audio/speech", 404, "text to speech"),
            ("POST", "/v1/responses/compact", 404, "compaction"),
            ("POST", "/v1/images/generations", 404, "image generation"),
            ("POST", "/v1/moderations", 404, "moderation"),
            ("GET", "/v1/vector_stores", 404, "vector stores"),
            ("GET", "/v1/skills", 404, "Agent Skills")):
        got, body = call(server, method, path, {} if method == "POST" else None)
        err = error_of(body)
        assert got == status and said in err["message"] and "jan does not serve" in err["message"], (path, err)
        assert f"{method} {path}" in err["message"] and err["code"] == "not_found", err
    # another method there is not the unserved API's: still the router's 405
    got, body = call(server, "DELETE", "/v1/chat/completions")
    assert got == 405 and error_of(body)["code"] == "method_not_allowed", body
    status, body = call(server, "GET", "/v1/nothing-here")  # any other path: as it was
    assert status == 404 and error_of(body)["message"] == "Unknown route"
    # Anthropic's SDK (its anthropic-version header) reads its own shape for a route jan does not serve: it got
    # OpenAI's, and showed "type: invalid_request_error" for a missing route
    for path, said in (("/v1/complete", "Messages API"), ("/v1/skills", "Agent Skills"), ("/v1/nothing-here", "")):
        status, body = call(server, "POST", path, {}, headers={"anthropic-version": "2023-06-01"})
        payload = json.loads(body)
        assert status == 404 and payload["type"] == "error", payload
        assert payload["error"]["type"] == "not_found_error" and said in payload["error"]["message"], payload


def test_the_sdks_unserved_methods_raise_not_found(server):
    # an unserved API's method on a path a served route shares with another method (chat.completions.list beside
    # the served POST, responses.compact beside GET /v1/responses/{id}) was the router's 405: OpenAI's SDK has no
    # class for it and raised its bare APIStatusError, where the same API's other methods raise NotFoundError
    import openai

    from dialect_helpers import openai_client

    client = openai_client(server)
    for call_it in (lambda: client.chat.completions.list(),
                    lambda: client.chat.completions.retrieve("chatcmpl-1"),
                    lambda: client.responses.compact(model="stories260K", input="Hi"),
                    lambda: client.moderations.create(input="Hi")):
        with pytest.raises(openai.NotFoundError) as caught:
            call_it()
        assert "jan does not serve" in caught.value.message and caught.value.code == "not_found", caught.value
        assert "allow" not in caught.value.response.headers
    # a served route's wrong method is still the router's 405, with its Allow
    with pytest.raises(openai.APIStatusError) as caught:
        client.get("/embeddings", cast_to=object)
    assert caught.value.status_code == 405 and "POST" in caught.value.response.headers["allow"]


def test_body_too_large(server):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 100_000}]}
    status, body = call(server, "POST", "/v1/chat/completions", big)
    assert status == 413 and error_of(body)["code"] == "request_too_large"


def test_queue_full_is_503(tmp_path, stories_path):
    # a server of its own: the blocker holds the only slot for as long as the test needs it (its context fits
    # thousands of tokens; in this module's 256, 200 tokens ended in ~20 ms on a fast core, before the request
    # it was to hold up)
    srv = start_server(tmp_path, [stories_path], n_parallel=1, max_queue=0, n_ctx=HOLD_N_CTX)
    try:
        with only_slot_held(srv):  # the only slot is generating; max_queue is 0
            status, body = call(srv, "POST", "/v1/completions", {"model": "stories260K", "prompt": "x",
                                                                 "max_tokens": 2})
            assert status == 503 and error_of(body)["code"] == "queue_full"
    finally:
        srv.stop()


def test_internal_error_is_500_without_details(server):
    status, body = call(server, "GET", "/v1/test/crash")
    err = error_of(body)
    assert status == 500 and err["type"] == "server_error"
    assert b"secret" not in body and b"Traceback" not in body


def test_failure_before_streaming_is_a_plain_error(server):
    status, body = call(server, "POST", "/v1/completions",
                        {"model": "broken-model", "prompt": "x", "stream": True})
    assert status == 500 and b"boom" not in body


def test_error_after_the_stream_started_is_an_sse_error_event(server):
    response = raw_request(server.base_url, http_post("/v1/chat/completions", {
        "model": "broken-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}))
    assert b"HTTP/1.1 200" in response.split(b"\r\n")[0]
    text = response.decode(errors="replace")
    assert "partial" in text
    assert "event: error" in text
    error_payload = json.loads(next(d for d in sse_events(response.split(b"\r\n\r\n", 1)[1]) if '"error"' in d))
    assert error_payload["error"]["type"] == "server_error"
    assert "[DONE]" not in text
