"""ModelExtension over the data folder: list/import/edit/delete model.json, pull from URLs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jan.core import ModelExtension
from jan.extensions._builtin import BuiltinExtension
from jan.errors import ModelLoadError, ModelNotFoundError, not_found_message
from jan.extensions.models.gguf_info import check_projector, describe_gguf, said_by_url
from jan.local_files import not_a_regular_file
from jan.store import AlreadyExistsError, AsyncStore, CaseClashError, NotFoundError, slugify_id, validate_id
from jan.store.models import check_gguf, weights_filename
from jan.file_stamps import FileStamp, stamps

if TYPE_CHECKING:
    from jan.downloads import Downloader, DownloadTask as FileDownload
    from jan.extensions.models.downloads import ModelPull, PullFile

# The downloader (jan.downloads, jan.hf_repo, jan.extensions.models.downloads) is imported by the first pull, not
# at start: a server that never downloads never holds it (resident memory at start, issue 16).


#: How many ended pulls ``GET /v1/downloads`` still lists (the latest): the older ones are forgotten.
KEEP_ENDED_PULLS = 32


class ModelManagerExtension(BuiltinExtension, ModelExtension):
    name = "models"
    description = "Models in the data folder: import, edit, delete and download GGUF files"

    def __init__(self) -> None:
        self.store: AsyncStore | None = None
        self._downloader: Downloader | None = None
        self._pulls: dict[str, ModelPull] = {}
        # model id -> (model_with_weights' answer, the files it came from, their stamps)
        self._resolved: dict[str, tuple[dict[str, Any], tuple[Path, ...], tuple[FileStamp, ...]]] = {}
        #: Names requests give another model by (``jan serve --alias``: alias -> model id), which no new model may
        #: take: requests naming it would still reach the aliased model, and deleting or replacing it would act
        #: on that one (:meth:`reserve_names`).
        self._names: dict[str, str] = {}

    def reserve_names(self, names: dict[str, str]) -> None:
        """Keep ``names`` (alias -> the model id it names, :meth:`jan.services.models.ModelService.name_model`) from
        every model this extension adds (an import, a model.json, a pull, Ollama's copy and create):
        :class:`ModelIdTakenError` (409) instead."""
        self._names.update(names)

    def _check_free(self, model_id: str) -> None:
        owner = self._names.get(model_id)
        if owner is not None:
            raise ModelIdTakenError(model_id, f"'{model_id}' is a name of the model '{owner}' on this server (jan "
                                              "serve --alias), which requests naming it reach; give the new model "
                                              "another id")

    async def on_load(self, ctx) -> None:
        self._ctx = ctx
        # (off the event loop: opening sweeps what a crash left — temporary files, dead leases, the replies they held)
        self.store = await AsyncStore.open(ctx.data_folder)

    @property
    def downloader(self) -> Downloader:
        """The downloader of this extension's pulls, made by the first one."""
        if self._downloader is None:
            from jan.downloads import Downloader

            self._downloader = Downloader()
        return self._downloader

    async def on_unload(self) -> None:
        if self._downloader is not None:
            await self._downloader.close()  # stops every download, keeping its partial file
        # then each pull ends (a hash it was taking stops), awaited: none outlives the extension
        pulls = [pull for pull in self._pulls.values() if not pull.done]
        if pulls:
            await asyncio.gather(*(pull.close() for pull in pulls))

    async def list_models(self) -> list[dict[str, Any]]:
        return await self.store.models.list()

    def problems(self, prefix: str | None = "models/") -> list[dict[str, Any]]:
        """Damaged files this extension's store found (and set aside) so far, oldest first: ``{"path", "error",
        "time", "moved_to"}``, paths relative to the data folder; ``prefix`` filters by path. What
        ``/v1/models`` and ``jan models list`` report, so a model whose model.json was set aside does not just
        vanish."""
        if self.store is None:
            return []
        items = [p.to_dict() for p in self.store.problems]
        return [p for p in items if prefix is None or p["path"].startswith(prefix)]

    async def get_model(self, model_id: str) -> dict[str, Any]:
        try:
            return await self.store.models.get(model_id)
        except NotFoundError as exc:
            raise _not_found(model_id, exc) from None

    async def model_written_at(self, model_id: str) -> float | None:
        """When the model.json of ``model_id`` was last written (its mtime, seconds since the epoch); None where
        there is none (:meth:`jan.store.models.ModelStore.written_at`)."""
        return await self.store.models.written_at(model_id)

    async def model_with_weights(self, model_id: str) -> dict[str, Any]:
        """:meth:`get_model` with ``file_path``, ``mmproj_path`` and ``draft_model_path`` resolved, in one
        read of the model.json; the path of every inference request.

        The answer is kept while the files it came from keep their stamps (``os.stat`` of the model.json,
        its folder and the files it names: ~10 µs, here on the event loop). Reading them again in a worker
        thread on every request cost 4–13 ms per request when eight arrived at once (the hop waits for a
        free core and the GIL), most of the time to first token of a short request."""
        kept = self._resolved.get(model_id)
        if kept is not None and stamps(kept[1]) == kept[2]:
            return _json_copy(kept[0])
        try:
            doc, paths, taken = await self.store.models.with_weights_stamped(model_id)
        except NotFoundError as exc:
            self._resolved.pop(model_id, None)
            raise _not_found(model_id, exc) from None
        if taken is None:
            self._resolved.pop(model_id, None)
        else:
            self._resolved[model_id] = (_json_copy(doc), paths, taken)
        return doc

    async def model_file(self, model_id: str) -> str | None:
        path = await self.store.models.model_file(model_id)
        return str(path) if path else None

    async def mmproj_file(self, model_id: str) -> str | None:
        path = await self.store.models.mmproj_file(model_id)
        return str(path) if path else None

    async def draft_model_file(self, model_id: str) -> str | None:
        path = await self.store.models.draft_model_file(model_id)
        return str(path) if path else None

    async def lora_files(self, model_id: str, settings: dict[str, Any] | None = None) -> list[str]:
        """The files of the model's own LoRA adapters (``settings.lora``, resolved as a load resolves them; of
        ``settings`` when given, stored or not yet), [] when it names none, or none a load could read (a path that
        climbs out of its folder: the load refuses it)."""
        try:
            items = await self.store.models.lora_files(model_id, None if settings is None else {"settings": settings})
        except ValueError:
            return []
        return [str(item["path"]) for item in items or ()
                if isinstance(item, dict) and isinstance(item.get("path"), str)]

    async def companion_files(self, model_id: str, settings: dict[str, Any]) -> dict[str, str]:
        """The files ``settings.draft_model`` and ``settings.mmproj`` would name for the model ``model_id``
        (stored or not yet), resolved as loading it resolves them (:meth:`jan.store.models.ModelStore.draft_model_file`:
        another model's id, a name in the model's folder, an absolute path), whether or not they exist; a
        relative name that climbs out of the folder is a ValueError naming the setting."""
        def resolve() -> dict[str, str]:
            models = self.store.sync.models
            folder = models.folder(model_id)
            out: dict[str, str] = {}
            for key in ("draft_model", "mmproj"):
                name = settings.get(key)
                if not isinstance(name, str) or not name:
                    continue
                candidate = os.path.normpath(os.path.join(folder, name))
                if not os.path.isabs(name) and os.path.commonpath([folder, candidate]) != str(folder):
                    raise ValueError(f"settings.{key}: '{name}' climbs out of the model folder")
                if key == "draft_model":  # (perhaps another model's id)
                    candidate = str(models.draft_model_file(model_id, {"settings": settings}, folder))
                out[key] = candidate
            return out

        return await asyncio.to_thread(resolve)

    async def import_model(self, path: str, *, model_id: str | None = None, mode: str = "symlink",
                           mmproj: str | None = None, overwrite: bool = False, **fields: Any) -> dict[str, Any]:
        """Import a GGUF; ``mmproj``: its projector (referenced in place, ``settings.mmproj``). A
        projector beside the model (``mmproj-<model file name>``, or the folder's only
        ``*mmproj*.gguf``: :func:`jan.hf_repo.sibling_mmproj`) is picked up by itself. ``filename``:
        the weights' name in the model folder (default: the file's own). ``overwrite``: replace a model of
        that id, in one step (:meth:`jan.store.models.ModelStore.import_gguf`), not ``AlreadyExistsError``."""
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            kind = not_a_regular_file(path)  # there, but a folder or /dev/null: not "no file"
            raise ValueError(f"path: '{path}' is {kind}, not a GGUF file" if kind else f"path: no file at '{path}'")
        if mmproj is None:
            mmproj = (fields.get("settings") or {}).get("mmproj")
        if mmproj is None and "mmproj" not in os.path.basename(path).lower():
            from jan.hf_repo import sibling_mmproj

            mmproj = await asyncio.to_thread(sibling_mmproj, path)
        if mmproj is not None:
            mmproj = os.path.abspath(os.path.expanduser(mmproj))
            if not os.path.isfile(mmproj):
                kind = not_a_regular_file(mmproj)
                raise ValueError(f"mmproj: '{mmproj}' is {kind}, not a GGUF file" if kind
                                 else f"mmproj: no file at '{mmproj}'")
            try:  # a projector is checked now, not first when the model loads (and fails there)
                await asyncio.to_thread(check_projector, mmproj)
            except ValueError as exc:
                raise ValueError(f"mmproj: {exc}") from None
            fields["settings"] = {**(fields.get("settings") or {}), "mmproj": mmproj}
        try:
            info = await asyncio.to_thread(describe_gguf, path)  # also proves it is a loadable GGUF
        except ModelLoadError as exc:
            raise ValueError(f"path: {exc}") from None
        model_id = model_id or slugify_id(os.path.splitext(os.path.basename(path))[0])
        validate_id(model_id)
        self._check_free(model_id)
        settings = {**info["settings"], **(fields.pop("settings", None) or {})}
        return await self.store.models.import_gguf(
            path, model_id=model_id, mode=mode, name=fields.pop("name", None) or info["name"],
            description=fields.pop("description", ""), settings=settings,
            parameters=fields.pop("parameters", None), metadata={**info["metadata"], **(fields.pop("metadata", None) or {})},
            engine=fields.pop("engine", "llama.cpp"), filename=fields.pop("filename", None), overwrite=overwrite,
            extra=fields)  # what is left: other model.json fields (system, messages, license), kept as given

    async def create_model(self, model: dict[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
        """Add a model.json as given (e.g. from a model hub); ``AlreadyExistsError`` if the id is taken, unless
        ``overwrite`` (the model.json replaced at once, the old model's files it no longer names removed); an id
        that names another model here (:meth:`reserve_names`) is :class:`ModelIdTakenError` either way."""
        self._check_free(model.get("id"))
        return await self.store.models.create(model, overwrite=overwrite)

    async def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        await self.get_model(model_id)
        return await self.store.models.update(model_id, patch)

    async def delete_model(self, model_id: str) -> None:
        await self.get_model(model_id)
        try:
            await self.store.models.delete(model_id)
        finally:  # (a model.json kept per model asked for: a deleted one's was kept until its id was asked for again)
            self._resolved.pop(model_id, None)

    def _pulling(self) -> set[str]:
        return {model_id for model_id, pull in self._pulls.items()
                if pull.status()["state"] in ("queued", "downloading")}

    async def leftovers(self) -> list[dict[str, Any]]:
        """Model folders with files and no model.json (:meth:`jan.store.models.ModelStore.leftovers`: a pull or
        import a kill stopped), less those of pulls running here (``/v1/downloads`` shows those)."""
        pulling = self._pulling()
        return [item for item in await self.store.models.leftovers() if item["id"] not in pulling]

    async def delete_leftover(self, model_id: str) -> bool:
        """Remove ``models/<model_id>`` when it is a folder without a model.json (:meth:`leftovers`, or an empty
        one) and no pull here is filling it: True when it was removed. What deleting a model by that id does
        where there is no model, so that what the list reports can be removed as a model is."""
        try:
            validate_id(model_id)
        except ValueError:
            return False
        if model_id in self._pulling() or not await self.store.models.is_leftover(model_id):
            return False
        try:
            await self.store.models.delete(model_id)
        except NotFoundError:  # removed meanwhile
            return False
        return True

    async def pull(self, source: str, model_id: str | None = None, *, sha256: str | None = None,
                   update: bool = True) -> ModelPull:
        """Download a model: an http(s) URL or ``hf://`` file of a GGUF, or a whole
        ``hf://owner/repo[:QUANT]`` (its model and projector chosen from its file list, as
        llama-server's ``-hf`` does). A repository's ``mmproj`` GGUF comes along and is set as
        the model's projector (:mod:`jan.hf_repo`); ``sha256`` checks the model file.

        An id that holds a model from another source is :class:`AlreadyExistsError` (the API's 409):
        a pull never replaces someone's model. Pulling a model's own source again is an update (as
        Ollama's pull is): the files are downloaded beside the old ones and swapped in once they
        prove to be GGUF, and the user's name, description, settings and parameters are kept; with
        ``update`` False (``jan models pull``'s rule) any model of that id is :class:`AlreadyExistsError`. A
        failed pull leaves nothing behind but a partial file to resume from."""
        from jan.downloads import _normalize_sha256  # the downloader's own rule, checked before a pull that hashes first
        from jan.downloads import filename_from_url, resolve_url
        from jan.extensions.models.downloads import ModelPull
        from jan.hf_repo import canonical_source, plan_pull

        source = canonical_source(source)  # (Ollama's hf.co/owner/repo:QUANT is hf://owner/repo:QUANT)
        plan = await plan_pull(source)
        url = resolve_url(plan.model_url)
        filename = filename_from_url(url)
        model_id = model_id or slugify_id(os.path.splitext(filename)[0])
        validate_id(model_id)
        self._check_free(model_id)
        digest = _normalize_sha256(sha256)  # a bad one is the caller's error, also where the hash is taken first
        running = self._pulls.get(model_id)
        if running is not None and running.status()["state"] in ("queued", "downloading"):
            if getattr(running, "source", plan.model_url) != plan.model_url:
                raise ModelIdTakenError(model_id, f"model '{model_id}' is being pulled from "
                                         f"{running.source}; pull {source} under another id")
            return running
        try:
            existing: dict[str, Any] | None = await self.store.models.get(model_id)
        except NotFoundError:
            existing = None
        twin = await self.store.models.case_twin(model_id) if existing is None else None
        if twin is not None:  # refused now, not after the whole download (the store would refuse the model.json)
            raise CaseClashError("model", model_id, twin)
        if existing is not None and not update:
            raise ModelIdTakenError(model_id, f"model '{model_id}' already exists (pull it under another id, or "
                                     f"delete '{model_id}' first)")
        if existing is not None and not _pulled_from(existing, plan.model_url, source):
            raise ModelIdTakenError(model_id, f"model '{model_id}' already exists and was not pulled from "
                                     f"{plan.model_url}; pull it under another id, or delete '{model_id}' first")
        folder = await self.store.models.folder(model_id)
        made_folder = not await asyncio.to_thread(os.path.isdir, folder)
        await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
        dest = os.path.join(folder, weights_filename(filename))
        model_file = await _pull_file(url, dest, digest, left_behind=existing is None)
        extra, mmproj = [], None
        if plan.mmproj_url is not None:
            mmproj_url = resolve_url(plan.mmproj_url)
            mmproj = os.path.join(folder, weights_filename(filename_from_url(mmproj_url)))
            extra.append(await _pull_file(mmproj_url, mmproj, None, left_behind=existing is None))
        staged = [f.staged for f in (model_file, *extra)]

        def start(file: PullFile) -> FileDownload:
            return self.downloader.start(file.url, file.staged, sha256=file.sha256)

        async def register(found: dict[str, str]) -> dict[str, Any]:
            with said_by_url(found[dest], plan.model_url):
                info = await asyncio.to_thread(describe_gguf, found[dest])
            if mmproj is not None:  # a projector does not load as a model: its header is what can be checked
                with said_by_url(found[mmproj], plan.mmproj_url):
                    await asyncio.to_thread(check_gguf, found[mmproj])
                    await asyncio.to_thread(check_projector, found[mmproj])
            for final, path in found.items():
                if path != final:
                    await asyncio.to_thread(os.replace, path, final)
            return await self._register_downloaded(model_id, dest, plan.model_url, info, mmproj, plan.mmproj_url,
                                                   update=existing is not None)

        async def cleanup() -> None:
            await asyncio.to_thread(_remove_leftovers, staged, folder if made_folder else None)

        try:
            pull = ModelPull(start, model_file, model_id, self._ctx.bus, register, extra=extra, cleanup=cleanup)
        except BaseException:
            if made_folder:
                await asyncio.to_thread(_remove_leftovers, [], folder)
            raise
        pull.source = plan.model_url
        # what an earlier pull left to resume from, so that progress can say whether the server took it up
        pull.partial_bytes = await asyncio.to_thread(_part_size, model_file.staged)
        self._pulls.pop(model_id, None)  # (the newest last: an id pulled again is a recent pull)
        self._pulls[model_id] = pull
        self._forget_ended_pulls()
        return pull

    def _forget_ended_pulls(self) -> None:
        """Keep the :data:`KEEP_ENDED_PULLS` latest ended pulls (``GET /v1/downloads``: "running or ended
        recently"): each ended pull, and its file downloads in the downloader, was kept for the server's life, by
        every model id ever pulled (a failed pull's too)."""
        ended = [model_id for model_id, pull in self._pulls.items() if pull.done]
        for model_id in ended[:max(len(ended) - KEEP_ENDED_PULLS, 0)]:
            pull = self._pulls.pop(model_id)
            if self._downloader is not None:
                for download in pull.file_downloads():
                    self._downloader.forget(download.id)

    async def _register_downloaded(self, model_id: str, dest: str, source: str, info: dict,
                                   mmproj: str | None = None, mmproj_source: str | None = None, *,
                                   update: bool = False) -> dict[str, Any]:
        settings = {**info["settings"], "llama_model_path": os.path.basename(dest)}
        sources = [{"filename": os.path.basename(dest), "url": source}]
        if mmproj is not None:
            settings["mmproj"] = os.path.basename(mmproj)  # relative to the model folder
            sources.append({"filename": os.path.basename(mmproj), "url": mmproj_source})
        doc = {
            "id": model_id,
            "object": "model",
            "name": info["name"],
            "version": "1.0",
            "description": "",
            "format": "gguf",
            "sources": sources,
            "settings": settings,
            "parameters": {},
            "metadata": info["metadata"],
            "engine": "llama.cpp",
        }
        if not update:
            return await self.store.models.create(doc)  # an id taken meanwhile: AlreadyExistsError
        try:
            old = await self.store.models.get(model_id)
        except NotFoundError:  # deleted meanwhile: the update is a new pull
            return await self.store.models.create(doc)
        if not _pulled_from(old, source):
            raise ModelIdTakenError(model_id, f"model '{model_id}' was replaced by another model "
                                     "while it was being pulled; nothing was changed")
        # An update: what the user set stays (name, description, settings, parameters, their metadata);
        # the files, their sources and what the file says about itself are the new ones.
        files = {"llama_model_path": settings["llama_model_path"], **({"mmproj": settings["mmproj"]} if mmproj else {})}
        merged = {**old, "sources": sources,
                  "settings": {**info["settings"], **(old.get("settings") or {}), **files},
                  "metadata": {**(old.get("metadata") or {}), **info["metadata"]}}
        return await self.store.models.create(merged, overwrite=True)

    async def cancel_pull(self, task_id: str) -> bool:
        pull = self._pulls.get(task_id)
        if pull is None or pull.status()["state"] not in ("queued", "downloading"):
            return False
        await pull.cancel()
        return True

    async def list_downloads(self) -> list[ModelPull]:
        return list(self._pulls.values())


class ModelIdTakenError(AlreadyExistsError):
    """A pull into an id that holds another model (the API's 409), with what to do instead."""

    def __init__(self, model_id: str, message: str):
        super().__init__("model", model_id)
        self.args = (message,)

    def __reduce__(self):
        return (type(self), (self.id, self.args[0]))


def _not_found(model_id: str, exc: NotFoundError) -> ModelNotFoundError:
    """The API's "model does not exist", or the store's own words when its model.json was damaged and set
    aside (where it went), which "does not exist" would hide."""
    if getattr(exc, "damaged", None):
        err = ModelNotFoundError(str(exc))
        err.damaged = exc.damaged  # type: ignore[attr-defined]  # (where it went: for callers that word it)
        return err
    return ModelNotFoundError(not_found_message("model", model_id))


def _pulled_from(model: dict[str, Any], *urls: str) -> bool:
    """Whether ``model`` comes from one of ``urls`` (its first download source, the one a pull by id
    downloads), so pulling it into its id is an update rather than another model taking its place."""
    sources = [s.get("url") for s in model.get("sources") or () if isinstance(s, dict) and s.get("url")]
    return bool(sources) and sources[0] in urls


async def _pull_file(url: str, dest: str, sha256: str | None, *, left_behind: bool) -> PullFile:
    """Where a pulled file goes. Over a file that is there already it downloads beside it: for an update, the old
    one stays until the new one proves to be GGUF, and a failed update takes nothing away. With no model.json
    (``left_behind``), that file was left whole by a pull that stopped before writing one: it is used as it is when
    it matches the source (:class:`PullFile`). A partial download (``.part``) resumes either way."""
    from jan.extensions.models.downloads import PullFile

    there = await asyncio.to_thread(os.path.isfile, dest)
    taken = there or await asyncio.to_thread(os.path.lexists, dest)
    return PullFile(url, dest, _staging(dest) if taken else dest, sha256, left=left_behind and there)


def _part_size(path: str) -> int:
    """The bytes of ``path``'s partial download (0: none)."""
    from jan.downloads import part_path

    try:
        return os.path.getsize(part_path(path))
    except OSError:
        return 0


def _staging(path: str) -> str:
    """Where a file that is there already is downloaded again: hidden beside it, a stable name (so an
    interrupted update resumes), swapped in only once it proves to be GGUF."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.pulling")


def _remove_leftovers(paths: list[str], folder: str | None) -> None:
    """After a failed or cancelled pull: the files it downloaded and never registered, and the folder
    it made for them when nothing else is in it. A partial file with bytes in it stays, for the same
    pull to resume; an empty one is junk."""
    from jan.downloads import part_path

    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        part = str(part_path(path))
        with contextlib.suppress(OSError):
            if os.path.getsize(part) == 0:
                os.remove(part)
    if folder is not None:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty


def _json_copy(value: Any) -> Any:
    """A copy of JSON data (dicts, lists and scalars: a model.json) that a caller may change freely. Written out
    rather than ``copy.deepcopy``, which handles any object (a memo, a dispatch per value) and took 29 µs of a
    model.json on every request, twice (the request's model and its template header): this takes 10."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value
