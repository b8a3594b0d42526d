"""Models: ``models/<model_id>/model.json``, usually next to the model's ``.gguf``.

This module only manages files; it never loads a model. Facts read from a
GGUF header (context length, chat template, ...) are passed in by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Literal

from jan.gguf_extent import cut_short
from jan.gguf_magic import has_gguf_magic
from jan.local_files import not_a_regular_file

from ._util import check_dict, check_list, check_str, now_ms
from .atomic import TEMP_SUFFIX, atomic_write_bytes, copy_to_temp, fsync_dir, link_to_temp, symlink_to_temp
from .context import StoreContext, iter_resource_dirs, read_collection, register_shape
from .errors import (AlreadyExistsError, CaseClashError, InvalidArgumentError, LockTimeoutError,
                     StoredModelNotFoundError)
from .ids import is_valid_id, slugify_id, validate_id
from jan.file_stamps import FileStamp, stamps

logger = logging.getLogger("jan.store")

KIND = "model"
#: A download's incomplete bytes (:data:`jan.downloads.PART_SUFFIX`; the store does not import the downloader).
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".downloading.lock"  # (:data:`jan.downloads.LOCK_SUFFIX`)
DEFAULT_ENGINE = "llama.cpp"

ImportMode = Literal["copy", "link", "symlink", "reference", "move"]
#: Tries of an import that a concurrent delete of its id undid (:meth:`ModelStore.import_gguf`).
IMPORT_ATTEMPTS = 5
IMPORT_MODES: tuple[str, ...] = ("copy", "link", "symlink", "reference", "move")


def _is_file(path: Path) -> bool:
    """Whether a path a model.json names is a file; False for a name no file can have (longer than the file system
    takes, holding a NUL), as for a missing one. (``Path.is_file`` raised on those: a model.json naming one made
    every read of the model a 500, and ``/api/tags`` with it, until the model was deleted.)"""
    return os.path.isfile(path)


class _FolderGone(Exception):
    """The model folder an import places its weights in was removed meanwhile (a delete of that id)."""


def _replaced_or_gone(folder: Path, made: os.stat_result) -> bool:
    """Whether ``folder`` is gone, or is another folder than ``made`` (removed, then made again by another import)."""
    try:
        return not os.path.samestat(os.stat(folder), made)
    except FileNotFoundError:
        return True


# Merged key by key on update; every other field is replaced.
_MERGED_FIELDS = ("settings", "parameters", "metadata")
_FIXED_FIELDS = ("id", "object", "created", "_schema_version")


@register_shape(KIND)
def _model_shape(doc: dict[str, Any]) -> str | None:
    """What makes a model.json unusable: the fields every reader of it takes for granted (its weights' path, its
    settings and parameters merged into requests, the listing's size and name) of another type."""
    for key in _MERGED_FIELDS:
        if not isinstance(doc.get(key, {}), dict):
            return f"{key} is a {type(doc[key]).__name__}, not an object"
    sources = doc.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(source, dict) for source in sources):
        return "sources is not a list of objects"
    for source in sources:
        for key in ("filename", "url"):
            if not isinstance(source.get(key, ""), str):
                return f"sources[].{key} is not a string"
    # (only what breaks readers: hubs' model.json files carry numeric versions, null descriptions and the like)
    if not isinstance(doc.get("engine"), (str, type(None))):
        return f"engine is a {type(doc['engine']).__name__}, not a string"
    return None


def _text_field(key: str, value: Any, default: str) -> str:
    """A text field of a model.json as readers take it: null is the default and a number its text, as hubs'
    model.json files carry them (``"version": 2``, ``"description": null``, a numeric name) and reading them
    tolerates (:func:`_model_shape`). Refusing them here failed every later PATCH and copy of such a model on a
    field the client never sent ("name must be a string, not int"). Anything else is no text: refused."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return check_str(key, value)


#: The ``format`` of a model no file of its own serves: another server's API answers it (a remote engine's model,
#: ``"engine": "openai"``), as Jan's own model.json files for such models have always said it.
API_FORMAT = "api"


def _names_weights(doc: Mapping[str, Any]) -> bool:
    settings = doc.get("settings")
    if isinstance(settings, dict) and settings.get("llama_model_path"):
        return True
    sources = doc.get("sources")
    return isinstance(sources, list) and any(isinstance(s, dict) and s.get("filename") for s in sources)


def model_format(doc: Mapping[str, Any]) -> str:
    """What a model is, as every listing reports it (``format``): the model.json's own word, except for a model of
    another engine than llama.cpp that names no weights file, which is :data:`API_FORMAT` where it says ``"gguf"``
    or nothing. ``"gguf"`` was the default every model.json got until now, a remote model's too, so that Ollama's
    ``/api/show`` and ``/v1/models`` called a model another server answers a GGUF file."""
    fmt = doc.get("format")
    engine = doc.get("engine") or DEFAULT_ENGINE
    if engine != DEFAULT_ENGINE and fmt in (None, "", "gguf") and not _names_weights(doc):
        return API_FORMAT
    return fmt if isinstance(fmt, str) and fmt else "gguf"


def _as_reported(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its :func:`model_format` (a file written before it was known: served corrected, as a migrated
    one is, and written so with its next change)."""
    fmt = model_format(doc)
    return doc if doc.get("format") == fmt else {**doc, "format": fmt}


