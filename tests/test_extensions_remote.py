"""The remote inference extension against a scripted OpenAI-compatible upstream on 127.0.0.1.

The fake upstream picks its behaviour from the requested model name, so each
test says exactly what the upstream does: stream, fail with a status, fail
mid-stream, stream slowly (to see the disconnect), answer without streaming.
The end-to-end test through two real jan servers is in
``test_extensions_remote_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from aiohttp import web

from jan.core import ExtensionManager, ModelEvent, ModelState, collect_chat_completion, collect_completion
from jan.errors import ContextOverflowError, ModelLoadError, ModelNotFoundError, QueueFullError
from jan.extensions.remote import RemoteInferenceExtension, UpstreamError, UpstreamRequestError
from jan.extensions.remote.sse import SSEParser
from jan.server import openai_wire as wire
from jan.server.errors import to_api_error
from jan.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from local_site import serve_app


# The engine speaks typed requests and deltas; these helpers speak OpenAI dicts to it exactly as
# the server's routes do (through jan.server.openai_wire), so the tests read in OpenAI terms.
async def _encoded(stream, encoder):
    try:
        async for delta in stream:
            chunk = encoder.encode(delta)
            if chunk is not None:
                yield chunk
    finally:
        await stream.aclose()


def openai_chat(engine, model, body):
    request = wire.chat_request(ChatCompletionRequest.model_validate({"model": model["id"], **body}))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return _encoded(engine.chat(model, request), wire.ChatChunkEncoder(model["id"], include_usage=include_usage))


def openai_complete(engine, model, body):
    request = wire.completion_request(CompletionRequest.model_validate({"model": model["id"], **body}))
    return _encoded(engine.complete(model, request), wire.CompletionChunkEncoder(model["id"]))


async def openai_embed(engine, model, body):
    body = EmbeddingRequest.model_validate({"model": model["id"], **body})
    return wire.embeddings_response(await engine.embed(model, wire.embedding_request(body)))


class FakeUpstream:
    """An OpenAI-compatible server whose behaviour depends on the requested model."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.disconnected = asyncio.Event()
        self.slow_chunks_sent = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/tokenize", self.tokenize)  # at the root, like llama.cpp's server
        app.router.add_post("/detokenize", self.detokenize)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def _record(self, request: web.Request) -> dict:
        body = await request.json()
        self.requests.append((request.path, body, dict(request.headers)))
        return body

    @staticmethod
    def error(status: int, message: str, code=None, param=None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                            "code": code}}, status=status)

    def failure_for(self, name: str) -> web.Response | None:
        return {
            "missing": self.error(404, "The model `missing` does not exist", "model_not_found", "model"),
            "bad": self.error(400, "temperature: must be at most 2", "invalid_value", "temperature"),
            "long": self.error(400, "This model's maximum context length is 512 tokens", "context_length_exceeded"),
            "busy": self.error(503, "all slots are busy", "queue_full"),
            "limited": self.error(429, "rate limited"),
            "locked": self.error(401, "Incorrect API key provided", "invalid_api_key"),
            "crash": web.Response(status=500, text="internal server error"),
        }.get(name)

    async def models(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, {}, dict(request.headers)))
        if request.headers.get("Authorization") == "Bearer wrong":
            return self.error(401, "Incorrect API key provided", "invalid_api_key")
        return web.json_response({"object": "list", "data": [{"id": "ok", "object": "model"},
                                                             {"id": "slow", "object": "model"}]})

    @staticmethod
    def chunk(text: str | None = None, finish: str | None = None, model: str = "ok") -> dict:
        delta = {} if text is None else {"content": text}
        return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        return resp

    @staticmethod
    async def send(resp: web.StreamResponse, data, event: str | None = None) -> None:
        head = f"event: {event}\n" if event else ""
        payload = data if isinstance(data, str) else json.dumps(data)
        await resp.write(f"{head}data: {payload}\n\n".encode())

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        name = body["model"]
        failure = self.failure_for(name)
        if failure is not None:
            return failure
        if name == "json":  # ignores "stream": one complete response
            return web.json_response({"id": "chatcmpl-json", "object": "chat.completion", "created": 1, "model": name,
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},
                                                   "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        resp = await self.sse(request)
        if name == "slow":
            finished = False
            try:
                await self.send(resp, self.chunk("tick", model=name))
                for _ in range(400):  # 20 s, far longer than the test waits
                    await asyncio.sleep(0.05)
                    await self.send(resp, self.chunk(" tick", model=name))
                    self.slow_chunks_sent += 1
                finished = True
            finally:
                if not finished:
                    self.disconnected.set()
            return resp
        if name == "stalled":  # one chunk, then nothing until the client goes (or 20 s)
            await self.send(resp, self.chunk("first", model=name))
            for _ in range(400):
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.05)
            return resp
        if name == "midstream":
            await self.send(resp, self.chunk("partial", model=name))
            await self.send(resp, {"error": {"message": "decode failed", "type": "server_error"}}, event="error")
            return resp
        if name == "big":  # one event far larger than aiohttp's default line limit
            await self.send(resp, self.chunk("x" * 300_000, model=name))
            await self.send(resp, self.chunk(None, "stop", model=name))
            await self.send(resp, "[DONE]")
            return resp
        if name == "truncated":
            await self.send(resp, self.chunk("cut", model=name))
            return resp  # no finish_reason, no [DONE]
        # "ok": role, two pieces split over odd line endings, finish, usage, [DONE]
        await resp.write(b": keep-alive comment\n\n")
        await self.send(resp, {**self.chunk(None, model=name), "choices": [
            {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        await resp.write(("data: " + json.dumps(self.chunk("Hello", model=name)) + "\r\n\r\n").encode())
        await self.send(resp, self.chunk(" there", model=name))
        await self.send(resp, self.chunk(None, "stop", model=name))
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.send(resp, {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": name,
                                   "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                            "total_tokens": 7, "completion_tokens_details": {
                                                                "accepted_prediction_tokens": 1,
                                                                "rejected_prediction_tokens": 3}}})
        await self.send(resp, "[DONE]")
        return resp

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        failure = self.failure_for(body["model"])
        if failure is not None:
            return failure
        resp = await self.sse(request)
        for text, finish in (("Once", None), (" upon", "length")):
            await self.send(resp, {"id": "cmpl-up", "object": "text_completion", "created": 1, "model": body["model"],
                                   "choices": [{"index": 0, "text": text, "finish_reason": finish}]})
        await self.send(resp, "[DONE]")
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        failure = self.failure_for(body["model"])
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({"object": "list", "model": body["model"],
                                  "data": [{"object": "embedding", "index": i, "embedding": [float(len(x)), 1.0]}
                                           for i, x in enumerate(inputs)],
                                  "usage": {"prompt_tokens": 2, "total_tokens": 2}})

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        return web.json_response({"tokens": [{"id": len(w), "piece": w} for w in body["content"].split()]})

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        return web.json_response({"content": "-".join(str(t) for t in body["tokens"])})


@pytest.fixture
async def upstream():
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def manager(tmp_path):
    manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
    manager.register(RemoteInferenceExtension)
    await manager.start()
    assert manager.record("remote").state == "loaded", manager.record("remote").error
    yield manager
    await manager.stop()


@pytest.fixture
def engine(manager) -> RemoteInferenceExtension:
    engine = manager.get_inference("openai")
    assert isinstance(engine, RemoteInferenceExtension)
    return engine


def remote_model(upstream: FakeUpstream, name: str = "ok", **settings) -> dict:
    return {"id": f"local-{name}", "engine": "openai",
            "settings": {"base_url": upstream.base_url, "model": name, **settings}, "parameters": {}}


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- streaming ------------------------------------------------------------------------
async def test_chat_streams_upstream_chunks_with_the_local_model_id(engine, upstream):
    chunks = [c async for c in openai_chat(engine, remote_model(upstream), dict(CHAT))]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there"
    assert {c["model"] for c in chunks} == {"local-ok"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # usage was requested upstream (for metrics) but not by the caller: not passed on
    assert all(c["choices"] for c in chunks)
    path, body, _ = upstream.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["model"] == "ok" and body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_usage_is_passed_on_when_asked_and_non_streaming_aggregates(engine, upstream):
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}  # (only with stream: OpenAI's rule)
    result = await collect_chat_completion(openai_chat(engine, remote_model(upstream), request))
    assert result["object"] == "chat.completion" and result["model"] == "local-ok"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Hello there"}
    assert result["usage"]["total_tokens"] == 7
    # the upstream's drafts (speculative decoding, predicted outputs) as it told them
    details = result["usage"]["completion_tokens_details"]
    assert (details["accepted_prediction_tokens"], details["rejected_prediction_tokens"]) == (1, 3), result["usage"]
    metrics = (await engine.model_status("local-ok"))["metrics"]
    assert metrics["requests_finished"] == 1 and metrics["generated_tokens_total"] == 2
    assert metrics["time_to_first_token_ms"] is not None


async def test_model_parameters_are_defaults_the_request_overrides(engine, upstream, monkeypatch):
    monkeypatch.setenv("JAN_TEST_UPSTREAM_KEY", "sk-from-env")
    model = remote_model(upstream, api_key_env="JAN_TEST_UPSTREAM_KEY", headers={"X-Extra": "1"})
    model["parameters"] = {"temperature": 0.3, "max_tokens": -1, "top_p": 0.5, "stream": False, "stop": []}
    await collect_chat_completion(openai_chat(engine, model, {**CHAT, "top_p": 0.9, "seed": 7}))
    _, body, headers = upstream.requests[-1]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["seed"] == 7
    assert "max_tokens" not in body and "stop" not in body  # Jan's "no limit" / empty values are not sent
    assert body["stream"] is True
    assert headers["Authorization"] == "Bearer sk-from-env" and headers["X-Extra"] == "1"


async def test_extension_settings_supply_defaults(engine, manager, upstream):
    manager.settings("remote").update({"base_url": upstream.base_url, "api_key": "sk-default"})
    model = {"id": "ok", "engine": "openai"}  # Jan-style: only the id, which is also the upstream's name
    result = await collect_chat_completion(openai_chat(engine, model, dict(CHAT)))
    assert result["choices"][0]["message"]["content"] == "Hello there" and result["model"] == "ok"
    assert upstream.requests[-1][2]["Authorization"] == "Bearer sk-default"


async def test_completions_stream_and_aggregate(engine, upstream):
    result = await collect_completion(openai_complete(engine, remote_model(upstream), {"prompt": "x", "max_tokens": 2}))
    assert result["choices"][0]["text"] == "Once upon" and result["model"] == "local-ok"
    assert upstream.requests[-1][0] == "/v1/completions"


async def test_a_huge_event_is_received_whole(engine, upstream):
    result = await collect_chat_completion(openai_chat(engine, remote_model(upstream, "big"), dict(CHAT)))
    assert result["choices"][0]["message"]["content"] == "x" * 300_000


async def test_an_upstream_that_does_not_stream_is_converted(engine, upstream):
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}  # (only with stream: OpenAI's rule)
    result = await collect_chat_completion(openai_chat(engine, remote_model(upstream, "json"), request))
    assert result["choices"][0]["message"]["content"] == "whole" and result["usage"]["total_tokens"] == 4


# -- cancellation ------------------------------------------------------------------------
async def test_closing_the_stream_closes_the_upstream_connection(engine, upstream):
    stream = openai_chat(engine, remote_model(upstream, "slow"), dict(CHAT))
    first = await stream.__anext__()
    assert first["choices"][0]["delta"]["content"] == "tick"
    assert (await engine.model_status("local-slow"))["metrics"]["requests_active"] == 1
    await stream.aclose()
    # the upstream notices at its next write (every 50 ms) and stops generating
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    sent = upstream.slow_chunks_sent
    await asyncio.sleep(0.3)
    assert upstream.slow_chunks_sent == sent
    metrics = (await engine.model_status("local-slow"))["metrics"]
    assert metrics["requests_cancelled"] == 1 and metrics["requests_active"] == 0


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(engine, upstream):
    got_first = asyncio.Event()

    async def consume():
        async for _ in openai_chat(engine, remote_model(upstream, "slow"), dict(CHAT)):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_requests_running_when_the_extension_is_disabled_end_saying_so(engine, manager, upstream):
    """Disabling the extension closes its client session under the requests it runs, streaming or still waiting
    for an upstream's answer: each ends with a 503 ``engine_unavailable`` saying the extension stopped, not a 502
    that blames the upstream (``ServerDisconnectedError: Server disconnected``), and a read already waiting on a
    silent stream ends too (closing aiohttp's session alone left it waiting forever, and the client's stream
    with it)."""
    connected = asyncio.Event()

    async def silent(reader, writer):  # accepts and reads, never answers
        connected.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stream = openai_chat(engine, remote_model(upstream, "slow"), dict(CHAT))
        assert (await stream.__anext__())["choices"][0]["delta"]["content"] == "tick"
        stalled = openai_chat(engine, remote_model(upstream, "stalled"), dict(CHAT))
        assert (await stalled.__anext__())["choices"][0]["delta"]["content"] == "first"
        reading = asyncio.ensure_future(stalled.__anext__())  # waits on the upstream's silence
        waiting = asyncio.ensure_future(openai_chat(engine, {
            "id": "local-silent", "engine": "openai", "parameters": {},
            "settings": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "x"}}, dict(CHAT)).__anext__())
        await asyncio.wait_for(connected.wait(), 30)
        for _ in range(20):  # (the loop's turns: the read reaches its wait on the connection)
            await asyncio.sleep(0)
        assert not reading.done()
        assert (await manager.disable("remote")).state != "loaded"

        async def drain():
            async for _ in stream:  # (ticks received before the close)
                pass

        for pending in (drain(), reading, waiting):
            with pytest.raises(UpstreamError) as err:
                await asyncio.wait_for(pending, 30)
            assert (err.value.http_status, err.value.code) == (503, "engine_unavailable"), err.value
            assert "stopped while the request ran" in str(err.value)
    finally:
        server.close()


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, error, status", [
    ("missing", ModelNotFoundError, 404),
    ("bad", UpstreamRequestError, 400),
    ("long", ContextOverflowError, 400),
    ("busy", QueueFullError, 503),
    ("limited", QueueFullError, 503),
    ("locked", UpstreamError, 502),
    ("crash", UpstreamError, 502),
])
async def test_upstream_errors_become_jan_errors(engine, upstream, name, error, status):
    with pytest.raises(error) as info:
        await collect_chat_completion(openai_chat(engine, remote_model(upstream, name), dict(CHAT)))
    api = to_api_error(info.value)
    assert api.status == status
    if name == "bad":
        assert isinstance(info.value, ValueError)
        assert "temperature: must be at most 2" in str(info.value) and api.param == "temperature"
    if name == "missing":
        assert "'missing'" in str(info.value) and "local-missing" in str(info.value)
    if name == "locked":
        assert "api_key" in str(info.value) and "Incorrect API key" in str(info.value)
    metrics = (await engine.model_status(f"local-{name}"))
    assert metrics.get("metrics", {}).get("requests_failed", 1) == 1


