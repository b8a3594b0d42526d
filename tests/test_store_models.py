"""model.json CRUD and importing a local GGUF by copy, hard link or reference."""

from __future__ import annotations

import errno
import json
import os

import pytest

from jan.errors import ModelNotFoundError
from jan.store import AlreadyExistsError, DataFolder, InvalidArgumentError, StoredModelNotFoundError


@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "downloads" / "Tiny Llama.Q4_K_M.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + os.urandom(4096))
    return path


def test_model_json_crud(store):
    model = store.models.create({
        "id": "llama3.2-1b-instruct",
        "sources": [{"filename": "model.gguf", "url": "https://example.com/model.gguf"}],
        "settings": {"ctx_len": 4096, "ngl": 99},
        "parameters": {"temperature": 0.7, "stop": ["<|eot_id|>"]},
        "metadata": {"author": "Meta", "tags": ["1B"]},
        "x-extra": "kept",
    })
    assert model["object"] == "model" and model["engine"] == "llama.cpp" and model["format"] == "gguf"
    assert model["name"] == "llama3.2-1b-instruct" and model["x-extra"] == "kept"
    assert isinstance(model["created"], int)
    assert store.models.get(model["id"]) == model
    with pytest.raises(AlreadyExistsError):
        store.models.create({"id": model["id"]})
    updated = store.models.update(model["id"], {"settings": {"ctx_len": 8192, "ngl": None},
                                                "description": "small"})
    assert updated["settings"] == {"ctx_len": 8192} and updated["description"] == "small"
    assert updated["parameters"]["temperature"] == 0.7
    with pytest.raises(InvalidArgumentError):
        store.models.update(model["id"], {"id": "other"})
    assert [m["id"] for m in store.models.list()] == [model["id"]]
    assert store.models.delete(model["id"])["deleted"] is True
    assert store.models.list() == []
    with pytest.raises(ModelNotFoundError):
        store.models.get(model["id"])


