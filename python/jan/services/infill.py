"""Fill-in-the-middle: the prompt that asks a code model for the text between a prefix and a suffix."""

from __future__ import annotations

import asyncio

from jan.core import LocalInferenceExtension
from jan.engine.fill_in import fill_in_tokens, has_fill_in
from jan.services.abilities import fill_in_refusal
from jan.services.errors import RequestError
from jan.services.local import continued_prompt, given_back_unless_begun
from jan.services.models import ModelService
from jan.services.types import InfillChunk

__all__ = ["infill_prompt"]


async def infill_prompt(models: ModelService, model_id: str, prefix: str, suffix: str,
                       context: tuple[int, ...] = (), extra: tuple[InfillChunk, ...] = (),
                       max_tokens: int | None = None, fit: bool = False) -> tuple[int, ...]:
    """Token ids ``[BOS] <fim_pre> prefix <fim_suf> suffix <fim_mid>`` (prefix-suffix-middle order,
    as llama.cpp's server builds them) for a :class:`~jan.services.types.CompletionRequest`; after
    ``context`` (an earlier exchange's token ids, Ollama's ``context``) when given, as
    :func:`~jan.services.local.continued_prompt` joins them.

    ``extra``, ``max_tokens`` and ``fit`` (llama-server's ``/infill``, whose clients send more code than fits and
    leave the cut to it) as :func:`jan.engine.fill_in.fill_in_tokens` reads them, the one builder of FIM prompts
    (the library's ``Model.generate(suffix=...)`` too); without ``fit`` a prompt too long is the engine's 400.

    The FIM tokens are the model's own (``llama_vocab_fim_pre/suf/mid``). Raises :class:`RequestError`:
    ``param="suffix"`` for a model without them or one on a remote engine, ``param="context"`` for a
    context id outside the vocabulary.
    """
    target = await models.resolve_generating(model_id)
    if not isinstance(target.engine, LocalInferenceExtension):
        raise RequestError(f"suffix: the model '{target.id}' runs on the '{target.engine.engine_name}' engine, "
                           "which cannot fill in the middle", param="suffix", code="not_supported")
    await models.require_fill_in(target, context)  # no FIM tokens (or a bad context id): refused before a load
    local = await target.engine.acquire(target.model)
    model = local.model

    def build() -> tuple[int, ...]:
        # held: it ends the claim of this hand-out, which submits nothing (the completion that follows is handed
        # the model again), refused or not, so that a keep_alive 0 (which waits for claims) need not wait for it
        with local.hold():
            if not has_fill_in(model):  # (where the header could not tell)
                raise fill_in_refusal(target.id)
            tokens = fill_in_tokens(model, prefix, suffix, extra=extra, max_tokens=max_tokens, fit=fit)
            return tuple(continued_prompt(model, context, tokens))

    with given_back_unless_begun(local):  # (its client gone before the thread began: not held)
        return await asyncio.to_thread(build)

