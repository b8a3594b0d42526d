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


# -- projector_info: a vision model's projector header beside model_info, as Ollama's show has it ------------------
@pytest.fixture(scope="module")
def vision_server(tmp_path_factory, vision_pair):
    model, _mmproj = vision_pair  # the projector beside it is picked up on import
    with running(tmp_path_factory.mktemp("show-vision") / "data", model) as srv:
        yield srv


@pytest.mark.parametrize("verbose", [False, True])
async def test_show_has_the_projectors_header(vision_server, vision_pair, verbose):
    async with Client(vision_server.base_url) as api:
        status, shown = await api.post("/api/show", {"model": vision_pair[0].stem, "verbose": verbose})
        assert status == 200, shown
        projector = shown["projector_info"]
        assert projector["general.architecture"] == "clip" and projector["clip.has_vision_encoder"] is True
        assert projector["clip.vision.image_size"] > 0 and len(projector["clip.vision.image_mean"]) == 3
    assert "vision" in shown["capabilities"] and shown["model_info"]["general.architecture"] == "llama"


def test_show_of_a_model_without_a_projector_leaves_projector_info_out(tagged):
    assert "projector_info" not in ollama_models.show({"id": "tagged"}, str(tagged))
    assert ollama_models.projector_info(str(tagged.parent / "missing-mmproj.gguf")) == {}  # unreadable: none


# -- tensors: each tensor's name, type and shape, as Ollama's show lists a GGUF model's (verbose or not) ----------
@pytest.mark.parametrize("verbose", [False, True])
async def test_show_lists_the_tensors_as_the_file_has_them(server, tagged, verbose):
    from gguf import GGUFReader

    reader = GGUFReader(str(tagged))
    expected = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape]}
                for t in reader.tensors]
    async with Client(server.base_url) as api:
        status, shown = await api.post("/api/show", {"model": "tagged", "verbose": verbose})
    assert status == 200, shown
    assert shown["tensors"] == expected and expected
    assert {t["type"] for t in shown["tensors"]} <= {"F32", "F16", "Q8_0"}, shown["tensors"]
    assert list(shown).index("tensors") > list(shown).index("model_info")  # (Ollama's order)


def test_a_damaged_tensor_list_leaves_tensors_out(tmp_path, tagged):
    from jan.extensions.models.gguf_info import gguf_tensors

    cut = tmp_path / "cut-tensors.gguf"
    data = tagged.read_bytes()
    at = data.index(b"output_norm.weight")  # (a tensor's name: in the tensor list, after the vocabulary)
    cut.write_bytes(data[:at + 10])
    with pytest.raises(ValueError):
        gguf_tensors(str(cut))
    assert "tensors" not in ollama_models.show({"id": "cut"}, str(cut))
    assert "tensors" not in ollama_models.show({"id": "remote"}, None)
