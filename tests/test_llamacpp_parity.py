"""llama-server parity on its OpenAI routes and its token routes, as llama-server 0.3.36 answers them (checked
against its binary on stories260K): ``timings`` on the OpenAI answers and on a stream's last chunk, ``n_probs`` on
the OpenAI routes, ``/tokenize``'s mixed content and empty bodies."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from server_helpers import ok, post, start_server

STORY = "Once upon a time"
TIMINGS = {"cache_n": int, "prompt_n": int, "prompt_ms": float, "prompt_per_token_ms": float,
           "prompt_per_second": float, "predicted_n": int, "predicted_ms": float, "predicted_per_token_ms": float,
           "predicted_per_second": float}
GREEDY = {"model": "stories260K", "temperature": 0}
CHAT = GREEDY | {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("parity"), [stories_path], n_parallel=2)
    yield srv
    srv.stop()


def chunks(server, path: str, body: dict) -> list[dict]:
    """The JSON chunks of an OpenAI stream (``[DONE]`` left out)."""
    response = httpx.post(server.base_url + path, json=body | {"stream": True}, timeout=120)
    assert response.status_code == 200, response.text
    data = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]", data
    return [json.loads(d) for d in data[:-1]]


def check_timings(timings: dict, predicted: int) -> None:
    assert set(timings) == set(TIMINGS), timings
    for key, kind in TIMINGS.items():
        assert isinstance(timings[key], (int, float) if kind is float else int), (key, timings)
    assert timings["predicted_n"] == predicted and timings["prompt_n"] >= 1, timings
    assert timings["prompt_ms"] > 0 and timings["predicted_ms"] >= 0, timings
    # llama-server's rates: the first generated token is free (it comes from the prompt's batch), the rest are steps
    steps = predicted - 1
    if steps and timings["predicted_ms"] > 0:
        assert timings["predicted_per_token_ms"] == pytest.approx(timings["predicted_ms"] / steps)
        assert timings["predicted_per_second"] == pytest.approx(steps * 1000.0 / timings["predicted_ms"])
    assert timings["prompt_per_token_ms"] == pytest.approx(timings["prompt_ms"] / timings["prompt_n"])
    assert timings["prompt_per_second"] == pytest.approx(timings["prompt_n"] * 1000.0 / timings["prompt_ms"])


# -- timings -----------------------------------------------------------------------------------------------------
def test_chat_and_text_completions_carry_llama_servers_timings(server):
    chat = ok(server, "/v1/chat/completions", CHAT | {"max_tokens": 4})
    check_timings(chat["timings"], chat["usage"]["completion_tokens"])
    text = ok(server, "/v1/completions", GREEDY | {"prompt": STORY, "max_tokens": 5})
    check_timings(text["timings"], 5)
    assert text["timings"]["prompt_n"] + text["timings"]["cache_n"] == text["usage"]["prompt_tokens"]


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT), ("/v1/completions", GREEDY | {"prompt": STORY})])
def test_a_streams_last_chunk_carries_the_timings(server, path, body):
    got = chunks(server, path, body | {"max_tokens": 4})
    timed = [c for c in got if "timings" in c]
    # llama-server's: the result's last chunk (the one with its finish_reason), and none before it
    assert timed == [got[-1]] and got[-1]["choices"][0]["finish_reason"] == "length", got
    check_timings(got[-1]["timings"], 4)
    with_usage = chunks(server, path, body | {"max_tokens": 4, "stream_options": {"include_usage": True}})
    timed = [c for c in with_usage if "timings" in c]
    # asked for usage, the usage chunk is the last: it carries them
    assert timed == [with_usage[-1]] and with_usage[-1]["choices"] == [] and "usage" in with_usage[-1], with_usage
    check_timings(with_usage[-1]["timings"], 4)


def test_timings_are_the_native_results_numbers(server):
    # (one source: the engine's usage, told alike by /completion and the OpenAI routes)
    native = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 5})
    check_timings(native["timings"], 5)


def test_a_usage_without_engine_timings_tells_none():
    from jan.engine.results import Usage
    from jan.server import openai_wire as wire
    from jan.services.types import ChatMessage, ChatResult, ChoiceResult

    # a remote engine's usage: token counts only (llama-server tells no timings of a result its slot never ran)
    remote = Usage(prompt_tokens=3, completion_tokens=2)
    answer = wire.chat_completion(ChatResult("m", (ChoiceResult(ChatMessage("assistant", "hi"), "stop"),), remote))
    assert "timings" not in answer
    timed = Usage(prompt_tokens=3, completion_tokens=3, cached_tokens=1, prompt_ms=2.0, generation_ms=4.0,
                  draft_tokens=2, draft_accepted=1)
    assert wire.timings_dict(timed) == {
        "cache_n": 1, "prompt_n": 2, "prompt_ms": 2.0, "prompt_per_token_ms": 1.0, "prompt_per_second": 1000.0,
        "predicted_n": 3, "predicted_ms": 4.0, "predicted_per_token_ms": 2.0, "predicted_per_second": 500.0,
        "draft_n": 2, "draft_n_accepted": 1}


# -- n_probs on the OpenAI routes --------------------------------------------------------------------------------
def test_n_probs_on_a_chat_asks_its_logprobs(server):
    # llama-server copies n_probs into the request it runs: the answer's logprobs, n_probs alternatives each
    answer = ok(server, "/v1/chat/completions", CHAT | {"max_tokens": 2, "n_probs": 2})
    content = answer["choices"][0]["logprobs"]["content"]
    assert len(content) == 2 and all(len(t["top_logprobs"]) == 2 for t in content), content
    # logprobs: true with its own top_logprobs is read first, as llama-server reads it
    answer = ok(server, "/v1/chat/completions", CHAT | {"max_tokens": 2, "n_probs": 2, "logprobs": True,
                                                        "top_logprobs": 3})
    assert all(len(t["top_logprobs"]) == 3 for t in answer["choices"][0]["logprobs"]["content"])
    answer = ok(server, "/v1/chat/completions", CHAT | {"max_tokens": 2, "n_probs": 0})
    assert answer["choices"][0]["logprobs"] is None


def test_n_probs_on_a_text_completion_is_its_logprobs(server):
    answer = ok(server, "/v1/completions", GREEDY | {"prompt": STORY, "max_tokens": 2, "n_probs": 3})
    logprobs = answer["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == 2 and all(len(t) == 3 for t in logprobs["top_logprobs"]), logprobs


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT), ("/v1/completions", GREEDY | {"prompt": STORY})])
@pytest.mark.parametrize("bad", [21, -1, "2", True, 1.5])
def test_a_bad_n_probs_is_a_400_naming_it(server, path, body, bad):
    response = post(server, path, body | {"max_tokens": 2, "n_probs": bad})
    assert response.status_code == 400, response.text
    assert "n_probs" in response.json()["error"]["message"], response.text


# -- /tokenize, /detokenize ----------------------------------------------------------------------------------------
def test_tokenize_takes_llama_servers_mixed_content(server):
    # (llama-server 0.3.36 on stories260K: ["Once", 270, " upon"] -> [403, 270, 410, 407])
    assert ok(server, "/tokenize", {"content": ["Once", 270, " upon"]}) == {"tokens": [403, 270, 410, 407]}
    assert ok(server, "/tokenize", {"content": ["Once", 270], "with_pieces": True}) == {
        "tokens": [{"id": 403, "piece": " Once"}, {"id": 270, "piece": " h"}]}
    # add_special: a BOS only before a leading text piece
    assert ok(server, "/tokenize", {"content": ["Once"], "add_special": True}) == {"tokens": [1, 403]}
    assert ok(server, "/tokenize", {"content": [270, "Once"], "add_special": True}) == {"tokens": [270, 403]}
    assert ok(server, "/tokenize", {"content": []}) == {"tokens": []}


def test_tokenize_refuses_an_id_outside_the_vocabulary(server):
    # (llama-server echoes it back as a token, which no completion then takes)
    response = post(server, "/tokenize", {"content": ["Once", 99999]})
    assert response.status_code == 400, response.text
    err = response.json()["error"]
    assert "content[1]" in err["message"] and "outside the model's vocabulary" in err["message"], err
    response = post(server, "/tokenize", {"content": [[1, 2]]})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("path,answer", [("/tokenize", {"tokens": []}), ("/detokenize", {"content": ""})])
def test_an_empty_body_object_is_nothing_to_do(server, path, answer):
    assert ok(server, path, {}) == answer
    assert ok(server, path, {"model": "stories260K"}) == answer


@pytest.mark.parametrize("path,answer", [("/tokenize", {"tokens": []}), ("/detokenize", {"content": ""})])
def test_an_empty_body_is_read_as_an_empty_object(server, path, answer):
    # (jan reads no body as {}, as on every route; llama-server 0.3.36 answers it 500, its JSON parser's words)
    response = httpx.post(server.base_url + path, content=b"", timeout=60, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == answer, response.text
    response = httpx.post(server.base_url + path, content=b"{not json", timeout=60,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text


# (bad bodies of llama-server's token and template routes: what its clients read as on /completion)
TOKEN_ROUTE_FAULTS = {
    "/tokenize": [{"model": "stories260K", "content": 5}, {"model": "nope", "content": "x"}],
    "/detokenize": [{"model": "stories260K", "tokens": ["a"]}, {"model": "stories260K", "tokens": [99999]}],
    "/apply-template": [{"model": "stories260K", "messages": "hi"}, {"model": "nope", "messages": []}],
}


def _llama_server_error(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "type"}, body
    assert body["error"]["code"] == 400 and body["error"]["type"] == "invalid_request_error", body
    return body["error"]


@pytest.mark.parametrize("path", TOKEN_ROUTE_FAULTS)
def test_token_and_template_routes_answer_faults_in_llama_servers_shape(server, path):
    for body in TOKEN_ROUTE_FAULTS[path]:
        _llama_server_error(post(server, path, body))
    response = httpx.post(server.base_url + path, content=b"{not json", timeout=60,
                          headers={"Content-Type": "application/json"})
    assert "not valid JSON" in _llama_server_error(response)["message"]
    # jan's own /v1 twin keeps OpenAI's shape (a text code, a param)
    response = post(server, "/v1" + path, TOKEN_ROUTE_FAULTS[path][0])
    assert response.status_code == 400 and isinstance(response.json()["error"]["code"], str), response.text
    assert "param" in response.json()["error"], response.text


def test_response_fields_as_text_stays_a_400_naming_it(server):
    # llama-server reads a wrong-typed field as its default with a warning in its log (json_value): the whole
    # result, whatever was asked. A clear 400 tells the client its mistake instead
    response = post(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 2, "response_fields": "content"})
    assert response.status_code == 400 and "response_fields" in response.json()["error"]["message"], response.text


# -- post_sampling_probs -------------------------------------------------------------------------------------------
SAMPLED = {"model": "stories260K", "prompt": STORY, "temperature": 0.8, "top_k": 3, "top_p": 1, "min_p": 0,
           "repeat_penalty": 1.0, "seed": 1, "n_probs": 4, "post_sampling_probs": True}


def test_post_sampling_probs_are_the_chains_candidates_as_llama_server_tells_them(server):
    result = ok(server, "/completion", SAMPLED | {"n_predict": 3})
    probs = result["completion_probabilities"]
    assert len(probs) == 3 and result["generation_settings"]["post_sampling_probs"] is True, result
    for p in probs:
        assert "logprob" not in p and "top_logprobs" not in p, p
        # top_k 3 left three candidates (fewer than n_probs 4): the whole distribution the token was drawn from
        assert len(p["top_probs"]) == 3 and sum(a["prob"] for a in p["top_probs"]) == pytest.approx(1, abs=1e-4)
        assert [a["prob"] for a in p["top_probs"]] == sorted((a["prob"] for a in p["top_probs"]), reverse=True)
        drawn = [a for a in p["top_probs"] if a["id"] == p["id"]]
        assert drawn and drawn[0]["prob"] == pytest.approx(p["prob"]), p
    # the first token's, which no draw before it changes: llama-server 0.3.36's numbers for this prompt
    first = [(a["id"], a["token"]) for a in probs[0]["top_probs"]]
    assert first == [(432, ","), (383, " there"), (322, " in")], probs[0]
    assert [a["prob"] for a in probs[0]["top_probs"]] == pytest.approx([0.98776466, 0.01219518, 4.0189e-05],
                                                                        rel=1e-3)


def test_post_sampling_probs_of_a_greedy_pick_are_the_pick_alone(server):
    result = ok(server, "/completion", GREEDY | {"prompt": "Once", "n_predict": 2, "n_probs": 3,
                                                 "post_sampling_probs": True})
    # (llama-server 0.3.36: " upon" 1.0, " a" 1.0, each its own only candidate)
    assert [(p["token"], p["prob"], [(a["token"], a["prob"]) for a in p["top_probs"]])
            for p in result["completion_probabilities"]] == [(" upon", 1.0, [(" upon", 1.0)]), (" a", 1.0, [(" a", 1.0)])]


def test_post_sampling_probs_stream_in_each_partial(server):
    response = httpx.post(server.base_url + "/completion", json=SAMPLED | {"n_predict": 2, "stream": True},
                          timeout=120)
    events = [json.loads(line[len("data: "):]) for line in response.text.split("\n") if line.startswith("data: ")]
    partials = [e for e in events if not e["stop"]]
    assert partials and all("top_probs" in e["completion_probabilities"][0] for e in partials), events


def test_post_sampling_probs_stay_refused_on_text_completions(server):
    # (OpenAI's lists of a text completion have no field for a probability)
    response = post(server, "/v1/completions", GREEDY | {"prompt": STORY, "logprobs": 2, "max_tokens": 2,
                                                          "post_sampling_probs": True})
    assert response.status_code == 400, response.text
    assert "post_sampling_probs" in response.json()["error"]["message"], response.text


def test_post_sampling_probs_on_a_chat_are_llama_servers_probs(server):
    # llama-server 0.3.36 takes it on its chat and tells each token's prob and top_probs there (was a 400 here);
    # OpenAI's logprob and top_logprobs stay beside them, in the same distribution (OpenAI clients read those)
    body = CHAT | {"temperature": 0.8, "top_k": 3, "top_p": 1, "min_p": 0, "seed": 1, "max_tokens": 3,
                   "logprobs": True, "top_logprobs": 4, "post_sampling_probs": True}
    content = ok(server, "/v1/chat/completions", body)["choices"][0]["logprobs"]["content"]
    assert len(content) == 3, content
    for item in content:
        # top_k 3 left three candidates: the whole distribution the token was drawn from
        assert len(item["top_probs"]) == 3 and sum(a["prob"] for a in item["top_probs"]) == pytest.approx(1, abs=1e-4)
        assert item["logprob"] == pytest.approx(math.log(item["prob"]), abs=1e-6), item
        assert [a["id"] for a in item["top_probs"]] == [a["id"] for a in item["top_logprobs"]], item
        drawn = [a for a in item["top_probs"] if a["id"] == item["id"]]
        assert drawn and drawn[0]["prob"] == pytest.approx(item["prob"]), item
    streamed = chunks(server, "/v1/chat/completions", body)
    items = [t for c in streamed for choice in c["choices"] for t in ((choice.get("logprobs") or {}).get("content")
                                                                      or ())]
    assert [t["id"] for t in items] == [t["id"] for t in content] and all("top_probs" in t for t in items), items
    # without it, the model's own logprobs as before
    plain = ok(server, "/v1/chat/completions", body | {"post_sampling_probs": False})
    assert "prob" not in plain["choices"][0]["logprobs"]["content"][0], plain


# -- timings_per_token ---------------------------------------------------------------------------------------------
def native_events(server, body: dict) -> list[dict]:
    response = httpx.post(server.base_url + "/completion", json=body | {"stream": True}, timeout=120)
    assert response.status_code == 200, response.text
    return [json.loads(line[len("data: "):]) for line in response.text.split("\n") if line.startswith("data: ")]


def test_timings_per_token_puts_the_timings_so_far_on_every_partial(server):
    events = native_events(server, GREEDY | {"prompt": STORY, "n_predict": 6, "timings_per_token": True})
    partials, final = events[:-1], events[-1]
    assert partials and final["stop"] is True and final["generation_settings"]["timings_per_token"] is True
    assert all(set(e["timings"]) == set(TIMINGS) for e in partials), partials
    counts = [e["timings"]["predicted_n"] for e in partials]
    # the engine's counts as the tokens came (never fewer than shown), up to the final's
    assert counts == sorted(counts) and all(n >= e["tokens_predicted"] for n, e in zip(counts, partials)), counts
    assert counts[-1] <= final["timings"]["predicted_n"] == 6, (counts, final["timings"])
    assert all(e["timings"]["prompt_n"] == final["timings"]["prompt_n"] for e in partials)
    # without it, only the last object carries them, as llama-server sends them
    plain = native_events(server, GREEDY | {"prompt": STORY, "n_predict": 3})
    assert [e for e in plain if "timings" in e] == [plain[-1]], plain


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT), ("/v1/completions", GREEDY | {"prompt": STORY})])
def test_timings_per_token_on_the_openai_streams(server, path, body):
    # (llama.cpp's web UI asks it on /v1/chat/completions, to show the speed while the answer comes)
    got = chunks(server, path, body | {"max_tokens": 5, "timings_per_token": True})
    # (every chunk of text: on a busy machine the engine may hand several tokens, or all, in one)
    text = [c for c in got if c["choices"] and (c["choices"][0].get("text") or
                                                c["choices"][0].get("delta", {}).get("content"))]
    assert text and all("timings" in c and c["timings"]["predicted_n"] >= 1 for c in text), got
    assert got[-1]["timings"]["predicted_n"] == 5, got[-1]
    plain = chunks(server, path, body | {"max_tokens": 5})
    assert [c for c in plain if "timings" in c] == [plain[-1]], plain