def test_import_by_copy(store, gguf):
    model = store.models.import_gguf(gguf, metadata={"author": "me"}, settings={"ctx_len": 2048},
                                     parameters={"temperature": 0.5})
    assert model["id"] == "Tiny-Llama.Q4_K_M"
    folder = store.models_dir / model["id"]
    stored = folder / "Tiny-Llama.Q4_K_M.gguf"
    assert stored.read_bytes() == gguf.read_bytes()
    assert os.stat(stored).st_ino != os.stat(gguf).st_ino
    assert model["settings"] == {"ctx_len": 2048, "llama_model_path": stored.name}
    assert model["sources"] == [{"filename": stored.name, "url": str(gguf)}]
    assert model["metadata"] == {"size": gguf.stat().st_size, "author": "me"}
    assert store.models.model_file(model["id"]) == stored
    assert json.loads((folder / "model.json").read_text())["id"] == model["id"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    store.models.delete(model["id"])
    assert not folder.exists() and gguf.exists()


def test_import_by_hard_link(store, gguf):
    model = store.models.import_gguf(gguf, model_id="linked", mode="link")
    stored = store.models.model_file("linked")
    assert stored.parent == store.models_dir / "linked"
    assert os.stat(stored).st_ino == os.stat(gguf).st_ino
    assert os.stat(gguf).st_nlink == 2
    assert model["settings"]["llama_model_path"] == stored.name
    store.models.delete("linked")
    assert gguf.exists() and os.stat(gguf).st_nlink == 1


@pytest.mark.parametrize("mode", ["link", "copy"])
def test_an_import_through_a_relative_symlink_holds_the_file_itself(store, gguf, mode):
    """A hard link of a symlink (link() does not follow it) held a relative link that named nothing from the model's
    folder: the model worked through the source's path only until the user removed their symlink."""
    alias = gguf.with_name("alias.gguf")
    alias.symlink_to(gguf.name)  # relative, as `ln -s model.gguf alias.gguf` makes it
    store.models.import_gguf(alias, model_id="aliased", mode=mode)
    alias.unlink()
    stored = store.models.model_file("aliased")
    assert stored is not None and stored.parent == store.models_dir / "aliased" and not stored.is_symlink()
    assert stored.read_bytes() == gguf.read_bytes()


def test_hard_link_falls_back_to_copy_across_devices(store, gguf, monkeypatch):
    def cross_device(src, dst, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    store.models.import_gguf(gguf, model_id="copied", mode="link")
    stored = store.models.model_file("copied")
    assert stored.read_bytes() == gguf.read_bytes()
    assert os.stat(stored).st_ino != os.stat(gguf).st_ino


def test_import_by_reference(store, gguf):
    model = store.models.import_gguf(gguf, model_id="ref", mode="reference", name="Tiny")
    folder = store.models_dir / "ref"
    assert [p.name for p in folder.iterdir()] == ["model.json"]
    assert model["name"] == "Tiny"
    assert model["settings"]["llama_model_path"] == str(gguf)
    assert model["sources"] == [{"filename": gguf.name, "url": str(gguf)}]
    assert store.models.model_file("ref") == gguf
    store.models.delete("ref")
    assert not folder.exists() and gguf.read_bytes()[:4] == b"GGUF"


def test_import_rejects_bad_input(store, gguf, tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"hello world")
    with pytest.raises(InvalidArgumentError, match="not a GGUF"):
        store.models.import_gguf(not_gguf)
    with pytest.raises(InvalidArgumentError):
        store.models.import_gguf(tmp_path / "missing.gguf")
    with pytest.raises(InvalidArgumentError):
        store.models.import_gguf(gguf, mode="teleport")
    store.models.import_gguf(gguf, model_id="taken", mode="reference")
    with pytest.raises(AlreadyExistsError):
        store.models.import_gguf(gguf, model_id="taken")
    # A failed import leaves no half-made model behind.
    assert sorted(p.name for p in store.models_dir.iterdir()) == ["taken"]


def test_failed_copy_cleans_up(store, gguf, monkeypatch):
    import shutil

    def broken_copy(src, dst, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"GG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(OSError):
        store.models.import_gguf(gguf, model_id="full-disk")
    assert not (store.models_dir / "full-disk").exists()
    with pytest.raises(StoredModelNotFoundError):
        store.models.get("full-disk")


def test_model_file_ignores_paths_leaving_the_folder(store, tmp_path):
    outside = tmp_path / "secret.gguf"
    outside.write_bytes(b"GGUF")
    store.models.create({"id": "sneaky", "settings": {"llama_model_path": "../../secret.gguf"},
                         "sources": [{"filename": "../../secret.gguf"}]})
    assert store.models.model_file("sneaky") is None


def test_import_by_symlink(store, gguf):
    model = store.models.import_gguf(gguf, model_id="sym", mode="symlink")
    link = store.models_dir / "sym" / model["settings"]["llama_model_path"]
    assert link.is_symlink() and os.readlink(link) == str(gguf)
    assert store.models.model_file("sym") == link and link.read_bytes() == gguf.read_bytes()
    store.models.delete("sym")
    assert not (store.models_dir / "sym").exists() and gguf.exists()


def test_import_by_move(store, gguf):
    content = gguf.read_bytes()
    store.models.import_gguf(gguf, model_id="moved", mode="move")
    assert not gguf.exists()
    assert store.models.model_file("moved").read_bytes() == content


def test_move_conflict_leaves_the_file_where_it_was(store, gguf):
    store.models.create({"id": "taken"})
    with pytest.raises(AlreadyExistsError):
        store.models.import_gguf(gguf, model_id="taken", mode="move")
    assert gguf.exists()


def test_with_weights_resolves_every_file_from_one_read(store, gguf, tmp_path):
    """The request path's lookup: the model.json with its weights, projector and draft model, as the
    single-file lookups resolve them; an unknown id is the same not-found error."""
    store.models.import_gguf(gguf, model_id="drafter")
    projector = tmp_path / "mmproj-tiny.gguf"
    projector.write_bytes(b"GGUF")
    store.models.import_gguf(gguf, model_id="main", settings={"mmproj": str(projector), "draft_model": "drafter"})
    doc = store.models.with_weights("main")
    assert doc["id"] == "main"
    assert doc["file_path"] == str(store.models.model_file("main"))
    assert doc["mmproj_path"] == str(projector) == str(store.models.mmproj_file("main"))
    assert doc["draft_model_path"] == str(store.models.model_file("drafter"))
    plain = store.models.with_weights("drafter")
    assert "mmproj_path" not in plain and "draft_model_path" not in plain
    with pytest.raises(StoredModelNotFoundError):
        store.models.with_weights("nope")


def test_a_models_folder_moved_behind_a_symlink_is_followed(tmp_path, gguf):
    """The collection's resolved path is remembered per request only while the folder entry is the same:
    pointing ``models`` at another disk (a new symlink) is seen on the next lookup."""
    data = tmp_path / "data"
    store = DataFolder(data)
    store.models.import_gguf(gguf, model_id="m")
    first = store.models.model_file("m")
    bigger = tmp_path / "bigger-disk"
    os.rename(data / "models", bigger)
    os.symlink(bigger, data / "models")
    moved = store.models.model_file("m")
    assert moved is not None and moved.parent.parent == bigger.resolve() and moved != first


@pytest.mark.parametrize("mode, placer, when", [
    ("link", "link_to_temp", "after"), ("copy", "copy_to_temp", "after"),
    ("link", "link_to_temp", "before"), ("copy", "copy_to_temp", "before"),
])
def test_an_import_whose_folder_a_delete_removes_meanwhile_starts_again(store, gguf, monkeypatch, mode, placer, when):
    """A delete of the id while an import places the weights (unlocked) removes the model folder and the temp file in
    it, before or after the temp file is made: the delete came first, the import makes the model anew. (It failed in
    the rename into the folder that was gone: a FileNotFoundError, /api/create's and /api/copy's 500 when a client
    deleted the model meanwhile.)"""
    import jan.store.models as store_models

    store.models.import_gguf(gguf, model_id="raced", mode=mode)
    real = getattr(store_models, placer)
    deleted = []

    def deleted_meanwhile(src, folder, name, *progress):
        if not deleted and when == "before":
            deleted.append(store.models.delete("raced"))
        tmp = real(src, folder, name, *progress)
        if not deleted:
            deleted.append(store.models.delete("raced"))
        return tmp

    monkeypatch.setattr(store_models, placer, deleted_meanwhile)
    doc = store.models.import_gguf(gguf, model_id="raced", mode=mode, overwrite=True, name="again")
    assert deleted and store.models.get("raced") == doc and doc["name"] == "again"
    assert store.models.model_file("raced").read_bytes() == gguf.read_bytes()
    # nothing half-written is left: the model.json and its weights, no temp file
    weights = store.models.model_file("raced")
    assert sorted(p.name for p in (store.models_dir / "raced").iterdir()) == sorted(["model.json", weights.name])


@pytest.mark.parametrize("name", ["z" * 300, "/" + "z" * 5000, "a\x00b.gguf", "/tmp/a\x00b.gguf"])
def test_a_name_no_file_can_have_is_no_file_of_the_model(store, name):
    """A model.json naming its weights or projector with a name no file system takes (too long, a NUL) has no such
    file, as one naming a missing file: before, resolving it raised (ENAMETOOLONG, ValueError), and every read of
    the model (GET /v1/models/{id}, /api/show, a chat) was a 500, /api/tags too, until the model was deleted."""
    store.models.create({"id": "odd", "settings": {"llama_model_path": name, "mmproj": name},
                         "sources": [{"filename": name, "url": name}]})
    assert store.models.model_file("odd") is None and store.models.mmproj_file("odd") is None
    doc = store.models.with_weights("odd")
    assert doc["id"] == "odd" and "file_path" not in doc and "mmproj_path" not in doc


@pytest.mark.parametrize("mode, placer", [("link", "link_to_temp"), ("copy", "copy_to_temp")])
def test_a_source_removed_while_it_is_imported_is_an_invalid_argument(store, gguf, monkeypatch, mode, placer):
    """The file to import goes after the import checked it (an unused Ollama blob pruned by another client's delete
    while /api/create makes a model of it): the caller's file is missing, an InvalidArgumentError (a 400) as for one
    missing from the start, never a FileNotFoundError (a 500); nothing is left in the data folder."""
    import jan.store.models as store_models

    kept = store.models.import_gguf(gguf, model_id="replaced", mode="copy")  # (its folder is there already)
    source = gguf.with_name("new.gguf")
    source.write_bytes(gguf.read_bytes())
    real = getattr(store_models, placer)

    def removed_first(src, folder, name, *progress):
        source.unlink()
        return real(src, folder, name, *progress)

    monkeypatch.setattr(store_models, placer, removed_first)
    with pytest.raises(InvalidArgumentError, match="is not a file"):
        store.models.import_gguf(source, model_id="replaced", mode=mode, overwrite=True)
    assert store.models.get("replaced") == kept  # the model it would have replaced is as it was
    assert sorted(p.name for p in (store.models_dir / "replaced").iterdir()) == sorted(
        ["model.json", store.models.model_file("replaced").name])
