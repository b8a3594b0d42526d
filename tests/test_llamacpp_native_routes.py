"""The routes llama-server serves besides its completion ones, on a real jan server: ``/v1/health``, ``/responses``
and the input-token counts without ``/v1``, ``/chat/completions/input_tokens``, the native ``/embedding`` (pooled and
pooling none, ``embd_normalize``), ``/slots``, and router mode's ``/models/load`` and ``/models/unload``."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from jan.server.dialects.llamacpp import slots
from jan.server.security import is_open
from server_helpers import ok, post, start_server

STORIES = "stories260K"
POOLED, PER_TOKEN = "minilm", "minilm-tokens"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    srv = start_server(tmp_path_factory.mktemp("native-routes"), [stories_path])
    for model_id, settings in ((POOLED, {"embedding": True}),
                               (PER_TOKEN, {"embedding": True, "pooling": "none"})):
        response = httpx.post(srv.base_url + "/v1/models", json={"path": str(minilm_path), "id": model_id,
                                                                  "mode": "reference", "settings": settings},
                              timeout=120)
        assert response.status_code == 201, response.text
    yield srv
    srv.stop()


def native_error(response: httpx.Response, status: int, says: str = "") -> str:
    """llama-server's error shape with ``status``; its message."""
    assert response.status_code == status, (response.status_code, response.text)
    err = response.json()["error"]
    assert set(err) == {"code", "message", "type"} and err["code"] == status, err
    assert says in err["message"], (says, err)
    return err["type"]


# -- aliases ---------------------------------------------------------------------------------------------------------
def test_v1_health_is_health_and_open_without_the_key(server):
    for path in ("/health", "/v1/health"):
        response = httpx.get(server.base_url + path, timeout=60)
        assert response.status_code == 200 and response.json()["status"] == "ok", response.text
        assert is_open(path)


def test_responses_and_their_input_tokens_are_served_without_v1(server):
    body = {"model": STORIES, "input": "Once upon a time", "max_output_tokens": 4, "store": False}
    assert ok(server, "/responses", body)["object"] == "response"
    counts = [ok(server, path, {"model": STORIES, "input": "Once upon a time"})
              for path in ("/v1/responses/input_tokens", "/responses/input_tokens")]
    assert counts[0] == counts[1] and counts[0]["input_tokens"] > 0


def test_chat_input_tokens_count_the_prompt_the_chat_reads(server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}]
    usage = ok(server, "/v1/chat/completions", {"model": STORIES, "messages": messages, "max_tokens": 1})["usage"]
    for path in ("/chat/completions/input_tokens", "/v1/chat/completions/input_tokens"):
        # llama-server's answer, "object" included
        assert ok(server, path, {"model": STORIES, "messages": messages}) == {
            "object": "response.input_tokens", "input_tokens": usage["prompt_tokens"]}
        response = post(server, path, {"model": STORIES, "messages": "hi"})
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages", response.text


# -- /embedding ------------------------------------------------------------------------------------------------------
def _norms(vector: list[float]) -> tuple[float, float, float]:
    """Its euclidean, taxicab and largest-component norms."""
    return (math.sqrt(sum(x * x for x in vector)), sum(abs(x) for x in vector), max(abs(x) for x in vector))


def test_embedding_is_llama_servers_list_of_index_and_vectors(server):
    result = ok(server, "/embedding", {"model": POOLED, "content": "hello world"})
    assert [set(r) for r in result] == [{"index", "embedding"}] and len(result[0]["embedding"]) == 1
    vector = result[0]["embedding"][0]
    openai = ok(server, "/v1/embeddings", {"model": POOLED, "input": "hello world"})["data"][0]["embedding"]
    assert vector == pytest.approx(openai, abs=1e-6)
    # a list of inputs (text, token ids): one result each, in order (input and content both: a 400, below)
    tokens = ok(server, "/tokenize", {"model": POOLED, "content": "hi", "add_special": True})["tokens"]
    several = ok(server, "/embedding", {"model": POOLED, "input": [tokens, "hi"]})
    assert [r["index"] for r in several] == [0, 1]
    assert several[0]["embedding"][0] == pytest.approx(several[1]["embedding"][0], abs=1e-6)


