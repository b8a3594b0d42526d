"""Every cache of what a model file holds is kept under the file's version (:func:`jan.file_stamps.file_version`:
real path, device, inode, mtime, size): a model file replaced by another of the same size within one tick of the file
system's clock (its mtime and size those of the file read before; set here, as a fast machine does) is read again.
Kept under path, mtime and size alone, each cache answered what the replaced file held."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jan.engine.header import read_info
from jan.extensions.llamacpp.extension import _file_pair
from jan.file_stamps import file_version, stamp
from jan.server.dialects.ollama_models import _arrays, model_digest, tensors
from jan.services.abilities import model_abilities
from jan.testing.gguf_models import write_llama_from_vocab

TEMPLATE = "{%% for m in messages %%}<%s>{{ m['content'] }}{%% endfor %%}"
TENSOR = b"output_norm.weight"


def _model(path: Path, vocab: str, mark: str) -> Path:
    """A tiny model whose name, chat template and one short array hold ``mark`` (one letter): two of them differ in
    those bytes alone, the same size."""
    return write_llama_from_vocab(path, vocab, n_embd=16, n_layer=1, n_head=2, n_ff=32, seed=0,
                                  name=f"model-{mark}", chat_template=TEMPLATE % mark,
                                  extra_kv={"test.marks": [mark * 3, "zzz"]})


def _replace_in_the_same_tick(path: Path, new: Path) -> None:
    """``new`` renamed over ``path`` (as a download or a copy saves: a new inode), its mtime the old file's."""
    before = path.stat()
    assert new.stat().st_size == before.st_size
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(new, path)
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert after.st_ino != before.st_ino  # (the new file was made while the old one lived: never its inode)


@pytest.fixture
def pair(tmp_path, stories_path):
    """``(model path, the same-size file to replace it)``: model-a in place, model-b beside it."""
    path = _model(tmp_path / "model.gguf", str(stories_path), "a")
    other = _model(tmp_path / "other.gguf", str(stories_path), "b")
    return path, other


def test_the_header_and_the_abilities_are_read_again(pair):
    path, other = pair
    assert read_info(path).metadata["general.name"] == "model-a"
    assert model_abilities({"file_path": str(path)}).template.source == TEMPLATE % "a"
    _replace_in_the_same_tick(path, other)
    assert read_info(path).metadata["general.name"] == "model-b"
    assert model_abilities({"file_path": str(path)}).template.source == TEMPLATE % "b"


def test_ollama_show_and_digest_are_read_again(pair):
    path, other = pair
    digest = model_digest({"id": "m"}, str(path))
    assert _arrays(str(path), verbose=False)["test.marks"] == ["aaa", "zzz"]
    _replace_in_the_same_tick(path, other)
    assert _arrays(str(path), verbose=False)["test.marks"] == ["bbb", "zzz"]
    assert model_digest({"id": "m"}, str(path)) != digest


def test_ollama_tensors_are_read_again(pair, tmp_path):
    path, _ = pair
    renamed = tmp_path / "renamed.gguf"
    data = path.read_bytes()
    assert data.count(TENSOR) == 1
    renamed.write_bytes(data.replace(TENSOR, TENSOR[:-1] + b"T"))
    assert "output_norm.weight" in {t["name"] for t in tensors(str(path))}
    _replace_in_the_same_tick(path, renamed)
    assert "output_norm.weighT" in {t["name"] for t in tensors(str(path))}


def test_a_draft_refusal_is_kept_per_version_of_both_files(pair, tmp_path):
    # the llama.cpp extension keeps why a draft cannot draft for a model under the pair's versions
    path, other = pair
    draft = tmp_path / "draft.gguf"
    shutil.copyfile(path, draft)
    before = _file_pair(str(path), str(draft))
    assert before == _file_pair(str(path), str(draft)) and before is not None
    _replace_in_the_same_tick(draft, other)
    assert _file_pair(str(path), str(draft)) != before
    assert _file_pair(str(path), str(tmp_path / "gone.gguf")) is None


def test_a_version_is_the_real_path_and_the_stamp(tmp_path, stories_path):
    link = tmp_path / "link.gguf"
    link.symlink_to(stories_path)
    assert file_version(link) == (os.path.realpath(stories_path), stamp(stories_path))
    with pytest.raises(FileNotFoundError):
        file_version(tmp_path / "gone.gguf")
