"""Per-extension settings: ``settings/<extension>/settings.json``.

An extension may keep an object (versioned like every other document) or,
as Jan's own extensions do, a list of setting items (stored as is: a list
has nowhere to carry a version field).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jan.core.fs import loads_json
from jan.json_text import data_file_text

from ._util import check_dict, dumps_json
from .atomic import atomic_write_bytes
from .context import MAX_DOC_BYTES, StoreContext
from .errors import CorruptFileError, InvalidArgumentError, InvalidIdError
from .ids import is_valid_id, validate_extension_name
from jan.local_files import FileTooLargeError, read_regular_file

KIND = "settings"
FILENAME = "settings.json"


class SettingsStore:
    """Read and write one JSON settings file per extension."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def path(self, name: str) -> Path:
        """``settings/<name>/settings.json`` (``name`` may be ``@scope/name``)."""
        validate_extension_name(name)
        base = os.path.realpath(self._ctx.root / "settings")
        target = os.path.normpath(os.path.join(base, *name.split("/"), FILENAME))
        if os.path.commonpath([base, target]) != base:
            raise InvalidIdError(f"extension name {name!r} resolves outside settings/")
        return Path(target)

    def get(self, name: str, default: Any = None) -> Any:
        """The extension's settings (a dict or a list), or ``default`` if none are stored.

        A damaged file is moved aside, reported in ``problems`` and reads as ``default``.
        """
        path = self.path(name)
        try:
            data: bytes | None = read_regular_file(path, MAX_DOC_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return default
        except FileTooLargeError:
            data = None  # read_doc below reports it and leaves it unread, as a too large document of any kind
        try:
            value = loads_json(data_file_text(data)) if data is not None else None
        except (ValueError, UnicodeDecodeError):
            value = None  # read_doc below confirms under the lock and sets it aside
        if isinstance(value, list):
            return value
        try:
            doc = self._ctx.read_doc(path, KIND)
        except CorruptFileError:
            return default
        return default if doc is None else doc

    def set(self, name: str, value: Mapping[str, Any] | list[Any]) -> Any:
        """Replace the extension's settings; returns what was stored."""
        path = self.path(name)
        if isinstance(value, Mapping):
            stored: Any = check_dict("settings", value)
            data = self._ctx.encode_doc(KIND, stored)
        elif isinstance(value, list):
            stored = list(value)
            data = dumps_json(stored)
        else:
            raise InvalidArgumentError("settings must be an object or a list")
        with self._ctx.lock(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return stored

    def update(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into object settings under the lock (a ``None`` value removes a key)."""
        changes = check_dict("changes", changes)
        path = self.path(name)
        with self._ctx.lock(path):
            current = self.get(name, {})
            if not isinstance(current, dict):
                raise InvalidArgumentError(f"settings of {name!r} are a list; use set()")
            merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
            data = self._ctx.encode_doc(KIND, merged)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return merged

    def delete(self, name: str) -> bool:
        """Remove the extension's settings; ``False`` if there were none."""
        path = self.path(name)
        with self._ctx.lock(path):
            if not path.parent.is_dir():
                return False
            self._ctx.remove_resource(path.parent)
            return True

    def names(self) -> list[str]:
        """Extensions that have settings, sorted (scoped ones as ``@scope/name``)."""
        root = self._ctx.root / "settings"
        found = []
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        for entry in entries:
            if not entry.is_dir():
                continue
            if entry.name.startswith("@") and is_valid_id(entry.name[1:]):
                for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if is_valid_id(sub.name) and os.path.isfile(os.path.join(sub.path, FILENAME)):
                        found.append(f"{entry.name}/{sub.name}")
            elif is_valid_id(entry.name) and os.path.isfile(os.path.join(entry.path, FILENAME)):
                found.append(entry.name)
        return found