def test_embd_normalize_is_llama_cpps(server):
    def one(norm):
        return ok(server, "/embedding", {"model": POOLED, "input": "hi", "embd_normalize": norm})[0]["embedding"][0]

    raw = one(-1)
    assert _norms(raw)[0] > 1.5  # (this model's pooled vector, unnormalized)
    assert _norms(one(2))[0] == pytest.approx(1, abs=1e-5) and _norms(one(None))[0] == pytest.approx(1, abs=1e-5)
    assert _norms(one(1))[1] == pytest.approx(1, abs=1e-5)
    assert _norms(one(0))[2] == pytest.approx(32760, rel=1e-5)
    p3 = sum(abs(x) ** 3 for x in one(3)) ** (1 / 3)
    assert p3 == pytest.approx(1, abs=1e-5)
    assert all(math.isfinite(x) for x in one(10**6))  # (a p past float range: llama.cpp's zeros, no failure)
    for scaled in (one(0), one(1), one(3)):  # each the raw vector, scaled
        ratio = scaled[0] / raw[0]
        assert scaled == pytest.approx([x * ratio for x in raw], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
def test_embd_normalize_on_the_openai_embedding_paths_is_llama_cpps_too(server, path):
    # llama-server's /v1/embeddings reads embd_normalize as its /embedding does (scripts send -1 for raw vectors);
    # jan refused it there as an unknown field
    for norm in (None, -1, 0, 1, 2, 3):
        native = ok(server, "/embedding", {"model": POOLED, "input": "hi", "embd_normalize": norm})[0]["embedding"][0]
        body = {"model": POOLED, "input": ["hi"]} | ({} if norm is None else {"embd_normalize": norm})
        vector = ok(server, path, body)["data"][0]["embedding"]
        assert vector == pytest.approx(native, rel=1e-4, abs=1e-5), norm
    for body, says in (({"embd_normalize": -2}, "embd_normalize"), ({"embd_normalize": "1"}, "embd_normalize"),
                       ({"embd_normalize": -1, "dimensions": 8}, "embd_normalize: only 2")):
        response = post(server, path, {"model": POOLED, "input": "hi", **body})
        assert response.status_code == 400 and says in response.json()["error"]["message"], response.text
    # 2 is the default's norm, so dimensions' cut (L2-normalized again) goes with it
    cut = ok(server, path, {"model": POOLED, "input": "hi", "embd_normalize": 2, "dimensions": 8})["data"][0]
    assert len(cut["embedding"]) == 8 and _norms(cut["embedding"])[0] == pytest.approx(1, abs=1e-5)


def test_a_pooling_none_model_answers_a_vector_per_token_unnormalized(server):
    n_tokens = len(ok(server, "/tokenize", {"model": PER_TOKEN, "content": "hello world", "add_special": True})["tokens"])
    for norm in (None, -1, 1, 2):  # llama-server normalizes only pooled vectors
        result = ok(server, "/embedding", {"model": PER_TOKEN, "input": ["hello world"], "embd_normalize": norm})
        rows = result[0]["embedding"]
        assert len(rows) == n_tokens and all(len(r) == 384 for r in rows)
        assert any(abs(_norms(r)[0] - 1) > 0.1 for r in rows)
    # their mean is the mean-pooled vector
    pooled = ok(server, "/embedding", {"model": POOLED, "input": "hello world", "embd_normalize": -1})[0]["embedding"][0]
    mean = [sum(col) / n_tokens for col in zip(*rows)]
    assert mean == pytest.approx(pooled, rel=1e-3, abs=1e-4)
    # the OpenAI route still refuses it
    response = post(server, "/v1/embeddings", {"model": PER_TOKEN, "input": "hello"})
    assert response.status_code == 400 and "Pooling type 'none'" in response.json()["error"]["message"]


@pytest.mark.parametrize("body, says", [
    ({}, '"input" or "content" must be provided'),
    ({"input": []}, '"input" must not be empty'),
    ({"input": ["hi", []]}, '"input" must not be empty'),
    ({"input": 5}, "input"),
    ({"input": "hi", "embd_normalize": "2"}, "embd_normalize"),
    ({"input": "hi", "embd_normalize": -2}, "embd_normalize"),
    ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "hi", "model": "nope"}, "nope"),
    # llama-server's own field, named as the client sent it
    ({"content": []}, '"content" must not be empty'),
    ({"content": ["hi", []]}, '"content" must not be empty'),
    ({"content": 5}, "content"),
    # an empty string, as /v1/embeddings and jan.Model.embed refuse it (llama-server embedded a model's BOS alone)
    ({"input": ""}, '"input" must not be empty'),
    ({"input": ["hi", ""]}, '"input" must not be empty'),
    ({"content": ""}, '"content" must not be empty'),
    ({"content": ["", "hi"]}, '"content" must not be empty'),
])
def test_bad_embedding_bodies_are_400_in_llama_servers_shape(server, body, says):
    assert native_error(post(server, "/embedding", {"model": POOLED, **body}), 400, says) == "invalid_request_error"


@pytest.mark.parametrize("path, body, item", [
    ("/completion", {"model": STORIES, "prompt": [1, [2, 3]]}, "prompt[1]"),
    ("/completion", {"model": STORIES, "prompt": [[2, 3], 1], "stream": True}, "prompt[0]"),
    ("/completion", {"model": STORIES, "prompt": [1, "Once", ["upon"]]}, "prompt[2]"),
    ("/embedding", {"model": POOLED, "content": [1, [2, 3]]}, "content[1]"),
    ("/embedding", {"model": POOLED, "input": [[2], 1]}, "input[0]"),
    ("/embedding", {"model": POOLED, "content": [1, {"content": [{"type": "text", "text": "x"}]}]}, "content[1]"),
])
def test_a_token_id_list_holding_a_list_or_object_is_a_400_naming_the_item(server, path, body, item):
    # a list with a token id at its top is one mixed prompt (ids and text pieces): a list or object in it reached the
    # tokenizer as a "token" (a 500)
    native_error(post(server, path, body), 400, item)
    # the same ids as a list of prompts are served
    field = next(k for k in ("prompt", "input", "content") if k in body)  # (the same field: both are a 400)
    fixed = {k: v for k, v in body.items() if k != "stream"} | {field: [[1, 2], "Once"]}
    assert len(ok(server, path, fixed)) == 2


