"""Assistants: ``assistants/<assistant_id>/assistant.json``, with the default ``jan`` assistant."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._util import as_millis, check_dict, check_list, check_str, field_type_error, now_ms
from .atomic import atomic_write_bytes
from .context import StoreContext, read_collection, register_shape
from .errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from .ids import new_assistant_id, ulid_millis, validate_id
from .pagination import Order, Page, paginate

KIND = "assistant"
DEFAULT_ASSISTANT_ID = "jan"

_FIELDS = ("name", "description", "model", "instructions", "tools", "file_ids", "metadata", "avatar", "parameters",
           "reasoning_effort", "tool_policy")


def _check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in _FIELDS:
            raise InvalidArgumentError(f"unknown assistant field {key!r}")
        if key in ("tools", "file_ids"):
            value = check_list(key, value)
            if key == "tools" and not all(isinstance(t, Mapping) for t in value):
                raise InvalidArgumentError("tools must be a list of objects")
            if key == "file_ids":
                for file_id in value:
                    validate_id(file_id, "file id")
        elif key in ("metadata", "parameters", "tool_policy"):
            value = check_dict(key, value)
        elif key == "reasoning_effort" and value is None:
            pass  # unset: the model's own default
        else:
            value = check_str(key, value)
        out[key] = value
    return out



#: The fields of an assistant.json and their types, as :func:`_check_fields` takes them (:func:`_assistant_shape`).
_ASSISTANT_TYPES = {"name": "str", "description": "str", "model": "str", "instructions": "str", "avatar": "str",
                    "reasoning_effort": "str", "tools": "list", "file_ids": "list", "metadata": "dict",
                    "parameters": "dict", "tool_policy": "dict", "created_at": "number", "created": "number", "updated": "number"}


@register_shape(KIND)
def _assistant_shape(doc: dict[str, Any]) -> str | None:
    """What makes an assistant.json unusable: a field of another type than jan writes (``"instructions": 5``,
    ``"tools": "all"``), served as is to a run that took it for granted."""
    error = field_type_error(doc, _ASSISTANT_TYPES)
    if error is None and not all(isinstance(tool, dict) for tool in doc.get("tools") or ()):
        error = "tools is not a list of objects"
    if error is None and not all(isinstance(file_id, str) for file_id in doc.get("file_ids") or ()):
        error = "file_ids is not a list of ids"
    return error


def assistant_sort_key(assistant: dict[str, Any]) -> tuple[int, str]:
    """Where an assistant lists: by creation in milliseconds (``created``; ``created_at``, in seconds, for a file
    written without it), ties by id. Not by ``created_at``'s seconds: ids break ties, and an id that is no ULID (the
    default ``jan``, an id the client chose) does not sort by time — the default assistant, made at start, listed
    after the assistants a client made in the same second."""
    return as_millis(assistant.get("created")) or as_millis(assistant.get("created_at")) or 0, assistant["id"]


def assistant_sort_key_of_id(assistant_id: str) -> tuple[int, str] | None:
    """:func:`assistant_sort_key` of a deleted assistant, from its id: its ``created`` is read after its id is
    made, in the same millisecond or later, never before (a cursor the SDK pages on after deleting it)."""
    millis = ulid_millis(assistant_id, "asst_")
    return None if millis is None else (millis, assistant_id)

class AssistantStore:
    """CRUD and listing for assistants."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def _path(self, assistant_id: str) -> Path:
        return self._ctx.resource_dir("assistants", assistant_id, "assistant") / "assistant.json"

    def create(self, name: str = "Assistant", *, assistant_id: str | None = None, description: str = "",
               model: str = "*", instructions: str = "", tools: list[Mapping[str, Any]] | None = None,
               file_ids: list[str] | None = None, metadata: Mapping[str, Any] | None = None,
               avatar: str = "") -> dict[str, Any]:
        """Create an assistant. ``model="*"`` means "any model" (Jan's convention).

        Raises :class:`AlreadyExistsError` for a taken ``assistant_id``.
        """
        assistant_id = new_assistant_id() if assistant_id is None else validate_id(assistant_id, "assistant id")
        fields = _check_fields({"name": name, "description": description, "model": model,
                                "instructions": instructions, "tools": tools, "file_ids": file_ids,
                                "metadata": metadata, "avatar": avatar})
        created = now_ms()
        doc = {"id": assistant_id, "object": "assistant", **fields,
               "created_at": created // 1000, "created": created, "updated": created}
        data = self._ctx.encode_doc(KIND, doc)
        path = self._path(assistant_id)
        with self._ctx.lock(path):
            if path.exists():
                raise AlreadyExistsError(KIND, assistant_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return doc

    def get(self, assistant_id: str) -> dict[str, Any]:
        """One assistant; :class:`NotFoundError` if unknown (or damaged and moved aside)."""
        return self._ctx.get_doc(self._path(assistant_id), KIND, assistant_id)

    def exists(self, assistant_id: str) -> bool:
        return self._path(assistant_id).is_file()

    def list(self, *, limit: int | None = None, order: Order = "desc",
             after: str | None = None, before: str | None = None) -> Page:
        """Assistants by creation time, newest first by default (as OpenAI lists them)."""
        items = read_collection(self._ctx, "assistants", "assistant.json", KIND)
        items.sort(key=assistant_sort_key)
        return paginate(items, limit=limit, order=order, after=after, before=before, key=assistant_sort_key,
                        key_of_id=assistant_sort_key_of_id)

    def update(self, assistant_id: str, **changes: Any) -> dict[str, Any]:
        """Change any of ``name, description, model, instructions, tools, file_ids, metadata, avatar, parameters,
        reasoning_effort, tool_policy``.

        ``metadata`` is replaced, not merged.
        """
        fields = _check_fields(changes)
        path = self._path(assistant_id)
        with self._ctx.lock(path):
            doc = self.get(assistant_id)
            doc.update(fields)
            doc["updated"] = now_ms()
            self._ctx.write_doc(path, KIND, doc)
        return doc

    def delete(self, assistant_id: str) -> dict[str, Any]:
        """Delete an assistant (the default one is recreated by :meth:`ensure_default` on next start)."""
        path = self._path(assistant_id)
        with self._ctx.lock(path):
            if not path.parent.is_dir():
                raise NotFoundError(KIND, assistant_id)
            self._ctx.remove_resource(path.parent)
        return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}

    def ensure_default(self) -> dict[str, Any]:
        """Create the default ``jan`` assistant unless it exists; return it.

        Safe to call from several processes at once: only one creates it.
        """
        path = self._path(DEFAULT_ASSISTANT_ID)
        with self._ctx.lock(path):
            try:
                return self.get(DEFAULT_ASSISTANT_ID)
            except NotFoundError:
                pass
            created = now_ms()
            doc = {
                "id": DEFAULT_ASSISTANT_ID,
                "object": "assistant",
                "name": "Jan",
                "description": "A default assistant that can use all downloaded models",
                "model": "*",
                "instructions": "",
                "tools": [],
                "file_ids": [],
                "metadata": {},
                "avatar": "",
                "created_at": created // 1000,
                "created": created,
                "updated": created,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            self._ctx.write_doc(path, KIND, doc)
            return doc
