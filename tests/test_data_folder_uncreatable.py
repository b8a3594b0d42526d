"""A data folder the system will not make (no permission, a read-only or virtual file system) is mkdir's own OSError
subclass, its errno kept (what the CLI and a Python caller catch), saying which data folder and what to do."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from jan.services import open_services
from jan.store import make_data_folder


def _refusing_mkdir(monkeypatch):
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if "unmakeable" in self.parts:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_data_folder_that_cannot_be_made_says_which_and_what_to_do(tmp_path, monkeypatch):
    _refusing_mkdir(monkeypatch)
    folder = tmp_path / "unmakeable" / "jan"
    with pytest.raises(PermissionError) as refused:
        make_data_folder(folder)
    # mkdir's errno, strerror and filename stay (what a program and the CLI read)
    assert (refused.value.errno, refused.value.strerror) == (errno.EACCES, "Permission denied")
    assert refused.value.filename == str(folder)
    said = str(refused.value)
    assert f"cannot create the data folder {folder}: Permission denied;" in said, said
    assert "--data-folder" in said and "$JAN_DATA_FOLDER" in said, said

    async def open_it():
        async with open_services(folder):
            pass

    with pytest.raises(PermissionError, match="cannot create the data folder"):
        asyncio.run(open_it())


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (a file system no folder is made in)")
def test_the_cli_tells_the_folder_and_the_flag(tmp_path, stories_path):
    from test_cli_helpers import cli_env, fails, jan

    folder = "/proc/jan-no-such-folder"
    said = fails(jan("models", "import", str(stories_path), "--data-folder", folder,
                     env=cli_env(tmp_path / "unused")))
    assert f"cannot open the data folder {folder}: {folder}: No such file or directory; give a folder with " \
        "--data-folder or $JAN_DATA_FOLDER" in said, said


# A file where one of the data folder's own folders must be: every store would fail on it. The server started,
# its log holding a traceback per extension, and ended with "no loaded extension provides 'model': ... failed to
# load: on_load failed: StoreError: ..."; open_services opened services without their models and threads.
LAYOUT_NAMES = ("models", "threads", "settings", "extensions")


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_a_file_in_a_layout_folders_place_is_refused_by_the_library(tmp_path, name):
    folder = tmp_path / "jan"
    folder.mkdir()
    (folder / name).write_text("not a folder")
    from jan.store import StoreError

    async def open_it():
        async with open_services(folder):
            pass

    with pytest.raises(StoreError, match=f"{folder / name} is not a folder \\(jan keeps its {name} there\\)"):
        asyncio.run(open_it())
    with pytest.raises(StoreError, match="is not a folder"):
        make_data_folder(folder)


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_serve_says_a_file_in_a_layout_folders_place_in_one_line(tmp_path, name):
    from test_cli_helpers import cli_env, fails, jan

    folder = tmp_path / "jan"
    folder.mkdir()
    (folder / name).write_text("not a folder")
    said = fails(jan("serve", "--port", "0", "--data-folder", folder, env=cli_env(tmp_path / "unused"), timeout=180),
                 f"{folder / name} is not a folder (jan keeps its {name} there)")
    assert "StoreError" not in said, said
