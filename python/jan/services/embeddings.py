"""The embeddings service: texts or token lists in, one vector per input out."""

from __future__ import annotations

from jan.core import LocalInferenceExtension
from jan.errors import EmbeddingCancelledError
from jan.services.abilities import POOLING_NONE_REFUSED, dimensions_refusal, pooling_none_refusal
from jan.services.errors import GenerationCancelledError
from jan.services.engine_output import engine_failures
from jan.services.local import off_loop
from jan.services.models import ModelService
from jan.services.types import EmbeddingRequest, EmbeddingResult

__all__ = ["EMBEDDING_CANCELLED", "POOLING_NONE_REFUSED", "EmbeddingService"]

#: What a client is told of an embedding its model's stop cut off (GenerationCancelledError's wording, said of it).
EMBEDDING_CANCELLED = ("The embedding was stopped before it finished: the model was stopped or unloaded on the server "
                       "(or the server is shutting down). Try again.")



class EmbeddingService:
    def __init__(self, models: ModelService):
        self.models = models

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Vectors (float32 arrays for local models, L2-normalized) in input order.

        ``ValueError`` (RequestError) when ``dimensions`` is not the model's or the model is loaded with pooling
        none (its vectors are per token); errors of model resolution as
        :meth:`ModelService.resolve`.
        """
        target = await self.models.resolve(request.model)
        if not isinstance(target.engine, LocalInferenceExtension):
            with engine_failures(target.engine, "embed()"):
                return await target.engine.embed(target.model, request)
        # (dimensions or token ids its header refuses, pooling none in its load options) before a load
        await self.models.require_able(target, request)
        local = await target.engine.acquire(target.model)
        model = local.model

        def run() -> tuple[list[list[int]], object]:
            # held from here (the claim acquire made ends: a refused request holds the model no longer): tokenizing
            # and making the embedding context take long enough for a load of another model to unload one idle
            with model.hold():
                if getattr(model, "pooling", None) == "none":  # per token: neither OpenAI's shape nor Ollama's
                    raise pooling_none_refusal(target.id)
                if request.dimensions is not None and request.dimensions != model.info.n_embd:
                    raise dimensions_refusal(model.info.n_embd)
                tokens = [model.tokenize(x) if isinstance(x, str) else list(x) for x in request.inputs]
                if request.truncate:
                    tokens = [t[: model.n_ctx_embed] for t in tokens]
                return tokens, model.embed(tokens)

        try:
            tokens, vectors = await off_loop(run)
        except EmbeddingCancelledError:
            # stopped or unloaded under the running embedding (an admin's stop, shutdown): the error a cut-off
            # generation gets (503, try again), never a normal end, and never vectors from a model reported gone.
            # (Unloaded before it began: the engine's ModelClosedError, "model_unloaded", as for a generation.)
            raise GenerationCancelledError(EMBEDDING_CANCELLED) from None
        return EmbeddingResult(target.id, tuple(vectors), sum(len(t) for t in tokens))
