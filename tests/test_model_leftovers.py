"""What a pull or an import stopped by a kill leaves in ``models/<id>/`` without a model.json: a partial download
(``<file>.part``), weights no model.json names, an empty folder. Every list of models names the folders that hold
files (``leftovers``), every front end deletes them by id as it deletes a model (so does a model whose model.json was
damaged and set aside), and the start of a data folder removes the empty ones a dead writer left."""

from __future__ import annotations

import json
import os
import time

from api_helpers import Client
from test_cli_helpers import cli_env, fails, jan, ok

from jan.store import DataFolder
from jan.store.models import EMPTY_FOLDER_STALE_S


def leave(data, stories_path) -> None:
    """A folder of each kind under ``<data>/models``: a pull killed mid-file, weights a killed pull never registered,
    a killed import's copy (a dead writer's temporary file), an import copying now (this process's), a model."""
    models = data / "models"
    (models / "killedpull").mkdir(parents=True)
    (models / "killedpull" / "stories260K.gguf.part").write_bytes(stories_path.read_bytes()[:3000])
    (models / "unregistered").mkdir()
    (models / "unregistered" / "w.gguf").write_bytes(stories_path.read_bytes()[:1000])
    (models / "killedimport").mkdir()
    (models / "killedimport" / ".stories260K.gguf.p999999999.abc.tmp").write_bytes(b"x" * 10)
    (models / "copying").mkdir()
    (models / "copying" / f".stories260K.gguf.p{os.getpid()}.abc.tmp").write_bytes(b"x" * 10)


def test_the_store_lists_folders_without_a_model_json_and_start_removes_empty_ones(tmp_path, stories_path):
    data = tmp_path / "data"
    DataFolder(data).models.import_gguf(stories_path, model_id="real", mode="reference")
    leave(data, stories_path)
    (data / "models" / "fresh-empty").mkdir()  # an import in another process may have made it just now
    old = data / "models" / "old-empty"
    old.mkdir()
    os.utime(old, (time.time() - EMPTY_FOLDER_STALE_S - 60,) * 2)

    folder = DataFolder(data)  # the start: the dead writer's file goes, and the folder it emptied
    assert not (data / "models" / "killedimport").exists()
    assert not old.exists() and (data / "models" / "fresh-empty").is_dir()
    assert (data / "models" / "copying").is_dir()  # a live writer's file is kept
    found = folder.models.leftovers()
    assert found == [
        {"id": "killedpull", "files": [{"name": "stories260K.gguf.part", "bytes": 3000}], "bytes": 3000,
         "partial": True},
        {"id": "unregistered", "files": [{"name": "w.gguf", "bytes": 1000}], "bytes": 1000, "partial": False}]
    assert [m["id"] for m in folder.models.list()] == ["real"]
    assert folder.models.is_leftover("killedpull") and not folder.models.is_leftover("real")


async def test_every_front_end_lists_and_deletes_what_a_killed_pull_left(tmp_path, server, stories_path):
    data = tmp_path / "data"
    leave(data, stories_path)
    for name in ("oldjson", "damaged"):
        (data / "models" / name).mkdir()
        (data / "models" / name / "w.gguf").write_bytes(b"GGUF")
    (data / "models" / "damaged" / "model.json").write_text("{not json")
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "real"}, 201)
        listed = await api.ok("GET", "/v1/models")
        assert [m["id"] for m in listed["data"]] == ["real"]
        assert [item["id"] for item in listed["leftovers"]] == ["killedpull", "oldjson", "unregistered"]
        assert [p["path"] for p in listed["problems"]] == ["models/damaged/model.json"]  # (reported there, once)

        assert await api.ok("DELETE", "/v1/models/killedpull") == {"id": "killedpull", "object": "model",
                                                                    "deleted": True}
        status, _ = await api.call("DELETE", "/api/delete", {"model": "unregistered:latest"})  # Ollama's
        assert status == 200
        assert await api.ok("DELETE", "/v1/models/damaged") == {"id": "damaged", "object": "model", "deleted": True}
        for path, body in (("/v1/models/killedpull", None), ("/api/delete", {"model": "nothing"})):
            status, err = await api.call("DELETE", path, body)
            assert status == 404, (path, err)
        status, err = await api.call("DELETE", "/v1/models/..")  # no id: nothing outside models/ is touched
        assert status in (400, 404), err
        assert not any((data / "models" / n).exists() for n in ("killedpull", "unregistered", "damaged"))
        assert [item["id"] for item in (await api.ok("GET", "/v1/models"))["leftovers"]] == ["oldjson"]
        assert (data / "models" / "real" / "model.json").is_file()

        # the CLI over this server: the list warns of it, rm removes it
        env = cli_env(tmp_path / "cli", local=False, JAN_API_URL=server.base_url)
        listing = ok(jan("models", "list", env=env))
        assert "models/oldjson" in listing.stderr and "jan models rm oldjson" in listing.stderr
        assert ok(jan("models", "rm", "oldjson", env=env)).stdout.strip() == "removed oldjson"
        fails(jan("models", "rm", "oldjson", env=env), "oldjson", "not found")
        assert (await api.ok("GET", "/v1/models"))["leftovers"] == []


def test_the_cli_without_a_server_warns_of_a_partial_download(env, data, stories_path):
    leave(data, stories_path)
    listing = ok(jan("models", "list", env=env))
    assert "models/killedpull is an unfinished download" in listing.stderr, listing.stderr
    assert "pull the same URL again to resume it" in listing.stderr
    assert json.loads(ok(jan("models", "list", "--json", env=env)).stdout) == []  # stdout: models only
    ok(jan("models", "rm", "killedpull", env=env))
    assert not (data / "models" / "killedpull").exists()


