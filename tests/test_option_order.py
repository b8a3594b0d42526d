"""Load and sampling options that bound one another (``jan.engine.params.ORDERS``: ``draft_min`` <= ``draft_max``,
``n_ubatch`` <= ``n_batch``) are judged by one rule wherever they are given: ``jan.Model(...)`` and a request (a
ValueError naming the option), model.json ``settings`` and ``parameters``, an assistant's, a chat request and a
model load over HTTP (a 400 naming the field), ``jan serve``'s flags (exit 1 naming the flag)."""

from __future__ import annotations

import pytest
from api_helpers import Client, running
from test_cli_helpers import cli_env, jan

import jan as jan_api
from jan.engine.params import ORDERS, check_order, check_sampling_options, sampling_params
from jan.errors import BadRequestError

MODEL = "stories260K"


# -- the rule ---------------------------------------------------------------------------------------------------------
def test_the_table_names_each_pair_and_the_check_blames_the_option_given():
    assert {(o.low, o.high) for o in ORDERS} >= {("draft_min", "draft_max"), ("n_ubatch", "n_batch")}
    check_order({"draft_min": 4, "draft_max": 4, "n_ubatch": 256, "n_batch": 512})
    check_order({"draft_min": 40})  # a layer: the other one of the pair may come from another
    with pytest.raises(BadRequestError) as info:
        check_order({"draft_min": 8, "draft_max": 4})
    assert info.value.param == "draft_min" and info.value.code == "conflicting_options"
    assert "draft_min (8) must not exceed draft_max (4)" in str(info.value)
    with pytest.raises(ValueError, match=r"^draft_max: draft_min \(the default 20\) must not exceed draft_max \(2\)"):
        check_order({"draft_max": 2}, {"draft_min": 20})
    with pytest.raises(ValueError) as info:
        check_order({"n_ubatch": 1024}, {"n_batch": 512}, prefix="settings.")
    assert info.value.param == "settings.n_ubatch" and "n_batch (the default 512)" in str(info.value)
    check_order({"draft_min": "x", "draft_max": 1})  # a value of the wrong type is its own range's error


def test_a_request_is_judged_over_the_defaults_a_layer_alone_only_as_a_pair():
    with pytest.raises(ValueError, match="draft_min"):
        sampling_params(draft_min=8, draft_max=4)
    with pytest.raises(ValueError, match=r"draft_min \(20\) must not exceed draft_max \(the default 16\)"):
        sampling_params(draft_min=20)
    sampling_params(draft_min=20, draft_max=32)
    check_sampling_options(draft_min=20)  # one layer's value: another may raise draft_max
    with pytest.raises(ValueError, match="draft_min"):
        check_sampling_options(draft_min=8, draft_max=4)


# -- jan.Model ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, param", [
    ({"draft_min": 8, "draft_max": 4}, "draft_min"),
    ({"draft_min": 20}, "draft_min"),  # over the default draft_max (16)
    ({"n_batch": 64, "n_ubatch": 128}, "n_ubatch"),
    ({"n_ubatch": 1024}, "n_ubatch"),  # over the default n_batch (512)
])
def test_model_kwargs_that_contradict_each_other_are_a_value_error_before_the_load(stories_path, kwargs, param):
    with pytest.raises(ValueError) as info:
        jan_api.Model(stories_path.parent / "no-such-file.gguf", n_ctx=64, **kwargs)  # judged before the file is opened
    assert isinstance(info.value, BadRequestError) and info.value.param == param, info.value


def test_a_request_contradicting_the_models_defaults_is_a_value_error(stories_path):
    with jan_api.Model(stories_path, n_ctx=128, n_threads=1, speculative="ngram", draft_min=4) as model:
        with pytest.raises(ValueError, match="draft_min"):
            model.generate("Once", max_tokens=2, draft_max=2)
        assert model.generate("Once", max_tokens=2, temperature=0, draft_max=8).text is not None
        with pytest.raises(ValueError, match="draft_min"):
            model.generate("Once", max_tokens=2, draft_min=9, draft_max=8)


# -- HTTP ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("order") / "data", stories_path) as server:
        yield server


async def _refused(api: Client, method: str, path: str, body: dict, param: str) -> None:
    status, answer = await api.call(method, path, body)
    assert status == 400, (path, status, answer)
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, (path, error)
    assert param.rpartition(".")[2] in error["message"] and "must not exceed" in error["message"], error


async def test_model_json_assistant_and_request_bodies_are_400s_naming_the_field(srv, stories_path):
    pair = {"draft_min": 8, "draft_max": 4}
    async with Client(srv.base_url) as api:
        await _refused(api, "POST", "/v1/models", {"id": "bad-order", "engine": "llama.cpp", "settings": pair},
                       "settings.draft_min")
        await _refused(api, "POST", "/v1/models", {"id": "bad-order", "engine": "llama.cpp", "parameters": pair},
                       "parameters.draft_min")
        await _refused(api, "POST", "/v1/models", {"path": str(stories_path), "id": "bad-import",
                                                   "settings": {"n_batch": 8, "draft_max": 2, "draft_min": 3}},
                       "settings.draft_min")
        assert (await api.call("GET", "/v1/models/bad-order"))[0] == 404
        # a PATCH that makes a stored value contradict: the field it sets is named
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"draft_min": 4}})
        await _refused(api, "PATCH", f"/v1/models/{MODEL}", {"settings": {"draft_max": 2}}, "settings.draft_max")
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"draft_min": None}})
        await _refused(api, "POST", "/v1/assistants", {"model": "*", "parameters": pair}, "parameters.draft_min")
        await _refused(api, "POST", "/v1/chat/completions",
                       {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **pair},
                       "draft_min")


async def test_a_model_json_completing_the_pair_wrongly_fails_its_load_with_a_400(srv):
    """One setting alone may be stored (the server's flags may give the other); loading the model with it over
    the default is the 400 naming it, not a model that silently never drafts."""
    async with Client(srv.base_url) as api:
        await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"draft_min": 20}})
        try:
            status, answer = await api.call("POST", f"/v1/models/{MODEL}/start")
            assert status == 400, answer
            assert answer["error"]["param"] == "settings.draft_min" and "draft_max (the default 16)" in \
                answer["error"]["message"], answer
        finally:
            await api.ok("PATCH", f"/v1/models/{MODEL}", {"settings": {"draft_min": None}})


# -- the CLI ---------------------------------------------------------------------------------------------------------
def test_jan_serve_refuses_contradicting_flags_before_it_starts(tmp_path):
    result = jan("serve", "--draft-min", "8", "--draft-max", "4", env=cli_env(tmp_path / "data"))
    assert result.returncode == 2, result  # (flags that contradict each other: a usage error)
    assert "--draft-min (8) must not exceed --draft-max (4)" in result.stderr, result.stderr
