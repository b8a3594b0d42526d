"""Threads (conversations): ``threads/<thread_id>/thread.json`` plus its ``messages.jsonl``."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._util import UNSET, as_millis, check_dict, check_list, check_str, field_type_error, now_ms
from .atomic import atomic_write_bytes
from .context import StoreContext, read_collection, register_shape
from .errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, StoreError
from .files import check_references, extract_documents, extract_images, write_files
from .ids import new_thread_id, validate_id
from .jsonl import encode_lines
from .messages import MessageStore
from .migrations import MigrationError
from .pagination import Order, Page, paginate

logger = logging.getLogger("jan.store")

KIND = "thread"
DEFAULT_TITLE = "New Thread"
#: Deleted threads whose place in the list this store remembers (a few bytes each): enough for a client that
#: deletes every thread it pages through, bounded for one that never stops.
GONE_KEPT = 4096


def thread_sort_key(thread: Mapping[str, Any]) -> tuple[int, str]:
    """Where a thread lists: by its last update (ms), ties by id."""
    return as_millis(thread.get("updated")) or 0, thread["id"]


def normalize_assistants(assistants: Any) -> list[dict[str, Any]]:
    """Validate a thread's ``assistants`` list: objects, each ``assistant_id`` a valid id."""
    out = []
    for entry in check_list("assistants", assistants):
        entry = check_dict("assistants[]", entry)
        if "assistant_id" in entry:
            validate_id(entry["assistant_id"], "assistant id")
        if "model" in entry and entry["model"] is not None and not isinstance(entry["model"], Mapping):
            raise InvalidArgumentError("assistants[].model must be an object")
        # what a read of thread.json checks (_thread_shape): a thread written with `"instructions": 7` read back damaged
        error = field_type_error(entry, _ASSISTANT_TYPES) or (
            field_type_error(entry["model"], {"id": "str"}) if isinstance(entry.get("model"), Mapping) else None)
        if error is not None:
            raise InvalidArgumentError(f"assistants[].{'model.' if error.startswith('id ') else ''}{error}")
        out.append(entry)
    return out


#: The fields of a thread.json and their types (:func:`_thread_shape`).
_THREAD_TYPES = {"title": "str", "assistants": "list", "created": "number", "created_at": "number", "updated": "number",
                 "metadata": "dict"}


#: The fields of a thread's assistant entry jan writes (``jan chat``, a run) and their types.
_ASSISTANT_TYPES = {"assistant_id": "str", "assistant_name": "str", "instructions": "str", "model": "dict"}


@register_shape(KIND)
def _thread_shape(doc: dict[str, Any]) -> str | None:
    """What makes a thread.json unusable: a field of another type than jan writes (a hand edit's ``"title": 5``,
    ``"metadata": "x"``) was served as is, or failed later readers (the listing's sort, the wire object)."""
    error = field_type_error(doc, _THREAD_TYPES)
    if error is None and not all(isinstance(entry, dict) for entry in doc.get("assistants") or ()):
        error = "assistants is not a list of objects"
    # the fields of an assistant entry that jan writes and reads back: `"instructions": 7` failed `jan chat --thread`
    # (and `jan threads export`) with a traceback, as a system prompt that is no text
    for i, entry in enumerate(doc.get("assistants") or ()) if error is None else ():
        error = field_type_error(entry, _ASSISTANT_TYPES) or (
            field_type_error(entry["model"], {"id": "str"}) if isinstance(entry.get("model"), dict) else None)
        if error is not None:
            return f"assistants[{i}].{'model.' if error.startswith('id ') else ''}{error}"
    return error


