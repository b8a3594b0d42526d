"""A request whose client leaves while its model's load waits for room gives back the pool's claim on that model.

The fault this covers (found by a busy-server probe, ``--max-loaded-models 1``): a request for model B, with model A
busy, waited for room; its client left. The load went on (another request may wait for the same load) and, once A
went idle, loaded B with a claim for the request that had gone: B was held as if that request were coming, for the
pool's claim grace (10 s). Every request for A that came meanwhile waited behind it — a 5-token chat answered in
10 s, then 10 s again for the next client that had left. Every dialect's generation and embedding reaches the model
through the llama.cpp extension's ``acquire``: the claim is given back there (its load's thread undone, as
``undone_if_abandoned`` undoes any work an abandoned await started), and so is one whose chat template refused it.

The claim's grace is stretched so that it cannot lapse on a slow machine: on the old code B stays held.

Two more faults of the kind, each over every dialect's routes: a route whose wait for a load watched no client (Ollama's,
llama-server's, the token counts and renders: ``jan.server.disconnect.unless_stopping`` now watches it, as every
generation's wait is watched) ran to the load's end for a client that had gone, and a request that ended after its
model was handed out and before its work began on it (its client gone, or a background run cancelled, while its
template or tokenizing waited for a worker) held the model for the grace (``LocalModel.give_back``). The OpenAI chat
and completions, OpenAI embeddings, Anthropic messages and Responses cases of the first watched their client before
these fixes too: they stand for the behaviour the others now share.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import types

import httpx
import pytest

from jan.engine import registry
from jan.server.keys import MANAGER, SERVICES

from server_helpers import http_post, start_server

GENEROUS_S = 300  # bounds for joins and waits: a busy 2-core machine, never a pacing
TINY = "llama-2-tiny-random"


@pytest.fixture(autouse=True)
def claims_hold(monkeypatch):
    """A hand-out holds its model until its request is submitted (never lapses during a test)."""
    monkeypatch.setattr(registry, "CLAIM_GRACE_S", 10 * GENEROUS_S)


def test_a_load_whose_client_left_leaves_no_claim(tmp_path, stories_path, tiny_random_path):
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=2, n_ctx=256)
    try:
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        engine.unload(TINY)
        engine.max_loaded = 1  # the server's --max-loaded-models 1 (two -m would be refused at start with it)
        held = engine.get("stories260K", claim=True)  # a request on its way to it: no room for another model

        async def acquire_tiny() -> asyncio.Task:
            target = await server.app[SERVICES].models.resolve(TINY)
            return asyncio.ensure_future(target.engine.acquire(target.model))  # what every dialect's request does

        task = server.call(acquire_tiny())
        with engine._changed:
            assert engine._changed.wait_for(lambda: len(engine._waiting) == 1, GENEROUS_S), "the load never waited"

        async def client_leaves() -> None:  # (the server cancels a request's await when its client goes)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        server.call(client_leaves())
        done = held.generate("Once", max_tokens=2, temperature=0)  # the held request: the room frees
        assert done.usage.completion_tokens >= 1
        for thread in [t for t in threading.enumerate() if t.name == f"jan-load-{TINY}"]:
            thread.join(GENEROUS_S)  # the load ended (and what it claimed was given back) on its own thread
            assert not thread.is_alive()
        assert engine.loaded() == [TINY]
        # nobody is coming for it: a keep_alive 0 unloads it now (on the old code, not before the claim lapsed)
        assert engine.unload_when_idle(TINY) is True
        assert engine.loaded() == []
    finally:
        server.stop()


def test_a_claim_given_back_is_the_claimed_model_s_only(stories_path, tiny_random_path):
    """``release_claim`` gives back one claim on the model it names, of that very load: a claim taken on a model
    loaded again since (another load of the same id), or one not taken, is left alone."""
    import jan

    with jan.ModelPool(max_loaded=2, n_ctx=256, n_threads=1) as pool:
        first = pool.load("a", stories_path, claim=True)
        pool.get("a", claim=True)  # two requests on their way
        pool.release_claim("a", first)  # one of them will not come
        assert _held(pool, "a")  # the other still holds it
        pool.release_claim("a", first)
        pool.release_claim("a", first)  # (no claim left: nothing more)
        pool.release_claim("b", first)  # (not loaded: nothing)
        assert not _held(pool, "a")
        pool.unload("a")
        again = pool.load("a", stories_path, claim=True)
        pool.release_claim("a", first)  # the first load's claim: not this one's
        assert _held(pool, "a")
        pool.release_claim("a", again)
        assert not _held(pool, "a")


def _held(pool, model_id: str) -> bool:
    """Whether unloading ``model_id`` now would fail a request (one running, or one it was handed out for)."""
    with pool._lock:
        return pool._in_use(pool._models[model_id])


# -- every route that may wait for a model's load watches its client (jan.server.disconnect.unless_stopping) --------
HI = [{"role": "user", "content": "Hi"}]
#: Each dialect's routes that wait for a model's load before they answer: (path, body) for the model TINY.
LOADING_ROUTES = [
    ("/v1/chat/completions", {"model": TINY, "messages": HI, "max_tokens": 2}),
    ("/v1/completions", {"model": TINY, "prompt": "Hi", "max_tokens": 2}),
    ("/v1/embeddings", {"model": TINY, "input": "Hi"}),
    ("/apply-template", {"model": TINY, "messages": HI}),
    ("/v1/chat/completions/input_tokens", {"model": TINY, "messages": HI}),
    ("/v1/messages", {"model": TINY, "messages": HI, "max_tokens": 2}),
    ("/v1/messages/count_tokens", {"model": TINY, "messages": HI}),
    ("/v1/responses", {"model": TINY, "input": "Hi", "max_output_tokens": 16, "store": False}),
    ("/v1/responses/input_tokens", {"model": TINY, "input": "Hi"}),
    ("/api/chat", {"model": TINY, "messages": HI, "stream": False, "options": {"num_predict": 2}}),
    ("/api/chat", {"model": TINY, "messages": HI, "stream": True, "options": {"num_predict": 2}}),
    ("/api/generate", {"model": TINY, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}),
    ("/api/generate", {"model": TINY}),  # (nothing to generate: Ollama's explicit load)
    ("/api/embed", {"model": TINY, "input": "Hi"}),
    ("/api/embeddings", {"model": TINY, "prompt": "Hi"}),
    ("/completion", {"model": TINY, "prompt": "Hi", "n_predict": 2}),
    ("/embedding", {"model": TINY, "content": "Hi"}),
    ("/tokenize", {"model": TINY, "content": "Hi"}),
    ("/detokenize", {"model": TINY, "tokens": [1, 2]}),
    ("/v1/rerank", {"model": TINY, "query": "Hi", "documents": ["a", "b"]}),  # (TINY a reranker: _tiny_for)
    # fill-in-the-middle (TINY is then a model with FIM tokens: _tiny_for)
    ("/infill", {"model": TINY, "input_prefix": "def f():", "input_suffix": "\n", "n_predict": 2}),
    ("/v1/completions", {"model": TINY, "prompt": "def f():", "suffix": "\n", "max_tokens": 2}),
    ("/api/generate", {"model": TINY, "prompt": "def f():", "suffix": "\n", "stream": False,
                       "options": {"num_predict": 2}}),
]


def _fills_in(body: dict) -> bool:
    return "suffix" in body or "input_suffix" in body


def _tiny_for(body: dict, tmp_path, request):
    """The model TINY's file for a request: one with Qwen2.5-Coder's FIM tokens where it fills in the middle, a
    reranker where it reranks (a model that cannot is refused before its load), else the tiny random llama."""
    from jan.testing.gguf_models import write_qwen25_coder_model, write_reranker_from_bert

    if _fills_in(body):
        return write_qwen25_coder_model(tmp_path / f"{TINY}.gguf")
    if "query" in body:
        return write_reranker_from_bert(request.getfixturevalue("minilm_path"), tmp_path / f"{TINY}.gguf")
    return request.getfixturevalue("tiny_random_path")


def _route_id(case) -> str:
    path, body = case
    return (path + ("-stream" if body.get("stream") else "") + ("-load" if len(body) == 1 else "")
            + ("-fim" if _fills_in(body) and path != "/infill" else "") + ("-rerank" if "query" in body else ""))


def _client_closed(server, path: str) -> float:
    """``/metrics``' count of ``POST path`` requests whose client left (499)."""
    text = httpx.get(server.base_url + "/metrics", timeout=GENEROUS_S).text
    sample = f'jan_http_requests_total{{method="POST",route="{path}",status="499"}} '
    return sum(float(line[len(sample):]) for line in text.splitlines() if line.startswith(sample))


