"""A model's weight type reads the same before a load as after it, wherever it is shown.

A GGUF without ``general.file_type`` (some converters write none) has its type guessed by llama.cpp's loader from
the tensors: the type most of them have ("(guessed) F16"). A header read (a vocab-only load, which stops before
that guess) named none, so ``/v1/models``' ``meta.ftype``, ``/props``' ``model_ftype`` and Ollama's
``quantization_level`` were "" until the model was loaded, and llama.cpp's guess after. The header read now makes
the same guess, from the same tensor tables, counted in the loader's order (ties: the first type to get there).
"""

from __future__ import annotations

import httpx
import pytest

from conftest import require_model
from jan.engine.header import read_info
from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

from server_helpers import start_server

#: a tiny llama of one layer: 3 norms (always F32) and 9 matrices, three of them outside the layer
SHAPE = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_ff": 64, "n_ctx": 256}
NO_FILE_TYPE = {"general.file_type": None}
#: 6 F16 and 6 F32 tensors: the loader's order (tensors of no layer first: output, output_norm, token_embd) gets
#: F16 to 6 first; the order of names alone ("blk.0..." first) would get F32 there first
F16_FIRST = {name: "f16" for name in ("output.weight", "token_embd.weight", "blk.0.attn_k.weight",
                                      "blk.0.attn_output.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight")}
#: the other way round: F32 to 6 first in the loader's order, F16 first in the order of names alone
F32_FIRST = {name: "f16" for name in ("blk.0.attn_k.weight", "blk.0.attn_output.weight", "blk.0.attn_q.weight",
                                      "blk.0.attn_v.weight", "blk.0.ffn_down.weight", "blk.0.ffn_up.weight")}
#: F16 to 6 first in the loader's order (ffn_down, ffn_gate before ffn_norm), F32 in the file's (the writer puts
#: ffn_norm before them) and in the order of names alone
NOT_THE_FILES_ORDER = {name: "f16" for name in ("output.weight", "token_embd.weight", "blk.0.attn_k.weight",
                                                "blk.0.attn_output.weight", "blk.0.ffn_down.weight",
                                                "blk.0.ffn_gate.weight")}

CASES = {
    # name: (write_llama_from_vocab's arguments, the type llama.cpp names after a load)
    "f32 without file_type": ({"dtype": "f32", "extra_kv": NO_FILE_TYPE}, "(guessed) all F32"),
    "f16 without file_type": ({"dtype": "f16", "extra_kv": NO_FILE_TYPE}, "(guessed) F16"),
    "q8_0 without file_type": ({"dtype": "q8_0", "extra_kv": NO_FILE_TYPE}, "(guessed) Q8_0"),
    "a tie, f16 first": ({"dtype": "f32", "tensor_dtypes": F16_FIRST, "extra_kv": NO_FILE_TYPE}, "(guessed) F16"),
    "a tie, f32 first": ({"dtype": "f32", "tensor_dtypes": F32_FIRST, "extra_kv": NO_FILE_TYPE},
                         "(guessed) all F32"),
    "a tie, not the file's order": ({"dtype": "f32", "tensor_dtypes": NOT_THE_FILES_ORDER, "extra_kv": NO_FILE_TYPE},
                                    "(guessed) F16"),
    # a file that names its type is taken at its word, before a load as after (mostly F16, said Q8_0 here)
    "f16 with file_type": ({"dtype": "f16"}, "F16"),
    "f16 said to be q8_0": ({"dtype": "f16", "extra_kv": {"general.file_type": 7}}, "Q8_0"),
}


def _write(tmp_path, name: str):
    require_model("vocab", "ggml-vocab-phi-3.gguf")
    kwargs, _ = CASES[name]
    return write_llama_from_vocab(tmp_path / (name.replace(" ", "-").replace(",", "") + ".gguf"),
                                  vocab_path("phi-3"), **SHAPE, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_a_header_read_names_the_type_a_load_does(tmp_path, name):
    from jan.engine.model import Model

    path = _write(tmp_path, name)
    before = read_info(path)  # (vocab-only: no tensor loaded)
    with Model(str(path)) as model:
        after = model.info
    assert after.ftype == CASES[name][1]  # (what llama.cpp says: the oracle)
    assert (before.ftype, before.file_type) == (after.ftype, after.file_type)
    assert (after.file_type >= 1024) == after.ftype.startswith("(guessed) ")  # (LLAMA_FTYPE_GUESSED)


def test_every_route_shows_the_same_type_before_and_after_a_load(tmp_path):
    """/v1/models' meta.ftype, /props' model_ftype, Ollama's quantization_level (/api/tags, /api/show): before the
    load as after it."""
    path = _write(tmp_path, "f16 without file_type")
    model_id = path.stem
    server = start_server(tmp_path, [path])
    try:
        def shown() -> dict:
            base = server.base_url
            entry = httpx.get(f"{base}/v1/models/{model_id}", timeout=120).json()
            tags = {m["name"]: m for m in httpx.get(f"{base}/api/tags", timeout=120).json()["models"]}
            tag = next(m for name, m in tags.items() if name.split(":")[0] == model_id)
            show = httpx.post(f"{base}/api/show", json={"model": model_id}, timeout=120).json()
            props = httpx.get(f"{base}/props", params={"model": model_id}, timeout=120).json()
            return {"meta": entry["meta"]["ftype"], "props": props["model_ftype"],
                    "tags": tag["details"]["quantization_level"], "show": show["details"]["quantization_level"]}

        before = shown()
        loaded = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=300, json={
            "model": model_id, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
        assert loaded.status_code == 200, loaded.text
        after = shown()
    finally:
        server.stop()
    assert before == after == {"meta": "(guessed) F16", "props": "(guessed) F16", "tags": "F16", "show": "F16"}


def _split_copy(src, dst, tensors_per_file: int):
    """``src`` written again as llama.cpp's split files (``dst``'s stem ``-0000i-of-0000n.gguf``, the key/values in
    the first): the first of them."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(src)
    writer = GGUFWriter(dst, reader.fields["general.architecture"].contents(), split_max_tensors=tensors_per_file)
    for key, field in reader.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            vtype = field.types[0]
            writer.add_key_value(key, field.contents(), vtype, field.types[1] if vtype == GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    first = sorted(dst.parent.glob(f"{dst.stem}-00001-of-*.gguf"))
    assert len(first) == 1 and not dst.exists(), list(dst.parent.iterdir())
    return first[0]


def test_a_split_models_type_is_guessed_from_all_its_files(tmp_path):
    """A load counts the tensors of every file of a split model: so does the header read (the first file's four
    tensors alone, all F32, would say all F32)."""
    from jan.engine.model import Model

    require_model("vocab", "ggml-vocab-phi-3.gguf")
    matrices = ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
                "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight")
    whole = write_llama_from_vocab(tmp_path / "whole.gguf", vocab_path("phi-3"), **SHAPE, extra_kv=NO_FILE_TYPE,
                                   tensor_dtypes={name: "f16" for name in matrices})
    first = _split_copy(whole, tmp_path / "split.gguf", 4)
    before = read_info(first)
    with Model(str(first)) as model:
        after = model.info
    assert after.ftype == "(guessed) F16"
    assert (before.ftype, before.file_type) == (after.ftype, after.file_type)
