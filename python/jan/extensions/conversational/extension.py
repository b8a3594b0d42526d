"""ConversationalExtension over the data folder (``jan.store``): threads, messages, assistants.

Everything is delegated to :class:`jan.store.AsyncStore`, which does the file
work in worker threads with atomic writes and per-file locks, validates ids
(so no id reaches outside the data folder) and sets damaged files aside.
This class only translates the interface's dict-shaped calls to the store's
keyword arguments and keeps the store's guarantees visible:
:meth:`problems` lists the damaged files found so far, for the API to report.
"""

from __future__ import annotations

from typing import Any

from jan.core import ConversationalExtension, ThreadDeleted
from jan.extensions._builtin import BuiltinExtension
from jan.store import DEFAULT_ASSISTANT_ID, AsyncStore, InvalidArgumentError

# Fields a stored document owns; callers may send them back (e.g. a whole
# thread.json when importing), they are recomputed by the store.
_THREAD_IGNORED = frozenset({"object", "created", "created_at", "updated"})
_THREAD_FIELDS = frozenset({"id", "title", "assistants", "metadata", "messages"})
_THREAD_PATCHABLE = frozenset({"title", "assistants", "metadata"})
_MESSAGE_IGNORED = frozenset({"object", "thread_id", "created", "updated", "completed_at"})
_ASSISTANT_FIXED = frozenset({"id", "object", "created_at", "created", "updated"})


def _unknown(what: str, keys: set[str]) -> InvalidArgumentError:
    return InvalidArgumentError(f"unknown {what} field{'s' if len(keys) > 1 else ''}: {', '.join(sorted(keys))}")


def _written_by(run_id: str):
    """Whether a message was written by the run ``run_id``: its ``run_id``, or (a tool result saved before tool
    messages carried one) its ``metadata.run_id`` — only a run writes ``tool`` messages."""

    def test(message: dict[str, Any]) -> bool:
        if "run_id" in message:
            return message["run_id"] == run_id
        metadata = message.get("metadata")
        return message.get("role") == "tool" and isinstance(metadata, dict) and metadata.get("run_id") == run_id

    return test