def normalize_model(model: Mapping[str, Any]) -> dict[str, Any]:
    """A complete model.json document from a partial one (``id`` is required).

    Unknown fields are kept: model.json files from hubs carry extras.
    """
    doc = check_dict("model", model)
    model_id = validate_id(doc.get("id"), "model id")
    doc.pop("_schema_version", None)
    doc["object"] = "model"
    for key, default in (("name", model_id), ("version", "1.0"), ("description", ""), ("format", "gguf"),
                         ("engine", DEFAULT_ENGINE)):
        doc[key] = _text_field(key, doc.get(key), default)
    sources = []
    for source in check_list("sources", doc.get("sources")):
        source = check_dict("sources[]", source)
        for key in ("filename", "url"):
            if key in source:
                check_str(f"sources[].{key}", source[key])
        sources.append(source)
    doc["sources"] = sources
    for key in _MERGED_FIELDS:
        doc[key] = check_dict(key, doc.get(key))
    doc["format"] = model_format(doc)  # (after the engine and settings it depends on are known)
    created = doc.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        doc["created"] = now_ms()
    return doc


class GGUFCutShortError(InvalidArgumentError):
    """A GGUF file that lacks part of the tensor data its header describes (a partial download, a copy that
    stopped): refused where it would enter the data folder or a model.json, not first where it loads."""


def check_gguf(path: str | os.PathLike[str], what: str = "GGUF file") -> None:
    """Raise InvalidArgumentError unless ``path`` is a readable file starting with the GGUF magic;
    :class:`GGUFCutShortError` (one) when it holds less than the tensor data its header describes
    (:func:`jan.gguf_extent.cut_short`, ``what`` names the file in its message: "'/m/x.gguf' is cut short: 395126
    of its 1185376 bytes are missing"). The one check of every GGUF that an import, a pull or a create accepts.
    Reads the header only (kept per file version)."""
    try:
        gguf = has_gguf_magic(path)
        short = cut_short(path, what) if gguf else None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not gguf:
        raise InvalidArgumentError(f"{path} is not a GGUF file")
    if short:
        raise GGUFCutShortError(short, code="file_cut_short")


def _holds_other(target: Path, new: str | os.PathLike[str]) -> bool:
    """Whether ``target`` is taken by something that is not the file ``new`` (the same file by another link is
    no other content: a model made again from the weights it has)."""
    if not os.path.lexists(target):
        return False
    try:
        return not os.path.samefile(target, new)
    except OSError:  # a dangling link, say: still a name that is taken
        return True


#: The file of a model's folder that is jan's own (its definition).
MODEL_DOC = "model.json"


def weights_filename(name: str) -> str:
    """``name`` for a file placed in a model's folder (its weights, a projector), kept apart from the names that
    are jan's there. ``model.json`` (in any case, for a file system that folds it) gets ``.gguf`` added: weights of
    that name (an imported file's, a pulled URL's last segment, an Ollama create's file name) landed on the
    folder's model.json, which was then written over them (an import answered success with no weights left, a pull
    failed after its whole download, "already exists"). A hidden name loses its leading dots: hidden names are
    jan's temporary files, and a pulled ``.x.tmp`` was swept as a stale one at a start an hour later."""
    name = name.lstrip(".") or "model.gguf"
    return f"{name}.gguf" if name.lower() == MODEL_DOC else name


def _free_name(folder: Path, filename: str) -> str:
    """``filename``, numbered (``model-2.gguf``, ``model-3.gguf``, ...) to the first name free in ``folder``."""
    stem, suffix = os.path.splitext(filename)
    n = 2
    while os.path.lexists(folder / f"{stem}-{n}{suffix}"):
        n += 1
    return f"{stem}-{n}{suffix}"