@pytest.mark.parametrize("case", LOADING_ROUTES, ids=_route_id)
def test_a_client_gone_during_a_load_is_noticed_at_once_by_every_route(tmp_path, stories_path, request,
                                                                      case):
    """A request whose model's load waits for room, and whose client leaves meanwhile, ends then in every dialect: its
    499 is counted while the load still waits (before, Ollama's, llama-server's and the token counters' waits ran to
    the load's end, then tokenized or generated for nobody), and once the load goes ahead nothing runs on the model
    for it and no claim holds it."""
    path, body = case
    server = start_server(tmp_path, [stories_path, _tiny_for(body, tmp_path, request)], max_loaded_models=2,
                          n_ctx=256)
    try:
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        engine.unload(TINY)
        engine.max_loaded = 1
        held = engine.get("stories260K", claim=True)  # a request on its way to it: no room for another model
        host, port = server.base_url.split("//")[1].split(":")
        client = socket.create_connection((host, int(port)), timeout=GENEROUS_S)
        client.sendall(http_post(path, body, host=f"{host}:{port}"))
        with engine._changed:
            assert engine._changed.wait_for(lambda: len(engine._waiting) == 1, GENEROUS_S), "the load never waited"
        client.close()  # the client leaves while the load waits
        deadline = time.monotonic() + 60  # (a bound, never a pacing: the handler notices within a poll of the socket)
        while _client_closed(server, path) < 1:
            assert time.monotonic() < deadline, "the request's end waited for its model's load"
            time.sleep(0.05)
        assert len(engine._waiting) == 1  # noticed while the load still waits, not at its end
        done = held.generate("Once", max_tokens=2, temperature=0)  # the room frees: the load goes ahead
        assert done.usage.completion_tokens >= 1
        for thread in [t for t in threading.enumerate() if t.name == f"jan-load-{TINY}"]:
            thread.join(GENEROUS_S)
            assert not thread.is_alive()
        # (a route whose own await the cancel cut off before the load began leaves nothing loaded: also sound)
        if TINY in engine.loaded():
            assert not _held(engine, TINY)  # nobody is coming for it: no claim holds it for the grace
            assert engine.get(TINY).activity() == (0, False)  # nothing generated (nor embedded) for nobody
    finally:
        server.stop()