async def test_a_wrong_base_url_path_is_not_a_missing_model(engine, upstream):
    model = remote_model(upstream)
    model["settings"]["base_url"] = f"http://127.0.0.1:{upstream.port}/nope"
    with pytest.raises(UpstreamError, match="404.*base_url"):
        await collect_chat_completion(openai_chat(engine, model, dict(CHAT)))


async def test_connection_refused_is_a_clear_engine_error(engine):
    model = {"id": "gone", "engine": "openai", "settings": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}
    with pytest.raises(UpstreamError) as info:
        await collect_chat_completion(openai_chat(engine, model, dict(CHAT)))
    message = str(info.value)
    assert "cannot connect" in message and "connection refused" in message and "'gone'" in message
    api = to_api_error(info.value)
    assert api.status == 502 and api.code == "upstream_unreachable" and api.message == message


async def test_errors_inside_the_stream_raise_after_the_chunks_before_them(engine, upstream):
    stream = openai_chat(engine, remote_model(upstream, "midstream"), dict(CHAT))
    first = await stream.__anext__()
    assert first["choices"][0]["delta"]["content"] == "partial"
    with pytest.raises(UpstreamError, match="decode failed"):
        await stream.__anext__()


async def test_a_stream_cut_short_is_an_error(engine, upstream):
    with pytest.raises(UpstreamError, match="ended its stream"):
        await collect_chat_completion(openai_chat(engine, remote_model(upstream, "truncated"), dict(CHAT)))


