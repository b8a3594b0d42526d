"""Tokenization equals llama-cpp-python's on real tokenizers (the vocab-only GGUFs)."""

from __future__ import annotations

import pytest

import jan

VOCABS = ["llama-spm", "phi-3", "gpt-2", "bert-bge"]
TRICKY = [
    "",
    " ",
    "  leading and trailing  ",
    "Hello, world!",
    "naïve café résumé",
    "日本語のテキストと中文",
    "emoji 😀👍🏽 family 👨‍👩‍👧",
    "\t\ttabs\nnew\n\nlines\r\n",
    "   ",
    "<s> not special </s>",
    "<|endoftext|><|end|><|user|>",
    "[CLS] [SEP] [MASK]",
    "numbers 1234567890 3.14159",
    "mixed العربية עברית Ελληνικά",
    "a" * 300,
]


@pytest.fixture(scope="module", params=VOCABS)
def pair(request, vocab_dir):
    from llama_cpp import Llama

    path = vocab_dir / f"ggml-vocab-{request.param}.gguf"
    theirs = Llama(model_path=str(path), vocab_only=True, verbose=False)
    ours = jan.Model(path, vocab_only=True)
    yield ours, theirs
    ours.close()


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("add_special", [True, False])
@pytest.mark.parametrize("parse_special", [True, False])
def test_tokenize_matches_llama_cpp_python(pair, text, add_special, parse_special):
    ours, theirs = pair
    expected = theirs.tokenize(text.encode(), add_bos=add_special, special=parse_special)
    assert ours.tokenize(text, add_special=add_special, parse_special=parse_special) == expected


@pytest.mark.parametrize("vocab", ["llama-spm", "phi-3", "gpt-2"])  # WordPiece (bert) lowercases: no round trip
@pytest.mark.parametrize("text", TRICKY)
def test_detokenize_round_trips(vocab_dir, vocab, text):
    with jan.Model(vocab_dir / f"ggml-vocab-{vocab}.gguf", vocab_only=True) as m:
        tokens = m.tokenize(text, add_special=False, parse_special=False)
        assert m.detokenize(tokens) == text
        assert b"".join(m.token_to_bytes(t) for t in tokens).decode().lstrip() == text.lstrip()


def test_special_tokens_render_only_when_asked(vocab_dir):
    with jan.Model(vocab_dir / "ggml-vocab-phi-3.gguf", vocab_only=True) as m:
        tokens = m.tokenize("<|user|>hi<|end|>", add_special=False, parse_special=True)
        assert len(tokens) < 6
        assert m.token_to_piece(tokens[0], special=True) == "<|user|>"
        assert m.token_to_piece(tokens[0], special=False) == ""
        assert "<|user|>" in m.detokenize(tokens, unparse_special=True)
        assert "<|user|>" not in m.detokenize(tokens, unparse_special=False)


@pytest.mark.parametrize("vocab", ["llama-spm", "gpt-2"])
def test_a_long_texts_ids_are_whole_across_the_pieces_the_list_is_made_in(vocab_dir, vocab):
    # The ids come from the engine packed and are made into a list in pieces of 65,536 (jan.engine.token_ids: a
    # 16 MiB text's 8.4 M ids made in one conversion held every other thread ~0.6 s): every id in its place, across
    # three piece edges, the same as llama-cpp-python's.
    from llama_cpp import Llama

    path = vocab_dir / f"ggml-vocab-{vocab}.gguf"
    text = "".join(f"word{i % 97} {i % 13}, " for i in range(70_000))
    theirs = Llama(model_path=str(path), vocab_only=True, verbose=False)
    expected = theirs.tokenize(text.encode(), add_bos=True, special=False)
    assert len(expected) > 3 * 65_536
    with jan.Model(path, vocab_only=True) as ours:
        got = ours.tokenize(text, add_special=True, parse_special=False)
    assert type(got) is list and all(type(t) is int for t in got[65_530:65_542])
    assert got == expected
