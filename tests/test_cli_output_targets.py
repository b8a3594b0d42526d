"""``-o`` naming something other than a regular file is written as a shell's ``>`` writes it: a named pipe (or a
device: ``/dev/stdout``, ``/dev/null``) is written into, a symbolic link is written through. The atomic write's
temporary file renamed over them replaced the pipe or the link itself with a regular file (as root, ``-o /dev/null``
turned /dev/null into a file, and ``-o /dev/full`` said "exported"). (Devices are not written here: a regression
would replace the machine's own.)"""

from __future__ import annotations

import os
import stat
import threading

import pytest
from click.testing import CliRunner
from jan.cli import main
from jan.cli.common import write_output_file
from jan.store import DataFolder

pytestmark = pytest.mark.timeout(120)


def _read_fifo_in_background(fifo):
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)  # (never joined when the pipe was replaced: daemon)
    reader.start()
    return reader, got


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = _read_fifo_in_background(fifo)
    write_output_file(fifo, lambda put: put(b"through the pipe"))
    reader.join(timeout=60)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_a_symbolic_link_is_written_through(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.md").write_bytes(b"old")
    link = tmp_path / "link.md"
    link.symlink_to(real / "notes.md")
    write_output_file(link, lambda put: put(b"new"))
    assert link.is_symlink() and (real / "notes.md").read_bytes() == b"new"
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(real / "made.md")
    write_output_file(dangling, lambda put: put(b"made"))
    assert dangling.is_symlink() and (real / "made.md").read_bytes() == b"made"
    assert sorted(os.listdir(real)) == ["made.md", "notes.md"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_threads_export_into_a_pipe(data, tmp_path):
    thread = DataFolder(data).threads.create("Pirates", messages=[{"role": "user", "content": "Ahoy"}])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = _read_fifo_in_background(fifo)
    result = CliRunner().invoke(main, ["threads", "export", thread["id"], "--local", "--data-folder", str(data),
                                       "-o", str(fifo)])
    assert result.exit_code == 0, result.output
    reader.join(timeout=60)
    assert got and b"Ahoy" in got[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
