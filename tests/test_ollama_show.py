"""``/api/show``'s ``model_info`` has the GGUF header's arrays, as Ollama's: llama.cpp's metadata gives arrays no
value, so they were missing, and ``verbose`` (Ollama: every value, the vocabulary too) added nothing.

An array of at most five items is given whole; a longer one is ``[]`` unless ``verbose`` asks for all of it. The
arrays are read from the header (never the weights); a header that cannot be read leaves them out, never a failed
``/api/show``.
"""

from __future__ import annotations

import ollama
import pytest
from api_helpers import Client, running
from jan.extensions.models.gguf_info import gguf_arrays
from jan.server.dialects import ollama_models
from jan.testing.gguf_models import TINY_CHAT_CONFIG, vocab_path, write_llama_from_vocab

TAGS = ["tiny", "test"]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A tiny llama with the phi-3 vocabulary (32,000-odd tokens) and a two-item array of its own."""
    return write_llama_from_vocab(tmp_path_factory.mktemp("show") / "tagged.gguf", vocab_path("phi-3"),
                                  **TINY_CHAT_CONFIG, extra_kv={"general.tags": TAGS})


def test_arrays_are_read_whole_or_left_out_by_length(tagged):
    whole = gguf_arrays(str(tagged))
    assert whole["general.tags"] == TAGS
    tokens = whole["tokenizer.ggml.tokens"]
    assert len(tokens) > 32000 and tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert len(whole["tokenizer.ggml.scores"]) == len(tokens) and isinstance(whole["tokenizer.ggml.scores"][0], float)
    assert len(whole["tokenizer.ggml.token_type"]) == len(tokens)
    short = gguf_arrays(str(tagged), longest=5)
    assert short == {key: (values if len(values) <= 5 else []) for key, values in whole.items()}


def test_a_damaged_header_is_a_value_error_and_show_still_answers(tmp_path, tagged):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tagged.read_bytes()[:4096])  # ends inside the vocabulary's strings
    with pytest.raises(ValueError):
        gguf_arrays(str(cut))
    shown = ollama_models.show({"id": "cut"}, str(cut), verbose=True)
    assert not any(isinstance(v, list) and len(v) > 5 for v in shown.get("model_info", {}).values())


@pytest.fixture(scope="module")
def server(tmp_path_factory, tagged, stories_path):
    with running(tmp_path_factory.mktemp("show-data") / "data", tagged, stories_path) as srv:
        yield srv


@pytest.mark.parametrize("verbose", [False, True])
async def test_show_has_the_arrays_as_ollama_gives_them(server, tagged, verbose):
    whole = gguf_arrays(str(tagged))
    async with Client(server.base_url) as api:
        status, shown = await api.post("/api/show", {"model": "tagged", "verbose": verbose})
    assert status == 200
    info = shown["model_info"]
    assert info["general.tags"] == TAGS  # short: always whole
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert info[key] == (whole[key] if verbose else []), key
    assert info["general.architecture"] == "llama" and "tokenizer.chat_template" not in info


def test_the_ollama_client_reads_show_with_the_arrays(server):
    shown = ollama.Client(host=server.base_url, timeout=60).show("stories260K")  # (the client sends no verbose)
    assert shown.modelinfo["tokenizer.ggml.tokens"] == [] and shown.modelinfo["general.architecture"] == "llama"
