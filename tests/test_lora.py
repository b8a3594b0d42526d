"""LoRA adapters (llama-server's --lora): loaded with the model (cpp/lora.h), a scale per request resolved at submit,
a step's batch of one scale vector, and no KV reuse across scale vectors (slots and the host-memory prompt cache).

The adapters are random ones for stories260K (jan.testing.gguf_models.write_lora_adapter), big enough that scale 1
changes its greedy output."""

from __future__ import annotations

import math

import pytest

import jan
from jan.errors import BadRequestError, LoraAdapterError

pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play"
OTHER = "Tom had a big red ball. He liked to throw it to his dog every day after"
N = 24


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, stories_path):
    """Two adapters (ids 0 and 1) for stories260K."""
    from jan.testing.gguf_models import write_lora_adapter

    folder = tmp_path_factory.mktemp("lora")
    return (str(write_lora_adapter(folder / "a.gguf", stories_path, seed=1)),
            str(write_lora_adapter(folder / "b.gguf", stories_path, seed=2)))


def _load(stories_path, adapters, **options):
    options = {"n_ctx": 256, "n_threads": 1, "n_parallel": 2, **options}
    return jan.Model(stories_path, lora=[adapters[0], (adapters[1], 0.0)], **options)


@pytest.fixture(scope="module")
def model(stories_path, adapters):
    m = _load(stories_path, adapters, n_parallel=3)
    yield m
    m.close()


def _text(model, prompt=PROMPT, **options):
    return model.generate(prompt, max_tokens=N, temperature=0, **options).text


@pytest.fixture(scope="module")
def alone(stories_path, adapters):
    """Each scale vector's greedy output of PROMPT, each from a model of its own with one slot (nothing cached)."""
    out = {}
    for key, lora in (("base", []), ("a", [{"id": 0, "scale": 1.0}]), ("b", [{"id": 1, "scale": 1.0}]),
                      ("half", [{"id": 0, "scale": 0.5}])):
        with _load(stories_path, adapters, n_parallel=1, cache_ram_mib=0) as m:
            out[key] = _text(m, lora=lora)
    return out


def test_scale_zero_is_the_base_model(model, stories_path, alone):
    with jan.Model(stories_path, n_ctx=256, n_threads=1) as base:
        expected = _text(base)
    assert alone["base"] == expected
    assert _text(model, lora=[{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0}]) == expected
    assert _text(model, lora=[]) == expected  # (adapters not listed run at 0)


def test_scale_one_changes_the_output_deterministically(model, alone):
    assert alone["a"] != alone["base"]
    assert alone["b"] not in (alone["base"], alone["a"])
    assert alone["half"] not in (alone["base"], alone["a"])
    assert _text(model, lora=[{"id": 0, "scale": 1.0}]) == alone["a"]
    assert _text(model, lora=[(0, 1.0)]) == alone["a"]  # (pairs, from Python)
    # the load's defaults: adapter 0 at 1, adapter 1 at 0
    assert _text(model) == alone["a"]


def test_concurrent_requests_of_other_scales_each_get_their_own_output(model, alone):
    # three slots, three scale vectors in flight at once: each step's batch takes one group, in turn
    for _ in range(2):
        requests = [model.stream(PROMPT, max_tokens=N, temperature=0, lora=lora)
                    for lora in ([], [{"id": 0, "scale": 1}], [{"id": 1, "scale": 1}])]
        texts = [r.result().text for r in requests]
        assert texts == [alone["base"], alone["a"], alone["b"]]


def test_more_requests_than_slots_of_mixed_scales(model, alone):
    loras = ([], [{"id": 0, "scale": 1}], [{"id": 0, "scale": 0.5}], [{"id": 1, "scale": 1}], [],
             [{"id": 0, "scale": 1}])
    requests = [model.stream(PROMPT, max_tokens=N, temperature=0, lora=lora) for lora in loras]
    assert [r.result().text for r in requests] == [alone[k] for k in ("base", "a", "half", "b", "base", "a")]


