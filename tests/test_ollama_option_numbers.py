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
from jan.server.dialects.ollama_schemas import OllamaCreateParameters, OllamaOptions, _integer_fields

EMBED = "all-MiniLM-L6-v2-f32"
WAIT_S = 300

#: Every integer option, with a whole-number float of a value it takes.
WHOLE = {"num_predict": 3.0, "seed": 42.0, "top_k": 40.0, "mirostat": 0.0, "repeat_last_n": 64.0, "num_keep": 4.0,
         # load-time options: ignored per request (a model is loaded once for all), typed all the same
         "num_ctx": 2048.0, "num_batch": 512.0, "num_gpu": 0.0, "main_gpu": 0.0, "num_thread": 1.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("numbers") / "data", stories_path, minilm_path) as srv:
        yield srv


def post(server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return post_json(server.base_url, path, body, timeout=WAIT_S)


def _body(path: str, options: dict[str, Any]) -> dict[str, Any]:
    if path == "/api/embed":
        return {"model": EMBED, "input": "hello", "options": options}
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
