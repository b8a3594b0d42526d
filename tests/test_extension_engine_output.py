"""A third-party engine's output is checked once, for every front end: what its author got wrong is an error naming
the engine and its extension, in each dialect's own shape, and the server goes on serving.

The kind: a message engine's deltas reached the dialects unchecked. A dict or a string for a delta, an exception of
the engine's own, or ``chat`` written without ``yield`` was an anonymous 500 ``internal_error``; a ``content`` of 42 or
a ``finish_reason`` of ``"banana"`` went out in the OpenAI and Ollama streams as it was; a ``choice`` past the
request's ``n`` was an extra choice.
"""

from __future__ import annotations

import json

import pytest

from jan.core import Extension, InferenceExtension
from jan.services.types import ChatDelta, CompletionDelta, ToolCallDelta
from jan.store import DataFolder
from extension_helpers import call
from server_helpers import http_post, raw_request, sse_events

BAD = {
    "dict": lambda: {"content": "hi"},
    "text": lambda: "hi",
    "int_content": lambda: ChatDelta(content=42),
    "bad_finish": lambda: ChatDelta(content="x", finish_reason="banana"),
    "bad_choice": lambda: ChatDelta(choice=7, content="x"),
    "dict_tool_call": lambda: ChatDelta(tool_calls=({"index": 0, "name": "f"},)),
    "tool_call_args": lambda: ChatDelta(tool_calls=(ToolCallDelta(index=0, id="c", name="f", arguments={"a": 1}),)),
}
BAD_COMPLETION = {"dict": lambda: {"text": "hi"}, "chat_delta": lambda: ChatDelta(content="x"),
                  "none_text": lambda: CompletionDelta(text=None)}


class OddEngine(Extension, InferenceExtension):
    """Serves model ``odd-<kind>``: one good delta, then what ``kind`` names."""

    name = "odd-engine-ext"
    engine_name = "odd"

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...
    async def loaded_models(self): return []
    async def model_status(self, model_id): return {"id": model_id, "status": "ready"}

    def chat(self, model, request):
        kind = model["id"].split("-", 1)[1]
        if kind == "no_yield":
            return self._no_yield()
        return self._chat(kind)

    async def _no_yield(self):  # what `async def chat` with `return [...]` instead of `yield` gives
        return [ChatDelta(content="hi")]

    async def _chat(self, kind):
        yield ChatDelta(content="ok ")
        if kind == "raises":
            raise RuntimeError("secret detail of the bug")
        if kind in BAD:
            yield BAD[kind]()
        yield ChatDelta(finish_reason="stop")

    async def complete(self, model, request):
        kind = model["id"].split("-", 1)[1]
        yield CompletionDelta(text="ok ")
        if kind in BAD_COMPLETION:
            yield BAD_COMPLETION[kind]()
        yield CompletionDelta(finish_reason="stop")

    async def embed(self, model, request): raise KeyError("oops")
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): raise KeyError("oops")
    async def detokenize(self, model, tokens): raise AttributeError("oops")


KINDS = [*BAD, "raises", "no_yield"]


class StatusBugs(Extension, InferenceExtension):
    """Says model ``sb-raises`` is loaded, then cannot tell its status; ``sb-junk``'s status is None."""

    name = "status-bugs-ext"
    engine_name = "status-bugs"

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...
    async def loaded_models(self): return ["sb-raises", "sb-junk"]

    async def model_status(self, model_id):
        if model_id == "sb-raises":
            raise RuntimeError("secret status bug")
        return None

    async def chat(self, model, request): yield ChatDelta(finish_reason="stop")
    async def complete(self, model, request): yield CompletionDelta(finish_reason="stop")
    async def embed(self, model, request): ...
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): return []
    async def detokenize(self, model, tokens): return ""


class LoadedBugs(StatusBugs):
    name = "loaded-bugs-ext"
    engine_name = "loaded-bugs"

    async def loaded_models(self): raise RuntimeError("secret listing bug")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    tmp = tmp_path_factory.mktemp("odd-engine")
    models = DataFolder(tmp / "data").models
    for kind in {*KINDS, *BAD_COMPLETION, "good"}:
        models.create({"id": f"odd-{kind}", "engine": "odd", "object": "model"})
    for model_id, engine in [("sb-raises", "status-bugs"), ("sb-junk", "status-bugs"), ("lb", "loaded-bugs")]:
        models.create({"id": model_id, "engine": engine, "object": "model"})
    with ServerThread(ServerConfig(data_folder=tmp / "data", models=[], n_threads=1),
                      extensions=[OddEngine(), StatusBugs(), LoadedBugs()]) as srv:
        yield srv


NAMED = "the engine 'odd' (extension 'odd-engine-ext')"
MESSAGES = [{"role": "user", "content": "hi"}]