def test_a_slot_cache_is_not_reused_under_other_scales(stories_path, adapters, alone):
    with _load(stories_path, adapters, n_parallel=1, cache_ram_mib=0) as m:
        first = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[])
        assert first.text == alone["base"]
        again = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[{"id": 0, "scale": 1}])
        assert again.text == alone["a"]
        assert again.usage.cached_tokens == 0
        # and the same scales do reuse it
        same = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[{"id": 0, "scale": 1}])
        assert same.text == alone["a"]
        assert same.usage.cached_tokens > 0
        back = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[])
        assert back.text == alone["base"]
        assert back.usage.cached_tokens == 0


def test_the_prompt_cache_is_not_reused_under_other_scales(stories_path, adapters, alone):
    # one slot and a host-memory prompt cache: a conversation moved out of the slot is saved with its scales
    with _load(stories_path, adapters, n_parallel=1, cache_ram_mib=64) as m:
        assert _text(m, lora=[{"id": 0, "scale": 1}]) == alone["a"]
        _text(m, OTHER, lora=[])  # takes the slot: PROMPT's KV (under adapter 0) goes to the prompt cache
        assert m.metrics()["prompt_cache_prompts"] >= 1
        base = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[])
        assert base.text == alone["base"]
        # the saved one was computed under adapter 0: only the BOS the slot's OTHER (base too) shares is reused
        assert base.usage.cached_tokens <= 1
        _text(m, OTHER, lora=[])
        lora = m.generate(PROMPT, max_tokens=N, temperature=0, lora=[{"id": 0, "scale": 1}])
        assert lora.text == alone["a"]
        assert lora.usage.cached_tokens > 0  # restored from the prompt cache: the same scales


def test_the_defaults_change_for_requests_submitted_afterwards(stories_path, adapters, alone):
    with _load(stories_path, adapters) as m:
        assert [a["scale"] for a in m.lora_adapters] == [1.0, 0.0]
        assert [a["path"] for a in m.lora_adapters] == list(adapters)
        assert [a["id"] for a in m.lora_adapters] == [0, 1]
        m.lora_adapters = [{"id": 1, "scale": 1}]
        assert [a["scale"] for a in m.lora_adapters] == [0.0, 1.0]  # (ids not listed: 0)
        assert _text(m) == alone["b"]
        m.lora_adapters = []
        assert _text(m) == alone["base"]
        with pytest.raises(BadRequestError, match=r"lora\[0\]\.id: .*no LoRA adapter 2"):
            m.lora_adapters = [{"id": 2, "scale": 1}]
        m.lora_adapters = [{"id": 0, "scale": 0.5}]
        # None is no list of scales (POST /lora-adapters' null is a 400): it turned every adapter off, unsaid
        with pytest.raises(BadRequestError, match=r"lora: expected a list"):
            m.lora_adapters = None
        assert [a["scale"] for a in m.lora_adapters] == [0.5, 0.0]  # unchanged by the refusals


def test_init_without_apply(stories_path, adapters, alone):
    with _load(stories_path, adapters, lora_init_without_apply=True) as m:
        assert [a["scale"] for a in m.lora_adapters] == [0.0, 0.0]
        assert _text(m) == alone["base"]
        assert _text(m, lora=[{"id": 0, "scale": 1}]) == alone["a"]


@pytest.mark.parametrize("lora, match", [
    ([{"id": 2, "scale": 1}], r"lora\[0\]\.id: model '\w+' has no LoRA adapter 2 \(its adapter ids are 0\.\.1\)"),
    ([{"id": -1, "scale": 1}], r"lora\[0\]\.id: expected an adapter id"),
    ([{"id": "0", "scale": 1}], r"lora\[0\]\.id: expected an adapter id"),
    ([{"id": 0, "scale": float("nan")}], r"lora\[0\]\.scale: expected a finite number"),
    ([{"id": 0, "scale": float("inf")}], r"lora\[0\]\.scale: expected a finite number"),
    # finite as a double, the engine's 32-bit infinity: it was refused there as "lora: the scale of adapter 0 ..."
    ([{"id": 0, "scale": 1e300}], r"lora\[0\]\.scale: expected a finite number as a 32-bit float"),
    ([{"id": 0, "scale": "1"}], r"lora\[0\]\.scale: expected a number"),
    ([{"id": 0, "scale": True}], r"lora\[0\]\.scale: expected a number"),
    ([{"id": 0, "scale": 1}, {"id": 0, "scale": 2}], r"lora\[1\]\.id: adapter 0 is given twice"),
    ([{"id": 0}], r"lora\[0\]\.scale: required"),
    ([{"id": 0, "scale": 1, "x": 2}], r"lora\[0\]: unknown field"),
    ({"id": 0, "scale": 1}, r"lora: expected a list"),
    ("0", r"lora: expected a list"),
    ([3], r"lora\[0\]: expected"),
])
def test_bad_request_lora(model, lora, match):
    with pytest.raises(BadRequestError, match=match) as info:
        model.generate(PROMPT, max_tokens=2, lora=lora)
    # the param is the field the message names, an id's as a scale's (an id's was "lora" alone)
    assert str(info.value).startswith(info.value.param + ":"), (info.value.param, str(info.value))