@pytest.mark.parametrize("settings, field", [
    ({}, "settings.base_url"),
    ({"base_url": "ftp://example"}, "settings.base_url"),
    ({"base_url": "http://127.0.0.1:1/v1", "api_key_env": "JAN_TEST_NO_SUCH_VAR"}, "JAN_TEST_NO_SUCH_VAR"),
])
async def test_misconfigured_models_name_the_field(engine, settings, field):
    model = {"id": "bad-config", "engine": "openai", "settings": settings}
    with pytest.raises(ModelLoadError, match=field.replace(".", r"\.")):
        await collect_chat_completion(openai_chat(engine, model, dict(CHAT)))
    with pytest.raises(ModelLoadError):
        await engine.load_model(model)
    assert (await engine.model_status("bad-config"))["status"] == ModelState.FAILED


# -- load/unload, status ----------------------------------------------------------------------
async def test_load_is_a_readiness_check_with_events(engine, manager, upstream):
    events = []
    manager.bus.subscribe(ModelEvent, lambda e: events.append(type(e).__name__))
    model = remote_model(upstream)
    assert (await engine.model_status("local-ok"))["status"] == ModelState.UNLOADED
    await engine.load_model(model)
    assert upstream.requests[-1][0] == "/v1/models"
    status = await engine.model_status("local-ok")
    assert status["status"] == ModelState.READY and status["remote_model"] == "ok"
    assert status["base_url"] == upstream.base_url and "api_key" not in json.dumps(status)
    assert await engine.loaded_models() == ["local-ok"]
    await engine.unload_model("local-ok")
    assert await engine.loaded_models() == []
    with pytest.raises(ModelNotFoundError):
        await engine.unload_model("local-ok")
    assert events == ["ModelInit", "ModelReady", "ModelStopped"]


