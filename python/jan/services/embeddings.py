"""The embeddings service: texts or token lists in, one vector per input out."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

from jan.core import LocalInferenceExtension
from jan.core.held import Held
from jan.errors import ContextOverflowError, EmbeddingCancelledError, EmbeddingStoppedError
from jan.services.abilities import POOLING_NONE_REFUSED, dimensions_refusal, pooling_none_refusal, reranker_refusal
from jan.services.engine_output import checked_embeddings, engine_failures
from jan.services.errors import GenerationCancelledError, RequestError
from jan.services.models import ModelService
from jan.services.local import completion_media_prompts, given_back_unless_begun
from jan.services.types import (MAX_EMBEDDING_TOKENS, EmbeddingRequest, EmbeddingResult, MediaText, RerankRequest,
                                RerankResult, require_request)
from jan.services.untrusted import neutralized
from jan.engine.media import MEDIA_CANCEL
from jan.services.worker_pool import WorkerPool

__all__ = ["EMBEDDING_CANCELLED", "EMBEDDING_WORKERS", "POOLING_NONE_REFUSED", "EmbeddingService"]

#: What a client is told of an embedding its model's stop cut off (GenerationCancelledError's wording, said of it).
EMBEDDING_CANCELLED = ("The embedding was stopped before it finished: the model was stopped or unloaded on the server "
                       "(or the server is shutting down). Try again.")


#: Worker threads of the embedding requests' own, as many as run or wait at once. An embedding request spends most
#: of its time in a worker thread waiting for its turn of the model's one embedding context (jan.engine.turns); on the
#: event loop's shared workers (``asyncio.to_thread``: cpu count + 4) a dozen such requests took every one of them,
#: and each request that needs one for a moment -- a tokenize, a chat's prompt -- waited behind the embeddings (4 s
#: on a 2-core machine for a tokenize of 0.08 s, twelve 200-input requests in flight). Waiting threads cost nothing
#: but their stacks; requests past these queue in order (the media workers' reason: services/media_workers.py).
EMBEDDING_WORKERS = 16

_workers = WorkerPool("jan-embed", EMBEDDING_WORKERS)


def _tokens(model, request: EmbeddingRequest, stop: threading.Event, made: dict[int, Any]) -> list[Any]:
    """Each input's tokens (cut to the embedding context with ``truncate``; one with media is ``made``'s prompt, as
    it is: its images cannot be cut in two), or a ``RequestError`` as soon as they pass :data:`MAX_EMBEDDING_TOKENS`
    in all, before the rest is tokenized or anything is embedded."""
    tokens, total = [], 0
    for i, x in enumerate(request.inputs):
        if stop.is_set():  # (tokenizing a 16 MB body takes seconds)
            raise EmbeddingStoppedError("the embedding was stopped while its inputs were tokenized")
        if i in made:
            tokens.append(made[i])
            total += made[i].n_tokens
        else:
            t = model.tokenize(x) if isinstance(x, str) else list(x)
            if request.truncate:
                t = t[: model.n_ctx_embed]
            elif len(t) > model.n_ctx_embed:
                # the engine's refusal, said here of the field that holds the input (request.prompt_name): the
                # engine numbers the inputs it was given ("input[0]" of a body whose input is one text)
                where = request.prompt_name(i)
                raise ContextOverflowError(f"{where} has {len(t)} tokens but the embedding context holds "
                                           f"{model.n_ctx_embed}", len(t), model.n_ctx_embed, param=where)
            tokens.append(t)
            total += len(t)
        if total > MAX_EMBEDDING_TOKENS:
            # OpenAI's code for it; the count so far, not the whole (tokenizing the rest would be the work refused)
            raise RequestError(f"{request.field}: the inputs hold more than {MAX_EMBEDDING_TOKENS} tokens in all (the first "
                               f"{len(tokens)} of {len(request.inputs)} hold {total}); an embedding request takes at "
                               f"most {MAX_EMBEDDING_TOKENS}: send them in several requests", param=request.field,
                               code="max_tokens_per_request")
    return tokens


def _cut(vectors, dimensions: int | None, normalize: bool) -> list:
    """Each vector's first ``dimensions`` components, L2-normalized again when ``normalize`` (the Matryoshka cut of
    OpenAI's ``dimensions``: a unit vector's prefix is no unit vector); vectors no longer than that as they are. A cut
    whose components are all zero stays zero (no direction to keep)."""
    if dimensions is None or all(len(v) <= dimensions for v in vectors):
        return list(vectors)
    import numpy as np  # only embeddings need numpy; a chat-only server never loads it (resident memory)

    out = []
    for v in vectors:
        if len(v) <= dimensions:
            out.append(v)
            continue
        cut = np.array(v[:dimensions], dtype=np.float64)  # (a copy: the whole vector is not kept alive by a view)
        norm = float(np.linalg.norm(cut)) if normalize else 0.0
        out.append((cut / norm if norm > 0 else cut).astype(np.float32))
    return out


def _p_normed(vectors, p: int | None) -> list:
    """Each pooled vector normalized as llama.cpp's ``common_embd_normalize`` does for ``embd_normalize`` ``p``
    (:attr:`EmbeddingRequest.p_norm`): -1 as it is, 0 scaled so its largest component is 32760 (int16's range), 2
    euclidean, any other its p-norm (1: taxicab); a vector of zeros stays zeros. ``None``: as they are."""
    if p is None or p == -1:
        return list(vectors)
    import numpy as np

    out = []
    for v in vectors:
        x = np.asarray(v, dtype=np.float64)
        if p == 0:
            norm = float(np.max(np.abs(x))) / 32760.0 if x.size else 0.0
        elif p == 2:
            norm = float(np.linalg.norm(x))
        else:
            with np.errstate(over="ignore", under="ignore"):  # (a large p: inf or 0, as in llama.cpp's double math)
                norm = float(np.sum(np.abs(x) ** p) ** (1.0 / p))
        out.append((x / norm if norm > 0 else x).astype(np.float32))
    return out


class EmbeddingService(Held):
    held = "the model service of a running extension manager"

    def __init__(self, models: ModelService):
        self.models = models

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Vectors (float32 arrays for local models, L2-normalized unless ``request.normalize`` is False) in input
        order, cut to ``request.dimensions`` (:class:`EmbeddingRequest`) here, once, for every front end.

        ``ValueError`` (RequestError) when ``dimensions`` is above the model's (unless capped) or the model is loaded
        with pooling none (its vectors are per token); errors of model resolution as
        :meth:`ModelService.resolve`; ``TypeError`` for anything but an :class:`EmbeddingRequest`.
        """
        require_request(request, EmbeddingRequest, "embeddings")
        target = await self.models.resolve(request.model)
        if not isinstance(target.engine, LocalInferenceExtension):
            if any(isinstance(x, MediaText) for x in request.inputs):
                # (an upstream's embedding API takes text: its media would be lost, unsaid -- as a completion's)
                raise RequestError(f"{request.field}: model '{target.id}' takes no images or audio in an embedding "
                                   "input (its engine is not local)", param=request.field, code="not_supported")
            with engine_failures(target.engine, "embed()"):
                result = await target.engine.embed(target.model, request)
            # (a vector missing, null, NaN or of strings was a 500 or a 200 of junk: said of the engine here)
            result = checked_embeddings(target.engine, result, len(request.inputs))
            # forwarded as ``dimensions``; an upstream that ignores it (llama-server does) answered whole vectors,
            # which a client that asked for N would store beside N-long ones: cut here as for a local model. (Both
            # steps may hand back a vector as it came, a list, or a new float32 array: each made a list of floats.)
            vectors = _cut(result.vectors, request.dimensions, request.normalize)
            if request.p_norm is not None:  # (an upstream answers its own normalization: llama.cpp's asked for here)
                vectors = _p_normed(vectors, request.p_norm)
            result = EmbeddingResult(result.model, tuple(v.tolist() if hasattr(v, "tolist") else list(v)
                                                         for v in vectors), result.prompt_tokens)
            return result
        # (dimensions or token ids its header refuses, pooling none in its load options) before a load
        await self.models.require_able(target, request)
        local = await target.engine.acquire(target.model)
        model = local.model

        # set when the caller stops waiting (the client went away: the route cancels this coroutine), so that the
        # worker thread stops before its next batch: the thread outlives the cancelled await, and went on embedding
        # thousands of inputs for no one, again for each retry of a client that timed out
        stop = threading.Event()

        def run() -> tuple[list[list[int]], object]:
            # held from here (the claim acquire made ends: a refused request holds the model no longer): tokenizing
            # and making the embedding context take long enough for a load of another model to unload one idle
            with local.hold():
                per_token = getattr(model, "pooling", None) == "none"
                if per_token and not request.per_token:  # per token: neither OpenAI's shape nor Ollama's
                    raise pooling_none_refusal(target.id)
                problem = dimensions_refusal(request, model.info.n_embd)
                if problem is not None:
                    raise problem
                # inputs with images or audio: sized to the embedding context, then encoded (llama-server's prompt
                # objects, tokenized as its /embedding tokenizes them: the completion path's own preparation)
                made = (completion_media_prompts(local, request.inputs, embedding=True,
                                                 prompt_name=request.prompt_name)
                        if any(isinstance(x, MediaText) for x in request.inputs) else {})
                tokens = _tokens(model, request, stop, made)
                # p_norm replaces normalize; a token's vector is never p-normed (llama.cpp normalizes pooled ones)
                normalize = request.normalize if request.p_norm is None else False
                # (its errors name the body's field, ``input[i]``, as every embedding route's refusals do)
                vectors = model.embed(tokens, normalize=normalize, cancel=stop, field="input")
                if per_token:
                    return tokens, list(vectors)
                vectors = _p_normed(vectors, request.p_norm)
                return tokens, _cut(vectors, request.dimensions, normalize)  # (here: off the event loop)

        # (the same event stops the decoding of the inputs' images and audio at its next item, as a chat's)
        token = MEDIA_CANCEL.set(stop)
        try:
            with given_back_unless_begun(local):  # (its client gone while it waited for a worker: not held)
                tokens, vectors = await _workers.run(run)
        except asyncio.CancelledError:
            stop.set()
            raise
        except EmbeddingCancelledError:
            # stopped or unloaded under the running embedding (an admin's stop, shutdown): the error a cut-off
            # generation gets (503, try again), never a normal end, and never vectors from a model reported gone.
            # (Unloaded before it began: the engine's ModelClosedError, "model_unloaded", as for a generation.)
            raise GenerationCancelledError(EMBEDDING_CANCELLED) from None
        finally:
            MEDIA_CANCEL.reset(token)
        return EmbeddingResult(target.id, tuple(vectors), sum(getattr(t, "n_tokens", None) or len(t) for t in tokens))

    async def rerank(self, request: RerankRequest) -> RerankResult:
        """The documents most relevant to the query first, by a local reranker model (:meth:`jan.Model.rerank`: one
        input per document, read with the query), on the embedding requests' workers and turns (each input takes its
        turn of the embedding context, so a big request does not hold it from others). The request's cuts
        (``max_tokens_per_doc``, ``max_chunks_per_doc``, ``truncate``, ``truncation_direction``) are the engine's,
        applied to each document as read (after its control tokens' text is broken); ``raw_scores`` False answers
        each logit's sigmoid, in the logits' order. RequestError for a model on a
        remote engine (``param="model"``); BadRequestError (``model_not_supported``) for a model that is no reranker; a cancelled await stops the
        work before its next batch; a stop or unload under it is GenerationCancelledError, as for embeddings;
        ``TypeError`` for anything but a :class:`RerankRequest`."""
        require_request(request, RerankRequest, "rerank")
        target = await self.models.resolve(request.model)
        if not isinstance(target.engine, LocalInferenceExtension):
            raise RequestError(f"model: '{target.id}' runs on the '{target.engine.engine_name}' engine, which cannot "
                               "rerank (a local reranker GGUF can)", param="model", code="model_not_supported")
        # refused by its header's pooling before a load (loading a chat model's weights and KV cache only to say it
        # is no reranker is waste, perhaps evicting another model): the words the loaded model says it in
        abilities = await self.models.abilities(target)
        if abilities is not None and abilities.reranker is False:
            raise reranker_refusal(target.id, False)
        local = await target.engine.acquire(target.model)
        model = local.model
        stop = threading.Event()

        def run():
            with local.hold():  # (the claim acquire made ends here, as for embeddings)
                documents = list(request.documents)
                if model.rerank_template:
                    # The filled template is tokenized with special tokens parsed (its markup is control tokens):
                    # a document, third-party text (what a search retrieved), that spells one would forge that
                    # markup -- "<|im_end|>...yes" ranking itself first. Its control tokens' text is broken, as a
                    # chat's documents' is; a document that spells none is read as llama-server reads it. (Without
                    # a template every document is tokenized as text already.)
                    documents = [neutralized(model, d) for d in documents]
                return model.rerank(request.query, documents, cancel=stop,
                                    max_tokens_per_doc=request.max_tokens_per_doc,
                                    max_chunks_per_doc=request.max_chunks_per_doc, truncate=request.truncate,
                                    truncation_direction=request.truncation_direction)

        try:
            with given_back_unless_begun(local):
                ranking = await _workers.run(run)
        except asyncio.CancelledError:
            stop.set()
            raise
        except EmbeddingCancelledError:
            raise GenerationCancelledError(EMBEDDING_CANCELLED) from None
        scores = ranking.scores if request.raw_scores else [_sigmoid(x) for x in ranking.scores]
        # (ordered by the raw scores: the sigmoid keeps their order, where its rounding to 1.0 would tie them)
        order = sorted(range(len(ranking.scores)), key=lambda i: -ranking.scores[i])  # (stable: ties by index)
        if request.top_n is not None:
            order = order[: request.top_n]
        return RerankResult(target.id, tuple((i, scores[i]) for i in order), ranking.prompt_tokens)


def _sigmoid(x: float) -> float:
    """A single-label classifier's logit as a probability (Text Embeddings Inference's score without
    ``raw_scores``), written not to overflow for a large negative logit."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