def test_an_embedding_input_past_the_context_tells_its_size(server):
    response = post(server, "/embedding", {"model": POOLED, "input": "hello " * 600})
    assert response.status_code == 400, response.text
    err = response.json()["error"]
    assert err["type"] == "exceed_context_size_error" and err["n_prompt_tokens"] > err["n_ctx"], err
    # (jan's own words, naming the field, follow OpenAI's opening "This model's maximum context length is ...: ")
    assert "input tokens: input has " in err["message"], err
    # llama-server's own field is named as the client sent it, one input or one of a list
    for body, named in (({"content": "hello " * 600}, "content has "), ({"content": ["hi", "hello " * 600]},
                                                                        "content[1] has ")):
        response = post(server, "/embedding", {"model": POOLED, **body})
        assert response.status_code == 400 and "input tokens: " + named in response.json()["error"]["message"], \
            response.text


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_llama_servers_content_on_the_openai_embedding_paths_is_answered_natively(server, path):
    """llama-server answers a body with ``content`` natively on /embeddings and /v1/embeddings too (its field "is not
    OAI compatible"); jan said "input: Field required" of a field the client never meant to send."""
    result = ok(server, path, {"model": POOLED, "content": "hello world"})
    assert result == ok(server, "/embedding", {"model": POOLED, "content": "hello world"})
    # its errors are llama-server's too, naming its field
    native_error(post(server, path, {"model": POOLED, "content": []}), 400, '"content" must not be empty')
    response = post(server, path, {"model": POOLED, "content": "hello " * 600})
    assert response.status_code == 400 and response.json()["error"]["type"] == "exceed_context_size_error"
    assert "input tokens: content has " in response.json()["error"]["message"], response.text
    # a body with neither stays OpenAI's 400 naming input
    response = post(server, path, {"model": POOLED})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input", response.text


@pytest.mark.parametrize("path", ["/embedding", "/embeddings", "/v1/embeddings"])
def test_a_body_with_both_input_and_content_is_a_400_naming_both_on_every_embedding_path(server, path):
    """``input`` and ``content`` are two names of one field: a body with both has two inputs and one answer. Each
    path did its own thing (/embedding embedded ``input`` and dropped ``content`` unsaid; /v1/embeddings refused
    ``content`` as an unknown parameter, as though jan did not take it): now every path says both were given."""
    response = post(server, path, {"model": POOLED, "input": "hello", "content": "world"})
    assert response.status_code == 400, response.text
    err = response.json()["error"]
    assert '"input" and "content"' in err["message"] and "one of them" in err["message"], err
    # either alone is served; on llama-server's own path a null one is the field left out (as null means the default)
    nulls = ({"input": "hello", "content": None}, {"input": None, "content": "hello"}) if path == "/embedding" else ()
    for body in ({"input": "hello"}, {"content": "hello"}, *nulls):
        assert post(server, path, {"model": POOLED, **body}).status_code == 200, body


# -- /slots ----------------------------------------------------------------------------------------------------------
def test_slots_list_each_slot_in_llama_servers_fields(server):
    listed = httpx.get(server.base_url + "/slots", params={"model": STORIES}, timeout=60).json()
    assert [s["id"] for s in listed] == [0, 1, 2, 3]  # n_parallel 4
    for s in listed:
        # (a slot that ran a request tells it too: test_llamacpp_slots_more.py) never its text, as llama-server's
        # without its debug switch
        assert {"id", "n_ctx", "speculative", "is_processing"} <= set(s) and not {"prompt", "generated"} & set(s)
        assert s["n_ctx"] == 512 and s["speculative"] is False


def test_slots_tell_what_the_engines_status_says(server, monkeypatch):
    """The engine's status (slots, how many busy, context, a draft model) as llama-server's slots; none idle is
    ``fail_on_no_slot``'s 503."""
    from jan.core import ModelState
    from jan.server.keys import MANAGER

    engine = server.app[MANAGER].get_inference("llama.cpp")
    status = {"id": STORIES, "status": ModelState.READY, "n_ctx": 100, "n_parallel": 3, "active_requests": 2,
              "draft_model": "draft.gguf"}

    async def model_status(model_id):
        return status if model_id == STORIES else {"id": model_id, "status": ModelState.UNLOADED}

    async def no_slots_info(model_id):  # (an engine that tells how many slots are busy, not which)
        return None

    monkeypatch.setattr(engine, "model_status", model_status)
    monkeypatch.setattr(engine, "slots_info", no_slots_info)
    url = server.base_url + "/slots"
    listed = httpx.get(url, params={"model": STORIES, "fail_on_no_slot": "1"}, timeout=60).json()
    assert listed == [{"id": i, "n_ctx": 100, "speculative": True, "is_processing": i < 2} for i in range(3)]
    status["active_requests"] = 3
    native_error(httpx.get(url, params={"model": STORIES, "fail_on_no_slot": "1"}, timeout=60), 503,
                 "no slot available")
    assert all(s["is_processing"] for s in httpx.get(url, params={"model": STORIES}, timeout=60).json())


@pytest.mark.parametrize("fault", ["hangs", "raises"])
def test_an_engine_status_that_hangs_or_fails_holds_no_native_answer(server, monkeypatch, fault):
    """``/props``, ``/slots`` and ``/completion``'s ``generation_settings`` ask the engine's status through the one
    time-bounded call: a third-party engine's ``model_status`` that hangs or raises reads as "not loaded"."""
    import asyncio

    from jan.core import engine_answers
    from jan.server.keys import MANAGER

    engine = server.app[MANAGER].get_inference("llama.cpp")

    async def model_status(model_id):
        if fault == "raises":
            raise RuntimeError("status unknown")
        await asyncio.sleep(3600)

    monkeypatch.setattr(engine_answers, "STATUS_TIMEOUT", 0.05)
    monkeypatch.setattr(engine, "model_status", model_status)
    props = httpx.get(server.base_url + "/props", params={"model": STORIES}, timeout=60)
    assert props.status_code == 200 and props.json()["is_sleeping"] is True, props.text
    listed = httpx.get(server.base_url + "/slots", params={"model": STORIES}, timeout=60)
    assert listed.status_code == 200 and not any(s["is_processing"] for s in listed.json()), listed.text
    answer = ok(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 2})
    assert answer["generation_settings"]["speculative.types"] == "none", answer["generation_settings"]


