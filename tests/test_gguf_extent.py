"""jan.gguf_extent: where the tensor data a GGUF's header describes ends, so that a file cut short (a partial
download) is told with the bytes missing before any weights load. A whole file must never read as cut short."""

from __future__ import annotations

import os

import pytest
from conftest import require_model

from jan.gguf_extent import cut_short, missing_bytes, tensor_data_end
from jan.testing.gguf_models import models_dir


def _shared_ggufs() -> list:
    folder = models_dir()
    return sorted([*folder.glob("*.gguf"), *folder.glob("vocab/*.gguf")]) if folder.is_dir() else []


@pytest.mark.parametrize("path", _shared_ggufs(), ids=lambda p: p.name)
def test_every_whole_shared_gguf_reads_whole(path):
    # (vocabulary-only files hold no tensor data: their header is all there is, with no padding after it)
    assert tensor_data_end(path) == os.path.getsize(path)
    assert missing_bytes(path) == 0 and cut_short(path, "model file") is None


def test_the_test_projector_and_adapter_read_whole(vision_pair, stories_path, tmp_path):
    from jan.testing.gguf_models import write_lora_adapter

    for path in (*vision_pair, write_lora_adapter(tmp_path / "a.gguf", stories_path)):
        assert tensor_data_end(path) == os.path.getsize(path), path


def test_a_file_cut_in_its_tensor_data_says_the_bytes_missing(tmp_path):
    whole = require_model("stories260K.gguf").read_bytes()
    for kept in (len(whole) - 1, len(whole) // 2, 40_000):
        cut = tmp_path / f"cut-{kept}.gguf"
        cut.write_bytes(whole[:kept])
        assert missing_bytes(cut) == len(whole) - kept
        assert cut_short(cut, "draft model file") == (
            f"draft model file '{cut}' is cut short: {len(whole) - kept} of its {len(whole)} bytes are missing "
            "(a partial download? fetch it again)")


def test_a_header_cut_short_or_no_gguf_is_left_to_the_loader(tmp_path):
    # the header itself cut: it cannot say how long the file must be (llama.cpp's own error tells it)
    whole = require_model("stories260K.gguf").read_bytes()
    for name, data in (("header.gguf", whole[:1000]), ("empty.gguf", b""), ("text.gguf", b"hello world")):
        path = tmp_path / name
        path.write_bytes(data)
        assert missing_bytes(path) == 0 and tensor_data_end(path) is None


def test_the_block_sizes_agree_with_the_gguf_package():
    """Each tensor type's (elements, bytes) per block as the gguf package (llama.cpp's own Python) has them. Q8_1
    is never stored in a file; the package keeps its older 40-byte block, ggml's is 36 (two halves, not floats)."""
    constants = pytest.importorskip("gguf.constants", reason="the gguf package is not installed (test extra)")
    from jan.gguf_extent import _BLOCKS

    theirs = {q.value: size for q, size in constants.GGML_QUANT_SIZES.items()}
    differ = {t: (ours, theirs[t]) for t, ours in _BLOCKS.items() if t in theirs and theirs[t] != ours}
    assert differ == {9: ((32, 36), (32, 40))}
    assert set(_BLOCKS) <= set(theirs)
