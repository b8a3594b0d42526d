"""LoRA adapters on the server: ``jan serve --lora/--lora-scaled`` for the served models, llama-server's
``GET``/``POST /lora-adapters`` (``?model=``), the per-request ``lora`` on ``/completion`` and the OpenAI routes,
the model's status, a model.json's own ``settings.lora``, and 400s in each route's shape."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from server_helpers import ok, post, start_server

pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")

STORY = "Once upon a time"
GREEDY = {"model": "stories260K", "temperature": 0}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, stories_path):
    from jan.testing.gguf_models import write_lora_adapter

    folder = tmp_path_factory.mktemp("lora-files")
    return (str(write_lora_adapter(folder / "a.gguf", stories_path, seed=1)),
            str(write_lora_adapter(folder / "b.gguf", stories_path, seed=2)))


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, tiny_random_path, minilm_path, adapters):
    # the server's adapters fit stories260K, not llama-2-tiny-random (other shapes) nor the embedding model: those
    # load without them
    srv = start_server(tmp_path_factory.mktemp("lora-server"), [stories_path, tiny_random_path, minilm_path],
                       n_parallel=2, lora=[(adapters[0], 1.0), (adapters[1], 0.0)])
    yield srv
    srv.stop()


def get(server, path: str) -> httpx.Response:
    return httpx.get(server.base_url + path, timeout=120)


def completion(server, **body) -> str:
    return ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 16, **body})["content"]


def test_get_lists_the_adapters_with_their_default_scales(server, adapters):
    response = get(server, "/lora-adapters?model=stories260K")
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [(a["id"], a["path"], a["scale"]) for a in listed] == [(0, adapters[0], 1.0), (1, adapters[1], 0.0)]
    assert all(a["task_name"] == "" and a["prompt_prefix"] == "" for a in listed)
    # and the model's status says the same
    model = get(server, "/v1/models/stories260K").json()
    assert [a["path"] for a in model["lora_adapters"]] == list(adapters)


def test_per_request_lora_on_every_completion_route(server):
    base = completion(server, lora=[])
    with_a = completion(server, lora=[{"id": 0, "scale": 1.0}])
    assert base != with_a
    assert completion(server, lora=[{"id": 0, "scale": 0}]) == base
    # the OpenAI text completion takes the same field, through the same typed request
    openai = ok(server, "/v1/completions", GREEDY | {"prompt": STORY, "max_tokens": 16,
                                                     "lora": [{"id": 0, "scale": 1}]})
    assert openai["choices"][0]["text"] == with_a
    chat = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 12}
    base_chat = ok(server, "/v1/chat/completions", GREEDY | chat | {"lora": []})["choices"][0]["message"]["content"]
    a_chat = ok(server, "/v1/chat/completions", GREEDY | chat | {"lora": [{"id": 0, "scale": 1}]})
    assert a_chat["choices"][0]["message"]["content"] != base_chat
    # generation_settings tells every adapter with the scale the request ran under, as llama-server lists them
    settings = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 2,
                                                   "lora": [{"id": 1, "scale": 0.5}]})["generation_settings"]
    assert settings["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.5}]


def test_generation_settings_and_props_tell_the_default_scales_a_request_ran_under(server):
    # (was [] for a request naming no lora, which ran under adapter 0 at 1.0)
    settings = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 2})["generation_settings"]
    assert settings["lora"] == [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]
    props = get(server, "/props?model=stories260K").json()
    assert props["default_generation_settings"]["params"]["lora"] == [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]


def test_post_sets_the_defaults_for_later_requests(server):
    try:
        assert completion(server) == completion(server, lora=[{"id": 0, "scale": 1}])  # the load's defaults
        response = httpx.post(server.base_url + "/lora-adapters?model=stories260K", json=[{"id": 1, "scale": 1}],
                              timeout=120)
        assert response.status_code == 200 and response.json() == {"success": True}
        assert [a["scale"] for a in get(server, "/lora-adapters?model=stories260K").json()] == [0.0, 1.0]
        assert completion(server) == completion(server, lora=[{"id": 1, "scale": 1}])
        assert completion(server) != completion(server, lora=[])
    finally:
        httpx.post(server.base_url + "/lora-adapters?model=stories260K", json=[{"id": 0, "scale": 1}], timeout=120)


def test_a_model_the_servers_adapters_do_not_fit_loads_without_them(server):
    assert get(server, "/lora-adapters?model=llama-2-tiny-random").json() == []
    model = get(server, "/v1/models/llama-2-tiny-random").json()
    assert "incorrect shape" in model["lora_skipped"], model
    assert ok(server, "/completion", {"model": "llama-2-tiny-random", "prompt": STORY, "n_predict": 2})
    embedder = "all-MiniLM-L6-v2-f32"
    assert ok(server, "/v1/embeddings", {"model": embedder, "input": STORY})["data"][0]["embedding"]
    assert "embedding model" in get(server, f"/v1/models/{embedder}").json()["lora_skipped"]


def _llama_error(response: httpx.Response, says: str) -> None:
    assert response.status_code == 400, response.text
    err = response.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error", err
    assert says in err["message"], (says, err)


@pytest.mark.parametrize("lora, says", [
    ([{"id": 2, "scale": 1}], "no LoRA adapter 2"),
    ([{"id": 0, "scale": "x"}], "lora[0].scale"),
    ([{"id": 0, "scale": 1e300}], "lora[0].scale"),  # (a 32-bit infinity: the engine's 400 named just "lora")
    ([{"id": 0, "scale": 1}, {"id": 0, "scale": 1}], "given twice"),
    ([{"id": -1, "scale": 1}], "lora[0].id"),
    ([{"scale": 1}], "lora[0].id: required"),
    ("all", "lora"),
])
def test_bad_request_lora_is_a_400_in_each_routes_shape(server, lora, says):
    _llama_error(post(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 2, "lora": lora}), says)
    for path, body in (("/v1/completions", {"prompt": STORY, "max_tokens": 2}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})):
        response = post(server, path, GREEDY | body | {"lora": lora})
        assert response.status_code == 400, (path, response.text)
        err = response.json()["error"]
        assert err["param"].startswith("lora") and (says in err["message"] or says == "lora"), err
        # the param is the field the message names (README: "naming `lora[i].id` or `lora[i].scale`"), as a scale's
        # was; an id's was "lora" alone
        assert err["message"].startswith(err["param"] + ":"), err


@pytest.mark.parametrize("body, says", [
    ({"id": 0, "scale": 1}, "Request body must be an array"),
    ([{"id": 7, "scale": 1}], "no LoRA adapter 7"),
    ([{"id": 0, "scale": float("inf")}], ""),  # (httpx writes Infinity: not JSON jan reads)
    ([{"id": 0, "scale": None}], "lora[0].scale"),
    ([{"id": 0, "scale": -1e300}], "lora[0].scale"),
])
def test_bad_post_bodies_are_400(server, body, says):
    content = json.dumps(body).encode()
    response = httpx.post(server.base_url + "/lora-adapters?model=stories260K", content=content,
                          headers={"content-type": "application/json"}, timeout=120)
    _llama_error(response, says)
    assert [a["scale"] for a in get(server, "/lora-adapters?model=stories260K").json()] == [1.0, 0.0]


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is no JSON value")
    return json.loads(text, parse_constant=refuse)


def test_logprobs_of_overflowed_logits_are_null_on_every_route(server):
    # adapter 0 at 1e30 (a finite scale, allowed) overflows the logits to NaN: each route answered a 400 "Out of
    # range float values are not JSON compliant" after generating; now the scores are null, as llama-server's are
    huge = {"lora": [{"id": 0, "scale": 1e30}]}
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "logprobs": True, "top_logprobs": 2}
    for path, body in (("/completion", {"prompt": STORY, "n_predict": 2, "n_probs": 2}),
                       ("/v1/completions", {"prompt": STORY, "max_tokens": 2, "logprobs": 2}),
                       ("/v1/chat/completions", chat),
                       ("/v1/chat/completions", chat | {"stream": True})):
        response = post(server, path, GREEDY | body | huge)
        assert response.status_code == 200, (path, response.text)
        if body.get("stream"):
            events = [_strict_json(line[6:]) for line in response.text.splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            scores = [t["logprob"] for e in events for c in e["choices"] for t in (c["logprobs"] or {}).get("content", [])]
        else:
            answer = _strict_json(response.text)
            scores = ([p["logprob"] for p in answer["completion_probabilities"]] if path == "/completion" else
                      [t["logprob"] for t in answer["choices"][0]["logprobs"]["content"]])
        assert len(scores) == 2, (path, response.text)


def test_a_nan_the_strict_writer_refuses_is_the_servers_500_not_the_clients_400():
    # jsonio's promise: a NaN jan made is a bug to report, never the client's "invalid_request_error"
    from jan.server.errors import to_api_error

    with pytest.raises(ValueError) as info:
        json.dumps({"logprob": float("nan")}, allow_nan=False)
    error = to_api_error(info.value, log_internal=False)
    assert (error.status, error.type, error.code) == (500, "server_error", "internal_error"), error.body()
    assert to_api_error(ValueError("logit_bias: token id 99 is not in the vocabulary")).status == 400


def test_unknown_model_is_llama_servers_400(server):
    response = get(server, "/lora-adapters?model=no-such-model")
    assert response.status_code == 400 and "no-such-model" in response.json()["error"]["message"]


def test_a_model_json_names_its_own_adapters_relative_to_its_folder(tmp_path, stories_path, adapters):
    from api_helpers import running

    data = tmp_path / "data"
    folder = data / "models" / "teller"
    folder.mkdir(parents=True)
    shutil.copyfile(stories_path, folder / "model.gguf")
    shutil.copyfile(adapters[1], folder / "style.gguf")
    (folder / "model.json").write_text(json.dumps({
        "id": "teller", "object": "model", "name": "teller", "engine": "llamacpp", "sources": [],
        "settings": {"llama_model_path": "model.gguf", "lora": [{"path": "style.gguf", "scale": 0.5}]}}))
    bad = data / "models" / "bad"
    bad.mkdir()
    shutil.copyfile(stories_path, bad / "model.gguf")
    (bad / "model.json").write_text(json.dumps({
        "id": "bad", "object": "model", "name": "bad", "engine": "llamacpp", "sources": [],
        "settings": {"llama_model_path": "model.gguf", "lora": [{"path": "missing.gguf"}]}}))
    climb = data / "models" / "climb"
    climb.mkdir()
    shutil.copyfile(stories_path, climb / "model.gguf")
    (climb / "model.json").write_text(json.dumps({
        "id": "climb", "object": "model", "name": "climb", "engine": "llamacpp", "sources": [],
        "settings": {"llama_model_path": "model.gguf", "lora": ["../teller/style.gguf"]}}))
    with running(data, lora=[(adapters[0], 1.0)]) as srv:
        response = httpx.post(srv.base_url + "/v1/completions", json={"model": "climb", "prompt": STORY,
                                                                       "max_tokens": 2}, timeout=120)
        assert response.status_code == 400 and "climbs out" in response.text, response.text
        listed = httpx.get(srv.base_url + "/lora-adapters?model=teller", timeout=120).json()
        # its own adapters win over the server's
        assert [(a["path"], a["scale"]) for a in listed] == [(str(folder / "style.gguf"), 0.5)]
        # Ollama's copy keeps them: the copy's folder has no style.gguf, so it names the file the source resolved
        copied = httpx.post(srv.base_url + "/api/copy", json={"source": "teller", "destination": "teller2"},
                            timeout=120)
        assert copied.status_code == 200, copied.text
        stored = json.loads((data / "models" / "teller2" / "model.json").read_text())
        assert "lora_paths" not in stored
        listed = httpx.get(srv.base_url + "/lora-adapters?model=teller2", timeout=120).json()
        assert [(a["path"], a["scale"]) for a in listed] == [(str(folder / "style.gguf"), 0.5)]
        response = httpx.post(srv.base_url + "/v1/completions", json={"model": "bad", "prompt": STORY,
                                                                       "max_tokens": 2}, timeout=120)
        assert response.status_code == 400, response.text
        err = response.json()["error"]
        assert err["param"] == "settings.lora" and "missing.gguf" in err["message"], err
        # a name that climbs out of the folder is refused where it is stored (it was stored, and every request to
        # the model, its GET /v1/models/{id} included, was a 400 from then on)
        before = (folder / "model.json").read_text()
        for lora in (["../climb/model.gguf"], [{"path": "../x.gguf", "scale": 1}], [["style.gguf", 1], "../x"]):
            response = httpx.patch(srv.base_url + "/v1/models/teller", json={"settings": {"lora": lora}}, timeout=120)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "settings.lora" and "climbs out" in response.text, lora
        assert (folder / "model.json").read_text() == before
        assert httpx.get(srv.base_url + "/v1/models/teller", timeout=120).status_code == 200
        # a [path, scale] pair (as jan.Model's lora takes one) is relative to the model folder too, as a path is
        response = httpx.patch(srv.base_url + "/v1/models/teller", json={"settings": {"lora": [["style.gguf", 0.25]]}},
                               timeout=120)
        assert response.status_code == 200, response.text
        listed = httpx.get(srv.base_url + "/lora-adapters?model=teller", timeout=120).json()
        assert [(a["path"], a["scale"]) for a in listed] == [(str(folder / "style.gguf"), 0.25)]


def test_jan_serve_flags(tmp_path, monkeypatch, adapters, stories_path):
    from click.testing import CliRunner

    import jan.cli.serve as serve_cli

    seen = {}

    async def fake_run_server(config):
        seen["config"] = config

    monkeypatch.setattr(serve_cli, "run_server", fake_run_server)
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path), "--lora", adapters[0],
                                                  "--lora-scaled", f"{adapters[1]}:0.25,{adapters[0]}:-1",
                                                  "--lora-init-without-apply"])
    assert result.exit_code == 0, result.output
    defaults = seen["config"].engine_defaults()
    assert defaults["lora"] == ((adapters[0], 1.0), (adapters[1], 0.25), (adapters[0], -1.0))
    assert defaults["lora_init_without_apply"] is True
    # llama-server's --lora takes several files separated by commas too, as --lora-scaled does
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path), "--lora", ",".join(adapters),
                                                  "--lora", adapters[0]])
    assert result.exit_code == 0, result.output
    assert seen["config"].engine_defaults()["lora"] == ((adapters[0], 1.0), (adapters[1], 1.0), (adapters[0], 1.0))
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path)])
    assert "lora" not in seen["config"].engine_defaults() and "lora_init_without_apply" not in \
        seen["config"].engine_defaults()
    for flags, says in ((["--lora-scaled", f"{adapters[0]}:x"], "--lora-scaled: expected FILE:SCALE"),
                        (["--lora-scaled", f"{adapters[0]}:nan"], "--lora-scaled: expected FILE:SCALE"),
                        (["--lora-scaled", f"{adapters[0]}:1e300"], "--lora-scaled: expected FILE:SCALE"),
                        (["--lora-scaled", adapters[0]], "--lora-scaled: expected FILE:SCALE"),
                        (["--lora-scaled", str(tmp_path / "none.gguf") + ":1"], "--lora-scaled: no such file"),
                        (["--lora", str(tmp_path / "none.gguf")], "--lora"),
                        (["--lora", f"{adapters[0]},{tmp_path / 'none.gguf'}"], f"--lora: no such file: {tmp_path}"),
                        # a model's weights given as an adapter: every model loaded without it, said only in the log
                        (["--lora", str(stories_path)], f"--lora: '{stories_path}' is not a LoRA adapter GGUF"),
                        (["--lora-scaled", f"{stories_path}:0.5"], "--lora-scaled: '")):
        result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path), *flags])
        assert result.exit_code != 0 and says in result.output, (flags, result.output)


def test_ollama_create_takes_adapters(server, stories_path, adapters):
    import hashlib

    def push(path) -> str:
        data = open(path, "rb").read()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert httpx.post(server.base_url + f"/api/blobs/{digest}", content=data, timeout=120).status_code in (200, 201)
        return digest

    weights, adapter = push(stories_path), push(adapters[0])
    created = httpx.post(server.base_url + "/api/create", json={
        "model": "teller-a", "files": {"model.gguf": weights}, "adapters": {"a.gguf": adapter}, "stream": False},
        timeout=120)
    assert created.status_code == 200, created.text
    listed = get(server, "/lora-adapters?model=teller-a").json()
    assert [(a["id"], a["scale"]) for a in listed] == [(0, 1.0)]
    # its own adapter (the same file as the server's adapter 0) at scale 1
    assert completion(server, model="teller-a", lora=None) == completion(server, lora=[{"id": 0, "scale": 1}])
    # /api/show's modelfile names it, as Ollama's ADAPTER line (so that the modelfile can be given back)
    shown = httpx.post(server.base_url + "/api/show", json={"model": "teller-a"}, timeout=120).json()
    assert f"\nADAPTER {listed[0]['path']}\n" in shown["modelfile"], shown["modelfile"]
    # from an existing model: the create's adapters replace the source's
    created = httpx.post(server.base_url + "/api/create", json={
        "model": "teller-b", "from": "teller-a", "adapters": {"b.gguf": push(adapters[1])}, "stream": False},
        timeout=120)
    assert created.status_code == 200, created.text
    assert completion(server, model="teller-b", lora=None) == completion(server, lora=[{"id": 1, "scale": 1}])
    for bad, says in (({"a.gguf": "sha256:" + "0" * 64}, "adapters: a.gguf: blob"),
                      ({"a.gguf": "nope"}, "invalid digest format"),
                      ({"a.gguf": 3}, "invalid digest format"),
                      # a model's weights pushed as its adapter (stored, every request to the model was a 400)
                      ({"a.gguf": weights}, "is not a LoRA adapter GGUF")):
        response = httpx.post(server.base_url + "/api/create", json={
            "model": "teller-c", "files": {"model.gguf": weights}, "adapters": bad, "stream": False}, timeout=120)
        assert response.status_code == 400 and says in response.json()["error"], response.text


def test_jan_run_and_jan_chat_take_the_lora_flags(tmp_path, adapters, stories_path):
    """`jan run`/`jan chat` load the model in this process with the adapters --lora/--lora-scaled give, as `jan serve`
    loads its models (one definition of the flags: jan.cli.common.lora_options)."""
    from test_cli_helpers import cli_env, fails, jan, ok

    env = cli_env(tmp_path / "data")
    base = ["run", stories_path, "--raw", "Once upon a time", "--temperature", "0", "--max-tokens", "24"]
    plain = ok(jan(*base, env=env)).stdout
    styled = ok(jan(*base, "--lora", adapters[0], env=env)).stdout
    assert styled != plain  # (the adapter at scale 1 changes stories260K's greedy output)
    assert ok(jan(*base, "--lora-scaled", f"{adapters[0]}:1", env=env)).stdout == styled
    assert ok(jan(*base, "--lora-scaled", f"{adapters[0]}:0", env=env)).stdout == plain
    both = ok(jan(*base, "--lora", ",".join(adapters), env=env)).stdout
    assert both not in (plain, styled)
    bad = jan(*base, "--lora-scaled", f"{adapters[0]}:x", env=env)  # (the command line's mistake: a usage error)
    assert bad.returncode == 2 and "--lora-scaled: expected FILE:SCALE" in bad.stderr, bad.stderr
    for flags, says in ((["--lora", str(tmp_path / "none.gguf")], "--lora"),
                        (["--lora", str(stories_path)], "is not a LoRA adapter GGUF")):
        fails(jan(*base, *flags, env=env), says)
    # jan chat: the same flags, the same adapters (one turn, then end of input)
    chat = ok(jan("chat", stories_path, "--temperature", "0", "--max-tokens", "8", "--no-save", "--lora", adapters[0],
                  env=env, input="Once upon a time\n"))
    plain_chat = ok(jan("chat", stories_path, "--temperature", "0", "--max-tokens", "8", "--no-save",
                        env=env, input="Once upon a time\n"))
    assert chat.stdout != plain_chat.stdout
    bad = jan("chat", stories_path, "--lora-scaled", f"{adapters[0]}:nan", env=env, input="")
    assert bad.returncode == 2 and "--lora-scaled" in bad.stderr, bad.stderr
