"""llama-server's ``--alias`` and ``--tags`` (0.3.36): other names for the served model, which requests may give,
and informational labels; its ``/v1/models`` lists both on each model (``aliases``, ``tags``: lists, empty where
none). jan serve had neither flag and its listing neither field. Now ``jan serve -m X --alias a,b --tags t`` names
the one model so (its id stays the data folder's) and every listed model has both fields."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from jan.cli.serve import _names, serve
from jan.server.config import ServerConfig
from jan.services.models import ModelService
from jan.testing.server import ServerThread

#: (a Hugging Face style name with a slash and a tag, as clients that name models by their repo send them)
ALIASES = ["gpt-4o-mini", "code", "org/stories:latest"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, tiny_path):
    data = tmp_path_factory.mktemp("aliases") / "data"
    # the other model is in the data folder too (imported by a first start), not named by the aliases
    ServerThread(ServerConfig(data_folder=data, models=[str(tiny_path)], n_ctx=256, n_threads=1)).__enter__().stop()
    srv = ServerThread(ServerConfig(data_folder=data, models=[str(stories_path)], aliases=ALIASES,
                                    tags=["chat", "small"], n_ctx=512, n_threads=1)).__enter__()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tiny_path():
    from pathlib import Path

    path = Path("/work/shared/models/llama-2-tiny-random.gguf")
    if not path.exists():
        pytest.skip("llama-2-tiny-random.gguf is not in the shared models")
    return path


def test_models_list_the_aliases_and_tags(server):
    listing = httpx.get(server.base_url + "/v1/models", timeout=60).json()["data"]
    stories = next(m for m in listing if m["id"] == "stories260K")
    assert sorted(stories["aliases"]) == sorted(ALIASES) and stories["tags"] == ["chat", "small"]
    for other in listing:
        if other["id"] != "stories260K":  # (lists all the same: none given, its model.json's labels)
            assert other["aliases"] == [] and isinstance(other["tags"], list), other


@pytest.mark.parametrize("name", ALIASES)
def test_a_request_may_name_the_model_by_an_alias(server, name):
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    chat = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)
    assert chat.status_code == 200, chat.text
    native = httpx.post(server.base_url + "/completion", json={"model": name, "prompt": "Once", "n_predict": 2},
                        timeout=120)
    assert native.status_code == 200, native.text
    one = httpx.get(f"{server.base_url}/v1/models/{name}", timeout=60).json()
    assert one["id"] == "stories260K" and sorted(one["aliases"]) == sorted(ALIASES)


def test_a_name_with_slashes_reaches_the_models_routes_written_as_it_is(server):
    """``GET /v1/models/org/stories:latest`` (the slash unescaped, as curl, httpx f-strings and older SDKs send it)
    was the bare 404 "Unknown route" though requests may name the model so; now every ``/v1/models/{id}`` route
    takes the name whole, and a name no model has is the OpenAI ``model_not_found`` 404."""
    base = server.base_url + "/v1/models/"
    assert httpx.get(base + "org/stories:latest", timeout=60).json()["id"] == "stories260K"
    assert httpx.get(base + "org%2Fstories:latest", timeout=60).json()["id"] == "stories260K"
    for verb in ("stop", "start"):
        answer = httpx.post(base + f"org/stories:latest/{verb}", timeout=120)
        assert answer.status_code == 200 and answer.json()["id"] == "stories260K", answer.text
    assert httpx.get(base + "stories260K", timeout=60).json()["state"] == "ready"
    deleted = httpx.delete(base + "org/stories:latest", timeout=60)
    assert deleted.status_code == 400 and deleted.json()["error"]["code"] == "model_is_alias", deleted.text
    missing = httpx.get(base + "no/such:model", timeout=60)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found", missing.text


def test_an_alias_that_is_another_models_id_stops_the_start(server, stories_path):
    config = ServerConfig(data_folder=server.config.data_folder, models=[str(stories_path)],
                          aliases=["llama-2-tiny-random"], n_ctx=256, n_threads=1)
    with pytest.raises(Exception, match="llama-2-tiny-random"):
        ServerThread(config).__enter__().stop()


def test_the_flags_read_as_llama_servers_and_name_one_model(tmp_path):
    assert _names(None, None, (" a, b ,a", "c")) == ["a", "b", "c"]
    # an empty name (a comma too many) is a usage error naming the flag, not dropped without a word
    result = CliRunner().invoke(serve, ["--data-folder", str(tmp_path), "-m", "a", "--alias", "a,,b"])
    assert result.exit_code == 2 and "--alias" in result.output and "is empty" in result.output, result.output
    result = CliRunner().invoke(serve, ["--data-folder", str(tmp_path), "--alias", "x", "-m", "a", "-m", "b"])
    assert result.exit_code == 2 and "exactly one --model" in result.output, result.output
    result = CliRunner().invoke(serve, ["--data-folder", str(tmp_path), "--tags", "x"])
    assert result.exit_code == 2 and "--tags" in result.output, result.output


def test_an_alias_is_one_models_name():
    models = ModelService(manager=None)
    models.name_model("m1", ["a", "m1"], ["t"])
    assert models.names_of("m1") == (["a"], ["t"]) and models.names_of("m2") == ([], [])
    with pytest.raises(ValueError, match="'m1'"):
        models.name_model("m2", ["a"])


@pytest.mark.parametrize("path,body", [
    ("/api/copy", {"source": "llama-2-tiny-random", "destination": "code"}),
    ("/api/copy", {"source": "stories260K", "destination": "code:latest"}),
    ("/api/create", {"model": "code", "from": "llama-2-tiny-random"}),
    ("/v1/models", {"path": "TINY", "id": "code"}),
    ("/v1/models", {"id": "code", "engine": "llama.cpp", "settings": {"llama_model_path": "TINY"}}),
    ("/v1/models/pull", {"url": "http://127.0.0.1:9/x.gguf", "id": "code", "stream": False}),
    ("/api/pull", {"model": "http://127.0.0.1:9/code.gguf", "stream": False}),
], ids=["ollama copy", "ollama copy onto itself", "ollama create", "import", "model.json", "pull", "ollama pull"])
def test_no_model_is_added_under_an_alias(server, tiny_path, path, body):
    """A model added under an alias's name was unreachable (requests naming it reach the aliased model) and acted on
    the aliased one: Ollama's /api/copy onto the alias unloaded stories260K as the model it replaced, and /api/delete
    of the copy's name deleted stories260K. Every way of adding a model refuses the name (409, the dialect's shape)."""
    body = {k: str(tiny_path) if v == "TINY" else v for k, v in body.items()}
    body = {k: ({**v, "llama_model_path": str(tiny_path)} if isinstance(v, dict) else v) for k, v in body.items()}
    answer = httpx.post(server.base_url + path, json=body, timeout=120)
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert "'code' is a name of the model 'stories260K'" in message, answer.text
    assert not (server.config.data_folder / "models" / "code").exists()
    listing = httpx.get(server.base_url + "/v1/models", timeout=60).json()["data"]
    assert [m["id"] for m in listing if m["id"] in ("code", "stories260K")] == ["stories260K"]
    one = httpx.get(server.base_url + "/v1/models/code", timeout=60).json()
    assert one["id"] == "stories260K" and one["state"] == "ready", one


@pytest.mark.parametrize("method,path,body", [
    ("DELETE", "/v1/models/code", None),
    ("DELETE", "/api/delete", {"model": "code"}),
    ("DELETE", "/api/delete", {"model": "code:latest"}),
], ids=["openai", "ollama", "ollama tag"])
def test_an_alias_is_not_deleted_as_its_model(server, method, path, body):
    """Ollama's /api/delete of an alias deleted the aliased model (its model.json and weights: an alias reaches its
    model), and DELETE /v1/models/{alias} said the model was not found. Both refuse, naming the model's id (400)."""
    answer = httpx.request(method, server.base_url + path, json=body, timeout=120)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert "'code' is a name `jan serve --alias` gives the model 'stories260K'" in message, answer.text
    if not path.startswith("/api/"):
        assert error["code"] == "model_is_alias" and error["param"] == "model", error
    assert (server.config.data_folder / "models" / "stories260K" / "model.json").is_file()
    one = httpx.get(server.base_url + "/v1/models/stories260K", timeout=60).json()
    assert one["id"] == "stories260K" and one["state"] == "ready", one


