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


# -- bytes that are no UTF-8 at all: shown as U+FFFD, and matched as such by a stop string ------------------------
LONE_BYTE = 184  # stories260K's <0xB5>: a UTF-8 continuation byte with nothing before it


@pytest.mark.parametrize("stop", ["\ufffd\ufffd", "\ufffd"])
def test_a_stop_string_matches_the_u_fffd_that_the_text_shows(stories, stop):
    """A lone byte token is shown as U+FFFD; the engine matched stop strings on the raw bytes, so a stop string
    holding U+FFFD never ended a text that showed it (a reply whose stops the service matches, on its text, did
    end there: two paths, two answers). Whole and streamed, with the tokens through the stop counted."""
    assert stories.token_to_bytes(LONE_BYTE) == b"\xb5"
    options = dict(max_tokens=10, temperature=0, logit_bias={LONE_BYTE: 100}, stop=[stop])
    whole = stories.generate("Once", **options)
    assert (whole.text, whole.finish_reason, whole.stop, whole.usage.completion_tokens) == ("", "stop", stop, len(stop))
    chunks = list(stories.stream("Once", **options))
    assert "".join(c.text for c in chunks) == "" and chunks[-1].finish_reason == "stop"
    # without a stop string the text is the U+FFFD of each byte, as before
    assert stories.generate("Once", max_tokens=3, temperature=0, logit_bias={LONE_BYTE: 100}).text == "\ufffd" * 3


def test_over_http_every_dialect_stops_at_a_shown_u_fffd(tmp_path, stories_path):
    from api_helpers import post_json, running

    with running(tmp_path / "data", stories_path, n_parallel=1) as srv:
        bias = {str(LONE_BYTE): 100}
        for path, body, text_of in (
                ("/v1/completions", {"prompt": "Once", "max_tokens": 8, "stop": ["\ufffd\ufffd\ufffd"]},
                 lambda j: (j["choices"][0]["text"], j["choices"][0]["finish_reason"])),
                ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                                          "stop": ["\ufffd\ufffd\ufffd"]},
                 lambda j: (j["choices"][0]["message"]["content"], j["choices"][0]["finish_reason"])),
                ("/completion", {"prompt": "Once", "n_predict": 8, "stop": ["\ufffd\ufffd\ufffd"]},
                 lambda j: (j["content"], j["stop_type"]))):
            status, j = post_json(srv.base_url, path, {"model": "stories260K", "temperature": 0, "logit_bias": bias,
                                                       **body})
            assert status == 200, j
            assert text_of(j) == ("", "word" if path == "/completion" else "stop"), (path, j)
