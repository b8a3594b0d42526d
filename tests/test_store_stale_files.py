"""Leftovers of killed processes are cleaned up at start-up — only theirs (issue 10, item 21)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from jan.store import DataFolder

# A process that starts writing a model copy the way an import does, says where, then waits to be killed.
WRITER = """
import sys, time
from pathlib import Path
from jan.store.atomic import copy_to_temp
src, folder = sys.argv[1], sys.argv[2]
tmp = copy_to_temp(src, folder, "model.gguf")
print(tmp, flush=True)
time.sleep(600)
"""


def _start_writer(src, folder):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(folder)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line, "the writer did not start"
    return proc, line


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, stories_path):
    data = tmp_path / "data"
    DataFolder(data)
    model_dir = data / "models" / "m"
    model_dir.mkdir()
    killed, killed_tmp = _start_writer(stories_path, model_dir)
    alive, alive_tmp = _start_writer(stories_path, model_dir)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
        # written before temp names carried a PID: removed once old, kept while recent
        old_style = model_dir / ".model.gguf.abc123xy.tmp"
        old_style.write_bytes(b"x")
        os.utime(old_style, (time.time() - 7200, time.time() - 7200))
        recent_old_style = data / "threads" / ".thread.json.zz9yy8xx.tmp"
        recent_old_style.write_bytes(b"x")
        visible = model_dir / "notes.tmp"  # not a hidden temp file of ours: never touched
        visible.write_bytes(b"x")

        folder = DataFolder(data)

        assert not os.path.exists(killed_tmp), "the killed import's copy is gone"
        assert os.path.exists(alive_tmp), "a live process's copy in progress is kept"
        assert not old_style.exists() and recent_old_style.exists() and visible.exists()
        assert set(map(str, folder.removed_temp_files)) == {killed_tmp, str(old_style)}
    finally:
        alive.kill()
        alive.wait(30)
    DataFolder(data)
    assert not os.path.exists(alive_tmp), "once its writer is gone, it goes at the next start"


def test_interrupted_atomic_writes_name_their_process(tmp_path):
    from jan.core.fs import temp_prefix, temp_writer_pid

    assert temp_writer_pid(temp_prefix("settings.json") + "k2j4h5g6.tmp") == os.getpid()
    assert temp_writer_pid(".settings.json.k2j4h5g6.tmp") is None


def test_temp_files_in_a_collection_kept_elsewhere_through_a_link_are_removed(tmp_path, stories_path):
    """``models/`` moved to a bigger disk and linked back (a model's own folder likewise): a model copy a kill
    interrupted there was never swept, the walk did not follow the link, and its hidden multi-GB temporary file
    stayed for good. The walk follows such a folder and takes jan's own temporary files in it (those naming their
    writer's PID): a hidden ``.x.tmp`` of another program, old as it may be, is left (the folder is the user's)."""
    data = tmp_path / "data"
    DataFolder(data)
    disk = tmp_path / "bigdisk"
    (data / "models").rename(disk)
    (data / "models").symlink_to(disk)
    (disk / "m").mkdir()
    killed, killed_tmp = _start_writer(stories_path, data / "models" / "m")
    own_folder = tmp_path / "elsewhere" / "n"
    own_folder.mkdir(parents=True)
    (disk / "n").symlink_to(own_folder)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(30)
    in_linked_model = own_folder / f".model.json.p{killed.pid}.abcd1234.tmp"
    in_linked_model.write_bytes(b"x")
    foreign = own_folder / ".cache.tmp"  # no PID: not a name jan writes
    foreign.write_bytes(b"x")
    os.utime(foreign, (time.time() - 7200, time.time() - 7200))

    removed = DataFolder(data).removed_temp_files
    assert not os.path.exists(killed_tmp) and not in_linked_model.exists()
    assert {p.name for p in removed} == {os.path.basename(killed_tmp), in_linked_model.name}
    assert foreign.exists()