def test_a_model_without_adapters_refuses_ids(stories):
    with pytest.raises(BadRequestError, match="loaded without LoRA adapters"):
        stories.generate(PROMPT, max_tokens=2, lora=[{"id": 0, "scale": 1}])
    assert stories.lora_adapters == []
    assert stories.generate(PROMPT, max_tokens=2, lora=[]).text  # (none: the base model, as without)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, stories_path):
    from jan.testing.gguf_models import write_lora_adapter, write_not_gguf

    folder = tmp_path_factory.mktemp("bad-lora")
    return {
        "missing": (str(folder / "nope.gguf"), "not found"),
        "not GGUF": (str(write_not_gguf(folder / "text.gguf")), "is not a GGUF file"),
        "a model": (str(stories_path), "expect general.type to be 'adapter'"),
        "other architecture": (str(write_lora_adapter(folder / "qwen.gguf", stories_path, architecture="qwen2")),
                               "model arch and LoRA arch mismatch"),
        "wrong shapes": (str(write_lora_adapter(folder / "shape.gguf", stories_path, wrong_shapes=True)),
                         "has incorrect shape"),
        "activated LoRA": (str(write_lora_adapter(folder / "alora.gguf", stories_path,
                                                  alora_invocation_tokens=[1, 2])), "activated LoRA"),
    }


@pytest.mark.parametrize("case", ["missing", "not GGUF", "a model", "other architecture", "wrong shapes",
                                  "activated LoRA"])
def test_bad_adapter_files(stories_path, adapters, bad_files, case, caplog):
    path, reason = bad_files[case]
    with pytest.raises(LoraAdapterError, match=r"^lora\[1\]: .*" + reason) as info:
        jan.Model(stories_path, n_ctx=128, n_threads=1, lora=[adapters[0], path])
    assert isinstance(info.value, jan.ModelFileError)  # the file's fault: a 400 on the server
    assert path in str(info.value)
    # the reason is the exception's; llama.cpp's own error line is no ERROR of the server's log
    assert not [r for r in caplog.records if r.name == "jan.llama" and r.levelname == "ERROR"]


@pytest.mark.parametrize("lora, match", [
    ("a.gguf", r"lora: expected a list"),
    ([("a.gguf", float("nan"))], r"lora\[0\]\.scale: expected a finite number"),
    ([("a.gguf", -1e300)], r"lora\[0\]\.scale: expected a finite number as a 32-bit float"),
    ([("a.gguf", "x")], r"lora\[0\]\.scale: expected a number"),
    ([{"file": "a.gguf"}], r"lora\[0\]: expected"),
    ([""], r"lora\[0\]: expected a LoRA adapter file path"),
    ([None], r"lora\[0\]: expected a LoRA adapter file path"),
])
def test_bad_lora_option(stories_path, lora, match):
    with pytest.raises(BadRequestError, match=match):
        jan.Model(stories_path, n_ctx=128, lora=lora)


def test_no_scale_group_starves_another(stories_path, adapters):
    # a long generation under one scale vector and a short one under another: the groups take the steps in turn, so
    # the short one ends long before the long one (one group served until it ran dry would keep it waiting)
    with _load(stories_path, adapters, n_ctx=4096) as m:
        long = m.stream(PROMPT, max_tokens=4000, temperature=0, ignore_eos=True, lora=[])
        next(iter(long))  # running
        short = m.generate(PROMPT, max_tokens=4, temperature=0, ignore_eos=True, lora=[{"id": 0, "scale": 1}])
        assert short.usage.completion_tokens == 4
        long.cancel()  # (served until it ran dry, the long one would have ended whole before the short one began)
        result = long.result()
        assert result.finish_reason == "cancelled" and result.usage.completion_tokens < 4000


