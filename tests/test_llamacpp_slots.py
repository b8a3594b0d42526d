"""llama-server's slot actions (POST /slots/{id}?action=save|restore|erase with --slot-save-path): a slot's tokens and
KV to a file and back, on the engine's own slots (Scheduler::slot_action)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from cut_off_helpers import LONG, LONG_N_CTX
from server_helpers import ok, slot_action, slot_server_fixtures, start_server

PROMPT = "Once upon a time there was a little girl"
GREEDY = {"model": "stories260K", "temperature": 0}


folder, server = slot_server_fixtures(n_parallel=1)  # (one slot: slot 1 is none of its)


def refused(response: httpx.Response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert err["code"] == status and says in err["message"], err
    # llama-server's wording, not the library's rule (jan.Model.slot_action's "id_slot: Invalid slot ID ...")
    assert not err["message"].startswith(("id_slot: ", "action: ", "path: ")), err


def test_save_erase_restore_and_the_next_prompt_reuses_the_restored_tokens(server, folder):
    first = ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 4})
    held = first["tokens_evaluated"] + first["tokens_predicted"] - 1  # (the last token sampled is not evaluated)
    saved = slot_action(server, 0, "save", {"filename": "story.bin"}).json()
    assert saved["id_slot"] == 0 and saved["filename"] == "story.bin" and saved["n_saved"] == held, saved
    assert saved["n_written"] == os.path.getsize(folder / "story.bin") > 0
    assert saved["timings"]["save_ms"] >= 0
    assert [f for f in os.listdir(folder) if f != "story.bin"] == []  # (no temporary file left)

    assert slot_action(server, 0, "erase").json() == {"id_slot": 0, "n_erased": held}
    follow = GREEDY | {"prompt": PROMPT + " named", "n_predict": 4}
    cold = ok(server, "/completion", follow)
    assert cold["timings"]["cache_n"] == 0, cold["timings"]  # erased: the whole prompt evaluated

    assert slot_action(server, 0, "erase").json()["n_erased"] > 0
    restored = slot_action(server, 0, "restore", {"filename": "story.bin"}).json()
    assert restored == {"id_slot": 0, "filename": "story.bin", "n_restored": held, "n_read": saved["n_written"],
                        "timings": {"restore_ms": restored["timings"]["restore_ms"]}}
    warm = ok(server, "/completion", follow)
    assert warm["content"] == cold["content"]
    assert warm["timings"]["cache_n"] >= first["tokens_evaluated"] - 1, warm["timings"]
    assert warm["timings"]["prompt_n"] < cold["timings"]["prompt_n"], (warm["timings"], cold["timings"])


@pytest.mark.parametrize("id_slot,name,body,says", [
    ("x", "erase", None, "Invalid slot ID"),
    ("-1", "erase", None, "Invalid slot ID"),
    ("1", "erase", None, "Invalid slot ID"),  # (the server has one slot)
    ("0", "zap", None, "Invalid action"),
    ("0", "", None, "Invalid action"),
    ("0", "save", {}, "Invalid filename"),
    ("0", "save", {"filename": 5}, "Invalid filename"),
    ("0", "save", {"filename": ""}, "Invalid filename"),
    ("0", "save", {"filename": "../out.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "sub/out.bin"}, "Invalid filename"),
    ("0", "restore", {"filename": ".."}, "Invalid filename"),
    ("0", "restore", {"filename": "/etc/passwd"}, "Invalid filename"),
    ("0", "restore", {"filename": "a\x00b"}, "Invalid filename"),
    ("0", "restore", {"filename": "x" * 256}, "Invalid filename"),
    # (names llama-server refuses, so that a name one server takes the other takes too: jan took these)
    ("0", "save", {"filename": " lead.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "..a.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "a..b.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "\ufeffbom.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "a\u0085b.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "a\uff0eb"}, "Invalid filename"),
    ("0", "save", {"filename": "a\u2215b.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "a\u2216b.bin"}, "Invalid filename"),
    ("0", "save", {"filename": "a\ufffdb.bin"}, "Invalid filename"),
    ("0", "restore", ["story.bin"], "Invalid filename"),
    ("0", "restore", {"filename": "missing.bin"}, "Unable to restore slot: no such slot file"),
    ("0", "restore", {"filename": "junk.bin"}, "Unable to restore slot: not a slot file"),
    # (a folder of that name in the slot folder: the save was a 500, its rename failing)
    ("0", "save", {"filename": "sub.bin"}, "is a folder, not a slot file"),
    ("0", "restore", {"filename": "sub.bin"}, "Unable to restore slot: no such slot file"),
])
def test_bad_slot_actions_are_400_in_llama_servers_shape(server, folder, id_slot, name, body, says):
    (folder / "junk.bin").write_bytes(b"not a slot file" * 8)
    (folder / "sub.bin").mkdir(exist_ok=True)
    refused(slot_action(server, id_slot, name, body), 400, says)
    assert not (folder.parent / "out.bin").exists()


def test_a_link_out_of_the_folder_is_no_slot_file(server, folder, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    (folder / "link.bin").symlink_to(outside)
    refused(slot_action(server, 0, "restore", {"filename": "link.bin"}), 400, "Invalid filename")


def test_a_save_into_a_slot_folder_deleted_since_the_start_makes_it_again(server, folder):
    """The --slot-save-path folder removed while jan serves (a /tmp cleanup): each save was a 500 ("cannot write a
    file in the slot folder"); the folder is made again, as at the start, and the file restores."""
    import shutil

    ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 2})
    shutil.rmtree(folder)
    saved = slot_action(server, 0, "save", {"filename": "again.bin"})
    assert saved.status_code == 200, saved.text
    assert (folder / "again.bin").is_file()
    assert slot_action(server, 0, "restore", {"filename": "again.bin"}).status_code == 200


