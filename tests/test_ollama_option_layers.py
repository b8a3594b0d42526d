"""A request's Ollama ``options`` lie over the model's own parameters, as Ollama lays a request's options over its
Modelfile's (``opts.FromMap(model.Options)``, then the request's): a value that says "none" says it over the model's
value too. ``num_predict`` -1 (no limit) and -2 (fill the context), ``seed`` -1 (a random one) and ``stop: []`` (no
stop strings) were read as "not given", so a model made with ``/api/create``'s ``parameters`` (or a model.json's)
``num_predict: 4`` cut every reply at 4 tokens whatever the client asked, and its stop strings could not be turned
off. The typed layer says such a field is ``cleared`` (:class:`jan.services.types.SamplingOptions`), and the one
merge of layers (:func:`jan.services.types.merge_options`) asks no lower layer for it.

A real server (stories260K, greedy so that the text is known), models made with ``/api/create``."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import post_json, running
from jan.server.dialects import ollama_requests
from jan.server.dialects.ollama_schemas import OllamaOptions
from jan.services.errors import RequestError
from jan.services.types import SamplingOptions, merge_options, resolve_sampling

WAIT_S = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("layers") / "data", stories_path) as srv:
        for name, parameters in (("short", {"num_predict": 4, "temperature": 0, "num_ctx": 256}),
                                 ("stopper", {"stop": ["little"], "num_predict": 30, "temperature": 0})):
            status, answer = post_json(srv.base_url, "/api/create",
                                       {"model": name, "from": "stories260K", "parameters": parameters,
                                        "stream": False}, timeout=WAIT_S)
            assert status == 200, answer
        yield srv


def generate(server, model: str, options: dict[str, Any]) -> dict[str, Any]:
    status, answer = post_json(server.base_url, "/api/generate",
                               {"model": model, "prompt": "Once upon a time", "stream": False, "options": options},
                               timeout=WAIT_S)
    assert status == 200, answer
    return answer


def test_the_models_own_limit_holds_when_the_request_gives_none(server):
    assert generate(server, "short", {})["eval_count"] == 4
    assert generate(server, "short", {"num_predict": 0})["eval_count"] == 4  # (Go's zero value: not given)
    assert generate(server, "short", {"num_predict": 6})["eval_count"] == 6


@pytest.mark.parametrize("no_limit", [-1, -2])
def test_no_limit_asked_is_no_limit_over_the_models(server, no_limit):
    answer = generate(server, "short", {"num_predict": no_limit})
    assert answer["eval_count"] > 4, answer


@pytest.mark.parametrize(("path", "extra"), [("/api/generate", {"prompt": "Once upon a time", "raw": True}),
                                             ("/api/chat", {"messages": [{"role": "user", "content": "Once"}]})])
def test_no_limit_over_the_models_on_the_raw_and_chat_paths_too(server, path, extra):
    for options, fewer in (({}, True), ({"num_predict": -1}, False)):
        status, answer = post_json(server.base_url, path, {"model": "short", "stream": False, "options": options,
                                                           **extra}, timeout=WAIT_S)
        assert status == 200 and (answer["eval_count"] == 4) is fewer, (options, answer)


def test_an_empty_stop_list_turns_the_models_stop_strings_off(server):
    kept = generate(server, "stopper", {})
    assert kept["done_reason"] == "stop" and "little" not in kept["response"], kept
    off = generate(server, "stopper", {"stop": []})
    assert "little" in off["response"], off
    other = generate(server, "stopper", {"stop": ["named"]})  # (a list of its own replaces the model's, as before)
    assert "little" in other["response"] and "named" not in other["response"], other


def test_a_random_seed_asked_is_random_over_the_models_seed():
    model = SamplingOptions(seed=3, max_tokens=4, stop=("x",), temperature=0.5)
    layered = merge_options(ollama_requests.sampling(OllamaOptions(seed=-1, num_predict=-1, stop=[])), model)
    assert (layered.seed, layered.max_tokens, layered.stop) == (None, None, None)
    assert layered.temperature == 0.5  # (what the request leaves out stays the model's)
    # cleared stays cleared under every later layer: the defaults, and a merge again under the same model layer
    again = resolve_sampling(merge_options(layered, model))
    assert (again.seed, again.max_tokens, again.stop) == (None, None, None)
    given = ollama_requests.sampling(OllamaOptions(seed=7, num_predict=5, stop=["y"]))
    assert merge_options(given, model).seed == 7 and not given.cleared


@pytest.mark.parametrize(("kw", "says"), [
    ({"cleared": ("temperature",)}, "cannot be cleared"),
    ({"cleared": "stop"}, "tuple of strings"),
])
def test_only_a_field_whose_absence_means_something_can_be_cleared(kw, says):
    with pytest.raises(RequestError, match=says):
        SamplingOptions(**kw)


def test_a_value_given_later_wins_over_its_clearing():
    from dataclasses import replace

    cut = replace(SamplingOptions(cleared=("max_tokens", "seed")), max_tokens=5)  # (as a run's budget cuts a reply)
    assert (cut.max_tokens, cut.cleared) == (5, ("seed",))


def test_cleared_is_no_option_a_model_json_or_the_engine_takes():
    options = SamplingOptions(temperature=0.2, cleared=("seed",))
    assert "cleared" not in options.given()
    assert SamplingOptions.from_mapping({"cleared": ["seed"], "seed": 4}).seed == 4