class ThreadStore:
    """CRUD and listing for threads. Messages are in :class:`~jan.store.messages.MessageStore`."""

    def __init__(self, ctx: StoreContext, messages: MessageStore) -> None:
        self._ctx = ctx
        self._messages = messages
        # The sort keys of threads this store deleted, newest last: a list cursor naming one is placed where it
        # was (as the other lists place theirs, from their ids' times: a thread lists by its last update, which
        # its id does not tell). A thread another process deleted is not known here: its cursor stays a 400.
        self._gone: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._gone_lock = threading.Lock()

    def _dir(self, thread_id: str) -> Path:
        return self._ctx.resource_dir("threads", thread_id, "thread")

    def create(self, title: str = DEFAULT_TITLE, *, assistants: Sequence[Mapping[str, Any]] | None = None,
               metadata: Mapping[str, Any] | None = None,
               messages: Sequence[Mapping[str, Any]] | None = None,
               thread_id: str | None = None) -> dict[str, Any]:
        """Create a thread, optionally with initial messages (``[{"role", "content", ...}]``).

        The thread appears in listings only once ``thread.json`` is written,
        after its messages, so a crash never leaves a listed thread without
        its messages. Raises :class:`AlreadyExistsError` for a taken ``thread_id``.
        """
        thread_id = new_thread_id() if thread_id is None else validate_id(thread_id, "thread id")
        created = now_ms()
        doc = {
            "id": thread_id,
            "object": "thread",
            "title": check_str("title", title),
            "assistants": normalize_assistants(assistants),
            "created": created,
            "created_at": created // 1000,
            "updated": created,
            "metadata": check_dict("metadata", metadata),
        }
        files: dict[str, bytes] = {}
        message_docs = []
        for k, m in enumerate(check_list("messages", messages)):
            if isinstance(m, Mapping) and "content" in m:
                try:
                    content, found = extract_images(m["content"])
                    files.update(found)
                    check_references(content, files, None)  # a new thread has no images but the ones it comes with
                    attachments, found = extract_documents(m.get("attachments"), files, None)
                    files.update(found)
                except InvalidArgumentError as exc:  # named as the request has it: messages[k].content[i]...
                    raise exc.under(f"messages[{k}].") from None
                m = {**m, "content": content}
                if attachments is not None:
                    m["attachments"] = attachments
            message_docs.append(self._messages.build_from(thread_id, m))
        if len({m["id"] for m in message_docs}) != len(message_docs):
            raise InvalidArgumentError("initial messages have duplicate ids")
        # Encode everything first: a bad value must fail before the folder exists.
        thread_bytes = self._ctx.encode_doc(KIND, doc)
        lines = encode_lines(self._ctx.stamp("message", m) for m in message_docs)
        directory = self._dir(thread_id)
        thread_json, messages_path = directory / "thread.json", directory / "messages.jsonl"
        with self._ctx.lock(thread_json, messages_path):
            directory.parent.mkdir(parents=True, exist_ok=True)
            try:
                directory.mkdir()
            except FileExistsError:
                raise AlreadyExistsError(KIND, thread_id) from None
            try:
                write_files(directory, files)
                atomic_write_bytes(messages_path, lines)
                atomic_write_bytes(thread_json, thread_bytes)
            except BaseException:
                self._ctx.remove_resource(directory)
                raise
        return doc

    def _read(self, thread_id: str) -> dict[str, Any]:
        # As every other kind's get: a thread.json set aside earlier (by a listing, another process) is "damaged,
        # set aside as ...", not a bare "not found" that sends the user looking for a typo; one no migration can
        # read is refused by name, not a 500. (The folder name is the id every path is built from.)
        return self._ctx.get_doc(self._dir(thread_id) / "thread.json", KIND, thread_id)

    def get(self, thread_id: str) -> dict[str, Any]:
        """One thread; :class:`NotFoundError` if unknown."""
        return self._read(thread_id)

    def exists(self, thread_id: str) -> bool:
        """Whether the thread has a ``thread.json`` (no parsing)."""
        return (self._dir(thread_id) / "thread.json").is_file()

    def list(self, *, limit: int | None = None, order: Order = "desc",
             after: str | None = None, before: str | None = None) -> Page:
        """Threads by last update, newest first by default (ties broken by id).

        Damaged ``thread.json`` files are moved aside, recorded in
        ``problems`` and left out; the rest are listed.
        """
        threads = read_collection(self._ctx, "threads", "thread.json", KIND)
        threads.sort(key=thread_sort_key)
        with self._gone_lock:
            gone = dict(self._gone)
        listed = {t["id"] for t in threads}
        # (one deleted and made again under its id since is no cursor of a gone thread)
        return paginate(threads, limit=limit, order=order, after=after, before=before, key=thread_sort_key,
                        key_of_id=lambda cursor: None if cursor in listed else gone.get(cursor))

    def update(self, thread_id: str, *, title: Any = UNSET, metadata: Any = UNSET,
               assistants: Any = UNSET) -> dict[str, Any]:
        """Change title, metadata (replaced, as OpenAI does) and/or assistants; bumps ``updated``."""
        changes: dict[str, Any] = {}
        if title is not UNSET:
            changes["title"] = check_str("title", title)
        if metadata is not UNSET:
            changes["metadata"] = check_dict("metadata", metadata)
        if assistants is not UNSET:
            changes["assistants"] = normalize_assistants(assistants)
        path = self._dir(thread_id) / "thread.json"
        with self._ctx.lock(path):
            doc = self._read(thread_id)
            doc.update(changes)
            doc["updated"] = max(now_ms(), (as_millis(doc.get("updated")) or 0) + 1)
            self._ctx.write_doc(path, KIND, doc)
        return doc

    def touch(self, thread_id: str) -> None:
        """Bump ``updated`` after its messages changed; never raises (the message is already saved)."""
        try:
            path = self._dir(thread_id) / "thread.json"
            with self._ctx.lock(path):
                doc = self._ctx.read_doc(path, KIND)
                if doc is None:
                    return
                doc["updated"] = max(now_ms(), (as_millis(doc.get("updated")) or 0) + 1)
                self._ctx.write_doc(path, KIND, doc)
        except (StoreError, OSError) as exc:
            logger.warning("data folder: could not update thread %s timestamp: %s", thread_id, exc)

    def delete(self, thread_id: str) -> dict[str, Any]:
        """Delete a thread and its messages; returns ``{"id", "object": "thread.deleted", "deleted": True}``."""
        directory = self._dir(thread_id)
        place = self._sort_key_of(thread_id)  # (read before the lock: reading a damaged file takes it)
        with self._ctx.lock(directory / "thread.json", directory / "messages.jsonl"):
            if not directory.is_dir():
                raise NotFoundError(KIND, thread_id)
            pending = self._pending_replies(directory / "messages.jsonl", thread_id)
            self._ctx.remove_resource(directory)
        if place is not None:
            with self._gone_lock:
                self._gone[thread_id] = place
                self._gone.move_to_end(thread_id)
                while len(self._gone) > GONE_KEPT:
                    self._gone.popitem(last=False)
        # A reply this process was writing when its thread went: its lease (which tells other processes it is being
        # written) goes too, or its file outlived the thread until this process ended.
        for message_id in pending:
            if self._messages.leases.holds(message_id):
                self._messages.leases.release(message_id)
        return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    def _sort_key_of(self, thread_id: str) -> tuple[int, str] | None:
        """:func:`thread_sort_key` of a thread about to be deleted; None when its file cannot be read."""
        try:
            doc = self._ctx.read_doc(self._dir(thread_id) / "thread.json", KIND)
        except (OSError, StoreError, MigrationError):
            return None
        return None if doc is None else thread_sort_key({**doc, "id": thread_id})

    def _pending_replies(self, path: Path, thread_id: str) -> list[str]:
        """Ids of the thread's messages still being written (``pending``); none when they cannot be read."""
        try:
            records = self._messages._read(path, thread_id)[0]
        except (OSError, StoreError):
            return []
        return [r["id"] for r in records if r.get("status") == "pending" and isinstance(r.get("id"), str)]