def test_slots_tell_busy_ones_first_and_no_idle_one_is_503_in_the_route():
    assert [s["is_processing"] for s in slots(3, 2, 128, False)] == [True, True, False]
    assert slots(1, 0, 64, True) == [{"id": 0, "n_ctx": 64, "speculative": True, "is_processing": False}]


def test_slots_of_an_unknown_model_is_llama_servers_400(server):
    response = httpx.get(server.base_url + "/slots", params={"model": "nope"}, timeout=60)
    native_error(response, 400, "nope")


# -- router mode -----------------------------------------------------------------------------------------------------
def _state(server, model_id: str) -> str:
    return httpx.get(f"{server.base_url}/v1/models/{model_id}", timeout=60).json()["state"]


def test_models_load_and_unload_start_and_stop_the_model(server):
    ok(server, "/embedding", {"model": POOLED, "input": "hi"})  # loaded
    assert ok(server, "/models/unload", {"model": POOLED}) == {"success": True}
    assert _state(server, POOLED) == "unloaded"
    native_error(post(server, "/models/unload", {"model": POOLED}), 400, "model is not running")
    assert ok(server, "/models/load", {"model": POOLED}) == {"success": True}
    assert _state(server, POOLED) == "ready"
    native_error(post(server, "/models/load", {"model": POOLED}), 400, "model is already running")


def test_router_mode_refuses_unknown_names_as_llama_server_does(server):
    assert native_error(post(server, "/models/load", {"model": "nope"}), 404, "model is not found") == "not_found_error"
    native_error(post(server, "/models/unload", {"model": "nope"}), 400, "model is not found")
    for body in ({}, {"model": ""}, {"model": 3}):
        native_error(post(server, "/models/load", body), 400, "model")


def test_router_mode_refuses_load_settings_it_would_drop(server):
    """A load setting in a /models/load body (cache_type_k, ctx_len, a draft model, ...) was ignored, as llama-server
    ignores fields it does not know: the model loaded with its stored settings and the answer was success. It is a
    400 naming the field and where load settings go (as POST /v1/models/{id}/start says); other unknown fields stay
    ignored, as llama-server's."""
    ok(server, "/embedding", {"model": POOLED, "input": "hi"})
    assert ok(server, "/models/unload", {"model": POOLED}) == {"success": True}
    for field, value in (("cache_type_k", "q8_0"), ("ctx_len", 4096), ("n_ctx", 4096), ("draft_model", "d.gguf"),
                         ("speculative", "ngram"), ("draft_max", 4), ("flash_attn", True)):
        said = native_error(post(server, "/models/load", {"model": POOLED, field: value}), 400,
                            f"{field}: POST /models/load takes no load settings")
        assert said == "invalid_request_error"
        assert _state(server, POOLED) == "unloaded", field  # (nothing loaded with settings it did not apply)
    assert ok(server, "/models/load", {"model": POOLED, "client_note": "x"}) == {"success": True}
    assert _state(server, POOLED) == "ready"


def test_openapi_lists_the_new_routes(server):
    paths = httpx.get(server.base_url + "/openapi.json", timeout=60).json()["paths"]
    for path, method in (("/v1/health", "get"), ("/responses", "post"), ("/responses/input_tokens", "post"),
                         ("/chat/completions/input_tokens", "post"), ("/v1/chat/completions/input_tokens", "post"),
                         ("/embedding", "post"), ("/slots", "get"), ("/models/load", "post"),
                         ("/models/unload", "post")):
        assert method in paths[path], path
    assert paths["/v1/health"]["get"]["security"] == []


