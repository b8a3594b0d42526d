"""Remote inference end to end: jan (the "front") serves a model whose model.json says
``"engine": "openai"`` by proxying to a second jan (the "upstream") running stories260K.

Greedy decoding makes the upstream deterministic, so whatever the front answers
must equal what the upstream answers directly.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import openai
import pytest

from dialect_helpers import openai_client
from jan.store import DataFolder
from jan.testing.server import free_port
from server_helpers import start_server

CHAT = [{"role": "user", "content": "Tell me a story about a cat"}]
#: A model.json's own system prompt and stored turns (remote-mario's)
MARIO = [{"role": "system", "content": "You are Mario."}, {"role": "user", "content": "Who are you?"},
         {"role": "assistant", "content": "It's-a me!"}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("upstream"), [stories_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory, stories_path, upstream):
    tmp = tmp_path_factory.mktemp("front")
    srv = start_server(tmp, [stories_path])
    models = DataFolder(tmp / "data").models
    models.create({"id": "remote-stories", "engine": "openai", "name": "stories260K, served by another jan",
                   "settings": {"base_url": upstream.base_url + "/v1", "model": "stories260K", "api_key": "unused"},
                   "parameters": {"temperature": 0}})
    models.create({"id": "remote-missing", "engine": "openai",
                   "settings": {"base_url": upstream.base_url + "/v1", "model": "no-such-model"}})
    models.create({"id": "remote-hot", "engine": "openai", "parameters": {"temperature": 5},
                   "settings": {"base_url": upstream.base_url + "/v1", "model": "stories260K"}})
    models.create({"id": "remote-mario", "engine": "openai", "system": MARIO[0]["content"], "messages": MARIO[1:],
                   "settings": {"base_url": upstream.base_url + "/v1", "model": "stories260K", "api_key": "unused"}})
    models.create({"id": "remote-down", "engine": "openai",
                   "settings": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}})
    yield srv
    srv.stop()


def client(srv) -> openai.OpenAI:
    return openai_client(srv, timeout=60)


def call(srv, method: str, path: str, body=None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def upstream_chat(upstream, **kw) -> str:
    result = client(upstream).chat.completions.create(model="stories260K", messages=CHAT, temperature=0, **kw)
    return result.choices[0].message.content


def switch(srv, name: str, enabled: bool) -> dict:
    status, record = call(srv, "POST", f"/v1/extensions/{name}/{'enable' if enabled else 'disable'}")
    assert status == 200, record
    assert record["enabled"] is enabled and record["state"] == ("loaded" if enabled else "disabled"), record
    return record


def test_chat_through_the_remote_engine_equals_the_upstream(front, upstream):
    expected = upstream_chat(upstream, max_tokens=30)
    assert expected  # the upstream said something

    result = client(front).chat.completions.create(model="remote-stories", messages=CHAT, max_tokens=30)
    assert result.model == "remote-stories"
    assert result.choices[0].message.content == expected
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 30

    stream = client(front).chat.completions.create(model="remote-stories", messages=CHAT, max_tokens=30, stream=True,
                                                   stream_options={"include_usage": True})
    chunks = list(stream)
    assert {c.model for c in chunks} == {"remote-stories"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == 30


def test_completions_and_tokenize_through_the_remote_engine(front, upstream):
    direct = client(upstream).completions.create(model="stories260K", prompt="Once upon a time", max_tokens=20,
                                                 temperature=0)
    via = client(front).completions.create(model="remote-stories", prompt="Once upon a time", max_tokens=20)
    assert via.choices[0].text == direct.choices[0].text and via.model == "remote-stories"

    status, tokens = call(front, "POST", "/v1/tokenize", {"model": "remote-stories", "content": "Once upon a time"})
    _, direct_tokens = call(upstream, "POST", "/v1/tokenize", {"model": "stories260K", "content": "Once upon a time"})
    assert status == 200 and tokens == direct_tokens and tokens["tokens"]
    status, text = call(front, "POST", "/v1/detokenize", {"model": "remote-stories", "tokens": tokens["tokens"]})
    assert status == 200 and text["content"].strip() == "Once upon a time"


def test_disabling_the_local_engine_and_enabling_the_remote_one(front, upstream):
    expected = upstream_chat(upstream, max_tokens=12)
    local_ok = client(front).chat.completions.create(model="stories260K", messages=CHAT, max_tokens=12, temperature=0)
    assert local_ok.choices[0].message.content == expected  # same model file, same answer, locally

    switch(front, "remote", False)
    try:
        status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-stories", "messages": CHAT})
        assert status == 400 and body["error"]["code"] == "engine_unavailable"
        assert "'openai'" in body["error"]["message"]

        switch(front, "llamacpp", False)
        switch(front, "remote", True)

        # the remote model now answers through the upstream...
        result = client(front).chat.completions.create(model="remote-stories", messages=CHAT, max_tokens=12)
        assert result.choices[0].message.content == expected
        streamed = client(front).chat.completions.create(model="remote-stories", messages=CHAT, max_tokens=12,
                                                         stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected

        # ...while the local model gets a clear error, streaming or not
        for stream in (False, True):
            status, body = call(front, "POST", "/v1/chat/completions",
                                {"model": "stories260K", "messages": CHAT, "stream": stream})
            assert status == 400, body
            assert body["error"]["code"] == "engine_unavailable" and body["error"]["param"] == "model"
            assert "llama.cpp" in body["error"]["message"] and "stories260K" in body["error"]["message"]
            # and it says which switch turned the engine off, and how to turn it back on
            assert "the extension 'llamacpp' that provides it is disabled: `jan extensions enable llamacpp`" \
                in body["error"]["message"], body
        _, listing = call(front, "GET", "/v1/extensions")
        states = {r["name"]: r["state"] for r in listing["data"]}
        assert states["llamacpp"] == "disabled" and states["remote"] == "loaded"
    finally:
        switch(front, "llamacpp", True)
        switch(front, "remote", True)
    # the local engine is back at runtime (it loads the model again on demand)
    again = client(front).chat.completions.create(model="stories260K", messages=CHAT, max_tokens=12, temperature=0)
    assert again.choices[0].message.content == expected


def test_a_remote_models_prompt_tokens_are_counted_by_its_server(front, upstream):
    # count_tokens (what Claude Code asks before its turns), the Responses API's input_tokens and chat's were a 400
    # "renders its prompts itself" for a remote model: its server (jan, llama-server) counts a chat body
    import anthropic

    status, direct = call(upstream, "POST", "/v1/chat/completions/input_tokens",
                          {"model": "stories260K", "messages": CHAT})
    assert status == 200 and direct["input_tokens"] > 0, direct
    status, counted = call(front, "POST", "/v1/chat/completions/input_tokens", {"model": "remote-stories", "messages": CHAT})
    assert status == 200 and counted == direct, counted
    claude = anthropic.Anthropic(base_url=front.base_url, api_key="-")
    assert claude.messages.count_tokens(model="remote-stories", messages=CHAT).input_tokens == direct["input_tokens"]
    responses = client(front).responses.input_tokens.count(model="remote-stories", input=CHAT[0]["content"])
    assert responses.input_tokens == direct["input_tokens"]
    # the model's own system prompt and turns are counted as its chat sends them
    status, mario = call(front, "POST", "/v1/chat/completions/input_tokens", {"model": "remote-mario", "messages": CHAT})
    status_up, mario_up = call(upstream, "POST", "/v1/chat/completions/input_tokens",
                               {"model": "stories260K", "messages": MARIO + CHAT})
    assert status == status_up == 200 and mario["input_tokens"] == mario_up["input_tokens"], (mario, mario_up)
    # an upstream that counts none (OpenAI's API has no such route) is a clear 400, and a missing model its 404
    status, body = call(front, "POST", "/v1/chat/completions/input_tokens", {"model": "remote-missing", "messages": CHAT})
    assert status == 404, body


def test_upstream_problems_are_clear_errors(front):
    status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-missing", "messages": CHAT})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert "no-such-model" in body["error"]["message"]

    status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-down", "messages": CHAT,
                                                                "stream": True})
    assert status == 502 and body["error"]["code"] == "upstream_unreachable"
    assert "cannot connect" in body["error"]["message"] and "remote-down" in body["error"]["message"]

    # model.json parameters out of range: a 400 naming them where they live, as a local model's (judged here, before
    # the upstream is asked; an upstream's own refusals: tests/test_extensions_remote.py)
    status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-hot", "messages": CHAT})
    assert status == 400, body
    assert body["error"]["param"] == "parameters.temperature" and "model 'remote-hot'" in body["error"]["message"]


def test_models_api_and_monitoring_see_the_remote_model(front):
    status, model = call(front, "POST", "/v1/models/remote-stories/start")
    assert status == 200 and model["state"] == "ready", model
    status, model = call(front, "POST", "/v1/models/remote-down/start")
    assert status == 500 and "cannot connect" in model["error"]["message"]
    _, listing = call(front, "GET", "/v1/models")
    states = {m["id"]: m["state"] for m in listing["data"]}
    assert states["remote-stories"] == "ready" and states["remote-down"] == "failed"
    # a request of its own for the metrics to count (the test holds when run alone, as when run after others)
    status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-stories", "messages": CHAT,
                                                                "max_tokens": 4})
    assert status == 200, body

    status, system = call(front, "GET", "/v1/system")
    assert status == 200
    remote = next(m for m in system["models"] if m["id"] == "remote-stories")
    assert remote["engine"] == "openai" and remote["status"] == "ready" and remote["remote_model"] == "stories260K"
    assert remote["metrics"]["requests_total"] >= 1
    assert "api_key" not in json.dumps(system)
    status, one = call(front, "GET", "/v1/system/models/remote-stories")
    assert status == 200 and one["engine"] == "openai" and one["metrics"]["requests_total"] >= 1


def test_ollama_tells_a_remote_models_upstream_on_every_object(front, upstream):
    """As Ollama marks its cloud models: ``remote_model`` and ``remote_host`` (the upstream's origin, its port
    written out, never its path or key) after ``model`` in every ``/api/chat`` and ``/api/generate`` object, and in
    ``/api/tags`` and ``/api/show``; a local model has neither."""
    port = upstream.base_url.rsplit(":", 1)[1]
    want = {"remote_model": "stories260K", "remote_host": f"http://127.0.0.1:{port}"}
    for path, body in (("/api/chat", {"messages": CHAT}), ("/api/generate", {"prompt": "Once"})):
        status, whole = call(front, "POST", path, {"model": "remote-stories", "stream": False,
                                                   "options": {"num_predict": 3}, **body})
        assert status == 200, whole
        assert list(whole)[:4] == ["model", "remote_model", "remote_host", "created_at"], whole
        assert {k: whole[k] for k in want} == want
        request = urllib.request.Request(front.base_url + path, method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "remote-stories", "options": {"num_predict": 3},
                                                          **body}).encode())
        with urllib.request.urlopen(request, timeout=60) as resp:
            objects = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        assert objects and objects[-1]["done"] is True
        assert all({k: o[k] for k in want} == want for o in objects), objects
        status, local = call(front, "POST", path, {"model": "stories260K", "stream": False,
                                                   "options": {"num_predict": 1}, **body})
        assert status == 200 and not set(want) & set(local), local
    _, tags = call(front, "GET", "/api/tags")
    listed = {m["model"]: m for m in tags["models"]}
    assert {k: listed["remote-stories:latest"][k] for k in want} == want
    assert not set(want) & set(listed["stories260K:latest"])
    _, shown = call(front, "POST", "/api/show", {"model": "remote-stories"})
    assert {k: shown[k] for k in want} == want and "unused" not in json.dumps(shown)


def test_a_remote_models_own_prompt_goes_upstream(front, upstream):
    """model.json ``system``/``messages`` are applied before any engine sees the request: the upstream is sent them
    (its prompt is the one the messages written out make there), and a request's own system message replaces the
    model's."""
    def prompt_tokens(srv, model, messages):
        return client(srv).chat.completions.create(model=model, messages=messages, max_tokens=1).usage.prompt_tokens

    assert prompt_tokens(front, "remote-mario", CHAT) == prompt_tokens(upstream, "stories260K", MARIO + CHAT)
    own = [{"role": "system", "content": "You are Luigi, his brother."}]
    assert prompt_tokens(front, "remote-mario", own + CHAT) == prompt_tokens(upstream, "stories260K",
                                                                              own + MARIO[1:] + CHAT)
    assert prompt_tokens(front, "remote-mario", CHAT) != prompt_tokens(upstream, "stories260K", CHAT)