# -- a request ended between its model's hand-out and its submit gives the hand-out's claim back at once -----------
LONG_PROMPT = "Once upon a time " * 40  # (past SUBMIT_ON_LOOP_CHARS: tokenized and submitted on a worker)
GRAMMAR = 'root ::= "a"'  # (a grammar is submitted on a worker too)
#: (path, body, the service step that is stalled: its worker never comes) of each dialect's routes that are handed
#: a model and submit to it (or hold it: a render, an embedding) on a worker.
HANDED_OUT_ROUTES = [
    ("/v1/chat/completions", {"model": TINY, "messages": HI, "max_tokens": 2}, "chat"),
    ("/v1/chat/completions", {"model": TINY, "messages": HI, "max_tokens": 2, "stream": True}, "chat"),
    ("/apply-template", {"model": TINY, "messages": HI}, "chat"),
    ("/v1/chat/completions/input_tokens", {"model": TINY, "messages": HI}, "chat"),
    ("/v1/messages", {"model": TINY, "messages": HI, "max_tokens": 2}, "chat"),
    ("/v1/messages/count_tokens", {"model": TINY, "messages": HI}, "chat"),
    ("/v1/responses", {"model": TINY, "input": "Hi", "max_output_tokens": 16, "store": False}, "chat"),
    ("/v1/responses/input_tokens", {"model": TINY, "input": "Hi"}, "chat"),
    ("/api/chat", {"model": TINY, "messages": HI, "stream": False, "options": {"num_predict": 2}}, "chat"),
    ("/api/generate", {"model": TINY, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}, "chat"),
    ("/v1/completions", {"model": TINY, "prompt": LONG_PROMPT, "max_tokens": 2}, "completions"),
    ("/completion", {"model": TINY, "prompt": "Hi", "n_predict": 2, "grammar": GRAMMAR}, "completions"),
    ("/api/generate", {"model": TINY, "prompt": LONG_PROMPT, "raw": True, "stream": False}, "completions"),
    ("/v1/embeddings", {"model": TINY, "input": "Hi"}, "embeddings"),
    ("/api/embed", {"model": TINY, "input": "Hi"}, "embeddings"),
    ("/api/embeddings", {"model": TINY, "prompt": "Hi"}, "embeddings"),
    ("/embedding", {"model": TINY, "content": "Hi"}, "embeddings"),
    ("/v1/rerank", {"model": TINY, "query": "Hi", "documents": ["a", "b"]}, "embeddings"),
    ("/rerank", {"model": TINY, "query": "Hi", "texts": ["a", "b"]}, "embeddings"),
    # the FIM prompt is built on a worker after the model's hand-out (jan.services.infill)
    ("/infill", {"model": TINY, "input_prefix": "def f():", "input_suffix": "\n", "n_predict": 2}, "infill"),
    ("/infill", {"model": TINY, "input_prefix": "def f():", "input_suffix": "\n", "n_predict": 2, "stream": True},
     "infill"),
    ("/v1/completions", {"model": TINY, "prompt": "def f():", "suffix": "\n", "max_tokens": 2}, "infill"),
    ("/api/generate", {"model": TINY, "prompt": "def f():", "suffix": "\n", "stream": False,
                       "options": {"num_predict": 2}}, "infill"),
]


