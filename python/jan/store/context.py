"""What every resource store shares: the folder root, locks, migrations, the problem log,
and the versioned-JSON read/write path with corrupt-file handling.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from jan.core.fs import lock_key, loads_json
from jan.json_text import data_file_text
from jan.local_files import MAX_DATA_FILE_BYTES, FileTooLargeError, read_regular_file
from jan.core.locks import LOCK_DIR_NAME  # (re-exported: the stores and extension settings lock in one folder)

from ._util import dumps_json
from .atomic import atomic_write_bytes
from .errors import CorruptFileError, InvalidIdError, NewerSchemaError, NotFoundError
from .ids import validate_id
from .locks import LockManager
from .migrations import SCHEMA_VERSION_KEY, MigrationError, MigrationRegistry
from .problems import ProblemLog

logger = logging.getLogger("jan.store")


#: The largest versioned JSON document (a model.json, thread.json, assistant.json, ...) that is read: what jan writes
#: is kilobytes (a chat template, an assistant's instructions); 64 MiB leaves room for any hand-made one.
MAX_DOC_BYTES = MAX_DATA_FILE_BYTES


class StoreContext:
    """Shared plumbing for the resource stores of one data folder."""

    def __init__(self, root: Path, *, migrations: MigrationRegistry, problems: ProblemLog,
                 lock_timeout: float | None) -> None:
        self.root = root
        self.migrations = migrations
        self.problems = problems
        self.locks = LockManager(root / LOCK_DIR_NAME, timeout=lock_timeout)
        # collection -> ((st_dev, st_ino, st_mtime_ns) of <root>/<collection> from lstat, its realpath)
        self._bases: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._warned_newer: set[str] = set()

    # --- paths ---

    def resource_dir(self, collection: str, resource_id: str, kind: str) -> Path:
        """``<root>/<collection>/<id>`` for a validated id, checked to stay inside the collection.

        The id rule already forbids separators and ``..``; the second check
        guards against a future bug in that rule. The collection folder itself
        is resolved (users move ``models/`` to a bigger disk with a symlink),
        the resource path is compared lexically below it.
        """
        validate_id(resource_id, f"{kind} id")
        base = self._collection_base(collection)
        target = os.path.normpath(os.path.join(base, resource_id))
        if os.path.dirname(target) != base or os.path.basename(target) != resource_id:
            raise InvalidIdError(f"{kind} id {resource_id!r} resolves outside {collection}/")
        return Path(base) / resource_id

    def _collection_base(self, collection: str) -> str:
        """``realpath(<root>/<collection>)``, remembered while that entry is the same one (one lstat per
        call instead of one per path component: this runs on every request that names a model)."""
        link = self.root / collection
        try:
            st = os.lstat(link)
        except OSError:
            return os.path.realpath(link)
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns)
        known = self._bases.get(collection)
        if known is not None and known[0] == stamp:
            return known[1]
        base = os.path.realpath(link)
        self._bases[collection] = (stamp, base)
        return base

    def key(self, path: Path) -> str:
        """The lock key of a file (:func:`lock_key`)."""
        return lock_key(self.root, path)

    def lock(self, *paths: Path) -> AbstractContextManager[None]:
        """Hold the locks of these files (all at once: see :meth:`LockManager.hold`)."""
        return self.locks.hold(*(self.key(p) for p in paths))

    def relpath(self, path: Path) -> str:
        """Where ``path`` is in the folder, as a user sees it: relative to the root, its own name kept when it is a
        symbolic link, a collection reached through a link (``models/`` moved to a bigger disk) named by its name
        in the folder; the lock key (:meth:`key`) of a path outside. What problems are reported, and listings
        filter, under: keyed by a link's target (``/home/u/dotfiles/thread.json``), a damaged file linked into a
        collection was left out of its listing with no word in its ``problems``."""
        path = Path(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            pass
        for collection, (_, base) in list(self._bases.items()):
            try:
                return (Path(collection) / path.relative_to(base)).as_posix()
            except ValueError:
                continue
        return self.key(path)

    # --- problems ---

    def remove_resource(self, directory: Path) -> None:
        """Remove a resource's folder (:func:`jan.store._trash.remove_resource_dir`) and forget the problems
        reported of its files: deleting a model, thread or file whose JSON was damaged and set aside left that
        report in every later list."""
        from ._trash import remove_resource_dir

        remove_resource_dir(directory)
        # as listings report it: under <root>/<collection>, which may be a symlink the directory was resolved through
        self.problems.forget_under(self.relpath(self.root / directory.parent.name / directory.name) + "/")

    def report(self, path: Path, error: str, moved_to: Path | None = None, *, once: bool = False) -> None:
        self.problems.add(self.relpath(path), error, self.relpath(moved_to) if moved_to else None, once=once)

    @staticmethod
    def set_aside_copy(path: Path) -> Path | None:
        """The newest ``<name>.corrupt-*`` beside a missing ``path``: the damaged file an earlier read moved
        aside (maybe in another process, which alone saw it happen), or ``None``."""
        try:
            names = [e.name for e in os.scandir(path.parent) if e.name.startswith(f"{path.name}.corrupt-")]
        except OSError:
            return None
        return path.with_name(max(names)) if names else None  # the stamp sorts by time

    def report_set_aside(self, path: Path) -> Path | None:
        """Report the damaged copy of a missing ``path`` (:meth:`set_aside_copy`), once per process: without it
        a resource whose file was set aside by an earlier command just vanishes from every listing."""
        moved = self.set_aside_copy(path)
        if moved is not None and not self.problems.moved(self.relpath(moved)):  # (not when we moved it: told)
            self.report(path, "did not parse; set aside earlier, so it is left out: repair it and rename it "
                              "back, or remove it", moved, once=True)
        return moved

    @staticmethod
    def aside_path(path: Path) -> Path:
        """A free ``<name>.corrupt-<UTC timestamp>`` path next to ``path``."""
        ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 1_000_000_000)) + f"{ns // 1000 % 1_000_000:06d}Z"
        dest = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        return dest

    def keep_copy(self, path: Path, data: bytes, error: str) -> Path:
        """Save ``data`` (a damaged file's bytes) beside ``path`` before it is rewritten, and record it."""
        dest = self.aside_path(path)
        atomic_write_bytes(dest, data)
        self.report(path, error, dest)
        return dest

    def quarantine(self, path: Path, error: str) -> Path | None:
        """Move a damaged file to ``<name>.corrupt-<timestamp>`` and record it; caller holds the lock."""
        dest = self.aside_path(path)
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Cannot move it (read-only folder?): still report, and keep going.
            self.report(path, f"{error} (could not move aside: {exc})")
            return None
        self.report(path, error, dest)
        return dest

    # --- versioned JSON documents ---

    def _read_bounded(self, path: Path, kind: str) -> bytes:
        """The file's bytes, if it is no larger than any document jan writes (:data:`MAX_DOC_BYTES`). A larger one
        (a GGUF named model.json, a file pasted over a thread.json) is :class:`CorruptFileError`, reported and left
        where it is, unread: read whole, as before, it took memory in its size at every listing (GBs, twice over
        for the decode), and a valid one was served whatever its size. Something there that is no regular file is
        the OSError of :func:`jan.local_files.open_regular_file`."""
        # (a named pipe in its place is refused, not waited on forever: a listing held every request up)
        try:
            return read_regular_file(path, MAX_DOC_BYTES)
        except FileTooLargeError as exc:
            error = (f"it is {exc.size} bytes, more than any {kind} file jan writes ({exc.limit} at most): "
                     "left out, unread; move it away or repair it")
            self.report(path, error, once=True)
            raise CorruptFileError(self.relpath(path), error, None) from None

    @staticmethod
    def _parse(data: bytes) -> dict[str, Any]:
        doc = loads_json(data_file_text(data))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        return doc

    def read_doc(self, path: Path, kind: str) -> dict[str, Any] | None:
        """Read a versioned JSON file: ``None`` if missing, upgraded if old, public fields only.

        A file that does not parse (or is no document of its kind) is reported, left where it is, and
        :class:`CorruptFileError` is raised; callers listing many files catch it and go on.
        """
        try:
            data = self._read_bounded(path, kind)
        except (FileNotFoundError, NotADirectoryError):
            return None
        # damage is said without the file's lock (nothing is moved, and files are replaced atomically: what did not
        # parse was damaged when read), so a read makes no lock file either; only an upgrade takes it
        try:
            parsed = self._parse(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._damaged(path, f"invalid JSON: {exc}") from exc
        if self.migrations.needs_upgrade(kind, parsed):
            doc = self._read_locked(path, kind)
        elif (error := shape_error(kind, parsed)) is not None:
            raise self._damaged(path, f"not a {kind}: {error}")
        else:
            self._check_newer(path, kind, parsed)
            doc = parsed
        if doc is not None and self.problems.has_any():  # (no path work per read in a folder without problems)
            self.problems.repaired(self.relpath(path))
        return None if doc is None else public(doc)

    def get_doc(self, path: Path, kind: str, doc_id: str,
                not_found: type[NotFoundError] = NotFoundError) -> dict[str, Any]:
        """One document (:meth:`read_doc`) with its ``id`` set; ``not_found(kind, doc_id)`` is raised when
        it is missing or damaged (then moved aside, and the message says so)."""
        try:
            doc = self.read_doc(path, kind)
        except CorruptFileError as exc:
            raise self._damaged_error(path, kind, doc_id, not_found, exc) from exc
        except MigrationError as exc:
            # A document no migration can bring up to date (its schema version hand-edited to a wrong type, a kind
            # born at version 1 given none) is reported and refused by name, as listings leave it out
            # (read_doc_or_none); it is not moved: it parses, and a newer jan may read it. It was a 500.
            self.report(path, f"MigrationError: {exc}")
            err = not_found(kind, doc_id, f"{kind} {doc_id!r} is damaged: {exc}")
            err.damaged = self.relpath(path)
            raise err from exc
        if doc is None:
            raise self.missing(path, kind, doc_id, not_found)
        doc["id"] = doc_id
        return doc

    def _damaged_error(self, path: Path, kind: str, doc_id: str, not_found: type[NotFoundError],
                       exc: CorruptFileError) -> NotFoundError:
        where = (f"; it was moved to {self.relpath(Path(exc.moved_to))}" if exc.moved_to
                 else f": repair or remove {self.relpath(path)}")
        err = not_found(kind, doc_id, f"{kind} {doc_id!r} is damaged ({exc.error}){where}")
        err.damaged = self.relpath(Path(exc.moved_to)) if exc.moved_to else self.relpath(path)
        return err

    def require_intact(self, path: Path, kind: str, doc_id: str,
                       not_found: type[NotFoundError] = NotFoundError) -> None:
        """Raise what :meth:`get_doc` raises for a document that is missing or damaged, without its lock and
        without upgrading it: for the calls on what a document owns (a thread's messages), which a damaged
        document's made "damaged" as its own calls are (a read set it aside, before reads left it in place)."""
        try:
            data = self._read_bounded(path, kind)
        except (FileNotFoundError, NotADirectoryError):
            raise self.missing(path, kind, doc_id, not_found) from None
        except CorruptFileError as exc:
            raise self._damaged_error(path, kind, doc_id, not_found, exc) from None
        except OSError:
            return  # (unreadable otherwise: the caller's own access says so)
        try:
            parsed = self._parse(data)
        except (ValueError, UnicodeDecodeError) as exc:
            error = f"invalid JSON: {exc}"
        else:
            if self.migrations.needs_upgrade(kind, parsed) or (error := shape_error(kind, parsed)) is None:
                return
            error = f"not a {kind}: {error}"
        raise self._damaged_error(path, kind, doc_id, not_found, self._damaged(path, error))

    def missing(self, path: Path, kind: str, doc_id: str,
                not_found: type[NotFoundError] = NotFoundError) -> NotFoundError:
        """The error for a document whose file is not there: "damaged, set aside as ..." when an earlier read moved
        it aside (:meth:`report_set_aside`), else plain not found. For every caller that needs the document to
        exist (a thread's messages too): "not found" of a thread whose messages are all there sent the user
        looking for a typo."""
        moved = self.report_set_aside(path)
        if moved is not None:
            err = not_found(kind, doc_id, f"{kind} {doc_id!r} is damaged: its {path.name} did not parse and "
                                          f"was set aside as {self.relpath(moved)}")
            err.damaged = self.relpath(moved)
            return err
        return not_found(kind, doc_id)

    def _read_locked(self, path: Path, kind: str) -> dict[str, Any] | None:
        # Slow path under the lock: confirm damage before moving a file aside
        # (it may have just been replaced), and migrate at most once.
        with self.lock(path):
            try:
                data = self._read_bounded(path, kind)
            except (FileNotFoundError, NotADirectoryError):
                return None
            try:
                doc = self._parse(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise self._damaged(path, f"invalid JSON: {exc}") from exc
            upgraded, changed = self.migrations.upgrade(kind, doc)
            error = shape_error(kind, upgraded)
            if error is not None:  # valid JSON, but not a document of its kind: as damaged as a torn file
                raise self._damaged(path, f"not a {kind}: {error}")
            if changed:
                try:
                    atomic_write_bytes(path, dumps_json(upgraded))
                except OSError as exc:
                    # A read must not need a write (a full disk, a read-only folder): the document is served
                    # upgraded; the file keeps its old version until a later read can write it.
                    logger.warning("data folder: could not write %s upgraded (%s); served as read",
                                   self.relpath(path), exc)
                    return upgraded
                logger.info("data folder: upgraded %s to %s version %d", self.relpath(path), kind,
                            upgraded[SCHEMA_VERSION_KEY])
            return upgraded

    def _misshapen(self, kind: str, doc: dict[str, Any]) -> bool:
        """Whether a parsed document is no document of its kind (:func:`shape_error`), as a read would find it."""
        try:
            return shape_error(kind, self.migrations.upgrade(kind, doc)[0]) is not None
        except MigrationError:
            return True

    def _damaged(self, path: Path, error: str) -> CorruptFileError:
        """A damaged document, reported (once per process: every listing meets it again) and left where it is: a
        read never moves the user's files (a listing set it aside as ``<name>.corrupt-<time>``, so that `jan models
        list` changed the data folder, and the user's file vanished from where they had put it). Repairing it
        brings it back; removing the resource removes it; a write that replaces it keeps a copy first."""
        self.report(path, f"{error}; left in place: repair it or remove it", once=True)
        return CorruptFileError(self.relpath(path), error, None)

    def _check_newer(self, path: Path, kind: str, doc: dict[str, Any]) -> None:
        version = self.migrations.version_of(doc)
        if version > self.migrations.current_version(kind) and kind not in self._warned_newer:
            self._warned_newer.add(kind)
            logger.warning("data folder: %s has %s version %d, newer than this jan knows (%d); using it as is",
                           self.relpath(path), kind, version, self.migrations.current_version(kind))

    def encode_doc(self, kind: str, doc: dict[str, Any]) -> bytes:
        """Serialize a document with its schema version (fails before any disk change)."""
        return dumps_json(self.stamp(kind, doc))

    def stamp(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with its schema version: the current one, or the doc's own if that is newer."""
        version = max(self.migrations.current_version(kind), self.migrations.version_of(doc))
        out = {k: v for k, v in doc.items() if k != SCHEMA_VERSION_KEY}
        out[SCHEMA_VERSION_KEY] = version
        return out

    def write_doc(self, path: Path, kind: str, doc: dict[str, Any]) -> None:
        """Atomically replace a versioned JSON document; the caller holds its lock.

        Refuses (:class:`NewerSchemaError`) to overwrite a file written by a
        newer jan: relabelling it with our older version would make that jan
        run its migrations again on an already-migrated file.
        """
        data = self.encode_doc(kind, doc)
        try:
            raw = read_regular_file(path)
        except OSError:
            raw = existing = None
        else:
            try:
                existing = self._parse(raw)
            except (ValueError, UnicodeDecodeError):
                existing = None
        if existing is not None and self.migrations.version_of(existing) > self.migrations.current_version(kind):
            raise NewerSchemaError(f"{self.relpath(path)} was written by a newer version of jan; not modifying it")
        if raw is not None and (existing is None or self._misshapen(kind, existing)):
            # a damaged document (reads leave it in place) replaced: the user's bytes are kept beside it first
            self.keep_copy(path, raw, "damaged; replaced by a new one, the damaged file kept")
        atomic_write_bytes(path, data)


#: Per kind, what makes a parsed document unusable (:func:`register_shape`): a field every reader takes for granted,
#: of another type (a model.json whose ``settings`` is a list failed GET /v1/models with a 500 for every model).
_SHAPES: dict[str, Callable[[dict[str, Any]], str | None]] = {}


def register_shape(kind: str) -> Callable[[Callable[[dict[str, Any]], str | None]], Callable[[dict[str, Any]], str | None]]:
    """Register ``check(doc)`` for ``kind``: ``None`` for a usable document, else what is wrong. A document that fails
    it is set aside as damaged, as one that does not parse (confirmed under its lock first)."""
    def register(check: Callable[[dict[str, Any]], str | None]) -> Callable[[dict[str, Any]], str | None]:
        _SHAPES[kind] = check
        return check
    return register


def shape_error(kind: str, doc: dict[str, Any]) -> str | None:
    check = _SHAPES.get(kind)
    return check(doc) if check is not None else None


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A document without the store's private fields, as the API returns it."""
    return {k: v for k, v in doc.items() if k != SCHEMA_VERSION_KEY}


def iter_resource_dirs(collection_dir: Path) -> Iterator[Path]:
    """Sub-folders of a collection whose names are valid ids (hidden/trash/odd ones skipped)."""
    try:
        entries = sorted(os.scandir(collection_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_dir():
                continue
            validate_id(entry.name)
        except (OSError, InvalidIdError):
            continue
        yield Path(entry.path)


def read_doc_or_none(ctx: StoreContext, path: Path, kind: str) -> dict[str, Any] | None:
    """:meth:`StoreContext.read_doc` for listings: any damage is reported and gives ``None``."""
    try:
        return ctx.read_doc(path, kind)
    except CorruptFileError:
        return None  # already reported (and left in place)
    except (OSError, MigrationError) as exc:
        ctx.report(path, f"{type(exc).__name__}: {exc}")
        return None


def read_collection(ctx: StoreContext, collection: str, filename: str, kind: str) -> list[dict[str, Any]]:
    """Every readable ``<collection>/<id>/<filename>`` with its folder's name as ``id``, in id order;
    damaged files are reported and left out."""
    docs = []
    for directory in iter_resource_dirs(ctx.root / collection):
        path = directory / filename
        try:
            doc = ctx.read_doc(path, kind)
        except CorruptFileError:
            continue  # reported (and left in place)
        except (OSError, MigrationError) as exc:
            ctx.report(path, f"{type(exc).__name__}: {exc}")
            continue
        if doc is None:
            ctx.report_set_aside(path)  # no file: one set aside by an earlier command is reported all the same
            continue
        doc["id"] = directory.name
        docs.append(doc)
    return docs