def test_a_folder_a_download_fills_now_is_no_leftover(env, data, stories_path):
    """A pull running in another process (its lock held) is not listed as left behind, nor removed by ``rm``."""
    import filelock

    from jan.downloads import lock_path

    leave(data, stories_path)
    lock = filelock.FileLock(str(lock_path(data / "models" / "killedpull" / "stories260K.gguf")), timeout=0)
    with lock:
        folder = DataFolder(data)
        assert [item["id"] for item in folder.models.leftovers()] == ["unregistered"]
        assert folder.models.downloading("killedpull") and not folder.models.is_leftover("killedpull")
        fails(jan("models", "rm", "killedpull", env=env), "being downloaded")
        assert "killedpull" not in ok(jan("models", "list", env=env)).stderr
        assert (data / "models" / "killedpull" / "stories260K.gguf.part").is_file()
    assert [item["id"] for item in DataFolder(data).models.leftovers()] == ["killedpull", "unregistered"]


async def test_a_deleted_model_is_no_longer_reported_as_damaged(tmp_path, server):
    """Deleting a model whose model.json was set aside removes its report from the list too (it named a file that
    is gone); the store does the same for every resource it deletes."""
    data = tmp_path / "data"
    for name in ("dmg", "other"):
        (data / "models" / name).mkdir(parents=True)
        (data / "models" / name / "model.json").write_text("{not json")
    async with Client(server.base_url) as api:
        listed = await api.ok("GET", "/v1/models")
        assert sorted(p["path"] for p in listed["problems"]) == ["models/dmg/model.json", "models/other/model.json"]
        await api.ok("DELETE", "/v1/models/dmg")
        assert [p["path"] for p in (await api.ok("GET", "/v1/models"))["problems"]] == ["models/other/model.json"]


def test_every_store_forgets_the_report_of_a_resource_it_deletes(tmp_path):
    folder = DataFolder(tmp_path / "data")
    thread = folder.threads.create("t")
    other = folder.threads.create("u")
    for made in (thread, other):
        (tmp_path / "data" / "threads" / made["id"] / "thread.json").write_text("{not json")
    folder.threads.list()
    assert len([p for p in folder.problems if p.path.startswith("threads/")]) == 2
    folder.threads.delete(thread["id"])
    assert [p.path for p in folder.problems if p.path.startswith("threads/")] == [
        f"threads/{other['id']}/thread.json"]


def test_a_killed_downloads_lock_goes_at_start_and_its_empty_folder_with_it(tmp_path):
    from jan.downloads import lock_path

    models = tmp_path / "data" / "models"
    (models / "killed").mkdir(parents=True)
    lock_path(models / "killed" / "w.gguf").write_text("")  # left by a download killed with its process
    old = time.time() - EMPTY_FOLDER_STALE_S - 60
    os.utime(models / "killed", (old, old))
    DataFolder(tmp_path / "data")
    assert not (models / "killed").exists()


def test_the_cli_without_a_server_warns_of_a_model_whose_weights_are_gone(env, data, tmp_path, stories_path):
    """A model whose file was deleted (or a link to a file that is gone) was listed as any other: only a chat with it
    said so. The listing says which, and what to do, on stderr."""
    import shutil

    copy = tmp_path / "gone.gguf"
    shutil.copy(stories_path, copy)
    ok(jan("models", "import", str(copy), "--id", "gone", "--mode", "reference", env=env))
    ok(jan("models", "import", str(stories_path), "--id", "here", "--mode", "reference", env=env))
    copy.unlink()
    listing = ok(jan("models", "list", env=env))
    assert "model 'gone' has no weights file on disk" in listing.stderr and "jan models rm gone" in listing.stderr
    assert "'here'" not in listing.stderr, listing.stderr
    assert [m["id"] for m in json.loads(ok(jan("models", "list", "--json", env=env)).stdout)] == ["gone", "here"]


def test_the_cli_from_a_server_warns_of_a_model_whose_weights_are_gone_as_without_one(data, tmp_path, stories_path):
    """`jan models list` against a server said nothing of a model whose weights file is gone (only the local listing
    did): the server tells it per model (``weights_missing``), and the CLI says it in the same words."""
    import shutil

    from api_helpers import running

    copy = tmp_path / "gone.gguf"
    shutil.copy(stories_path, copy)
    local = cli_env(data)
    ok(jan("models", "import", str(copy), "--id", "gone", "--mode", "reference", env=local))
    ok(jan("models", "import", str(stories_path), "--id", "here", "--mode", "reference", env=local))
    copy.unlink()
    with running(data) as srv:
        listing = ok(jan("models", "list", "--url", srv.base_url, env=cli_env(data, local=False)))
        listed = json.loads(ok(jan("models", "list", "--json", "--url", srv.base_url,
                                   env=cli_env(data, local=False))).stdout)
    assert "model 'gone' has no weights file on disk" in listing.stderr and "jan models rm gone" in listing.stderr
    assert "'here'" not in listing.stderr, listing.stderr
    assert [(m["id"], m.get("weights_missing")) for m in listed] == [("gone", True), ("here", None)]
    # (beside llama-server's meta, which ModelFacts carries too: null for the model with no GGUF to read it from)
    assert [m["meta"] is None for m in listed] == [True, False], listed
    assert listed[1]["meta"]["n_vocab"] > 0, listed
