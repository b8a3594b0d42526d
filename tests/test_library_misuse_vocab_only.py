"""A vocab-only model (``jan.Model(path, vocab_only=True)``: the tokenizer, no weights) asked for what needs weights
is refused as embed() refuses it, never given a context over no weights."""

from __future__ import annotations

import pytest

import jan


def test_a_vocab_only_model_makes_no_embedding_context(stories_path):
    """n_ctx_embed of a vocab-only model made an embedding context over no weights (and answered 8) where embed()
    refuses it: both say it cannot embed."""
    from jan.errors import BadRequestError

    with jan.Model(stories_path, vocab_only=True) as model:
        for use in (lambda: model.n_ctx_embed, lambda: model.embed("hello")):
            with pytest.raises(BadRequestError, match="vocab-only; it cannot embed"):
                use()