def _message(path: str, answer: dict) -> str:
    """The error message of a dialect's error answer, its shape checked."""
    if path == "/v1/messages":
        assert answer["type"] == "error" and answer["error"]["type"] == "api_error", answer
        return answer["error"]["message"]
    if path == "/api/chat":
        assert isinstance(answer["error"], str), answer
        return answer["error"]
    assert answer["error"]["code"] == "extension_error", answer
    return answer["error"]["message"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": MESSAGES}),
    ("/v1/messages", {"messages": MESSAGES, "max_tokens": 5}),
    ("/api/chat", {"messages": MESSAGES, "stream": False}),
])
def test_a_malformed_or_failing_chat_is_an_error_naming_the_extension(server, kind, path, body):
    status, answer = call(server, "POST", path, {**body, "model": f"odd-{kind}"})
    assert status == 500, answer
    message = _message(path, answer)
    assert NAMED in message and "secret" not in message
    if kind == "no_yield":
        assert "not an async generator" in message


@pytest.mark.parametrize("kind", ["int_content", "bad_finish", "raises"])
def test_mid_stream_it_is_the_streams_error_event_and_nothing_malformed_went_out(server, kind):
    response = raw_request(server.base_url, http_post("/v1/chat/completions", {
        "model": f"odd-{kind}", "messages": MESSAGES, "stream": True}))
    events = sse_events(response.split(b"\r\n\r\n", 1)[1])
    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    assert NAMED in chunks[-1]["error"]["message"]
    for chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            assert choice["delta"].get("content") in (None, "ok ") and choice["finish_reason"] in (None, "stop")


def test_responses_fail_the_response_naming_the_extension(server):
    status, answer = call(server, "POST", "/v1/responses", {"model": "odd-dict", "input": "hi"})
    assert status == 200 and answer["status"] == "failed" and NAMED in answer["error"]["message"], answer


@pytest.mark.parametrize("kind", list(BAD_COMPLETION))
def test_completions_embeddings_and_tokens_are_checked_too(server, kind):
    status, answer = call(server, "POST", "/v1/completions", {"model": f"odd-{kind}", "prompt": "hi"})
    assert status == 500 and NAMED in _message("/v1/completions", answer), answer
    for path, body in [("/v1/embeddings", {"input": "hi"}), ("/v1/tokenize", {"content": "hi"}),
                       ("/v1/detokenize", {"tokens": [1]})]:
        status, answer = call(server, "POST", path, {**body, "model": "odd-good"})
        assert status == 500 and NAMED in _message(path, answer) and "oops" not in json.dumps(answer), (path, answer)


def test_the_engine_and_the_server_keep_serving(server):
    for path, body in [("/v1/chat/completions", {"messages": MESSAGES}), ("/api/chat", {"messages": MESSAGES,
                                                                                        "stream": False}),
                       ("/v1/completions", {"prompt": "hi"})]:
        status, answer = call(server, "POST", path, {**body, "model": "odd-good"})
        assert status == 200, answer


def test_an_engine_that_cannot_tell_its_models_fails_no_listing(server):
    """The kind: the listings ask every engine in turn, and one third-party engine whose ``model_status`` raised or
    answered None, or whose ``loaded_models`` raised, was a 500 for ``GET /v1/models`` (every model of every engine),
    ``/health``, ``/api/ps`` and ``GET /v1/system`` (which blamed the monitoring extension). Its models read as
    ``failed`` now, naming it; the others are listed as ever."""
    status, listing = call(server, "GET", "/v1/models")
    assert status == 200, listing
    by_id = {m["id"]: m for m in listing["data"]}
    assert "odd-good" in by_id and "lb" in by_id
    for model_id in ("sb-raises", "sb-junk"):
        status, model = call(server, "GET", f"/v1/models/{model_id}")
        assert status == 200, model
        assert model["state"] == "failed" and "the engine 'status-bugs' (extension 'status-bugs-ext')" in model[
            "error"] and "secret" not in json.dumps(model), model
    status, health = call(server, "GET", "/health")
    assert status == 200 and set(health["models"]) >= {"sb-raises", "sb-junk"}, health
    status, ps = call(server, "GET", "/api/ps")
    assert status == 200 and {m["name"].split(":")[0] for m in ps["models"]} >= {"sb-raises", "sb-junk"}, ps
    status, system = call(server, "GET", "/v1/system")
    assert status == 200, system
    states = {m["id"]: m["status"] for m in system["models"]}
    assert states.get("sb-raises") == "failed" and states.get("sb-junk") == "failed", system["models"]
    status, one = call(server, "GET", "/v1/system/models/sb-raises")
    assert status == 200 and one["status"] == "failed", one


async def test_an_engine_that_hangs_telling_its_models_is_left_behind_at_its_bound(monkeypatch):
    import asyncio

    import jan.core.engine_answers as answers

    release = asyncio.Event()

    class Hangs(StatusBugs):
        async def loaded_models(self):
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    pass  # swallowed: only a bound that does not wait for it holds
            return []

        async def model_status(self, model_id):
            return await self.loaded_models()

    monkeypatch.setattr(answers, "STATUS_TIMEOUT", 0.5)
    engine = Hangs()
    try:
        assert await answers.loaded_ids(engine) == []
        state = await answers.model_state(engine, "x")
        assert state["status"] == "failed" and "status-bugs-ext" in state["error"]
    finally:
        release.set()


def test_stopping_a_model_of_an_engine_that_cannot_tell_names_it(server):
    status, answer = call(server, "POST", "/v1/models/lb/stop")
    assert status == 500 and "the engine 'loaded-bugs' (extension 'loaded-bugs-ext')" in answer["error"]["message"]
    assert "secret" not in json.dumps(answer), answer