async def test_load_fails_clearly_when_the_upstream_is_down_or_refuses_the_key(engine, manager, upstream):
    events = []
    manager.bus.subscribe(ModelEvent, lambda e: events.append(type(e).__name__))
    down = {"id": "down", "engine": "openai", "settings": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}
    with pytest.raises(ModelLoadError, match="cannot connect"):
        await engine.load_model(down)
    status = await engine.model_status("down")
    assert status["status"] == ModelState.FAILED and "connection refused" in status["error"]
    with pytest.raises(ModelLoadError, match="api_key"):
        await engine.load_model(remote_model(upstream, api_key="wrong"))
    assert events == ["ModelInit", "ModelFailed", "ModelInit", "ModelFailed"]


# -- embeddings and tokens ----------------------------------------------------------------------
async def test_embeddings_are_proxied(engine, upstream):
    result = await openai_embed(engine, remote_model(upstream), {"input": ["ab", "abcd"]})
    assert result["model"] == "local-ok" and [d["embedding"][0] for d in result["data"]] == [2.0, 4.0]
    assert upstream.requests[-1][1]["model"] == "ok"
    with pytest.raises(ModelNotFoundError):
        await openai_embed(engine, remote_model(upstream, "missing"), {"input": "x"})


async def test_tokenize_falls_back_to_the_server_root_like_llama_cpp(engine, upstream):
    model = remote_model(upstream)
    assert await engine.tokenize(model, "one three") == [3, 5]
    assert await engine.detokenize(model, [1, 2]) == "1-2"
    assert [r[0] for r in upstream.requests] == ["/tokenize", "/detokenize"]  # /v1/tokenize answered 404 first
    assert await engine.tokenize(model, "x") == [1]  # the working URL is remembered