# -- llama-server's fields on its OpenAI-compatible routes -------------------------------------------------------------
#: What llama.cpp's web UI adds to a chat body (tools/ui chat.service.ts), every sampler at its default.
WEB_UI_FIELDS = {"cache_prompt": True, "return_progress": True, "sse_ping_interval": 1, "backend_sampling": False,
                 "timings_per_token": True, "dynatemp_range": 0, "dynatemp_exponent": 1, "xtc_probability": 0,
                 "xtc_threshold": 0.1, "typ_p": 1, "dry_multiplier": 0, "dry_base": 1.75, "dry_allowed_length": 2,
                 "dry_penalty_last_n": -1, "reasoning_format": "auto",
                 "samplers": ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                              "temperature"]}


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story."}]}),
    ("/v1/completions", {"prompt": "Once upon a time"}),
])
def test_llama_servers_fields_on_its_openai_routes_are_taken_as_completion_takes_them(server, path, body):
    plain = ok(server, path, {"model": STORIES, **body, "max_tokens": 8, "temperature": 0})
    extras = dict(WEB_UI_FIELDS)
    if "prompt" in body:
        extras.pop("reasoning_format")  # (a chat field)
    sent = ok(server, path, {"model": STORIES, **body, "max_tokens": 8, "temperature": 0, **extras})
    assert sent["choices"] == plain["choices"]
    # a sampler jan does not have, on, is refused as /completion refuses it; a misspelt field is still unknown
    for field, says in (({"dry_multiplier": 0.8}, "dry_multiplier is not supported"),
                        ({"cache_promt": True}, "cache_promt")):
        response = post(server, path, {"model": STORIES, **body, **field})
        assert response.status_code == 400 and says in response.json()["error"]["message"], response.text
    response = post(server, path, {"model": STORIES, **body, "samplers": ["top_p", "top_k"]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "samplers", response.text


@pytest.mark.parametrize("path, body", [
    ("/completion", {"prompt": "Once upon a time", "n_predict": 2}),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
])
def test_a_field_jan_ignores_is_still_of_llama_servers_type(server, path, body):
    # llama-server's schema reads these and answers 400 "Field 'cache_prompt': type must be boolean" for another
    # type or a count out of its range; jan, which ignores their values, took any (a 200 where the client's field
    # was wrong)
    for field, value in (("cache_prompt", "yes"), ("cache_prompt", 1), ("return_progress", "x"), ("verbose", 1),
                         ("backend_sampling", "x"), ("parse_tool_calls", "x"), ("n_keep", "x"), ("n_keep", -2),
                         ("n_keep", 1.5), ("n_keep", True), ("n_discard", -1), ("n_cache_reuse", "x"),
                         ("sse_ping_interval", -2)):
        response = post(server, path, {"model": STORIES, **body, field: value})
        assert response.status_code == 400, (path, field, value, response.text)
        assert response.json()["error"]["message"].startswith(field), response.text
    # what llama-server takes stays taken: its types, a count's ends, a whole float, null for the default
    taken = {"cache_prompt": False, "return_progress": False, "verbose": False, "backend_sampling": False,
             "parse_tool_calls": True, "n_keep": -1, "n_discard": 0, "n_cache_reuse": 4.0, "sse_ping_interval": -1,
             "t_max_prompt_ms": "unread", "return_tokens": None}
    ok(server, path, {"model": STORIES, **body, **taken})


def test_samplers_turn_off_the_samplers_they_leave_out_on_the_openai_routes():
    from jan.server import schemas
    from jan.server.openai_wire import sampling_of

    body = schemas.CompletionRequest(prompt="x", samplers="kt", top_k=12, top_p=0.5, min_p=0.2, temperature=0.7)
    sampling = sampling_of(body)
    assert (sampling.top_k, sampling.temperature) == (12, 0.7)  # listed: as given
    assert (sampling.top_p, sampling.min_p, sampling.typical_p) == (1.0, 0.0, 1.0)  # left out: off


@pytest.mark.parametrize("path, body, param", [
    ("/completion", {"prompt": []}, "prompt"),
    ("/v1/completions", {"prompt": []}, "prompt"),
    ("/v1/completions", {"prompt": [[]]}, "prompt[0]"),  # (an empty token list reached the engine: "code": null)
    ("/v1/completions", {"prompt": [[1, 2], []]}, "prompt[1]"),
    ("/v1/completions", {"prompt": "x", "best_of": 2}, "best_of"),
    ("/v1/embeddings", {"input": []}, "input"),
    ("/v1/completions", {"prompt": "x", "dry_multiplier": 1}, "dry_multiplier"),
    ("/completion", {"prompt": "x", "xtc_probability": 0.5}, "xtc_probability"),
])
def test_a_refused_field_is_named_once_in_front_and_as_the_param(server, path, body, param):
    response = post(server, path, {"model": STORIES, **body})
    assert response.status_code == 400, response.text
    err = response.json()["error"]
    assert err["message"].startswith(param) and err["message"].count(param) == 1, err
    if "param" in err:  # (OpenAI's shape has one; llama-server's does not)
        assert err["param"] == param and err["code"] is not None, err


def test_metrics_also_tell_llama_servers_names_from_the_same_counters(server):
    ok(server, "/completion", {"model": STORIES, "prompt": "Once upon a time", "n_predict": 5, "cache_prompt": False})
    text = httpx.get(server.base_url + "/metrics", timeout=60).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    label = f'{{model="{STORIES}"}}'
    for jan_name, llama_name in (("jan_prompt_tokens_total", "llamacpp:prompt_tokens_total"),
                                 ("jan_prompt_tokens_cached_total", "llamacpp:prompt_tokens_cached_total"),
                                 ("jan_generated_tokens_total", "llamacpp:tokens_predicted_total"),
                                 ("jan_slots_busy", "llamacpp:requests_processing"),
                                 ("jan_queue_depth", "llamacpp:requests_deferred")):
        # (jan's counters also tell where the model is served: engine="local", a remote model's "remote")
        jan_label = label if jan_name.startswith(("jan_slots", "jan_queue")) else f'{{engine="local",model="{STORIES}"}}'
        assert values[llama_name + label] == values[jan_name + jan_label], llama_name
    assert values["llamacpp:tokens_predicted_total" + label] >= 5
    assert "# TYPE llamacpp:prompt_tokens_total counter" in text
    assert "# TYPE llamacpp:requests_processing gauge" in text


def scrape(server) -> dict[str, float]:
    """One /metrics scrape, read with prometheus_client's own parser: the stories model's samples by name."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.base_url + "/metrics", timeout=120).text
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.labels.get("model") == STORIES}


PHASE_METRICS = ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total", "llamacpp:prompt_seconds_total",
                 "llamacpp:tokens_predicted_total", "llamacpp:tokens_predicted_seconds_total",
                 "llamacpp:prompt_tokens_seconds", "llamacpp:predicted_tokens_seconds", "llamacpp:n_tokens_max",
                 "llamacpp:n_decode_total", "llamacpp:n_busy_slots_per_decode")


def test_llama_servers_phase_metrics_account_the_requests_made(server):
    before = scrape(server)
    assert all(before[name] >= 0 for name in PHASE_METRICS), before
    text = ok(server, "/completion", {"model": STORIES, "prompt": "Once upon a time there was a little",
                                      "n_predict": 6, "ignore_eos": True, "cache_prompt": False})
    chat = ok(server, "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                               "max_tokens": 3})
    timings = [text["timings"], chat["timings"]]
    assert chat["usage"]["completion_tokens"] == chat["timings"]["predicted_n"]
    after = scrape(server)
    assert all(after[name] >= 0 for name in PHASE_METRICS), after

    def grew(name: str) -> float:
        return after[name] - before[name]

    # the token counters are the requests' own counts (their usage), and each phase that ran took time
    assert grew("llamacpp:prompt_tokens_total") == sum(t["prompt_n"] for t in timings)
    assert grew("llamacpp:prompt_tokens_cached_total") == sum(t["cache_n"] for t in timings)
    assert grew("llamacpp:tokens_predicted_total") == sum(t["predicted_n"] for t in timings)
    assert grew("llamacpp:prompt_seconds_total") > 0 and grew("llamacpp:tokens_predicted_seconds_total") > 0
    # a text step per generated token but the first, at least one per prompt
    assert grew("llamacpp:n_decode_total") >= sum(t["predicted_n"] for t in timings)
    assert after["llamacpp:n_tokens_max"] >= max(t["prompt_n"] + t["cache_n"] for t in timings)
    assert 1 <= after["llamacpp:n_busy_slots_per_decode"] <= 4  # (every text step runs at least one slot; 4 slots)
    # the throughput gauges average over the time since the last scrape: the requests' phases, then nothing
    assert after["llamacpp:prompt_tokens_seconds"] > 0 and after["llamacpp:predicted_tokens_seconds"] > 0, after
    idle = scrape(server)
    assert idle["llamacpp:prompt_tokens_seconds"] == 0 and idle["llamacpp:predicted_tokens_seconds"] == 0, idle
    assert idle["llamacpp:prompt_seconds_total"] == after["llamacpp:prompt_seconds_total"]  # (the totals stay)


def test_the_throughput_window_of_a_model_loaded_again_starts_from_zero():
    from jan.server.routes.health import throughput_gauges

    windows: dict = {}
    first = {"prompt_tokens_timed": 100, "prompt_seconds": 2.0, "predicted_steps": 30, "predicted_seconds": 3.0,
             "step_decodes": 40, "busy_slots_per_step": 60}
    assert throughput_gauges(windows, "m", first) == {"prompt_tokens_seconds": 50.0, "predicted_tokens_seconds": 10.0,
                                                       "n_busy_slots_per_decode": 1.5}
    more = first | {"prompt_tokens_timed": 160, "prompt_seconds": 3.0}
    assert throughput_gauges(windows, "m", more)["prompt_tokens_seconds"] == 60.0  # (the window since the last)
    assert throughput_gauges(windows, "m", more)["predicted_tokens_seconds"] == 0.0  # (nothing since)
    reloaded = {"prompt_tokens_timed": 8, "prompt_seconds": 0.5, "predicted_steps": 4, "predicted_seconds": 1.0}
    assert throughput_gauges(windows, "m", reloaded) == {"prompt_tokens_seconds": 16.0, "predicted_tokens_seconds": 4.0,
                                                          "n_busy_slots_per_decode": 0.0}


def test_the_throughput_window_starts_over_for_a_new_load_whose_totals_passed_the_old_ones(stories_path):
    """A model unloaded and loaded again between two scrapes whose new totals are already past the old load's: the
    window was the new load's totals less the old load's (no total went down to tell the reload); the load's id in
    the engine's metrics tells it."""
    import jan
    from jan.server.routes.health import _rate, throughput_gauges

    keys = ("prompt_tokens_timed", "prompt_seconds", "predicted_steps", "predicted_seconds")
    prompt = "Once upon a time there was a little girl who"
    windows: dict = {}
    with jan.Model(stories_path) as first:
        first.generate(prompt, max_tokens=4, temperature=0, ignore_eos=True)
        old = first.metrics()
    throughput_gauges(windows, "m", old)
    with jan.Model(stories_path) as again:
        assert again.metrics()["load_id"] != old["load_id"]
        new = again.metrics()
        for n in range(200):  # (bounded: each round adds tokens and seconds to every total)
            if all(new[k] > old[k] for k in keys):
                break
            # (another start each time: no prompt read from the cache)
            again.generate(f"{n} {prompt}", max_tokens=8, temperature=0, ignore_eos=True)
            new = again.metrics()
        assert all(new[k] > old[k] for k in keys), (old, new)
    gauges = throughput_gauges(windows, "m", new)
    assert gauges["prompt_tokens_seconds"] == _rate(new["prompt_tokens_timed"], new["prompt_seconds"])
    assert gauges["predicted_tokens_seconds"] == _rate(new["predicted_steps"], new["predicted_seconds"])


def test_llama_servers_other_names_are_read_on_every_route(server):
    # n_predict on the OpenAI routes is their max_tokens (-1: no cap); reasoning_control, which the web UI always
    # sends, changes nothing without a control endpoint
    plain = ok(server, "/v1/completions", {"model": STORIES, "prompt": "Once", "max_tokens": 3, "temperature": 0})
    named = ok(server, "/v1/completions", {"model": STORIES, "prompt": "Once", "n_predict": 3, "temperature": 0,
                                           "reasoning_control": True})
    assert named["choices"] == plain["choices"] and named["usage"]["completion_tokens"] == 3
    chat = ok(server, "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                               "n_predict": 2, "reasoning_control": True})
    assert chat["usage"]["completion_tokens"] == 2
    # /completion's logprobs is its n_probs (a count); OpenAI's logprobs: true is no count and changes nothing
    probs = ok(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 2, "logprobs": 2})
    assert [len(p["top_logprobs"]) for p in probs["completion_probabilities"]] == [2, 2]
    assert "completion_probabilities" not in ok(server, "/completion", {"model": STORIES, "prompt": "Once",
                                                                         "n_predict": 2, "logprobs": True})


@pytest.mark.parametrize("cap", [{"max_tokens": -1}, {"n_predict": -1}])
def test_minus_one_tokens_is_llama_servers_no_cap_on_the_openai_routes(server, cap):
    """-1 (llama.cpp's web UI sends it by default) runs to the end of generation or of the context, as a big
    max_tokens does, not to a route's own default (16 on completions)."""
    body = {"model": STORIES, "prompt": "Once upon a time", "temperature": 0, "ignore_eos": True}
    uncapped = ok(server, "/v1/completions", body | cap)
    assert uncapped["choices"] == ok(server, "/v1/completions", body | {"max_tokens": 2**31 - 1})["choices"]
    assert uncapped["usage"]["completion_tokens"] > 16
    chat = ok(server, "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                               "ignore_eos": True, **cap})
    assert chat["choices"][0]["finish_reason"] == "length" and chat["usage"]["completion_tokens"] > 16


def test_native_bodies_read_a_whole_number_written_as_a_float_as_llama_server_does(server):
    exact = ok(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 4, "top_k": 40, "n_probs": 2,
                                       "temperature": 0})
    floats = ok(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 4.0, "top_k": 40.0,
                                        "logprobs": 2.0, "temperature": 0})
    assert floats["content"] == exact["content"] and floats["tokens_predicted"] == 4
    assert len(floats["completion_probabilities"][0]["top_logprobs"]) == 2
    assert ok(server, "/embedding", {"model": POOLED, "input": "hi", "embd_normalize": 1.0}) == \
        ok(server, "/embedding", {"model": POOLED, "input": "hi", "embd_normalize": 1})
    # a fraction is no count: still a 400 naming the field (llama-server drops it unsaid)
    native_error(post(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 4.5}), 400,
                 "n_predict")


