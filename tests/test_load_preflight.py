"""A load that cannot succeed fails before it costs anything, and says so in jan's own words.

The faults this covers: with ``ModelPool(max_loaded=1)`` holding a healthy model, a load of another that failed on
something checkable without loading it (a missing file, a bad option, a non-GGUF file, cache types the model
cannot hold) unloaded the healthy one first; the server did the same with ``--max-loaded-models 1``. Token ids past
a C int32 gave pybind11's TypeError dumping a signature; a missing projector was a ModelLoadError where a missing
draft model was a ModelFileError; NaN durations were accepted; ``embed(pooling="none")`` pooled anyway (it now
gives a vector per token, as llama-server's ``--pooling none`` does: tests/test_embeddings.py); and
``jan serve`` with more ``--model`` than ``--max-loaded-models`` unloaded the first ones silently.
"""

from __future__ import annotations

import logging
import math
import re
import shutil

import httpx
import pytest
from click.testing import CliRunner

import jan
from jan.engine import registry
from jan.errors import ModelSettingError
from jan.server.keys import MANAGER
from jan.testing.gguf_models import write_not_gguf

from server_helpers import start_server

GENEROUS_S = 300


@pytest.fixture
def bad_files(tmp_path):
    not_gguf = write_not_gguf(tmp_path / "readme.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 12)  # the magic, then a header cut short
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    return {"missing": str(tmp_path / "nope.gguf"), "not_gguf": str(not_gguf), "cut": str(cut), "folder": str(folder)}


# (what the load gets, the error it must raise); "weights" is the model file, S: stories260K
_FAILING = [
    ({"weights": "missing"}, jan.ModelFileError),
    ({"weights": "folder"}, jan.ModelFileError),
    ({"weights": "not_gguf"}, jan.ModelFileError),
    ({"weights": "cut"}, jan.ModelFileError),
    ({"n_ctx": -3}, ValueError),
    ({"n_parallel": 2**40}, ValueError),
    ({"main_gpu": 2**40}, ValueError),
    ({"foo": 3}, TypeError),
    ({"adaptive_threads": "sometimes"}, ValueError),
    ({"use_mmap": "yes"}, ValueError),
    ({"cache_type_k": "q9"}, ValueError),
    ({"cache_type_v": "q4_0", "flash_attn": False}, ModelSettingError),
    ({"cache_type_k": "q8_0"}, ModelSettingError),  # stories260K's heads (8 values) hold no 32-value block
    ({"n_ubatch": 1024}, ValueError),  # over the default n_batch (512)
    ({"draft_min": 20, "draft_max": 10}, ValueError),
    ({"speculative": "draft"}, ValueError),  # no draft model to draft with
    ({"pooling": "max"}, ValueError),
    ({"draft_model": "missing"}, jan.ModelFileError),
    ({"draft_model": "not_gguf"}, jan.ModelFileError),
    ({"draft_model": "cut"}, jan.ModelFileError),
    ({"mmproj": "missing"}, jan.ModelFileError),
    ({"mmproj": "not_gguf"}, jan.ModelFileError),
]


def _load_args(case: dict, stories_path, bad_files) -> tuple[str, dict]:
    options = dict(case)
    path = bad_files[options.pop("weights")] if "weights" in options else str(stories_path)
    for name in ("draft_model", "mmproj"):
        if name in options:
            options[name] = bad_files[options[name]]
    return path, options


@pytest.mark.parametrize("case, error", _FAILING, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v)
                         if isinstance(v, dict) else v.__name__)
def test_a_load_bound_to_fail_unloads_no_model(stories_path, bad_files, case, error):
    path, options = _load_args(case, stories_path, bad_files)
    with jan.ModelPool(max_loaded=1, n_ctx=64, n_threads=1) as pool:
        healthy = pool.load("a", stories_path)
        with pytest.raises(error) as info:
            pool.load("b", path, **options)
        assert "incompatible function arguments" not in str(info.value)
        assert pool.loaded() == ["a"]
        # the same id with options that cannot load keeps its loaded copy too
        with pytest.raises(error):
            pool.load("a", path, **options)
        assert pool.loaded() == ["a"] and pool.get("a") is healthy
        assert healthy.generate("Once", max_tokens=2, temperature=0).finish_reason in ("stop", "length")


@pytest.mark.parametrize("case, error", _FAILING, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v)
                         if isinstance(v, dict) else v.__name__)
def test_jan_model_raises_the_same(stories_path, bad_files, case, error):
    path, options = _load_args(case, stories_path, bad_files)
    with pytest.raises(error):
        jan.Model(path, **{"n_ctx": 64, "n_threads": 1, **options}).close()


@pytest.mark.parametrize("option", ["draft_model", "mmproj"])
@pytest.mark.parametrize("kind, said", [("missing", "not found"), ("not_gguf", "is not a GGUF file"),
                                        ("folder", "is a directory")])
def test_every_companion_file_fails_alike(stories_path, bad_files, option, kind, said):
    with pytest.raises(jan.ModelFileError, match=f"^{option}: .*{said}"):
        jan.Model(stories_path, n_ctx=64, n_threads=1, **{option: bad_files[kind]})