async def test_tokenize_without_an_endpoint_is_a_clear_error(engine):
    async with serve_app(web.Application()) as base_url:  # an upstream with no /tokenize at all (like OpenAI's API)
        model = {"id": "no-tok", "engine": "openai", "settings": {"base_url": f"{base_url}/v1"}}
        with pytest.raises(UpstreamRequestError, match="no /tokenize endpoint") as info:
            await engine.tokenize(model, "hello")
        assert to_api_error(info.value).status == 400


# -- the SSE parser ---------------------------------------------------------------------------
def test_sse_parser_handles_comments_multiline_data_events_and_crlf():
    parser = SSEParser()
    lines = [b": ping\n", b"\n", b"event: error\r\n", b"data: {\"a\":\n", b"data: 1}\n", b"\n", b"data:[DONE]\n"]
    events = [e for line in lines for e in parser.feed(line)] + parser.close()
    assert [(e.event, e.data) for e in events] == [("error", '{"a":\n1}'), ("message", "[DONE]")]


def test_sse_parser_reassembles_lines_split_anywhere():
    payload = 'data: {"text": "h\u00e9llo"}\r\n\r\n: ping\n\nevent: error\ndata: x\n\ndata: [DONE]\n\n'.encode()
    for size in (1, 2, 3, 7, len(payload)):
        parser = SSEParser()
        events = []
        for i in range(0, len(payload), size):
            events += parser.feed_bytes(payload[i:i + size])
        events += parser.close()
        assert [(e.event, e.data) for e in events] == [
            ("message", '{"text": "h\u00e9llo"}'), ("error", "x"), ("message", "[DONE]")], size
    parser = SSEParser()
    assert parser.feed_bytes(b"data: no blank line at the end") == []
    assert [e.data for e in parser.close()] == ["no blank line at the end"]


