"""Output under a grammar is valid UTF-8 (cpp/utf8_sampler.h). llama.cpp's grammar lets a byte-fallback model write
bytes that are no text: F5..FF, C0/C1, a lead byte and then no continuation, a continuation with no lead (found with
a random model: ``"?>dam\ufffd\ufffd\ufffd\ufffd"`` inside a JSON string under a schema with maxLength and pattern,
which the client's schema validation then refused). The engine bans such tokens; greedy output that never picked
one is what it was.

Random-weight models with SentencePiece vocabularies that spell any character outside their pieces as ``<0xXX>``
byte tokens (llama-spm's, phi-3's): sampled broadly, they pick byte tokens often."""

from __future__ import annotations

import codecs
import json

import jan
import jsonschema
import pytest
from jan.templates.grammar import json_schema_to_grammar
from jan.testing.gguf_models import (
    TINY_CHAT_CONFIG,
    models_dir,
    vocab_path,
    write_llama_from_vocab,
    write_phi3_chat_model,
)
from server_helpers import ok, start_server

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "code": {"type": "string", "pattern": "^.{1,5}-.{1,4}$"},
        "note": {"type": "string", "maxLength": 12},
    },
    "required": ["name", "code", "note"],
    "additionalProperties": False,
}
# Broad sampling: every candidate the grammar allows keeps a chance, byte tokens among them.
BROAD = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
SEEDS = range(40)


def _raw(model: jan.Model, token_ids: list[int]) -> bytes:
    """The engine's output bytes: each token's piece as written, before any decoding."""
    return b"".join(model.token_to_bytes(t) for t in token_ids)


def _valid_utf8(raw: bytes, *, complete: bool) -> bool:
    """Strictly valid UTF-8; a cut-off output (``complete`` false) may end inside a character."""
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(raw, final=complete)
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    vocab = vocab_path("ggml-vocab-llama-spm.gguf")
    if not vocab.exists():
        pytest.skip(f"missing {vocab}")
    path = write_llama_from_vocab(tmp_path_factory.mktemp("utf8") / "spm.gguf", vocab, **TINY_CHAT_CONFIG)
    with jan.Model(path, n_ctx=512, n_threads=1) as model:
        yield model


def test_sampled_json_under_a_schema_is_always_valid_utf8(spm_model):
    grammar = json_schema_to_grammar(SCHEMA)
    with_bytes = 0
    for seed in SEEDS:
        out = spm_model.generate("Data:", max_tokens=100, grammar=grammar, seed=seed, **BROAD)
        raw = _raw(spm_model, out.token_ids)
        assert _valid_utf8(raw, complete=out.finish_reason != "length"), (seed, raw)
        assert "\ufffd" not in out.text, (seed, out.text)
        with_bytes += any(b >= 0x80 for b in raw)
        if out.finish_reason != "length":
            jsonschema.validate(json.loads(out.text), SCHEMA)
    assert with_bytes, "no output held a non-ASCII byte: the test would prove nothing"


def test_a_character_class_grammar_only_spells_whole_characters(spm_model):
    """A grammar of any characters: every token is one the grammar allows, so only this guard stands between the
    byte tokens and the output; an end of generation inside a character is banned too."""
    grammar = 'root ::= [^\\x00]{1,40}'
    for seed in SEEDS:
        out = spm_model.generate("Text:", max_tokens=48, grammar=grammar, seed=seed, **BROAD)
        assert _valid_utf8(_raw(spm_model, out.token_ids), complete=out.finish_reason != "length"), seed


def test_greedy_output_that_never_went_astray_is_unchanged(spm_model):
    """A grammar that allows every text changes greedy output only where plain greedy would have written invalid
    UTF-8: where its bytes are valid, the grammar's output is the very same tokens."""
    kept = changed = 0
    for prompt in ["Once upon a time", "Data:", "\u00e9t\u00e9 \u65e5\u672c", "{\"a\":", "x y z", "Caf\u00e9 \u00fc"]:
        plain = spm_model.generate(prompt, max_tokens=40, temperature=0)
        held = spm_model.generate(prompt, max_tokens=40, temperature=0, grammar="root ::= [^\\x00]*")
        held_raw = _raw(spm_model, held.token_ids)
        assert _valid_utf8(held_raw, complete=held.finish_reason != "length"), (prompt, held_raw)
        if _valid_utf8(_raw(spm_model, plain.token_ids), complete=plain.finish_reason != "length"):
            assert held.token_ids == plain.token_ids, prompt
            kept += 1
        else:
            assert held.token_ids != plain.token_ids, prompt
            changed += 1
    assert kept and changed, (kept, changed)  # (both cases seen: otherwise this proves half of what it says)


def test_greedy_output_of_a_trained_model_is_unchanged():
    path = models_dir() / "stories260K.gguf"
    if not path.exists():
        pytest.skip(f"missing {path}")
    with jan.Model(path, n_ctx=256, n_threads=1) as model:
        for prompt in ["Once upon a time", "The little dog", "Lily saw a"]:
            plain = model.generate(prompt, max_tokens=60, temperature=0)
            held = model.generate(prompt, max_tokens=60, temperature=0, grammar="root ::= [^\\x00]*")
            assert held.token_ids == plain.token_ids, prompt


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    vocab = vocab_path("ggml-vocab-phi-3.gguf")
    if not vocab.exists():
        pytest.skip(f"missing {vocab}")
    tmp = tmp_path_factory.mktemp("utf8-server")
    srv = start_server(tmp, [write_phi3_chat_model(tmp / "phi3-tiny.gguf")], n_parallel=2)
    yield srv
    srv.stop()


def test_json_schema_answers_validate_over_many_seeds(server):
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string", "maxLength": 12},
                       "tag": {"type": "string", "pattern": "^[^0-9]{2,10}$"}},
        "required": ["title", "tag"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "item", "schema": schema, "strict": True}}
    validated = 0
    for seed in SEEDS:
        body = ok(server, "/v1/chat/completions", {
            "model": "phi3-tiny", "messages": [{"role": "user", "content": "An item, please."}],
            "response_format": fmt, "seed": seed, "max_tokens": 120,
            "temperature": 1.5, "top_p": 1.0, "top_k": 0, "min_p": 0.0,  # (llama-server's fields, which jan reads)
        })
        choice = body["choices"][0]
        content = choice["message"]["content"]
        assert "\ufffd" not in content, (seed, content)
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(content), schema)
            validated += 1
    assert validated, "no answer finished: nothing was validated"


def test_a_grammar_that_allows_only_invalid_bytes_still_has_its_way(spm_model):
    """Where every candidate the grammar allows would be invalid (a surrogate, which llama.cpp's grammar matches to
    the bytes ED A0..BF xx: no UTF-8), nothing is banned: the grammar's choice stands and the request ends as the
    grammar says, rather than with no candidate left."""
    grammar = "root ::= [\\uD800-\\uDFFF]"
    for params in ({"temperature": 0}, {**BROAD, "seed": 1}):
        out = spm_model.generate("Text:", max_tokens=8, grammar=grammar, **params)
        raw = _raw(spm_model, out.token_ids)
        assert out.finish_reason == "stop", (params, raw)
        assert not _valid_utf8(raw, complete=True) and raw[:1] == b"\xed", (params, raw)
