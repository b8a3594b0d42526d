"""A generation cut off inside a character (its first bytes sampled, the rest never) ends at the last whole
character: never a U+FFFD the model did not write (found by outside testing: ``max_tokens`` ending inside an emoji
spelled as byte tokens gave ``'"🙂�'``), whole or streamed, in the engine and over HTTP."""

from __future__ import annotations

import pytest

import jan
from jan.testing.gguf_models import TINY_CHAT_CONFIG, vocab_path, write_llama_from_vocab

EMOJI = "🙂🙂🙂"
GRAMMAR = 'root ::= "' + EMOJI + '"'


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    """A random-weight model with llama-spm's vocabulary, which spells an emoji as single-byte tokens."""
    vocab = vocab_path("ggml-vocab-llama-spm.gguf")
    if not vocab.exists():
        pytest.skip(f"missing {vocab}")
    path = write_llama_from_vocab(tmp_path_factory.mktemp("torn") / "spm.gguf", vocab, **TINY_CHAT_CONFIG)
    with jan.Model(path, n_ctx=256, n_threads=1) as model:
        yield model


def _pieces(model) -> int:
    """How many tokens the grammar's text takes (each emoji is 4 byte tokens here)."""
    return len(model.tokenize(EMOJI, add_special=False))


def test_every_cut_inside_a_character_ends_at_the_last_whole_one(byte_model):
    n = _pieces(byte_model)
    assert n > len(EMOJI), "the vocabulary should spell the emoji in bytes"
    for max_tokens in range(1, n + 1):
        whole = byte_model.generate("Smile:", max_tokens=max_tokens, temperature=0, grammar=GRAMMAR)
        streamed = "".join(c.text for c in byte_model.stream("Smile:", max_tokens=max_tokens, temperature=0,
                                                             grammar=GRAMMAR))
        assert "\ufffd" not in whole.text and "\ufffd" not in streamed, (max_tokens, whole.text, streamed)
        assert EMOJI.startswith(whole.text) and streamed == whole.text, (max_tokens, whole.text, streamed)
    assert whole.text == EMOJI  # all of it once every byte is in