def test_media_in_a_remote_models_prompt_objects_are_refused(front):
    """An upstream's completion and embedding APIs take text: a prompt object's image would be lost unsaid, so
    ``/completion`` and ``/embedding`` refuse it alike (400, naming the field), before anything goes upstream."""
    # (an item that is a PNG by its bytes: one that is no image nor audio is refused as such before the model's
    # abilities are looked at, tests/test_server_media_completion.py)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    prompt = {"prompt_string": "Look: <__media__>", "multimodal_data": [base64.b64encode(png).decode()]}
    for path, field in (("/completion", "prompt"), ("/embedding", "input")):
        status, body = call(front, "POST", path, {"model": "remote-stories", field: prompt})
        assert status == 400, (path, body)
        assert body["error"]["message"].startswith(f"{field}: model 'remote-stories' takes no images or audio"), body


def test_a_remote_model_tells_no_timings_and_refuses_post_sampling_probs(front):
    """Its engine times nothing here (the upstream's own timings do not come through the OpenAI API): no
    llama-server ``timings`` rather than zeros; and its logprobs are the model's own, so ``post_sampling_probs``,
    which would tell them as the sampler's, is a 400 naming it."""
    status, body = call(front, "POST", "/v1/chat/completions", {"model": "remote-stories", "max_tokens": 2,
                                                                "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and "timings" not in body, body
    status, body = call(front, "POST", "/completion", {"model": "remote-stories", "prompt": "Once", "n_predict": 2,
                                                       "n_probs": 2, "post_sampling_probs": True})
    assert status == 400 and body["error"]["message"].startswith("post_sampling_probs: model 'remote-stories'"), body


def test_a_remote_model_refuses_post_sampling_probs_on_a_chat(front):
    # (a chat takes it since it tells llama-server's probs: a remote model's logprobs are the model's own)
    status, body = call(front, "POST", "/v1/chat/completions", {
        "model": "remote-stories", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True, "post_sampling_probs": True})
    assert status == 400 and body["error"]["message"].startswith("post_sampling_probs: model 'remote-stories'"), body
    status, body = call(front, "POST", "/v1/chat/completions", {
        "model": "remote-stories", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}],
        "post_sampling_probs": True})  # (without logprobs it asks nothing)
    assert status == 200, body


def test_a_remote_models_llama_server_meta_is_null(front):
    # (llama-server's /v1/models says its meta may be null: a remote model has no GGUF to tell its sizes from, and
    # its entry says so rather than leaving the key out, which a client reading it would fail on)
    status, listing = call(front, "GET", "/v1/models")
    assert status == 200, listing
    entry = next(m for m in listing["data"] if m["id"] == "remote-stories")
    assert "meta" in entry and entry["meta"] is None, entry


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "Once"}), ("/completion", {"prompt": "Once"})])
@pytest.mark.parametrize("field", ["n_indent", "t_max_predict_ms"])
def test_a_remote_model_refuses_the_output_rules_of_code_completion(front, path, body, field):
    # (jan applies n_indent and t_max_predict_ms on a local model's raw output; a remote model's is its server's,
    # which jan cannot stop mid-line: a 400 naming the field, never dropped; off, they ask nothing)
    status, answer = call(front, "POST", path, {"model": "remote-stories", "max_tokens": 2, field: 4} | body)
    assert status == 400 and answer["error"]["message"].startswith(f"{field}: model 'remote-stories'"), answer
    status, answer = call(front, "POST", path, {"model": "remote-stories", "max_tokens": 2, field: 0} | body)
    assert status == 200, answer
