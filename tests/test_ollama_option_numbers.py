"""Ollama's ``options`` take an integer written as a whole-number float (``"num_predict": 8.0``), as Ollama does
(it reads options as a map of JSON numbers, Go's float64, and converts): Python clients that compute a value
(``4096 * 0.5``) send one, and jan answered them 400. A fraction is still a 400 naming the option (Ollama would
cut it to a whole number without a word), and so are the values that no integer is (``true``, ``"8"``), in the
load-time options too (``num_ctx``: ignored per request, but ``"4k"`` was taken without a word).
Ollama's own top-level integer fields (``top_logprobs``, ``dimensions``) stay strict, as Go's JSON decoder is."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import post_json, running
from jan.engine.model import LOAD_RANGES
from jan.engine.params import RANGES
from jan.server.dialects.ollama_schemas import LOAD_OPTIONS, OllamaCreateParameters, OllamaOptions, _integer_fields

EMBED = "all-MiniLM-L6-v2-f32"
WAIT_S = 300

#: Every integer option, with a whole-number float of a value it takes.
WHOLE = {"num_predict": 3.0, "seed": 42.0, "top_k": 40.0, "mirostat": 0.0, "repeat_last_n": 64.0, "num_keep": 4.0,
         # load-time options: ignored per request (a model is loaded once for all), typed all the same
         "num_ctx": 2048.0, "num_batch": 512.0, "num_gpu": 0.0, "main_gpu": 0.0, "num_thread": 1.0,
         "draft_num_predict": 4.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("numbers") / "data", stories_path, minilm_path) as srv:
        yield srv


def post(server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return post_json(server.base_url, path, body, timeout=WAIT_S)


def _body(path: str, options: dict[str, Any]) -> dict[str, Any]:
    if path == "/api/embed":
        return {"model": EMBED, "input": "hello", "options": options}
    if path == "/api/embeddings":
        return {"model": EMBED, "prompt": "hello", "options": options}
    body: dict[str, Any] = {"model": "stories260K", "stream": False, "options": {"num_predict": 3, **options}}
    if path == "/api/chat":
        return {**body, "messages": [{"role": "user", "content": "Once"}]}
    return {**body, "prompt": "Once"}


def test_the_table_names_every_integer_option():
    assert set(WHOLE) == _integer_fields(OllamaOptions)


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/embed"])
@pytest.mark.parametrize("name", list(WHOLE))
def test_a_whole_number_float_is_taken(server, path, name):
    status, answer = post(server, path, _body(path, {name: WHOLE[name]}))
    assert status == 200, answer


def test_it_means_the_integer(server):
    as_float = post(server, "/api/generate", _body("/api/generate", {"num_predict": 5.0, "seed": 7.0,
                                                                     "temperature": 1.0}))
    as_int = post(server, "/api/generate", _body("/api/generate", {"num_predict": 5, "seed": 7, "temperature": 1}))
    assert as_float[0] == as_int[0] == 200
    assert as_float[1]["response"] == as_int[1]["response"] and as_float[1]["eval_count"] == 5


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/embed"])
@pytest.mark.parametrize(("name", "value", "says"), [
    ("top_k", 2.5, "valid integer"), ("num_predict", 1e300, "less than or equal"), ("seed", 1e30, "less than"),
    ("top_k", True, "valid integer"), ("num_keep", "4", "valid integer"), ("mirostat", 3.0, "less than or equal"),
])
def test_what_is_no_integer_is_refused_by_name(server, path, name, value, says):
    status, answer = post(server, path, _body(path, {name: value}))
    assert status == 400 and answer["error"].startswith(f"options.{name}: ") and says in answer["error"], answer


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/embed"])
@pytest.mark.parametrize(("name", "value", "says"), [
    ("num_ctx", "4k", "valid integer"), ("num_thread", [2], "valid integer"), ("use_mmap", 1, "valid boolean"),
    ("num_gpu", 1.5, "valid integer"),
])
def test_a_load_time_option_of_the_wrong_type_is_refused(server, path, name, value, says):
    # ignored per request, but "num_ctx": "4k" was taken without a word where Ollama refuses it
    status, answer = post(server, path, _body(path, {name: value}))
    assert status == 400 and answer["error"].startswith(f"options.{name}: ") and says in answer["error"], answer
    status, answer = post(server, path, _body(path, {"num_ctx": 64, "use_mmap": False, "num_thread": 3}))
    assert status == 200, answer


@pytest.mark.parametrize(("path", "field"), [("/api/generate", "top_logprobs"), ("/api/embed", "dimensions")])
def test_top_level_integers_stay_strict(server, path, field):
    body = {**_body(path, {}), field: 2.0}
    status, answer = post(server, path, body)
    assert status == 400 and field in answer["error"], answer


def test_create_parameters_take_them_too():
    params = OllamaCreateParameters.model_validate({"num_ctx": 256.0, "num_thread": 2.0, "temperature": 0.5})
    assert params.num_ctx == 256 and type(params.num_ctx) is int and params.num_thread == 2


#: Each load-time option, with values out of the range of the jan setting it is, and the values Ollama gives a
#: meaning that jan takes (0: the model's own context; -1 GPU layers, 0 threads: jan's choice).
OUT_OF_RANGE = {"num_ctx": [5, -1], "num_batch": [0], "num_gpu": [-2], "main_gpu": [-9], "num_thread": [513],
                "draft_num_predict": [-1, 257]}
IN_RANGE = {"num_ctx": 0, "num_batch": 1, "num_gpu": -1, "main_gpu": -1, "num_thread": 0, "draft_num_predict": 256,
            "use_mmap": True}
ROUTES = ["/api/generate", "/api/chat", "/api/embed", "/api/embeddings"]


def test_every_load_option_is_in_the_tables():
    # one table of ranges: every ranged load option Ollama takes is jan's own setting's (no second copy here)
    assert set(OUT_OF_RANGE) | {"use_mmap"} == set(LOAD_OPTIONS) == set(IN_RANGE)
    for name in OUT_OF_RANGE:
        option = LOAD_OPTIONS[name]
        assert option in LOAD_RANGES or option in RANGES, option


@pytest.mark.parametrize("path", ROUTES)
def test_a_load_option_out_of_range_is_refused_by_name(server, path):
    # "draft_num_predict": -1 (or "x") was a 200 where "num_ctx": "x" was a 400; 5 tokens of context, 513 threads...
    # were taken as well: each is a 400 in Ollama's shape naming the option, with jan's setting's range
    for name, values in OUT_OF_RANGE.items():
        for value in [*values, "x"]:
            status, answer = post(server, path, _body(path, {name: value}))
            assert status == 400 and set(answer) == {"error"}, (name, value, answer)
            assert answer["error"].startswith(f"options.{name}: "), answer
            if value != "x":
                assert "must be >=" in answer["error"] and str(value) in answer["error"], answer
    status, answer = post(server, path, _body(path, dict(IN_RANGE)))
    assert status == 200, answer


@pytest.mark.parametrize("path", ROUTES)
def test_options_jan_ignores_stay_accepted(server, path):
    # dropped by llama.cpp or of no use to jan: ignored whatever their value, as Ollama ignores options it does not know
    ignored = {"tfs_z": "x", "penalize_newline": 3, "numa": True, "low_vram": None, "use_mlock": "yes",
               "vocab_only": 1, "num_gqa": -4, "rope_frequency_base": "x", "rope_frequency_scale": 0, "bogus": []}
    status, answer = post(server, path, _body(path, ignored))
    assert status == 200, answer


@pytest.mark.parametrize(("name", "value", "says"), [
    ("num_ctx", 5, ">= 8"), ("num_thread", 100000, "<= 512"), ("draft_num_predict", 300, "<= 256"),
    ("num_batch", 0, ">= 1"), ("num_gpu", -3, ">= -1"),
])
def test_create_parameters_have_the_same_ranges(name, value, says):
    # /api/create's parameters become model.json settings: the same range, said under the Ollama name
    with pytest.raises(ValueError) as caught:
        OllamaCreateParameters.model_validate({name: value})
    assert f"{name}: must be" in str(caught.value) and says in str(caught.value)


def test_draft_num_predict_is_the_requests_draft_max(tmp_path, stories_path):
    """Ollama's draft_num_predict is a load-time option there, but jan's draft_max (what /api/create stores it as)
    is a request's own: it was ignored per request as the other load-time options are, so 0 drafted on. It tunes
    the request's drafts, on /api/generate and /api/chat alike (counted in /metrics), and leaves the text as it was."""
    import re
    import urllib.request

    from test_speculative import COPY_PROMPT

    def drafted(srv) -> float:
        text = urllib.request.urlopen(srv.base_url + "/metrics", timeout=WAIT_S).read().decode()
        found = re.search(r'^jan_draft_tokens_total\{[^}]*model="stories260K"[^}]*\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    with running(tmp_path / "data", stories_path, speculative="ngram") as srv:
        for path in ("/api/generate", "/api/chat"):
            body: dict[str, Any] = {"model": "stories260K", "stream": False}
            body |= ({"prompt": COPY_PROMPT, "raw": True} if path == "/api/generate" else
                     {"messages": [{"role": "user", "content": COPY_PROMPT}]})
            texts, counts = [], []
            for options in ({}, {"draft_num_predict": 0}, {"draft_num_predict": 1}):
                before = drafted(srv)
                status, answer = post(srv, path, {**body, "options": {"temperature": 0, "num_predict": 40, **options}})
                assert status == 200, answer
                texts.append(answer.get("response") or answer["message"]["content"])
                counts.append(drafted(srv) - before)
            assert texts[0] == texts[1] == texts[2], (path, texts)
            assert counts[0] > 1 and counts[1] == 0 and 0 < counts[2] < counts[0], (path, counts)
