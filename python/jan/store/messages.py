"""Messages of a thread: ``threads/<thread_id>/messages.jsonl``, one message per line.

Creating a message appends one line under the file's lock, so any number of
threads and processes can add messages to one conversation without losing
any. Updating or deleting a message rewrites the file atomically under the
same lock; the file therefore always holds one line per message in creation
order, which is also the format the Jan app reads.

A ``pending`` message (a reply still being generated) is leased by the
process that wrote it (:mod:`jan.store.leases`) until it reaches a final
status. Reading a thread finishes the pending messages nobody holds any more
(their process died): they become ``stopped`` with
``metadata.stop_reason: "interrupted"``, keeping the text saved so far.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._util import UNSET, as_millis, as_seconds, check_dict, field_type_error, now_ms, now_s
from .context import StoreContext, public
from .errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, StoreError
from .files import check_references, extract_documents, extract_images, read_file, write_files
from .ids import new_message_id, ulid_millis, validate_id
from .jsonl import MAX_JSONL_BYTES, append_jsonl, cut_jsonl, last_line_of, parse_jsonl, rewrite_jsonl
from .leases import LEASE_DIR_NAME, Leases
from .migrations import text_part
from .pagination import Order, Page, paginate
from jan.local_files import read_regular_file

logger = logging.getLogger("jan.store")

ROLES = ("user", "assistant", "system", "tool")
STATUSES = ("pending", "ready", "stopped", "error")
# Statuses after which the message will not change by itself any more.
FINAL_STATUSES = ("ready", "stopped", "error")

# Fields the store owns; callers cannot set them through ``**extra``.
_RESERVED = frozenset({"id", "object", "thread_id", "created", "created_at", "updated", "_schema_version"})
_MANAGED = frozenset({"role", "content", "status", "metadata", "assistant_id", "completed_at"})

KIND = "message"
#: ``metadata.stop_reason`` of a pending message whose writer died (crash, SIGKILL, power cut).
INTERRUPTED = "interrupted"


def normalize_content(content: Any) -> list[dict[str, Any]]:
    """Content as Jan stores it: a list of parts, text parts as ``{"value", "annotations"}``.

    A plain string becomes one text part; OpenAI's input shape
    ``{"type": "text", "text": "..."}`` is accepted too. Images sent as ``data:`` URLs are
    turned into ``image_file`` parts (files in the thread folder) by :mod:`jan.store.files`
    before this.
    """
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, (list, tuple)):
        raise InvalidArgumentError(f"content must be a string or a list of parts, not {type(content).__name__}")
    parts = []
    for part in content:
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise InvalidArgumentError("each content part must be an object with a string 'type'")
        part = dict(part)
        if part["type"] in ("text", "reasoning"):
            text = part.get("text")
            if isinstance(text, str):
                part["text"] = {"value": text, "annotations": []}
            elif isinstance(text, Mapping) and isinstance(text.get("value"), str):
                part["text"] = {"annotations": [], **text}
            else:
                raise InvalidArgumentError(f"a {part['type']} part needs 'text' as a string or {{'value': str}}")
        parts.append(part)
    return parts


def _check_status(status: Any) -> str:
    if status not in STATUSES:
        raise InvalidArgumentError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


def _check_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(extra) & (_RESERVED | _MANAGED))
    if bad:
        raise InvalidArgumentError(f"cannot set {', '.join(bad)} this way")
    return dict(extra)



#: The fields of a message line and their types: a line with another type there is skipped and reported, as one
#: that does not parse (and kept in a copy when the file is rewritten).
_MESSAGE_TYPES = {"role": "str", "content": "list", "status": "str", "metadata": "dict", "assistant_id": "str",
                  "run_id": "str", "attachments": "list", "created": "number", "created_at": "number",
                  "updated": "number", "completed_at": "number"}


def message_sort_key(message: dict[str, Any]) -> tuple[int, str]:
    """Where a message sorts in its thread (kept in the order written, which is creation order): by ``created``
    (ms), ties by id. Used only to place a cursor whose message is gone."""
    return as_millis(message.get("created")) or as_millis(message.get("created_at")) or 0, message["id"]


def message_sort_key_of_id(message_id: str) -> tuple[int, str] | None:
    """:func:`message_sort_key` of a deleted message, from its id: its ``created`` is read after its id is made
    (the same millisecond or later), so the messages written after it sort after this key and those before it,
    before."""
    millis = ulid_millis(message_id, "msg_")
    return None if millis is None else (millis, message_id)

class MessageStore:
    """CRUD for messages; every method takes the thread id first."""

    def __init__(self, ctx: StoreContext, on_change: Callable[[str], None] | None = None) -> None:
        self._ctx = ctx
        # Lets the thread store bump ``updated``; called after the message lock is released.
        self._on_change = on_change
        #: Which pending messages a live process is still writing.
        self.leases = Leases(ctx.root / LEASE_DIR_NAME)

    # --- paths ---

    def _thread_dir(self, thread_id: str) -> Path:
        return self._ctx.resource_dir("threads", thread_id, "thread")

    def path(self, thread_id: str) -> Path:
        """Where a thread's ``messages.jsonl`` lives (the thread need not exist)."""
        return self._thread_dir(thread_id) / "messages.jsonl"

    def _require_thread(self, thread_id: str) -> Path:
        directory = self._thread_dir(thread_id)
        # a damaged thread.json (left in place) makes its messages "damaged" too, as a missing one "not found"
        self._ctx.require_intact(directory / "thread.json", "thread", thread_id)
        return directory / "messages.jsonl"

    # --- reading ---

    def _read(self, path: Path, thread_id: str) -> tuple[list[dict[str, Any]], bytes, bool, bool]:
        """Parse the file: messages in creation order (latest state of each, upgraded),
        the raw bytes, whether some lines were unreadable, and whether any line was an old version.
        """
        try:
            data = read_regular_file(path, MAX_JSONL_BYTES)
        except FileNotFoundError:
            return [], b"", False, False
        content = parse_jsonl(data)
        for number, error in content.bad_lines:
            self._ctx.report(path, f"line {number} is not a JSON object and was skipped: {error}")
        if content.torn_tail:
            self._ctx.report(path, "last line is incomplete (interrupted write) and was ignored")
        migrations = self._ctx.migrations
        records: list[dict[str, Any]] = []
        index: dict[str, int] = {}
        stale = False
        bad = bool(content.bad_lines)
        for record in content.records:
            message_id = record.get("id")
            if not isinstance(message_id, str) or not message_id:
                self._ctx.report(path, "a line without an 'id' was skipped")
                bad = True
                continue
            if migrations.needs_upgrade(KIND, record):
                record = migrations.upgrade(KIND, record)[0]
                stale = True
            wrong = field_type_error(record, _MESSAGE_TYPES)
            if wrong is not None:  # (a hand edit's "content": 5 was served, or failed the wire object with a 500)
                self._ctx.report(path, f"message {message_id!r} was skipped: its {wrong}")
                bad = True
                continue
            record["thread_id"] = thread_id  # the folder is the authority
            if message_id in index:
                # Latest state wins, position of first appearance kept.
                records[index[message_id]] = record
            else:
                index[message_id] = len(records)
                records.append(record)
        return records, data, bad, stale

    def _load(self, path: Path, thread_id: str) -> list[dict[str, Any]]:
        """Lock-free read; old-version lines are upgraded and orphaned pending messages
        finished, both written back under the lock."""
        records, _, _, stale = self._read(path, thread_id)
        if stale or self._orphans(records):
            with self._ctx.lock(path):
                records, raw, bad, stale = self._read(path, thread_id)
                orphans = self._orphans(records)
                for i in orphans:
                    records[i] = self._interrupted(records[i])
                if stale or orphans:
                    try:
                        self._rewrite(path, records, raw, bad)
                    except OSError as exc:
                        # A read must not need a write: on a full disk or a read-only folder the thread is still
                        # listed, as repaired here (the file keeps its old bytes, atomically); a later read
                        # writes the repair back once it can.
                        logger.warning("data folder: %s: could not write back the finished/upgraded messages "
                                       "(%s); served as read", self._ctx.relpath(path), exc)
        return [public(r) for r in records]

    def end_orphans(self) -> list[str]:
        """Save each ``pending`` message no live process is writing (its writer died: a crash, kill -9) as a read
        finds it (``stopped``, ``metadata.stop_reason: "interrupted"``), thread by thread under the thread's lock;
        the threads it changed. Called where a dead process's lease was found (:meth:`DataFolder.__init__`): before,
        such a message stayed ``pending`` on disk until something read its thread. Threads that cannot be read are
        left to their next read (which sets a damaged one aside)."""
        changed = []
        try:
            folders = sorted(p for p in (self._ctx.root / "threads").iterdir() if p.is_dir())
        except OSError:
            return changed
        for folder in folders:
            path = folder / "messages.jsonl"
            try:
                if b'"pending"' not in read_regular_file(path, MAX_JSONL_BYTES):
                    continue  # (most threads: no message of theirs was being written)
                records, _, _, _ = self._read(path, folder.name)
                if self._orphans(records):
                    self._load(path, folder.name)
                    changed.append(folder.name)
            except (OSError, ValueError, StoreError) as exc:  # (a lock timed out, a damaged thread)
                logger.info("data folder: %s: its interrupted replies are ended when it is next read (%s)",
                            self._ctx.relpath(path), exc)
        return changed

    def _orphans(self, records: list[dict[str, Any]]) -> list[int]:
        """Positions of pending messages that no live process is writing."""
        return [i for i, r in enumerate(records) if r.get("status") == "pending" and not self.leases.is_live(r["id"])]

    @staticmethod
    def _interrupted(record: dict[str, Any]) -> dict[str, Any]:
        metadata = dict(record.get("metadata") or {}) if isinstance(record.get("metadata"), dict) else {}
        metadata.setdefault("stop_reason", INTERRUPTED)
        metadata["interrupted_at"] = now_s()
        return {**record, "status": "stopped", "metadata": metadata, "updated": now_ms(),
                "completed_at": record.get("completed_at") or now_s()}

    def _rewrite(self, path: Path, records: list[dict[str, Any]], raw: bytes, had_bad_lines: bool) -> None:
        # Lines that did not parse would vanish in the rewrite; keep the old file's bytes.
        if had_bad_lines:
            self._ctx.keep_copy(path, raw, "unreadable lines dropped on rewrite; original kept")
        rewrite_jsonl(path, [self._ctx.stamp(KIND, r) for r in records])

    def list(self, thread_id: str, *, limit: int | None = None, order: Order = "asc",
             after: str | None = None, before: str | None = None,
             where: Callable[[dict[str, Any]], bool] | None = None) -> Page:
        """Messages of a thread in creation order (``order="asc"``, the default) or newest first.

        ``limit=None`` returns all; ``after``/``before`` are message ids (see
        :func:`jan.store.pagination.paginate`). ``where`` keeps only the messages
        it accepts, before the page is cut (the whole file is read anyway), so the
        cursors and ``limit`` page the filtered list. Raises :class:`NotFoundError`
        for an unknown thread.
        """
        path = self._require_thread(thread_id)
        records = self._load(path, thread_id)
        # a cursor is placed by its id only once its message is gone (deleted since the client read it); one still
        # in the thread that ``where`` leaves out is no place in this list, and refused
        stored = {r["id"] for r in records}
        if where is not None:
            records = [r for r in records if where(r)]
        return paginate(records, limit=limit, order=order, after=after, before=before, key=message_sort_key,
                        key_of_id=lambda cursor: None if cursor in stored else message_sort_key_of_id(cursor))

    def get(self, thread_id: str, message_id: str) -> dict[str, Any]:
        """One message; :class:`NotFoundError` if the thread or the message is unknown."""
        validate_id(message_id, "message id")
        path = self._require_thread(thread_id)
        for record in self._load(path, thread_id):
            if record["id"] == message_id:
                return record
        raise NotFoundError("message", message_id)

    # --- writing ---

    def build(self, thread_id: str, role: str, content: Any, *, assistant_id: str | None = None,
              status: str = "ready", metadata: Mapping[str, Any] | None = None,
              message_id: str | None = None, created_at: int | None = None,
              **extra: Any) -> dict[str, Any]:
        """A complete, validated message document (not yet stored)."""
        if role not in ROLES:
            raise InvalidArgumentError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        status = _check_status(status)
        if assistant_id is not None:
            validate_id(assistant_id, "assistant id")
        if message_id is None:
            message_id = new_message_id()
        else:
            validate_id(message_id, "message id")
        if created_at is None:
            created_ms = now_ms()
            created_s = created_ms // 1000
        else:
            seconds = as_seconds(created_at)
            if seconds is None:
                raise InvalidArgumentError("created_at must be a number of seconds")
            created_s = seconds
            created_ms = created_s * 1000
        doc: dict[str, Any] = {
            "id": message_id,
            "object": "thread.message",
            "thread_id": thread_id,
            "assistant_id": assistant_id,
            "role": role,
            "content": normalize_content(content),
            "status": status,
            "created_at": created_s,
            "created": created_ms,
            "updated": created_ms,
            "completed_at": created_s if status in FINAL_STATUSES else None,
            "metadata": check_dict("metadata", metadata),
        }
        doc.update(_check_extra(extra))
        return doc

    def build_from(self, thread_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`build` from a dict such as ``{"role": "user", "content": "hi"}``."""
        if not isinstance(message, Mapping):
            raise InvalidArgumentError("each message must be an object")
        fields = dict(message)
        for key in ("object", "thread_id", "created", "updated", "_schema_version"):
            fields.pop(key, None)
        if "id" in fields:
            fields["message_id"] = fields.pop("id")
        if "role" not in fields or "content" not in fields:
            raise InvalidArgumentError("a message needs 'role' and 'content'")
        fields.pop("completed_at", None)
        return self.build(thread_id, fields.pop("role"), fields.pop("content"), **fields)

    def create(self, thread_id: str, role: str, content: Any, *, assistant_id: str | None = None,
               status: str = "ready", metadata: Mapping[str, Any] | None = None,
               message_id: str | None = None, created_at: int | None = None,
               **extra: Any) -> dict[str, Any]:
        """Append a message to a thread and return it.

        ``content`` is a string or a list of content parts. ``status`` is one of
        ``pending``/``ready``/``stopped``/``error`` (a streaming reply starts
        ``pending``). Extra keyword arguments are stored as extra fields
        (e.g. ``attachments``). Raises :class:`NotFoundError` for an unknown
        thread, :class:`AlreadyExistsError` for a taken ``message_id``.
        """
        validate_id(thread_id, "thread id")
        content, files = extract_images(content)
        check_references(content, files, self._thread_dir(thread_id))
        if extra.get("attachments") is not None:  # documents' text kept as thread files, as images are
            extra["attachments"], documents = extract_documents(extra["attachments"], files,
                                                                self._thread_dir(thread_id))
            files.update(documents)
        doc = self.build(thread_id, role, content, assistant_id=assistant_id, status=status,
                         metadata=metadata, message_id=message_id, created_at=created_at, **extra)
        self._write_files(thread_id, files)
        self.append(thread_id, [doc], check_ids=message_id is not None)
        return doc

    def _write_files(self, thread_id: str, files: Mapping[str, bytes]) -> None:
        # Images first: a message never references a file that is not there yet.
        if files:
            self._require_thread(thread_id)
            write_files(self._thread_dir(thread_id), files)

    def read_file(self, thread_id: str, file_id: str) -> tuple[bytes, str]:
        """``(bytes, mime_type)`` of an image saved with one of the thread's messages
        (:mod:`jan.store.files`). Raises :class:`NotFoundError` for an unknown thread or file,
        :class:`InvalidArgumentError` for a malformed file id."""
        validate_id(thread_id, "thread id")
        self._require_thread(thread_id)
        return read_file(self._thread_dir(thread_id), file_id)

    def append(self, thread_id: str, docs: Sequence[dict[str, Any]], *, check_ids: bool = True) -> None:
        """Append already-built documents (see :meth:`build`) in one write."""
        if not docs:
            return
        path = self._thread_dir(thread_id) / "messages.jsonl"
        stamped = [self._ctx.stamp(KIND, d) for d in docs]
        # Lease pending replies before they exist on disk, so no reader ever sees one unleased.
        pending = [d["id"] for d in docs if d.get("status") == "pending"]
        for message_id in pending:
            self.leases.take(message_id)
        try:
            self._append_locked(path, thread_id, docs, stamped, check_ids)
        except BaseException:
            for message_id in pending:
                self.leases.release(message_id)
            raise
        self._changed(thread_id)

    def _append_locked(self, path: Path, thread_id: str, docs: Sequence[dict[str, Any]],
                       stamped: list[dict[str, Any]], check_ids: bool) -> None:
        with self._ctx.lock(path):
            self._require_thread(thread_id)
            if check_ids:
                existing = {r["id"] for r in self._read(path, thread_id)[0]}
                for doc in docs:
                    if doc["id"] in existing:
                        raise AlreadyExistsError("message", doc["id"])
                    existing.add(doc["id"])
            repaired = append_jsonl(path, stamped)
            if repaired and repaired[0] == "truncated":
                self._ctx.report(path, f"cut off {repaired[1]} bytes of an interrupted write before appending")

    def update(self, thread_id: str, message_id: str, *, content: Any = UNSET, status: Any = UNSET,
               metadata: Any = UNSET, assistant_id: Any = UNSET, **extra: Any) -> dict[str, Any]:
        """Change a message's content, status, metadata (replaced, not merged) or extra fields.

        Moving to a final status (``ready``/``stopped``/``error``) sets
        ``completed_at`` if it was not set; moving back to ``pending`` clears it.
        Returns the updated message.
        """
        validate_id(message_id, "message id")
        changes: dict[str, Any] = _check_extra(extra)
        if content is not UNSET:
            content, files = extract_images(content)
            check_references(content, files, self._thread_dir(thread_id))
            changes["content"] = normalize_content(content)
            self._write_files(thread_id, files)
        if status is not UNSET:
            changes["status"] = _check_status(status)
        if metadata is not UNSET:
            changes["metadata"] = check_dict("metadata", metadata)
        if assistant_id is not UNSET:
            if assistant_id is not None:
                validate_id(assistant_id, "assistant id")
            changes["assistant_id"] = assistant_id
        path = self._thread_dir(thread_id) / "messages.jsonl"
        with self._ctx.lock(path):
            self._require_thread(thread_id)
            records, raw, bad, _ = self._read(path, thread_id)
            i = next((n for n, r in enumerate(records) if r["id"] == message_id), None)
            if i is None:
                raise NotFoundError("message", message_id)
            updated = {**records[i], **changes, "updated": now_ms()}
            if updated.get("status") == "pending":
                # back to pending (a resumed or retried reply): it has not ended, and when it does its end is the
                # new one (kept, an interrupted reply completed later told the interruption's time as its end)
                updated["completed_at"] = None
            elif updated.get("status") in FINAL_STATUSES and not updated.get("completed_at"):
                updated["completed_at"] = now_s()
            records[i] = updated
            if updated.get("status") == "pending":
                self.leases.take(message_id)  # back to pending (e.g. a retried reply): this process writes it
            try:
                self._rewrite(path, records, raw, bad)
            except OSError:
                if updated.get("status") != "pending":
                    # Its writer ends it, but the disk refused the end (full, read-only): the lease goes all the
                    # same, so every reader finishes it as interrupted (_load), not in_progress until this
                    # process ends.
                    self.leases.release(message_id)
                raise
        if updated.get("status") != "pending":
            self.leases.release(message_id)
        self._changed(thread_id)
        return public(updated)

    def delete(self, thread_id: str, message_id: str) -> dict[str, Any]:
        """Remove a message; returns ``{"id", "object": "thread.message.deleted", "deleted": True}``."""
        validate_id(message_id, "message id")
        path = self._thread_dir(thread_id) / "messages.jsonl"
        with self._ctx.lock(path):
            self._require_thread(thread_id)
            records, raw, bad, _ = self._read(path, thread_id)
            kept = [r for r in records if r["id"] != message_id]
            if len(kept) == len(records):
                raise NotFoundError("message", message_id)
            last = None if bad else last_line_of(raw, message_id)
            if last is not None:
                # the last one appended (a turn a refused write takes out again): cut off, which a full disk allows
                cut_jsonl(path, last)
            else:
                self._rewrite(path, kept, raw, bad)
        self.leases.release(message_id)
        self._changed(thread_id)
        return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

    def _changed(self, thread_id: str) -> None:
        if self._on_change is not None:
            self._on_change(thread_id)