class ModelStore:
    """Model definitions and their files."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def folder(self, model_id: str) -> Path:
        """``models/<model_id>`` (may not exist)."""
        return self._ctx.resource_dir("models", model_id, "model")

    def _path(self, model_id: str) -> Path:
        return self.folder(model_id) / "model.json"

    def list(self) -> list[dict[str, Any]]:
        """Every readable model.json, by id; damaged ones are set aside and reported."""
        return [_as_reported(doc) for doc in read_collection(self._ctx, "models", "model.json", KIND)]

    def get(self, model_id: str) -> dict[str, Any]:
        """One model; :class:`StoredModelNotFoundError` (a ``jan.errors.ModelNotFoundError``) if unknown."""
        return _as_reported(self._ctx.get_doc(self._path(model_id), KIND, model_id, StoredModelNotFoundError))

    def exists(self, model_id: str) -> bool:
        return self._path(model_id).is_file()

    def written_at(self, model_id: str) -> float | None:
        """When the model's model.json was last written (seconds since the epoch, its ``st_mtime``): when the model
        was imported, pulled, created, copied or changed, as Ollama's manifest time tells it (its weights, linked or
        shared with other models, keep their own time). None where there is no model.json."""
        try:
            return self._path(model_id).stat().st_mtime
        except (OSError, ValueError):
            return None

    def case_twin(self, model_id: str) -> str | None:
        """The id of another model folder that differs from ``model_id`` only in case (``Stories`` for
        ``stories``), or None. (On a file system that ignores case, that folder is ``model_id``'s own.)"""
        folded = model_id.casefold()
        for folder in iter_resource_dirs(self._ctx.root / "models"):
            if folder.name != model_id and folder.name.casefold() == folded:
                return folder.name
        return None

    def _refuse_case_twin(self, model_id: str) -> None:
        """:class:`CaseClashError` when a new ``model_id`` differs only in case from a model folder there is."""
        twin = self.case_twin(model_id)
        if twin is not None and not os.path.lexists(self.folder(model_id)):
            raise CaseClashError(KIND, model_id, twin)

    def create(self, model: Mapping[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
        """Write a model.json (e.g. from a model hub); fills Jan's defaults. Returns the stored document.

        Raises :class:`AlreadyExistsError` if the id is taken and ``overwrite`` is false. With ``overwrite`` the
        model.json is replaced at once (never half-written), and the files the model it replaced kept in its
        folder, which the new one does not name, are removed after.
        """
        doc = normalize_model(model)
        data = self._ctx.encode_doc(KIND, doc)
        path = self._path(doc["id"])
        with self._ctx.lock(path):
            exists = path.exists()
            if exists and not overwrite:
                raise AlreadyExistsError(KIND, doc["id"])
            self._refuse_case_twin(doc["id"])
            replaced = self._own_files(doc["id"]) if exists else set()
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
            self._remove_unnamed(doc["id"], replaced)
        return doc

    def _own_files(self, model_id: str, doc: dict[str, Any] | None = None) -> set[Path]:
        """The files in the model's folder its model.json names (weights, projector, draft model): what a model
        that replaces it leaves behind unless it names them too. Empty for a model.json that cannot be read."""
        folder = self.folder(model_id)
        try:
            doc = self.get(model_id) if doc is None else doc
            found = [self.model_file(model_id, doc, folder), self.mmproj_file(model_id, doc, folder)]
            draft = (doc.get("settings") or {}).get("draft_model")
            if not (isinstance(draft, str) and draft != model_id and not os.path.isabs(draft) and self.exists(draft)):
                found.append(self.draft_model_file(model_id, doc, folder))  # (not another model's weights)
        except (StoredModelNotFoundError, ValueError):
            return set()
        return {p for p in found if p is not None and os.path.dirname(os.path.normpath(p)) == os.path.normpath(folder)}

    def _remove_unnamed(self, model_id: str, files: set[Path]) -> None:
        """Remove those of ``files`` (a replaced model's, :meth:`_own_files`) that the model.json now in place
        does not name (its own files are kept, whatever their name). A file that cannot go is logged and left."""
        keep = self._own_files(model_id)
        for path in files - keep:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("model '%s': could not remove %s, which the model replaced: %s", model_id, path, exc)

    def update(self, model_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``changes``: ``settings``, ``parameters`` and ``metadata`` are merged key by key
        (a ``None`` value removes the key), other fields replaced; ``id``/``object``/``created`` are fixed.
        """
        changes = check_dict("changes", changes)
        fixed = sorted(set(changes) & set(_FIXED_FIELDS))
        if fixed:
            raise InvalidArgumentError(f"cannot change {', '.join(fixed)}")
        path = self._path(model_id)
        with self._ctx.lock(path):
            doc = self.get(model_id)
            for key, value in changes.items():
                if key in _MERGED_FIELDS:
                    merged = {**doc.get(key, {}), **check_dict(key, value)}
                    doc[key] = {k: v for k, v in merged.items() if v is not None}
                else:
                    doc[key] = value
            doc = normalize_model(doc)
            self._ctx.write_doc(path, KIND, doc)
        return doc

    def delete(self, model_id: str) -> dict[str, Any]:
        """Remove the model's folder and everything in it.

        A file imported by reference lives outside the folder and is left
        alone; a hard-linked file loses only this link.
        """
        path = self._path(model_id)
        with self._ctx.lock(path):
            if not path.parent.is_dir() and not path.parent.is_symlink():
                raise StoredModelNotFoundError(KIND, model_id)
            self._ctx.remove_resource(path.parent)
        return {"id": model_id, "object": "model", "deleted": True}

    def leftovers(self) -> list[dict[str, Any]]:
        """Model folders that hold files but no model.json (nor a damaged one set aside, which the listing's
        problems report): what a pull or an import stopped by a kill or a power cut left behind — a partial
        download (``<file>.part``, which pulling the same URL again resumes) or whole weights no model.json names.
        Each ``{"id", "files": [{"name", "bytes"}], "bytes", "partial"}`` (``partial``: a ``.part`` is among them),
        by id. Without this the disk they take is invisible: no list names them, and :meth:`delete` (which removes
        one) could not be asked for them. A folder holding only another process's temporary file (an import
        copying now) is no leftover."""
        found = []
        for folder in iter_resource_dirs(self._ctx.root / "models"):
            if os.path.lexists(folder / "model.json") or self._ctx.set_aside_copy(folder / "model.json"):
                continue
            files = []
            with contextlib.suppress(OSError):
                with os.scandir(folder) as entries:  # (closed when an error stops the listing early)
                    for entry in entries:
                        if entry.name.endswith((TEMP_SUFFIX, LOCK_SUFFIX)) or entry.is_dir(follow_symlinks=False):
                            continue  # a live writer's (a dead one's were swept at start), a download's lock
                        with contextlib.suppress(OSError):
                            files.append({"name": entry.name, "bytes": entry.stat(follow_symlinks=False).st_size})
            if files and not self.downloading(folder.name):
                files.sort(key=lambda f: f["name"])
                found.append({"id": folder.name, "files": files, "bytes": sum(f["bytes"] for f in files),
                              "partial": any(f["name"].endswith(PART_SUFFIX) for f in files)})
        return found

    def is_leftover(self, model_id: str) -> bool:
        """Whether ``models/<model_id>`` is a folder without a model.json (:meth:`leftovers`, or an empty one), or
        with a damaged one (left in place: deleting the model is one way the user is told to be rid of it), that no
        download fills now."""
        folder = self.folder(model_id)
        return (folder.is_dir() and (not os.path.lexists(folder / "model.json") or self._damaged(model_id))
                and not self.downloading(model_id))

    def _damaged(self, model_id: str) -> bool:
        try:
            self.get(model_id)
        except StoredModelNotFoundError as exc:
            return exc.damaged is not None
        return False

    def downloading(self, model_id: str) -> bool:
        """Whether a download into ``models/<model_id>`` runs now, in this process or another (the lock of one of
        its ``.part`` files is held: :func:`jan.downloads.part_busy`): that folder is no leftover to list or
        remove — removed, the running pull would fail at its end, or write into a folder that is gone."""
        from jan.downloads import part_busy  # (only where a folder holds a partial download)

        folder = self.folder(model_id)
        try:
            parts = [entry.name for entry in os.scandir(folder) if entry.name.endswith(PART_SUFFIX)]
        except OSError:
            return False
        return any(part_busy(folder / name.removesuffix(PART_SUFFIX)) for name in parts)

    def with_weights(self, model_id: str) -> dict[str, Any]:
        """The model.json (as :meth:`get`) with the files it names resolved, from one read of it:
        ``file_path`` (:meth:`model_file`), ``mmproj_path`` (:meth:`mmproj_file`) and
        ``draft_model_path`` (:meth:`draft_model_file`), each only when there is one."""
        doc = self.get(model_id)
        folder = self.folder(model_id)
        lora = self.lora_files(model_id, doc, folder)
        if lora:
            doc["lora_paths"] = lora
        if doc.get("file_path"):  # named in the model.json itself: taken as it is
            return doc
        for key, path in (("file_path", self.model_file(model_id, doc, folder)),
                          ("mmproj_path", self.mmproj_file(model_id, doc, folder)),
                          ("draft_model_path", self.draft_model_file(model_id, doc, folder))):
            if path is not None:
                doc[key] = str(path)
        if "mmproj_path" not in doc:
            # a projector name that resolves to something there that is no file (a folder in the model's folder):
            # where, so that the load's check says "is a directory" of it, not "no file" (mmproj_path stays unset:
            # the model takes no images)
            named = self._mmproj_candidate(doc, folder)
            if named is not None and os.path.lexists(named):
                doc["mmproj_named"] = str(named)
        return doc

    def with_weights_stamped(self, model_id: str) -> tuple[dict[str, Any], tuple[Path, ...], tuple[FileStamp, ...] | None]:
        """:meth:`with_weights`, with the files its answer depends on and their stamps
        (:mod:`jan.file_stamps`), so a caller may keep the answer while :func:`stamps` of those paths
        stays the same: the model.json and its folder, each file it resolved to, and for a draft model
        named by id that model's model.json and folder. The stamps are ``None`` when the answer must not
        be kept: a file it names is missing (it may appear later where no stamp would notice), or the
        files changed while they were read."""
        doc = self.with_weights(model_id)
        deps = [self._path(model_id), self.folder(model_id)]
        settings = doc.get("settings") or {}
        draft = settings.get("draft_model")
        if isinstance(draft, str) and draft and draft != model_id and not os.path.isabs(draft) and is_valid_id(draft) \
                and self.exists(draft):
            deps += [self._path(draft), self.folder(draft)]
        deps += [Path(doc[key]) for key in ("file_path", "mmproj_path", "draft_model_path") if doc.get(key)]
        taken = stamps(deps)
        complete = doc.get("file_path") and (not settings.get("mmproj") or doc.get("mmproj_path"))
        # Read again after stamping: an answer equal to one read after the stamps were taken is no older
        # than they are, so a later change cannot hide behind them.
        if not complete or None in taken or self.with_weights(model_id) != doc:
            return doc, tuple(deps), None
        return doc, tuple(deps), taken  # type: ignore[return-value]  # no None in it

    def model_file(self, model_id: str, doc: dict[str, Any] | None = None, folder: Path | None = None) -> Path | None:
        """The model's weights file, or ``None`` if it is missing.

        Looks at ``settings.llama_model_path`` (relative to the folder, or
        absolute for a model imported by reference), then at ``sources``
        (``filename`` in the folder, or a ``url`` that is an absolute local path).
        ``doc`` / ``folder``: the model.json and folder when the caller has them already.
        """
        doc = self.get(model_id) if doc is None else doc
        folder = self.folder(model_id) if folder is None else folder

        def inside(name: str) -> Path | None:
            # A relative name from model.json must not climb out of the model folder.
            candidate = os.path.normpath(os.path.join(folder, name))
            return Path(candidate) if os.path.commonpath([folder, candidate]) == str(folder) else None

        candidates: list[Path | None] = []
        model_path = doc.get("settings", {}).get("llama_model_path")
        if isinstance(model_path, str) and model_path:
            candidates.append(Path(model_path) if os.path.isabs(model_path) else inside(model_path))
        for source in doc.get("sources", []):
            filename, url = source.get("filename"), source.get("url")
            if isinstance(filename, str) and filename and not os.path.isabs(filename):
                candidates.append(inside(filename))
            if isinstance(url, str) and os.path.isabs(url):
                candidates.append(Path(url))
        for candidate in candidates:
            if candidate is not None and _is_file(candidate):
                return candidate
        return None

    def mmproj_file(self, model_id: str, doc: dict[str, Any] | None = None, folder: Path | None = None) -> Path | None:
        """The model's multimodal projector (Jan's ``settings.mmproj``: relative to the model
        folder, or absolute), or ``None`` when it has none or the file is missing."""
        doc = self.get(model_id) if doc is None else doc
        candidate = self._mmproj_candidate(doc, self.folder(model_id) if folder is None else folder)
        return candidate if candidate is not None and _is_file(candidate) else None

    @staticmethod
    def _mmproj_candidate(doc: dict[str, Any], folder: Path) -> Path | None:
        """Where ``settings.mmproj`` points (relative to ``folder``, or absolute), whatever is there; ``None`` when
        it names none or climbs out of the folder."""
        name = (doc.get("settings") or {}).get("mmproj")
        if not isinstance(name, str) or not name:
            return None
        candidate = Path(os.path.normpath(os.path.join(folder, name)))
        if not os.path.isabs(name) and os.path.commonpath([folder, candidate]) != str(folder):
            return None  # a relative name must not climb out of the model folder
        return candidate

    def lora_files(self, model_id: str, doc: dict[str, Any] | None = None,
                   folder: Path | None = None) -> list[dict[str, Any]] | None:
        """The LoRA adapters this model loads with (``settings.lora``: a list of ``{"path": ..., "scale": ...}``
        or of paths, each relative to the model folder or absolute) as ``{"path": absolute, "scale": ...}``, or
        ``None`` when it names none. Items of another shape are passed on as they are, for the load to refuse
        naming them (``jan.engine.model.lora_files``); a relative path that climbs out of the folder is a
        ValueError, as ``settings.draft_model``'s is."""
        doc = self.get(model_id) if doc is None else doc
        items = (doc.get("settings") or {}).get("lora")
        if not isinstance(items, list) or not items:
            return None
        folder = self.folder(model_id) if folder is None else folder
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            pair = isinstance(item, list) and len(item) == 2  # ([path, scale], as jan.Model's lora takes it)
            name = item.get("path") if isinstance(item, dict) else item[0] if pair else item
            if not isinstance(name, str) or not name.strip():
                out.append(item)
                continue
            path = Path(os.path.expanduser(name))
            if not path.is_absolute():
                path = Path(os.path.normpath(os.path.join(folder, name)))
                if os.path.commonpath([folder, path]) != str(folder):
                    # (param and code as a PATCH's refusal of the same value has them: a hand-edited model.json's
                    # 400 had neither)
                    raise InvalidArgumentError(f"model '{model_id}': settings.lora[{i}] '{name}' climbs out of the "
                                               "model folder", param="settings.lora", code="invalid_value")
            out.append({**item, "path": str(path)} if isinstance(item, dict)
                       else {"path": str(path), "scale": item[1]} if pair else {"path": str(path)})
        return out

    def draft_model_file(self, model_id: str, doc: dict[str, Any] | None = None,
                         folder: Path | None = None) -> Path | None:
        """The GGUF that drafts for this model in speculative decoding (``settings.draft_model``:
        the id of another model here, a path relative to the model folder, or an absolute path),
        or ``None`` when it has none. A name that resolves to no file comes back as the path it
        names, so loading fails with a clear "not found" rather than silently without a draft."""
        doc = self.get(model_id) if doc is None else doc
        name = (doc.get("settings") or {}).get("draft_model")
        if not isinstance(name, str) or not name:
            return None
        # (a file name that is no model id, "my draft.gguf", is a name in the folder, not an error)
        if name != model_id and not os.path.isabs(name) and is_valid_id(name) and self.exists(name):
            other = self.model_file(name)
            if other is not None:
                return other
        folder = self.folder(model_id) if folder is None else folder
        if os.path.isabs(name):
            return Path(name)
        candidate = Path(os.path.normpath(os.path.join(folder, name)))
        if os.path.commonpath([folder, candidate]) != str(folder):
            raise InvalidArgumentError(f"model '{model_id}': settings.draft_model '{name}' climbs out of the model "
                                       "folder", param="settings.draft_model", code="invalid_value")
        return candidate

    def import_gguf(self, src: str | os.PathLike[str], *, model_id: str | None = None,
                    mode: ImportMode = "copy", name: str | None = None, description: str = "",
                    settings: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None,
                    metadata: Mapping[str, Any] | None = None, engine: str = DEFAULT_ENGINE,
                    filename: str | None = None, overwrite: bool = False,
                    extra: Mapping[str, Any] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Make a local ``.gguf`` file a model and return its model.json.

        ``mode`` says where the weights end up:

        * ``"copy"``: copied into ``models/<model_id>/``;
        * ``"link"``: hard-linked there (a copy across filesystems or where
          links are unsupported);
        * ``"symlink"``: a symbolic link there (``"reference"`` where symlinks
          are not allowed, e.g. Windows without developer mode);
        * ``"reference"``: left in place; ``sources`` and
          ``settings.llama_model_path`` hold its absolute path;
        * ``"move"``: moved there (a rename, or copy-then-delete across filesystems).

        ``model_id`` defaults to a slug of the file name; ``filename`` names the weights in the model
        folder (default: the source's name; a blob's ``sha256-<hex>`` is no name for them). ``settings``,
        ``parameters`` and ``metadata`` come from the caller (e.g. read from
        the GGUF header); ``metadata.size`` defaults to the file size. ``extra``: other model.json fields
        (``system``, ``messages``, ``license``), kept as given. ``progress(bytes_done, bytes_total)`` is told how a
        copy of the weights goes (``"copy"``, and a link or move that has to copy), as
        :func:`jan.store.atomic.copy_to_temp` tells it; not called where nothing is copied.
        Raises :class:`AlreadyExistsError` if the id is taken and ``overwrite`` is false, and
        :class:`InvalidArgumentError` if the file is missing or not GGUF.
        Deleting the model later never touches a referenced or symlinked file.

        ``overwrite`` replaces a model of that id (Ollama's ``/api/create`` does): the model changes in one step,
        the rename of its new model.json. Until then the old model.json and the weights it names stay as they
        are: new weights never take a name that holds other content (they get a free one, ``<name>-2.gguf``), so
        no moment (and no crash) pairs the old model.json with the new weights. The old model's files that the
        new one does not name are removed after.
        """
        # A delete of this id may remove the model folder while the weights are placed in it (unlocked): that delete
        # came first, and the import starts again in a new folder. (Before, the rename into the folder that was gone
        # failed: a FileNotFoundError, the 500 of the request that asked for the import.)
        for _ in range(IMPORT_ATTEMPTS):
            try:
                return self._import_gguf_once(src, model_id=model_id, mode=mode, name=name, description=description,
                                              settings=settings, parameters=parameters, metadata=metadata,
                                              engine=engine, filename=filename, overwrite=overwrite, extra=extra,
                                              progress=progress)
            except _FolderGone:
                continue
        raise LockTimeoutError(f"model {model_id!r} was deleted each time it was being imported "
                               f"({IMPORT_ATTEMPTS} tries); try again")

    def _import_gguf_once(self, src: str | os.PathLike[str], *, model_id: str | None, mode: ImportMode,
                          name: str | None, description: str, settings: Mapping[str, Any] | None,
                          parameters: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None, engine: str,
                          filename: str | None, overwrite: bool, extra: Mapping[str, Any] | None,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """One try of :meth:`import_gguf`; :class:`_FolderGone` where a delete removed the model folder meanwhile."""
        if mode not in IMPORT_MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(IMPORT_MODES)}, not {mode!r}")
        source = Path(os.path.abspath(os.path.expanduser(os.fspath(src))))
        if not source.is_file():
            kind = not_a_regular_file(source)
            raise InvalidArgumentError(f"{source} is {kind}, not a GGUF file" if kind else f"{source} is not a file")
        check_gguf(source, "model file")  # (whole: a partial download is refused, not imported to fail at load)
        model_id = slugify_id(source.stem) if model_id is None else validate_id(model_id, "model id")
        folder = self.folder(model_id)
        path = folder / "model.json"
        filename = weights_filename(slugify_id(filename or source.name, "model.gguf"))
        size = source.stat().st_size

        with self._ctx.lock(path):
            if path.exists() and not overwrite:
                raise AlreadyExistsError(KIND, model_id)
            self._refuse_case_twin(model_id)
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                folder.mkdir()
                created_folder = True
            except FileExistsError:
                created_folder = False
            made = os.stat(folder)  # (the folder this try places the weights in: one a delete removed is not it)

        tmp: str | None = None
        rename = False  # "move" within one filesystem: a plain rename at commit time
        try:
            # The slow part runs unlocked, into a hidden temp file; the commit below
            # re-checks the id, so a concurrent import of the same id loses cleanly.
            if mode == "link":
                try:
                    # the file a symlink names, not the link: link() does not follow one, and a hard link to a
                    # relative symlink named nothing from the model's folder (it worked only through the source's
                    # path, until the user removed their symlink, which a hard link is meant to survive)
                    tmp = link_to_temp(os.path.realpath(source), folder, filename)
                except OSError as exc:
                    logger.info("cannot hard-link %s into %s (%s); copying instead", source, folder, exc)
            elif mode == "symlink":
                try:
                    tmp = symlink_to_temp(source, folder, filename)
                except OSError as exc:
                    logger.info("cannot symlink %s into %s (%s); referencing it in place", source, folder, exc)
                    mode = "reference"
            elif mode == "move":
                rename = os.stat(source).st_dev == os.stat(folder).st_dev
            if tmp is None and mode != "reference" and not rename:
                tmp = copy_to_temp(source, folder, filename, progress)

            def document(filename: str) -> dict[str, Any]:
                model_settings = check_dict("settings", settings)
                model_settings["llama_model_path"] = str(source) if mode == "reference" else filename
                return normalize_model({
                    **check_dict("extra", extra),
                    "id": model_id,
                    "name": name if name is not None else source.stem,
                    "description": description,
                    "sources": [{"filename": source.name if mode == "reference" else filename, "url": str(source)}],
                    "settings": model_settings,
                    "parameters": check_dict("parameters", parameters),
                    "metadata": {"size": size, **check_dict("metadata", metadata)},
                    "engine": engine,
                })

            doc = document(filename)
            data = self._ctx.encode_doc(KIND, doc)

            with self._ctx.lock(path):
                if _replaced_or_gone(folder, made) or (tmp is not None and not os.path.lexists(tmp)):
                    raise _FolderGone  # (the temp file went with the folder)
                exists = path.exists()
                if exists and not overwrite:
                    raise AlreadyExistsError(KIND, model_id)
                replaced = self._own_files(model_id) if exists else set()
                if exists and mode != "reference" and _holds_other(folder / filename, tmp or source):
                    filename = _free_name(folder, filename)
                    doc = document(filename)
                    data = self._ctx.encode_doc(KIND, doc)
                target = folder / filename
                placed = mode != "reference" and not os.path.lexists(target)  # a name this call takes
                if tmp is not None:
                    if os.path.lexists(target) and not _holds_other(target, tmp):
                        os.unlink(tmp)  # the weights are there already (rename() of two links to one file is a no-op)
                    else:
                        os.replace(tmp, target)
                    tmp = None
                elif rename:
                    os.replace(source, target)
                if mode != "reference":
                    fsync_dir(folder)
                try:
                    atomic_write_bytes(path, data)
                except BaseException:
                    if rename:
                        os.replace(target, source)  # give the user their file back
                    elif placed:
                        with contextlib.suppress(OSError):
                            os.unlink(target)  # weights no model.json names (the old model's are untouched)
                    raise
                self._remove_unnamed(model_id, replaced)
        except BaseException as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            if created_folder:
                # Only a folder this call made, and only if nothing else landed in it.
                try:
                    folder.rmdir()
                except OSError:
                    pass
            if isinstance(exc, FileNotFoundError) and _replaced_or_gone(folder, made):
                raise _FolderGone from exc  # (removed before the temp file was made in it)
            if isinstance(exc, FileNotFoundError) and not os.path.isfile(source):
                # the file went after the check above (an unused Ollama blob pruned by another client's delete):
                # the caller's file is missing, as if it had been from the start, not the server's failure
                raise InvalidArgumentError(f"{source} is not a file (it was removed while it was imported)") from exc
            raise
        if mode == "move" and not rename:
            # Copied across filesystems and committed: now the original can go.
            try:
                source.unlink()
            except OSError as exc:
                logger.warning("imported %s but could not remove the original: %s", source, exc)
        return doc


#: An empty model folder no model.json names is left alone this long (it may be an import that just made it).
EMPTY_FOLDER_STALE_S = 3600


def sweep_empty_model_folders(models_dir: Path, swept: list[Path]) -> list[Path]:
    """At start, after the temporary files of dead writers were removed (``swept``): remove the model folders that
    hold nothing and no model.json — what an import or pull killed before it wrote one leaves. An empty folder is
    removed at once where the sweep just took a dead writer's file from it, else once it is
    :data:`EMPTY_FOLDER_STALE_S` old (another process's import may have made it a moment ago). ``rmdir`` removes
    only an empty folder, so nothing written meanwhile is lost. Returns the removed folders."""
    emptied = {os.path.dirname(os.path.normpath(p)) for p in swept}
    now = time.time()
    removed = []
    for folder in iter_resource_dirs(models_dir):
        freed = _remove_free_download_locks(folder)  # (a dead download's: as a dead writer's temporary file)
        try:
            with os.scandir(folder) as entries:  # (any() stops at the first: the iterator is closed here)
                if any(True for _ in entries):
                    continue
            if not freed and str(folder) not in emptied and now - folder.stat().st_mtime < EMPTY_FOLDER_STALE_S:
                continue
            folder.rmdir()
        except OSError:
            continue
        logger.info("data folder: removed the empty %s, left by an import or pull that did not finish", folder)
        removed.append(folder)
    return removed


def _remove_free_download_locks(folder: Path) -> bool:
    """Remove the download locks (:func:`jan.downloads.lock_path`) that no process holds: a download killed with
    its process leaves its lock file, which kept the folder it was in from ever being empty. True when one went."""
    try:
        locks = [entry.path for entry in os.scandir(folder) if entry.name.endswith(LOCK_SUFFIX)]
    except OSError:
        return False
    if not locks:
        return False
    from jan.downloads import part_busy  # (only where a lock file is left: the downloader is not light to import)

    for lock in locks:
        name = os.path.basename(lock).removesuffix(LOCK_SUFFIX).removeprefix(".")
        part_busy(folder / name)  # takes a free lock and removes its file; a held one is left alone
    return not any(os.path.lexists(lock) for lock in locks)