class ConversationalStoreExtension(BuiltinExtension, ConversationalExtension):
    """Jan's threads, messages and assistants as files under ``<data>/threads`` and ``<data>/assistants``."""

    name = "conversational"
    description = "Threads, messages and assistants stored as files in the data folder"

    def __init__(self) -> None:
        self.store: AsyncStore | None = None
        self._bus = None

    async def on_load(self, ctx) -> None:
        # Opening creates the layout and the default "jan" assistant (file work: off the loop).
        self.store = await AsyncStore.open(ctx.data_folder)
        self._bus = ctx.bus

    async def on_unload(self) -> None:
        self.store = None
        self._bus = None

    def _store(self) -> AsyncStore:
        if self.store is None:
            # unloaded (disabled, or jan stopping) while a request or a run held it: the service is gone, as for a
            # request that came after (a 503 extension_unavailable), never a fault of jan's (a 500 with a traceback)
            from jan.core import ExtensionNotFoundError

            raise ExtensionNotFoundError("the conversational extension is not loaded (it was disabled or is stopping)")
        return self.store

    # -- problems ----------------------------------------------------------
    def problems(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Damaged files found (and set aside) so far, oldest first.

        Each is ``{"path", "error", "time", "moved_to"}`` with paths relative
        to the data folder; ``prefix`` (e.g. ``"threads/"``) filters by path.
        """
        items = [p.to_dict() for p in self._store().problems]
        return [p for p in items if prefix is None or p["path"].startswith(prefix)]

    # -- threads -------------------------------------------------------------
    async def list_threads(self, *, limit: int | None = None, order: str = "desc",
                           after: str | None = None, before: str | None = None) -> list[dict[str, Any]]:
        page = await self._store().threads.list(limit=limit, order=order, after=after, before=before)
        return page.data

    async def get_thread(self, thread_id: str) -> dict[str, Any]:
        return await self._store().threads.get(thread_id)

    async def create_thread(self, thread: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in dict(thread).items() if k not in _THREAD_IGNORED}
        unknown = set(fields) - _THREAD_FIELDS
        if unknown:
            raise _unknown("thread", unknown)
        kwargs: dict[str, Any] = {
            "assistants": fields.get("assistants"),
            "metadata": fields.get("metadata"),
            "messages": fields.get("messages"),
            "thread_id": fields.get("id"),
        }
        if fields.get("title") is not None:
            kwargs["title"] = fields["title"]
        return await self._store().threads.create(**kwargs)

    async def update_thread(self, thread_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in dict(patch).items() if k not in _THREAD_IGNORED}
        if fields.get("id", thread_id) != thread_id:
            raise InvalidArgumentError("a thread's id cannot be changed")
        fields.pop("id", None)
        unknown = set(fields) - _THREAD_PATCHABLE
        if unknown:
            raise _unknown("thread", unknown)
        if not fields:
            return await self._store().threads.get(thread_id)
        return await self._store().threads.update(thread_id, **fields)

    async def delete_thread(self, thread_id: str) -> None:
        await self._store().threads.delete(thread_id)
        if self._bus is not None:  # what keeps data about the thread elsewhere forgets it (awaited: done on return)
            await self._bus.emit(ThreadDeleted(thread_id=thread_id))

    # -- messages ------------------------------------------------------------
    async def list_messages(self, thread_id: str, *, limit: int | None = None, order: str = "asc",
                            after: str | None = None, before: str | None = None,
                            run_id: str | None = None) -> list[dict[str, Any]]:
        page = await self._store().messages.list(thread_id, limit=limit, order=order, after=after, before=before,
                                                 where=None if run_id is None else _written_by(run_id))
        return page.data

    async def get_message(self, thread_id: str, message_id: str) -> dict[str, Any]:
        return await self._store().messages.get(thread_id, message_id)

    async def create_message(self, thread_id: str, message: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in dict(message).items() if k not in _MESSAGE_IGNORED}
        if "role" not in fields or "content" not in fields:
            raise InvalidArgumentError("a message needs 'role' and 'content'")
        if "id" in fields:
            fields["message_id"] = fields.pop("id")
        role, content = fields.pop("role"), fields.pop("content")
        return await self._store().messages.create(thread_id, role, content, **fields)

    async def update_message(self, thread_id: str, message_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in dict(patch).items() if k not in _MESSAGE_IGNORED}
        if fields.get("id", message_id) != message_id:
            raise InvalidArgumentError("a message's id cannot be changed")
        fields.pop("id", None)
        if not fields:
            return await self._store().messages.get(thread_id, message_id)
        return await self._store().messages.update(thread_id, message_id, **fields)

    async def delete_message(self, thread_id: str, message_id: str) -> None:
        await self._store().messages.delete(thread_id, message_id)

    async def read_file(self, thread_id: str, file_id: str) -> tuple[bytes, str]:
        return await self._store().messages.read_file(thread_id, file_id)

    # -- assistants ----------------------------------------------------------
    async def list_assistants(self) -> list[dict[str, Any]]:
        page = await self._store().assistants.list(order="asc")
        return page.data

    async def get_assistant(self, assistant_id: str) -> dict[str, Any]:
        return await self._store().assistants.get(assistant_id)

    async def create_assistant(self, assistant: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in dict(assistant).items() if k not in _ASSISTANT_FIXED - {"id"}}
        assistant_id = fields.pop("id", None)
        # The store's create() takes the classic fields; the rest (parameters, reasoning_effort, tool_policy) follow in
        # an update.
        later = {k: fields.pop(k) for k in list(fields) if k in ("parameters", "reasoning_effort", "tool_policy")}
        store = self._store()
        doc = await store.assistants.create(**fields, assistant_id=assistant_id)
        if later:
            doc = await store.assistants.update(doc["id"], **later)
        return doc

    async def update_assistant(self, assistant_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        fields = dict(patch)
        fixed = sorted(k for k in fields if k in _ASSISTANT_FIXED)
        if fixed:
            raise InvalidArgumentError(f"cannot change {', '.join(fixed)} of an assistant")
        if not fields:
            return await self._store().assistants.get(assistant_id)
        return await self._store().assistants.update(assistant_id, **fields)

    async def delete_assistant(self, assistant_id: str) -> None:
        await self._store().assistants.delete(assistant_id)

    async def ensure_default_assistant(self) -> dict[str, Any]:
        """The default ``jan`` assistant, recreated if it was deleted."""
        return await self._store().assistants.ensure_default()


__all__ = ["ConversationalStoreExtension", "DEFAULT_ASSISTANT_ID"]