def test_image_prompts_run_under_their_own_scales(vision_pair, tmp_path):
    # the media decode of a prompt is one more decode: it too runs under the request's scales, never beside another
    # group's (a text request of other scales generating while the image is decoded)
    from PIL import Image

    from jan.testing.gguf_models import write_lora_adapter

    model_path, mmproj = vision_pair
    adapter = str(write_lora_adapter(tmp_path / "vision-lora.gguf", model_path, seed=3))
    image = Image.new("RGB", (32, 32), (255, 0, 0))

    def run(m, **options):
        prompt = f"<|im_start|>user\nWhat is it?\n{m.media_marker}<|im_end|>\n<|im_start|>assistant\n"
        return m.stream(prompt, images=[image], max_tokens=8, temperature=0, ignore_eos=True, **options)

    def fresh():
        return jan.Model(model_path, mmproj=mmproj, lora=[adapter], n_ctx=4096, n_parallel=2, n_threads=1,
                         n_threads_batch=1, cache_ram_mib=0)

    with fresh() as m:
        alone = {key: run(m, lora=lora).result().token_ids
                 for key, lora in (("base", []), ("lora", [{"id": 0, "scale": 1}]))}
    assert alone["base"] != alone["lora"]
    with fresh() as m:
        text = m.stream("Hello there", max_tokens=4000, temperature=0, ignore_eos=True, lora=[])
        next(iter(text))  # generating under the base scales while the image request's media is decoded
        assert run(m, lora=[{"id": 0, "scale": 1}]).result().token_ids == alone["lora"]
        assert run(m, lora=[]).result().token_ids == alone["base"]
        text.cancel()


def test_an_embedding_model_refuses_adapters(minilm_path, adapters):
    with pytest.raises(LoraAdapterError, match="is an embedding model; LoRA adapters apply to generation only"):
        jan.Model(minilm_path, lora=[adapters[0]])
    from jan.engine.preflight import check_load

    with pytest.raises(LoraAdapterError, match="is an embedding model"):
        check_load(minilm_path, {"lora": [adapters[0]]})


def test_the_pool_judges_adapter_files_before_it_unloads_anything(stories_path, tmp_path):
    from jan.engine.preflight import check_load

    with pytest.raises(LoraAdapterError, match=r"lora\[0\]: LoRA adapter file not found"):
        check_load(stories_path, {"lora": [str(tmp_path / "gone.gguf")]})
    check_load(stories_path, {"lora": []})


@pytest.mark.parametrize("speculative", ["ngram", "draft"])
def test_speculative_decoding_keeps_the_adapters_output(stories_path, adapters, alone, speculative):
    # drafts (n-gram, or the draft model's, which runs without adapters) are verified under the request's scales
    with _load(stories_path, adapters, draft_model=stories_path if speculative == "draft" else None) as m:
        for key, lora in (("a", [{"id": 0, "scale": 1}]), ("base", [])):
            requests = [m.stream(PROMPT, max_tokens=N, temperature=0, lora=lora, speculative=speculative)
                        for _ in range(2)]
            assert [r.result().text for r in requests] == [alone[key]] * 2
        mixed = [m.stream(PROMPT, max_tokens=N, temperature=0, lora=lora, speculative=speculative)
                 for lora in ([], [{"id": 0, "scale": 1}])]
        assert [r.result().text for r in mixed] == [alone["base"], alone["a"]]


def test_a_scale_that_overflows_the_logits_scores_tokens_none_never_nan(model):
    # adapter 0 at 1e30 (finite, so allowed) overflows the logits to NaN; a NaN (or -inf) log-probability is no
    # number any JSON holds, and the server refused the whole answer after generating it
    done = model.generate(PROMPT, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2, prompt_logprobs=True,
                          lora=[{"id": 0, "scale": 1e30}])
    scores = [t.logprob for t in done.logprobs] + [a.logprob for t in done.logprobs for a in t.top]
    scores += [t.logprob for t in done.prompt_logprobs]
    assert len(done.logprobs) == 4 and None in scores
    assert all(s is None or math.isfinite(s) for s in scores), scores
