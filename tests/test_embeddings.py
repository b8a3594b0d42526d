"""Sentence embeddings on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

import jan


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model = jan.Model(minilm_path)
    yield model
    model.close()


def test_reference_values(minilm):
    vec = minilm.embed("This is an example sentence")[0]
    assert vec.shape == (384,)
    assert vec[:4] == pytest.approx([0.0677, 0.0635, 0.0487, 0.0793], abs=2e-3)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_matches_llama_cpp_python(minilm, minilm_path):
    from llama_cpp import Llama

    llm = Llama(model_path=str(minilm_path), embedding=True, verbose=False)
    sentences = ["This is an example sentence", "Each sentence is converted", "日本語の文"]
    theirs = np.array(llm.embed(sentences, normalize=True))
    ours = minilm.embed(sentences)
    for a, b in zip(ours, theirs):
        assert float(np.dot(a, b) / np.linalg.norm(b)) >= 0.999


def test_many_inputs_in_one_call_equal_one_by_one(minilm):
    sentences = [f"Sentence number {i} about {'cats' if i % 2 else 'rockets'}" for i in range(40)]
    together = minilm.embed(sentences)
    alone = np.stack([minilm.embed(s)[0] for s in sentences])
    assert together.shape == (40, 384)
    assert np.allclose(together, alone, atol=1e-4)


def test_similar_sentences_score_higher(minilm):
    a, b, c = minilm.embed(["A man is eating food.", "A man is eating a piece of bread.",
                            "The new movie is awful for its special effects."])
    assert float(a @ b) > float(a @ c) + 0.2


def test_unnormalized_and_pooling_override(minilm):
    raw = minilm.embed("hello world", normalize=False)[0]
    assert np.linalg.norm(raw) > 1.5
    cls = minilm.embed("hello world", pooling="cls")[0]
    mean = minilm.embed("hello world", pooling="mean")[0]
    assert not np.allclose(cls, mean)


def test_input_over_the_context_is_a_clear_error(minilm):
    with pytest.raises(jan.ContextOverflowError, match="512"):
        minilm.embed("word " * 2000)


def test_embedding_model_cannot_generate(minilm):
    with pytest.raises(ValueError, match="embedding model"):
        minilm.generate("hello")


def test_generative_model_can_embed(stories):
    vecs = stories.embed(["Once upon a time", "The little dog"])
    assert vecs.shape == (2, 64)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("inputs", [None, 5, 1.5, b"hello", object()])
def test_inputs_that_are_not_a_list_are_named(minilm, inputs):
    # not "'NoneType' object is not iterable" from the loop over them
    with pytest.raises(TypeError, match="inputs: expected"):
        minilm.embed(inputs)