def test_llama_servers_continuation_fields_are_taken_where_they_agree_with_jans_continuation(server):
    prefill = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Once upon"}]
    base = {"model": STORIES, "messages": prefill, "max_tokens": 3, "temperature": 0}
    plain = ok(server, "/v1/chat/completions", base)
    for fields in ({"continue_final_message": True, "add_generation_prompt": False},  # the web UI's "continue"
                   {"continue_final_message": "content"}, {"add_generation_prompt": True},
                   {"continue_final_message": False}):
        assert ok(server, "/v1/chat/completions", base | fields)["choices"] == plain["choices"], fields
    asked = [{"role": "user", "content": "hi"}]
    for messages, fields, param in (
            (asked, {"continue_final_message": True}, "continue_final_message"),
            (asked, {"add_generation_prompt": False}, "add_generation_prompt"),
            (prefill, {"continue_final_message": True, "add_generation_prompt": True}, "add_generation_prompt"),
            (prefill, {"continue_final_message": "reasoning_content"}, "continue_final_message")):
        response = post(server, "/v1/chat/completions", base | {"messages": messages} | fields)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, (fields, response.text)


def test_apply_template_renders_a_conversation_closed_when_add_generation_prompt_is_false(server):
    """llama-server's /apply-template with ``add_generation_prompt: false`` renders the conversation closed after its
    last turn (checked against llama-server 0.3.36: ``<|im_start|>user\\nhi<|im_end|>\\n`` for ChatML); jan
    refused it (400: it "continues only a final assistant message"). A chat completion still refuses it."""
    asked = {"model": STORIES, "messages": [{"role": "user", "content": "hi"}]}
    opened = ok(server, "/apply-template", asked)["prompt"]
    closed = ok(server, "/apply-template", asked | {"add_generation_prompt": False})["prompt"]
    assert opened.startswith(closed) and opened != closed
    assert closed.endswith("<|im_start|>user\nhi<|im_end|>\n") and "assistant" not in closed
    assert ok(server, "/apply-template", asked | {"add_generation_prompt": True})["prompt"] == opened
    # a prefill is still continued, as before; both switches on is still llama-server's 400
    prefill = {"model": STORIES, "messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "Once upon"}]}
    assert ok(server, "/apply-template", prefill | {"add_generation_prompt": False})["prompt"].endswith("Once upon")
    for path, fields in (("/apply-template", {"continue_final_message": True, "add_generation_prompt": True}),
                         ("/v1/chat/completions", {"add_generation_prompt": False, "max_tokens": 2})):
        response = post(server, path, (prefill if "continue_final_message" in fields else asked) | fields)
        assert response.status_code == 400, (path, response.text)
        if path == "/apply-template":  # llama-server's shape: no param, a numeric code
            assert response.json()["error"]["code"] == 400, response.text
        else:
            assert response.json()["error"]["param"] == "add_generation_prompt"


def test_json_schema_on_the_openai_routes_constrains_the_output_as_on_completion(server):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    text = ok(server, "/v1/completions", {"model": STORIES, "prompt": "Once", "max_tokens": 40, "temperature": 0,
                                          "json_schema": schema})["choices"][0]["text"]
    native = ok(server, "/completion", {"model": STORIES, "prompt": "Once", "n_predict": 40, "temperature": 0,
                                        "json_schema": schema})["content"]
    assert text == native and isinstance(json.loads(text)["a"], int)
    chat = ok(server, "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                               "max_tokens": 40, "temperature": 0, "json_schema": schema})
    assert isinstance(json.loads(chat["choices"][0]["message"]["content"])["a"], int)
    for path, body in (("/v1/completions", {"prompt": "Once"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
        for extra in ({"json_schema": {"type": "bogus"}}, {"json_schema": {}, "grammar": 'root ::= "a"'}):
            response = post(server, path, {"model": STORIES, **body, **extra})
            assert response.status_code == 400 and response.json()["error"]["param"] == "json_schema", response.text
    response = post(server, "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                                     "json_schema": {}, "response_format": {"type": "text"}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "json_schema", response.text


def test_tokenizing_routes_load_the_model_again_when_it_closed_after_its_hand_out(server, monkeypatch):
    """/tokenize, /detokenize and a native text prompt's token pieces find the model loaded, or load it again: another
    client's keep_alive 0 coming between the model's hand-out and the work (here: right after the first hand-out of
    each) closes it, and the work is done on the model loaded anew. Before, they answered 503 "closed (unloaded)"."""
    from jan.extensions.llamacpp.extension import LlamaCppExtension

    real = LlamaCppExtension._ensure_loaded
    unloads = []

    async def then_keep_alive_0(self, model, **kwargs):
        loaded = await real(self, model, **kwargs)
        if not kwargs.get("claim") and armed:  # (a tokenize's hand-out; a generation claims its model)
            armed.clear()
            unloads.append(self._engine().unload_when_idle(model["id"]))  # (Ollama's keep_alive 0 of another client)
        return loaded

    monkeypatch.setattr(LlamaCppExtension, "_ensure_loaded", then_keep_alive_0)
    armed = [True]
    tokens = ok(server, "/tokenize", {"model": STORIES, "content": "Once upon a time"})["tokens"]
    armed.append(True)
    assert ok(server, "/detokenize", {"model": STORIES, "tokens": tokens})["content"].strip() == "Once upon a time"
    armed.append(True)
    assert ok(server, "/completion", {"model": STORIES, "prompt": "Once upon", "n_predict": 2})["content"]
    assert unloads == [True, True, True]  # each closed the model under the work that was handed it


def test_slots_of_a_loaded_embedding_model_list_its_slots_without_tasks(server):
    """An embedding model has no generation slots to read (its engine's slots_info refuses): the listing is its
    count's, as before, not an error."""
    ok(server, "/embedding", {"model": POOLED, "input": "hello"})  # (loaded)
    response = httpx.get(server.base_url + "/slots", params={"model": POOLED}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() and all(set(s) == {"id", "n_ctx", "speculative", "is_processing"} for s in response.json())


def test_a_streams_partials_tell_every_token_however_the_deltas_come():
    """A delta that shows no text (held back: it may start a stop string) still carries its tokens: they go out with
    the next partial, or with the final object when none follows. They were dropped, so a stream's ``tokens``
    spelled less than its ``content`` whenever the engine's deltas were merged that way (timing decided it)."""
    from jan.server.dialects.llamacpp import NativeResults
    from jan.services.types import CompletionDelta

    results = NativeResults("m", dict, n_results=1, return_tokens=True, clock=lambda: 0.0)
    assert results.add(CompletionDelta(text="Once", token_ids=(1,)))["tokens"] == [1]
    assert results.add(CompletionDelta(text="", token_ids=(2,))) is None  # (held: nothing to show yet)
    assert results.add(CompletionDelta(text=" upon", token_ids=(3,)))["tokens"] == [2, 3]
    assert results.add(CompletionDelta(text="", token_ids=(4,), finish_reason="stop", stop="x")) is None
    assert results.choices[0].unsent_tokens == [4]  # (what the stream's final object tells)
    assert results.finals()[0]["tokens"] == [1, 2, 3, 4]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_strings_tokens_are_left_out_of_tokens_as_the_readme_says(server, stream):
    # (a deliberate difference from llama-server, whose tokens hold every one sampled: jan's spell the text shown)
    body = {"model": STORIES, "prompt": "Once upon a time", "n_predict": 20, "temperature": 0, "stop": ["girl"],
            "return_tokens": True, "stream": stream}
    if stream:
        response = httpx.post(server.base_url + "/completion", json=body, timeout=120)
        events = [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: ")]
        content, tokens, final = "".join(e["content"] for e in events), sum((e["tokens"] for e in events), []), \
            events[-1]
    else:
        final = ok(server, "/completion", body)
        content, tokens = final["content"], final["tokens"]
    assert final["stop_type"] == "word" and final["stopping_word"] == "girl", final
    assert ok(server, "/detokenize", {"model": STORIES, "tokens": tokens})["content"] == content, (tokens, content)
    assert final["tokens_predicted"] > len(tokens), final  # (the stop string's tokens were sampled, and counted)


def test_completion_takes_more_stop_strings_than_openais_16(server):
    # llama-server's stop names no count (llama.vscode and scripts send long lists); jan refused a 17th with OpenAI's
    # bound. The bound of APIs that name none stays (each string is matched against every token).
    from jan.server.schemas import MAX_STOP_STRINGS

    stops = [f"zq{i}" for i in range(30)] + ["girl"]
    result = ok(server, "/completion", {"model": STORIES, "prompt": "Once upon a time", "n_predict": 20,
                                        "temperature": 0, "stop": stops})
    assert result["stop_type"] == "word" and result["stopping_word"] == "girl", result
    response = post(server, "/completion", {"model": STORIES, "prompt": "x", "stop": ["a"] * (MAX_STOP_STRINGS + 1)})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("stop"), response.text


def test_ctx_size_is_each_slots_as_the_readme_says(server):
    # (a deliberate difference: llama-server's -c 512 -np 4 would give each slot 128)
    slots = httpx.get(server.base_url + "/slots", params={"model": STORIES}, timeout=60).json()
    assert len(slots) == 4 and all(s["n_ctx"] == 512 for s in slots), slots
    props = httpx.get(server.base_url + "/props", params={"model": STORIES}, timeout=60).json()
    assert props["default_generation_settings"]["n_ctx"] == 512, props["default_generation_settings"]
