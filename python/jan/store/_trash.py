"""Deleting resource folders so that readers never see half of one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import time

from jan.core.fs import TEMP_SUFFIX, temp_writer_pid

from .atomic import fsync_dir
from .ids import new_ulid

logger = logging.getLogger("jan.store")

TRASH_PREFIX = ".trash-"


def remove_resource_dir(directory: Path) -> None:
    """Remove a resource folder: rename it to a hidden trash name, then delete it.

    The rename is atomic, so listings see the resource either whole or gone;
    a crash during the slow part leaves only a hidden folder that
    :func:`sweep_trash` removes later. A symlinked folder (a user's model kept
    on another disk) is unlinked, never followed.
    """
    if directory.is_symlink():
        directory.unlink()
        fsync_dir(directory.parent)
        return
    trash = directory.with_name(f"{TRASH_PREFIX}{directory.name}-{new_ulid()}")
    os.replace(directory, trash)
    fsync_dir(directory.parent)
    shutil.rmtree(trash, ignore_errors=True)


def sweep_trash(collection_dir: Path) -> None:
    """Finish deletions a crash interrupted."""
    try:
        entries = list(os.scandir(collection_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(TRASH_PREFIX) and entry.is_dir(follow_symlinks=False):
            logger.info("data folder: removing leftover %s", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)


# A temporary file whose writer is alive is left alone, unless it is this old (a PID reused
# after a reboot would otherwise protect it for ever); one without a PID in its name (written
# before names carried one) is removed once this old.
STALE_WITH_LIVE_PID_S = 7 * 24 * 3600
STALE_WITHOUT_PID_S = 3600


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _stale(entry: os.DirEntry, now: float) -> bool:
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    pid = temp_writer_pid(entry.name)
    if pid is None:
        return age > STALE_WITHOUT_PID_S
    return not _pid_alive(pid) or age > STALE_WITH_LIVE_PID_S


#: How deep jan writes in its data folder: ``threads/<id>/runs/<run>.json`` and ``threads/<id>/files/<image>`` are
#: four folders down (the data folder, the collection, the resource, its sub-folder). A sweep of three left the
#: temporary files of run records and thread images that a kill interrupted behind for good.
WRITE_DEPTH = 4


def sweep_temp_files(root: Path, *, depth: int = WRITE_DEPTH) -> list[Path]:
    """Remove the hidden ``.*.tmp`` files interrupted atomic writes and model copies left
    under ``root`` (in ``depth`` folders: the root, ``<collection>``, ``<collection>/<id>``, ``<collection>/<id>/<sub>``);
    files whose writing process is still alive are kept. Returns the removed paths."""
    removed: list[Path] = []
    now = time.time()
    folders = [(root, 0, False)]
    while folders:
        folder, level, linked = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if level + 1 < depth and not entry.name.startswith("."):
                    folders.append((Path(entry.path), level + 1, linked))
            elif entry.is_symlink() and _is_dir(entry):
                # a folder of the data folder kept elsewhere (models/ moved to a bigger disk, one model's folder
                # on another): jan writes in it through the link, so a kill leaves its temporary files there (a
                # multi-GB model copy, kept for good). Only jan's own are taken there (their writer's PID in the
                # name): the folder is the user's too.
                if level + 1 < depth and not entry.name.startswith("."):
                    folders.append((Path(entry.path), level + 1, True))
            elif (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and _stale(entry, now)
                  and not (linked and temp_writer_pid(entry.name) is None)):
                _remove_temp(entry, removed)
            elif entry.is_symlink():
                _sweep_beside_target(entry.path, now, removed)
    return removed


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _remove_temp(entry: os.DirEntry, removed: list[Path]) -> None:
    try:
        os.unlink(entry.path)
    except OSError:
        return
    logger.info("data folder: removed %s, left by an interrupted write", entry.path)
    removed.append(Path(entry.path))


def _sweep_beside_target(link: str, now: float, removed: list[Path]) -> None:
    """A file of the data folder that is a symbolic link is written beside its target
    (:func:`jan.core.fs.write_target`): the temporary files a kill left there, which are that target's own
    (``.<target name>.p<pid>.*.tmp`` of a dead writer), are swept too, wherever the target is."""
    try:
        target = Path(os.path.realpath(link))
        if not target.is_file():
            return
        prefix = f".{target.name}.p"
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix) and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for entry in entries:
        if temp_writer_pid(entry.name) is not None and _stale(entry, now):
            _remove_temp(entry, removed)
