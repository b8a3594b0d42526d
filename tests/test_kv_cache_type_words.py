"""One rule for a KV cache type (and the other word settings: ``speculative``, ``adaptive_threads``), in model.json,
on the command line and in the library: llama.cpp's names (llama-server's ``--cache-type-k`` takes exactly f32, f16,
bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1), taken in any case as every jan word option is, and stored and told in
that lower-case spelling — ``"F16"`` was stored as written and shown so by every read of the model while it loaded
with f16. Anything else is refused naming the setting and listing the names."""

from __future__ import annotations

import click
import pytest
from api_helpers import running
from extension_helpers import call

from jan.engine.model import CACHE_TYPES, check_load_option

NAMES = ", ".join(CACHE_TYPES)
WAIT_S = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("words") / "data", stories_path) as srv:
        yield srv


@pytest.mark.parametrize("key,given,stored", [("cache_type_k", "F16", "f16"), ("cache_type_v", "BF16", "bf16"),
                                              ("speculative", "NGRAM", "ngram"), ("adaptive_threads", "Off", "off")])
@pytest.mark.parametrize("place", ["PATCH", "POST path"])
def test_a_word_setting_is_stored_as_it_is_used(server, stories_path, place, key, given, stored):
    if place == "PATCH":
        status, model = call(server, "PATCH", "/v1/models/stories260K", {"settings": {key: given}}, timeout=WAIT_S)
    else:
        status, model = call(server, "POST", "/v1/models", {"path": str(stories_path), "id": "again",
                                                            "settings": {key: given}}, timeout=WAIT_S)
    try:
        assert status in (200, 201), model
        assert model["settings"][key] == stored, model
        status, read = call(server, "GET", f"/v1/models/{model['id']}", timeout=WAIT_S)
        assert read["settings"][key] == stored, read
    finally:
        if place == "PATCH":
            call(server, "PATCH", "/v1/models/stories260K", {"settings": {key: None}}, timeout=WAIT_S)
        else:
            call(server, "DELETE", "/v1/models/again", timeout=WAIT_S)


@pytest.mark.parametrize("bad", ["q9", "f 16", "float16"])
def test_a_name_that_is_none_is_refused_listing_the_names_everywhere(server, bad):
    status, answer = call(server, "PATCH", "/v1/models/stories260K", {"settings": {"cache_type_k": bad}},
                          timeout=WAIT_S)
    assert status == 400 and answer["error"]["param"] == "settings.cache_type_k", answer
    assert NAMES in answer["error"]["message"], answer
    with pytest.raises(ValueError, match=f"cache_type_v: expected one of {NAMES}"):
        check_load_option("cache_type_v", bad)
    from jan.cli.serve import serve

    param = next(p for p in serve.params if p.name == "cache_type_k")
    with pytest.raises(click.BadParameter, match=f"is not one of {NAMES}"):
        param.type.convert(bad, param, None)


def test_the_library_and_the_command_line_take_the_same_names():
    from jan.cli.serve import serve

    param = next(p for p in serve.params if p.name == "cache_type_k")
    for name in CACHE_TYPES:
        assert check_load_option("cache_type_k", name.upper()) == name
        assert param.type.convert(name.upper(), param, None) == name