def _stall(monkeypatch, step: str) -> threading.Event:
    """The worker the service's ``step`` waits for after the model's hand-out never comes (as on a busy machine,
    where a request's template or tokenizing waits behind others'): set once a request waits for it."""
    from jan.services import chat, completions, embeddings, infill

    waiting = threading.Event()

    async def never(*_args, **_kwargs):
        waiting.set()
        await asyncio.get_running_loop().create_future()  # (until the request is cancelled)

    if step == "chat":
        monkeypatch.setattr(chat, "off_loop_for", never)
    elif step == "completions":
        monkeypatch.setattr(completions, "off_loop", never)
    elif step == "infill":  # (its prompt's worker: the module's asyncio.to_thread)
        monkeypatch.setattr(infill, "asyncio", types.SimpleNamespace(to_thread=never))
    else:
        monkeypatch.setattr(embeddings, "_workers", type("Stalled", (), {"run": staticmethod(never)})())
    return waiting


@pytest.mark.parametrize("path, body, step", HANDED_OUT_ROUTES,
                         ids=[f"{p}-{s}" + ("-stream" if b.get("stream") else "") for p, b, s in HANDED_OUT_ROUTES])
def test_a_request_gone_before_its_submit_gives_its_claim_back(tmp_path, stories_path, request,
                                                              monkeypatch, path, body, step):
    """A request whose client leaves after its model was handed out to it (claimed: not unloaded for another
    model) and before its work began on it — its template, tokenizing or embedding waiting for a worker — gives the
    claim back at once, in every dialect: before, the model stayed held for nobody until the claim lapsed, and a
    load waiting for room (or a keep_alive 0) waited that long."""
    server = start_server(tmp_path, [stories_path, _tiny_for(body, tmp_path, request)], max_loaded_models=2,
                          n_ctx=256)
    try:
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        waiting = _stall(monkeypatch, step)
        host, port = server.base_url.split("//")[1].split(":")
        client = socket.create_connection((host, int(port)), timeout=GENEROUS_S)
        client.sendall(http_post(path, body, host=f"{host}:{port}"))
        assert waiting.wait(GENEROUS_S), "the request never reached its worker"
        assert _held(engine, TINY)  # handed out: claimed for the request on its way
        client.close()  # the client leaves before the request's work began
        deadline = time.monotonic() + 60  # (a bound, never a pacing: the handler notices within a poll of the socket)
        while _held(engine, TINY):
            assert time.monotonic() < deadline, "the claim of a request that had gone still held the model"
            time.sleep(0.05)
        assert engine.get(TINY).activity() == (0, False)  # nothing began on the model
        assert engine.unload_when_idle(TINY) is True  # a keep_alive 0 unloads it now, not once the claim lapses
    finally:
        server.stop()


