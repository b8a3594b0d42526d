"""Files uploaded through OpenAI's Files API: ``files/<file_id>/content`` plus ``files/<file_id>/file.json``.

``file.json`` holds the file object (``id``, ``bytes``, ``created_at``, ``filename``, ``purpose``,
``expires_at``) and what jan learnt while the bytes streamed in (their SHA-256, their media type), so a
file is never read again to describe it.

An upload may be hundreds of megabytes, so it never sits in memory: :meth:`UploadStore.writer` gives an
:class:`UploadWriter` whose bytes go to a hidden temporary file in ``files/`` (hashed as they go, refused
past a size limit); :meth:`UploadStore.commit` renames it into its own folder as ``content`` and writes
``file.json`` last. ``file.json`` is the commit point: a folder without one is no file (listings skip it,
lookups answer not found), so a crash at any step leaves nothing half-visible; the temporary file
carries its writer's PID and is swept at the next start like every interrupted write
(:func:`jan.store._trash.sweep_temp_files`), and :meth:`UploadStore.sweep` removes folders a crash left
without their ``file.json`` and deletions it interrupted.

Ids are ``file-<ULID>``: safe folder names that sort by creation time. An id that could not be one of
these is simply not found (no path is built from it). File names sent by clients are kept as data only.

Every method here does file I/O: call them from a worker thread in asyncio code.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from jan.core.fs import fsync_dir
from jan.image_types import sniff_image

from ._trash import sweep_trash
from ._util import now_s
from .atomic import atomic_write_bytes
from .context import StoreContext, iter_resource_dirs, read_doc_or_none, register_shape
from .errors import InvalidArgumentError, NotFoundError
from jan.errors import not_found_message
from .hashed_file import HashedTempFile
from .ids import new_ulid, ulid_millis
from .locks import DEFAULT_TIMEOUT
from .migrations import DEFAULT_MIGRATIONS
from .pagination import Order, Page, paginate
from .problems import ProblemLog

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "PURPOSES", "STORED_PURPOSES", "UPLOADS_DIR", "UploadStore", "UploadTooLargeError", "UploadWriter", "clean_filename",
           "is_upload_id", "new_upload_id"]

logger = logging.getLogger("jan.store")

UPLOADS_DIR = "files"
KIND = "file"
CONTENT = "content"
META = "file.json"
#: The largest upload kept unless told otherwise (OpenAI's limit): ``jan serve --max-upload-bytes`` sets the
#: server's (ServerConfig.max_upload_bytes), and `jan files upload` without a server keeps to this one.
DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
#: OpenAI's upload purposes (jan itself reads the files of ``assistants``, ``vision`` and ``user_data``).
PURPOSES = ("assistants", "vision", "user_data", "batch", "fine-tune", "evals")
#: The purposes a stored file may have: the uploadable ones, and ``batch_output``, which only jan writes (a batch's
#: output and error files, as OpenAI's are).
STORED_PURPOSES = (*PURPOSES, "batch_output")
#: The fields of OpenAI's file object; ``file.json`` keeps jan's own beside them.
PUBLIC_FIELDS = ("id", "object", "bytes", "created_at", "filename", "purpose", "status", "expires_at",
                 "status_details")
#: The file object's fields with the media type the file is served with (Anthropic's file metadata tells it).
TYPED_FIELDS = (*PUBLIC_FIELDS, "media_type")
MAX_FILENAME_CHARS = 255
_UPLOAD_ID = re.compile(r"file-[0-9A-Za-z]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Bytes kept from the start of an upload to tell its type by its magic bytes (:func:`jan.image_types.sniff_image`).
_HEAD_BYTES = 16


def new_upload_id() -> str:
    """A new ``file-<ULID>`` id (time-sortable, a valid folder name)."""
    return f"file-{new_ulid()}"


def is_upload_id(value: Any) -> bool:
    """Whether ``value`` could name an upload (``file-`` then letters and digits): only such ids reach a path."""
    return isinstance(value, str) and _UPLOAD_ID.fullmatch(value) is not None


def clean_filename(name: Any) -> str:
    """A client's file name as kept: its last path component (browsers send ``C:\\fakepath\\x.png``), without
    control characters, at most :data:`MAX_FILENAME_CHARS` characters; ``upload`` when nothing is left."""
    text = name if isinstance(name, str) else ""
    text = re.split(r"[/\\]", text)[-1]
    text = _CONTROL.sub("", text).strip()[:MAX_FILENAME_CHARS]
    return text or "upload"



def file_sort_key(doc: dict[str, Any]) -> tuple[int, str]:
    """Where a file lists: by creation (seconds), ties by id."""
    return doc.get("created_at") if isinstance(doc.get("created_at"), int) else 0, doc["id"]


def file_sort_key_of_id(file_id: str) -> tuple[int, str] | None:
    """:func:`file_sort_key` of a deleted file, from its id: its ``created_at`` is read just before its id is made (the
    same second, or the one before), so a cursor the SDK pages on after deleting the file keeps its place."""
    millis = ulid_millis(file_id, "file-")
    return None if millis is None else (millis // 1000, file_id)

class UploadTooLargeError(InvalidArgumentError):
    """An upload went past the size limit it was written under (the server answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes, the most this server stores", param="file",
                         code="file_too_large")
        self.limit = limit


