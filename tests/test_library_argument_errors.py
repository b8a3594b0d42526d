"""Every bad argument value of the library's calls is one kind of error: a :class:`jan.BadRequestError` (a
``ValueError``) whose ``param`` names the argument and whose message begins with it.

``seed=1.5``, a token id outside the vocabulary and an empty embedding input were BadRequestErrors naming their
argument, while ``top_k=-1``, ``stop=[5]``, ``logprobs=2``, ``embed([])``, ``rerank(query="")``,
``ModelPool(max_loaded=0)`` and a ``logit_bias`` id the engine refused were bare ValueErrors with no ``param``:
a caller catching ``jan.BadRequestError`` (as the README's typed errors invite) missed half of them.
"""

from __future__ import annotations

import math

import pytest

import jan
from jan.testing.gguf_models import write_reranker_from_bert

# (call on a generation model, the argument it names): the sampling options, the tokenizer's flags, the prompt
GENERATION = [
    (lambda m: m.generate("Once", max_tokens="5"), "max_tokens"),
    (lambda m: m.generate("Once", max_tokens=0), "max_tokens"),
    (lambda m: m.generate("Once", temperature=math.nan), "temperature"),
    (lambda m: m.generate("Once", temperature="hot"), "temperature"),
    (lambda m: m.generate("Once", top_k=-1), "top_k"),
    (lambda m: m.stream("Once", top_p=2), "top_p"),
    (lambda m: m.generate("Once", stop=5), "stop"),
    (lambda m: m.generate("Once", stop=["a", 5]), "stop[1]"),
    (lambda m: m.generate("Once", stop=[""]), "stop"),
    (lambda m: m.generate("Once", logit_bias="x"), "logit_bias"),
    (lambda m: m.generate("Once", logit_bias={"a": 1}), "logit_bias"),
    (lambda m: m.generate("Once", logit_bias={5: math.nan}), "logit_bias[5]"),
    (lambda m: m.generate("Once", logit_bias={99999: 1.0}), "logit_bias"),  # (the engine's own check, at submit)
    (lambda m: m.generate("Once", logprobs=2), "logprobs"),
    (lambda m: m.generate("Once", logprobs=True, top_logprobs=-1), "top_logprobs"),
    (lambda m: m.generate("Once", ignore_eos="yes"), "ignore_eos"),
    (lambda m: m.generate("Once", speculative="fast"), "speculative"),
    (lambda m: m.generate("Once", seed=1.5), "seed"),
    (lambda m: m.generate("Once", add_special="no"), "add_special"),
    (lambda m: m.generate([]), "prompt"),
    (lambda m: m.generate([1, 99999]), "prompt[1]"),
    (lambda m: m.tokenize("Once", parse_special=None), "parse_special"),
    (lambda m: m.detokenize([1], remove_special="y"), "remove_special"),
    (lambda m: m.detokenize([-1]), "tokens[0]"),
    (lambda m: m.embed([]), "inputs"),
    (lambda m: m.embed([""]), "inputs[0]"),
    (lambda m: m.embed(["Once"], normalize="no"), "normalize"),
    (lambda m: m.embed(["Once"], pooling="max"), "pooling"),
]


@pytest.fixture(scope="module")
def stories(stories_path):
    model = jan.Model(stories_path, n_ctx=256)
    yield model
    model.close()


@pytest.mark.parametrize("call, name", GENERATION, ids=[f"{i}-{name}" for i, (_, name) in enumerate(GENERATION)])
def test_a_bad_argument_is_a_bad_request_error_naming_it(stories, call, name):
    with pytest.raises(jan.BadRequestError) as caught:
        call(stories)
    assert caught.value.param == name, caught.value
    assert str(caught.value).startswith(f"{name}: ")
    assert stories.generate("Once", max_tokens=1).finish_reason == "length"  # (nothing left running or broken)


def test_reranking_and_pool_arguments_are_named_alike(stories_path):
    pool_calls = [(lambda: jan.ModelPool(max_loaded=0), "max_loaded"),
                  (lambda: jan.ModelPool(keep_alive="long"), "keep_alive"),
                  (lambda: jan.ModelPool(keep_alive=-1), "keep_alive"),
                  (lambda: jan.Model(stories_path, n_ctx="big"), "n_ctx"),
                  (lambda: jan.Model(stories_path, n_gpu_layers="most"), "n_gpu_layers"),
                  (lambda: jan.Model(stories_path, cache_type_k="q9"), "cache_type_k")]
    for call, name in pool_calls:
        with pytest.raises(jan.BadRequestError) as caught:
            call()
        assert caught.value.param == name and str(caught.value).startswith(f"{name}: "), caught.value


def test_rerank_arguments_are_named(tmp_path, minilm_path):
    model = jan.Model(str(write_reranker_from_bert(minilm_path, tmp_path / "rerank.gguf")))
    try:
        for call, name in [(lambda: model.rerank("", ["a"]), "query"), (lambda: model.rerank("q", []), "documents"),
                           (lambda: model.rerank("q", ["a"], truncation_direction="up"), "truncation_direction"),
                           (lambda: model.rerank("q", ["a"], max_tokens_per_doc=0), "max_tokens_per_doc")]:
            with pytest.raises(jan.BadRequestError) as caught:
                call()
            assert caught.value.param == name and str(caught.value).startswith(f"{name}: "), caught.value
    finally:
        model.close()
