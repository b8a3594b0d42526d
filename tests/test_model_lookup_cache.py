"""The request path's model lookup (``model_with_weights``) is kept between requests only while every
file its answer came from is unchanged: any edit, removal or addition is seen by the next request."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from jan.errors import ModelNotFoundError
from jan.extensions.models.extension import ModelManagerExtension
from jan.store import DataFolder
from jan.store.models import ModelStore


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "downloads" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + os.urandom(1024))
    return path


@pytest.fixture
async def models(tmp_path, monkeypatch):
    """(extension, the same data folder opened directly, a list counting the reads from disk)."""
    reads: list[str] = []
    real = ModelStore.with_weights_stamped

    def counted(self, model_id):
        reads.append(model_id)
        return real(self, model_id)

    monkeypatch.setattr(ModelStore, "with_weights_stamped", counted)
    ext = ModelManagerExtension()
    await ext.on_load(SimpleNamespace(data_folder=tmp_path / "data"))
    yield ext, DataFolder(tmp_path / "data"), reads
    await ext.on_unload()


def _touch_later(path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_an_unchanged_model_is_read_once_and_its_answer_is_the_callers_own(models, gguf):
    ext, store, reads = models
    store.models.import_gguf(gguf, model_id="m", mode="reference", parameters={"temperature": 0.5})
    first = await ext.model_with_weights("m")
    first["parameters"]["temperature"] = 2.0  # a caller changing its copy changes nothing kept
    second = await ext.model_with_weights("m")
    assert second["parameters"]["temperature"] == 0.5 and second["file_path"] == str(gguf)
    assert reads == ["m"]


async def test_edits_through_the_store_and_by_hand_are_seen_by_the_next_lookup(models, gguf):
    ext, store, reads = models
    store.models.import_gguf(gguf, model_id="m", mode="reference")
    await ext.model_with_weights("m")
    store.models.update("m", {"parameters": {"temperature": 0.1}})
    assert (await ext.model_with_weights("m"))["parameters"]["temperature"] == 0.1
    path = store.models.folder("m") / "model.json"
    path.write_text(path.read_text().replace("0.1", "0.9"))  # in place: same inode, same size
    _touch_later(path)
    assert (await ext.model_with_weights("m"))["parameters"]["temperature"] == 0.9
    assert len(reads) == 3


async def test_weights_removed_or_added_are_seen(models, gguf, tmp_path):
    ext, store, _reads = models
    store.models.import_gguf(gguf, model_id="m", mode="copy")
    copied = store.models.model_file("m")
    assert (await ext.model_with_weights("m"))["file_path"] == str(copied)
    copied.unlink()  # the model.json's source URL, the file it was copied from, stands in
    assert (await ext.model_with_weights("m"))["file_path"] == str(gguf)
    gguf.unlink()
    assert "file_path" not in await ext.model_with_weights("m")
    # a named projector that is missing is looked for again on every lookup, so it is found once it is there
    store.models.update("m", {"settings": {"mmproj": "mmproj.gguf"}})
    copied.write_bytes(b"GGUF")
    assert "mmproj_path" not in await ext.model_with_weights("m")
    (store.models.folder("m") / "mmproj.gguf").write_bytes(b"GGUF")
    assert (await ext.model_with_weights("m"))["mmproj_path"] == str(store.models.folder("m") / "mmproj.gguf")


async def test_a_draft_model_named_by_id_is_followed(models, gguf, tmp_path):
    ext, store, _reads = models
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + os.urandom(64))
    store.models.import_gguf(other, model_id="drafter", mode="reference")
    store.models.import_gguf(gguf, model_id="main", mode="reference", settings={"draft_model": "drafter"})
    assert (await ext.model_with_weights("main"))["draft_model_path"] == str(other)
    replacement = tmp_path / "replacement.gguf"
    replacement.write_bytes(b"GGUF")
    store.models.update("drafter", {"settings": {"llama_model_path": str(replacement)}})
    assert (await ext.model_with_weights("main"))["draft_model_path"] == str(replacement)


async def test_a_deleted_model_is_not_found(models, gguf):
    ext, store, _reads = models
    store.models.import_gguf(gguf, model_id="m", mode="reference")
    await ext.model_with_weights("m")
    store.models.delete("m")
    with pytest.raises(ModelNotFoundError):
        await ext.model_with_weights("m")
    with pytest.raises(ModelNotFoundError):
        await ext.model_with_weights("never-was")