class UploadWriter(HashedTempFile):
    """Bytes written here go to a hidden temporary file in ``files/``, hashed and counted as they come;
    past ``max_bytes`` a write raises :class:`UploadTooLargeError` (and the file is removed). Hand it to
    :meth:`UploadStore.commit` when the upload is whole, or :meth:`discard` it.
    Not thread-safe: one writer, one thread at a time (calls may come from different threads in turn)."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(folder, "upload")
        self.max_bytes = max_bytes
        self.head = b""
        self.closed = False
        # A write may still be running in a worker thread when the upload breaks off: discard() waits for it
        # rather than closing the file under it.
        self._lock = threading.RLock()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            if self.closed:
                raise ValueError("the upload was discarded")
            if self.size + len(data) > self.max_bytes:
                self.discard()
                raise UploadTooLargeError(self.max_bytes)
            if len(self.head) < _HEAD_BYTES:
                self.head += bytes(data[:_HEAD_BYTES - len(self.head)])
            super().write(data)

    def finish(self) -> None:
        """Flush and fsync the bytes (before they are renamed into place)."""
        with self._lock:
            self.sync()

    def committed(self) -> None:
        """The temporary file was renamed into place: nothing is left to discard."""
        with self._lock:
            self.closed = True

    def discard(self) -> None:
        """Close and remove the temporary file (safe to call more than once, and after a commit)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self.remove()


