"""Sentence embeddings on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import re

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


def test_a_call_naming_no_pooling_gets_the_models_own_whatever_the_last_call_asked(minilm):
    # the embedder a cls (or per-token) call made is not the model's own pooling: the next plain call must not get it
    own = minilm.embed("hello world")[0]
    for other in ("cls", "last", "none"):
        minilm.embed("hello world", pooling=other)
        assert np.allclose(minilm.embed("hello world")[0], own, atol=1e-6), other
    assert np.allclose(minilm.embed("hello world", pooling="mean")[0], own, atol=1e-6)  # MiniLM's own is mean


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


# -- pooling none: a vector per token (llama-server's --pooling none) --------------------------------------------
TEXTS = ["hi", "This is an example sentence", "Late interaction scores every query token against every document"]


def test_pooling_none_gives_a_vector_per_token_of_each_input(minilm):
    rows = minilm.embed(TEXTS, pooling="none")
    assert isinstance(rows, list) and len(rows) == len(TEXTS)
    # a string's tokens as the embedder takes them: the special tokens added ([CLS] ... [SEP]), none parsed
    lengths = [len(minilm.tokenize(text, add_special=True, parse_special=False)) for text in TEXTS]
    assert len(set(lengths)) == len(TEXTS)  # inputs of different lengths in one call
    for vectors, n in zip(rows, lengths):
        assert vectors.shape == (n, minilm.info.n_embd) and vectors.dtype == np.float32


def test_the_mean_of_the_token_vectors_is_the_mean_pooled_vector(minilm):
    tokens = minilm.embed(TEXTS, pooling="none", normalize=False)
    pooled = minilm.embed(TEXTS, pooling="mean", normalize=False)
    for vectors, mean in zip(tokens, pooled):
        assert np.linalg.norm(vectors, axis=1).min() > 1.0  # unnormalized: the real hidden states
        assert np.allclose(vectors.mean(axis=0), mean, atol=1e-4)
        assert not np.allclose(vectors[0], vectors[-1], atol=1e-2)  # each token its own state


def test_pooling_none_normalizes_each_token_vector(minilm):
    raw = minilm.embed(TEXTS, pooling="none", normalize=False)
    for vectors, unnormalized in zip(minilm.embed(TEXTS, pooling="none"), raw):
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert np.allclose(vectors, unnormalized / np.linalg.norm(unnormalized, axis=1, keepdims=True), atol=1e-5)


def test_pooling_none_takes_token_lists_and_packs_like_one_by_one(minilm):
    ids = [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert minilm.embed([ids], pooling="none")[0].shape == (4, minilm.info.n_embd)
    together = minilm.embed(TEXTS + [ids], pooling="none")
    alone = [minilm.embed(x if isinstance(x, str) else [x], pooling="none")[0] for x in TEXTS + [ids]]
    for a, b in zip(together, alone):
        assert np.allclose(a, b, atol=1e-4)


def test_a_pooled_call_after_a_per_token_one_is_pooled(minilm):
    minilm.embed("hello", pooling="none")
    assert minilm.embed(["hello", "world"]).shape == (2, minilm.info.n_embd)  # the model's own pooling: one each


def test_pooling_none_input_over_the_context_is_the_pooled_paths_error(minilm):
    with pytest.raises(jan.ContextOverflowError, match="512"):
        minilm.embed(["fine", "word " * 2000], pooling="none")


def test_a_model_loaded_with_pooling_none_embeds_per_token(minilm_path):
    model = jan.Model(minilm_path, pooling="none")
    try:
        assert model.pooling == "none"
        vectors = model.embed("hello world")
        assert isinstance(vectors, list) and vectors[0].shape == (4, model.info.n_embd)
        assert model.embed("hello world", pooling="mean").shape == (1, model.info.n_embd)  # a call's own wins
        assert model.n_ctx_embed == 512
    finally:
        model.close()


@pytest.mark.parametrize("pooling", ["max", "NONE", ""])
def test_unknown_poolings_are_refused(minilm, pooling):
    with pytest.raises(ValueError, match="pooling: expected one of mean, cls, last, none"):
        minilm.embed("hello", pooling=pooling)


async def test_openai_and_ollama_embeddings_refuse_a_pooling_none_model(server, minilm_path):
    from api_helpers import Client

    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(minilm_path), "id": "tokens", "mode": "reference",
                                            "settings": {"pooling": "none", "embedding": True}}, 201)
        for path in ("/v1/embeddings", "/embeddings"):
            status, body = await api.post(path, {"model": "tokens", "input": ["hello", "world"]})
            assert status == 400, (path, status, body)
            error = body["error"]  # OpenAI's shape
            assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
            assert "Pooling type 'none' is not OAI compatible" in error["message"] and "'tokens'" in error["message"]
        for path, request in (("/api/embed", {"input": "hello"}), ("/api/embeddings", {"prompt": "hello"})):
            status, body = await api.post(path, {"model": "tokens", **request})
            assert status == 400 and list(body) == ["error"] and "Pooling type 'none'" in body["error"], (path, body)
        # the same file with the model's own pooling still answers
        await api.ok("POST", "/v1/models", {"path": str(minilm_path), "id": "pooled", "mode": "reference",
                                            "settings": {"embedding": True}}, 201)
        result = await api.ok("POST", "/v1/embeddings", {"model": "pooled", "input": "hello"})
        assert len(result["data"][0]["embedding"]) == 384



# -- dimensions: the Matryoshka cut, made once by the embedding service -------------------------------------------
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "12"])
def test_embedding_request_refuses_dimensions_below_one_or_not_an_integer(value):
    from jan.services.errors import RequestError
    from jan.services.types import EmbeddingRequest

    with pytest.raises(RequestError) as err:
        EmbeddingRequest(model="m", inputs=("hi",), dimensions=value)
    assert err.value.param == "dimensions" and str(err.value).startswith("dimensions: ")


class _Upstream:
    """A remote engine (no LocalInferenceExtension) whose upstream ignores ``dimensions``, as llama-server does."""

    engine_name = "fake-remote"

    def __init__(self, vectors):
        self.vectors, self.requests = vectors, []

    async def embed(self, model, request):
        from jan.services.types import EmbeddingResult

        self.requests.append(request)
        return EmbeddingResult(model["id"], tuple(self.vectors), 7)


class _Models:
    def __init__(self, engine):
        self.engine = engine

    async def resolve(self, model):
        from types import SimpleNamespace

        return SimpleNamespace(engine=self.engine, model={"id": "remote"}, id="remote")


async def test_a_remote_engine_gets_dimensions_and_whole_vectors_it_answers_are_cut():
    from jan.services.embeddings import EmbeddingService
    from jan.services.types import EmbeddingRequest

    whole = [0.6, 0.0, 0.8, 0.0]
    engine = _Upstream([list(whole), [0.0, 0.0, 0.0, 2.0]])
    result = await EmbeddingService(_Models(engine)).embed(EmbeddingRequest(model="remote", inputs=("a", "b"),
                                                                            dimensions=2))
    assert engine.requests[0].dimensions == 2  # forwarded
    assert result.vectors[0] == pytest.approx([1.0, 0.0]) and isinstance(result.vectors[0], list)
    assert result.vectors[1] == [0.0, 0.0] and result.prompt_tokens == 7  # (a cut of zeros stays zeros)
    engine.vectors = [[3.0, 4.0]]  # an upstream that honoured dimensions: its vector as it is
    honoured = await EmbeddingService(_Models(engine)).embed(EmbeddingRequest(model="remote", inputs=("a",),
                                                                              dimensions=2))
    assert honoured.vectors == ([3.0, 4.0],)
    # not normalized again where the request's vectors are not
    engine.vectors = [list(whole)]
    raw = await EmbeddingService(_Models(engine)).embed(EmbeddingRequest(model="remote", inputs=("a",),
                                                                         dimensions=3, normalize=False))
    assert raw.vectors[0] == pytest.approx([0.6, 0.0, 0.8])


@pytest.mark.parametrize("vectors, says", [
    ([[1.0, 0.0]], "1 vector for 2 inputs"),
    ([[1.0, 0.0], None], "vector 1 (None) is not a list of finite numbers"),
    ([[1.0, 0.0], ["a", "b"]], "vector 1"),
    ([[1.0, 0.0], [float("nan"), 1.0]], "vector 1"),
    ([[1.0, 0.0], [True, False]], "vector 1"),
    ([[1.0, 0.0], []], "vector 1"),
    ([[1.0, 0.0], [1.0, 0.0, 0.0]], "vector 1 has 3 components where vector 0 has 2"),
])
async def test_an_engines_malformed_vectors_are_its_error_not_an_answer(vectors, says):
    """An engine extension's (or an upstream's) vectors went to every dialect as they were: a missing one was a
    200 with fewer vectors than inputs, a null or NaN a 500 when the answer was written, strings a 200 of junk."""
    from jan.services.embeddings import EmbeddingService
    from jan.services.engine_output import ExtensionEngineError
    from jan.services.types import EmbeddingRequest

    with pytest.raises(ExtensionEngineError, match=re.escape(says)) as err:
        await EmbeddingService(_Models(_Upstream(vectors))).embed(EmbeddingRequest(model="remote", inputs=("a", "b")))
    assert "fake-remote" in str(err.value) and err.value.http_status == 500


@pytest.mark.parametrize("p_norm, dimensions, expected", [
    (-1, None, [3.0, -4.0]), (0, None, [24570.0, -32760.0]), (1, None, [3 / 7, -4 / 7]), (2, None, [0.6, -0.8]),
    (2, 2, [0.6, -0.8]),  # (only 2 goes with dimensions: the routes refuse the others)
])
async def test_a_remote_engines_vectors_take_every_embd_normalize(p_norm, dimensions, expected):
    """llama-server's embd_normalize on a remote model's vectors: -1 (as they are) was a 500 ('list' object has no
    attribute 'tolist': the norm handed the upstream's lists back as they came)."""
    from jan.services.embeddings import EmbeddingService
    from jan.services.types import EmbeddingRequest

    engine = _Upstream([[3.0, -4.0] + ([0.0] if dimensions else [])])
    result = await EmbeddingService(_Models(engine)).embed(EmbeddingRequest(model="remote", inputs=("a",),
                                                                            p_norm=p_norm, dimensions=dimensions))
    assert isinstance(result.vectors[0], list) and all(type(x) is float for x in result.vectors[0])
    assert result.vectors[0] == pytest.approx(expected, rel=1e-6)


def test_an_embedding_models_n_ctx_is_its_embedding_context(minilm_path):
    """model.json's ctx_len (n_ctx) was left unsaid for an embedding model: its embedding context stayed the training
    context (512 here), so an input past the context a user set was embedded, and Ollama's truncation cut at 512.
    As llama-server's -c: honoured below the training context, capped at it (past its positions a BERT reads
    garbage)."""
    with jan.Model(minilm_path, n_ctx=64, n_threads=1) as model:
        assert model.n_ctx == 64 and model.n_ctx_embed == 64
        with pytest.raises(jan.errors.ContextOverflowError, match="holds 64") as err:
            model.embed("word " * 100)
        assert err.value.n_ctx == 64
        assert model.embed(["word " * 60]).shape == (1, 384)
    with jan.Model(minilm_path, n_ctx=4096, n_threads=1) as model:
        assert model.n_ctx_embed == 512
