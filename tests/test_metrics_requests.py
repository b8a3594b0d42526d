"""``/metrics`` counts every HTTP request, by method, route template and status (``jan_http_requests_total``: what
Prometheus practice calls a request counter), alike for every dialect, refusals and streams included; the engine's
count of what it was given is ``jan_generations_total`` per model (each choice of ``n`` one), named so, with its old
name ``jan_requests_total`` kept beside it. Before, ``jan_requests_total`` was the only count and counted generations
alone: a 400, a 404, a listing or a thread's read were no request, and ``n: 2`` counted two."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from api_helpers import parse_sse
from extension_helpers import call
from server_helpers import start_server

HI = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("metrics"), [stories_path])
    yield srv
    srv.stop()


def scrape(server) -> dict[str, float]:
    """Every sample of ``/metrics``: ``name{labels}`` -> value."""
    text = urllib.request.urlopen(server.base_url + "/metrics", timeout=120).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def http(method: str, route: str, status: int) -> str:
    return f'jan_http_requests_total{{method="{method}",route="{route}",status="{status}"}}'


def test_every_request_is_counted_by_route_and_status_and_generations_apart(server):
    before = scrape(server)
    generated = [
        ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": HI}),
        ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": HI, "n": 2}),
        ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": HI}),
        ("/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 2}, "messages": HI}),
        ("/v1/responses", {"model": "stories260K", "max_output_tokens": 2, "store": False, "input": "Once"}),
    ]
    for path, body in generated:
        status, out = call(server, "POST", path, body, timeout=300)
        assert status == 200, (path, out)
    status, out = call(server, "POST", "/v1/chat/completions",
                       {"model": "stories260K", "max_tokens": 2, "messages": HI, "stream": True}, timeout=300)
    assert status == 200 and parse_sse(out), out
    # refusals, each dialect's: a bad body, an unknown model, a path no route has
    assert call(server, "POST", "/v1/chat/completions", {"model": "stories260K"})[0] == 400
    assert call(server, "POST", "/v1/messages", {"model": "nope", "max_tokens": 2, "messages": HI})[0] == 404
    assert call(server, "POST", "/api/chat", {"model": "nope", "messages": HI})[0] == 404
    assert call(server, "GET", "/v1/no-such-route")[0] == 404
    thread = call(server, "POST", "/v1/threads", {})[1]
    assert call(server, "GET", f"/v1/threads/{thread['id']}")[0] == 200
    after = scrape(server)

    def grew(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew(http("POST", "/v1/chat/completions", 200)) == 3  # (the stream too)
    assert grew(http("POST", "/v1/chat/completions", 400)) == 1
    assert grew(http("POST", "/v1/messages", 200)) == 1 and grew(http("POST", "/v1/messages", 404)) == 1
    assert grew(http("POST", "/api/chat", 200)) == 1 and grew(http("POST", "/api/chat", 404)) == 1
    assert grew(http("POST", "/v1/responses", 200)) == 1
    assert grew(http("GET", "unmatched", 404)) == 1
    # the route's template, never the id a client sent (a series per thread would have no end)
    assert grew(http("GET", "/v1/threads/{thread_id}", 200)) == 1
    assert not any(thread["id"] in key for key in after)
    assert grew(http("GET", "/metrics", 200)) == 1  # (the first scrape: counted once it was answered)
    # what the engine was given: each choice one, whatever dialect asked; the old name tells the same
    generations = grew('jan_generations_total{engine="local",model="stories260K"}')
    assert generations == 7, generations  # 1 + 2 (n: 2) + 1 + 1 + 1 + 1 (the stream)
    assert grew('jan_requests_total{engine="local",model="stories260K"}') == generations


def test_the_counters_say_what_they_count(server):
    text = urllib.request.urlopen(server.base_url + "/metrics", timeout=120).read().decode()
    assert "# TYPE jan_http_requests_total counter" in text
    assert "# TYPE jan_generations_total counter" in text
    assert re.search(r"# HELP jan_requests_total Deprecated: jan_generations_total", text), text


# -- a remote model's generations count as a local one's, labelled apart ---------------------------------------------
class _Upstream:
    """A scripted OpenAI-compatible upstream (an aiohttp app in its own thread): each chat request streams
    "Hello there" and, when asked, usage of 5 prompt and 2 completion tokens; the model ``broken`` answers 500.
    ``GET /v1/models`` lists both."""

    def __init__(self):
        from api_helpers import AppThread

        upstream = self

        class App(AppThread):
            def routes(self, router):
                router.add_post("/v1/chat/completions", upstream.chat)
                router.add_post("/v1/completions", upstream.completions)
                router.add_get("/v1/models", upstream.models)  # (a readiness check: Ollama's load)

        self.app = App()

    @staticmethod
    async def models(request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": name, "object": "model"}
                                                              for name in ("ok", "broken")]})

    async def chat(self, request):
        from aiohttp import web

        body = await request.json()
        if body["model"] == "broken":
            return web.json_response({"error": {"message": "it broke", "type": "server_error"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(data) -> None:
            await resp.write(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode())

        head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        for i in range(body.get("n", 1)):  # (each choice asked)
            await send({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": "Hello there"},
                                             "finish_reason": None}]})
            await send({**head, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                         "total_tokens": 7}})
        await send("[DONE]")
        return resp


    @staticmethod
    async def completions(request):
        """A legacy completion, answered whole (as an upstream that ignores ``stream`` does): a choice for each
        ``n`` of each prompt."""
        from aiohttp import web

        body = await request.json()
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = [{"index": i, "text": " there", "finish_reason": "stop", "logprobs": None}
                   for i in range(len(prompts) * body.get("n", 1))]
        return web.json_response({"id": "cmpl-up", "object": "text_completion", "created": 1, "model": body["model"],
                                  "choices": choices})


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory, stories_path):
    from jan.store import DataFolder

    upstream = _Upstream()
    with upstream.app:
        tmp = tmp_path_factory.mktemp("remote-metrics")
        models = DataFolder(tmp / "data").models
        for model_id, name in (("far", "ok"), ("far-broken", "broken")):
            models.create({"id": model_id, "engine": "openai",
                           "settings": {"base_url": upstream.app.base + "/v1", "model": name, "api_key": "unused"}})
        srv = start_server(tmp, [stories_path])
        yield srv
        srv.stop()


def test_a_remote_models_generations_and_tokens_are_counted_labelled_remote(remote_server):
    """Every generation counts whatever serves it: a remote model's (its upstream's usage its tokens) as a local
    one's, told apart by the ``engine`` label. Before, /metrics read the local engine alone: a remote model's
    requests, failures and tokens were counted nowhere (its HTTP requests only)."""
    before = scrape(remote_server)
    for path, body in (("/v1/chat/completions", {"model": "far", "max_tokens": 8, "messages": HI}),
                       ("/v1/chat/completions", {"model": "far", "max_tokens": 8, "messages": HI, "stream": True}),
                       ("/v1/messages", {"model": "far", "max_tokens": 8, "messages": HI}),
                       ("/api/chat", {"model": "far", "stream": False, "messages": HI}),
                       ("/v1/responses", {"model": "far", "max_output_tokens": 8, "store": False, "input": "Once"}),
                       ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": HI})):
        status, out = call(remote_server, "POST", path, body, timeout=300)
        assert status == 200, (path, out)
    status, out = call(remote_server, "POST", "/v1/chat/completions",
                       {"model": "far-broken", "max_tokens": 8, "messages": HI}, timeout=300)
    assert status >= 500, out  # (the upstream's failure, told as a gateway's)
    after = scrape(remote_server)

    def grew(name: str, model: str, engine: str) -> float:
        key = f'{name}{{engine="{engine}",model="{model}"}}'
        assert key in after, (key, sorted(k for k in after if k.startswith(name)))
        return after[key] - before.get(key, 0.0)

    assert grew("jan_generations_total", "far", "remote") == 5  # each dialect's, streamed or not
    assert grew("jan_requests_total", "far", "remote") == 5  # (the deprecated name tells the same)
    assert grew("jan_prompt_tokens_total", "far", "remote") == 5 * 5
    assert grew("jan_generated_tokens_total", "far", "remote") == 5 * 2
    assert grew("jan_generations_failed_total", "far", "remote") == 0
    assert grew("jan_generations_total", "far-broken", "remote") == 1
    assert grew("jan_generations_failed_total", "far-broken", "remote") == 1
    assert grew("jan_generations_total", "stories260K", "local") == 1
    # what only the local engine has (slots, decode time, llama-server's names) is not said of a remote model
    assert not [k for k in after if 'model="far"' in k and not k.startswith(
        ("jan_generations", "jan_requests", "jan_prompt_tokens_total", "jan_generated_tokens_total"))]


def test_a_remote_models_choices_count_as_a_local_models(remote_server):
    """``jan_generations_total`` counts each choice of ``n`` of each prompt (its help says so, and a local model's
    engine counts them so): a remote model's too, though its upstream is sent one request for them all. Before, a
    remote model's ``n: 2`` counted one generation, a local model's two."""
    chat2 = {"max_tokens": 2, "messages": HI, "n": 2}
    before = scrape(remote_server)
    for path, body in (("/v1/chat/completions", {"model": "far", **chat2}),
                       ("/v1/chat/completions", {"model": "far", **chat2, "stream": True}),
                       ("/v1/chat/completions", {"model": "stories260K", **chat2}),
                       ("/v1/completions", {"model": "far", "max_tokens": 2, "prompt": ["Once", "Upon"], "n": 2}),
                       ("/v1/completions", {"model": "stories260K", "max_tokens": 2, "prompt": ["Once", "Upon"],
                                            "n": 2})):
        status, out = call(remote_server, "POST", path, body, timeout=300)
        assert status == 200, (path, out)
    status, out = call(remote_server, "POST", "/v1/chat/completions", {"model": "far-broken", **chat2}, timeout=300)
    assert status >= 500, out
    after = scrape(remote_server)

    def grew(name: str, model: str, engine: str) -> float:
        key = f'{name}{{engine="{engine}",model="{model}"}}'
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("jan_generations_total", "stories260K", "local") == 2 + 4
    assert grew("jan_generations_total", "far", "remote") == 2 + 2 + 4  # as the local model's
    assert grew("jan_requests_total", "far", "remote") == 2 + 2 + 4  # (the deprecated name tells the same)
    assert grew("jan_generations_total", "far-broken", "remote") == 2
    assert grew("jan_generations_failed_total", "far-broken", "remote") == 2