def test_without_slot_save_path_the_actions_are_refused_as_llama_server_does(tmp_path, stories_path):
    srv = start_server(tmp_path, [stories_path], n_parallel=1)
    try:
        for name in ("save", "restore", "erase"):
            refused(slot_action(srv, 0, name, {"filename": "a.bin"}), 501, "Start it with `--slot-save-path`")
            assert slot_action(srv, 0, name).json()["error"]["type"] == "not_supported_error"
        assert httpx.get(srv.base_url + "/slots", timeout=120).status_code == 200
        # (no slot id, no action: the request's own 400 first)
        refused(slot_action(srv, "x", "erase"), 400, "Invalid slot ID")
        refused(slot_action(srv, 0, "zap"), 400, "Invalid action")
    finally:
        srv.stop()


@pytest.fixture
def model(stories_path):
    import jan

    m = jan.Model(stories_path, n_parallel=1, n_ctx=256, n_threads=1, cache_ram_mib=0)
    yield m
    m.close()


def _erase_asked(m, outcome: list) -> tuple[threading.Thread, threading.Event]:
    """A thread that asks ``m`` to erase slot 0 (``outcome`` gets its answer or its ModelClosedError), and the event
    it sets as it asks."""
    from jan.errors import ModelClosedError

    asked = threading.Event()

    def erase():
        asked.set()
        try:
            outcome.append(m.slot_action("erase", 0))
        except ModelClosedError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=erase, daemon=True)
    thread.start()
    return thread, asked


def _held_busy(chunks, thread: threading.Thread, asked: threading.Event) -> None:
    """The erase was asked while slot 0 generates, and still waits some tokens later: its request runs until the test
    ends it (LONG tokens in a context that fits them), so the action cannot have run on an idle slot. (With 40 tokens
    in a 256 context, the request could end on a fast core before the action was asked: the test then passed with
    the action never deferred.)"""
    assert asked.wait(120)
    for _ in range(16):  # (an action run on the busy slot would have ended by now)
        assert next(chunks).finish_reason is None
    assert thread.is_alive(), "the action ran while its slot was busy"


def test_a_busy_slots_action_waits_for_its_request_to_end(stories_path):
    import jan

    with jan.Model(stories_path, n_parallel=1, n_ctx=LONG_N_CTX, n_threads=1, cache_ram_mib=0) as m:
        request = m.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
        chunks = iter(request)
        next(chunks)  # (generating now: the slot is busy)
        outcome = []
        thread, asked = _erase_asked(m, outcome)
        _held_busy(chunks, thread, asked)
        request.cancel()
        completion = request.result()
        thread.join(timeout=120)
        assert not thread.is_alive()
    assert completion.finish_reason == "cancelled"
    # the whole cache was erased, after the last token: the action ran once the request had ended
    assert outcome[0]["n_tokens"] == completion.usage.prompt_tokens + completion.usage.completion_tokens - 1


