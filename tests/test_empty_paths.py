"""An empty path is refused wherever jan takes one, never read as the current folder.

``Path("")`` is ``.``: an unset shell variable (``--data-folder "$DIR"``, ``--image "$PIC"``,
``open_services(os.environ.get("DIR", ""))``) made jan's data folder layout in whatever folder the command ran from,
let ``jan serve --allow-media-from ""`` read images from the server's working folder, and sent ``.`` as an image.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from test_cli_helpers import cli_env, jan

# (arguments, the option click names in its usage error); "{file}" is an existing file
EMPTY_PATHS = [
    (("run", "stories260K", "hi", "--data-folder", ""), "--data-folder"),
    (("info", "--data-folder", ""), "--data-folder"),
    (("models", "list", "--data-folder", ""), "--data-folder"),
    (("threads", "list", "--data-folder", ""), "--data-folder"),
    (("serve", "--port", "0", "--data-folder", ""), "--data-folder"),
    (("run", "stories260K", "hi", "--image", ""), "--image"),
    (("models", "import", ""), "PATH"),
    (("models", "import", "{file}", "--mmproj", ""), "--mmproj"),
    (("files", "upload", ""), "PATH"),
    (("files", "download", "file-abc", "-o", ""), "--output"),
    (("threads", "export", "thread_abc", "-o", ""), "--output"),
    (("serve", "--port", "0", "--model-draft", ""), "--model-draft"),
    (("serve", "--port", "0", "--allow-media-from", ""), "--allow-media-from"),
    # not paths, but an empty value as silently taken: a new thread instead of the one meant, "no server at ''"
    (("chat", "stories260K", "--thread", ""), "--thread"),
    (("run", "stories260K", "hi", "--url", ""), "--url"),
]


@pytest.mark.parametrize("args, option", EMPTY_PATHS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_an_empty_path_is_a_usage_error_naming_the_option_and_nothing_is_made_here(args, option, tmp_path):
    here = tmp_path / "cwd"
    here.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x\n")
    env = cli_env(tmp_path / "jan")
    result = jan(*(a.replace("{file}", str(a_file)) for a in args), env=env, cwd=here, timeout=120)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "Invalid value for" in result.stderr and option in result.stderr, result.stderr
    assert list(here.iterdir()) == []  # no data folder layout made in the current folder


def test_an_empty_jan_data_folder_variable_is_the_variable_unset(tmp_path):
    """As shells mean it (and as before): the default folder, under $HOME, not the current folder."""
    here = tmp_path / "cwd"
    here.mkdir()
    env = cli_env(tmp_path / "unused", JAN_DATA_FOLDER="", HOME=str(tmp_path / "home"))
    # (a command that writes: one that only reads makes no folder at all)
    result = jan("extensions", "disable", "monitoring", env=env, cwd=here)
    assert result.returncode == 0, result
    assert list(here.iterdir()) == []
    assert (tmp_path / "home" / "jan").is_dir()
    assert jan("threads", "list", env=env, cwd=here).returncode == 0 and list(here.iterdir()) == []


# --------------------------------------------------------------------------- the library


def test_the_library_refuses_an_empty_data_folder_path(tmp_path, monkeypatch):
    from jan.services import open_services
    from jan.store import DataFolder, InvalidArgumentError, make_data_folder, resolve_data_folder

    monkeypatch.chdir(tmp_path)
    for call in (lambda: resolve_data_folder(""), lambda: make_data_folder(""), lambda: DataFolder(""),
                 lambda: DataFolder("", create=False)):
        with pytest.raises(InvalidArgumentError, match="data folder path is empty"):
            call()

    async def open_empty():
        async with open_services(""):
            pass

    with pytest.raises(ValueError, match="data folder path is empty"):
        asyncio.run(open_empty())
    assert list(tmp_path.iterdir()) == []


def test_the_library_names_a_data_folder_of_the_wrong_type(tmp_path, monkeypatch):
    """open_services(5) and DataFolder(5) said pathlib's "expected str, bytes or os.PathLike object, not int", and a
    bytes path failed inside pathlib; now the wrong type is told by the argument's name, and bytes are a path."""
    from jan.services import open_services
    from jan.store import DataFolder, make_data_folder, resolve_data_folder

    monkeypatch.chdir(tmp_path)
    for value in (5, 1.5, ["x"]):
        for call in (resolve_data_folder, make_data_folder, DataFolder):
            with pytest.raises(TypeError, match=rf"^data_folder: expected a folder path \(str or os.PathLike\), "
                                                rf"got {type(value).__name__}$"):
                call(value)

    async def open_wrong():
        async with open_services(5):
            pass

    with pytest.raises(TypeError, match="^data_folder: expected a folder path"):
        asyncio.run(open_wrong())
    assert list(tmp_path.iterdir()) == []
    raw = os.fsencode(tmp_path / "data")
    assert resolve_data_folder(raw) == resolve_data_folder(bytearray(raw)) == (tmp_path / "data").resolve()
    assert DataFolder(raw).root == (tmp_path / "data").resolve()


@pytest.mark.parametrize("where", ["itself", "on its way"])
def test_the_library_says_a_file_is_in_the_data_folders_place(tmp_path, where):
    """Before: DataFolder and open_services raised mkdir's bare ``[Errno 17] File exists``."""
    from jan.services import open_services
    from jan.store import DataFolder, StoreError

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x\n")
    folder = a_file if where == "itself" else a_file / "jan"
    said = f"{a_file} is a file, not a folder"

    for create in (True, False):
        with pytest.raises(StoreError, match=said) as caught:
            DataFolder(folder, create=create)
        assert "Errno" not in str(caught.value)

    async def open_it():
        async with open_services(folder):
            pass

    with pytest.raises(StoreError, match=said):
        asyncio.run(open_it())
    assert a_file.read_text() == "x\n"


@pytest.mark.parametrize("entry", ["", " "])
def test_an_empty_media_allowlist_entry_is_refused_not_the_current_folder(entry):
    from jan.server.media_fetch import MediaAllowlist

    with pytest.raises(ValueError, match="empty"):
        MediaAllowlist.parse([entry])