def test_an_upstream_is_sent_no_tool_options_without_tools():
    """OpenAI refuses tool_choice and parallel_tool_calls "only allowed when 'tools' are specified": a request with
    no tools (a Responses one, which takes them without: Codex sends parallel_tool_calls false) goes upstream
    without them, as it is answered here; with tools, they go."""
    from jan.extensions.remote.wire import chat_body
    from jan.services.types import ChatMessage, ChatRequest, ToolSpec

    bare = ChatRequest(model="m", messages=(ChatMessage.of_text("user", "hi"),), tool_choice="auto",
                       parallel_tool_calls=False)
    body = chat_body(bare)
    assert "tool_choice" not in body and "parallel_tool_calls" not in body and "tools" not in body
    tools = ChatRequest(model="m", messages=(ChatMessage.of_text("user", "hi"),), tool_choice="auto",
                        parallel_tool_calls=False, tools=(ToolSpec("f", None, {"type": "object"}),))
    body = chat_body(tools)
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False and body["tools"]


def test_a_lazy_grammar_goes_upstream_lazy_in_llama_servers_fields():
    # (the triggers were dropped: the upstream then held the grammar over the whole output)
    from jan.extensions.remote.wire import completion_body
    from jan.services.types import CompletionRequest as Typed

    body = completion_body(Typed(model="m", prompts=("Once",), grammar='root ::= "a"', grammar_triggers=("w(a)s",),
                                 grammar_trigger_tokens=(7,)))
    assert body["grammar"] == 'root ::= "a"' and body["grammar_lazy"] is True
    assert body["grammar_triggers"] == [{"type": 2, "value": "w(a)s"}, {"type": 0, "value": "", "token": 7}]
    assert "grammar_lazy" not in completion_body(Typed(model="m", prompts=("Once",), grammar='root ::= "a"'))


def test_a_chats_lazy_grammar_and_preserved_tokens_go_upstream_as_a_completions_do():
    # (the chat body kept the grammar and dropped its triggers and preserved tokens: another jan upstream then held
    # the grammar over the whole answer, and showed no control token the client asked to see)
    from jan.extensions.remote.wire import chat_body
    from jan.services.types import ChatMessage, ChatRequest as Typed, TextPart

    messages = (ChatMessage(role="user", content=(TextPart("hi"),)),)
    body = chat_body(Typed(model="m", messages=messages, grammar='root ::= "a"', grammar_triggers=("w(a)s",),
                           grammar_trigger_tokens=(7,), preserved_tokens=("<tool>",)))
    assert body["grammar"] == 'root ::= "a"' and body["grammar_lazy"] is True
    assert body["grammar_triggers"] == [{"type": 2, "value": "w(a)s"}, {"type": 0, "value": "", "token": 7}]
    assert body["preserved_tokens"] == ["<tool>"]
    whole = chat_body(Typed(model="m", messages=messages, grammar='root ::= "a"'))
    assert whole["grammar"] == 'root ::= "a"' and "grammar_lazy" not in whole and "preserved_tokens" not in whole