def test_slot_actions_of_the_engine(model, tmp_path):
    from jan.errors import BadRequestError, SlotFileError

    model.generate(PROMPT, max_tokens=4, temperature=0)
    saved = model.slot_action("save", 0, tmp_path / "a.bin")
    assert saved["n_tokens"] > 0 and saved["n_bytes"] == (tmp_path / "a.bin").stat().st_size
    # a save over an existing file replaces it whole
    assert model.slot_action("save", 0, tmp_path / "a.bin")["n_bytes"] == saved["n_bytes"]
    with pytest.raises(SlotFileError, match="no such slot file") as caught:
        model.slot_action("restore", 0, tmp_path / "none.bin")
    assert caught.value.param == "path"  # (the call's argument: the server's route says its body's filename)
    # a failed restore leaves the slot empty, as llama-server's
    assert model.slot_action("erase", 0)["n_tokens"] == 0
    for args, param in ((("save", 1, tmp_path / "b.bin"), "id_slot"), (("erase", -1), "id_slot"),
                        (("erase", "0"), "id_slot"), (("fold", 0), "action"), (("restore", 0), "path")):
        with pytest.raises(BadRequestError) as caught:
            model.slot_action(*args)
        assert caught.value.param == param, args
    # a save that cannot be written: an engine error, no file left behind
    # (it says why: llama.cpp's save tells none, and a folder without write permission read 'could not write')
    with pytest.raises(jan_errors().EngineError, match="Unable to save slot: cannot write .*No such file"):
        model.slot_action("save", 0, tmp_path / "no-such-folder" / "c.bin")
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]
    assert model.slot_action("restore", 0, tmp_path / "a.bin")["n_tokens"] == saved["n_tokens"]


def jan_errors():
    import jan.errors

    return jan.errors


def test_a_slot_action_waiting_on_a_busy_slot_ends_when_the_model_closes(stories_path):
    import jan
    from jan.errors import ModelClosedError

    m = jan.Model(stories_path, n_parallel=1, n_ctx=LONG_N_CTX, n_threads=1)
    request = m.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
    chunks = iter(request)
    next(chunks)
    outcome = []
    thread, asked = _erase_asked(m, outcome)
    _held_busy(chunks, thread, asked)  # waiting on the busy slot when the model closes
    m.close()
    thread.join(timeout=120)
    assert not thread.is_alive()  # never left waiting for a slot that will not come free
    assert len(outcome) == 1  # (erased once the close cancelled the request, or told the model was unloaded)
    assert isinstance(outcome[0], (dict, ModelClosedError)), outcome


def test_jan_serve_takes_slot_save_path(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import jan.cli.serve as serve_cli

    seen = {}

    async def fake_run_server(config):
        seen["config"] = config

    monkeypatch.setattr(serve_cli, "run_server", fake_run_server)
    (tmp_path / "slots").mkdir()
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path / "data"), "--slot-save-path",
                                                  str(tmp_path / "slots")])
    assert result.exit_code == 0, result.output
    assert seen["config"].slot_save_path == str(tmp_path / "slots")
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path / "data")])
    assert seen["config"].slot_save_path is None
    for bad in (tmp_path / "none", tmp_path / "file"):  # (llama-server's: an existing folder)
        (tmp_path / "file").write_text("x")
        result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path / "data"), "--slot-save-path",
                                                      str(bad)])
        assert result.exit_code != 0 and "--slot-save-path" in result.output, result.output
    # a folder jan may not write: refused at start, not a 500 at the first save
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK and str(p).endswith("slots")
                        else real_access(p, mode, **kw))
    result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path / "data"), "--slot-save-path",
                                                  str(tmp_path / "slots")])
    assert result.exit_code == 1 and "--slot-save-path" in result.output and "not writable" in result.output, \
        result.output


def _repacked(plain: bytes, version: int = 1, media: int = 0) -> bytes:
    """A slot file jan wrote (llama.cpp's sequence file: magic, version, token count, the tokens, the state) with its
    tokens packed as llama-server 0.3.36 packs them: -1, a format version, the count, the tokens, a media count."""
    import struct

    magic, file_version, n = struct.unpack_from("<III", plain)
    tokens = list(struct.unpack_from(f"<{n}i", plain, 12))
    packed = [-1, version, n, *tokens, media]
    return (struct.pack("<III", magic, file_version, len(packed)) + struct.pack(f"<{len(packed)}i", *packed)
            + plain[12 + 4 * n:])