def _background_response(base: str) -> str:
    """A background Responses request, cancelled by its cancel endpoint once it waits: its cancel's path."""
    made = httpx.post(base + "/v1/responses", json={"model": TINY, "input": "Hi", "max_output_tokens": 16,
                                                    "background": True, "store": True}, timeout=GENEROUS_S)
    assert made.status_code == 200, made.text
    return f"/v1/responses/{made.json()['id']}/cancel"


def _assistants_run(base: str) -> str:
    """An Assistants run (a thread made with it), cancelled by its cancel endpoint once it waits."""
    assistant = httpx.post(base + "/v1/assistants", json={"model": TINY}, timeout=GENEROUS_S)
    assert assistant.status_code == 200, assistant.text
    run = httpx.post(base + "/v1/threads/runs", json={"assistant_id": assistant.json()["id"], "max_completion_tokens": 2,
                                                      "thread": {"messages": HI}}, timeout=GENEROUS_S)
    assert run.status_code == 200, run.text
    return f"/v1/threads/{run.json()['thread_id']}/runs/{run.json()['id']}/cancel"


@pytest.mark.parametrize("start", [_background_response, _assistants_run], ids=["responses", "assistants"])
def test_a_background_run_cancelled_before_its_submit_gives_its_claim_back(tmp_path, stories_path, tiny_random_path,
                                                                           monkeypatch, start):
    """As a request whose client left: a background response or an Assistants run cancelled after its model was
    handed out and before its work began on it gives the claim back at once."""
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=2, n_ctx=256)
    try:
        engine = server.app[MANAGER].get_inference("llama.cpp").engine
        waiting = _stall(monkeypatch, "chat")
        cancel = start(server.base_url)
        assert waiting.wait(GENEROUS_S), "the run never reached its worker"
        assert _held(engine, TINY)
        cancelled = httpx.post(server.base_url + cancel, timeout=GENEROUS_S)
        assert cancelled.status_code == 200, cancelled.text
        deadline = time.monotonic() + 60  # (a bound, never a pacing)
        while _held(engine, TINY):
            assert time.monotonic() < deadline, "the claim of a cancelled run still held the model"
            time.sleep(0.05)
        assert engine.get(TINY).activity() == (0, False)
        assert engine.unload_when_idle(TINY) is True
    finally:
        server.stop()