def test_a_load_failing_after_making_room_says_what_it_cost(stories_path, monkeypatch, caplog):
    """What no check can foresee (out of memory): rare, and logged with the model it unloaded."""
    with jan.ModelPool(max_loaded=1, n_ctx=64, n_threads=1) as pool:
        pool.load("a", stories_path)

        class NoMemory(jan.Model):
            def __init__(self, *args, **kwargs):
                raise jan.ModelLoadError("failed to allocate the KV cache")

        monkeypatch.setattr(registry, "Model", NoMemory)
        with caplog.at_level(logging.WARNING, logger="jan.engine"), pytest.raises(jan.ModelLoadError):
            pool.load("b", stories_path)
        assert pool.loaded() == []  # loading 'a' again failed too (NoMemory): logged, the load's own error raised
        assert any("'b'" in r.getMessage() and "'a' was unloaded" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def stories(stories_path):
    with jan.Model(stories_path, n_ctx=64, n_threads=1) as m:
        yield m


@pytest.mark.parametrize("bad", [2**40, 2**31, -1, 512])
@pytest.mark.parametrize("call, name", [
    (lambda m, t: m.detokenize([1, t]), "tokens[1]"),
    (lambda m, t: m.token_to_piece(t), "token"),
    (lambda m, t: m.token_to_bytes(t), "token"),
    (lambda m, t: m.is_eog(t), "token"),
    (lambda m, t: m.generate([1, t], max_tokens=1), "prompt[1]"),
    (lambda m, t: m.stream([t], max_tokens=1), "prompt[0]"),
    (lambda m, t: m.embed([[1, t]]), "inputs[0][1]"),
], ids=["detokenize", "token_to_piece", "token_to_bytes", "is_eog", "generate", "stream", "embed"])
def test_token_ids_the_engine_cannot_hold_are_a_value_error_naming_the_argument(stories, call, name, bad):
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: token id {bad} is outside the vocabulary \(0\.\.511\)"):
        call(stories, bad)


@pytest.mark.parametrize("options, name", [({"logit_bias": {2**40: 1.0}}, "logit_bias"), ({"seed": 2**64}, "seed"),
                                           ({"reasoning_budget": 2**40}, "reasoning_budget"),
                                           ({"max_tokens": 2**40}, "max_tokens"), ({"top_k": 2**40}, "top_k"),
                                           ({"repeat_last_n": 2**40}, "repeat_last_n")])
def test_request_numbers_past_the_engines_types_are_a_value_error(stories, options, name):
    with pytest.raises(ValueError, match=f"^{name}") as info:
        stories.generate("Once", **options)
    assert "incompatible function arguments" not in str(info.value)


def test_range_messages_print_whole_numbers_in_full(stories_path):
    with pytest.raises(ValueError) as info:
        jan.Model(stories_path, n_ctx=2**31)
    assert "<= 2147483647" in str(info.value) and "e+" not in str(info.value)


def test_embed_pooling_none_is_per_token_instead_of_pooling_anyway(stories):
    texts = ["Once", "upon a time"]
    per_token = stories.embed(texts, pooling="none")
    assert [v.shape for v in per_token] == [(len(stories.tokenize(t)), stories.info.n_embd) for t in texts]
    assert stories.embed(["Once", "upon"], pooling="mean").shape == (2, stories.info.n_embd)


@pytest.mark.parametrize("option", ["keep_alive", "room_timeout", "reap_interval"])
@pytest.mark.parametrize("value", [math.nan, -1.0, "5", True])
def test_pool_durations_must_be_numbers_of_seconds(option, value):
    with pytest.raises(ValueError, match=option):
        jan.ModelPool(**{option: value})


def test_pool_durations_infinity_where_it_means_forever():
    jan.ModelPool(keep_alive=math.inf, room_timeout=math.inf).close()
    for bad in (0, math.inf):
        with pytest.raises(ValueError, match="reap_interval"):
            jan.ModelPool(reap_interval=bad)
    for bad in (0, 1.5, "2"):
        with pytest.raises(ValueError, match="max_loaded"):
            jan.ModelPool(max_loaded=bad)
    with pytest.raises(ValueError, match="n_ctx"):
        jan.ModelPool(n_ctx=-3)  # a default every load would get


def test_set_keep_alive_refuses_nan(stories_path):
    with jan.ModelPool(n_ctx=64, n_threads=1) as pool:
        pool.load("a", stories_path)
        for bad in (math.nan, -1, "x"):
            with pytest.raises(ValueError, match="keep_alive"):
                pool.set_keep_alive("a", bad)


def test_serve_refuses_more_models_than_may_stay_loaded(tmp_path):
    from jan.cli.serve import serve

    result = CliRunner().invoke(serve, ["--data-folder", str(tmp_path / "data"), "-m", "a", "-m", "b", "-m", "c",
                                       "-m", "a", "--max-loaded-models", "2"])
    assert result.exit_code == 2  # (the command line contradicts itself: a usage error)
    assert "3 models given with --model (a, b, c)" in result.output and "--max-loaded-models 2" in result.output
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_server_load_failing_keeps_the_loaded_model(tmp_path, stories_path, tiny_random_path, caplog):
    copy = tmp_path / "src" / "doomed.gguf"
    copy.parent.mkdir()
    shutil.copyfile(stories_path, copy)
    with caplog.at_level(logging.WARNING, logger="jan.server"):
        server = start_server(tmp_path, [copy, tiny_random_path], max_loaded_models=1, n_ctx=256)
    try:
        # the first --model made room for the second: said, not only "loaded"
        assert any("doomed" in r.getMessage() and "unloaded again" in r.getMessage() for r in caplog.records)
        local = server.app[MANAGER].get_inference("llama.cpp")
        assert server.call(local.loaded_models()) == ["llama-2-tiny-random"]
        write_not_gguf(copy)  # its weights damaged since
        reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=GENEROUS_S,
                           json={"model": "doomed", "max_tokens": 2,
                                 "messages": [{"role": "user", "content": "Once"}]})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_model_file"
        assert server.call(local.loaded_models()) == ["llama-2-tiny-random"]
    finally:
        server.__exit__(None, None, None)