def test_a_slot_file_of_llama_server_restores_too(model, tmp_path):
    from jan.errors import SlotFileError

    model.generate(PROMPT, max_tokens=4, temperature=0)
    saved = model.slot_action("save", 0, tmp_path / "jan.bin")
    plain = (tmp_path / "jan.bin").read_bytes()
    (tmp_path / "server.bin").write_bytes(_repacked(plain))
    model.slot_action("erase", 0)
    assert model.slot_action("restore", 0, tmp_path / "server.bin")["n_tokens"] == saved["n_tokens"]
    follow = model.generate(PROMPT + " named", max_tokens=4, temperature=0)
    assert follow.usage.cached_tokens >= saved["n_tokens"] - 4
    for name, data, says in (("v2.bin", _repacked(plain, version=2), "not a slot file"),
                             # (a media count without its chunks: a state cut short)
                             ("media.bin", _repacked(plain, media=1), "not a slot file")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SlotFileError, match=says):
            model.slot_action("restore", 0, tmp_path / name)
        assert model.slot_action("erase", 0)["n_tokens"] == 0  # (left empty)


def test_a_slot_file_saved_with_other_slots_says_so(model, stories_path, tmp_path):
    # A file saved while the model ran with another --parallel (a cache per slot) cannot be restored by llama.cpp,
    # and read "not a slot file of this model" of a file of this very model: now the restore says why.
    import jan
    from jan.errors import SlotFileError

    two = jan.Model(stories_path, n_parallel=2, n_ctx=256, n_threads=1, cache_ram_mib=0)
    try:
        two.generate(PROMPT, max_tokens=4, temperature=0)
        two.slot_action("save", 0, tmp_path / "two.bin")
    finally:
        two.close()
    with pytest.raises(SlotFileError, match=r"saved with a cache for each of 2 slots \(--parallel 2\), and this "
                                            r"model has one cache for all slots") as caught:
        model.slot_action("restore", 0, tmp_path / "two.bin")
    assert caught.value.param == "path"  # (the call's argument: the server says filename)
    assert model.slot_action("erase", 0)["n_tokens"] == 0  # (left empty, as any failed restore)
    # a file of another model loaded with as many slots is still told as such
    other = jan.Model(Path(stories_path).parent / "llama-2-tiny-random.gguf", n_parallel=2, n_ctx=256,
                      n_threads=1)
    try:
        with pytest.raises(SlotFileError, match="not a slot file of this model"):
            other.slot_action("restore", 0, tmp_path / "two.bin")
    finally:
        other.close()


def test_the_bodys_model_picks_the_model_as_llama_servers_router_reads_it(tmp_path, stories_path):
    # llama-server's router sends a POST to the model its body names, /slots/{id} too: jan read ?model= alone, so
    # such a body's save went to the default model's slot, or was refused as naming no model
    tiny = Path(stories_path).parent / "llama-2-tiny-random.gguf"
    folder = tmp_path / "slots"
    folder.mkdir()
    srv = start_server(tmp_path, [stories_path, tiny], n_parallel=1, slot_save_path=str(folder),
                       default_model="stories260K")
    try:
        ok(srv, "/completion", {"model": "llama-2-tiny-random", "prompt": "Hello", "n_predict": 2})
        saved = slot_action(srv, 0, "save", {"filename": "tiny.bin", "model": "llama-2-tiny-random"})
        assert saved.status_code == 200 and saved.json()["n_saved"] > 0, saved.text
        assert slot_action(srv, 0, "restore", {"filename": "tiny.bin", "model": "llama-2-tiny-random"}).status_code == 200
        refused(slot_action(srv, 0, "restore", {"filename": "tiny.bin"}), 400, "not a slot file of this model")
        erased = httpx.post(f"{srv.base_url}/slots/0?action=erase", json={"model": "llama-2-tiny-random"}, timeout=120)
        assert erased.json()["n_erased"] == saved.json()["n_saved"], erased.text
        both = httpx.post(f"{srv.base_url}/slots/0?action=erase&model=stories260K",
                          json={"model": "llama-2-tiny-random"}, timeout=120)
        refused(both, 400, "give one")
        refused(slot_action(srv, 0, "erase", {"model": 5}), 400, "model")
    finally:
        srv.stop()


def test_a_slot_file_saved_with_other_cache_settings_says_they_may_be_why(tmp_path):
    # (flash attention stores V another way: llama.cpp refuses the state, which read as no file of this model)
    import jan
    from jan.errors import SlotFileError

    from conftest import require_model

    path = require_model("llama-2-tiny-random.gguf")
    with jan.Model(path, n_parallel=1, n_ctx=256, n_threads=1, flash_attn=True) as m:
        m.generate("Hello", max_tokens=3)
        m.slot_action("save", 0, tmp_path / "fa.bin")
    with jan.Model(path, n_parallel=1, n_ctx=256, n_threads=1, flash_attn=False) as m:
        with pytest.raises(SlotFileError, match="saved with other cache settings: cache types, flash attention"):
            m.slot_action("restore", 0, tmp_path / "fa.bin")