def test_an_upstreams_nan_or_null_logprobs_are_told_as_none():
    # Python's JSON reader takes an upstream's NaN, which jan's strict writer then refused (the client's answer was a
    # 400 after the work); a null was read as 0.0, a certainty the upstream never told
    from jan.extensions.remote.wire import chat_deltas, completion_deltas

    chat = json.loads('{"choices": [{"index": 0, "delta": {"content": "ab"}, "logprobs": {"content": ['
                      '{"token": "a", "logprob": NaN, "top_logprobs": [{"token": "a", "logprob": -Infinity}]},'
                      '{"token": "b", "logprob": null, "top_logprobs": [{"token": "b", "logprob": -0.5}]}]}}]}')
    items = chat_deltas(chat)[0].logprobs
    assert [(t.logprob, [a.logprob for a in t.top]) for t in items] == [(None, [None]), (None, [-0.5])]
    text = json.loads('{"choices": [{"index": 0, "text": "ab", "logprobs": {"tokens": ["a", "b"], '
                      '"token_logprobs": [NaN, -0.25], "top_logprobs": [{"a": NaN}, {"b": -0.25}]}}]}')
    items = completion_deltas(text)[0].logprobs
    assert [(t.logprob, [a.logprob for a in t.top]) for t in items] == [(None, [None]), (-0.25, [-0.25])]


def _embeddings_app(data: list) -> web.Application:
    """An upstream whose /v1/embeddings answers ``data`` whatever it is asked."""
    async def embeddings(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"object": "list", "data": data, "usage": {"prompt_tokens": "many"}}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    return app


@pytest.mark.parametrize("data, says", [
    ([{"index": 0, "embedding": [1.0, 2.0]}], "1 vector for 2 inputs"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": None}], "vector 1 (None)"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": ["a", "b"]}], "vector 1"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [float("nan"), 1.0]}], "vector 1"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}], "vector 1 has 1 components"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 0, "embedding": [3.0, 4.0]}], "indices [0, 0]"),
    ([{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": "not base64!"}], "vector 1 is a string"),
])
async def test_an_upstreams_unusable_embeddings_are_a_502_naming_it(engine, data, says):
    """They were sent on as they came: fewer vectors than inputs (a 200 a client zipped against its texts), a null or
    a NaN (a 500 when written out), strings (a 200 of junk), base64 (a 400 "could not convert string to float"
    blamed on the client)."""
    async with serve_app(_embeddings_app(data)) as base_url:
        model = {"id": "bad-vectors", "engine": "openai", "settings": {"base_url": f"{base_url}/v1"}}
        with pytest.raises(UpstreamError, match=re.escape(says)) as info:
            await openai_embed(engine, model, {"input": ["a", "b"]})
        assert to_api_error(info.value).status == 502


async def test_an_upstreams_base64_and_unordered_vectors_are_read_as_openai_defines_them(engine):
    import base64
    import struct

    packed = base64.b64encode(struct.pack("<2f", 0.5, -2.0)).decode()
    data = [{"index": 1, "embedding": packed}, {"index": 0, "embedding": [1, 2.5]}]  # (its order is its indices')
    async with serve_app(_embeddings_app(data)) as base_url:
        model = {"id": "b64-vectors", "engine": "openai", "settings": {"base_url": f"{base_url}/v1"}}
        result = await openai_embed(engine, model, {"input": ["a", "b"]})
    assert [d["embedding"] for d in result["data"]] == [[1.0, 2.5], [0.5, -2.0]]
    assert result["usage"]["prompt_tokens"] == 0  # (its "many" is no count: not a 400 blamed on the client)