# -- what each dialect echoes as the model ----------------------------------------------------------------------------
ASK = [{"role": "user", "content": "hi"}]


def _sse(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def _echoes(server, dialect: str, name: str) -> list[str]:
    """Every model name a request naming ``name`` in ``dialect`` is answered with (its whole answer and its stream's
    events, a stored response as fetched again)."""
    def post(path, body):
        answer = httpx.post(server.base_url + path, json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        return answer

    if dialect == "chat":
        body = {"model": name, "messages": ASK, "max_tokens": 2}
        return [post("/v1/chat/completions", body).json()["model"],
                *[c["model"] for c in _sse(post("/v1/chat/completions", {**body, "stream": True}).text)]]
    if dialect == "completions":
        body = {"model": name, "prompt": "Once", "max_tokens": 2}
        return [post("/v1/completions", body).json()["model"],
                *[c["model"] for c in _sse(post("/v1/completions", {**body, "stream": True}).text)]]
    if dialect == "responses":
        body = {"model": name, "input": "hi", "max_output_tokens": 2}
        whole = post("/v1/responses", body).json()
        again = httpx.get(f"{server.base_url}/v1/responses/{whole['id']}", timeout=60).json()
        streamed = [e["response"]["model"] for e in _sse(post("/v1/responses", {**body, "stream": True}).text)
                    if "response" in e]
        return [whole["model"], again["model"], *streamed]
    if dialect == "anthropic":
        body = {"model": name, "messages": ASK, "max_tokens": 2}
        streamed = [e["message"]["model"] for e in _sse(post("/v1/messages", {**body, "stream": True}).text)
                    if e["type"] == "message_start"]
        return [post("/v1/messages", body).json()["model"], *streamed]
    if dialect == "ollama":
        chat = {"model": name, "messages": ASK, "options": {"num_predict": 2}}
        generate = {"model": name, "prompt": "hi", "options": {"num_predict": 2}}
        lines = [json.loads(line) for path, body in (("/api/chat", chat), ("/api/generate", generate))
                 for line in post(path, body).text.splitlines() if line.strip()]
        return [post("/api/chat", {**chat, "stream": False}).json()["model"], *[line["model"] for line in lines]]
    raise AssertionError(dialect)


@pytest.mark.parametrize("dialect, echoed", [
    ("chat", "stories260K"), ("completions", "stories260K"),  # OpenAI's APIs answer the model an alias resolved to
    ("responses", "stories260K"),  # (they echoed the alias)
    ("anthropic", "stories260K"),  # Anthropic's answers the model's id too (it echoed the alias)
    ("ollama", "code"),  # Ollama's echoes the name as the request gave it
])
def test_each_dialect_echoes_the_model_as_its_api_does(server, dialect, echoed):
    said = _echoes(server, dialect, "code")
    assert said and set(said) == {echoed}, said
    assert set(_echoes(server, dialect, "stories260K")) == {"stories260K"}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_background_response_names_the_models_id_from_its_first_answer(server, streamed):
    """A background response is answered (queued; a stream's ``response.created``) before its generation starts:
    with its model not loaded yet, that answer, and its record as fetched meanwhile, named the alias the request
    gave, and the response the model's id once it ended. Every answer names the id now."""
    stopped = httpx.post(server.base_url + "/v1/models/stories260K/stop", timeout=60)
    assert stopped.status_code == 200, stopped.text
    body = {"model": "code", "input": "hi", "max_output_tokens": 2, "background": True}
    if streamed:
        answer = httpx.post(server.base_url + "/v1/responses", json={**body, "stream": True}, timeout=120)
        assert answer.status_code == 200, answer.text
        said = [e["response"]["model"] for e in _sse(answer.text) if "response" in e]
        response_id = _sse(answer.text)[0]["response"]["id"]
    else:
        first = httpx.post(server.base_url + "/v1/responses", json=body, timeout=120)
        assert first.status_code == 200, first.text
        said = [first.json()["model"]]
        response_id = first.json()["id"]
    fetched = httpx.get(f"{server.base_url}/v1/responses/{response_id}", timeout=60).json()
    assert set(said) == {"stories260K"} and fetched["model"] == "stories260K", (said, fetched["model"])
