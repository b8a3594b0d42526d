"""Schema versions and the upgrades between them.

Every JSON document the store writes (each ``*.json`` file, each line of
``messages.jsonl``) carries ``"_schema_version": <int>`` next to Jan's own
fields. A document without it is version 0: a file written by the Jan app
or by a jan release before versioning. On read, documents older than the
current version are passed through the registered steps ``n -> n+1`` in
order and written back; documents newer than this jan knows are used as-is
and never downgraded.

To change a schema: register a step from the current version, e.g.::

    @DEFAULT_MIGRATIONS.register("thread", 1)
    def _thread_v1_to_v2(doc):
        doc.setdefault("tags", [])
        return doc
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from ._util import as_millis, as_seconds, now_ms

logger = logging.getLogger("jan.store")

SCHEMA_VERSION_KEY = "_schema_version"

Migration = Callable[[dict[str, Any]], dict[str, Any]]

KINDS = ("thread", "message", "assistant", "model", "settings")


class MigrationError(Exception):
    """The registry has no path from a document's version to the current one."""


class MigrationRegistry:
    """Upgrade steps per document kind; the current version is one past the last step."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Migration]] = {}

    def register(self, kind: str, from_version: int) -> Callable[[Migration], Migration]:
        """Decorator registering ``fn(doc) -> doc``, upgrading ``kind`` from ``from_version`` to the next."""

        def decorator(fn: Migration) -> Migration:
            steps = self._steps.setdefault(kind, {})
            if from_version in steps:
                raise ValueError(f"a {kind} migration from version {from_version} is already registered")
            steps[from_version] = fn
            return fn

        return decorator

    def current_version(self, kind: str) -> int:
        """The version new ``kind`` documents are written with (1 if nothing is registered)."""
        steps = self._steps.get(kind)
        return max(steps) + 1 if steps else 1

    def version_of(self, doc: dict[str, Any]) -> int:
        version = doc.get(SCHEMA_VERSION_KEY, 0)
        return version if isinstance(version, int) and not isinstance(version, bool) and version >= 0 else 0

    def needs_upgrade(self, kind: str, doc: dict[str, Any]) -> bool:
        return self.version_of(doc) < self.current_version(kind)

    def upgrade(self, kind: str, doc: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Return ``(doc at the current version, whether anything changed)``.

        The input is not modified. A newer-than-known document comes back unchanged.
        """
        version = self.version_of(doc)
        target = self.current_version(kind)
        if version >= target:
            return doc, False
        steps = self._steps.get(kind, {})
        doc = copy.deepcopy(doc)
        while version < target:
            step = steps.get(version)
            if step is None:
                raise MigrationError(f"no {kind} migration from version {version}")
            doc = step(doc)
            if not isinstance(doc, dict):
                raise MigrationError(f"{kind} migration from version {version} did not return a dict")
            version += 1
            doc[SCHEMA_VERSION_KEY] = version
        return doc, True

    def copy(self) -> MigrationRegistry:
        """An independent registry with the same steps (tests add steps to a copy)."""
        other = MigrationRegistry()
        other._steps = {kind: dict(steps) for kind, steps in self._steps.items()}
        return other


DEFAULT_MIGRATIONS = MigrationRegistry()


def default_migrations() -> MigrationRegistry:
    """A copy of the built-in registry."""
    return DEFAULT_MIGRATIONS.copy()


# --- version 0 -> 1: documents written by the Jan app (no version field) ---
# Jan wrote ``created_at`` in milliseconds where OpenAI uses seconds, and kept
# only ms ``created``/``updated`` on some objects; version 1 keeps both.


def _dict_field(doc: dict[str, Any], key: str) -> None:
    if not isinstance(doc.get(key), dict):
        doc[key] = {}


def _list_field(doc: dict[str, Any], key: str) -> None:
    if not isinstance(doc.get(key), list):
        doc[key] = []


def _timestamps(doc: dict[str, Any], *, updated: bool = True) -> None:
    created_ms = as_millis(doc.get("created"))
    if created_ms is None:
        created_ms = as_millis(doc.get("created_at"))
    if created_ms is None:
        created_ms = now_ms()
    doc["created"] = created_ms
    doc["created_at"] = as_seconds(doc.get("created_at")) or created_ms // 1000
    if updated:
        doc["updated"] = as_millis(doc.get("updated")) or created_ms


def text_part(value: str) -> dict[str, Any]:
    """An OpenAI/Jan text content part."""
    return {"type": "text", "text": {"value": value, "annotations": []}}


@DEFAULT_MIGRATIONS.register("thread", 0)
def _thread_v0(doc: dict[str, Any]) -> dict[str, Any]:
    doc["object"] = "thread"
    if not isinstance(doc.get("title"), str):
        doc["title"] = "New Thread"
    _list_field(doc, "assistants")
    _dict_field(doc, "metadata")
    _timestamps(doc)
    return doc


@DEFAULT_MIGRATIONS.register("message", 0)
def _message_v0(doc: dict[str, Any]) -> dict[str, Any]:
    doc["object"] = "thread.message"
    content = doc.get("content")
    if isinstance(content, str):
        doc["content"] = [text_part(content)]
    elif not isinstance(content, list):
        doc["content"] = []
    doc.setdefault("status", "ready")
    doc.setdefault("assistant_id", None)
    _dict_field(doc, "metadata")
    _timestamps(doc)
    if "completed_at" in doc:
        doc["completed_at"] = as_seconds(doc["completed_at"])
    else:
        doc["completed_at"] = doc["created_at"] if doc["status"] != "pending" else None
    return doc


@DEFAULT_MIGRATIONS.register("assistant", 0)
def _assistant_v0(doc: dict[str, Any]) -> dict[str, Any]:
    doc["object"] = "assistant"
    doc.setdefault("name", doc.get("id", "Assistant"))
    for key, default in (("description", ""), ("model", "*"), ("instructions", ""), ("avatar", "")):
        if doc.get(key) is None:
            doc[key] = default
    _list_field(doc, "tools")
    _list_field(doc, "file_ids")
    _dict_field(doc, "metadata")
    _timestamps(doc)
    return doc


# Engine names older Jan releases wrote for what is now llama.cpp.
_LLAMA_CPP_ALIASES = {"nitro", "cortex", "cortex.llamacpp", "llama-cpp", "llamacpp", "llama_cpp"}


@DEFAULT_MIGRATIONS.register("model", 0)
def _model_v0(doc: dict[str, Any]) -> dict[str, Any]:
    doc["object"] = "model"
    engine = doc.get("engine")
    if not isinstance(engine, str) or not engine or engine.lower() in _LLAMA_CPP_ALIASES:
        doc["engine"] = "llama.cpp"
    doc.setdefault("format", "gguf")
    _list_field(doc, "sources")
    for key in ("settings", "parameters", "metadata"):
        _dict_field(doc, key)
    created = as_millis(doc.get("created"))
    doc["created"] = created if created is not None else now_ms()
    return doc


@DEFAULT_MIGRATIONS.register("settings", 0)
def _settings_v0(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


__all__ = [
    "DEFAULT_MIGRATIONS",
    "KINDS",
    "Migration",
    "MigrationError",
    "MigrationRegistry",
    "SCHEMA_VERSION_KEY",
    "default_migrations",
    "text_part",
]
