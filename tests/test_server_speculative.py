"""Speculative decoding and KV cache options through `jan serve`: per server, per request, usage, /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

import jan
from server_helpers import start_server
from test_speculative import COPY_PROMPT


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("spec"), [stories_path], speculative="ngram", draft_max=8, ngram=2,
                       cache_type_k="f32", cache_type_v="f32")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_served_speculative_output_is_plain_greedy_and_reports_acceptance(client, server, stories_path):
    with jan.Model(stories_path, n_ctx=512, n_threads=1) as m:
        expected = m.generate(COPY_PROMPT, max_tokens=80, temperature=0).text
    result = client.completions.create(model="stories260K", prompt=COPY_PROMPT, max_tokens=80, temperature=0)
    assert result.choices[0].text == expected
    details = result.usage.completion_tokens_details
    assert details is not None and details.accepted_prediction_tokens > 0
    metrics = urllib.request.urlopen(server.base_url + "/metrics").read().decode()
    accepted = [line for line in metrics.splitlines() if line.startswith("jan_draft_tokens_accepted_total{")]
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) > 0


def test_a_request_can_turn_drafting_off(client):
    result = client.completions.create(model="stories260K", prompt=COPY_PROMPT, max_tokens=40, temperature=0,
                                       extra_body={"speculative": "none"})
    assert result.usage.completion_tokens_details is None or not result.usage.completion_tokens_details.accepted_prediction_tokens


def test_bad_speculative_option_is_a_400(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="stories260K", prompt="Once", max_tokens=2, extra_body={"speculative": "eagle"})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=2, extra_body={"draft_max": -1})


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(server.base_url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _drafted(path: str, answer: dict) -> int:
    if path == "/completion":
        return answer["timings"].get("draft_n", 0)
    details = answer["usage"].get("completion_tokens_details") or {}
    return details.get("accepted_prediction_tokens", 0) + details.get("rejected_prediction_tokens", 0)


LLAMA_SERVER_BODIES = {"/completion": {"prompt": COPY_PROMPT, "n_predict": 40},
                       "/v1/completions": {"prompt": COPY_PROMPT, "max_tokens": 40},
                       "/v1/chat/completions": {"messages": [{"role": "user", "content": COPY_PROMPT}],
                                                "max_tokens": 40}}


@pytest.mark.parametrize("path", LLAMA_SERVER_BODIES)
def test_llama_servers_speculative_fields_tune_the_drafts(server, path):
    # llama-server's per-request names (its clients send them to /completion and its OpenAI routes alike): were
    # ignored on /completion (a client's n_max 0 drafted on) and an "Unrecognized request argument" 400 elsewhere
    body = LLAMA_SERVER_BODIES[path] | {"model": "stories260K", "temperature": 0}
    status, drafting = _post(server, path, body)
    assert status == 200 and _drafted(path, drafting) > 0, drafting
    status, off = _post(server, path, body | {"speculative.n_max": 0, "speculative.n_min": 0.0,
                                              "speculative.p_min": 0.5})
    assert status == 200 and _drafted(path, off) == 0, off
    text = (lambda a: a.get("content") if path == "/completion" else
            (a["choices"][0].get("text") or a["choices"][0].get("message", {}).get("content")))
    assert text(off) == text(drafting)
    for bad, field in (({"speculative.n_max": -1}, "speculative.n_max"), ({"speculative.n_max": "4"}, "speculative.n_max"),
                       ({"speculative.n_max": 1000}, "speculative.n_max"), ({"speculative.p_min": 2}, "speculative.p_min"),
                       ({"speculative.n_min": 1.5}, "speculative.n_min")):
        status, answer = _post(server, path, body | bad)
        assert status == 400 and answer["error"]["message"].startswith(f"{field}: "), (bad, answer)
        if path != "/completion":  # (llama-server's own error shape has no param)
            assert answer["error"]["param"] == field, answer


@pytest.mark.parametrize("path", LLAMA_SERVER_BODIES)
def test_jans_own_speculative_fields_are_read_on_every_route(server, path):
    """jan's per-request names (speculative, draft_max, draft_min, ngram, draft_p_min), taken by its OpenAI routes,
    were extra fields that /completion and /infill ignored as llama-server ignores what it does not know:
    "speculative": "none" drafted on, and "bogus" or a draft_max of -1 answered 200. Read on every route, the same
    values refused the same way; jan's name wins over llama-server's where both are given, as on the OpenAI routes."""
    body = LLAMA_SERVER_BODIES[path] | {"model": "stories260K", "temperature": 0}
    status, drafting = _post(server, path, body)
    assert status == 200 and _drafted(path, drafting) > 0, drafting
    for off in ({"speculative": "none"}, {"speculative": False}, {"draft_max": 0},
                {"draft_max": 0, "speculative.n_max": 8}):
        status, answer = _post(server, path, body | off)
        assert status == 200 and _drafted(path, answer) == 0, (off, answer)
    status, answer = _post(server, path, body | {"speculative.n_max": 0, "draft_max": 8})
    assert status == 200 and _drafted(path, answer) > 0, answer
    for bad, field in (({"speculative": "bogus"}, "speculative"), ({"draft_max": -1}, "draft_max"),
                       ({"draft_max": 300}, "draft_max"), ({"ngram": 0}, "ngram"), ({"draft_p_min": 2}, "draft_p_min"),
                       ({"draft_min": 5, "draft_max": 2}, "draft_min")):
        status, answer = _post(server, path, body | bad)
        assert status == 400 and answer["error"]["message"].startswith(f"{field}: "), (bad, answer)


def test_infill_reads_the_speculative_fields_too(server):
    # (/infill's body is /completion's: its fields are judged before the model, which has no FIM tokens here)
    body = {"model": "stories260K", "input_prefix": "Once upon a time", "input_suffix": "", "n_predict": 8}
    for bad, field in (({"speculative": "bogus"}, "speculative"), ({"draft_max": -1}, "draft_max")):
        status, answer = _post(server, "/infill", body | bad)
        assert status == 400 and answer["error"]["message"].startswith(f"{field}: "), answer


# -- a draft model -----------------------------------------------------------------------------

def _assert_plain_greedy_with_accepted_drafts(base_url: str, model: str, stories_path) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    with jan.Model(stories_path, n_ctx=512, n_threads=1) as m:
        expected = m.generate("Once upon a time", max_tokens=60, temperature=0).text
    result = client.completions.create(model=model, prompt="Once upon a time", max_tokens=60, temperature=0,
                                       extra_body={"draft_p_min": 0.0})
    assert result.choices[0].text == expected
    details = result.usage.completion_tokens_details
    assert details is not None and details.accepted_prediction_tokens > 0
    metrics = urllib.request.urlopen(base_url + "/metrics").read().decode()
    accepted = [line for line in metrics.splitlines()
                if line.startswith("jan_draft_tokens_accepted_total{") and model in line]
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) > 0


def test_model_draft_flag_drafts_with_the_draft_model(tmp_path, stories_path):
    # stories260K drafting for itself: the drafts agree, so they are accepted.
    srv = start_server(tmp_path, [stories_path], draft_model=str(stories_path))
    try:
        _assert_plain_greedy_with_accepted_drafts(srv.base_url, "stories260K", stories_path)
    finally:
        srv.stop()


def test_model_json_draft_model_names_another_model(tmp_path, stories_path):
    from jan.store import DataFolder

    store = DataFolder(tmp_path / "data")
    store.models.import_gguf(stories_path, model_id="drafter", mode="reference")
    store.models.import_gguf(stories_path, model_id="target", mode="reference",
                             settings={"draft_model": "drafter", "ctx_len": 512})
    srv = start_server(tmp_path, [], default_model="target")
    try:
        _assert_plain_greedy_with_accepted_drafts(srv.base_url, "target", stories_path)
        status = json.loads(urllib.request.urlopen(srv.base_url + "/v1/models/target").read())
        assert status["state"] == "ready"
    finally:
        srv.stop()


def test_draft_speculation_on_a_model_without_one_is_a_400(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="stories260K", prompt="Once", max_tokens=2,
                                  extra_body={"speculative": "draft"})


def test_a_load_option_of_the_servers_that_a_model_cannot_use_is_no_field_of_the_request(tmp_path, stories_path):
    """A model that cannot load with the server's own defaults (`jan serve --draft-min 20`, above the default
    draft_max of 16; `-ctk q8_0` on heads of 8 values) answers a 400 that says the server gave the option, in every
    dialect, and names no field of the request: it named `draft_min`/`cache_type_k`, which the request never sent."""
    from jan.store import DataFolder

    DataFolder(tmp_path / "data").models.import_gguf(stories_path, model_id="st", mode="reference")
    bodies = [("/v1/completions", {"model": "st", "prompt": "Once", "max_tokens": 2}),
              ("/v1/chat/completions", {"model": "st", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}),
              ("/v1/messages", {"model": "st", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}),
              ("/api/generate", {"model": "st", "prompt": "Once", "stream": False})]
    # (and a --model-draft whose header reads but whose tensors are cut off: llama.cpp's refusal at the load was
    # told as the model's own file, param "model", under the engine's "draft_model: ...")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(stories_path.read_bytes()[:600_000])
    for flags, option in (({"draft_min": 20}, "draft_min"), ({"cache_type_k": "q8_0"}, "cache_type_k"),
                          ({"draft_model": str(cut)}, "draft_model")):
        srv = start_server(tmp_path, [], **flags)
        try:
            for path, body in bodies:
                request = urllib.request.Request(srv.base_url + path, json.dumps(body).encode(),
                                                 {"Content-Type": "application/json"})
                with pytest.raises(urllib.error.HTTPError) as caught:
                    urllib.request.urlopen(request)
                assert caught.value.code == 400, path
                reply = json.loads(caught.value.read())
                error = reply["error"]
                message = error if isinstance(error, str) else error["message"]  # (Ollama's is a string)
                assert f"the server's {option}" in message, (path, reply)
                if path.startswith("/v1/") and path != "/v1/messages":
                    assert error["param"] is None, (path, reply)
        finally:
            srv.stop()


def test_ollama_ps_size_is_the_memory_the_loaded_model_takes(tmp_path, stories_path):
    """``/api/ps``' ``size`` is Ollama's: the memory the loaded model takes — weights, KV cache, and its draft
    model's weights and cache — as /v1/system/models/{id} counts them; it was the weights alone, so a model
    drafting with a 4-slot cache showed as large as its file."""
    srv = start_server(tmp_path, [stories_path], draft_model=str(stories_path))
    try:
        def get(path: str):
            return json.loads(urllib.request.urlopen(srv.base_url + path).read())

        status = get("/v1/system/models/stories260K")
        assert status["kv_cache_bytes"] > 0 and status["draft_kv_cache_bytes"] > 0
        assert status["draft_memory_bytes"] == status["memory_bytes"]  # (it drafts for itself)
        entry = get("/api/ps")["models"][0]
        assert entry["size"] == (status["memory_bytes"] + status["kv_cache_bytes"] + status["draft_memory_bytes"]
                                 + status["draft_kv_cache_bytes"]), (entry, status)
        assert entry["size_vram"] == 0 and status["n_gpu_layers"] == 0  # (nothing offloaded on this CPU)
    finally:
        srv.stop()
