"""Batches on disk: ``batches/<batch_id>/`` holds ``batch.json``, ``requests.jsonl`` and ``results.jsonl``.

``requests.jsonl`` is the batch's items as they were accepted (one ``{"custom_id", "body"}`` a line), written
whole before ``batch.json``: ``batch.json`` is the commit point, so a folder without one (a crash while it was
made) is no batch and :meth:`BatchStore.sweep` removes it. ``results.jsonl`` is append-only, one line per item
that ended (``{"index", "custom_id", "outcome", "status_code", "body", ...}``): a crash can tear only its last
line, which readers skip and the next append cuts off, so an item is either ended on disk or still to run.
``batch.json`` (the batch's state: status, timestamps, counts) is replaced atomically under its lock; a damaged
one is set aside as every damaged document of the data folder is (:class:`jan.store.context.StoreContext`).

Every method does file I/O: call them from a worker thread in asyncio code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jan.core.fs import loads_json
from jan.json_text import data_file_text

from ._trash import sweep_trash
from ._util import field_type_error
from .atomic import atomic_write_bytes
from .context import MAX_DOC_BYTES, StoreContext, iter_resource_dirs, read_doc_or_none, register_shape
from .errors import NotFoundError
from .jsonl import append_jsonl, parse_jsonl, read_jsonl, rewrite_jsonl
from .locks import DEFAULT_TIMEOUT
from .migrations import DEFAULT_MIGRATIONS
from .problems import ProblemLog
from jan.local_files import read_regular_file

__all__ = ["BATCHES_DIR", "BatchStore"]

BATCHES_DIR = "batches"
KIND = "batch"
META = "batch.json"
REQUESTS = "requests.jsonl"
RESULTS = "results.jsonl"
#: The largest requests.jsonl or results.jsonl read: a batch's input is at most 200 MiB (OpenAI's bound, and the
#: Files API's here) but its results may be far more (50,000 embeddings, as JSON numbers): bounded, as every file
#: of the data folder read whole, but well past a thread's messages (:data:`jan.store.jsonl.MAX_JSONL_BYTES`).
MAX_BATCH_FILE_BYTES = 4 * 1024 * 1024 * 1024


class BatchStore:
    """The batches of one data folder (``<root>/batches``, made with the first batch)."""

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float | None = DEFAULT_TIMEOUT,
                 problems: ProblemLog | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.folder = self.root / BATCHES_DIR
        self._ctx = StoreContext(self.root, migrations=DEFAULT_MIGRATIONS, problems=problems or ProblemLog(),
                                 lock_timeout=lock_timeout)

    @property
    def problems(self) -> ProblemLog:
        return self._ctx.problems

    def _dir(self, batch_id: str) -> Path:
        return self._ctx.resource_dir(BATCHES_DIR, batch_id, KIND)

    def create(self, doc: dict[str, Any], items: list[dict[str, Any]]) -> None:
        """Store a new batch: its items first, then ``doc`` (``doc["id"]`` names it), the commit point."""
        directory = self._dir(doc["id"])
        meta = directory / META
        data = self._ctx.encode_doc(KIND, doc)  # a bad value fails before any disk change
        with self._ctx.lock(meta):
            directory.mkdir(parents=True)
            try:
                rewrite_jsonl(directory / REQUESTS, items)
                atomic_write_bytes(meta, data)  # last: the batch exists from here on
            except BaseException:
                self._ctx.remove_resource(directory)
                raise

    def save(self, doc: dict[str, Any]) -> None:
        """Replace the batch's ``batch.json`` with ``doc`` (its state changed)."""
        meta = self._dir(doc["id"]) / META
        with self._ctx.lock(meta):
            if not meta.parent.is_dir():
                raise NotFoundError(KIND, doc["id"])  # deleted meanwhile: not made again by a late save
            self._ctx.write_doc(meta, KIND, {k: v for k, v in doc.items() if k != "id"})

    def get(self, batch_id: str) -> dict[str, Any]:
        """The batch's document; :class:`NotFoundError` when there is none (or it is damaged: set aside)."""
        return self._ctx.get_doc(self._dir(batch_id) / META, KIND, batch_id)

    def list(self) -> list[dict[str, Any]]:
        """Every readable batch document, in id order (ids sort by creation); damaged ones are reported and left
        out."""
        docs = []
        for directory in iter_resource_dirs(self.folder):
            doc = read_doc_or_none(self._ctx, directory / META, KIND)
            if doc is not None:
                doc["id"] = directory.name
                docs.append(doc)
        return docs

    def is_newer(self, batch_id: str) -> bool:
        """Whether the batch's ``batch.json`` was written by a newer jan (its ``_schema_version``, which reads leave
        out, is past this one's): such a batch is read as it stands, and never saved by this jan (:meth:`save`
        raises ``NewerSchemaError``). False for one that cannot be read (a read reports it)."""
        try:
            doc = loads_json(data_file_text(read_regular_file(self._dir(batch_id) / META, MAX_DOC_BYTES)))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and \
            self._ctx.migrations.version_of(doc) > self._ctx.migrations.current_version(KIND)

    def exists(self, batch_id: str) -> bool:
        """Whether the batch is on disk (its ``batch.json``, the commit point, is there)."""
        return (self._dir(batch_id) / META).exists()

    def items(self, batch_id: str) -> list[dict[str, Any] | None]:
        """The batch's items, in order, one per line of its ``requests.jsonl``: ``None`` for a line that is no item
        (edited by hand into something else, or cut mid-line), reported, so that each item keeps its place (its
        index) and a damaged one still ends, errored, never left out of the batch unsaid. The lines it lost whole
        (a file cut short) are not here: the batch's ``total`` says how many it had."""
        path = self._dir(batch_id) / REQUESTS
        try:
            data = read_regular_file(path, MAX_BATCH_FILE_BYTES)
        except FileNotFoundError:
            data = b""
            self._ctx.report(path, "is missing: the batch's requests were lost", once=True)
        lines = data.split(b"\n")
        if lines and not lines[-1].strip():
            lines.pop()  # (the newline that ends the last line)
        items: list[dict[str, Any] | None] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue  # (a blank line is no item; jan writes none)
            try:
                item = parse_jsonl(raw + b"\n").records
            except ValueError:
                item = []
            if not item:
                self._ctx.report(path, f"line {number} is not a request (edited or cut short); its item fails",
                                 once=True)
            items.append(item[0] if item else None)
        return items

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        """The results written so far, in the order they ended (a torn last line is not one)."""
        return read_jsonl(self._dir(batch_id) / RESULTS, MAX_BATCH_FILE_BYTES).records

    def append_results(self, batch_id: str, results: list[dict[str, Any]]) -> None:
        """Append ended items' results (one write, then fsync)."""
        path = self._dir(batch_id) / RESULTS
        with self._ctx.lock(path):
            if not path.parent.is_dir():
                raise NotFoundError(KIND, batch_id)
            append_jsonl(path, results)

    def delete(self, batch_id: str) -> None:
        """Remove the batch and everything it holds; :class:`NotFoundError` when there is none."""
        directory = self._dir(batch_id)
        meta = directory / META
        with self._ctx.lock(meta):
            if not directory.is_dir():
                raise NotFoundError(KIND, batch_id)
            self._ctx.remove_resource(directory)

    def sweep(self) -> list[Path]:
        """Finish what a crash interrupted: deletions, and batch folders made without their ``batch.json`` (a
        damaged one set aside stays, for the user to repair). Returns the folders removed."""
        sweep_trash(self.folder)
        removed = []
        for directory in iter_resource_dirs(self.folder):
            meta = directory / META
            if meta.exists():
                continue
            with self._ctx.lock(meta):
                if meta.exists() or not directory.is_dir() or self._ctx.set_aside_copy(meta) is not None:
                    continue
                self._ctx.remove_resource(directory)
            removed.append(directory)
        return removed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register_shape(KIND)
def _shape_error(doc: dict[str, Any]) -> str | None:
    """What in a batch.json is not of the type jan writes: such a file is set aside as damaged, never served."""
    for key in ("dialect", "status", "endpoint"):
        if not isinstance(doc.get(key), str):
            return f"{key} is {doc.get(key)!r}, not a string"
    for key in ("created_at", "expires_at", "total"):
        if not _is_int(doc.get(key)):
            return f"{key} is {doc.get(key)!r}, not a whole number"
    if not isinstance(doc.get("times", {}), dict) or not isinstance(doc.get("extra", {}), dict):
        return "times or extra is not an object"
    # the counts, token usage and times every reader adds up or serves as numbers (a hand edit's "counts": 5 or
    # "succeeded": null was a 500 on GET /v1/batches, for every batch listed beside it)
    error = field_type_error(doc, {"counts": "dict", "usage": "dict", "times": "dict", "metadata": "dict", "end": "str"})
    if error is not None:
        return error
    for key in ("counts", "usage", "times"):
        for name, number in (doc.get(key) or {}).items():
            if not _is_int(number) and not (key == "times" and number is None):
                return f"{key}.{name} is {str(number)[:40]!r} ({type(number).__name__}), not a whole number"
    return None
