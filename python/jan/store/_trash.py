"""Deleting resource folders so that readers never see half of one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

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