class UploadStore:
    """The uploaded files of one data folder (``<root>/files``, made with the first upload)."""

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float | None = DEFAULT_TIMEOUT,
                 problems: ProblemLog | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.folder = self.root / UPLOADS_DIR
        self._ctx = StoreContext(self.root, migrations=DEFAULT_MIGRATIONS, problems=problems or ProblemLog(),
                                 lock_timeout=lock_timeout)

    @property
    def problems(self) -> ProblemLog:
        """Damaged ``file.json`` files found (and set aside) so far."""
        return self._ctx.problems

    def _dir(self, file_id: str) -> Path:
        if not is_upload_id(file_id):
            raise NotFoundError(KIND, str(file_id)[:80])  # no path is built from an id that is none of ours
        return self._ctx.resource_dir(UPLOADS_DIR, file_id, KIND)

    # -- writing ---------------------------------------------------------------------------------------
    def writer(self, max_bytes: int) -> UploadWriter:
        """A writer for a new upload of at most ``max_bytes`` bytes."""
        return UploadWriter(self.folder, max_bytes)

    def commit(self, writer: UploadWriter, *, filename: str, purpose: str,
               expires_after: int | None = None, fields: Sequence[str] = PUBLIC_FIELDS) -> dict[str, Any]:
        """Keep what ``writer`` holds as a new file; returns its file object. ``filename`` is the client's (kept
        as data, :func:`clean_filename`); the ``Content-Type`` it is served with is an image's own (told by its
        bytes) or the one its name's extension gives; ``expires_after``: seconds from its creation until it goes
        (None: kept until deleted); ``fields``: those of the file object returned.
        The writer's temporary file is gone afterwards, committed or not."""
        if purpose not in STORED_PURPOSES:
            writer.discard()
            raise InvalidArgumentError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}",
                                       param="purpose", code="invalid_value")
        created = now_s()
        file_id = new_upload_id()
        name = clean_filename(filename)
        media_type = sniff_image(writer.head) or mimetypes.guess_type(name, strict=False)[0]
        doc = {"id": file_id, "object": "file", "bytes": writer.size, "created_at": created,
               "filename": name, "purpose": purpose, "status": "processed",
               "expires_at": None if expires_after is None else created + expires_after, "status_details": None,
               "sha256": writer.hexdigest, "media_type": media_type or "application/octet-stream"}
        data = self._ctx.encode_doc(KIND, doc)  # a bad value fails before any disk change
        directory = self._dir(file_id)
        meta = directory / META
        try:
            writer.finish()
            with self._ctx.lock(meta):
                directory.mkdir(parents=True)
                try:
                    os.replace(writer.temp_path, directory / CONTENT)
                    writer.committed()
                    fsync_dir(directory)
                    atomic_write_bytes(meta, data)  # last: the file exists from here on
                except BaseException:
                    self._ctx.remove_resource(directory)
                    raise
            fsync_dir(self.folder)
        finally:
            writer.discard()
        return _public(doc, fields)

    # -- reading ---------------------------------------------------------------------------------------
    def _read(self, file_id: str) -> dict[str, Any]:
        """The stored document (jan's fields too) of a live file; :class:`NotFoundError` otherwise. A file past its
        ``expires_at`` is removed here and is not found, as OpenAI's expired files are gone."""
        meta = self._dir(file_id) / META
        doc = {**self._ctx.get_doc(meta, KIND, file_id), "id": file_id}
        if _expired(doc):
            self._remove_expired(file_id)
            raise NotFoundError(KIND, file_id, f"{not_found_message(KIND, file_id)} (it expired)")
        return doc

    def get(self, file_id: str, *, fields: Sequence[str] = PUBLIC_FIELDS) -> dict[str, Any]:
        """The file object of ``file_id`` (``fields`` of it); :class:`NotFoundError` if there is none (or it
        expired)."""
        return _public(self._read(file_id), fields)

    def open(self, file_id: str) -> tuple[BinaryIO, dict[str, Any]]:
        """``(open binary file, stored document)``: the caller reads and closes it. Once open, a deletion does not
        cut the read short (the bytes stay until the file is closed)."""
        doc = self._read(file_id)
        try:
            return open(self._dir(file_id) / CONTENT, "rb"), doc
        except FileNotFoundError:  # deleted between the two reads
            raise NotFoundError(KIND, file_id) from None

    def read_bytes(self, file_id: str, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
        """``(content, stored document)`` of a file of at most ``max_bytes`` bytes (an image for a message);
        :class:`InvalidArgumentError` ``too_large`` for a larger one, which is not read."""
        handle, doc = self.open(file_id)
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise InvalidArgumentError(f"file {file_id!r} is {size} bytes; at most {max_bytes} are taken here",
                                           code="too_large")
            return handle.read(max_bytes + 1), doc

    def list(self, *, purpose: str | None = None, limit: int | None = None, order: Order = "desc",
             after: str | None = None, before: str | None = None, fields: Sequence[str] = PUBLIC_FIELDS) -> Page:
        """File objects by creation time (newest first by default), only ``purpose``'s when given; OpenAI's
        cursors. Damaged ``file.json`` files are set aside, reported in :attr:`problems` and left out; expired
        files are removed and left out."""
        docs = []
        for directory in iter_resource_dirs(self.folder):
            if not is_upload_id(directory.name):
                continue
            doc = read_doc_or_none(self._ctx, directory / META, KIND)
            if doc is None:
                continue  # damaged (reported), or no file yet: one being written, or a crash's (sweep)
            doc["id"] = directory.name
            if _expired(doc):
                self._remove_expired(directory.name)
                continue
            if purpose is None or doc.get("purpose") == purpose:
                docs.append(_public(doc, fields))
        docs.sort(key=file_sort_key)
        return paginate(docs, limit=limit, order=order, after=after, before=before, key=file_sort_key,
                        key_of_id=file_sort_key_of_id)

    # -- removing --------------------------------------------------------------------------------------
    def delete(self, file_id: str) -> dict[str, Any]:
        """Delete a file; returns ``{"id", "object": "file", "deleted": True}``. A damaged one (its ``file.json`` set
        aside, which a read answers as damaged) is deleted too, bytes and set-aside copy with it, as a damaged thread
        or assistant is: it was a 404 that left its bytes on disk, with no way through the API to be rid of them."""
        directory = self._dir(file_id)
        meta = directory / META
        with self._ctx.lock(meta):  # (a commit holds it from making the folder to writing file.json)
            if not directory.is_dir():
                raise NotFoundError(KIND, file_id)
            self._ctx.remove_resource(directory)
        return {"id": file_id, "object": "file", "deleted": True}

    def _remove_expired(self, file_id: str) -> None:
        try:
            with self._ctx.lock(self._dir(file_id) / META):
                doc = read_doc_or_none(self._ctx, self._dir(file_id) / META, KIND)
                if doc is not None and _expired(doc):
                    self._ctx.remove_resource(self._dir(file_id))
                    logger.info("files: removed %s, which expired", file_id)
        except OSError as exc:  # the next look tries again
            logger.warning("files: could not remove expired %s: %s", file_id, exc)

    def sweep(self) -> list[Path]:
        """Finish what a crash interrupted: deletions (hidden trash folders) and uploads whose folder was made but
        whose ``file.json`` never was (no file, only its bytes). Returns the folders removed. (Temporary files of
        uploads are swept with every other interrupted write when the data folder is opened.)"""
        sweep_trash(self.folder)
        removed: list[Path] = []
        for directory in iter_resource_dirs(self.folder):
            meta = directory / META
            if meta.exists() or not is_upload_id(directory.name):
                continue
            with self._ctx.lock(meta):  # a commit holds this lock from making the folder to writing file.json
                if meta.exists() or not directory.is_dir():
                    continue
                if self._ctx.set_aside_copy(meta) is not None:
                    continue  # its file.json was damaged and set aside: kept for the user to repair
                self._ctx.remove_resource(directory)
            logger.info("files: removed %s, an upload a crash left unfinished", directory)
            removed.append(directory)
        return removed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register_shape(KIND)
def _shape_error(doc: dict[str, Any]) -> str | None:
    """What in a file.json is not of the type jan writes (``None``: nothing). Such a file is set aside by the store
    as one that does not parse: it must not be served as a file object (``bytes: "x"``) nor fail every read of it
    with a 500."""
    for key in ("bytes", "created_at"):
        if not _is_int(doc.get(key)) or doc[key] < 0:
            return f"{key} is {doc.get(key)!r}, not a whole number"
    for key in ("filename", "purpose"):
        if not isinstance(doc.get(key), str):
            return f"{key} is {doc.get(key)!r}, not a string"
    for key in ("status", "media_type", "sha256"):
        if not isinstance(doc.get(key), (str, type(None))):
            return f"{key} is {doc.get(key)!r}, not a string"
    if not (doc.get("expires_at") is None or _is_int(doc.get("expires_at"))):
        return f"expires_at is {doc.get('expires_at')!r}, not a whole number"
    return None


def _expired(doc: dict[str, Any]) -> bool:
    expires_at = doc.get("expires_at")
    return isinstance(expires_at, int) and not isinstance(expires_at, bool) and expires_at <= now_s()


def _public(doc: dict[str, Any], fields: Sequence[str] = PUBLIC_FIELDS) -> dict[str, Any]:
    return {key: doc.get(key) for key in fields}
